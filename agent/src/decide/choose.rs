//! Which pool to boot, and whether to wait for more of it (asked on every pass of stage
//! `wait`). Pure: the assembled pools, the command line and what the firmware and ramdisk
//! say in; a decision out.

use crate::decide::cmdline::{Cmdline, HostidMode, PoolSel};
use crate::ondisk::vdev::PoolState;
use crate::probe::assemble::{Health, Pool};
use serde::{Deserialize, Serialize};

/// What the machine tells us besides the labels.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This ramdisk's hostid (`/etc/hostid` or spl_hostid); None when it has none.
    pub hostid: Option<u32>,
    /// Pools with a member on the disk whose ESP the firmware booted.
    pub boot_disk_pools: Vec<u64>,
    /// Why the GUID selector names its pool, when it is not the command line (the pin).
    pub guid_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    /// Import now.
    Now,
    /// Importable, but chosen by name, hostid or boot disk: import once device discovery
    /// has settled (drivers loaded, no new block device for a moment), then decide again.
    Settle { why: String },
    /// Importable but degraded: give the missing members a short grace first.
    Grace { why: String },
    /// Not importable yet: wait for devices up to `zroam.wait`.
    Wait { why: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub guid: u64,
    pub hostid: Option<u64>,
    pub hostname: Option<String>,
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Choice {
    Chosen {
        name: String,
        guid: u64,
        reason: String,
        readiness: Readiness,
    },
    /// Nothing that matches has appeared (yet).
    NotFound {
        why: String,
    },
    /// Several pools match and nothing tells them apart: refuse.
    Ambiguous {
        why: String,
        candidates: Vec<Candidate>,
    },
    /// The labels of the pool that would be chosen contradict each other (or the pin):
    /// refuse, with what was seen and what settles it.
    Refused {
        why: String,
        found: Vec<String>,
        hint: String,
    },
}

fn candidate(p: &Pool) -> Candidate {
    Candidate {
        name: p.name.clone(),
        guid: p.guid,
        hostid: p.hostid,
        hostname: p.hostname.clone(),
        devices: p.members.iter().filter(|m| m.current).map(|m| m.device.clone()).collect(),
    }
}

fn usable_state(s: PoolState) -> bool {
    matches!(s, PoolState::Active | PoolState::Exported | PoolState::PotentiallyActive)
}

fn hostid_matches(p: &Pool, f: &Facts) -> bool {
    matches!((p.hostid, f.hostid), (Some(l), Some(m)) if l == u64::from(m))
}

pub fn describe(c: &Candidate) -> String {
    let host = match (&c.hostname, c.hostid) {
        (Some(n), Some(h)) => format!("last used by {n} (hostid {h:08x})"),
        (None, Some(h)) => format!("last used by hostid {h:08x}"),
        _ => "no hostid".to_string(),
    };
    format!("{} guid {} on {} — {host}; boot it with zroam.pool={}", c.name, c.guid, c.devices.join(" "), c.guid)
}

pub fn choose(pools: &[Pool], cmd: &Cmdline, facts: &Facts) -> Choice {
    let want_name = cmd.root.as_ref().and_then(|r| r.pool()).map(str::to_string);
    let matches: Vec<&Pool> = pools
        .iter()
        .filter(|p| usable_state(p.state))
        .filter(|p| match &cmd.pool {
            Some(PoolSel::Guid(g)) => p.guid == *g,
            Some(PoolSel::Name(n)) => &p.name == n,
            None => true,
        })
        .filter(|p| want_name.as_ref().is_none_or(|n| &p.name == n))
        .collect();

    let what = match (&cmd.pool, &want_name) {
        (Some(PoolSel::Guid(g)), _) => format!("pool with guid {g}"),
        (Some(PoolSel::Name(n)), _) | (None, Some(n)) => format!("pool named {n}"),
        (None, None) => "ZFS pool".to_string(),
    };
    let seen: Vec<String> = pools.iter().map(|p| format!("{} (guid {}, {:?})", p.name, p.guid, p.state)).collect();
    if matches.is_empty() {
        let why = if seen.is_empty() {
            format!("no {what} found: no ZFS labels on any device")
        } else {
            format!("no {what} found; seen: {}", seen.join(", "))
        };
        return Choice::NotFound { why };
    }

    // Only a GUID named by the pin or the command line is certain: a name, a hostid or an
    // ESP's PARTUUID can be copied onto any stick, so a choice made by them waits until
    // discovery has settled.
    let by_guid = matches!(cmd.pool, Some(PoolSel::Guid(_)));
    let (pool, reason) = if let [p] = matches[..] {
        let reason = if by_guid {
            facts.guid_reason.clone().unwrap_or_else(|| "named by zroam.pool= guid".to_string())
        } else if facts.boot_disk_pools.contains(&p.guid) {
            "the only match, on the disk the firmware booted".to_string()
        } else if hostid_matches(p, facts) {
            "the only match, and its hostid is this system's".to_string()
        } else {
            format!("the only {what} found")
        };
        (p, reason)
    } else {
        let on_boot: Vec<&Pool> = matches.iter().copied().filter(|p| facts.boot_disk_pools.contains(&p.guid)).collect();
        let ours: Vec<&Pool> = matches.iter().copied().filter(|p| hostid_matches(p, facts)).collect();
        if let [p] = on_boot[..] {
            (p, format!("{} pools match; this one is on the disk the firmware booted", matches.len()))
        } else if let [p] = ours[..] {
            (p, format!("{} pools match; only this one carries this system's hostid", matches.len()))
        } else {
            let candidates: Vec<Candidate> = matches.iter().map(|p| candidate(p)).collect();
            let mine = facts.hostid.map_or("none".to_string(), |h| format!("{h:08x}"));
            return Choice::Ambiguous {
                why: format!(
                    "{} pools match {what} and neither the firmware's boot disk nor this system's hostid ({mine}) tells them apart",
                    matches.len()
                ),
                candidates,
            };
        }
    };

    if !pool.conflicts.is_empty() {
        return Choice::Refused {
            why: format!("the labels of {} (guid {}) contradict each other", pool.name, pool.guid),
            found: pool.conflicts.clone(),
            hint: "detach the device that does not belong, or name it with zroam.ignore=DEVICE|SERIAL; a ramdisk with the root's pin (zroam pin) tells the members apart".into(),
        };
    }
    let missing: Vec<String> = pool.missing.iter().map(|m| m.path.clone().unwrap_or_else(|| format!("guid {}", m.guid))).collect();
    let readiness = match pool.health {
        Health::Incomplete => Readiness::Wait { why: format!("{} is incomplete: {}", pool.name, pool.problems.join("; ")) },
        Health::Degraded => Readiness::Grace { why: format!("{} is degraded, missing {}", pool.name, missing.join(", ")) },
        Health::Complete if !by_guid => {
            Readiness::Settle { why: format!("{reason}: waiting for the devices to settle before trusting it") }
        }
        Health::Complete => Readiness::Now,
    };
    Choice::Chosen { name: pool.name.clone(), guid: pool.guid, reason, readiness }
}

/// What to do about the pool's hostid before importing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HostidAction {
    /// Nothing: it matches, the pool was exported, or it carries none.
    Keep,
    /// Take the label's hostid as this system's (spl_hostid), so the import is not refused.
    Adopt {
        hostid: u32,
    },
    /// Let zpool and multihost decide; zroam never forces past them.
    Multihost,
    /// zroam.force=1: import with -f.
    Force,
    Refuse {
        why: String,
        hint: String,
    },
}

