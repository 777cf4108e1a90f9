//! The boot as a timeline: the report's stages placed on one time axis, in seconds since
//! the kernel started (or since zroam started, when the report lacks the kernel's uptime).
//! Pure: a `Report` in, rows out; `text` and `svg` draw them.
//!
//! A report is read from a file, so every number is distrusted: a time that is not a
//! number, negative or past `LIMIT_S` is clamped and a note says so, and names that come
//! from disks (pool, BE) are cleaned (`clean`) before anything prints them.

pub mod svg;
pub mod text;

use super::Report;
use crate::boot::record::{LoadedBy, Outcome};
use crate::boot::stage::Stage;

/// Times past this (about three years) are clamped: no boot is that long, and every
/// position drawn stays finite.
pub const LIMIT_S: f64 = 1e8;
/// Pool and BE names are cut to this many characters.
pub const NAME_MAX: usize = 64;
/// Notes past this many are counted, not listed (a hostile report may clamp every row).
const NOTES_MAX: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The kernel's own start, before zroam ran.
    Kernel,
    /// A stage spent working (zroam's own code or a helper it runs).
    Work,
    /// A stage the report marks as waiting: `wait` (for the pool's devices; its probe
    /// passes are the busy parts) and `zfs-module` (for zfs.ko's init).
    Wait,
    /// Beside zroam's stages: zfs.ko's load (from `zroam preload` in a generator's early
    /// hook, or zroam boot's own) and the drivers preload loaded first.
    Beside,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The stage's name, or `KERNEL` for the kernel's row.
    pub label: &'static str,
    pub kind: Kind,
    /// Seconds on the axis.
    pub start: f64,
    pub secs: f64,
    /// In a wait: the probe passes (start on the axis, seconds), when zroam was busy.
    pub busy: Vec<(f64, f64)>,
    /// It starts before an earlier row ends (stages run one after another, so this marks
    /// a report to look at twice).
    pub overlaps: bool,
}

impl Row {
    pub fn end(&self) -> f64 {
        self.start + self.secs
    }
}

pub const KERNEL: &str = "kernel -> zroam";
pub const ZFS_PRELOAD: &str = "zfs.ko (preload)";
pub const ZFS_BOOT: &str = "zfs.ko";
pub const DRIVERS_PRELOAD: &str = "drivers (preload)";

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The axis' zero is the kernel's start; false: zroam's start (no uptime in the report).
    pub from_kernel: bool,
    pub rows: Vec<Row>,
    /// Where the last row ends, on the axis.
    pub total: f64,
    /// Where zroam started on the axis (0 without the kernel's uptime).
    pub zroam_start: f64,
    pub outcome: &'static str,
    /// The stage a failed boot stopped at.
    pub failed_at: Option<Stage>,
    /// The chosen pool and BE, cleaned.
    pub pool: Option<String>,
    pub be: Option<String>,
    /// What was clamped or odd, for the reader.
    pub notes: Vec<String>,
}

impl Timeline {
    /// The chart's title: the outcome, and where a failure stopped the boot.
    pub fn headline(&self) -> String {
        match self.failed_at {
            Some(stage) => format!("zroam boot timeline: {} (stopped at {stage})", self.outcome),
            None => format!("zroam boot timeline: {}", self.outcome),
        }
    }
}

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Running => "running",
        Outcome::Booted => "booted",
        Outcome::Mounted => "mounted",
        Outcome::Failed => "failed",
    }
}

/// A name from a disk, safe to print on a console or put in XML (after escaping): control
/// and bidi-override characters dropped (they rewrite a terminal or reorder what is shown),
/// XML's non-characters dropped, at most `NAME_MAX` characters.
pub fn clean(s: &str) -> String {
    let bad = |c: &char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{fffe}' | '\u{ffff}');
    let mut out: Vec<char> = s.chars().filter(|c| !bad(c)).take(NAME_MAX + 1).collect();
    if out.len() > NAME_MAX {
        out.truncate(NAME_MAX - 1);
        out.push('…');
    }
    out.into_iter().collect()
}

