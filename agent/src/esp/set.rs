//! Stage `esp`, pure part: which ESPs form the set, and which one is the primary.
//!
//! The set is the ESPs on the disks that hold members of the imported root pool, those named
//! in the root pin, and those named in the ESP-set file of the primary (`zroam/esp-set`):
//!
//! ```text
//! # zroam ESP set: read from the booted ESP only; change it with `zroam esp add|remove PARTUUID`.
//! esp 3f0cae97-2b11-412a-8633-5da4ce48c0ff
//! local EFI/Vendor/machine-specific.bin
//! replace EFI/BOOT/BOOTX64.EFI
//! ```
//!
//! `esp PARTUUID` adds an ESP (not on a removable disk: a stick is never written because a
//! file says so); `local PATH` keeps a path (file or directory, relative to the ESP's root,
//! any case) per-ESP: never copied, never deleted; `replace PATH` lets zroam overwrite a
//! file it did not write at a path the primary has (the fallback loader another OS put
//! there). Only the primary's copy is read: the file is synced to the secondaries like any
//! other, and a set file on any other ESP (a stick that lists our PARTUUIDs) is data.

use crate::probe::sysfs::Bus;
use crate::probe::ProbeReport;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

/// Where the set file lives on each ESP.
pub const SET_FILE: &str = "zroam/esp-set";
/// A set file larger than this is not read (it is a handful of lines).
pub const MAX_SET_FILE: usize = 64 * 1024;
const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct SetFile {
    pub esps: Vec<Uuid>,
    pub local: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn parse(text: &str) -> SetFile {
    let mut s = SetFile::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if s.esps.len() + s.local.len() + s.replace.len() >= MAX_ENTRIES {
            s.warnings.push(format!("more than {MAX_ENTRIES} entries; the rest is ignored"));
            break;
        }
        let (k, v) = line.split_once(char::is_whitespace).map_or((line, ""), |(k, v)| (k, v.trim()));
        match k {
            "esp" => match Uuid::parse_str(v) {
                Ok(u) if !s.esps.contains(&u) => s.esps.push(u),
                Ok(_) => {}
                Err(_) => s.warnings.push(format!("line {}: '{v}' is not a PARTUUID", n + 1)),
            },
            "local" | "replace" => {
                // Relative to the ESP's root; a way out of it (`..`) is not a path on the ESP.
                let p = v.trim_matches(|c: char| c == '/' || c.is_whitespace());
                if p.is_empty() || p.split('/').any(|c| c.trim() == "..") {
                    s.warnings.push(format!("line {}: '{v}' is not a path on the ESP", n + 1));
                } else if k == "local" {
                    s.local.push(p.to_string());
                } else {
                    s.replace.push(p.to_string());
                }
            }
            _ => s.warnings.push(format!("line {}: not understood: {line}", n + 1)),
        }
    }
    s
}

