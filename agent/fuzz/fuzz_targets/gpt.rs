//! Any bytes as the head of a disk. When the first byte is odd, the header and entry-array
//! CRCs are recomputed so the fuzzer gets past them to the field checks and entry parsing.
//! The probe's first-page readers (FAT boot sector, swap signature) get the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zroam::ondisk::blockdev::RegionSource;

fn fix_crcs(d: &mut [u8], ss: usize) {
    if d.len() < ss + 92 {
        return;
    }
    let h = ss;
    let entry_lba = u64::from_le_bytes(d[h + 72..h + 80].try_into().unwrap());
    let n = u32::from_le_bytes(d[h + 80..h + 84].try_into().unwrap()) as usize;
    let sz = u32::from_le_bytes(d[h + 84..h + 88].try_into().unwrap()) as usize;
    if let Some(start) = (entry_lba as usize).checked_mul(ss) {
        if let Some(end) = n.checked_mul(sz).and_then(|l| l.checked_add(start)) {
            if end <= d.len() {
                let c = zroam::ondisk::gpt::crc32(&d[start..end]);
                d[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
    let hs = (u32::from_le_bytes(d[h + 12..h + 16].try_into().unwrap()) as usize).clamp(92, ss).min(d.len() - h);
    d[h + 16..h + 20].fill(0);
    let c = zroam::ondisk::gpt::crc32(&d[h..h + hs]);
    d[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let ss: u32 = if mode & 2 == 0 { 512 } else { 4096 };
    let mut d = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut d, ss as usize);
    }
    let size = (d.len() as u64).max(64 * 1024) + u64::from(mode) * 4096;
    let _ = zroam::ondisk::fat::parse(&d);
    if let Some(s) = zroam::ondisk::swap::parse(&d) {
        assert!(s.label.len() <= 16 * 3);
    }
    let src = RegionSource { size, regions: vec![(0, d)] };
    if let Ok(g) = zroam::ondisk::gpt::read(&src, ss) {
        for p in &g.partitions {
            let _ = zroam::ondisk::gpt::kind_of(&p.type_guid);
        }
    }
});
