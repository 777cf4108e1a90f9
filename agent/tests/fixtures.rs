//! Label, GPT and FAT readers against regions captured from pools made by real OpenZFS
//! (tests/fixtures/capture.sh), compared with what `zdb -l`, `zdb -lu` and `sgdisk`
//! printed for the same devices at capture time.

use flate2::read::GzDecoder;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use zroam::ondisk::blockdev::RegionSource;
use zroam::ondisk::label::{read_labels, CopyState, DeviceLabels};
use zroam::ondisk::nvlist::zdb_dump;
use zroam::ondisk::vdev::{LabelInfo, PoolState};
use zroam::probe::assemble::{assemble, Found, Health};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/labels")
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    GzDecoder::new(fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).read_to_end(&mut v).unwrap();
    v
}

fn json(p: &Path) -> Json {
    serde_json::from_str(&fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

struct Disk {
    scenario: String,
    dir: PathBuf,
    meta: Json,
}

/// Every captured ZFS partition, scenario by scenario.
fn disks() -> Vec<Disk> {
    let mut out = Vec::new();
    let mut scenarios: Vec<_> = fs::read_dir(root()).expect("fixtures present").flatten().map(|e| e.path()).collect();
    scenarios.sort();
    for s in scenarios.into_iter().filter(|p| p.is_dir()) {
        let mut ds: Vec<_> = fs::read_dir(&s).unwrap().flatten().map(|e| e.path()).collect();
        ds.sort();
        for d in ds.into_iter().filter(|d| d.join("meta.json").exists()) {
            out.push(Disk { scenario: s.file_name().unwrap().to_string_lossy().into(), meta: json(&d.join("meta.json")), dir: d });
        }
    }
    assert!(out.len() >= 12, "expected the captured scenarios, found {} devices", out.len());
    out
}

fn labels_of(d: &Disk) -> DeviceLabels {
    let size = d.meta["part_size_bytes"].as_u64().unwrap();
    let back = d.meta["back_offset_bytes"].as_u64().unwrap();
    let src = RegionSource { size, regions: vec![(0, gunzip(&d.dir.join("front.bin.gz"))), (back, gunzip(&d.dir.join("back.bin.gz")))] };
    read_labels(&src).expect("partition holds labels")
}

/// zdb -l output: for each label index, the config lines it printed (or None when zdb
/// said the label could not be read or unpacked).
fn zdb_blocks(text: &str) -> BTreeMap<u8, Option<String>> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(u8, Vec<&str>)> = None;
    let flush = |cur: &mut Option<(u8, Vec<&str>)>, out: &mut BTreeMap<u8, Option<String>>| {
        let Some((first, lines)) = cur.take() else { return };
        let failed = lines.iter().any(|l| l.contains("failed to"));
        // The block applies to every label listed in its "labels = …" line.
        let listed: Vec<u8> = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("labels = "))
            .map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_else(|| vec![first]);
        let config: String = lines
            .iter()
            .take_while(|l| !l.trim_start().starts_with("labels = ") && !l.trim_start().starts_with("Uberblock["))
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        for i in listed {
            out.insert(i, (!failed).then(|| config.clone()));
        }
    };
    for l in text.lines() {
        if l.starts_with("----") {
            continue;
        }
        if let Some(n) = l.trim().strip_prefix("LABEL ") {
            flush(&mut cur, &mut out);
            cur = Some((n.trim().parse().unwrap(), Vec::new()));
            continue;
        }
        if let Some((_, v)) = cur.as_mut() {
            v.push(l);
        }
    }
    flush(&mut cur, &mut out);
    out
}

