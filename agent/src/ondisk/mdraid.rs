//! Linux md RAID superblock (v1.x) recognition. A metadata 1.0 superblock sits near the
//! end of the member, so an ESP mirrored by mdraid still looks like plain FAT from the
//! front; zroam must recognise it to leave such ESPs alone.

use crate::ondisk::blockdev::BlockSource;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

const MD_MAGIC: u32 = 0xa92b_4efc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct MdSuper {
    /// "1.0", "1.1" or "1.2".
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

/// Look for a v1.0, 1.1 or 1.2 superblock.
pub fn probe(src: &dyn BlockSource) -> Option<MdSuper> {
    let at = |off: u64, m: &str| src.read_vec(off, 256).ok().and_then(|b| parse(&b, m));
    v10_offset(src.size()).and_then(|o| at(o, "1.0")).or_else(|| at(0, "1.1")).or_else(|| at(4096, "1.2"))
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
}
