//! Linux md RAID superblock recognition: metadata 1.0, 1.1, 1.2 and the older 0.90.
//! A 1.0 or 0.90 superblock sits near the end of the member, so an ESP (or /boot) mirrored
//! by mdraid still looks like a plain file system from the front; zroam must recognise it
//! to leave such members alone, since writing one member file by file would put it out of
//! step with its mirror behind md's back. 0.90 is what older mirrored /boot and ESP setups
//! use (it was mdadm's default, and bootloaders that cannot read md still see the file
//! system), so it is recognised too.

use crate::ondisk::blockdev::BlockSource;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

const MD_MAGIC: u32 = 0xa92b_4efc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct MdSuper {
    /// "0.90", "1.0", "1.1" or "1.2".
    pub metadata: String,
    pub array_uuid: Uuid,
    pub name: String,
    pub level: i32,
}

/// Parse a v1 superblock (first 256 bytes of it). Pure.
pub fn parse(b: &[u8], metadata: &str) -> Option<MdSuper> {
    if b.len() < 256 || u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != MD_MAGIC {
        return None;
    }
    if u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != 1 {
        return None;
    }
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[16..32]);
    let name_end = b[32..64].iter().position(|c| *c == 0).unwrap_or(32);
    Some(MdSuper {
        metadata: metadata.to_string(),
        array_uuid: Uuid::from_bytes(u),
        name: String::from_utf8_lossy(&b[32..32 + name_end]).into_owned(),
        level: i32::from_le_bytes([b[72], b[73], b[74], b[75]]),
    })
}

/// Byte offset of a 1.0 superblock on a device of `size` bytes: 8 KiB from the end,
/// rounded down to a 4 KiB boundary.
pub fn v10_offset(size: u64) -> Option<u64> {
    let sectors = size / 512;
    (sectors >= 16).then(|| ((sectors - 16) & !7) * 512)
}

/// Parse a 0.90 superblock (at least the first 64 bytes of mdp_super_t's generic
/// section). It is written in the creating host's byte order, told apart by the magic.
/// Pure.
pub fn parse_v090(b: &[u8]) -> Option<MdSuper> {
    let raw = |i: usize| -> Option<[u8; 4]> { b.get(i * 4..i * 4 + 4)?.try_into().ok() };
    let w0 = raw(0)?;
    let word: fn([u8; 4]) -> u32 = if u32::from_le_bytes(w0) == MD_MAGIC {
        u32::from_le_bytes
    } else if u32::from_be_bytes(w0) == MD_MAGIC {
        u32::from_be_bytes
    } else {
        return None;
    };
    let w = |i: usize| raw(i).map(word);
    if w(1)? != 0 || w(2)? != 90 {
        return None;
    }
    let mut u = [0u8; 16];
    for (k, i) in [5, 13, 14, 15].into_iter().enumerate() {
        u[k * 4..k * 4 + 4].copy_from_slice(&w(i)?.to_be_bytes());
    }
    Some(MdSuper { metadata: "0.90".to_string(), array_uuid: Uuid::from_bytes(u), name: format!("md{}", w(11)?), level: w(7)? as i32 })
}

/// Byte offset of a 0.90 superblock on a device of `size` bytes: the 64 KiB-aligned
/// 64 KiB block before the end (MD_NEW_SIZE_SECTORS). None below 128 sectors.
pub fn v090_offset(size: u64) -> Option<u64> {
    let sectors = size / 512;
    (sectors >= 128).then(|| ((sectors & !127) - 128) * 512)
}

