//! The boot menu's content and what a typed line means. Pure: the pools or boot
//! environments in, text and a pick out (`boot::menu` talks to the console).
//!
//! Line-based on purpose: it reads the same on a serial console and a VT, and needs no
//! terminal database in the ramdisk.

use crate::decide::be::{self, Dataset};
use crate::decide::choose::Candidate;
use crate::probe::assemble::Pool;
use serde::Serialize;

/// Snapshots listed under each BE; `s N` lists all of them.
pub const SHOWN_SNAPSHOTS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What is booted: a dataset, or a pool's name.
    pub name: String,
    /// Shown after the name: "bootfs", "next boot", a pool's GUID and devices.
    pub notes: Vec<String>,
    /// Snapshot names (after the `@`), oldest first.
    pub snapshots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub title: String,
    pub items: Vec<Item>,
    /// What boots when nobody picks (None: somebody must).
    pub default: Option<usize>,
    /// Lines shown under the title (other pools seen, and how to boot one).
    pub also: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pick", rename_all = "snake_case")]
pub enum Pick {
    Item {
        index: usize,
    },
    /// Boot a clone of this snapshot of the item (as `root=…@SNAP`).
    Snapshot {
        index: usize,
        snapshot: String,
    },
    /// The emergency shell (as the ramdisk's lock allows), then the menu again.
    Shell,
    /// Boot nothing: the boot goes on as without the menu (a refusal stays a refusal).
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Pick(Pick),
    /// Show this and ask again.
    Say(String),
}

/// The boot environments of an imported pool. `snaps`: `zfs list -t snapshot -s creation`
/// names under the pool; `default`: what the boot picks without the menu.
pub fn for_bes(pool: &str, bootfs: &str, ds: &[Dataset], snaps: &[String], default: Option<&str>) -> Menu {
    let next = ds.iter().find(|d| d.name == pool).and_then(|d| d.nextboot.clone());
    let envs = be::environments(pool, ds);
    let items = envs
        .iter()
        .map(|d| {
            let mut notes = Vec::new();
            if d.name == bootfs {
                notes.push("bootfs".to_string());
            }
            if next.as_deref() == Some(d.name.as_str()) {
                notes.push("next boot".to_string());
            }
            let snapshots =
                snaps.iter().filter_map(|s| s.split_once('@').filter(|(fs, _)| *fs == d.name).map(|(_, n)| n.to_string())).collect();
            Item { name: d.name.clone(), notes, snapshots }
        })
        .collect::<Vec<_>>();
    let default = default.and_then(|n| items.iter().position(|i| i.name == n));
    Menu { title: format!("boot environments of {pool}"), items, default, also: Vec::new() }
}

/// The other pools that could be booted: the BE menu names them (switching pools takes
/// another boot, with `zroam.pool=GUID`).
pub fn other_pools(pools: &[Pool], chosen: u64) -> Vec<String> {
    pools
        .iter()
        .filter(|p| p.boot_candidate && p.guid != chosen)
        .take(8)
        .map(|p| format!("also seen: pool {} (guid {}); zroam.pool={} boots it", p.name, p.guid, p.guid))
        .collect()
}

/// Pools that nothing told apart: somebody at the console picks one; there is no default.
pub fn for_pools(cands: &[Candidate]) -> Menu {
    let items = cands
        .iter()
        .map(|c| {
            let mut notes = vec![format!("guid {}", c.guid)];
            if let Some(h) = c.hostid {
                notes.push(format!("hostid {h:08x}"));
            }
            if let Some(h) = &c.hostname {
                notes.push(format!("from {h}"));
            }
            notes.push(c.devices.join(" "));
            Item { name: c.name.clone(), notes, snapshots: Vec::new() }
        })
        .collect();
    Menu {
        title: "several pools could be the root and nothing tells them apart: which one?".into(),
        items,
        default: None,
        also: Vec::new(),
    }
}

/// Reverse video marks the default on both serial terminals and the VT.
const HI: &str = "\x1b[7m";
const LO: &str = "\x1b[0m";

pub fn render(m: &Menu) -> String {
    let mut s = format!("\nzroam: {}\n", m.title);
    for a in &m.also {
        s.push_str(&format!("  ({a})\n"));
    }
    for (i, it) in m.items.iter().enumerate() {
        let notes = if it.notes.is_empty() { String::new() } else { format!("  ({})", it.notes.join(", ")) };
        let line = format!("{} {}) {}{notes}", if m.default == Some(i) { "*" } else { " " }, i + 1, it.name);
        if m.default == Some(i) {
            s.push_str(&format!("  {HI}{line}  <- default{LO}\n"));
        } else {
            s.push_str(&format!("  {line}\n"));
        }
        let n = it.snapshots.len();
        if n > 0 {
            let from = n.saturating_sub(SHOWN_SNAPSHOTS);
            let shown: Vec<String> =
                it.snapshots[from..].iter().enumerate().map(|(j, sn)| format!("{}.{} @{sn}", i + 1, from + j + 1)).collect();
            let more = if from > 0 { format!("   (+{from} older: s {})", i + 1) } else { String::new() };
            s.push_str(&format!("       {}{more}\n", shown.join("   ")));
        }
    }
    s.push_str(&help(m));
    s
}

fn help(m: &Menu) -> String {
    let snaps = m.items.iter().any(|i| !i.snapshots.is_empty());
    let mut h = String::from("  N boots N");
    if m.default.is_some() {
        h.push_str(", Enter the default");
    }
    if snaps {
        h.push_str(", N.M a clone of snapshot M of N, s N lists N's snapshots");
    }
    h.push_str(", ! opens the shell, q boots nothing\n");
    h
}

