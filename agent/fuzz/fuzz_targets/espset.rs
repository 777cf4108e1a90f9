//! Any bytes as an ESP-set file and as a secondary's manifest (both come from a FAT anyone
//! can write), as the EFI variables that name the booted ESP, and as the other text files a
//! disk hands zroam (a BE's /etc/default/zfs): no panic, bounded output, and a parse of the
//! rendering gives back the same set and the same manifest.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zroam::decide::be;
use zroam::esp::manifest;
use zroam::esp::set as espset;
use zroam::sys::efi;

fuzz_target!(|data: &[u8]| {
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
});
