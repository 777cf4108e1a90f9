//! A zfs module parameter changed for the length of one step and put back afterwards, so
//! the booted system keeps its own settings.

use std::fs;
use std::path::{Path, PathBuf};

/// How long the kernel retries opening a vdev whose path is missing (ENOENT), per open.
/// It exists for udev links that are briefly recreated; zroam imports with device nodes it
/// has just read, and a member it did not find is nowhere, so each of the several opens of
/// an import would wait the full second for nothing (measured: a degraded mirror's import
/// took 5 s instead of 1).
pub const VDEV_OPEN_TIMEOUT: &str = "zfs_vdev_open_timeout_ms";
/// Not 0: the kernel checks the bound before its first attempt, and 0 opens nothing.
pub const VDEV_OPEN_TIMEOUT_SHORT: &str = "50";

pub fn path(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

/// The old value, restored on drop.
#[derive(Debug)]
pub struct Changed {
    path: PathBuf,
    old: String,
}

impl Changed {
    pub fn old(&self) -> &str {
        &self.old
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}

/// Sets `name` under `base` (normally /sys/module/zfs/parameters) to `value`; None when the
/// parameter does not exist in this OpenZFS or cannot be written.
pub fn set(base: &Path, name: &str, value: &str) -> Option<Changed> {
    let p = path(base, name);
    let old = fs::read_to_string(&p).ok()?.trim().to_string();
    fs::write(&p, value).ok()?;
    Some(Changed { path: p, old })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_the_old_value() {
        let dir = std::env::temp_dir().join(format!("zroam-zfsparam-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(VDEV_OPEN_TIMEOUT), "1000\n").unwrap();
        {
            let c = set(&dir, VDEV_OPEN_TIMEOUT, "0").unwrap();
            assert_eq!(c.old(), "1000");
            assert_eq!(fs::read_to_string(dir.join(VDEV_OPEN_TIMEOUT)).unwrap(), "0");
        }
        assert_eq!(fs::read_to_string(dir.join(VDEV_OPEN_TIMEOUT)).unwrap(), "1000");
        assert!(set(&dir, "no_such_parameter", "1").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