/// What a typed line asks for.
pub fn interpret(m: &Menu, line: &str) -> Reply {
    let l = line.trim();
    let item = |v: &str| v.parse::<usize>().ok().filter(|n| (1..=m.items.len()).contains(n)).map(|n| n - 1);
    let bad = || Reply::Say(format!("'{l}'? {}", help(m).trim()));
    match l {
        "" => match m.default {
            Some(i) => Reply::Pick(Pick::Item { index: i }),
            None => Reply::Say("there is no default here: type a number".into()),
        },
        "!" => Reply::Pick(Pick::Shell),
        "q" | "Q" => Reply::Pick(Pick::Stop),
        _ => {
            if let Some(v) = l.strip_prefix("s ").or_else(|| l.strip_prefix('s')) {
                let Some(i) = item(v.trim()) else { return bad() };
                let it = &m.items[i];
                if it.snapshots.is_empty() {
                    return Reply::Say(format!("{} has no snapshots", it.name));
                }
                let all: Vec<String> = it.snapshots.iter().enumerate().map(|(j, s)| format!("  {}.{} @{s}", i + 1, j + 1)).collect();
                return Reply::Say(format!("snapshots of {}:\n{}", it.name, all.join("\n")));
            }
            if let Some((a, b)) = l.split_once('.') {
                let (Some(i), Ok(j)) = (item(a), b.parse::<usize>()) else { return bad() };
                return match m.items[i].snapshots.get(j.wrapping_sub(1)) {
                    Some(s) => Reply::Pick(Pick::Snapshot { index: i, snapshot: s.clone() }),
                    None => Reply::Say(format!("{} has no snapshot {j}", m.items[i].name)),
                };
            }
            item(l).map_or_else(bad, |i| Reply::Pick(Pick::Item { index: i }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        let snaps = (1..=7).map(|i| format!("s{i}")).collect();
        Menu {
            title: "boot environments of rpool".into(),
            items: vec![
                Item { name: "rpool/ROOT/debian".into(), notes: vec!["bootfs".into()], snapshots: snaps },
                Item { name: "rpool/ROOT/other".into(), notes: vec![], snapshots: vec![] },
            ],
            default: Some(0),
            also: vec!["also seen: pool tank (guid 9); zroam.pool=9 boots it".into()],
        }
    }

    #[test]
    fn shows_the_default_and_the_newest_snapshots() {
        let t = render(&menu());
        assert!(t.contains("\x1b[7m* 1) rpool/ROOT/debian  (bootfs)  <- default\x1b[0m"), "{t}");
        assert!(t.contains("1.3 @s3") && t.contains("1.7 @s7") && !t.contains("@s2") && t.contains("+2 older: s 1"), "{t}");
        assert!(t.contains("    2) rpool/ROOT/other\n"), "{t}");
        assert!(t.contains("  (also seen: pool tank (guid 9); zroam.pool=9 boots it)\n"), "{t}");
        let none = Menu { default: None, ..menu() };
        assert!(!render(&none).contains("<- default") && !render(&none).contains("Enter"));
    }

    #[test]
    fn built_from_the_pool() {
        let list = "rpool\tnone\toff\trpool/ROOT/other\n\
rpool/ROOT\tnone\toff\t-\n\
rpool/ROOT/debian\t/\tnoauto\t-\n\
rpool/ROOT/debian/var\t/var\ton\t-\n\
rpool/ROOT/other\t/\tnoauto\t-\n";
        let ds = be::parse_list(list);
        let snaps: Vec<String> =
            ["rpool/ROOT/debian@a", "rpool/ROOT/debian/var@a", "rpool/ROOT/other@b", "rpool/ROOT/debian@c"].map(String::from).to_vec();
        let m = for_bes("rpool", "rpool/ROOT/debian", &ds, &snaps, Some("rpool/ROOT/other"));
        assert_eq!(m.default, Some(1));
        assert_eq!(m.items[0].notes, ["bootfs"]);
        assert_eq!(m.items[1].notes, ["next boot"]);
        assert_eq!(m.items[0].snapshots, ["a", "c"]);
        let c = |g: u64| Candidate {
            name: "rpool".into(),
            guid: g,
            hostid: Some(0x5eed1234),
            hostname: None,
            devices: vec!["/dev/vda2".into()],
        };
        let p = for_pools(&[c(1), c(2)]);
        assert_eq!((p.items.len(), p.default), (2, None));
        assert!(render(&p).contains("rpool  (guid 2, hostid 5eed1234, /dev/vda2)"), "{}", render(&p));
    }

    #[test]
    fn typed_lines() {
        let m = menu();
        let pick = |l: &str| interpret(&m, l);
        assert_eq!(pick(""), Reply::Pick(Pick::Item { index: 0 }));
        assert_eq!(pick(" 2 "), Reply::Pick(Pick::Item { index: 1 }));
        assert_eq!(pick("1.2"), Reply::Pick(Pick::Snapshot { index: 0, snapshot: "s2".into() }));
        assert_eq!(pick("!"), Reply::Pick(Pick::Shell));
        assert_eq!(pick("q"), Reply::Pick(Pick::Stop));
        assert!(matches!(pick("s 1"), Reply::Say(s) if s.contains("1.1 @s1") && s.contains("1.7 @s7")));
        for bad in ["3", "0", "1.0", "1.8", "2.1", "x", "s 9", "1.", "-1", "99999999999999999999"] {
            assert!(matches!(pick(bad), Reply::Say(_)), "{bad}");
        }
        let none = Menu { default: None, ..menu() };
        assert!(matches!(interpret(&none, ""), Reply::Say(_)));
    }
}
