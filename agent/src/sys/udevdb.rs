//! Where no udev runs (zroam as PID 1 of its own ramdisk), tell libzfs the devices it is
//! given are ready. For each import device libzfs polls libudev for up to three seconds
//! until the device looks set up: "initialized" (a database file
//! `/run/udev/data/b<major>:<minor>` exists) or, in Debian's build, has a DEVLINKS
//! property (an `S:` line in that file). Measured in the lab: a two-disk mirror's import
//! took 6.7 s without udev, 0.6 s with these entries. zroam has already read the device's
//! labels, so it writes an entry for each device that has none and removes exactly those
//! entries after the import, leaving nothing behind for the real udev.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const DB_DIR: &str = "/run/udev/data";

/// The database file name for a block device number (libudev's spelling).
pub fn entry_name(rdev: u64) -> String {
    format!("b{}:{}", libc::major(rdev), libc::minor(rdev))
}

/// The entry's text: one device link under a name of zroam's (never created; the entry
/// lives only for the import).
pub fn entry_text(device: &str) -> String {
    let name = device.rsplit('/').next().unwrap_or(device);
    format!("S:zroam/{name}\n")
}

/// Entries this process created; dropping it removes them.
#[derive(Debug, Default)]
pub struct Marked {
    created: Vec<PathBuf>,
}

impl Marked {
    pub fn count(&self) -> usize {
        self.created.len()
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        for p in &self.created {
            let _ = fs::remove_file(p);
        }
    }
}

/// Marks `devices` ready in `db_dir` unless udev already knows them. Best effort: a device
/// that cannot be marked only costs libzfs its wait.
pub fn mark_ready(db_dir: &Path, devices: &[String]) -> Marked {
    let mut m = Marked::default();
    for d in devices {
        let Ok(meta) = fs::metadata(d) else { continue };
        if !meta.file_type().is_block_device() {
            continue;
        }
        let p = db_dir.join(entry_name(meta.rdev()));
        if p.exists() || fs::create_dir_all(db_dir).is_err() {
            continue;
        }
        if let Ok(mut f) = fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            m.created.push(p);
            let _ = f.write_all(entry_text(d).as_bytes());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libudev_spelling() {
        assert_eq!(entry_name(libc::makedev(253, 2)), "b253:2");
        assert_eq!(entry_name(libc::makedev(259, 1048575)), "b259:1048575");
        assert_eq!(entry_text("/dev/vda2"), "S:zroam/vda2\n");
    }

    #[test]
    fn removes_only_what_it_made() {
        let dir = std::env::temp_dir().join(format!("zroam-udevdb-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // /dev/null is a character device: never marked. No block device is guaranteed to
        // exist on a build machine, so the creation path is covered by the boot lab.
        let m = mark_ready(&dir, &["/dev/null".into(), "/nonexistent".into()]);
        assert_eq!(m.count(), 0);
        let theirs = dir.join("b8:0");
        fs::write(&theirs, "").unwrap();
        let m = Marked { created: vec![dir.join("b8:1")] };
        fs::write(dir.join("b8:1"), "").unwrap();
        drop(m);
        assert!(theirs.exists());
        assert!(!dir.join("b8:1").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
