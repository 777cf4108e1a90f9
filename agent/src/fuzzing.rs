//! The fuzz harnesses: one function per target of `agent/fuzz` (cargo-fuzz), each taking
//! any bytes. `agent/fuzz/fuzz_targets/<name>.rs` only hands libFuzzer's input to
//! `fuzzing::<name>`, and `agent/tests/fuzz_corpus.rs` replays the committed corpora through
//! the same functions under `cargo test`, so what the fuzzer found and what the tests replay
//! run the same code. A harness panics (a failed assertion) when an input breaks a property;
//! returning is a pass.
//!
//! Not part of the binary: nothing in `main.rs` calls these, and the release build's LTO
//! drops them.

use crate::ondisk::blockdev::RegionSource;

/// Target `nvlist`. Any bytes as a packed nvlist: errors are fine, panics and runaway
/// allocation are not.
pub fn nvlist(data: &[u8]) {
    if let Ok(l) = crate::ondisk::nvlist::unpack(data) {
        // Everything downstream of a decoded label must cope with any decoded shape.
        let _ = crate::ondisk::nvlist::zdb_dump(&l, 4);
        if let Some(info) = crate::ondisk::vdev::LabelInfo::from_config(&l) {
            let found = crate::probe::assemble::Found { device: "/dev/fuzz".into(), info, uberblock: None };
            let _ = crate::probe::assemble::assemble(&[found.clone(), found]);
        }
    }
}

/// Target `label`. Any bytes as a device's label area. The input is laid into label 0
/// (config area, then uberblock ring) and, when the first byte is odd, re-sealed with valid
/// checksums so the fuzzer reaches the nvlist, ring and choice logic behind the checksum wall.
pub fn label(data: &[u8]) {
    use crate::ondisk::label::{self, Endian, LABEL_SIZE, PHYS_OFFSET, PHYS_SIZE, RING_OFFSET};
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
            let _ = crate::ondisk::vdev::LabelInfo::from_config(c);
        }
    }
}

/// Target `gpt`. Any bytes as the head of a disk. When the first byte is odd, the header and
/// entry-array CRCs are recomputed so the fuzzer gets past them to the field checks and entry
/// parsing. The probe's first-page readers (FAT boot sector, swap signature) get the same bytes.
pub fn gpt(data: &[u8]) {
    use crate::ondisk::gpt;
    let Some((&mode, rest)) = data.split_first() else { return };
    let ss: u32 = if mode & 2 == 0 { 512 } else { 4096 };
    let mut d = rest.to_vec();
    if mode & 1 == 1 {
        gpt_fix_crcs(&mut d, ss as usize);
    }
    let size = (d.len() as u64).max(64 * 1024) + u64::from(mode) * 4096;
    let _ = crate::ondisk::fat::parse(&d);
    if let Some(s) = crate::ondisk::swap::parse(&d) {
        assert!(s.label.len() <= 16 * 3);
    }
    let src = RegionSource { size, regions: vec![(0, d)] };
    if let Ok(g) = gpt::read(&src, ss) {
        for p in &g.partitions {
            let _ = gpt::kind_of(&p.type_guid);
        }
    }
}

/// The header (at `ss`) and entry-array CRCs of a GPT, recomputed from the bytes as they are.
fn gpt_fix_crcs(d: &mut [u8], ss: usize) {
    use crate::ondisk::gpt::crc32;
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
                let c = crc32(&d[start..end]);
                d[h + 88..h + 92].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
    let hs = (u32::from_le_bytes(d[h + 12..h + 16].try_into().unwrap()) as usize).clamp(92, ss).min(d.len() - h);
    d[h + 16..h + 20].fill(0);
    let c = crc32(&d[h..h + hs]);
    d[h + 16..h + 20].copy_from_slice(&c.to_le_bytes());
}

/// Target `espset`. Any bytes as an ESP-set file and as a secondary's manifest (both come
/// from a FAT anyone can write), as the EFI variables that name the booted ESP, and as the
/// other text files a disk hands zroam (a BE's /etc/default/zfs): no panic, bounded output,
/// and a parse of the rendering gives back the same set and the same manifest.
pub fn espset(data: &[u8]) {
    use crate::decide::be;
    use crate::esp::manifest;
    use crate::esp::set as espset;
    use crate::sys::efi;
    let text = String::from_utf8_lossy(data);
    let s = espset::parse(&text);
    assert!(s.esps.len() + s.local.len() + s.replace.len() <= 256);
    let again = espset::parse(&espset::render(&s));
    assert_eq!((again.esps, again.local, again.replace), (s.esps, s.local, s.replace));
    let (m, _) = manifest::parse(&text);
    assert!(m.entries.len() <= manifest::MAX_ENTRIES);
    assert_eq!(manifest::parse(&manifest::render(&m)), (m, 0));
    let _ = efi::parse_loader_partuuid(data);
    let _ = efi::parse_boot_current(data);
    let _ = efi::parse_load_option_partuuid(data);
    assert!(be::additional_datasets(&text).len() <= 64);
}