/// Look for a v1.0, 0.90, 1.1 or 1.2 superblock, in that order (at most four small reads).
pub fn probe(src: &dyn BlockSource) -> Option<MdSuper> {
    let at = |off: u64, m: &str| src.read_vec(off, 256).ok().and_then(|b| parse(&b, m));
    let size = src.size();
    v10_offset(size)
        .and_then(|o| at(o, "1.0"))
        .or_else(|| v090_offset(size).and_then(|o| src.read_vec(o, 128).ok()).and_then(|b| parse_v090(&b)))
        .or_else(|| at(0, "1.1"))
        .or_else(|| at(4096, "1.2"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::blockdev::RegionSource;

    #[test]
    fn finds_v10_at_the_end() {
        let size = 64 * 1024 * 1024 + 3 * 512;
        let off = v10_offset(size).unwrap();
        assert_eq!(off % 4096, 0);
        assert!(size - off >= 8192 && size - off < 8192 + 4096);
        let mut sb = vec![0u8; 256];
        sb[0..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        sb[4..8].copy_from_slice(&1u32.to_le_bytes());
        sb[16..32].copy_from_slice(&[7; 16]);
        sb[32..37].copy_from_slice(b"esp:0");
        sb[72..76].copy_from_slice(&1i32.to_le_bytes());
        let src = RegionSource { size, regions: vec![(off, sb)] };
        let m = probe(&src).unwrap();
        assert_eq!((m.metadata.as_str(), m.name.as_str(), m.level), ("1.0", "esp:0", 1));
        assert_eq!(probe(&RegionSource { size, regions: vec![] }), None);
    }

    /// A 0.90 generic section: magic, version 0.90.0, uuid words, level, md_minor.
    fn v090(word: fn(u32) -> [u8; 4], minor: u32) -> Vec<u8> {
        let mut sb = vec![0u8; 4096];
        let words: [(usize, u32); 10] = [
            (0, MD_MAGIC),
            (1, 0),
            (2, minor),
            (5, 0x0123_4567),
            (7, 1),
            (9, 2),
            (11, 3),
            (13, 0x89ab_cdef),
            (14, 0xdead_beef),
            (15, 0x0011_2233),
        ];
        for (i, v) in words {
            sb[i * 4..i * 4 + 4].copy_from_slice(&word(v));
        }
        sb
    }

    #[test]
    fn finds_v090_in_either_byte_order() {
        // Not a multiple of 64 KiB, so the rounding down matters.
        let size = 64 * 1024 * 1024 + 77 * 512;
        let off = v090_offset(size).unwrap();
        assert_eq!(off, 64 * 1024 * 1024 - 64 * 1024);
        assert_eq!(off % 65536, 0);
        let want = Uuid::parse_str("01234567-89ab-cdef-dead-beef00112233").unwrap();
        for word in [u32::to_le_bytes as fn(u32) -> [u8; 4], u32::to_be_bytes] {
            let src = RegionSource { size, regions: vec![(off, v090(word, 90))] };
            let m = probe(&src).unwrap();
            assert_eq!(m, MdSuper { metadata: "0.90".into(), array_uuid: want, name: "md3".into(), level: 1 });
            // One sector off is not the superblock.
            let moved = RegionSource { size, regions: vec![(off + 512, v090(word, 90))] };
            assert_eq!(probe(&moved), None);
        }
    }

    #[test]
    fn v090_needs_minor_90_and_room() {
        let size = 8 * 1024 * 1024;
        let off = v090_offset(size).unwrap();
        for word in [u32::to_le_bytes as fn(u32) -> [u8; 4], u32::to_be_bytes] {
            assert_eq!(probe(&RegionSource { size, regions: vec![(off, v090(word, 91))] }), None);
            assert!(parse_v090(&v090(word, 90)).is_some());
            assert_eq!(parse_v090(&v090(word, 91)), None);
            for n in 0..64 {
                assert_eq!(parse_v090(&v090(word, 90)[..n]), None, "{n} bytes");
            }
        }
        assert_eq!(parse_v090(&[]), None);
        // Below 128 sectors there is no 0.90 place; nothing panics at any small size.
        assert_eq!(v090_offset(127 * 512 + 511), None);
        assert_eq!(v090_offset(128 * 512), Some(0));
        for size in (0..130 * 512).step_by(97) {
            let sb = v090(u32::to_le_bytes, 90);
            let src = RegionSource { size, regions: vec![(0, sb)] };
            let m = probe(&src);
            assert!(size >= 128 * 512 || m.is_none(), "{size}: {m:?}");
        }
    }
}