#[test]
fn every_label_decodes_exactly_as_zdb_prints_it() {
    let mut compared = 0;
    for d in disks() {
        let labels = labels_of(&d);
        let zdb = zdb_blocks(&fs::read_to_string(d.dir.join("zdb-l.txt")).unwrap());
        assert!(!zdb.is_empty(), "{}: zdb printed no labels", d.dir.display());
        for copy in &labels.copies {
            let ctx = format!("{} label {}", d.dir.display(), copy.index);
            match zdb.get(&copy.index) {
                Some(Some(expected)) => {
                    let cfg = copy.config.as_ref().unwrap_or_else(|| panic!("{ctx}: zdb read it, we did not: {:?}", copy.error));
                    assert_eq!(&zdb_dump(cfg, 4), expected, "{ctx}");
                    compared += 1;
                }
                _ => assert!(!matches!(copy.state, CopyState::Valid), "{ctx}: valid here, unreadable for zdb"),
            }
        }
        let _ = d.scenario;
    }
    assert!(compared >= 48, "only {compared} label copies compared");
}

#[test]
fn best_uberblock_matches_zdb() {
    for d in disks() {
        let labels = labels_of(&d);
        let text = fs::read_to_string(d.dir.join("zdb-lu.txt")).unwrap();
        // zdb -lu prints "txg = N" for every valid uberblock it found.
        let best = text.lines().filter_map(|l| l.trim().strip_prefix("txg = ")).filter_map(|n| n.trim().parse::<u64>().ok()).max();
        assert_eq!(labels.uberblock.as_ref().map(|u| u.txg), best, "{}", d.dir.display());
        // None of these pools has a checkpoint: zdb prints checkpoint_txg = 0 throughout.
        assert!(text.lines().filter_map(|l| l.trim().strip_prefix("checkpoint_txg = ")).all(|n| n.trim() == "0"));
        assert_eq!(labels.uberblock.as_ref().map(|u| u.checkpoint_txg), best.map(|_| 0), "{}", d.dir.display());
    }
}

fn found(d: &Disk) -> Option<Found> {
    let l = labels_of(d);
    Some(Found { device: d.dir.to_string_lossy().into(), info: LabelInfo::from_config(l.config()?)?, uberblock: l.uberblock.clone() })
}

#[test]
fn scenarios_assemble_as_built() {
    let mut by: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for d in disks() {
        by.entry(d.scenario.clone()).or_default().extend(found(&d));
    }
    // What each scenario was built to be (tests/fixtures/capture.sh).
    let expect = |s: &str| -> (Health, PoolState, bool, usize) {
        match s {
            "mirror-missing" => (Health::Degraded, PoolState::Active, true, 1),
            "exported" => (Health::Complete, PoolState::Exported, true, 0),
            "destroyed" => (Health::Complete, PoolState::Destroyed, false, 0),
            _ => (Health::Complete, PoolState::Active, true, 0),
        }
    };
    assert!(by.len() >= 12, "{} scenarios", by.len());
    for (s, f) in &by {
        let a = assemble(f);
        assert_eq!(a.pools.len(), 1, "{s}: one pool expected, got {:?}", a.pools.iter().map(|p| &p.name).collect::<Vec<_>>());
        let p = &a.pools[0];
        let (h, st, cand, missing) = expect(s);
        assert_eq!((p.health, p.state, p.boot_candidate, p.missing.len()), (h, st, cand, missing), "{s}: {:?}", p.problems);
        if s == "logcachespare" {
            assert_eq!(a.aux.len(), 2, "spare and cache are aux devices");
            assert!(p.top_levels.iter().any(|t| t.class == "log"));
        }
    }
}

/// One partition as sgdisk shows it: type, unique GUID, first and last sector, name.
type SgdiskPart = (String, String, u64, u64, String);

/// sgdisk's view of a disk: disk GUID, then its partitions.
fn sgdisk_view(text: &str) -> (String, Vec<SgdiskPart>) {
    let field = |l: &str, k: &str| l.strip_prefix(k).map(|v| v.trim().to_string());
    let disk = text.lines().find_map(|l| field(l, "Disk identifier (GUID):")).unwrap();
    let mut parts = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for l in text.lines() {
        if let Some(v) = field(l, "Partition GUID code:") {
            cur = vec![v.split_whitespace().next().unwrap().to_string()];
        } else if let Some(v) = field(l, "Partition unique GUID:") {
            cur.push(v);
        } else if let Some(v) = field(l, "First sector:").or_else(|| field(l, "Last sector:")) {
            cur.push(v.split_whitespace().next().unwrap().to_string());
        } else if let Some(v) = field(l, "Partition name:") {
            let name = v.trim_matches('\'').to_string();
            parts.push((cur[0].clone(), cur[1].clone(), cur[2].parse().unwrap(), cur[3].parse().unwrap(), name));
        }
    }
    (disk, parts)
}

