//! Group probed labels into pools and decide whether each pool can be imported.
//! Pure: labels in, pools out.

use crate::ondisk::label::Uberblock;
use crate::ondisk::vdev::{LabelInfo, PoolState, Vdev};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// A device whose chosen label names a pool.
#[derive(Debug, Clone)]
pub struct Found {
    /// Device node, e.g. `/dev/vdb2`.
    pub device: String,
    pub info: LabelInfo,
    pub uberblock: Option<Uberblock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Every member present.
    Complete,
    /// Importable, but some members are missing.
    Degraded,
    /// Not importable: a top-level vdev is missing or has lost too many members.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Missing {
    pub guid: u64,
    /// The path the pool last knew the member by.
    pub path: Option<String>,
    pub top_level: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Member {
    pub device: String,
    pub guid: u64,
    pub label_txg: u64,
    pub uberblock_txg: Option<u64>,
    pub top_level: Option<String>,
    /// False when the device's guid is no longer in the pool's vdev tree (detached,
    /// replaced, split off): it is reported but never given to import.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct TopLevel {
    pub id: u64,
    pub name: String,
    pub health: Health,
    pub class: String,
    pub tree: Vdev,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Pool {
    pub name: String,
    pub guid: u64,
    pub state: PoolState,
    pub health: Health,
    /// Why the pool is degraded or incomplete, in words.
    pub problems: Vec<String>,
    pub txg: u64,
    pub uberblock_txg: Option<u64>,
    pub version: Option<u64>,
    pub hostid: Option<u64>,
    pub hostname: Option<String>,
    pub errata: Option<u64>,
    /// Multihost (MMP) seen in the best uberblock: delay 0 means off.
    pub multihost: bool,
    pub features_for_read: Vec<String>,
    pub members: Vec<Member>,
    pub missing: Vec<Missing>,
    pub top_levels: Vec<TopLevel>,
    /// Importable and in a state a boot may use (not destroyed).
    pub boot_candidate: bool,
    /// Labels that cannot all be true: the same member on two devices, or two vdev trees
    /// for the same pool that share no member. A pool with conflicts is never imported.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct AuxDevice {
    pub device: String,
    pub guid: u64,
    /// "spare" or "l2cache".
    pub role: PoolState,
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Assembly {
    pub pools: Vec<Pool>,
    /// Hot spares and cache devices: never boot candidates on their own.
    pub aux: Vec<AuxDevice>,
}

fn eval(v: &Vdev, found: &HashSet<u64>, top: &str, missing: &mut Vec<Missing>) -> Health {
    if v.children.is_empty() {
        return match v.kind.as_str() {
            "hole" | "indirect" => Health::Complete,
            _ if found.contains(&v.guid) => Health::Complete,
            _ => {
                missing.push(Missing { guid: v.guid, path: v.path.clone(), top_level: top.to_string() });
                Health::Incomplete
            }
        };
    }
    let hs: Vec<Health> = v.children.iter().map(|c| eval(c, found, top, missing)).collect();
    let failed = hs.iter().filter(|h| **h == Health::Incomplete).count() as u64;
    let worst_alive = hs.iter().filter(|h| **h != Health::Incomplete).max().copied();
    // How many children a vdev can lose and still serve every block.
    let tolerance = match v.kind.as_str() {
        "mirror" | "replacing" | "spare" => hs.len() as u64 - 1,
        "raidz" | "draid" => v.nparity.unwrap_or(1),
        _ => 0,
    };
    match (failed, worst_alive) {
        (0, Some(h)) => h,
        (f, Some(_)) if f <= tolerance => Health::Degraded,
        _ => Health::Incomplete,
    }
}

fn class(v: &Vdev) -> &'static str {
    match (v.is_log, v.alloc_bias.as_deref()) {
        (true, _) | (_, Some("log")) => "log",
        (_, Some("special")) => "special",
        (_, Some("dedup")) => "dedup",
        _ => "normal",
    }
}

/// Assemble pools from every device's chosen label.
pub fn assemble(found: &[Found]) -> Assembly {
    let mut out = Assembly::default();
    let mut by_pool: BTreeMap<u64, Vec<&Found>> = BTreeMap::new();
    for f in found {
        match f.info.pool_guid {
            Some(g) if !f.info.is_aux() => by_pool.entry(g).or_default().push(f),
            _ if f.info.is_aux() => out.aux.push(AuxDevice { device: f.device.clone(), guid: f.info.guid, role: f.info.state }),
            _ => {}
        }
    }
    for (guid, devs) in by_pool {
        out.pools.push(pool(guid, &devs));
    }
    out.pools.sort_by(|a, b| a.name.cmp(&b.name).then(a.guid.cmp(&b.guid)));
    out
}

fn pool(guid: u64, devs: &[&Found]) -> Pool {
    // The newest label speaks for the pool; per top-level vdev, the newest label of a
    // device in that top-level describes its tree.
    let newest = devs.iter().max_by_key(|d| d.info.txg).expect("at least one device");
    let mut tops: BTreeMap<u64, &Vdev> = BTreeMap::new();
    let mut top_txg: BTreeMap<u64, u64> = BTreeMap::new();
    for d in devs {
        if let Some(t) = &d.info.top {
            if top_txg.get(&t.id).is_none_or(|x| d.info.txg > *x) {
                tops.insert(t.id, t);
                top_txg.insert(t.id, d.info.txg);
            }
        }
    }
    let found: HashSet<u64> = devs.iter().map(|d| d.info.guid).collect();
    let children = devs.iter().filter_map(|d| d.info.vdev_children).max().unwrap_or(tops.len() as u64);
    let holes: HashSet<u64> = newest.info.hole_array.iter().copied().collect();

    let mut missing = Vec::new();
    let mut problems = Vec::new();
    let mut top_levels = Vec::new();
    let mut health = Health::Complete;
    for id in 0..children.min(4096) {
        if holes.contains(&id) {
            continue;
        }
        let Some(tree) = tops.get(&id) else {
            problems.push(format!("top-level vdev {id} is not on any device found"));
            health = Health::Incomplete;
            continue;
        };
        let name = tree.display_name();
        let h = eval(tree, &found, &name, &mut missing);
        let cls = class(tree);
        match h {
            Health::Incomplete if cls == "log" => {
                problems.push(format!("log vdev {name} is missing (import would need -m and lose its records)"))
            }
            Health::Incomplete => problems.push(format!("{name} has lost more members than it can spare")),
            Health::Degraded => problems.push(format!("{name} is missing members")),
            Health::Complete => {}
        }
        health = health.max(h);
        top_levels.push(TopLevel { id, name, health: h, class: cls.to_string(), tree: (*tree).clone() });
    }
    let current: HashSet<u64> = tops.values().flat_map(|t| t.leaves()).map(|l| l.guid).collect();
    let mut members: Vec<Member> = devs
        .iter()
        .map(|d| Member {
            device: d.device.clone(),
            guid: d.info.guid,
            label_txg: d.info.txg,
            uberblock_txg: d.uberblock.as_ref().map(|u| u.txg),
            top_level: d.info.top.as_ref().map(Vdev::display_name),
            current: current.contains(&d.info.guid),
        })
        .collect();
    members.sort_by(|a, b| a.device.cmp(&b.device));
    for m in members.iter().filter(|m| !m.current) {
        problems.push(format!("{} carries an old label of this pool (guid {}), not used", m.device, m.guid));
    }
    let conflicts = conflicts(devs, &tops, &top_txg);
    let best_ub = devs.iter().filter_map(|d| d.uberblock.as_ref()).max_by_key(|u| (u.txg, u.timestamp));
    let state = newest.info.state;
    Pool {
        name: newest.info.pool_name.clone().unwrap_or_default(),
        guid,
        state,
        health,
        problems,
        txg: newest.info.txg,
        uberblock_txg: best_ub.map(|u| u.txg),
        version: newest.info.version,
        hostid: newest.info.hostid,
        hostname: newest.info.hostname.clone(),
        errata: newest.info.errata,
        multihost: best_ub.and_then(|u| u.mmp.as_ref()).is_some_and(|m| m.delay_ns != 0),
        features_for_read: newest.info.features_for_read.clone(),
        members,
        missing,
        top_levels,
        boot_candidate: health != Health::Incomplete
            && matches!(state, PoolState::Active | PoolState::Exported | PoolState::PotentiallyActive),
        conflicts,
    }
}

/// What the labels of one pool GUID say that cannot all be true. A member copied with dd
/// shows up as one vdev GUID on two devices; a pool made elsewhere whose labels were given
/// this pool's GUID shows up as a vdev tree that shares no member with the others'. A
/// member that was replaced or detached shares the rest of its tree, and is only stale.
fn conflicts(devs: &[&Found], tops: &BTreeMap<u64, &Vdev>, top_txg: &BTreeMap<u64, u64>) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_vdev: BTreeMap<u64, Vec<&Found>> = BTreeMap::new();
    for d in devs {
        by_vdev.entry(d.info.guid).or_default().push(d);
    }
    for (g, ds) in by_vdev.iter().filter(|(_, ds)| ds.len() > 1) {
        let seen: Vec<String> = ds.iter().map(|d| format!("{} (txg {})", d.device, d.info.txg)).collect();
        out.push(format!("member guid {g} is on {} devices: {} (a copy of a disk?)", ds.len(), seen.join(", ")));
    }
    for d in devs {
        let Some(t) = &d.info.top else { continue };
        let Some(chosen) = tops.get(&t.id) else { continue };
        let chosen_leaves: HashSet<u64> = chosen.leaves().iter().map(|l| l.guid).collect();
        if chosen_leaves.contains(&d.info.guid) {
            continue;
        }
        let own: HashSet<u64> = t.leaves().iter().map(|l| l.guid).collect();
        if own.is_disjoint(&chosen_leaves) {
            let by = devs.iter().find(|x| x.info.top.as_ref().is_some_and(|xt| xt.id == t.id) && Some(&x.info.txg) == top_txg.get(&t.id));
            out.push(format!(
                "{} (txg {}) says top-level vdev {} is {}; {} (txg {}) says it is {}: these labels describe two different pools with one GUID",
                d.device,
                d.info.txg,
                t.id,
                leaf_list(t),
                by.map_or("another device", |x| x.device.as_str()),
                top_txg.get(&t.id).copied().unwrap_or_default(),
                leaf_list(chosen)
            ));
        }
    }
    out
}

fn leaf_list(v: &Vdev) -> String {
    let l: Vec<String> = v.leaves().iter().map(|l| l.guid.to_string()).collect();
    format!("{{{}}}", l.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(guid: u64, path: &str) -> Vdev {
        Vdev {
            kind: "disk".into(),
            id: 0,
            guid,
            path: Some(path.into()),
            nparity: None,
            ashift: Some(12),
            is_log: false,
            alloc_bias: None,
            children: vec![],
        }
    }

    fn node(kind: &str, id: u64, guid: u64, nparity: Option<u64>, children: Vec<Vdev>) -> Vdev {
        Vdev { kind: kind.into(), id, guid, path: None, nparity, ashift: Some(12), is_log: false, alloc_bias: None, children }
    }

    fn dev(device: &str, guid: u64, txg: u64, top: Vdev, children: u64) -> Found {
        Found {
            device: device.into(),
            info: LabelInfo {
                pool_name: Some("tank".into()),
                pool_guid: Some(77),
                state: PoolState::Active,
                txg,
                version: Some(5000),
                hostid: Some(1),
                hostname: Some("h".into()),
                guid,
                top_guid: Some(top.guid),
                vdev_children: Some(children),
                hole_array: vec![],
                errata: Some(0),
                features_for_read: vec![],
                top: Some(top),
            },
            uberblock: None,
        }
    }

    #[test]
    fn mirror_complete_degraded_and_stale_member() {
        let m = node("mirror", 0, 10, None, vec![leaf(1, "/dev/a"), leaf(2, "/dev/b")]);
        let a = assemble(&[dev("/dev/x", 1, 9, m.clone(), 1), dev("/dev/y", 2, 9, m.clone(), 1)]);
        assert_eq!(a.pools[0].health, Health::Complete);
        assert!(a.pools[0].boot_candidate);
        let a = assemble(&[dev("/dev/y", 2, 9, m.clone(), 1)]);
        let p = &a.pools[0];
        assert_eq!(p.health, Health::Degraded);
        assert_eq!(p.missing, vec![Missing { guid: 1, path: Some("/dev/a".into()), top_level: "mirror-0".into() }]);
        // A device with an old label whose guid left the tree is not a member.
        let a = assemble(&[
            dev("/dev/y", 2, 9, m.clone(), 1),
            dev("/dev/z", 3, 5, node("mirror", 0, 10, None, vec![leaf(3, "/dev/c"), leaf(2, "/dev/b")]), 1),
        ]);
        let p = &a.pools[0];
        assert_eq!(p.health, Health::Degraded);
        assert!(!p.members.iter().find(|m| m.device == "/dev/z").unwrap().current);
    }

    #[test]
    fn a_member_on_two_devices_is_a_conflict() {
        let m = node("mirror", 0, 10, None, vec![leaf(1, "/dev/a"), leaf(2, "/dev/b")]);
        // A dd copy of the second disk beside both originals, identical or not.
        for copy_txg in [9, 7] {
            let a =
                assemble(&[dev("/dev/x", 1, 9, m.clone(), 1), dev("/dev/y", 2, 9, m.clone(), 1), dev("/dev/z", 2, copy_txg, m.clone(), 1)]);
            let c = &a.pools[0].conflicts;
            assert_eq!(c.len(), 1, "{c:?}");
            assert!(c[0].contains("member guid 2 is on 2 devices") && c[0].contains("/dev/y") && c[0].contains("/dev/z"), "{c:?}");
        }
    }

    #[test]
    fn a_forged_label_with_a_newer_txg_is_a_conflict_and_a_stale_member_is_not() {
        let real = node("mirror", 0, 10, None, vec![leaf(1, "/dev/a"), leaf(2, "/dev/b")]);
        // Made elsewhere, given this pool's GUID and a higher txg: a one-disk tree.
        let forged = leaf(99, "/dev/s");
        let a = assemble(&[dev("/dev/x", 1, 9, real.clone(), 1), dev("/dev/y", 2, 9, real.clone(), 1), dev("/dev/s", 99, 500, forged, 1)]);
        let p = &a.pools[0];
        assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
        assert!(p.conflicts.iter().all(|c| c.contains("two different pools with one GUID") && c.contains("/dev/s")));
        // The stale member of the first test shares the rest of its tree: no conflict.
        let a = assemble(&[
            dev("/dev/y", 2, 9, real.clone(), 1),
            dev("/dev/z", 3, 5, node("mirror", 0, 10, None, vec![leaf(3, "/dev/c"), leaf(2, "/dev/b")]), 1),
        ]);
        assert!(a.pools[0].conflicts.is_empty(), "{:?}", a.pools[0].conflicts);
    }

    #[test]
    fn raidz_tolerates_nparity() {
        let r = node("raidz", 0, 10, Some(2), (1..=4).map(|g| leaf(g, "/dev/d")).collect());
        let with = |gs: &[u64]| assemble(&gs.iter().map(|g| dev("/dev/x", *g, 9, r.clone(), 1)).collect::<Vec<_>>()).pools[0].health;
        assert_eq!(with(&[1, 2, 3, 4]), Health::Complete);
        assert_eq!(with(&[1, 2]), Health::Degraded);
        assert_eq!(with(&[1]), Health::Incomplete);
    }

    #[test]
    fn missing_top_level_and_holes() {
        let t0 = leaf(1, "/dev/a");
        let mut f = dev("/dev/x", 1, 9, t0.clone(), 3);
        let a = assemble(&[f.clone()]);
        assert_eq!(a.pools[0].health, Health::Incomplete);
        assert!(!a.pools[0].boot_candidate);
        assert_eq!(a.pools[0].problems.len(), 2);
        f.info.hole_array = vec![1, 2];
        assert_eq!(assemble(&[f.clone()]).pools[0].health, Health::Complete);
        f.info.state = PoolState::Destroyed;
        let p = &assemble(&[f]).pools[0];
        assert_eq!((p.health, p.boot_candidate), (Health::Complete, false));
    }

    #[test]
    fn aux_devices_are_not_pools() {
        let mut f = dev("/dev/s", 5, 0, leaf(5, "/dev/s"), 1);
        f.info.state = PoolState::Spare;
        f.info.pool_guid = None;
        let a = assemble(&[f]);
        assert!(a.pools.is_empty());
        assert_eq!(a.aux.len(), 1);
    }
}
