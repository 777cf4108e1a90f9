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
    pub events: Vec<DeviceEvent>,
    pub modules: Vec<String>,
    pub booted_esp: Option<BootedEsp>,
    pub probe: Option<ProbeReport>,
    pub pool: Option<Choice>,
    pub hostid: Option<Hostid>,
    pub import: Option<ImportRecord>,
    pub be: Option<BePlan>,
    pub mounts: Vec<MountRecord>,
    /// Stage 8: each ESP's role and what was copied, deleted or kept.
    pub esp: Option<crate::espsync::EspReport>,
    pub init: Option<String>,
    /// "booted", "mounted" (--no-switch) or "failed".
    pub outcome: &'static str,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    pub log: Vec<String>,
}

impl Report {
    pub fn write(&mut self, path: &Path) -> std::io::Result<()> {
        self.log = crate::console::lines();
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