pub fn render(s: &SetFile) -> String {
    let mut out = String::from("# zroam ESP set: read from the booted ESP only; change it with `zroam esp add|remove PARTUUID`.\n");
    for u in &s.esps {
        out.push_str(&format!("esp {u}\n"));
    }
    for l in &s.local {
        out.push_str(&format!("local {l}\n"));
    }
    for r in &s.replace {
        out.push_str(&format!("replace {r}\n"));
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// The ESP the firmware booted: read-only, the source.
    Primary,
    Secondary,
    /// With no primary known: compared, never written.
    Check,
    Skipped {
        why: String,
    },
}

/// Why an ESP that a RAID or mapping layer keeps is skipped (it is not zroam's to sync).
const MD_MEMBER: &str = "an mdraid member (md keeps this copy in step)";
const HELD_BY: &str = "held by ";

impl Role {
    /// Skipped because md (or another layer holding the partition) keeps it: a set of one,
    /// as far as zroam is concerned.
    pub fn left_to_a_layer(&self) -> bool {
        matches!(self, Role::Skipped { why } if why == MD_MEMBER || why.starts_with(HELD_BY))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Esp {
    pub partuuid: Uuid,
    /// The partition's node, when it was found.
    pub node: Option<String>,
    pub disk: Option<String>,
    /// Why it belongs to the set.
    pub member_because: String,
    #[serde(flatten)]
    pub role: Role,
}

/// The ESP set and each one's role. `listed` comes from the primary's set file, `pinned`
/// from the root pin; `booted` is the firmware's ESP (None: BIOS boot or no efivars — then
/// nothing is a primary and everything is only checked).
pub fn roles(rep: &ProbeReport, pool_guid: u64, listed: &[Uuid], pinned: &[Uuid], booted: Option<Uuid>) -> Vec<Esp> {
    let pool = rep.pools.iter().find(|p| p.guid == pool_guid);
    let member_disks: Vec<String> = pool
        .map(|p| {
            p.members
                .iter()
                .filter(|m| m.current)
                .filter_map(|m| rep.devices.iter().find(|d| d.dev.node == m.device))
                .map(|d| rep.disk_of(d))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<Esp> = Vec::new();
    for d in rep.devices.iter().filter(|d| d.is_esp()) {
        let Some(uuid) = d.gpt_entry.as_ref().map(|e| e.partuuid) else { continue };
        let disk = d.dev.parent.clone();
        let mut role = Role::Check;
        let because = if disk.as_ref().is_some_and(|k| member_disks.contains(k)) {
            "on a disk of the root pool"
        } else if pinned.contains(&uuid) {
            "named in the root pin"
        } else if listed.contains(&uuid) {
            // A file on a FAT does not make a stick part of the system.
            if d.dev.removable || d.dev.bus == Bus::Usb || d.dev.bus == Bus::Mmc {
                role = Role::Skipped {
                    why: format!(
                        "listed in the ESP-set file but on a removable disk; name it in the root pin (`esp {uuid}` in {}) to have it synced",
                        crate::decide::pin::PATH
                    ),
                };
            }
            "listed in the ESP-set file"
        } else {
            continue;
        };
        out.push(Esp { partuuid: uuid, node: Some(d.dev.node.clone()), disk, member_because: because.to_string(), role });
    }
    for (u, because) in pinned.iter().map(|u| (u, "named in the root pin")).chain(listed.iter().map(|u| (u, "listed in the ESP-set file")))
    {
        if !out.iter().any(|e| e.partuuid == *u) {
            out.push(Esp {
                partuuid: *u,
                node: None,
                disk: None,
                member_because: because.into(),
                role: Role::Skipped { why: "not found among the devices present".into() },
            });
        }
    }
    for e in out.iter_mut().filter(|e| !matches!(e.role, Role::Skipped { .. })) {
        let dev = rep.devices.iter().find(|d| Some(&d.dev.node) == e.node.as_ref());
        if dev.is_some_and(|d| d.contents.mdraid.is_some()) {
            e.role = Role::Skipped { why: MD_MEMBER.into() };
        } else if let Some(h) = dev.and_then(|d| d.dev.holders.first()) {
            e.role = Role::Skipped { why: format!("{HELD_BY}{h} (a RAID or mapping layer owns it)") };
        } else if dev.is_some_and(|d| d.contents.fat.is_none()) {
            e.role = Role::Skipped { why: "no FAT filesystem found on it".into() };
        }
    }
    // A PARTUUID on two partitions (a copied stick) names neither: both are left alone, and
    // when it is the booted one, no disk is known to be the one the firmware booted.
    let count = |u: Uuid| esp_count(rep, u);
    let mut duplicated = false;
    for e in out.iter_mut().filter(|e| e.node.is_some() && count(e.partuuid) > 1) {
        duplicated |= Some(e.partuuid) == booted;
        e.role = Role::Skipped {
            why: format!("PARTUUID {} is on {} partitions: which one is ours is not known", e.partuuid, count(e.partuuid)),
        };
    }
    // Never guess: without the firmware's word for one usable ESP, everything is only checked.
    let primary_known = !duplicated && booted.is_some_and(|b| out.iter().any(|e| e.partuuid == b && e.role == Role::Check));
    for e in out.iter_mut().filter(|e| e.role == Role::Check) {
        if primary_known {
            e.role = if Some(e.partuuid) == booted { Role::Primary } else { Role::Secondary };
        }
    }
    out
}

fn esp_count(rep: &ProbeReport, u: Uuid) -> usize {
    rep.devices.iter().filter(|d| d.is_esp() && d.gpt_entry.as_ref().is_some_and(|g| g.partuuid == u)).count()
}

/// Why no ESP is the primary (so nothing is written), or None when one is.
pub fn why_check_only(rep: &ProbeReport, esps: &[Esp], booted: Option<Uuid>) -> Option<String> {
    if esps.iter().any(|e| e.role == Role::Primary) {
        return None;
    }
    let Some(b) = booted else {
        return Some("the firmware did not say which ESP it booted (a BIOS boot, or no LoaderDevicePartUUID or BootCurrent entry)".into());
    };
    Some(match (esp_count(rep, b), esps.iter().find(|e| e.partuuid == b)) {
        (0, _) => format!("the booted ESP {b} is on no disk present"),
        (n, _) if n > 1 => format!("the booted ESP's PARTUUID {b} is on {n} partitions"),
        (_, None) => format!("the booted ESP {b} is not on a disk of the root pool, nor in the pin or the ESP-set file"),
        (_, Some(Esp { role: Role::Skipped { why }, .. })) => format!("the booted ESP {b} is skipped: {why}"),
        (_, Some(_)) => format!("the booted ESP {b} cannot be used"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::fat::Fat;
    use crate::ondisk::gpt::{PartKind, Partition};
    use crate::ondisk::mdraid::MdSuper;
    use crate::ondisk::vdev::PoolState;
    use crate::probe::assemble::{Health, Member, Pool};
    use crate::probe::sysfs::BlockDev;
    use crate::probe::{Contents, DeviceReport};

    fn u(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn part(disk: &str, n: u32, kind: PartKind, partuuid: Uuid, contents: Contents) -> DeviceReport {
        DeviceReport {
            dev: BlockDev::test_partition(disk, n),
            gpt_entry: Some(Partition {
                number: n,
                type_guid: Uuid::nil(),
                kind,
                partuuid,
                name: String::new(),
                first_lba: 2048,
                last_lba: 4096,
                attributes: 0,
            }),
            contents,
            elapsed_ms: 0.0,
            error: None,
        }
    }

    fn fat() -> Contents {
        Contents {
            fat: Some(Fat { kind: "FAT32".into(), serial: "ABCD-1234".into(), label: "EFI".into(), bytes_per_sector: 512 }),
            ..Contents::default()
        }
    }

    /// Disks vda and vdb hold the pool (guid 7); vdc is a stranger with an ESP; vdd's ESP is
    /// an md member.
    fn report() -> ProbeReport {
        let md = Contents { mdraid: Some(MdSuper { metadata: "1.0".into(), array_uuid: u(9), name: "esp".into(), level: 1 }), ..fat() };
        let devices = vec![
            part("vda", 1, PartKind::Esp, u(1), fat()),
            part("vda", 2, PartKind::Zfs, u(11), Contents::default()),
            part("vdb", 1, PartKind::Esp, u(2), fat()),
            part("vdb", 2, PartKind::Zfs, u(12), Contents::default()),
            part("vdc", 1, PartKind::Esp, u(3), fat()),
            part("vdd", 1, PartKind::Esp, u(4), md),
            part("vdd", 2, PartKind::Zfs, u(14), Contents::default()),
        ];
        let member = |d: &str| Member { device: d.into(), guid: 1, label_txg: 1, uberblock_txg: None, top_level: None, current: true };
        let pool = Pool {
            name: "rpool".into(),
            guid: 7,
            state: PoolState::Active,
            health: Health::Complete,
            problems: Vec::new(),
            txg: 1,
            uberblock_txg: None,
            version: None,
            hostid: None,
            hostname: None,
            errata: None,
            multihost: false,
            features_for_read: Vec::new(),
            members: vec![member("/dev/vda2"), member("/dev/vdb2"), member("/dev/vdd2")],
            missing: Vec::new(),
            top_levels: Vec::new(),
            boot_candidate: true,
            conflicts: Vec::new(),
        };
        ProbeReport {
            version: "t".into(),
            elapsed_ms: 0.0,
            reused: 0,
            devices,
            pools: vec![pool],
            aux: Vec::new(),
            pending: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn role_of(esps: &[Esp], n: u8) -> Role {
        esps.iter().find(|e| e.partuuid == u(n)).map(|e| e.role.clone()).expect("in the set")
    }

    #[test]
    fn primary_from_the_firmware_others_secondary() {
        let esps = roles(&report(), 7, &[], &[], Some(u(2)));
        assert_eq!(role_of(&esps, 2), Role::Primary);
        assert_eq!(role_of(&esps, 1), Role::Secondary);
        assert!(role_of(&esps, 4).left_to_a_layer(), "md member left alone");
        assert!(!esps.iter().any(|e| e.partuuid == u(3)), "a stranger's ESP is not in the set");
    }

    #[test]
    fn listed_esps_join_and_missing_ones_are_reported() {
        let esps = roles(&report(), 7, &[u(3), u(5)], &[], Some(u(1)));
        assert_eq!(role_of(&esps, 3), Role::Secondary);
        assert!(matches!(role_of(&esps, 5), Role::Skipped { .. }));
    }

    #[test]
    fn never_guess_the_primary() {
        // No efivars (BIOS), a booted ESP outside the set, or the booted ESP unusable.
        for booted in [None, Some(u(3)), Some(u(4))] {
            let esps = roles(&report(), 7, &[], &[], booted);
            assert!(!esps.iter().any(|e| matches!(e.role, Role::Primary | Role::Secondary)), "{booted:?}");
            assert_eq!(role_of(&esps, 1), Role::Check);
        }
    }

    #[test]
    fn a_copied_partuuid_names_no_primary_and_is_never_written() {
        // A stick (vde) whose ESP copies the booted ESP's PARTUUID, listed in the set file too.
        let mut rep = report();
        rep.devices.push(part("vde", 1, PartKind::Esp, u(2), fat()));
        let esps = roles(&rep, 7, &[u(2)], &[], Some(u(2)));
        assert!(!esps.iter().any(|e| e.role == Role::Primary), "{esps:?}");
        assert!(esps.iter().filter(|e| e.partuuid == u(2)).all(|e| matches!(e.role, Role::Skipped { .. })));
        assert!(esps.iter().all(|e| e.role != Role::Secondary), "nothing may be written without a primary");
        assert_eq!(role_of(&esps, 1), Role::Check);
    }

    #[test]
    fn a_listed_stick_is_never_a_secondary_unless_pinned() {
        // vdc's ESP is listed in the primary's set file, but the disk is removable (or USB).
        for usb in [false, true] {
            let mut rep = report();
            let d = rep.devices.iter_mut().find(|d| d.gpt_entry.as_ref().is_some_and(|g| g.partuuid == u(3))).unwrap();
            if usb {
                d.dev.bus = Bus::Usb;
            } else {
                d.dev.removable = true;
            }
            let esps = roles(&rep, 7, &[u(3)], &[], Some(u(1)));
            assert!(matches!(role_of(&esps, 3), Role::Skipped { why } if why.contains("removable")));
            // The pin is the system's own word: a pinned stick ESP is a secondary.
            let esps = roles(&rep, 7, &[], &[u(3)], Some(u(1)));
            assert_eq!(role_of(&esps, 3), Role::Secondary);
        }
    }

    #[test]
    fn held_partitions_are_left_alone_and_check_only_says_why() {
        let mut rep = report();
        rep.devices[2].dev.holders = vec!["md127".into()];
        let esps = roles(&rep, 7, &[], &[], Some(u(1)));
        assert!(matches!(role_of(&esps, 2), Role::Skipped { why } if why.contains("md127")));
        assert!(role_of(&esps, 2).left_to_a_layer());
        assert_eq!(why_check_only(&rep, &esps, Some(u(1))), None);
        let esps = roles(&rep, 7, &[], &[], Some(u(8)));
        assert!(why_check_only(&rep, &esps, Some(u(8))).unwrap().contains("on no disk present"));
        assert!(why_check_only(&rep, &esps, None).unwrap().contains("BIOS"));
        let esps = roles(&rep, 7, &[], &[], Some(u(3)));
        assert!(why_check_only(&rep, &esps, Some(u(3))).unwrap().contains("not on a disk of the root pool"));
    }

    #[test]
    fn set_file_round_trip_and_hostile_lines() {
        let text = format!(
            "# c\nesp {}\nesp {}\nlocal /EFI/Vendor/\nesp nonsense\nlocal ../etc\nbogus\nreplace EFI/BOOT/\nreplace ..\n",
            u(1),
            u(1)
        );
        let s = parse(&text);
        assert_eq!(s.esps, [u(1)]);
        assert_eq!(s.local, ["EFI/Vendor"]);
        assert_eq!(s.replace, ["EFI/BOOT"]);
        assert_eq!(s.warnings.len(), 4);
        let again = parse(&render(&s));
        assert_eq!((again.esps, again.local, again.replace), (s.esps, s.local, s.replace));
        let many: String = (0..1000).map(|_| "local x\n").collect();
        assert_eq!(parse(&many).local.len(), MAX_ENTRIES);
    }
}
