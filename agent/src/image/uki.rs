//! A unified kernel image: systemd's EFI stub with the kernel, the ramdisk, the command line
//! and os-release added as PE sections, so one file boots with no boot entry. Assembled
//! with binutils' objcopy (ukify is not in every distribution's systemd, Debian 12's
//! included); each section is placed after the stub's own, aligned as its header says, so
//! any version of the stub works, however large. Pure: the layout and objcopy's argv.

/// What the stub's PE headers say about where added sections may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stub {
    pub image_base: u64,
    pub section_alignment: u64,
    /// The end of the stub's last section in memory (relative to the image base).
    pub end: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a PE32+ image's headers (bounded by the slice; None for anything else).
pub fn stub(b: &[u8]) -> Option<Stub> {
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let pe = u32_at(b, 0x3c)? as usize;
    if b.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = pe + 4;
    let nsect = u16_at(b, coff + 2)? as usize;
    let opt = coff + 20;
    let opt_size = u16_at(b, coff + 16)? as usize;
    if u16_at(b, opt)? != 0x20b {
        return None; // not PE32+
    }
    let image_base = u64::from_le_bytes(b.get(opt + 24..opt + 32)?.try_into().ok()?);
    let section_alignment = u32_at(b, opt + 32)? as u64;
    if !section_alignment.is_power_of_two() {
        return None;
    }
    let mut end = 0u64;
    for i in 0..nsect.min(96) {
        let s = opt + opt_size + 40 * i;
        let (vsize, va) = (u32_at(b, s + 8)? as u64, u32_at(b, s + 12)? as u64);
        end = end.max(va + vsize);
    }
    Some(Stub { image_base, section_alignment, end })
}

/// objcopy's arguments adding `sections` (name, file, size) to `stub_path`, written to
/// `out`: each at the next aligned address after the one before. The kernel goes last:
/// the stub hands it on from there, and it may grow when it unpacks itself.
pub fn objcopy_args(s: &Stub, sections: &[(&str, &str, u64)], stub_path: &str, out: &str) -> Vec<String> {
    let align = |x: u64| x.next_multiple_of(s.section_alignment);
    let mut at = align(s.end);
    let mut a = Vec::new();
    for (name, file, size) in sections {
        a.push("--add-section".into());
        a.push(format!("{name}={file}"));
        a.push("--change-section-vma".into());
        a.push(format!("{name}=0x{:x}", s.image_base.saturating_add(at)));
        at = align(at + size.max(&1));
    }
    a.push(stub_path.into());
    a.push(out.into());
    a
}

/// Sets a PE image's TimeDateStamp (objcopy writes the time it ran, whatever
/// SOURCE_DATE_EPOCH says) and its checksum again: the same inputs give the same bytes.
/// None when `b` is not a PE image.
pub fn stamp(b: &mut [u8], time: u32) -> Option<()> {
    if b.get(..2)? != b"MZ" {
        return None;
    }
    let pe = u32_at(b, 0x3c)? as usize;
    if b.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    b.get_mut(pe + 8..pe + 12)?.copy_from_slice(&time.to_le_bytes());
    let at = pe + 24 + 64;
    b.get_mut(at..at + 4)?.copy_from_slice(&[0; 4]);
    // The image's checksum: its 16-bit words added with the carries folded back, plus its
    // length (the checksum field counted as zero).
    let mut sum: u64 = 0;
    for w in b.chunks(2) {
        sum += u16::from_le_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u64;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = (sum & 0xffff) + (sum >> 16) + b.len() as u64;
    b.get_mut(at..at + 4)?.copy_from_slice(&(sum as u32).to_le_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ header with two sections, as a linker writes one.
    fn pe(sections: &[(u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b[0x86..0x88].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        b[0x94..0x96].copy_from_slice(&240u16.to_le_bytes());
        b[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes());
        b[0x98 + 24..0x98 + 32].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        b[0x98 + 32..0x98 + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        for (i, (va, vs)) in sections.iter().enumerate() {
            let s = 0x98 + 240 + 40 * i;
            b[s + 8..s + 12].copy_from_slice(&vs.to_le_bytes());
            b[s + 12..s + 16].copy_from_slice(&va.to_le_bytes());
        }
        b
    }

    #[test]
    fn sections_after_the_stub_aligned() {
        let s = stub(&pe(&[(0x1000, 0x9000), (0xb000, 0x123)])).unwrap();
        assert_eq!(s, Stub { image_base: 0x1_0000_0000, section_alignment: 0x1000, end: 0xb123 });
        let a = objcopy_args(&s, &[(".osrel", "o", 10), (".cmdline", "c", 0x1000), (".linux", "k", 5)], "stub", "out");
        let vmas: Vec<&str> = a.iter().filter(|x| x.contains("=0x")).map(|x| x.split_once('=').unwrap().1).collect();
        assert_eq!(vmas, ["0x10000c000", "0x10000d000", "0x10000e000"]);
        assert_eq!(&a[a.len() - 2..], ["stub", "out"]);
    }

    #[test]
    fn not_a_pe32_plus() {
        assert_eq!(stub(b"MZ"), None);
        let mut b = pe(&[(0x1000, 0x10)]);
        b[0x98] = 0x0b;
        b[0x99] = 0x01; // PE32
        assert_eq!(stub(&b), None);
        assert_eq!(stub(&[0u8; 0x400]), None);
    }

    #[test]
    fn stamped_the_same_whatever_time_objcopy_wrote() {
        let mut a = pe(&[(0x1000, 0x10)]);
        let mut b = a.clone();
        b[0x88..0x8c].copy_from_slice(&0x6543_2100u32.to_le_bytes());
        b[0xd8] = 0x55;
        stamp(&mut a, 7).unwrap();
        stamp(&mut b, 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(u32_at(&a, 0x88), Some(7));
        // The checksum counts the contents: a changed byte changes it.
        let mut c = a.clone();
        c[0x300] = 1;
        stamp(&mut c, 7).unwrap();
        assert_ne!(u32_at(&c, 0xd8), u32_at(&a, 0xd8));
        assert_eq!(stamp(&mut [0u8; 0x40], 7), None);
    }

    /// systemd-boot's stub, where this host has it.
    #[test]
    fn the_real_stub() {
        let Ok(b) = std::fs::read("/usr/lib/systemd/boot/efi/linuxx64.efi.stub") else { return };
        let s = stub(&b).expect("the stub is PE32+");
        assert!(s.end > 0 && s.end < 16 << 20 && s.section_alignment >= 512, "{s:?}");
    }
}