pub fn hostid_action(pool: &Pool, mine: Option<u32>, cmd: &Cmdline) -> HostidAction {
    let label = match pool.hostid {
        Some(h) if h != 0 => h,
        _ => return HostidAction::Keep,
    };
    if pool.state == PoolState::Exported || Some(label) == mine.map(u64::from) {
        return HostidAction::Keep;
    }
    if pool.multihost {
        return HostidAction::Multihost;
    }
    if cmd.force {
        return HostidAction::Force;
    }
    match (cmd.hostid, u32::try_from(label)) {
        (HostidMode::Adopt, Ok(h)) => HostidAction::Adopt { hostid: h },
        _ => HostidAction::Refuse {
            why: format!(
                "pool {} (guid {}) was last imported by {} (hostid {label:08x}) and not exported; this system's hostid is {}",
                pool.name,
                pool.guid,
                pool.hostname.as_deref().unwrap_or("another system"),
                mine.map_or("unset".to_string(), |m| format!("{m:08x}"))
            ),
            hint: "zroam.hostid=adopt (the default) or zroam.force=1 imports it".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::parse;
    use crate::probe::assemble::{Member, Missing};

    fn pool(name: &str, guid: u64, hostid: u64, health: Health) -> Pool {
        Pool {
            name: name.into(),
            guid,
            state: PoolState::Active,
            health,
            problems: vec![],
            txg: 10,
            uberblock_txg: Some(10),
            version: Some(5000),
            hostid: Some(hostid),
            hostname: Some("h".into()),
            errata: None,
            multihost: false,
            features_for_read: vec![],
            members: vec![Member {
                device: format!("/dev/{name}{guid}"),
                guid: guid + 1,
                label_txg: 10,
                uberblock_txg: Some(10),
                top_level: None,
                current: true,
            }],
            missing: if health == Health::Degraded {
                vec![Missing { guid: 9, path: Some("/dev/vdb2".into()), top_level: "mirror-0".into() }]
            } else {
                vec![]
            },
            top_levels: vec![],
            boot_candidate: health != Health::Incomplete,
            conflicts: vec![],
        }
    }
    fn facts(hostid: u32) -> Facts {
        Facts { hostid: Some(hostid), boot_disk_pools: vec![], guid_reason: None }
    }

    #[test]
    fn single_pool_in_place() {
        let p = [pool("rpool", 1, 0x5eed1234, Health::Complete)];
        // Chosen by name and hostid: only once discovery has settled.
        match choose(&p, &parse("root=zfs:AUTO"), &facts(0x5eed1234)) {
            Choice::Chosen { guid: 1, readiness: Readiness::Settle { .. }, .. } => {}
            c => panic!("{c:?}"),
        }
        match choose(&p, &parse("root=zfs:AUTO"), &facts(7)) {
            Choice::Chosen { guid: 1, readiness: Readiness::Settle { .. }, .. } => {}
            c => panic!("{c:?}"),
        }
        // Named by GUID: certain, at once.
        match choose(&p, &parse("zroam.pool=1"), &facts(7)) {
            Choice::Chosen { guid: 1, readiness: Readiness::Now, .. } => {}
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn degraded_and_incomplete() {
        let p = [pool("rpool", 1, 5, Health::Degraded)];
        match choose(&p, &parse(""), &facts(5)) {
            Choice::Chosen { readiness: Readiness::Grace { why }, .. } => assert!(why.contains("/dev/vdb2"), "{why}"),
            c => panic!("{c:?}"),
        }
        let p = [pool("rpool", 1, 5, Health::Incomplete)];
        assert!(matches!(choose(&p, &parse(""), &facts(5)), Choice::Chosen { readiness: Readiness::Wait { .. }, .. }));
    }

    #[test]
    fn name_collision() {
        let p = [pool("rpool", 1, 0x5eed1234, Health::Complete), pool("rpool", 2, 0xbadcafe, Health::Complete)];
        // The hostid that matches wins.
        match choose(&p, &parse("root=zfs:AUTO"), &facts(0x5eed1234)) {
            Choice::Chosen { guid: 1, readiness: Readiness::Settle { .. }, reason, .. } => assert!(reason.contains("hostid")),
            c => panic!("{c:?}"),
        }
        // A GUID picks the other.
        match choose(&p, &parse("root=zfs:AUTO zroam.pool=2"), &facts(0x5eed1234)) {
            c @ Choice::Chosen { .. } => assert_eq!(c, choose(&p[1..], &parse("zroam.pool=2"), &facts(0x5eed1234))),
            c => panic!("{c:?}"),
        }
        // The firmware's boot disk beats the hostid.
        let f = Facts { hostid: Some(0x5eed1234), boot_disk_pools: vec![2], guid_reason: None };
        assert!(matches!(choose(&p, &parse(""), &f), Choice::Chosen { guid: 2, .. }));
        // Neither: refuse and list both with the parameter.
        match choose(&p, &parse("root=ZFS=rpool"), &facts(0x11111111)) {
            Choice::Ambiguous { candidates, why } => {
                assert_eq!(candidates.len(), 2);
                assert!(why.contains("11111111"));
                assert!(describe(&candidates[1]).contains("zroam.pool=2"));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn filters() {
        let mut d = pool("rpool", 3, 5, Health::Complete);
        d.state = PoolState::Destroyed;
        let p = [pool("tank", 1, 5, Health::Complete), d];
        assert!(matches!(choose(&p, &parse("root=ZFS=rpool/ROOT/x"), &facts(5)), Choice::NotFound { .. }));
        assert!(matches!(choose(&p, &parse("root=ZFS=tank"), &facts(5)), Choice::Chosen { guid: 1, .. }));
        match choose(&[], &parse(""), &facts(5)) {
            Choice::NotFound { why } => assert!(why.contains("no ZFS labels")),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn hostid_rules() {
        let mut p = pool("rpool", 1, 0xbadcafe, Health::Complete);
        assert_eq!(hostid_action(&p, Some(0xbadcafe), &parse("")), HostidAction::Keep);
        assert_eq!(hostid_action(&p, Some(1), &parse("")), HostidAction::Adopt { hostid: 0xbadcafe });
        assert_eq!(hostid_action(&p, None, &parse("")), HostidAction::Adopt { hostid: 0xbadcafe });
        match hostid_action(&p, Some(1), &parse("zroam.hostid=strict")) {
            HostidAction::Refuse { why, hint } => {
                assert!(why.contains("0badcafe") && why.contains("00000001"), "{why}");
                assert!(hint.contains("zroam.force=1"));
            }
            a => panic!("{a:?}"),
        }
        assert_eq!(hostid_action(&p, Some(1), &parse("zroam.hostid=strict zfs_force=1")), HostidAction::Force);
        p.multihost = true;
        // Never adopt (nor force) past multihost: zpool's activity check decides.
        assert_eq!(hostid_action(&p, Some(1), &parse("")), HostidAction::Multihost);
        p.multihost = false;
        p.state = PoolState::Exported;
        assert_eq!(hostid_action(&p, Some(1), &parse("zroam.hostid=strict")), HostidAction::Keep);
    }
}
