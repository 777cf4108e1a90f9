//! ZFS vdev labels: where the four copies live, how each is verified, which one is kept.
//!
//! A device carries four 256 KiB labels, two at the start and two at the end of its size
//! rounded down to a multiple of 256 KiB. Each label holds a packed nvlist (the config) in
//! a 112 KiB area at offset 16 KiB and a 128 KiB ring of uberblocks at offset 128 KiB. Both
//! carry an embedded SHA-256 checksum whose verifier is the block's byte offset on the
//! device, so a label copied or read at the wrong offset never verifies.

use crate::ondisk::blockdev::BlockSource;
use crate::ondisk::nvlist::{self, NvList};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const LABEL_SIZE: u64 = 256 * 1024;
pub const LABELS: usize = 4;
pub const PHYS_OFFSET: usize = 16 * 1024;
pub const PHYS_SIZE: usize = 112 * 1024;
pub const RING_OFFSET: usize = 128 * 1024;
const RING_SIZE: usize = 128 * 1024;
/// zio_eck_t: magic (8 bytes) then a 4-word checksum, at the end of a checksummed block.
pub const ECK_SIZE: usize = 40;
const ECK_MAGIC: u64 = 0x0210_da7a_b10c_7a11;
const UB_MAGIC: u64 = 0x00ba_b10c;
const MMP_MAGIC: u64 = 0xa11c_ea11;
const UB_SHIFT_MIN: u32 = 10;
const UB_SHIFT_MAX: u32 = 13;

/// Byte offsets of the four labels on a device of `size` bytes, or None when the device
/// is too small to hold them.
pub fn label_offsets(size: u64) -> Option<[u64; LABELS]> {
    let aligned = size - size % LABEL_SIZE;
    if aligned < LABELS as u64 * LABEL_SIZE {
        return None;
    }
    Some([0, LABEL_SIZE, aligned - 2 * LABEL_SIZE, aligned - LABEL_SIZE])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }
    fn bytes(self, v: u64) -> [u8; 8] {
        match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        }
    }
    /// Which byte order makes `b` read as `magic`, if any.
    fn detect(b: &[u8], magic: u64) -> Option<Endian> {
        [Endian::Little, Endian::Big].into_iter().find(|e| e.u64(b) == magic)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum BlockError {
    /// All zeros: never written (or wiped).
    Blank,
    /// Not zeros, but no checksum trailer: something else lives here.
    NoMagic,
    BadChecksum,
}

/// Verify a block protected by ZFS's embedded "label" checksum, whose verifier is the
/// block's byte offset on the vdev. Returns the byte order the block was written in.
pub fn verify_embedded(block: &[u8], offset: u64) -> Result<Endian, BlockError> {
    let (e, h) = hash_prefix(block)?;
    finish_embedded(block, offset, e, h)
}

/// Whether a block is all zeros, 64 bytes at a time (a byte loop over a label's config
/// area costs milliseconds under emulation).
fn all_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |a, x| a | x) == 0) && chunks.remainder().iter().all(|x| *x == 0)
}

/// The byte order and the SHA-256 state over everything the checksum covers before the
/// verifier: identical blocks at different offsets (the four label copies) share it.
fn hash_prefix(block: &[u8]) -> Result<(Endian, Sha256), BlockError> {
    if block.len() < ECK_SIZE {
        return Err(BlockError::NoMagic);
    }
    let eck = block.len() - ECK_SIZE;
    let Some(e) = Endian::detect(&block[eck..], ECK_MAGIC) else {
        return Err(if all_zero(block) { BlockError::Blank } else { BlockError::NoMagic });
    };
    let mut h = Sha256::new();
    h.update(&block[..eck + 8]);
    Ok((e, h))
}

/// Completes the checksum with the verifier (offset, 0, 0, 0) in the checksum slot, as it
/// was computed, and compares it with the block's stored checksum.
fn finish_embedded(block: &[u8], offset: u64, e: Endian, mut h: Sha256) -> Result<Endian, BlockError> {
    let eck = block.len() - ECK_SIZE;
    h.update(e.bytes(offset));
    h.update([0u8; 24]);
    let digest = h.finalize();
    let ok = (0..4).all(|i| {
        let stored = e.u64(&block[eck + 8 + 8 * i..]);
        let mut w = [0u8; 8];
        w.copy_from_slice(&digest[8 * i..8 * i + 8]);
        stored == u64::from_be_bytes(w)
    });
    if ok {
        Ok(e)
    } else {
        Err(BlockError::BadChecksum)
    }
}

