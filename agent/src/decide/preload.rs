//! `zroam preload`: whether to start loading zfs.ko now, from a generator's earliest hook,
//! so that its seconds of loading overlap udev instead of following `zroam boot`'s start.
//! Pure: the kernel command line and whether zfs is loaded in, the answer out. The rule is
//! `zroam boot`'s own (`Cmdline::wants_zfs_root`): a root that boot would leave alone is
//! not worth a module load.

use super::cmdline;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preload {
    /// This boot's root is zroam's and zfs is not loaded: run `modprobe zfs`.
    Load,
    /// zfs is live already (built in, or loaded by someone else).
    Loaded,
    /// `root=` names something that is not ZFS and no `zroam.pool=` says otherwise.
    NotOurs,
}

pub fn decide(line: &str, zfs_loaded: bool) -> Preload {
    if !cmdline::parse(line).wants_zfs_root() {
        Preload::NotOurs
    } else if zfs_loaded {
        Preload::Loaded
    } else {
        Preload::Load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zfs_root_loads_zfs() {
        for line in ["root=ZFS=rpool/ROOT/debian ro", "root=zfs:rpool", "root=zfs:AUTO", "quiet", "", "root=/dev/sda1 zroam.pool=rpool"] {
            assert_eq!(decide(line, false), Preload::Load, "{line}");
            assert_eq!(decide(line, true), Preload::Loaded, "{line}");
        }
    }

    #[test]
    fn another_root_loads_nothing() {
        for line in ["root=/dev/sda1", "root=UUID=1234 ro quiet", "zfs=off", "root=/dev/nfs nfsroot=10.0.0.1:/srv"] {
            assert_eq!(decide(line, false), Preload::NotOurs, "{line}");
            assert_eq!(decide(line, true), Preload::NotOurs, "{line}");
        }
    }
}
