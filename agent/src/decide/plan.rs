//! The one decision path shared by `zroam boot` and `zroam plan`: from what the probe saw,
//! the command line, the ramdisk's pin and this system's facts, which labels to believe,
//! which pool, what to do about its hostid, and the exact `zpool import` to run. Pure.

use crate::decide::choose::{self, Choice, Facts, HostidAction};
use crate::decide::cmdline::{Cmdline, PoolSel};
use crate::decide::import;
use crate::decide::resume::{self, Guard};
use crate::decide::trust::{self, PinSource, PinState, Trust};
use crate::probe::assemble::Pool;
use crate::probe::ProbeReport;
use crate::sys::efi::BootedEsp;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

/// What this system is, as far as the pool choice cares.
#[derive(Debug, Clone, Default)]
pub struct System {
    /// This ramdisk's hostid (`/etc/hostid` or spl_hostid).
    pub hostid: Option<u32>,
    /// The ESP the firmware booted, from EFI variables.
    pub booted: Option<BootedEsp>,
    /// The ramdisk's root pin (`decide::pin::PATH`).
    pub pin: PinSource,
    /// zroam is the ramdisk's `/init` (no generator tried to resume a hibernated system).
    pub own_ramdisk: bool,
}

/// The import the boot would run for the chosen pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Plan {
    pub pool: Choice,
    /// The chosen pool as the trusted labels assemble it.
    #[serde(skip)]
    pub chosen: Option<Pool>,
    pub trust: Trust,
    /// Only for a chosen pool.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hostid_action: Option<HostidAction>,
    /// Only for a chosen pool whose hostid does not refuse the import.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub import: Option<Import>,
    /// Hibernation images, and what is done about them before the import.
    pub resume: Guard,
}

/// Which pool, and how it would be imported.
pub fn plan(rep: &ProbeReport, cmd: &Cmdline, sys: &System) -> Plan {
    let state = trust::pin_state(&sys.pin, cmd);
    let pin = match (&state, &sys.pin) {
        (PinState::Active { .. }, Some(Ok(p))) => Some(p),
        _ => None,
    };
    let (found, mut trust) = trust::filter(rep, cmd, pin, state.clone());
    let resume = resume::decide(rep, &cmd.resume, sys.own_ramdisk);
    let refuse = |mut trust: Trust, why: String, found: Vec<String>, hint: &str| {
        trust.refused.extend(found.iter().cloned());
        trust.refused.push(why.clone());
        let pool = Choice::Refused { why, found, hint: hint.to_string() };
        Plan { pool, chosen: None, trust, hostid_action: None, import: None, resume: resume.clone() }
    };
    if let PinState::Unreadable { why } = &state {
        return refuse(
            trust,
            format!("the ramdisk's root pin ({}) cannot be read: {why}", crate::decide::pin::PATH),
            Vec::new(),
            "rebuild the ramdisk (its generator runs zroam pin), or zroam.pin=off boots without the pin",
        );
    }
    let pools = trust::assemble(&found, pin);
    let boot_disk_pools = trust::boot_disk_pools(rep, &pools, sys.booted.as_ref(), &mut trust);
    let mut facts = Facts { hostid: sys.hostid, boot_disk_pools, guid_reason: None };
    // With a pin, the pin names the pool (zroam.pool=GUID of another pool overrides it).
    let mut cmd = cmd.clone();
    if let Some(p) = pin {
        if let Some(PoolSel::Name(n)) = cmd.pool.as_ref().filter(|s| !matches!(s, PoolSel::Name(n) if *n == p.pool_name)) {
            trust.ignored.push(format!(
                "zroam.pool={n}: the ramdisk's pin names pool {} (guid {}); zroam.pool=GUID or zroam.pin=off overrides it",
                p.pool_name, p.pool_guid
            ));
        }
        cmd.pool = Some(PoolSel::Guid(p.pool_guid));
        facts.guid_reason = Some(format!("pinned in the ramdisk ({})", crate::decide::pin::PATH));
    }
    let choice = choose::choose(&pools, &cmd, &facts);
    if let Choice::Refused { why, found, hint } = &choice {
        return refuse(trust, why.clone(), found.clone(), hint);
    }
    let Choice::Chosen { guid, name, .. } = &choice else {
        return Plan { pool: choice, chosen: None, trust, hostid_action: None, import: None, resume };
    };
    let pool = pools.iter().find(|p| p.guid == *guid).expect("chosen from these pools").clone();
    let action = choose::hostid_action(&pool, sys.hostid, &cmd);
    let import = (!matches!(action, HostidAction::Refuse { .. })).then(|| {
        let devices: Vec<String> = pool.members.iter().filter(|m| m.current).map(|m| m.device.clone()).collect();
        let force = cmd.force || action == HostidAction::Force;
        let degraded = pool.members.iter().any(|m| !m.current) || !pool.missing.is_empty();
        let readonly = cmd.readonly || resume.read_only();
        let args = import::args(*guid, &devices, readonly, force, cmd.rewind_checkpoint);
        let argv = std::iter::once("zpool".to_string()).chain(args).collect();
        Import { guid: *guid, name: name.clone(), devices, force, degraded, argv }
    });
    Plan { hostid_action: Some(action), import, chosen: Some(pool), trust, pool: choice, resume }
}
