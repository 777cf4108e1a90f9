//! FAT boot-sector recognition (EFI system partitions): type, volume serial, label.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Fat {
    /// "FAT12", "FAT16" or "FAT32".
    pub kind: String,
    /// Volume serial as blkid prints it (`ABCD-1234`).
    pub serial: String,
    pub label: String,
    pub bytes_per_sector: u16,
}

/// Recognise a FAT boot sector from the first 512 bytes of a partition. Pure.
pub fn parse(b: &[u8]) -> Option<Fat> {
    if b.len() < 512 || b[510] != 0x55 || b[511] != 0xaa {
        return None;
    }
    let bps = u16::from_le_bytes([b[11], b[12]]);
    if !(512..=4096).contains(&bps) || !bps.is_power_of_two() || b[13] == 0 || !b[13].is_power_of_two() {
        return None;
    }
    // FAT32 keeps its extended BPB at 64, FAT12/16 at 36; the type string says which.
    let (ebpb, kind) = if &b[82..87] == b"FAT32" {
        (64, "FAT32".to_string())
    } else if &b[54..59] == b"FAT12" || &b[54..59] == b"FAT16" {
        (36, String::from_utf8_lossy(&b[54..59]).into_owned())
    } else {
        return None;
    };
    let serial = u32::from_le_bytes([b[ebpb + 3], b[ebpb + 4], b[ebpb + 5], b[ebpb + 6]]);
    let label = String::from_utf8_lossy(&b[ebpb + 7..ebpb + 18]).trim_end().to_string();
    Some(Fat { kind, serial: format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff), label, bytes_per_sector: bps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat32_and_not_fat() {
        let mut b = vec![0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[82..90].copy_from_slice(b"FAT32   ");
        b[67..71].copy_from_slice(&0x1234_abcdu32.to_le_bytes());
        b[71..82].copy_from_slice(b"EFI        ");
        assert_eq!(parse(&b), None, "no 55AA signature");
        b[510] = 0x55;
        b[511] = 0xaa;
        let f = parse(&b).unwrap();
        assert_eq!((f.kind.as_str(), f.serial.as_str(), f.label.as_str()), ("FAT32", "1234-ABCD", "EFI"));
        b[13] = 3;
        assert_eq!(parse(&b), None, "sectors per cluster must be a power of two");
    }
}
