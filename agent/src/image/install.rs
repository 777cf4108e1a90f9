//! Puts a unified kernel image at the removable-media path of an ESP,
//! `EFI/BOOT/BOOTX64.EFI`, which any UEFI firmware boots with no boot entry. What was there
//! is kept: the image zroam installed before as `EFI/zroam/previous.efi` (a fallback the
//! firmware's boot-from-file menu can start), a file zroam did not write as
//! `EFI/zroam/original.efi`, never overwritten. Each file is written beside its place under
//! the ESP sync's temporary name and renamed over it as the sync renames (`esp::sync`), so
//! a power cut leaves the old file or the new one, and a cut-off temporary is never
//! mirrored.

use crate::esp::sync::{rename_synced, temporary};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const BOOT: &str = "EFI/BOOT/BOOTX64.EFI";
pub const PREVIOUS: &str = "EFI/zroam/previous.efi";
pub const ORIGINAL: &str = "EFI/zroam/original.efi";
/// The hash of the image zroam installed last: how it knows the file at `BOOT` is its own.
pub const RECORD: &str = "EFI/zroam/installed.sha256";

#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    /// Installed; the path where the file it replaced was kept, if there was one.
    Installed { kept: Option<PathBuf> },
    /// The same image was already there.
    Unchanged,
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `data` under `path`'s temporary name (the one the ESP sync writes under and
/// knows), synced; the caller renames it into place.
fn stage(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let tmp = temporary(path);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Is `dir` on a FAT file system (an ESP)?
pub fn on_fat(dir: &Path) -> bool {
    const MSDOS_SUPER_MAGIC: i64 = 0x4d44;
    nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type().0 == MSDOS_SUPER_MAGIC)
}

/// Installs `image` on the ESP mounted at `esp`. At most two images are on the ESP at any
/// time (a stick's ESP may be small): zroam's older previous image goes first, then the new
/// one is written beside `BOOTX64.EFI`, which is renamed to where it is kept, and the new
/// one renamed into its place. `BOOTX64.EFI` is never missing.
pub fn install(esp: &Path, image: &[u8]) -> Result<Done, String> {
    let boot = esp.join(BOOT);
    let say = |p: &Path, e: std::io::Error| {
        let room = if e.raw_os_error() == Some(libc::ENOSPC) {
            format!(" (the image is {:.1} MiB, and the one it replaces is kept beside it)", image.len() as f64 / (1 << 20) as f64)
        } else {
            String::new()
        };
        format!("{}: {e}{room}", p.display())
    };
    let new = hex(image);
    let keep = match fs::read(&boot) {
        Ok(cur) => {
            let cur_hex = hex(&cur);
            if cur_hex == new {
                return Ok(Done::Unchanged);
            }
            let ours = fs::read_to_string(esp.join(RECORD)).is_ok_and(|r| r.trim() == cur_hex);
            let keep = esp.join(if ours { PREVIOUS } else { ORIGINAL });
            if !ours && keep.exists() {
                return Err(format!(
                    "{} was not written by zroam, and {} already keeps another file zroam did not write; move one of them away",
                    boot.display(),
                    keep.display()
                ));
            }
            if ours {
                match fs::remove_file(&keep) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(say(&keep, e)),
                    _ => {}
                }
            }
            Some(keep)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(say(&boot, e)),
    };
    let tmp = stage(&boot, image).map_err(|e| say(&boot, e))?;
    let placed = (|| {
        if let Some(k) = &keep {
            fs::create_dir_all(k.parent().unwrap_or(esp)).map_err(|e| say(k, e))?;
            rename_synced(&boot, k).map_err(|e| say(k, e))?;
        }
        if let Err(e) = rename_synced(&tmp, &boot) {
            // Put the old one back rather than leave no loader at the path.
            if let Some(k) = &keep {
                let _ = fs::rename(k, &boot);
            }
            return Err(say(&boot, e));
        }
        Ok(())
    })();
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let record = esp.join(RECORD);
    let rec = stage(&record, format!("{new}\n").as_bytes()).and_then(|t| rename_synced(&t, &record));
    rec.map_err(|e| say(&record, e))?;
    Ok(Done::Installed { kept: keep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zroam-esp-install-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keeps_the_previous_and_what_others_wrote() {
        let d = esp("keep");
        // A loader someone else put there is kept once, never overwritten.
        fs::create_dir_all(d.join("EFI/BOOT")).unwrap();
        fs::write(d.join(BOOT), b"shim").unwrap();
        assert_eq!(install(&d, b"uki-1"), Ok(Done::Installed { kept: Some(d.join(ORIGINAL)) }));
        assert_eq!(fs::read(d.join(BOOT)).unwrap(), b"uki-1");
        assert_eq!(install(&d, b"uki-1"), Ok(Done::Unchanged));
        assert_eq!(install(&d, b"uki-2"), Ok(Done::Installed { kept: Some(d.join(PREVIOUS)) }));
        assert_eq!(install(&d, b"uki-3"), Ok(Done::Installed { kept: Some(d.join(PREVIOUS)) }));
        assert_eq!(fs::read(d.join(PREVIOUS)).unwrap(), b"uki-2");
        assert_eq!(fs::read(d.join(ORIGINAL)).unwrap(), b"shim");
        // Another tool replaced zroam's image: kept would overwrite the original: refused,
        // nothing changed.
        fs::write(d.join(BOOT), b"grub").unwrap();
        let e = install(&d, b"uki-4").unwrap_err();
        assert!(e.contains("not written by zroam"), "{e}");
        assert_eq!(fs::read(d.join(BOOT)).unwrap(), b"grub");
        assert_eq!(fs::read(d.join(ORIGINAL)).unwrap(), b"shim");
        let left: Vec<_> = fs::read_dir(d.join("EFI/zroam")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 3, "{left:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn first_install_on_an_empty_esp() {
        let d = esp("empty");
        assert_eq!(install(&d, b"uki"), Ok(Done::Installed { kept: None }));
        assert_eq!(fs::read_to_string(d.join(RECORD)).unwrap().trim(), hex(b"uki"));
        // Nothing left under a temporary name.
        let boot_dir: Vec<_> = fs::read_dir(d.join("EFI/BOOT")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(boot_dir, [std::ffi::OsString::from("BOOTX64.EFI")]);
        assert!(!on_fat(&d), "a temporary directory is not an ESP");
        fs::remove_dir_all(&d).unwrap();
    }
}
