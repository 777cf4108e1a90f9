//! Key hooks: executables in `/etc/zroam/key.d/`, tried in name order before anyone is
//! asked. Each gets the target on its command line (`luks UUID DEVICE` or `zfs ROOT`) and
//! in `ZROAM_KEY_KIND`/`ZROAM_KEY_TARGET`/`ZROAM_KEY_DEVICE`, and prints the key on its
//! stdout. A hook that fails, times out or prints nothing is logged and skipped.

use crate::keys::ask::Secret;
use crate::keys::keyfile::MAX_KEY;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DIR: &str = "/etc/zroam/key.d";

/// A TPM unseal or a network key server answers in seconds; one that does not within this
/// costs the boot no more.
const HOOK_BOUND: Duration = Duration::from_secs(30);

/// More hooks than this are not run (a directory is not a program list).
const MAX_HOOKS: usize = 32;

/// What a hook is asked for.
pub enum Target<'a> {
    Luks { uuid: &'a str, device: &'a str },
    Zfs { root: &'a str },
}

/// The hooks in `dir`: executable regular files, by name, skipping dotfiles and editor
/// leftovers (`~`, `.dpkg-*`) as run-parts does.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !n.starts_with('.') && !n.ends_with('~') && !n.contains(".dpkg-")
        })
        .map(|e| e.path())
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .collect();
    v.sort();
    v.truncate(MAX_HOOKS);
    v
}

/// Run every hook for `t`; the keys they gave, each labelled with the hook's name, and a
/// note for each that failed.
pub fn keys_for(dir: &Path, t: &Target, notes: &mut Vec<String>) -> Vec<(String, Secret)> {
    let (kind, target, device) = match t {
        Target::Luks { uuid, device } => ("luks", *uuid, *device),
        Target::Zfs { root } => ("zfs", *root, ""),
    };
    let mut out = Vec::new();
    for h in list(dir) {
        let name = h.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut args = vec![kind.to_string(), target.to_string()];
        if !device.is_empty() {
            args.push(device.to_string());
        }
        let env = [("ZROAM_KEY_KIND", kind), ("ZROAM_KEY_TARGET", target), ("ZROAM_KEY_DEVICE", device)];
        let (o, key) = crate::sys::run::run_secret(&h.display().to_string(), &args, &env, HOOK_BOUND, MAX_KEY as usize);
        let label = format!("key hook {name}");
        if !o.ok() {
            let m = format!("{label} failed for {target}: {}", if o.said().is_empty() { format!("exit {:?}", o.code) } else { o.said() });
            log::warn!("{m}");
            notes.push(m);
        } else if key.is_empty() {
            notes.push(format!("{label} printed no key for {target}"));
        } else {
            log::info!("{label} gave a key for {target}");
            out.push((label, key));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hook(dir: &Path, name: &str, body: &str, mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn hooks_run_in_order_and_failures_are_skipped() {
        let dir = std::env::temp_dir().join(format!("zroam-keyd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        hook(&dir, "10-fails", "echo no tpm here >&2; exit 1", 0o755);
        hook(&dir, "20-gives", "printf 'key-for-%s-%s' \"$1\" \"$ZROAM_KEY_TARGET\"", 0o755);
        hook(&dir, "30-raw", "printf '\\001\\000\\377'", 0o755);
        hook(&dir, "40-silent", "exit 0", 0o755);
        hook(&dir, "50-not-executable", "echo x", 0o644);
        hook(&dir, "60-backup~", "echo x", 0o755);
        let mut notes = Vec::new();
        let got = keys_for(&dir, &Target::Zfs { root: "rpool/enc" }, &mut notes);
        let labels: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["key hook 20-gives", "key hook 30-raw"]);
        assert_eq!(&got[0].1[..], b"key-for-zfs-rpool/enc");
        // Raw key bytes come through untouched (no text conversion).
        assert_eq!(&got[1].1[..], &[1, 0, 255]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("10-fails") && notes[0].contains("no tpm here"), "{notes:?}");
        assert!(notes[1].contains("40-silent"), "{notes:?}");
        let luks = keys_for(&dir, &Target::Luks { uuid: "0b1e", device: "/dev/vda2" }, &mut Vec::new());
        assert_eq!(&luks[0].1[..], b"key-for-luks-0b1e");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(list(&dir).is_empty(), "a missing directory is no hooks");
    }
}