/// Write a valid embedded checksum trailer (the inverse of `verify_embedded`). Used to
/// build test labels and to let the fuzzer reach the code behind the checksum.
pub fn seal_embedded(block: &mut [u8], offset: u64, e: Endian) {
    if block.len() < ECK_SIZE {
        return;
    }
    let eck = block.len() - ECK_SIZE;
    block[eck..eck + 8].copy_from_slice(&e.bytes(ECK_MAGIC));
    block[eck + 8..eck + 16].copy_from_slice(&e.bytes(offset));
    block[eck + 16..].fill(0);
    let d = Sha256::digest(&*block);
    for i in 0..4 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[8 * i..8 * i + 8]);
        block[eck + 8 + 8 * i..eck + 16 + 8 * i].copy_from_slice(&e.bytes(u64::from_be_bytes(w)));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Mmp {
    /// Nanoseconds since the last multihost write, as the writer recorded it; 0 = MMP off.
    pub delay_ns: u64,
    pub interval_ms: Option<u64>,
    pub seq: Option<u64>,
    pub fail_intervals: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Uberblock {
    pub label: u8,
    pub slot: u32,
    pub txg: u64,
    pub timestamp: u64,
    pub guid_sum: u64,
    pub version: u64,
    pub checkpoint_txg: u64,
    pub mmp: Option<Mmp>,
}

impl Uberblock {
    /// Order used to pick the active uberblock: txg, then timestamp, then MMP sequence.
    fn rank(&self) -> (u64, u64, u64) {
        (self.txg, self.timestamp, self.mmp.as_ref().and_then(|m| m.seq).unwrap_or(0))
    }

    fn parse(b: &[u8], e: Endian, label: u8, slot: u32) -> Option<Uberblock> {
        let w = |i: usize| e.u64(&b[i * 8..]);
        if w(0) != UB_MAGIC || w(2) == 0 {
            return None;
        }
        // Words: 0 magic, 1 version, 2 txg, 3 guid_sum, 4 timestamp, 5..21 root blkptr,
        // 21 software version, 22 mmp magic, 23 mmp delay, 24 mmp config, 25 checkpoint txg.
        let mmp = (w(22) == MMP_MAGIC).then(|| {
            let cfg = w(24);
            Mmp {
                delay_ns: w(23),
                interval_ms: (cfg & 1 != 0).then_some((cfg >> 8) & 0xff_ffff),
                seq: (cfg & 2 != 0).then_some((cfg >> 32) & 0xffff),
                fail_intervals: (cfg & 4 != 0).then_some(cfg >> 48),
            }
        });
        Some(Uberblock { label, slot, txg: w(2), timestamp: w(4), guid_sum: w(3), version: w(1), checkpoint_txg: w(25), mmp })
    }
}

/// Scan one label's uberblock ring: the slots that carry the uberblock magic, and the best
/// of them whose checksum verifies. Checksums are checked best-first and only until one
/// verifies (a full ring is 128 slots; hashing them all was most of a probe's CPU time).
/// `ashift` (from the config) sets the slot size; when it is unknown, or gives nothing,
/// every legal slot size is tried — the offset verifier makes a wrong slot size fail.
/// Returns (slots with the magic, the best verified uberblock, slots that failed).
pub fn scan_ring(ring: &[u8], label_offset: u64, label: u8, ashift: Option<u64>) -> (usize, Option<Uberblock>, u32) {
    let first = ashift.map(|a| (a.clamp(UB_SHIFT_MIN as u64, UB_SHIFT_MAX as u64)) as u32);
    let order = first.into_iter().chain((UB_SHIFT_MIN..=UB_SHIFT_MAX).filter(move |s| Some(*s) != first));
    let mut seen = (0, 0);
    for shift in order {
        let slot_size = 1usize << shift;
        let mut candidates: Vec<(Uberblock, usize)> = ring
            .chunks_exact(slot_size)
            .enumerate()
            .filter_map(|(n, slot)| {
                let e = Endian::detect(slot, UB_MAGIC)?;
                Uberblock::parse(slot, e, label, n as u32).map(|u| (u, n))
            })
            .collect();
        candidates.sort_by_key(|(u, _)| std::cmp::Reverse(u.rank()));
        let mut bad = 0;
        for (u, n) in &candidates {
            let off = label_offset + (RING_OFFSET + n * slot_size) as u64;
            match verify_embedded(&ring[n * slot_size..(n + 1) * slot_size], off) {
                Ok(_) => return (candidates.len(), Some(u.clone()), bad),
                Err(_) => bad += 1,
            }
        }
        if seen.0 == 0 {
            seen = (candidates.len(), bad);
        }
    }
    (seen.0, None, seen.1)
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    Valid,
    /// All zeros.
    Blank,
    /// Something that is not a ZFS label (no checksum trailer).
    Foreign,
    /// A ZFS label whose checksum or nvlist is bad.
    Damaged,
    Unreadable,
}

/// What one of the four label copies held.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct LabelCopy {
    pub index: u8,
    pub offset: u64,
    pub state: CopyState,
    /// Why the copy was not valid.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The config's txg (the last txg this label was rewritten).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub txg: Option<u64>,
    pub uberblocks: usize,
    pub bad_uberblocks: u32,
    #[serde(skip)]
    pub config: Option<NvList>,
    #[serde(skip)]
    pub best_uberblock: Option<Uberblock>,
}

