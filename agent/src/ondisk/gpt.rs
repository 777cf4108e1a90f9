//! GUID Partition Table reader: header and entry array, CRC-checked, primary first and the
//! backup at the end of the disk when the primary is damaged. Sizes come from a hostile
//! disk, so the entry array is capped before it is read.

use crate::ondisk::blockdev::BlockSource;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

/// The GPT's CRC-32 (the IEEE/zlib one), with a 1 KiB table: a header and at most 16 KiB
/// of entries per disk do not need the 16 KiB table of a faster implementation.
const CRC32: crc::Crc<u32, crc::Table<1>> = crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

/// Largest entry array read (the usual one is 128 × 128 = 16 KiB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 20;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER: usize = 92;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GptError {
    #[error("no GPT signature")]
    NoSignature,
    #[error("GPT header: {0}")]
    BadHeader(&'static str),
    #[error("GPT header CRC mismatch")]
    HeaderCrc,
    #[error("GPT entry array CRC mismatch")]
    EntriesCrc,
    #[error("GPT read failed: {0}")]
    Read(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    Esp,
    /// Solaris /usr & Apple ZFS (sgdisk BF01), what OpenZFS uses on Linux.
    Zfs,
    FreebsdZfs,
    SolarisRoot,
    /// The 8 MiB partition 9 OpenZFS leaves on whole-disk vdevs.
    SolarisReserved,
    LinuxRaid,
    Luks,
    LinuxFs,
    LinuxSwap,
    LinuxLvm,
    Xbootldr,
    BiosBoot,
    Other,
}

const KINDS: &[(&str, PartKind)] = &[
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", PartKind::Esp),
    ("6a898cc3-1dd2-11b2-99a6-080020736631", PartKind::Zfs),
    ("516e7cba-6ecf-11d6-8ff8-00022d09712b", PartKind::FreebsdZfs),
    ("6a85cf4d-1dd2-11b2-99a6-080020736631", PartKind::SolarisRoot),
    ("6a945a3b-1dd2-11b2-99a6-080020736631", PartKind::SolarisReserved),
    ("a19d880f-05fc-4d3b-a006-743f0f84911e", PartKind::LinuxRaid),
    ("ca7d7ccb-63ed-4c53-861c-1742536059cc", PartKind::Luks),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", PartKind::LinuxFs),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", PartKind::LinuxSwap),
    ("e6d6d379-f507-44c2-a23c-238f2a3df928", PartKind::LinuxLvm),
    ("bc13c2ff-59e6-4262-a352-b275fd6f7172", PartKind::Xbootldr),
    ("21686148-6449-6e6f-744e-656564454649", PartKind::BiosBoot),
];

