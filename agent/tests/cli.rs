//! The `zroam` binary end to end, on files: a device rebuilt from captured label regions,
//! and usage errors.

use flate2::read::GzDecoder;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

fn zroam() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zroam"))
}

fn gunzip(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    GzDecoder::new(fs::File::open(p).unwrap()).read_to_end(&mut v).unwrap();
    v
}

#[test]
fn probe_json_on_a_rebuilt_device() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/labels/raidz2/vdc");
    let meta: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let img = std::env::temp_dir().join(format!("zroam-cli-{}.img", std::process::id()));
    {
        let mut f = fs::File::create(&img).unwrap();
        f.set_len(meta["part_size_bytes"].as_u64().unwrap()).unwrap();
        f.write_all(&gunzip(&dir.join("front.bin.gz"))).unwrap();
        f.seek(SeekFrom::Start(meta["back_offset_bytes"].as_u64().unwrap())).unwrap();
        f.write_all(&gunzip(&dir.join("back.bin.gz"))).unwrap();
    }
    let out = zroam().args(["probe", "--json", "--dev"]).arg(&img).output().unwrap();
    fs::remove_file(&img).unwrap();
    assert!(out.status.success());
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let zdb = fs::read_to_string(dir.join("zdb-l.txt")).unwrap();
    let guid: u64 = zdb.lines().find_map(|l| l.trim().strip_prefix("pool_guid: ")).unwrap().parse().unwrap();
    let label = &rep["devices"][0]["zfs"]["label"];
    assert_eq!(label["pool_name"], "data");
    assert_eq!(label["pool_guid"].as_u64(), Some(guid));
    // One of four raidz2 members: the pool is known but cannot be imported.
    assert_eq!(rep["pools"][0]["health"], "incomplete");
    assert_eq!(rep["pools"][0]["missing"].as_array().unwrap().len(), 3);
    assert!(rep["devices"][0]["elapsed_ms"].as_f64().is_some());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(zroam().arg("frobnicate").status().unwrap().code(), Some(2));
    assert_eq!(zroam().args(["probe", "--bogus"]).status().unwrap().code(), Some(2));
    assert!(zroam().arg("--help").status().unwrap().success());
    // `be` refuses a malformed command before running any helper.
    assert_eq!(zroam().args(["be", "frobnicate"]).status().unwrap().code(), Some(2));
    assert_eq!(zroam().args(["be", "list", "--name", "x"]).status().unwrap().code(), Some(2));
    assert_eq!(zroam().args(["be", "snapshot", "rpool/ROOT/a", "--name", "a@b"]).status().unwrap().code(), Some(2));
    assert!(zroam().args(["be", "--help"]).status().unwrap().success());
}

#[test]
fn preload_leaves_another_root_alone() {
    // Only the root that is not zroam's: the other answer would load zfs on this machine.
    let out = zroam().args(["preload", "--cmdline", "root=/dev/sda1 ro quiet"]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(zroam().args(["preload", "--bogus"]).status().unwrap().code(), Some(2));
    let out = zroam().args(["preload", "--drivers", "--cmdline", "root=/dev/sda1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn status_names_each_key_and_where_it_came_from() {
    use zroam::boot::record::Outcome;
    use zroam::keys::{KeyKind, KeyOutcome, KeyRecord};
    use zroam::report::{Mode, Report};
    let path = std::env::temp_dir().join(format!("zroam-status-{}.json", std::process::id()));
    let mut r = Report::new(Mode::Init);
    r.boot.outcome = Outcome::Booted;
    let key = |kind, what: &str, outcome, source: Option<&str>, wrong_keys| KeyRecord {
        kind,
        what: what.into(),
        outcome,
        source: source.map(str::to_string),
        wrong_keys,
        notes: Vec::new(),
    };
    r.boot.keys = vec![
        key(KeyKind::Luks, "/dev/vda2 (LUKS2 u1)", KeyOutcome::Opened, Some("passphrase (console)"), 1),
        key(KeyKind::Zfs, "rpool/ROOT/debian", KeyOutcome::GivenUp, None, 3),
    ];
    r.write(&path).unwrap();
    let out = zroam().args(["status", "--report"]).arg(&path).output().unwrap();
    fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("outcome:  booted"), "{text}");
    assert!(text.contains("key:      luks /dev/vda2 (LUKS2 u1): opened with passphrase (console) (1 wrong)"), "{text}");
    assert!(text.contains("key:      zfs rpool/ROOT/debian: given up (3 wrong)"), "{text}");
}

#[test]
fn status_refuses_what_is_not_a_report() {
    let path = std::env::temp_dir().join(format!("zroam-status-bad-{}.json", std::process::id()));
    fs::write(&path, r#"{"outcome":"booted","stages":[]}"#).unwrap();
    let out = zroam().args(["status", "--report"]).arg(&path).output().unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a report"));
}

#[test]
fn status_draws_the_timeline_as_text_and_svg() {
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/report/usb-degraded.json");
    let out = zroam().args(["status", "--timeline", "--report"]).arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("zroam boot timeline: booted\n"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() < 80), "{text}");
    // Every stage, in the report's order, after the kernel's row.
    let rows: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("stage ")).skip(1).take_while(|l| !l.is_empty()).collect();
    let names: Vec<&str> = rows.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["kernel", "modules", "wait", "zfs-module", "import", "choose-be", "mount", "esp", "pivot"], "{text}");
    assert!(rows[4].starts_with("import           16.45 s   2.47 s "), "{text}");

    // --svg writes the file whole (nothing left beside it) and prints nothing.
    let dir = std::env::temp_dir().join(format!("zroam-status-svg-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("boot.svg");
    fs::write(&svg, "old").unwrap();
    let out = zroam().args(["status", "--report"]).arg(&report).arg("--svg").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let doc = fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\""), "{doc}");
    assert!(doc.trim_end().ends_with("</svg>") && doc.contains("<title>zroam boot timeline: booted</title>"));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

    // A path it cannot write is named, and exit 1; nothing is left behind.
    let bad = dir.join("missing/boot.svg");
    let out = zroam().args(["status", "--report"]).arg(&report).arg("--svg").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot write {}", bad.display())));
    let out = zroam().args(["status", "--report"]).arg(&report).arg("--svg").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(&dir).unwrap();

    // --json prints data, the chart is for people: asking for both is a usage error.
    let out = zroam().args(["status", "--json", "--timeline", "--report"]).arg(&report).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json and --timeline cannot go together"));
    assert!(out.stdout.is_empty());
}