impl LabelCopy {
    /// A copy that could not be read at all.
    fn unreadable(index: u8, offset: u64, error: String) -> Self {
        LabelCopy {
            index,
            offset,
            state: CopyState::Unreadable,
            error: Some(error),
            txg: None,
            uberblocks: 0,
            bad_uberblocks: 0,
            config: None,
            best_uberblock: None,
        }
    }
}

/// The config area of a copy already verified: a later copy whose bytes (all but the
/// checksum) are the same shares its hash state and its decoded nvlist.
pub struct PhysMemo {
    prefix: Vec<u8>,
    endian: Endian,
    hash: Sha256,
    config: Result<NvList, String>,
}

/// Decode one 256 KiB label read from `offset`. Pure: no I/O.
pub fn decode_label(buf: &[u8], index: u8, offset: u64) -> LabelCopy {
    decode_label_with(buf, index, offset, &mut None)
}

/// `decode_label`, reusing (and filling) `memo` across the copies of one device.
pub fn decode_label_with(buf: &[u8], index: u8, offset: u64, memo: &mut Option<PhysMemo>) -> LabelCopy {
    if buf.len() != LABEL_SIZE as usize {
        return LabelCopy::unreadable(index, offset, format!("label is {} bytes, expected {LABEL_SIZE}", buf.len()));
    }
    let mut copy = LabelCopy { state: CopyState::Valid, error: None, ..LabelCopy::unreadable(index, offset, String::new()) };
    let phys = &buf[PHYS_OFFSET..PHYS_OFFSET + PHYS_SIZE];
    let covered = &phys[..PHYS_SIZE - ECK_SIZE + 8];
    let verified = match memo.as_ref().filter(|m| m.prefix == covered) {
        Some(m) => finish_embedded(phys, offset + PHYS_OFFSET as u64, m.endian, m.hash.clone()).map(|_| m.config.clone()),
        None => hash_prefix(phys).and_then(|(e, h)| {
            finish_embedded(phys, offset + PHYS_OFFSET as u64, e, h.clone())?;
            let config = nvlist::unpack(&phys[..PHYS_SIZE - ECK_SIZE]).map_err(|e| e.to_string());
            *memo = Some(PhysMemo { prefix: covered.to_vec(), endian: e, hash: h, config: config.clone() });
            Ok(config)
        }),
    };
    match verified {
        Ok(Ok(cfg)) => {
            copy.txg = cfg.u64("txg");
            copy.config = Some(cfg);
        }
        Ok(Err(e)) => {
            copy.state = CopyState::Damaged;
            copy.error = Some(format!("config nvlist: {e}"));
        }
        Err(BlockError::Blank) => copy.state = CopyState::Blank,
        Err(BlockError::NoMagic) => copy.state = CopyState::Foreign,
        Err(BlockError::BadChecksum) => {
            copy.state = CopyState::Damaged;
            copy.error = Some("config checksum mismatch".into());
        }
    }
    let ashift = copy.config.as_ref().and_then(|c| c.list("vdev_tree")).and_then(|t| t.u64("ashift"));
    let (ubs, best, bad) = scan_ring(&buf[RING_OFFSET..RING_OFFSET + RING_SIZE], offset, index, ashift);
    copy.uberblocks = ubs;
    copy.bad_uberblocks = bad;
    copy.best_uberblock = best;
    copy
}

