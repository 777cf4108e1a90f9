//! Key files: named on the command line (`zroam.key=`, `rd.luks.key=`) or by a dataset's
//! `keylocation=file://`, read from the ramdisk or from a FAT partition (the ESP). Bounded
//! reads; the bytes live in zeroed-on-drop memory.

use crate::decide::cmdline::KeySpec;
use crate::keys::ask::Secret;
use crate::probe::ProbeReport;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Larger files are not keys (LUKS key files are commonly 512 B-8 KiB, ZFS raw keys 32 B).
pub const MAX_KEY: u64 = 64 * 1024;

/// Where ESPs are usually mounted on the booted system: a keylocation under one of these
/// is looked for at the rest of its path on the ESPs.
const ESP_MOUNTS: &[&str] = &["/boot/efi/", "/efi/", "/boot/"];

/// The path on an ESP for a path of the booted system, if it lies under an ESP mount.
pub fn esp_relative(path: &str) -> Option<&str> {
    ESP_MOUNTS.iter().find_map(|m| path.strip_prefix(m)).filter(|r| !r.is_empty())
}

/// The partition a key device spec names: `PARTUUID=…`, `/dev/…`, or `esp` (every ESP,
/// those of `prefer` disks first). Pure.
pub fn devices_for(spec: &str, rep: &ProbeReport, prefer: &[String]) -> Vec<String> {
    if let Some(u) = spec.strip_prefix("PARTUUID=") {
        return rep
            .devices
            .iter()
            .filter(|d| d.gpt_entry.as_ref().is_some_and(|p| p.partuuid.to_string().eq_ignore_ascii_case(u)))
            .map(|d| d.dev.node.clone())
            .collect();
    }
    if spec.starts_with("/dev/") {
        return vec![spec.to_string()];
    }
    if spec.eq_ignore_ascii_case("esp") {
        let mut esps: Vec<(bool, String)> = rep
            .devices
            .iter()
            .filter(|d| d.is_esp())
            .map(|d| (!d.dev.parent.as_ref().is_some_and(|p| prefer.contains(p)), d.dev.node.clone()))
            .collect();
        esps.sort();
        return esps.into_iter().map(|(_, n)| n).collect();
    }
    Vec::new()
}

/// Read a key file, refusing anything larger than a key.
pub fn read(path: &Path) -> Result<Secret, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = Zeroizing::new(Vec::new());
    f.take(MAX_KEY + 1).read_to_end(&mut v).map_err(|e| format!("{}: {e}", path.display()))?;
    if v.len() as u64 > MAX_KEY {
        return Err(format!("{}: larger than {MAX_KEY} bytes, not a key", path.display()));
    }
    Ok(v)
}

/// Read `rel` from a FAT partition mounted read-only for the moment.
pub fn read_on(node: &str, rel: &str, base: &Path) -> Result<Secret, String> {
    crate::esp::sync::load_fat_modules();
    let dir: PathBuf = base.join(node.trim_start_matches("/dev/").replace('/', "_"));
    let m = crate::esp::sync::Mounted::new(node, dir, true).map_err(|e| e.to_string())?;
    read(&m.dir.join(rel.trim_start_matches('/')))
}

/// Read `rel` from the first of `nodes` that has it; returns that node and the key.
pub fn read_first(nodes: &[String], rel: &str, base: &Path) -> Result<(String, Secret), String> {
    let mut last = format!("{rel}: no device to read it from");
    for n in nodes {
        match read_on(n, rel, base) {
            Ok(s) => return Ok((n.clone(), s)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A command-line key: from its device when it names one, else from the ramdisk.
pub fn load_spec(k: &KeySpec, rep: &ProbeReport, prefer: &[String], base: &Path) -> Result<Secret, String> {
    let Some(dev) = &k.device else { return read(Path::new(&k.path)) };
    let nodes = devices_for(dev, rep, prefer);
    if nodes.is_empty() {
        return Err(format!("{dev}: no such device (for key {})", k.path));
    }
    read_first(&nodes, &k.path, base).map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_paths() {
        assert_eq!(esp_relative("/boot/efi/keys/rpool.key"), Some("keys/rpool.key"));
        assert_eq!(esp_relative("/efi/k"), Some("k"));
        assert_eq!(esp_relative("/boot/k"), Some("k"));
        assert_eq!(esp_relative("/etc/zfs/keys/k"), None);
        assert_eq!(esp_relative("/boot/efi/"), None);
    }

    #[test]
    fn oversized_files_are_not_keys() {
        let p = std::env::temp_dir().join(format!("zroam-key-{}", std::process::id()));
        std::fs::write(&p, vec![7u8; 32]).unwrap();
        assert_eq!(read(&p).unwrap().len(), 32);
        std::fs::write(&p, vec![7u8; MAX_KEY as usize + 1]).unwrap();
        assert!(read(&p).unwrap_err().contains("not a key"));
        std::fs::remove_file(&p).unwrap();
    }
}
