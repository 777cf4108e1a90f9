//! Lab tool: rewrite fields of the ZFS labels on a partition of a disk image and seal
//! their checksums again, the way a forged stick would carry them. Used by the boot lab to
//! make a stick that claims the root pool's GUID with a newer txg, or the root's hostid.
//! Never part of the zroam binary.
//!
//! usage: forge_label IMAGE PART_OFFSET PART_SIZE KEY=VALUE...
//!        KEY: pool_guid, txg, hostid (numbers), name, hostname (strings)

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use zroam::ondisk::label::{label_offsets, seal_embedded, verify_embedded, ECK_SIZE, LABEL_SIZE, PHYS_OFFSET, PHYS_SIZE};
use zroam::ondisk::nvlist::{encode::pack, unpack, Value};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: forge_label IMAGE PART_OFFSET PART_SIZE KEY=VALUE...");
        std::process::exit(2);
    }
    let (part, size): (u64, u64) = (a[2].parse().expect("offset"), a[3].parse().expect("size"));
    let f = OpenOptions::new().read(true).write(true).open(&a[1]).expect("open image");
    let offsets = label_offsets(size).expect("partition too small for labels");
    let mut changed = 0;
    for off in offsets {
        let mut label = vec![0u8; LABEL_SIZE as usize];
        f.read_exact_at(&mut label, part + off).expect("read label");
        let phys = &mut label[PHYS_OFFSET..PHYS_OFFSET + PHYS_SIZE];
        let verifier = off + PHYS_OFFSET as u64;
        let Ok(endian) = verify_embedded(phys, verifier) else {
            eprintln!("label at {off}: no valid label, left alone");
            continue;
        };
        let mut nv = unpack(&phys[..PHYS_SIZE - ECK_SIZE]).expect("label nvlist");
        for kv in &a[4..] {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            let val = match k {
                "pool_guid" | "txg" | "hostid" => Value::U64(v.parse().expect("number")),
                "name" | "hostname" => Value::Str(v.to_string()),
                _ => panic!("unsupported key {k}"),
            };
            match nv.pairs.iter_mut().find(|(n, _)| n == k) {
                Some((_, old)) => *old = val,
                None => nv.pairs.push((k.to_string(), val)),
            }
        }
        let packed = pack(&nv);
        assert!(packed.len() <= PHYS_SIZE - ECK_SIZE, "the rewritten config does not fit");
        phys.fill(0);
        phys[..packed.len()].copy_from_slice(&packed);
        seal_embedded(phys, verifier, endian);
        f.write_all_at(&label, part + off).expect("write label");
        changed += 1;
    }
    println!("rewrote {changed} label(s)");
    if changed == 0 {
        std::process::exit(1);
    }
}