/// The four copies of a device and the decision over them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct DeviceLabels {
    pub copies: Vec<LabelCopy>,
    /// Index of the valid copy with the highest config txg (lowest index on ties).
    pub chosen: Option<u8>,
    /// The best uberblock across all copies.
    pub uberblock: Option<Uberblock>,
}

impl DeviceLabels {
    pub fn config(&self) -> Option<&NvList> {
        let i = self.chosen?;
        self.copies.iter().find(|c| c.index == i)?.config.as_ref()
    }

    /// Copies that exist but could not be used (blank copies count when others are valid).
    pub fn damaged(&self) -> Vec<u8> {
        if self.chosen.is_none() {
            return Vec::new();
        }
        self.copies.iter().filter(|c| !matches!(c.state, CopyState::Valid)).map(|c| c.index).collect()
    }

    /// Pure decision over decoded copies.
    pub fn choose(copies: Vec<LabelCopy>) -> Self {
        let chosen = copies
            .iter()
            .filter(|c| c.config.is_some())
            .max_by(|a, b| a.txg.unwrap_or(0).cmp(&b.txg.unwrap_or(0)).then(b.index.cmp(&a.index)))
            .map(|c| c.index);
        let uberblock = copies.iter().filter_map(|c| c.best_uberblock.clone()).max_by_key(Uberblock::rank);
        DeviceLabels { copies, chosen, uberblock }
    }

    /// True when some copy looks like ZFS (even a damaged one): worth reporting.
    pub fn is_zfs(&self) -> bool {
        self.copies.iter().any(|c| matches!(c.state, CopyState::Valid | CopyState::Damaged) || c.uberblocks > 0)
    }
}

