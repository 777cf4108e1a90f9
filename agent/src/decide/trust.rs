//! What zroam believes of the labels it found, before it chooses: the ramdisk's pin (only
//! the root's pool GUID, only its members), the devices the command line sets aside
//! (`zroam.ignore=`), and whether the firmware's boot disk can be told from a copy. Pure:
//! the probe report in, the labels to assemble and a record of why out.

use crate::decide::cmdline::{Cmdline, PoolSel};
use crate::decide::pin::Pin;
use crate::probe::assemble::{self, Found, Pool};
use crate::probe::{DeviceReport, ProbeReport};
use crate::sys::efi::BootedEsp;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

/// The pin as this boot found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PinState {
    /// The ramdisk carries none: today's rules (name, hostid, boot disk, after settling).
    Absent,
    /// `zroam.pin=off`.
    Off,
    /// `zroam.pool=GUID` names another pool than the pin.
    Overridden { pinned: u64, by: u64 },
    /// The pin decides: only this pool, only these members.
    Active { pool_guid: u64, pool_name: String, vdevs: usize },
    /// The file is there but cannot be believed: nothing boots until it is fixed or
    /// `zroam.pin=off`.
    Unreadable { why: String },
}

/// The report's `trust` section.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Trust {
    pub pin: PinState,
    /// Pinned members found, as `GUID on DEVICE`.
    #[serde(default)]
    pub matched: Vec<String>,
    /// Labels left out, and why.
    #[serde(default)]
    pub ignored: Vec<String>,
    /// What was refused, and why.
    #[serde(default)]
    pub refused: Vec<String>,
    /// The firmware's booted ESP when more than one partition carries its PARTUUID: no
    /// disk can be trusted as the booted one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub booted_esp_duplicated: Option<String>,
}

/// The pin as read from the ramdisk: None when there is no file.
pub type PinSource = Option<Result<Pin, String>>;

/// The pin state this command line and ramdisk give.
pub fn pin_state(source: &PinSource, cmd: &Cmdline) -> PinState {
    match (source, cmd.pin) {
        (None, _) => PinState::Absent,
        (Some(_), false) => PinState::Off,
        (Some(Err(why)), true) => PinState::Unreadable { why: why.clone() },
        (Some(Ok(p)), true) => match cmd.pool {
            Some(PoolSel::Guid(g)) if g != p.pool_guid => PinState::Overridden { pinned: p.pool_guid, by: g },
            _ => PinState::Active { pool_guid: p.pool_guid, pool_name: p.pool_name.clone(), vdevs: p.vdevs.len() },
        },
    }
}

/// Does `zroam.ignore=` name this device: its node or name, its disk's, or its disk's
/// serial?
fn ignored_by(rep: &ProbeReport, d: &DeviceReport, names: &[String]) -> Option<String> {
    let disk = rep.disk_of(d);
    let serial = rep.devices.iter().find(|x| x.dev.name == disk).and_then(|x| x.dev.serial.clone());
    names
        .iter()
        .find(|n| {
            let n = n.trim_start_matches("/dev/");
            n == d.dev.name || n == disk || serial.as_deref() == Some(n)
        })
        .cloned()
}

/// The labels to believe, and the trust record so far.
pub fn filter(rep: &ProbeReport, cmd: &Cmdline, pin: Option<&Pin>, state: PinState) -> (Vec<Found>, Trust) {
    let mut trust = Trust { pin: state, matched: Vec::new(), ignored: Vec::new(), refused: Vec::new(), booted_esp_duplicated: None };
    let mut found = Vec::new();
    for d in &rep.devices {
        let Some(z) = &d.contents.zfs else { continue };
        let Some(info) = z.label.clone() else { continue };
        let node = d.dev.node.clone();
        if let Some(n) = ignored_by(rep, d, &cmd.ignore) {
            trust.ignored.push(format!("{node}: named by zroam.ignore={n}"));
            continue;
        }
        if let (Some(p), Some(g)) = (pin, info.pool_guid) {
            if g == p.pool_guid {
                if p.vdevs.contains(&info.guid) {
                    trust.matched.push(format!("{} on {node}", info.guid));
                } else {
                    trust.ignored.push(format!(
                        "{node}: claims pool {} (guid {g}) as member {}, which the pin does not list",
                        info.pool_name.as_deref().unwrap_or("?"),
                        info.guid
                    ));
                    continue;
                }
            }
        }
        found.push(Found { device: node, info, uberblock: z.uberblock.clone() });
    }
    (found, trust)
}

/// The pools as the trusted labels assemble, with the pin's own contradictions added to
/// the pinned pool's conflicts: a newest config that leaves out pinned members which are
/// present.
pub fn assemble(found: &[Found], pin: Option<&Pin>) -> Vec<Pool> {
    let mut pools = assemble::assemble(found).pools;
    if let Some(p) = pin {
        for pool in pools.iter_mut().filter(|x| x.guid == p.pool_guid) {
            let dropped: Vec<String> = pool
                .members
                .iter()
                .filter(|m| !m.current && p.vdevs.contains(&m.guid))
                .map(|m| {
                    format!("pinned member {} is present on {} but the newest config (txg {}) leaves it out", m.guid, m.device, pool.txg)
                })
                .collect();
            pool.conflicts.extend(dropped);
        }
    }
    pools
}

/// Pools with a member on the disk whose ESP the firmware booted, unless that PARTUUID is
/// on more than one partition (a copy cannot be told from the original).
pub fn boot_disk_pools(rep: &ProbeReport, pools: &[Pool], booted: Option<&BootedEsp>, trust: &mut Trust) -> Vec<u64> {
    let Some(b) = booted else { return Vec::new() };
    let with: Vec<&DeviceReport> = rep.devices.iter().filter(|d| d.gpt_entry.as_ref().is_some_and(|p| p.partuuid == b.partuuid)).collect();
    if with.len() > 1 {
        let nodes: Vec<&str> = with.iter().map(|d| d.dev.node.as_str()).collect();
        trust.booted_esp_duplicated = Some(format!("PARTUUID {} is on {}: the booted disk is not known", b.partuuid, nodes.join(", ")));
        return Vec::new();
    }
    let Some(disk) = with.first().and_then(|d| d.dev.parent.clone()) else { return Vec::new() };
    let on_disk =
        |node: &str| rep.devices.iter().any(|d| d.dev.node == node && (d.dev.parent.as_deref() == Some(&disk) || d.dev.name == disk));
    pools.iter().filter(|p| p.members.iter().any(|m| on_disk(&m.device))).map(|p| p.guid).collect()
}
