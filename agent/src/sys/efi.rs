//! Which ESP the firmware booted, from EFI variables. Parsers are pure (bytes in); `booted_esp`
//! reads efivarfs. Never guesses: no variable, no answer.

use serde::{Deserialize, Serialize};
use std::path::Path;
use uuid::Uuid;

const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// efivarfs files are small; a longer one is not what we are looking for.
const MAX_VAR: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootedEsp {
    pub partuuid: Uuid,
    /// Which variable said so.
    pub source: String,
}

/// `LoaderDevicePartUUID`: 4 attribute bytes, then the PARTUUID as UTF-16LE text.
pub fn parse_loader_partuuid(var: &[u8]) -> Option<Uuid> {
    let text = utf16z(var.get(4..)?);
    Uuid::parse_str(text.trim()).ok()
}

/// `BootCurrent`: 4 attribute bytes, then a little-endian u16.
pub fn parse_boot_current(var: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes(var.get(4..6)?.try_into().ok()?))
}

fn utf16z(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}

/// The partition GUID of the first hard-drive media node (type 4, subtype 1, GPT signature)
/// in a `Boot####` load option (attribute bytes included).
pub fn parse_load_option_partuuid(var: &[u8]) -> Option<Uuid> {
    let opt = var.get(4..)?;
    let path_len = u16::from_le_bytes(opt.get(4..6)?.try_into().ok()?) as usize;
    // The description is NUL-terminated UTF-16 after the 6-byte header.
    let mut i = 6;
    loop {
        let u = opt.get(i..i + 2)?;
        i += 2;
        if u == [0, 0] {
            break;
        }
    }
    let mut path = opt.get(i..i.checked_add(path_len)?)?;
    while path.len() >= 4 {
        let (ty, sub) = (path[0], path[1]);
        let len = u16::from_le_bytes([path[2], path[3]]) as usize;
        if len < 4 || len > path.len() {
            return None;
        }
        if ty == 0x7f && sub == 0xff {
            return None;
        }
        // HD(): partition number u32, start u64, size u64, signature[16], format u8, sigtype u8.
        if ty == 4 && sub == 1 && len >= 42 && path[41] == 2 {
            return Some(Uuid::from_bytes_le(path[24..40].try_into().ok()?));
        }
        path = &path[len..];
    }
    None
}

fn read_var(dir: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(dir.join(name)).ok()?;
    let mut v = Vec::new();
    f.take(MAX_VAR).read_to_end(&mut v).ok()?;
    Some(v)
}

/// The ESP the firmware booted: systemd-boot's `LoaderDevicePartUUID`, else the device path
/// of `BootCurrent`'s load option. `dir` is the efivarfs mount.
pub fn booted_esp(dir: &Path) -> Option<BootedEsp> {
    let name = format!("LoaderDevicePartUUID-{LOADER_GUID}");
    if let Some(u) = read_var(dir, &name).as_deref().and_then(parse_loader_partuuid) {
        return Some(BootedEsp { partuuid: u, source: name });
    }
    let cur = read_var(dir, &format!("BootCurrent-{GLOBAL_GUID}")).as_deref().and_then(parse_boot_current)?;
    let name = format!("Boot{cur:04X}-{GLOBAL_GUID}");
    let u = read_var(dir, &name).as_deref().and_then(parse_load_option_partuuid)?;
    Some(BootedEsp { partuuid: u, source: format!("BootCurrent -> {name}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn loader_partuuid() {
        // As measured in the lab: attributes, upper-case UTF-16LE, NUL.
        let mut v = vec![6, 0, 0, 0];
        v.extend(utf16("0F5E3C0A-1B2C-4D5E-8F90-A1B2C3D4E5F6"));
        let u = parse_loader_partuuid(&v).unwrap();
        assert_eq!(u.to_string(), "0f5e3c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6");
        assert_eq!(parse_loader_partuuid(&[6, 0, 0, 0, b'x', 0]), None);
        assert_eq!(parse_loader_partuuid(&[6]), None);
    }

    #[test]
    fn load_option_hd_node() {
        let guid = Uuid::parse_str("0f5e3c0a-1b2c-4d5e-8f90-a1b2c3d4e5f6").unwrap();
        let mut hd = vec![4u8, 1, 42, 0];
        hd.extend(1u32.to_le_bytes());
        hd.extend(2048u64.to_le_bytes());
        hd.extend(131072u64.to_le_bytes());
        hd.extend(guid.to_bytes_le());
        hd.extend([2, 2]);
        // A file-path node after it, then the end node.
        let mut fp = vec![4u8, 4];
        let name = utf16("\\EFI\\BOOT\\BOOTX64.EFI");
        fp.extend(((4 + name.len()) as u16).to_le_bytes());
        fp.extend(name);
        let path: Vec<u8> = [hd, fp, vec![0x7f, 0xff, 4, 0]].concat();
        let mut v = vec![7, 0, 0, 0];
        v.extend(1u32.to_le_bytes());
        v.extend((path.len() as u16).to_le_bytes());
        v.extend(utf16("Linux Boot Manager"));
        v.extend(&path);
        assert_eq!(parse_load_option_partuuid(&v), Some(guid));
        assert_eq!(parse_boot_current(&[7, 0, 0, 0, 0x0a, 0]), Some(10));
        // Truncated anywhere: no answer, no panic.
        for n in 0..v.len() {
            let _ = parse_load_option_partuuid(&v[..n]);
        }
        // An MBR-signature HD node is not a GPT PARTUUID.
        let mut mbr = v.clone();
        let sig_at = v.len() - path.len() + 41;
        mbr[sig_at] = 1;
        assert_eq!(parse_load_option_partuuid(&mbr), None);
    }
}