/// Target `keys`. What reaches the key stage from outside: an ask file in
/// /run/systemd/ask-password (for `zroam unlock`), an agent's answer datagram, a LUKS2
/// header's JSON area (its tokens), and the network parameters of the command line. The
/// first byte picks the reader.
pub fn keys(data: &[u8]) {
    use crate::keys::askfile;
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Some(q) = askfile::Question::parse(&text) {
                // Rendered again, it is one question: no field can add lines or keys.
                let text = q.render();
                for key in ["PID=", "Socket=", "Message=", "Id=", "NotAfter="] {
                    assert_eq!(text.lines().filter(|l| l.starts_with(key)).count(), 1, "{key} in {text:?}");
                }
                let again = askfile::Question::parse(&text).expect("a rendered question parses");
                assert_eq!((again.pid, again.not_after_us), (q.pid, q.not_after_us));
            }
        }
        1 => {
            if let Some(askfile::Reply::Password(p)) = askfile::parse_reply(rest) {
                assert!(p.len() <= crate::keys::ask::MAX_PASSPHRASE);
            }
        }
        2 => {
            let t = crate::ondisk::luks::token_types(rest);
            assert!(t.len() <= 32 && t.iter().all(|s| s.len() <= 64));
            let _ = crate::ondisk::luks::header_len(rest);
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = crate::decide::net::parse_ip(&text);
            let _ = crate::decide::net::parse_zroam(&text);
        }
    }
}

/// Target `modalias`. kmod's alias index (`modules.alias.bin`) or its text, as `sys::drivers`
/// reads them from a ramdisk, and a modalias matched against them (the first byte picks the
/// form, the second how long the modalias is, taken from the end). Whatever the bytes: no
/// panic, lines of the text's shape with keys within the walk's bound, matches that are
/// module names.
pub fn modalias(data: &[u8]) {
    use crate::sys::drivers;
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some((&n, rest)) = rest.split_first() else { return };
    let (body, alias) = rest.split_at(rest.len().saturating_sub(usize::from(n)));
    let alias = String::from_utf8_lossy(alias);
    let text = if mode % 2 == 0 {
        let Some(t) = drivers::alias_index_lines(body) else { return };
        for line in t.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert!(f.len() == 3 && f[0] == "alias" && !f[1].is_empty() && f[1].len() <= drivers::MAX_KEY && !f[2].is_empty(), "{line:?}");
        }
        t
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    for m in drivers::matching(&text, &alias) {
        assert!(!m.is_empty() && !m.contains(char::is_whitespace), "{m:?}");
    }
}

/// Target `image`. What `zroam image` reads from the build host: an EFI stub's PE headers
/// (and the stamp written over objcopy's output), a kernel image's version, the text of
/// modules.dep, modprobe's and ldd's answers, and `/etc/zroam/image.conf` (the first byte
/// picks which). No panic; a stub's layout places sections after it, aligned; a stamped
/// image reads back its time.
pub fn image(data: &[u8]) {
    use crate::image::{conf, select, uki};
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match mode % 4 {
        0 => {
            if let Some(s) = uki::stub(rest) {
                let a = uki::objcopy_args(&s, &[(".linux", "k", u32::MAX as u64)], "stub", "out");
                assert_eq!(a.len(), 6);
            }
            let mut b = rest.to_vec();
            if uki::stamp(&mut b, 0x1234_5678).is_some() {
                assert_eq!(b.len(), rest.len());
            }
        }
        1 => {
            if let Some(v) = select::bzimage_version(rest) {
                assert!(!v.is_empty() && !v.contains(char::is_whitespace));
            }
        }
        2 => {
            for (p, n) in select::listed(&text) {
                assert!(!n.is_empty() && !n.contains('-'), "{p} {n}");
            }
            let _ = select::insmods(&text);
            let _ = select::ldd_libs(&text);
            let _ = select::compression(None, Some(&text));
        }
        _ => {
            let _ = conf::parse(&text);
        }
    }
}
