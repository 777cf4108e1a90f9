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

/// Undo the octal escapes mountinfo puts in paths (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the filesystem on device `major:minor` is mounted whole (its root, not a bind of a
/// subdirectory), from mountinfo's text, and whether that mount is writable.
pub fn mount_of(mountinfo: &str, major: u32, minor: u32) -> Option<(String, bool)> {
    let want = format!("{major}:{minor}");
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 5 && f[2] == want && f[3] == "/").then(|| (unescape(f[4]), f[5].split(',').any(|o| o == "rw")))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_of_a_device() {
        let mi = "22 1 0:21 / / rw - zfs rpool/ROOT/debian rw\n\
                  40 22 8:1 /EFI /mnt/bind rw - vfat /dev/sda1 rw\n\
                  41 22 8:1 / /boot/efi\\040a rw,relatime - vfat /dev/sda1 rw\n\
                  42 22 8:17 / /boot/efi2 ro,relatime - vfat /dev/sdb1 ro\n";
        assert_eq!(super::mount_of(mi, 8, 1), Some(("/boot/efi a".to_string(), true)));
        assert_eq!(super::mount_of(mi, 8, 17), Some(("/boot/efi2".to_string(), false)));
        assert_eq!(super::mount_of(mi, 8, 33), None);
        assert_eq!(super::unescape("a\\0b\\1"), "a\\0b\\1");
    }

    #[test]
    fn root_on_zfs_or_not() {
        let zfs = "rpool/ROOT/debian / zfs rw,relatime,xattr,noacl 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(super::root_dataset(zfs).as_deref(), Some("rpool/ROOT/debian"));
        let ext4 = "/dev/vda1 / ext4 rw 0 0\nrpool/home /home zfs rw 0 0\n";
        assert_eq!(super::root_dataset(ext4), None);
    }
}