/// Read and decode all four labels of a device. Returns None when the device is too
/// small to hold labels.
pub fn read_labels(src: &dyn BlockSource) -> Option<DeviceLabels> {
    let offsets = label_offsets(src.size())?;
    // One buffer per probe thread, reused for every label of every device it reads: a
    // fresh 256 KiB allocation is an mmap, 64 page faults and an munmap each time.
    thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
    BUF.with_borrow_mut(|buf| {
        // Aligned, so that direct reads (blockdev::FileSource) fill it in place.
        let buf = crate::ondisk::blockdev::aligned(buf, LABEL_SIZE as usize);
        let mut memo = None;
        let copies = offsets
            .iter()
            .enumerate()
            .map(|(i, off)| match src.read_at(*off, buf) {
                Ok(()) => decode_label_with(buf, i as u8, *off, &mut memo),
                Err(e) => LabelCopy::unreadable(i as u8, *off, format!("read failed: {e}")),
            })
            .collect();
        Some(DeviceLabels::choose(copies))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_aligned_end() {
        assert_eq!(label_offsets(LABEL_SIZE * 4 - 1), None);
        let mib = 1024 * 1024;
        // 100 MiB + 100 KiB: the tail 100 KiB is ignored.
        let o = label_offsets(100 * mib + 100 * 1024).unwrap();
        assert_eq!(o, [0, LABEL_SIZE, 100 * mib - 2 * LABEL_SIZE, 100 * mib - LABEL_SIZE]);
    }

    #[test]
    fn embedded_checksum_binds_the_offset() {
        for e in [Endian::Little, Endian::Big] {
            let mut b = vec![7u8; 4096];
            seal_embedded(&mut b, 8192, e);
            assert_eq!(verify_embedded(&b, 8192), Ok(e));
            assert_eq!(verify_embedded(&b, 4096), Err(BlockError::BadChecksum));
            b[5] ^= 1;
            assert_eq!(verify_embedded(&b, 8192), Err(BlockError::BadChecksum));
        }
        assert_eq!(verify_embedded(&[0u8; 512], 0), Err(BlockError::Blank));
        assert_eq!(verify_embedded(&[1u8; 512], 0), Err(BlockError::NoMagic));
    }

    #[test]
    fn ring_picks_highest_txg_then_timestamp() {
        let label_off = 1 << 20;
        let mut ring = vec![0u8; RING_SIZE];
        let put = |ring: &mut Vec<u8>, n: usize, txg: u64, ts: u64| {
            let s = &mut ring[n * 4096..(n + 1) * 4096];
            s[0..8].copy_from_slice(&UB_MAGIC.to_le_bytes());
            s[16..24].copy_from_slice(&txg.to_le_bytes());
            s[32..40].copy_from_slice(&ts.to_le_bytes());
            seal_embedded(s, label_off + (RING_OFFSET + n * 4096) as u64, Endian::Little);
        };
        put(&mut ring, 3, 10, 5);
        put(&mut ring, 7, 12, 1);
        put(&mut ring, 9, 12, 2);
        // A corrupt slot with a higher txg is ignored and counted.
        put(&mut ring, 11, 99, 9);
        ring[11 * 4096 + 100] ^= 0xff;
        // Wrong hint: still found by trying the other slot sizes.
        let (slots, best, bad) = scan_ring(&ring, label_off, 0, Some(9));
        assert_eq!((slots, bad), (4, 1));
        let best = best.unwrap();
        assert_eq!((best.txg, best.timestamp, best.slot), (12, 2, 9));
        // Every slot corrupt: none chosen, all counted.
        for n in [3, 7, 9] {
            ring[n * 4096 + 100] ^= 0xff;
        }
        let (slots, best, bad) = scan_ring(&ring, label_off, 0, Some(12));
        assert_eq!((slots, best, bad), (4, None, 4));
    }

    #[test]
    fn checkpoint_txg_is_read_in_the_uberblock_s_byte_order() {
        // uberblock_impl.h: checkpoint_txg is the u64 at byte 200, after the MMP words.
        for e in [Endian::Little, Endian::Big] {
            let mut ring = vec![0u8; RING_SIZE];
            let s = &mut ring[2 * 1024..3 * 1024];
            s[0..8].copy_from_slice(&e.bytes(UB_MAGIC));
            s[16..24].copy_from_slice(&e.bytes(77));
            s[176..184].copy_from_slice(&e.bytes(MMP_MAGIC));
            s[192..200].copy_from_slice(&e.bytes(0xffff_ffff));
            s[200..208].copy_from_slice(&e.bytes(61));
            seal_embedded(s, (RING_OFFSET + 2 * 1024) as u64, e);
            let best = scan_ring(&ring, 0, 0, Some(10)).1.unwrap();
            assert_eq!((best.txg, best.checkpoint_txg), (77, 61), "{e:?}");
        }
    }

    #[test]
    fn copies_share_the_config_hash_only_when_identical() {
        // Two copies of one config at their offsets verify through the memo; a copy whose
        // bytes differ is hashed on its own and its bad checksum is still caught.
        let cfg = crate::ondisk::nvlist::NvList { pairs: vec![("txg".into(), crate::ondisk::nvlist::Value::U64(7))] };
        let packed = crate::ondisk::nvlist::encode::pack(&cfg);
        let label = |off: u64, flip: bool| {
            let mut b = vec![0u8; LABEL_SIZE as usize];
            b[PHYS_OFFSET..PHYS_OFFSET + packed.len()].copy_from_slice(&packed);
            seal_embedded(&mut b[PHYS_OFFSET..PHYS_OFFSET + PHYS_SIZE], off + PHYS_OFFSET as u64, Endian::Little);
            if flip {
                b[PHYS_OFFSET + 50_000] ^= 1;
            }
            b
        };
        let mut memo = None;
        let a = decode_label_with(&label(0, false), 0, 0, &mut memo);
        assert!(memo.is_some());
        let b = decode_label_with(&label(LABEL_SIZE, false), 1, LABEL_SIZE, &mut memo);
        assert_eq!((a.txg, b.txg), (Some(7), Some(7)));
        // Same bytes, wrong place: the verifier is the offset.
        let moved = decode_label_with(&label(0, false), 2, 5 * LABEL_SIZE, &mut memo);
        assert!(matches!(moved.state, CopyState::Damaged), "{:?}", moved.state);
        let flipped = decode_label_with(&label(2 * LABEL_SIZE, true), 2, 2 * LABEL_SIZE, &mut memo);
        assert!(matches!(flipped.state, CopyState::Damaged));
    }
}
