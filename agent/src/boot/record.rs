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
    /// The scans the kernel showed in flight during the wait (`sys::scan`, `sys::drivers`),
    /// and what kept drivers busy (a module initialising, our modprobe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scans: Vec<String>,
}

/// Where `zroam preload` leaves its `ZfsLoad` for `zroam boot` (and whoever looks later).
pub const PRELOAD_RECORD: &str = "/run/zroam/preload.json";
/// A preload record is a few numbers; anything longer is not one.
pub const PRELOAD_RECORD_MAX: u64 = 4096;

/// zfs.ko's load as this boot saw it, in seconds of kernel uptime: who started it, and
/// `zroam preload`'s own times when a generator's early hook ran it. With the stages this
/// tells where the time before the import went: the kernel and the generator up to its
/// first hook, the drivers, zfs.ko's init.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZfsLoad {
    pub by: LoadedBy,
    /// When `zroam preload` started: the generator's first hook that runs zroam.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_s: Option<f64>,
    /// The storage drivers' modprobe that `zroam preload` ran first: start and end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drivers_s: Option<(f64, f64)>,
    /// `modprobe zfs` started.
    pub started_s: Option<f64>,
    /// zfs.ko was live (modprobe returned, or zroam boot saw `initstate` read `live`).
    pub live_s: Option<f64>,
}

/// Who loaded zfs.ko.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadedBy {
    /// `zroam preload`, from a generator's early hook.
    Preload,
    /// zroam boot's own modprobe.
    Boot,
    /// Live before zroam looked: built in, or loaded by someone else.
    #[default]
    Other,
}

impl ZfsLoad {
    /// The preload's record completed by what boot saw itself (`own`): boot's poll may see
    /// the module live later than preload's modprobe returned, or earlier when preload's
    /// record was written before its modprobe returned. Pure.
    pub fn merge(preload: Option<ZfsLoad>, own: ZfsLoad) -> ZfsLoad {
        let Some(p) = preload else { return own };
        let live_s = match (p.live_s, own.live_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ZfsLoad { live_s, started_s: p.started_s.or(own.started_s), ..p }
    }

    /// The preload record's text, if it is one (bounded by the caller's read).
    pub fn parse(text: &str) -> Option<ZfsLoad> {
        let z: ZfsLoad = serde_json::from_str(text).ok()?;
        let ok = |v: Option<f64>| v.is_none_or(|t| t.is_finite() && t >= 0.0);
        (ok(z.hook_s) && ok(z.started_s) && ok(z.live_s)).then_some(z)
    }
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
    /// zfs.ko's load: by whom, when it started and went live (`ZfsLoad`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zfs_load: Option<ZfsLoad>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloads_record_completed_by_boots_own() {
        let pre = ZfsLoad { by: LoadedBy::Preload, hook_s: Some(9.0), drivers_s: Some((9.0, 10.0)), started_s: Some(10.0), live_s: None };
        let own = ZfsLoad { by: LoadedBy::Other, live_s: Some(17.2), ..ZfsLoad::default() };
        // Preload wrote before its modprobe returned: boot's sighting is the end.
        let m = ZfsLoad::merge(Some(pre.clone()), own.clone());
        assert_eq!((m.by, m.started_s, m.live_s, m.drivers_s), (LoadedBy::Preload, Some(10.0), Some(17.2), Some((9.0, 10.0))));
        // Both saw it: the earlier (boot polls).
        let m = ZfsLoad::merge(Some(ZfsLoad { live_s: Some(17.0), ..pre }), own.clone());
        assert_eq!(m.live_s, Some(17.0));
        // No preload: boot's own.
        assert_eq!(ZfsLoad::merge(None, own.clone()), own);
    }

    #[test]
    fn a_preload_record_is_read_warily() {
        let good = r#"{"by":"preload","hook_s":9.1,"drivers_s":[9.1,10.2],"started_s":10.2,"live_s":17.4}"#;
        assert_eq!(ZfsLoad::parse(good).unwrap().drivers_s, Some((9.1, 10.2)));
        for bad in [
            "",
            "{}",
            "[1]",
            r#"{"by":"preload","started_s":-1,"live_s":null}"#,
            r#"{"by":"xxxxxxxxxxxxxxxxx","started_s":null,"live_s":null}"#,
        ] {
            assert_eq!(ZfsLoad::parse(bad), None, "{bad}");
        }
    }
}
