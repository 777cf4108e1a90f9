//! The boot report: every decision and its reason, kept at /run/zroam/report.json so it
//! survives into the booted system (`zroam status`).

use crate::be::{BePlan, Mount};
use crate::choose::{Candidate, Choice, HostidAction};
use crate::cmdline::Cmdline;
use crate::efi::BootedEsp;
use crate::probe::ProbeReport;
use crate::run::Outcome;
use serde::Serialize;
use std::path::Path;

pub const PATH: &str = "/run/zroam/report.json";

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: &'static str,
    /// Milliseconds since zroam started.
    pub start_ms: u64,
    pub ms: u64,
    /// zroam's own CPU time (user + system, all threads) spent in the stage.
    pub cpu_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub t_ms: u64,
    pub ms: f64,
    pub cpu_ms: f64,
    pub devices: usize,
    pub reused: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceEvent {
    pub t_ms: u64,
    pub action: String,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportRecord {
    pub start_ms: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hostid {
    pub system: Option<String>,
    pub label: Option<String>,
    #[serde(flatten)]
    pub action: HostidAction,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub stage: &'static str,
    pub message: String,
    /// The kernel parameter (or action) that resolves it.
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountRecord {
    #[serde(flatten)]
    pub mount: Mount,
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub version: &'static str,
    /// Kernel uptime when zroam started, in seconds.
    pub uptime_at_start: Option<f64>,
    pub mode: &'static str,
    pub cmdline: Option<Cmdline>,
    pub stages: Vec<Stage>,
    /// Each probe pass while waiting for the pool: when, how long, zroam's CPU for it.
    pub probe_passes: Vec<Pass>,
    pub events: Vec<DeviceEvent>,
    pub modules: Vec<String>,
    pub booted_esp: Option<BootedEsp>,
    pub probe: Option<ProbeReport>,
    pub pool: Option<Choice>,
    pub hostid: Option<Hostid>,
    pub import: Option<ImportRecord>,
    pub be: Option<BePlan>,
    /// LUKS containers opened and ZFS keys loaded (where each key came from, never the key).
    pub keys: Vec<crate::keys::KeyRecord>,
    pub mounts: Vec<MountRecord>,
    /// Stage 8: each ESP's role and what was copied, deleted or kept.
    pub esp: Option<crate::espsync::EspReport>,
    pub init: Option<String>,
    /// "booted", "mounted" (--no-switch) or "failed".
    pub outcome: &'static str,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    /// zroam's own CPU time and memory, and its helpers' (zpool, zfs, modprobe), as of
    /// this report.
    pub resources: Option<Resources>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Usage {
    pub user_ms: f64,
    pub sys_ms: f64,
    pub max_rss_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// zroam itself since it started, all threads (waits cost no CPU time, helpers are
    /// not counted).
    #[serde(rename = "self")]
    pub own: Usage,
    /// Waited-for helpers: zpool, zfs, modprobe, mount.
    pub children: Usage,
}

/// zroam's own CPU time when it started: as PID 1 the process already carries the kernel's
/// boot work (initcalls run in PID 1 before it execs /init), which is not zroam's.
static START: std::sync::OnceLock<Usage> = std::sync::OnceLock::new();

pub fn mark_start() {
    let _ = START.set(usage(libc::RUSAGE_SELF));
}

fn own() -> Usage {
    let u = usage(libc::RUSAGE_SELF);
    let s = START.get().cloned().unwrap_or_default();
    Usage { user_ms: u.user_ms - s.user_ms, sys_ms: u.sys_ms - s.sys_ms, max_rss_kib: u.max_rss_kib }
}

fn usage(who: libc::c_int) -> Usage {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut r) } != 0 {
        return Usage::default();
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Usage { user_ms: ms(r.ru_utime), sys_ms: ms(r.ru_stime), max_rss_kib: r.ru_maxrss as u64 }
}

/// zroam's own CPU time so far (user + system), in ms.
pub fn own_cpu_ms() -> f64 {
    let u = own();
    u.user_ms + u.sys_ms
}

pub fn resources() -> Resources {
    Resources { own: own(), children: usage(libc::RUSAGE_CHILDREN) }
}

impl Report {
    pub fn write(&mut self, path: &Path) -> std::io::Result<()> {
        self.log = crate::console::lines();
        self.resources = Some(resources());
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, path)
    }
}

pub fn uptime() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()
}
