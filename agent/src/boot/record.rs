//! What one boot did, as it goes: every decision with its reason, each stage's time. The
//! report (`crate::report`) wraps it with the log and resource figures and writes it.

use crate::boot::failure::Failure;
use crate::boot::stage::Stage;
use crate::decide::be::Mount;
use crate::decide::choose::HostidAction;
use crate::keys::KeyRecord;
use crate::sys::efi::BootedEsp;
use crate::sys::run::Outcome as HelperOutcome;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub name: Stage,
    /// Milliseconds since zroam started.
    pub start_ms: u64,
    pub ms: u64,
    /// zroam's own CPU time (user + system, all threads) spent in the stage.
    pub cpu_ms: f64,
}

/// One probe pass while waiting for the pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pass {
    pub t_ms: u64,
    pub ms: f64,
    pub cpu_ms: f64,
    pub devices: usize,
    pub reused: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub t_ms: u64,
    pub action: String,
    pub device: String,
}

/// How one wait for device discovery ended (readiness `settle` or `grace`, or a refusal
/// that waited for discovery), and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettleRecord {
    /// `settle`, `grace` or `refusal`: what waited.
    pub wait: String,
    /// Milliseconds from the wait's first probe pass to its end.
    pub ms: u64,
    /// Milliseconds the wait added: from when the choice first stood ready but for
    /// discovery (a pool importable, or the refusal's candidates), or from when zfs.ko was
    /// first seen live if later (the import needs it), to its end.
    #[serde(default)]
    pub added_ms: u64,
    /// `settled` (discovery settled), `grace` (`zroam.grace` ran out first) or `wait`
    /// (`zroam.wait` ran out).
    pub ended: String,
    /// Why it ended: what was given up on, or what was still pending.
    pub why: String,
    /// The scans the kernel showed in flight during the wait (`sys::scan`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scans: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRecord {
    pub start_ms: u64,
    #[serde(flatten)]
    pub outcome: HelperOutcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hostid {
    pub system: Option<String>,
    pub label: Option<String>,
    #[serde(flatten)]
    pub action: HostidAction,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    #[serde(flatten)]
    pub mount: Mount,
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Running,
    /// Switched root into the BE's init.
    Booted,
    /// `--no-switch`: the BE is mounted; the generator switches root.
    Mounted,
    Failed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    /// The command line as zroam read it (`decide::cmdline::Cmdline`, held as JSON to keep
    /// the binary small: nothing reads it back but the tests).
    pub cmdline: Option<serde_json::Value>,
    pub stages: Vec<Timing>,
    /// Each probe pass while waiting for the pool: when, how long, zroam's CPU for it.
    pub probe_passes: Vec<Pass>,
    pub events: Vec<DeviceEvent>,
    /// Each wait for discovery to settle: what it cost and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settle: Vec<SettleRecord>,
    pub modules: Vec<String>,
    pub booted_esp: Option<BootedEsp>,
    /// The last probe, as `zroam probe --json` prints it (its own format; the probe's
    /// tests keep it).
    pub probe: Option<serde_json::Value>,
    /// Which pool and why (`decide::choose::Choice`, as JSON like `cmdline`).
    pub pool: Option<serde_json::Value>,
    /// What was believed of the labels: the pin, what matched it, what was left out or
    /// refused, and why.
    /// (`decide::trust::Trust`, as JSON like `cmdline`.)
    pub trust: Option<serde_json::Value>,
    pub hostid: Option<Hostid>,
    /// The hibernation guard (`decide::resume::Guard`: images, action, what was done), only
    /// when there was an image. Held as JSON to keep the binary small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<serde_json::Value>,
    pub import: Option<ImportRecord>,
    /// The imported pool's checkpoint (`zpool get checkpoint`: the space it holds), when it
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The BE and how it was chosen (`decide::be::BePlan`, as JSON like `cmdline`).
    pub be: Option<serde_json::Value>,
    /// Each time the menu was shown: what it listed, how it ended, what was picked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub menu: Vec<serde_json::Value>,
    /// The snapshots, rollbacks and clones made (the plan's `steps` that succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// LUKS containers opened and ZFS keys loaded (where each key came from, never the key).
    pub keys: Vec<KeyRecord>,
    pub mounts: Vec<MountRecord>,
    /// The ESP stage's report, as `zroam esp status --json` prints it (its own format,
    /// kept by the ESP code's tests; held as JSON to keep the binary small).
    pub esp: Option<serde_json::Value>,
    pub init: Option<String>,
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
}
