//! `zroam image`: zroam's own ramdisk (zroam as /init) built from the running system's
//! files, reproducibly, and optionally wrapped with the kernel into one EFI file installed
//! at an ESP's removable-media path: a ZFS stick that boots on any UEFI machine.
//!
//! - `select`: which modules, libraries and compression (pure, over the tools' answers);
//! - `cpio`: the archive, the same bytes for the same tree;
//! - `build`: stages the tree with the host's tools and writes the archive;
//! - `uki`: the unified kernel image's layout (pure) and its assembly with objcopy;
//! - `install`: the image on an ESP, keeping what was there;
//! - `conf`: `/etc/zroam/image.conf`, for the kernel hooks.

pub mod build;
pub mod conf;
pub mod cpio;
pub mod install;
pub mod select;
pub mod uki;

use std::path::Path;

/// Assembles `out` from systemd's EFI stub, the kernel, the ramdisk, the command line and
/// os-release (written beside `out`, then renamed over it).
pub fn assemble_uki(stub: &Path, kernel: &Path, initrd: &Path, cmdline: &str, osrel: &Path, time: u32, out: &Path) -> Result<(), String> {
    let sb = std::fs::read(stub).map_err(|e| format!("{}: {e} (Debian: apt install systemd-boot-efi)", stub.display()))?;
    let s = uki::stub(&sb).ok_or_else(|| format!("{} is not a 64-bit EFI program", stub.display()))?;
    let tmp = build::Stage::new()?;
    let cmd = tmp.0.join("cmdline");
    std::fs::write(&cmd, cmdline.trim()).map_err(|e| e.to_string())?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(|e| format!("{}: {e}", p.display()));
    let ps = |p: &Path| p.to_string_lossy().into_owned();
    let (osrel_s, cmd_s, initrd_s, kernel_s) = (ps(osrel), ps(&cmd), ps(initrd), ps(kernel));
    let sections = [
        (".osrel", osrel_s.as_str(), size(osrel)?),
        (".cmdline", cmd_s.as_str(), size(&cmd)?),
        (".initrd", initrd_s.as_str(), size(initrd)?),
        (".linux", kernel_s.as_str(), size(kernel)?),
    ];
    let new = out.with_extension("zroam-new");
    let args = uki::objcopy_args(&s, &sections, &ps(stub), &ps(&new));
    let o = std::process::Command::new("objcopy")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run objcopy (Debian: apt install binutils): {e}"))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&new);
        return Err(format!("objcopy failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    let mut b = std::fs::read(&new).map_err(|e| format!("{}: {e}", new.display()))?;
    let stamped = uki::stamp(&mut b, time).ok_or_else(|| "objcopy wrote no PE image".to_string());
    let written = stamped.and_then(|_| std::fs::write(&new, &b).map_err(|e| format!("{}: {e}", new.display())));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&new);
        return Err(e);
    }
    std::fs::rename(&new, out).map_err(|e| format!("{}: {e}", out.display()))
}