/// A duration or a time on the axis: ms below a second, else seconds with two decimals;
/// past 1e5 s in exponent form, so it fits its column.
pub fn secs_text(s: f64) -> String {
    let ms = (s * 1000.0).round();
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if s < 1e5 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1e} s")
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most `max` ticks over `span`.
pub fn tick_step(span: f64, max: usize) -> f64 {
    let raw = span / max.max(1) as f64;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

/// A tick's label: as few decimals as the step needs.
pub fn tick_text(v: f64, step: f64) -> String {
    if v >= 1e5 {
        format!("{v:e}")
    } else if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let d = (-step.log10().floor()) as usize;
        format!("{v:.d$}")
    }
}

struct Notes(Vec<String>);

impl Notes {
    fn add(&mut self, n: String) {
        self.0.push(n);
    }

    /// A time from the report, made safe to draw.
    fn secs(&mut self, v: f64, what: &str) -> f64 {
        if v.is_nan() {
            self.add(format!("{what} is not a number: taken as 0"));
            0.0
        } else if v < 0.0 {
            self.add(format!("{what} is negative ({v:.3e} s): taken as 0"));
            0.0
        } else if v > LIMIT_S {
            self.add(format!("{what} ({v:.3e} s) clamped to {LIMIT_S:.0e} s"));
            LIMIT_S
        } else {
            v
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.0.len() > NOTES_MAX {
            let more = self.0.len() - (NOTES_MAX - 1);
            self.0.truncate(NOTES_MAX - 1);
            self.0.push(format!("and {more} more such notes"));
        }
        self.0
    }
}

fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

pub fn build(r: &Report) -> Timeline {
    let b = &r.boot;
    let mut notes = Notes(Vec::new());
    let up = match r.uptime_at_start {
        Some(u) if u.is_finite() && u >= 0.0 => Some(notes.secs(u, "uptime_at_start")),
        Some(u) => {
            notes.add(format!("uptime_at_start ({u:.3e}) is not a time: left out"));
            None
        }
        None => None,
    };
    let zroam_start = up.unwrap_or(0.0);
    let mut rows = Vec::with_capacity(b.stages.len() + 1);
    if let Some(u) = up {
        rows.push(Row { label: KERNEL, kind: Kind::Kernel, start: 0.0, secs: u, busy: Vec::new(), overlaps: false });
    }
    if let Some(z) = &b.zfs_load {
        let drivers = z.drivers_s.map(|(a, b)| (Some(a), Some(b)));
        let zfs_label = if z.by == LoadedBy::Preload { ZFS_PRELOAD } else { ZFS_BOOT };
        for (label, span) in [(DRIVERS_PRELOAD, drivers), (zfs_label, Some((z.started_s, z.live_s)))] {
            if let Some((Some(a), Some(e))) = span {
                let start = notes.secs(a, &format!("start of {label}"));
                let end = notes.secs(e, &format!("end of {label}"));
                rows.push(Row { label, kind: Kind::Beside, start, secs: (end - start).max(0.0), busy: Vec::new(), overlaps: false });
            }
        }
    }
    for t in &b.stages {
        let name = t.name.name();
        let start = zroam_start + notes.secs(ms(t.start_ms), &format!("start of {name}"));
        let secs = notes.secs(ms(t.ms), &format!("duration of {name}"));
        let kind = match t.name {
            Stage::Wait | Stage::ZfsModule => Kind::Wait,
            _ => Kind::Work,
        };
        rows.push(Row { label: name, kind, start, secs, busy: Vec::new(), overlaps: false });
    }
    // Each probe pass goes to the `wait` row it started in (the re-check before the import
    // runs between stages and belongs to none).
    for p in &b.probe_passes {
        let at = zroam_start + notes.secs(ms(p.t_ms), "start of a probe pass");
        let secs = notes.secs(p.ms / 1000.0, "duration of a probe pass");
        if let Some(row) = rows.iter_mut().find(|w| w.label == Stage::Wait.name() && w.start <= at && at <= w.end()) {
            row.busy.push((at, secs.min(row.end() - at)));
        }
    }
    let mut end = 0.0f64;
    for (i, row) in rows.iter_mut().enumerate() {
        // A millisecond's slack: starts and durations are rounded to it.
        // Rows beside the stages overlap them by nature.
        row.overlaps = i > 0 && row.kind != Kind::Beside && row.start + 0.0015 < end;
        if row.kind != Kind::Beside {
            end = end.max(row.end());
        }
    }
    for row in rows.iter().filter(|r| r.overlaps) {
        notes.add(format!("{} starts before an earlier row ends", row.label));
    }
    let chosen = |v: &Option<serde_json::Value>, key: &str| v.as_ref().and_then(|v| v[key].as_str()).map(clean);
    let pool = b.pool.as_ref().filter(|p| p["decision"] == "chosen").and_then(|_| chosen(&b.pool, "name"));
    Timeline {
        from_kernel: up.is_some(),
        total: rows.iter().map(Row::end).fold(end, f64::max),
        rows,
        zroam_start,
        outcome: outcome_name(b.outcome),
        failed_at: b.failure.as_ref().map(|f| f.stage),
        pool,
        be: chosen(&b.be, "dataset"),
        notes: notes.finish(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::boot::record::{Pass, Timing};
    use crate::report::Mode;

    pub fn fixture() -> Report {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/report/usb-degraded.json");
        Report::read(&p).unwrap()
    }

    pub fn bare(uptime: Option<f64>, stages: &[(Stage, u64, u64)]) -> Report {
        let mut r = Report::new(Mode::Init);
        r.uptime_at_start = uptime;
        r.boot.stages = stages.iter().map(|&(name, start_ms, ms)| Timing { name, start_ms, ms, cpu_ms: 0.0 }).collect();
        r
    }

    #[test]
    fn the_fixture_on_the_kernels_axis() {
        let t = build(&fixture());
        assert!(t.from_kernel);
        let labels: Vec<_> = t.rows.iter().map(|r| r.label).collect();
        assert_eq!(labels, [KERNEL, "modules", "wait", "zfs-module", "import", "choose-be", "mount", "esp", "pivot"]);
        assert_eq!((t.rows[0].start, t.rows[0].secs), (0.0, 6.59));
        // A stage's start is the uptime plus its offset from zroam's start.
        assert!((t.rows[4].start - (6.59 + 9.865)).abs() < 1e-9 && (t.rows[4].secs - 2.466).abs() < 1e-9);
        assert!((t.total - (6.59 + 13.233)).abs() < 1e-9);
        assert_eq!(t.rows.iter().map(|r| r.kind).filter(|k| *k == Kind::Wait).count(), 2);
        // The wait's first three probe passes fall in it; the fourth ran after it.
        assert_eq!(t.rows[2].busy.len(), 3);
        assert!(t.rows.iter().all(|r| !r.overlaps), "{t:?}");
        assert_eq!((t.outcome, t.pool.as_deref(), t.be.as_deref()), ("booted", Some("rpool"), Some("rpool/ROOT/debian")));
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    #[test]
    fn without_uptime_the_axis_is_zroams() {
        let t = build(&bare(None, &[(Stage::Modules, 0, 50), (Stage::Import, 60, 1000)]));
        assert!(!t.from_kernel);
        assert_eq!(t.rows[0].label, "modules");
        assert!((t.rows[1].start - 0.06).abs() < 1e-9 && (t.total - 1.06).abs() < 1e-9);
    }

    #[test]
    fn bad_numbers_are_clamped_and_said() {
        let mut r = bare(Some(f64::NAN), &[(Stage::Modules, u64::MAX, u64::MAX)]);
        r.boot.probe_passes.push(Pass { t_ms: 0, ms: f64::NEG_INFINITY, cpu_ms: f64::NAN, devices: 0, reused: 0 });
        let t = build(&r);
        assert!(!t.from_kernel);
        assert!(t.rows[0].start <= LIMIT_S && t.rows[0].secs <= LIMIT_S && t.total.is_finite());
        assert!(t.notes.iter().any(|n| n.contains("uptime_at_start")), "{:?}", t.notes);
        assert!(t.notes.iter().any(|n| n.contains("start of modules") && n.contains("clamped")), "{:?}", t.notes);
        assert!(t.notes.iter().any(|n| n.contains("negative")), "{:?}", t.notes);
        for u in [-3.0, f64::INFINITY] {
            assert!(!build(&bare(Some(u), &[])).from_kernel);
        }
        let huge = build(&bare(Some(1e300), &[]));
        assert_eq!(huge.rows[0].secs, LIMIT_S);
        // Many bad rows give a bounded list of notes.
        let many = build(&bare(None, &vec![(Stage::Mount, u64::MAX, 0); 100]));
        assert!(many.notes.len() <= NOTES_MAX && many.notes.last().unwrap().contains("more"), "{:?}", many.notes);
    }

    #[test]
    fn zfs_load_and_drivers_run_beside_the_stages() {
        use crate::boot::record::{LoadedBy, ZfsLoad};
        let mut r = bare(Some(16.0), &[(Stage::Wait, 0, 2000), (Stage::Import, 2000, 1000)]);
        r.boot.zfs_load = Some(ZfsLoad {
            by: LoadedBy::Preload,
            hook_s: Some(9.0),
            drivers_s: Some((9.0, 10.5)),
            started_s: Some(10.5),
            live_s: Some(17.5),
        });
        let t = build(&r);
        let rows: Vec<_> = t.rows.iter().map(|r| (r.label, r.kind, r.start, r.secs)).collect();
        assert_eq!(rows[1], (DRIVERS_PRELOAD, Kind::Beside, 9.0, 1.5));
        assert_eq!(rows[2], (ZFS_PRELOAD, Kind::Beside, 10.5, 7.0));
        // They overlap the kernel's row and the wait: no note, no overlap mark on the stages.
        assert!(t.rows.iter().all(|r| !r.overlaps) && t.notes.is_empty(), "{t:?}");
        assert!((t.total - 19.0).abs() < 1e-9);
        // Boot's own load has no drivers row; a load with no end is left out.
        r.boot.zfs_load = Some(ZfsLoad { by: LoadedBy::Boot, started_s: Some(16.1), live_s: Some(16.9), ..ZfsLoad::default() });
        assert_eq!(build(&r).rows.iter().filter(|r| r.kind == Kind::Beside).map(|r| r.label).collect::<Vec<_>>(), [ZFS_BOOT]);
        r.boot.zfs_load = Some(ZfsLoad { by: LoadedBy::Boot, started_s: Some(16.1), live_s: None, ..ZfsLoad::default() });
        assert!(build(&r).rows.iter().all(|r| r.kind != Kind::Beside));
        // Hostile times are clamped like the rest; a live before the start draws nothing.
        r.boot.zfs_load = Some(ZfsLoad { by: LoadedBy::Preload, started_s: Some(f64::NAN), live_s: Some(-1.0), ..ZfsLoad::default() });
        let t = build(&r);
        assert!(t.rows.iter().filter(|r| r.kind == Kind::Beside).all(|r| r.secs == 0.0) && !t.notes.is_empty());
    }

    #[test]
    fn overlaps_are_marked() {
        let t = build(&bare(Some(1.0), &[(Stage::Wait, 0, 1000), (Stage::Import, 500, 100), (Stage::Mount, 1000, 5)]));
        assert_eq!(t.rows.iter().map(|r| r.overlaps).collect::<Vec<_>>(), [false, false, true, false]);
        assert!(t.notes.iter().any(|n| n.starts_with("import starts before")));
    }

    #[test]
    fn names_from_disks_are_cleaned() {
        assert_eq!(clean("rp\u{1b}[31mool\n\u{202e}x\u{7f}"), "rp[31moolx");
        let long = clean(&"é".repeat(500));
        assert_eq!(long.chars().count(), NAME_MAX);
        assert!(long.ends_with('…'));
        assert_eq!(clean("a<b>&\"'"), "a<b>&\"'", "escaping is the SVG's business");
    }

    #[test]
    fn times_read_as_ms_or_seconds() {
        assert_eq!(secs_text(0.0), "0 ms");
        assert_eq!(secs_text(0.077), "77 ms");
        assert_eq!(secs_text(0.9996), "1.00 s");
        assert_eq!(secs_text(9.734), "9.73 s");
        assert_eq!(secs_text(LIMIT_S), "1.0e8 s");
        assert_eq!(tick_step(19.8, 8), 5.0);
        assert_eq!(tick_step(0.05, 5), 0.01);
        assert_eq!(tick_text(0.3, 0.1), "0.3");
        assert_eq!(tick_text(15.0, 5.0), "15");
    }
}
