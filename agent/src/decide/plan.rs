//! The one decision path shared by `zroam boot` and `zroam plan`: from what the probe saw,
//! the command line and this system's facts, which pool, what to do about its hostid, and
//! the exact `zpool import` to run. Pure.

use crate::decide::choose::{self, Choice, Facts, HostidAction};
use crate::decide::cmdline::Cmdline;
use crate::decide::import;
use crate::probe::ProbeReport;
use crate::sys::efi::BootedEsp;
use serde::{Deserialize, Serialize};

/// What this system is, as far as the pool choice cares.
#[derive(Debug, Clone, Default)]
pub struct System {
    /// This ramdisk's hostid (`/etc/hostid` or spl_hostid).
    pub hostid: Option<u32>,
    /// The ESP the firmware booted, from EFI variables.
    pub booted: Option<BootedEsp>,
}

/// The import the boot would run for the chosen pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    pub guid: u64,
    pub name: String,
    /// The members' device nodes as the probe found them (current labels only).
    pub devices: Vec<String>,
    pub force: bool,
    /// Members missing: the import gives their old paths no retries.
    pub degraded: bool,
    /// `zpool` and its arguments.
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub pool: Choice,
    /// Only for a chosen pool.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hostid_action: Option<HostidAction>,
    /// Only for a chosen pool whose hostid does not refuse the import.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub import: Option<Import>,
}

/// Pools with a member on the disk whose ESP the firmware booted.
pub fn boot_disk_pools(rep: &ProbeReport, booted: Option<&BootedEsp>) -> Vec<u64> {
    let Some(b) = booted else { return Vec::new() };
    let disk =
        rep.devices.iter().find(|d| d.gpt_entry.as_ref().is_some_and(|p| p.partuuid == b.partuuid)).and_then(|d| d.dev.parent.clone());
    let Some(disk) = disk else { return Vec::new() };
    let on_disk =
        |node: &str| rep.devices.iter().any(|d| d.dev.node == node && (d.dev.parent.as_deref() == Some(&disk) || d.dev.name == disk));
    rep.pools.iter().filter(|p| p.members.iter().any(|m| on_disk(&m.device))).map(|p| p.guid).collect()
}

/// Which pool, and how it would be imported.
pub fn plan(rep: &ProbeReport, cmd: &Cmdline, sys: &System) -> Plan {
    let facts = Facts { hostid: sys.hostid, boot_disk_pools: boot_disk_pools(rep, sys.booted.as_ref()) };
    let choice = choose::choose(&rep.pools, cmd, &facts);
    let Choice::Chosen { guid, name, .. } = &choice else {
        return Plan { pool: choice, hostid_action: None, import: None };
    };
    let pool = rep.pools.iter().find(|p| p.guid == *guid).expect("chosen from these pools");
    let action = choose::hostid_action(pool, sys.hostid, cmd);
    let import = (!matches!(action, HostidAction::Refuse { .. })).then(|| {
        let devices: Vec<String> = pool.members.iter().filter(|m| m.current).map(|m| m.device.clone()).collect();
        let force = cmd.force || action == HostidAction::Force;
        let degraded = pool.members.iter().any(|m| !m.current) || !pool.missing.is_empty();
        let argv = std::iter::once("zpool".to_string()).chain(import::args(*guid, &devices, cmd.readonly, force)).collect();
        Import { guid: *guid, name: name.clone(), devices, force, degraded, argv }
    });
    Plan { hostid_action: Some(action), import, pool: choice }
}
