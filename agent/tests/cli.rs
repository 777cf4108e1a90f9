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