#[test]
fn gpt_and_esp_match_sgdisk_and_blkid() {
    for d in disks() {
        let disk = json(&d.dir.join("disk.json"));
        let size = disk["size_bytes"].as_u64().unwrap();
        let head = gunzip(&d.dir.join("gpt-head.bin.gz"));
        let tail = gunzip(&d.dir.join("gpt-tail.bin.gz"));
        let (disk_guid, parts) = sgdisk_view(&fs::read_to_string(d.dir.join("sgdisk.txt")).unwrap());
        let mut src = RegionSource { size, regions: vec![(0, head), (size - tail.len() as u64, tail)] };
        let g = zroam::ondisk::gpt::read(&src, 512).unwrap();
        assert!(!g.from_backup);
        assert_eq!(g.disk_guid.to_string().to_uppercase(), disk_guid, "{}", d.dir.display());
        let ours: Vec<_> = g
            .partitions
            .iter()
            .map(|p| {
                (p.type_guid.to_string().to_uppercase(), p.partuuid.to_string().to_uppercase(), p.first_lba, p.last_lba, p.name.clone())
            })
            .collect();
        assert_eq!(ours, parts, "{}", d.dir.display());
        assert_eq!(g.partitions[0].kind, zroam::ondisk::gpt::PartKind::Esp);
        assert_eq!(g.partitions[1].kind, zroam::ondisk::gpt::PartKind::Zfs);
        // With the primary header destroyed, the backup at the end gives the same table.
        src.regions[0].1[512..520].fill(0);
        let b = zroam::ondisk::gpt::read(&src, 512).unwrap();
        assert!(b.from_backup);
        assert_eq!(b.partitions, g.partitions);

        let blkid = fs::read_to_string(d.dir.join("esp-blkid.txt")).unwrap();
        let uuid = blkid.lines().find_map(|l| l.strip_prefix("UUID=")).expect("blkid saw the ESP");
        let fat = zroam::ondisk::fat::parse(&gunzip(&d.dir.join("esp-boot.bin.gz"))).expect("FAT boot sector");
        assert_eq!((fat.kind.as_str(), fat.serial.as_str(), fat.label.as_str()), ("FAT32", uuid, "EFI"));
    }
}

#[test]
fn damaged_copies_are_named_and_the_newest_valid_copy_is_kept() {
    let d = disks().into_iter().find(|d| d.scenario == "mirror2").expect("mirror2 captured");
    let size = d.meta["part_size_bytes"].as_u64().unwrap();
    let back = d.meta["back_offset_bytes"].as_u64().unwrap();
    let mut front = gunzip(&d.dir.join("front.bin.gz"));
    let good = labels_of(&d);
    // Zero label 0 entirely and flip one byte in label 1's config: both must be reported,
    // and labels 2/3 (at the aligned end) must carry the device.
    front[..256 * 1024].fill(0);
    front[256 * 1024 + 16 * 1024 + 100] ^= 0x55;
    let src = RegionSource { size, regions: vec![(0, front), (back, gunzip(&d.dir.join("back.bin.gz")))] };
    let l = read_labels(&src).unwrap();
    assert_eq!(l.damaged(), vec![0, 1]);
    assert!(matches!(l.copies[0].state, CopyState::Blank));
    assert!(matches!(l.copies[1].state, CopyState::Damaged));
    assert!(l.chosen == Some(2) || l.chosen == Some(3));
    assert_eq!(zdb_dump(l.config().unwrap(), 4), zdb_dump(good.config().unwrap(), 4));
    // The same regions one sector off (a partition misread by 512 bytes) verify nothing.
    let shifted = RegionSource { size: size + 512, regions: src.regions.iter().map(|(o, v)| (o + 512, v.clone())).collect() };
    assert!(read_labels(&shifted).unwrap().chosen.is_none());
}