pub fn kind_of(type_guid: &Uuid) -> PartKind {
    let s = type_guid.hyphenated().to_string();
    KINDS.iter().find(|(g, _)| *g == s).map(|(_, k)| *k).unwrap_or(PartKind::Other)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Partition {
    /// 1-based, as the kernel numbers GPT partitions (entry index + 1).
    pub number: u32,
    pub type_guid: Uuid,
    pub kind: PartKind,
    pub partuuid: Uuid,
    pub name: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Gpt {
    pub disk_guid: Uuid,
    pub sector_size: u32,
    /// True when the primary header was damaged and the backup was used.
    pub from_backup: bool,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub disk_guid: Uuid,
    pub entry_lba: u64,
    pub entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn guid(b: &[u8], at: usize) -> Uuid {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Uuid::from_bytes_le(a)
}

/// Parse a header sector read from `lba`. Pure.
pub fn parse_header(sector: &[u8], lba: u64) -> Result<Header, GptError> {
    if sector.len() < MIN_HEADER || &sector[..8] != SIGNATURE {
        return Err(GptError::NoSignature);
    }
    let size = le32(sector, 12) as usize;
    if size < MIN_HEADER || size > sector.len() {
        return Err(GptError::BadHeader("header size out of range"));
    }
    let mut h = CRC32.digest();
    h.update(&sector[..16]);
    h.update(&[0; 4]);
    h.update(&sector[20..size]);
    if h.finalize() != le32(sector, 16) {
        return Err(GptError::HeaderCrc);
    }
    let hdr = Header {
        my_lba: le64(sector, 24),
        alternate_lba: le64(sector, 32),
        disk_guid: guid(sector, 56),
        entry_lba: le64(sector, 72),
        entries: le32(sector, 80),
        entry_size: le32(sector, 84),
        entries_crc: le32(sector, 88),
    };
    if hdr.my_lba != lba {
        return Err(GptError::BadHeader("header does not describe its own location"));
    }
    if hdr.entry_size < 128 || !hdr.entry_size.is_power_of_two() {
        return Err(GptError::BadHeader("entry size is not 128 × 2^n"));
    }
    if u64::from(hdr.entries) * u64::from(hdr.entry_size) > MAX_ENTRY_BYTES {
        return Err(GptError::BadHeader("entry array larger than 1 MiB"));
    }
    Ok(hdr)
}

/// Parse the entry array of `hdr`. Pure.
pub fn parse_entries(hdr: &Header, bytes: &[u8]) -> Result<Vec<Partition>, GptError> {
    let len = hdr.entries as usize * hdr.entry_size as usize;
    if bytes.len() < len {
        return Err(GptError::BadHeader("entry array truncated"));
    }
    if crc32(&bytes[..len]) != hdr.entries_crc {
        return Err(GptError::EntriesCrc);
    }
    let mut parts = Vec::new();
    for (i, e) in bytes[..len].chunks_exact(hdr.entry_size as usize).enumerate() {
        let type_guid = guid(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let units: Vec<u16> = e[56..128].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|u| *u != 0).collect();
        parts.push(Partition {
            number: i as u32 + 1,
            type_guid,
            kind: kind_of(&type_guid),
            partuuid: guid(e, 16),
            name: String::from_utf16_lossy(&units),
            first_lba: le64(e, 32),
            last_lba: le64(e, 40),
            attributes: le64(e, 48),
        });
    }
    Ok(parts)
}

fn read_at_lba(src: &dyn BlockSource, lba: u64, sector: u32) -> Result<Gpt, GptError> {
    let ss = u64::from(sector);
    let off = lba.checked_mul(ss).ok_or(GptError::BadHeader("LBA out of range"))?;
    let hs = src.read_vec(off, sector as usize).map_err(|e| GptError::Read(e.to_string()))?;
    let hdr = parse_header(&hs, lba)?;
    let len = u64::from(hdr.entries) * u64::from(hdr.entry_size);
    let eoff = hdr.entry_lba.checked_mul(ss).ok_or(GptError::BadHeader("entry LBA out of range"))?;
    let bytes = src.read_vec(eoff, len as usize).map_err(|e| GptError::Read(e.to_string()))?;
    Ok(Gpt { disk_guid: hdr.disk_guid, sector_size: sector, from_backup: lba != 1, partitions: parse_entries(&hdr, &bytes)? })
}

/// Read the GPT of a disk with the given logical sector size: the primary at LBA 1, else
/// the backup in the last sector. The error returned is the primary's.
pub fn read(src: &dyn BlockSource, sector: u32) -> Result<Gpt, GptError> {
    let primary = read_at_lba(src, 1, sector);
    if primary.is_ok() || primary == Err(GptError::NoSignature) && src.size() < 2 * u64::from(sector) {
        return primary;
    }
    let last = (src.size() / u64::from(sector)).saturating_sub(1);
    match read_at_lba(src, last, sector) {
        Ok(g) => Ok(g),
        Err(_) => primary,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ondisk::blockdev::RegionSource;

    /// Build a one-sided GPT (header at `lba`, entries right after or before it).
    pub fn build(parts: &[(Uuid, Uuid, u64, u64, &str)], disk: Uuid, lba: u64, entry_lba: u64) -> (Vec<u8>, Vec<u8>) {
        let mut entries = vec![0u8; 128 * 128];
        for (i, (t, u, first, last, name)) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&t.to_bytes_le());
            e[16..32].copy_from_slice(&u.to_bytes_le());
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, c) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
            }
        }
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&lba.to_le_bytes());
        h[56..72].copy_from_slice(&disk.to_bytes_le());
        h[72..80].copy_from_slice(&entry_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        (h, entries)
    }

    #[test]
    fn primary_then_backup() {
        let esp = Uuid::parse_str("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        let zfs = Uuid::parse_str("6a898cc3-1dd2-11b2-99a6-080020736631").unwrap();
        let u1 = Uuid::from_u128(1);
        let u2 = Uuid::from_u128(2);
        let disk = Uuid::from_u128(0xd15c);
        let parts = [(esp, u1, 2048, 4095, "EFI"), (zfs, u2, 4096, 8191, "zfs")];
        let size = 10_000 * 512u64;
        let last = size / 512 - 1;
        let (ph, pe) = build(&parts, disk, 1, 2);
        let (bh, be) = build(&parts, disk, last, last - 32);
        let mut src = RegionSource { size, regions: vec![(512, ph), (1024, pe), ((last - 32) * 512, be), (last * 512, bh)] };
        let g = read(&src, 512).unwrap();
        assert!(!g.from_backup);
        assert_eq!(g.disk_guid, disk);
        assert_eq!(g.partitions.len(), 2);
        assert_eq!((g.partitions[0].kind, g.partitions[0].partuuid, g.partitions[0].name.as_str()), (PartKind::Esp, u1, "EFI"));
        assert_eq!((g.partitions[1].number, g.partitions[1].kind, g.partitions[1].first_lba), (2, PartKind::Zfs, 4096));
        // Damage the primary entry array: the backup is used.
        src.regions[1].1[200] ^= 1;
        let g = read(&src, 512).unwrap();
        assert!(g.from_backup);
        assert_eq!(g.partitions.len(), 2);
        // Damage both: the primary's error is reported.
        src.regions[2].1[200] ^= 1;
        assert_eq!(read(&src, 512), Err(GptError::EntriesCrc));
    }

    #[test]
    fn hostile_header_sizes() {
        let (mut h, _) = build(&[], Uuid::nil(), 1, 2);
        h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = {
            h[16..20].fill(0);
            crc32(&h[..92])
        };
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(parse_header(&h, 1), Err(GptError::BadHeader("entry array larger than 1 MiB")));
        assert_eq!(parse_header(&h[..50], 1), Err(GptError::NoSignature));
        assert_eq!(parse_header(&h, 2), Err(GptError::BadHeader("header does not describe its own location")));
        h[20] = 1; // inside the CRC'd range
        assert_eq!(parse_header(&h, 1), Err(GptError::HeaderCrc));
    }
}
