//! Any bytes as a device's label area. The input is laid into label 0 (config area, then
//! uberblock ring) and, when the first byte is odd, re-sealed with valid checksums so the
//! fuzzer reaches the nvlist, ring and choice logic behind the checksum wall.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zroam::ondisk::blockdev::RegionSource;
use zroam::ondisk::label::{self, Endian, LABEL_SIZE, PHYS_OFFSET, PHYS_SIZE, RING_OFFSET};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut lab = vec![0u8; LABEL_SIZE as usize];
    let n = rest.len().min(LABEL_SIZE as usize - PHYS_OFFSET);
    lab[PHYS_OFFSET..PHYS_OFFSET + n].copy_from_slice(&rest[..n]);
    if mode & 1 == 1 {
        let e = if mode & 2 == 0 { Endian::Little } else { Endian::Big };
        label::seal_embedded(&mut lab[PHYS_OFFSET..PHYS_OFFSET + PHYS_SIZE], PHYS_OFFSET as u64, e);
        let shift = 10 + (mode >> 2 & 3) as usize;
        for (i, slot) in lab[RING_OFFSET..].chunks_exact_mut(1 << shift).enumerate() {
            label::seal_embedded(slot, (RING_OFFSET + (i << shift)) as u64, e);
        }
    }
    // Labels 0 and 1 as given, 2 and 3 blank: exercises the choice among copies.
    let size = 4 * LABEL_SIZE + (mode as u64) * 512;
    let src = RegionSource { size, regions: vec![(0, lab.clone()), (LABEL_SIZE, lab)] };
    if let Some(l) = label::read_labels(&src) {
        let _ = l.damaged();
        if let Some(c) = l.config() {
            let _ = zroam::ondisk::vdev::LabelInfo::from_config(c);
        }
    }
});
