//! Label, GPT and FAT readers against regions captured from pools made by real OpenZFS
//! (tests/fixtures/capture.sh), compared with what `zdb -l`, `zdb -lu` and `sgdisk`
//! printed for the same devices at capture time.

use flate2::read::GzDecoder;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use zroam::assemble::{assemble, Found, Health};
use zroam::blockdev::RegionSource;
use zroam::label::{read_labels, CopyState, DeviceLabels};
use zroam::nvlist::zdb_dump;
use zroam::vdev::{LabelInfo, PoolState};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/labels")
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    GzDecoder::new(fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .read_to_end(&mut v)
        .unwrap();
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
    let mut flush = |cur: &mut Option<(u8, Vec<&str>)>, out: &mut BTreeMap<u8, Option<String>>| {
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
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
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
        let best = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("txg = "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max();
        assert_eq!(labels.uberblock.as_ref().map(|u| u.txg), best, "{}", d.dir.display());
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
