//! What is mounted where on a running system (/proc/self/mounts).

use crate::sys::run;
use std::time::Duration;

/// The dataset mounted at `/` when it is ZFS, from a mounts table's text.
pub fn root_dataset(mounts: &str) -> Option<String> {
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[1] == "/" && f[2] == "zfs")
        .map(|f| f[0].to_string())
}

/// The pool mounted at / (a running system's root pool): its GUID, as zpool reports it.
pub fn root_pool_guid() -> Option<u64> {
    let ds = root_dataset(&std::fs::read_to_string("/proc/self/mounts").ok()?)?;
    let pool = ds.split('/').next()?.to_string();
    let o = run::run("zpool", &["get", "-H", "-o", "value", "guid", &pool].map(String::from), Duration::from_secs(30));
    o.stdout.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_on_zfs_or_not() {
        let zfs = "rpool/ROOT/debian / zfs rw,relatime,xattr,noacl 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(super::root_dataset(zfs).as_deref(), Some("rpool/ROOT/debian"));
        let ext4 = "/dev/vda1 / ext4 rw 0 0\nrpool/home /home zfs rw 0 0\n";
        assert_eq!(super::root_dataset(ext4), None);
    }
}
