//! This system's hostid, and adopting a pool's. OpenZFS userspace reads
//! /sys/module/spl/parameters/spl_hostid first and /etc/hostid (4 bytes, little-endian) when
//! that is 0; the kernel uses spl_hostid. Adoption writes both.

use std::path::Path;

pub const SPL_PARAM: &str = "/sys/module/spl/parameters/spl_hostid";

/// /etc/hostid's format: the hostid as a native-endian (x86: little-endian) u32.
pub fn parse_file(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)).filter(|&h| h != 0)
}

pub fn parse_param(s: &str) -> Option<u32> {
    let s = s.trim();
    let v = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    u32::try_from(v).ok().filter(|&h| h != 0)
}

/// The hostid zpool will use: spl_hostid when set, else /etc/hostid.
pub fn current(root: &Path) -> Option<u32> {
    let param = root.join(SPL_PARAM.trim_start_matches('/'));
    if let Some(h) = std::fs::read_to_string(param).ok().as_deref().and_then(parse_param) {
        return Some(h);
    }
    std::fs::read(root.join("etc/hostid")).ok().as_deref().and_then(parse_file)
}

/// Make `h` this system's hostid for the import and for the booted system.
pub fn adopt(h: u32) -> std::io::Result<()> {
    std::fs::create_dir_all("/etc")?;
    std::fs::write("/etc/hostid", h.to_le_bytes())?;
    if Path::new(SPL_PARAM).exists() {
        std::fs::write(SPL_PARAM, h.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(parse_file(&[0x34, 0x12, 0xed, 0x5e]), Some(0x5eed1234));
        assert_eq!(parse_file(&[0, 0, 0, 0]), None);
        assert_eq!(parse_file(&[1]), None);
        assert_eq!(parse_param("1592594996\n"), Some(0x5eed1234));
        assert_eq!(parse_param("0"), None);
        assert_eq!(parse_param("99999999999"), None);
    }

    #[test]
    fn param_wins_over_file() {
        let d = std::env::temp_dir().join(format!("zroam-hostid-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/hostid"), 0x5eed1234u32.to_le_bytes()).unwrap();
        assert_eq!(current(&d), Some(0x5eed1234));
        let p = d.join(SPL_PARAM.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "0\n").unwrap();
        assert_eq!(current(&d), Some(0x5eed1234));
        std::fs::write(&p, "195939070\n").unwrap();
        assert_eq!(current(&d), Some(0x0badcafe));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
