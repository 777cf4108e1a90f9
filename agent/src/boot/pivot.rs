//! Stage `pivot`: switch into the new root the way switch_root does: check the init exists, move
//! /dev /proc /sys /run under the new root, free the ramdisk's memory, make the new root
//! "/", and exec the init.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PivotError {
    #[error("{0} does not exist or is not executable in the new root")]
    NoInit(String),
    #[error("{what}: {err}")]
    Sys { what: String, err: nix::Error },
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> PivotError {
    let what = what.into();
    move |err| PivotError::Sys { what, err }
}

/// Resolve `path` inside `root`, following symlinks as if `root` were "/" (bounded).
pub fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut cur = PathBuf::from(path);
    for _ in 0..40 {
        let full = root.join(cur.strip_prefix("/").unwrap_or(&cur));
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&full).ok()?;
                cur = if t.is_absolute() { t } else { cur.parent()?.join(t) };
            }
            Ok(_) => return Some(full),
            Err(_) => return None,
        }
    }
    None
}

/// Remove the ramdisk's files (they pin memory once we leave), staying on its filesystem.
fn free_ramdisk(dir: &Path, dev: u64) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.dev() != dev {
            continue;
        }
        if m.is_dir() {
            free_ramdisk(&p, dev);
            let _ = std::fs::remove_dir(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn is_ramdisk_root() -> bool {
    match nix::sys::statfs::statfs("/") {
        Ok(s) => {
            // ramfs or tmpfs: the kernel's rootfs for an initramfs.
            let t = s.filesystem_type().0;
            t == 0x858458f6 || t == 0x01021994
        }
        Err(_) => false,
    }
}

/// Never returns on success.
pub fn switch_root(newroot: &Path, init: &str) -> Result<std::convert::Infallible, PivotError> {
    let exe = resolve_in(newroot, init).ok_or_else(|| PivotError::NoInit(init.to_string()))?;
    if std::fs::metadata(&exe).map(|m| m.mode() & 0o111 == 0).unwrap_or(true) {
        return Err(PivotError::NoInit(init.to_string()));
    }
    for m in ["/dev", "/proc", "/sys", "/run"] {
        let target = newroot.join(&m[1..]);
        if target.is_dir() {
            mount(Some(m), &target, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys(format!("move {m}")))?;
        } else {
            log::warn!("{} has no {m}; detaching the ramdisk's", newroot.display());
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
    }
    std::env::set_current_dir(newroot).map_err(|e| PivotError::Sys {
        what: format!("chdir {}", newroot.display()),
        err: nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
    })?;
    if is_ramdisk_root() {
        if let Ok(m) = std::fs::metadata("/") {
            free_ramdisk(Path::new("/"), m.dev());
        }
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys("move the new root to /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    let c = CString::new(init).map_err(|_| PivotError::NoInit(init.to_string()))?;
    let e = nix::unistd::execv(&c, std::slice::from_ref(&c)).unwrap_err();
    Err(PivotError::Sys { what: format!("exec {init}"), err: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_lookup_stays_inside_root() {
        let d = std::env::temp_dir().join(format!("zroam-pivot-{}", std::process::id()));
        std::fs::create_dir_all(d.join("lib/systemd")).unwrap();
        std::fs::create_dir_all(d.join("sbin")).unwrap();
        std::fs::write(d.join("lib/systemd/systemd"), "").unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", d.join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("../lib/systemd/systemd", d.join("sbin/rel")).unwrap();
        std::os::unix::fs::symlink("loop", d.join("sbin/loop")).unwrap();
        assert_eq!(resolve_in(&d, "/sbin/init"), Some(d.join("lib/systemd/systemd")));
        assert_eq!(resolve_in(&d, "/sbin/rel").map(|p| p.exists()), Some(true));
        assert_eq!(resolve_in(&d, "/sbin/loop"), None);
        assert_eq!(resolve_in(&d, "/bin/none"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
