//! The boot report: the contract between a boot and whoever looks at it afterwards
//! (`zroam status`, the booted system's tools, the lab). It is the boot's record with the
//! version, the mode, resource figures and the log, kept at /run/zroam/report.json so it
//! survives into the booted system. It depends on the rest of the crate; nothing depends on
//! it but the command line. `timeline` draws its stage timings.

pub mod timeline;

use crate::boot::record::{Outcome, Record};
use crate::sys::console;
use crate::sys::usage::{self, Resources};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const PATH: &str = "/run/zroam/report.json";

/// The report's format version: raised when a field changes meaning or goes away (adding
/// a field does not raise it).
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// PID 1 of zroam's own ramdisk.
    Init,
    /// `zroam boot`, from a generator's hook or by hand.
    Boot,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub version: String,
    /// Kernel uptime when zroam started, in seconds.
    pub uptime_at_start: Option<f64>,
    pub mode: Mode,
    #[serde(flatten)]
    pub boot: Record,
    /// zroam's own CPU time and memory, and its helpers' (zpool, zfs, modprobe), as of
    /// this report.
    pub resources: Option<Resources>,
    pub log: Vec<String>,
}

/// The report's own fields and the boot record's share one JSON object. serde's `flatten`
/// would read it too, at 25 KB of the binary: the object is read once as JSON and each part
/// taken from it.
impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Head {
            schema: u32,
            version: String,
            uptime_at_start: Option<f64>,
            mode: Mode,
            resources: Option<Resources>,
            log: Vec<String>,
        }
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let h: Head = serde_json::from_value(v.clone()).map_err(D::Error::custom)?;
        let boot: Record = serde_json::from_value(v).map_err(D::Error::custom)?;
        Ok(Report {
            schema: h.schema,
            version: h.version,
            uptime_at_start: h.uptime_at_start,
            mode: h.mode,
            boot,
            resources: h.resources,
            log: h.log,
        })
    }
}

impl Report {
    pub fn new(mode: Mode) -> Self {
        Report {
            schema: SCHEMA,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_at_start: usage::uptime(),
            mode,
            boot: Record::default(),
            resources: None,
            log: Vec::new(),
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.boot.outcome
    }

    /// Written to a temporary name and renamed, so a reader never sees half a report.
    /// Only root may read it (its directory is made 0700, the file 0600): it names the
    /// disks, the keys' sources and the console log.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        drop(f);
        std::fs::rename(tmp, path)
    }

    pub fn read(path: &Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("no report at {}: {e}", path.display()))?;
        serde_json::from_str::<Report>(&text).map_err(|e| format!("{} is not a report: {e}", path.display()))
    }
}

/// A boot's sink (`boot::Sink`): each record it keeps becomes the report at `path`, with
/// the log so far and the resources used.
pub fn writer(path: PathBuf, mode: Mode) -> crate::boot::Sink {
    let mut report = Report::new(mode);
    // The directory is root's before anything (ESP mounts, key files) is put under it.
    if let Some(d) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d);
        let _ = std::os::unix::fs::chown(d, Some(0), Some(0)).and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
        });
    }
    Box::new(move |record: &Record| {
        report.boot = record.clone();
        report.log = console::lines();
        report.resources = Some(usage::resources());
        if let Err(e) = report.write(&path) {
            log::warn!("cannot write {}: {e}", path.display());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::record::Timing;
    use crate::boot::stage::Stage;

    #[test]
    fn written_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("zroam-report-{}", std::process::id()));
        let path = dir.join("run/zroam/report.json");
        let mut r = Report::new(Mode::Init);
        r.boot.outcome = Outcome::Mounted;
        r.boot.stages.push(Timing { name: Stage::Import, start_ms: 5, ms: 740, cpu_ms: 1.5 });
        r.boot.warnings.push("a warning".into());
        r.write(&path).unwrap();
        // Written again over the old one: still whole, no temporary left beside it.
        r.boot.outcome = Outcome::Booted;
        r.write(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let back = Report::read(&path).unwrap();
        assert_eq!(back.schema, SCHEMA);
        assert_eq!(back.outcome(), Outcome::Booted);
        assert_eq!(back.boot.stages[0].name, Stage::Import);
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&r).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Reports captured from lab boots: the typed contract reads each one and writes it
    /// back field for field, so a field that vanishes, is renamed or changes type fails here.
    #[test]
    fn captured_reports_round_trip_through_the_contract() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/report");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let original: serde_json::Value = serde_json::from_str(&text).unwrap();
            let r = Report::read(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.schema, SCHEMA, "{}", path.display());
            assert_eq!(serde_json::to_value(&r).unwrap(), original, "{} does not survive the contract", path.display());
            // The probe section is the probe's own JSON: its types read it back too.
            let probe = r.boot.probe.clone().expect("a lab boot records its probe");
            let typed: crate::probe::ProbeReport = serde_json::from_value(probe.clone()).unwrap();
            assert_eq!(serde_json::to_value(&typed).unwrap(), probe, "{}: the probe section", path.display());
            // So are the command line and the BE, held as JSON for the binary's size.
            let section = |v: &Option<serde_json::Value>| v.clone().expect("a lab boot records it");
            let cmd: crate::decide::cmdline::Cmdline = serde_json::from_value(section(&r.boot.cmdline)).unwrap();
            assert_eq!(serde_json::to_value(&cmd).unwrap(), section(&r.boot.cmdline), "{}: cmdline", path.display());
            let be: crate::decide::be::BePlan = serde_json::from_value(section(&r.boot.be)).unwrap();
            assert_eq!(serde_json::to_value(&be).unwrap(), section(&r.boot.be), "{}: be", path.display());
            let pool: crate::decide::choose::Choice = serde_json::from_value(section(&r.boot.pool)).unwrap();
            assert_eq!(serde_json::to_value(&pool).unwrap(), section(&r.boot.pool), "{}: pool", path.display());
            let trust: crate::decide::trust::Trust = serde_json::from_value(section(&r.boot.trust)).unwrap();
            assert_eq!(serde_json::to_value(&trust).unwrap(), section(&r.boot.trust), "{}: trust", path.display());
            seen += 1;
        }
        assert!(seen >= 1, "no captured reports in {}", dir.display());
    }

    #[test]
    fn not_a_report_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("zroam-report-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        std::fs::write(&p, br#"{"outcome": 7}"#).unwrap();
        assert!(Report::read(&p).unwrap_err().contains("is not a report"));
        assert!(Report::read(&dir.join("missing.json")).unwrap_err().contains("no report at"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
