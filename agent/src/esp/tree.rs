//! Stage `esp`, pure part: what brings a secondary ESP in line with the primary. Trees are
//! compared by size and content hash (FAT timestamps are not trusted) and by name without
//! regard to case, as FAT looks names up.
//!
//! zroam manages, it does not mirror: it writes the primary's files, and it deletes only
//! what its manifest on that secondary says it wrote and the primary no longer has. Anything
//! else (another OS's loader, a vendor tool) is foreign: left alone and reported. A foreign
//! file at a path the primary has is a conflict, overwritten only when the set file says
//! `replace PATH`. Per-ESP paths are never touched.

use crate::esp::manifest::{self, Manifest};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One entry of an ESP's tree, by path relative to its root ("EFI/BOOT/BOOTX64.EFI").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { size: u64, hash: [u8; 32] },
}

pub type Tree = BTreeMap<String, Node>;

/// Paths that stay each ESP's own: systemd-boot's random seed (a per-disk secret would be
/// cloned otherwise), zroam's in-progress marker and its manifest.
pub const ALWAYS_LOCAL: &[&str] = &["loader/random-seed", MARKER, manifest::PATH];
/// Written on a secondary before its first change and removed after its last.
pub const MARKER: &str = "zroam/sync-in-progress";
/// Suffix of the temporary name a file is written under before the rename.
pub const TMP_SUFFIX: &str = ".zroam-tmp";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Plan {
    /// Directories to create (the secondary's spelling), parents first.
    pub mkdirs: Vec<String>,
    /// Files to write (new or changed content), by the primary's path.
    pub copies: Vec<String>,
    /// Where a copy goes when the secondary spells the path otherwise (FAT ignores case):
    /// (primary path, secondary path).
    #[serde(skip)]
    pub target: Vec<(String, String)>,
    /// zroam's own entries the primary no longer has, children first. Done after the copies.
    pub deletes: Vec<String>,
    /// Entries zroam did not write and the primary does not have (a directory stands for
    /// everything under it).
    #[serde(default)]
    pub foreign: Vec<String>,
    /// Foreign entries at paths the primary has, left as they are (no `replace PATH`).
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Entries left alone because they are per-ESP.
    pub kept_local: Vec<String>,
    /// Bytes the copies write.
    pub bytes: u64,
    /// The manifest before the plan is carried out: the old entries that are still zroam's
    /// (unchanged on the disk) and files already equal to the primary's (adopted).
    #[serde(skip)]
    pub manifest: Manifest,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.mkdirs.is_empty() && self.copies.is_empty() && self.deletes.is_empty()
    }
}

fn key(p: &str) -> String {
    p.to_lowercase()
}

/// Does the (lower-case) set hold an entry below directory `k`? A range lookup: a hostile
/// ESP's 20 000 entries must not make this quadratic.
fn holds_any(set: &BTreeSet<String>, k: &str) -> bool {
    let prefix = format!("{k}/");
    set.range(prefix.clone()..).next().is_some_and(|s| s.starts_with(&prefix))
}

fn parent(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(a, _)| a)
}

/// Is `path` (or a parent of it) one of `list`, compared without case?
fn listed<S: AsRef<str>>(path: &str, list: &[S]) -> bool {
    let k = key(path);
    list.iter().any(|l| {
        let l = key(l.as_ref().trim_matches('/'));
        !l.is_empty() && (k == l || k.starts_with(&format!("{l}/")))
    })
}

/// Is `path` (or a parent of it) one of the per-ESP paths?
pub fn is_local(path: &str, local: &[String]) -> bool {
    listed(path, local) || listed(path, ALWAYS_LOCAL)
}

/// What the set file says beyond the member list: per-ESP paths and foreign paths to replace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    pub local: &'a [String],
    pub replace: &'a [String],
}

/// The changes that bring `secondary` in line with `primary`. `manifest` is what zroam wrote
/// there before (None: no manifest). A secondary without a manifest that holds the set file
/// was mirrored by an older zroam: files at the primary's paths are taken as zroam's to
/// overwrite, but nothing is deleted until a manifest says what zroam wrote.
pub fn plan(primary: &Tree, secondary: &Tree, rules: Rules, manifest: Option<&Manifest>) -> Plan {
    let mut p = Plan::default();
    let sec: BTreeMap<String, (&String, &Node)> = secondary.iter().map(|(k, v)| (key(k), (k, v))).collect();
    let legacy = manifest.is_none() && sec.contains_key(&key(crate::esp::set::SET_FILE));
    let recorded: Tree = manifest.map(|m| m.entries.iter().map(|(k, e)| (key(k), e.clone())).collect()).unwrap_or_default();
    // zroam's own: recorded, and (for a file) still holding what zroam wrote.
    let ours = |name: &str, node: &Node| recorded.get(&key(name)) == Some(node);
    for (name, node) in secondary {
        if ours(name, node) && !is_local(name, rules.local) {
            p.manifest.entries.insert(name.clone(), node.clone());
        }
    }
    // The secondary's spelling of a primary path: existing components keep theirs.
    let spell = |path: &str| -> String {
        let mut out = String::new();
        for (i, comp) in path.split('/').enumerate() {
            let cand = if i == 0 { comp.to_string() } else { format!("{out}/{comp}") };
            out = sec.get(&key(&cand)).map_or(cand, |(n, _)| (*n).clone());
        }
        out
    };

    for (path, node) in primary {
        if is_local(path, rules.local) {
            continue;
        }
        let theirs = sec.get(&key(path)).copied();
        match (node, theirs) {
            (Node::Dir, None) => p.mkdirs.push(spell(path)),
            (Node::Dir, Some((_, Node::Dir))) => {}
            (Node::File { size, .. }, None) => {
                let to = spell(path);
                if to != *path {
                    p.target.push((path.clone(), to));
                }
                p.copies.push(path.clone());
                p.bytes += size;
            }
            (Node::File { hash, .. }, Some((name, n @ Node::File { hash: h2, .. }))) if hash == h2 => {
                // Already the primary's content: zroam's from now on.
                p.manifest.entries.insert(name.clone(), n.clone());
            }
            (Node::File { size, .. }, Some((name, n @ Node::File { .. }))) => {
                if ours(name, n) || legacy || listed(path, rules.replace) {
                    if name != path {
                        p.target.push((path.clone(), name.clone()));
                    }
                    p.copies.push(path.clone());
                    p.bytes += size;
                } else {
                    p.conflicts.push(name.clone());
                }
            }
            // A file where the primary has a directory or the reverse: never resolved by
            // deleting a tree.
            (_, Some((name, _))) => p.conflicts.push(name.clone()),
        }
    }

    // The secondary's entries the primary lacks: zroam's go, the rest is foreign. Deepest
    // first, so a directory zroam made goes only when nothing is left in it.
    let on_primary: BTreeSet<String> = primary.keys().filter(|k| !is_local(k, rules.local)).map(|k| key(k)).collect();
    let mut names: Vec<&String> = secondary.keys().collect();
    names.sort_by(|a, b| b.matches('/').count().cmp(&a.matches('/').count()).then(a.cmp(b)));
    let mut stays: BTreeSet<String> = BTreeSet::new();
    let mut foreign: BTreeSet<String> = BTreeSet::new();
    // Directories that hold per-ESP entries (zroam/ holds the manifest) are not foreign.
    let mut holds_local: BTreeSet<String> = BTreeSet::new();
    for name in secondary.keys().filter(|n| is_local(n, rules.local)) {
        let mut a = name.as_str();
        while let Some(d) = parent(a) {
            holds_local.insert(key(d));
            a = d;
        }
    }
    for name in names {
        let k = key(name);
        let node = &secondary[name];
        let gone = if is_local(name, rules.local) {
            if !name.ends_with(TMP_SUFFIX) {
                p.kept_local.push(name.clone());
            }
            false
        } else if on_primary.contains(&k) {
            false
        } else if (name.ends_with(TMP_SUFFIX) && matches!(node, Node::File { .. }))
            || (ours(name, node) && !(matches!(node, Node::Dir) && holds_any(&stays, &k)))
        {
            // zroam's own temporary (a sync cut off), or zroam's own entry with nothing
            // left in it
            true
        } else {
            // zroam's directory kept for what someone else put in it is still zroam's.
            if !holds_local.contains(&k) && !ours(name, node) {
                foreign.insert(k.clone());
            }
            false
        };
        if gone {
            p.deletes.push(name.clone());
        } else {
            stays.insert(k);
        }
    }
    p.kept_local.sort();
    // A foreign directory stands for what is under it.
    p.foreign =
        secondary.keys().filter(|n| foreign.contains(&key(n)) && !parent(n).is_some_and(|d| foreign.contains(&key(d)))).cloned().collect();
    // A conflict is foreign too: not zroam's, wherever it is.
    p.foreign.extend(p.conflicts.iter().cloned());
    p.foreign.sort();
    p.mkdirs.sort_by(|a, b| a.matches('/').count().cmp(&b.matches('/').count()).then(a.cmp(b)));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u8, size: u64) -> Node {
        Node::File { size, hash: [n; 32] }
    }

    fn tree(entries: &[(&str, Node)]) -> Tree {
        entries.iter().map(|(p, n)| (p.to_string(), n.clone())).collect()
    }

    fn wrote(entries: &[(&str, Node)]) -> Manifest {
        Manifest { entries: tree(entries) }
    }

    fn target<'a>(p: &'a Plan, from: &str) -> Option<&'a str> {
        p.target.iter().find(|(f, _)| f == from).map(|(_, t)| t.as_str())
    }

    fn none() -> Rules<'static> {
        Rules::default()
    }

    #[test]
    fn identical_trees_need_nothing_and_are_adopted() {
        let t = tree(&[("EFI", Node::Dir), ("EFI/BOOT", Node::Dir), ("EFI/BOOT/BOOTX64.EFI", f(1, 10))]);
        let p = plan(&t, &t, none(), None);
        assert!(p.is_empty());
        assert!(p.foreign.is_empty() && p.conflicts.is_empty());
        // The same content is the primary's file: zroam manages it from now on.
        assert_eq!(p.manifest.entries.get("EFI/BOOT/BOOTX64.EFI"), Some(&f(1, 10)));
    }

    #[test]
    fn deletes_only_what_it_wrote_and_the_primary_dropped() {
        let pri = tree(&[("EFI", Node::Dir), ("EFI/debian", Node::Dir), ("EFI/debian/vmlinuz", f(2, 100)), ("loader", Node::Dir)]);
        let sec = tree(&[
            ("EFI", Node::Dir),
            ("EFI/debian", Node::Dir),
            ("EFI/debian/vmlinuz", f(1, 100)),  // zroam's, outdated
            ("EFI/debian/old-initrd", f(4, 7)), // zroam's, gone from the primary
            ("EFI/old", Node::Dir),             // a directory zroam made, now empty after
            ("EFI/old/x.efi", f(5, 1)),
            ("EFI/Microsoft", Node::Dir), // another OS
            ("EFI/Microsoft/Boot", Node::Dir),
            ("EFI/Microsoft/Boot/bootmgfw.efi", f(6, 9)),
            ("EFI/debian/notes.txt", f(7, 3)),  // the user's
            ("EFI/debian/edited.cfg", f(8, 3)), // zroam wrote it, someone changed it since
            ("loader", Node::Dir),
            ("loader/random-seed", f(9, 32)),
            ("zroam", Node::Dir),
            ("zroam/manifest", f(10, 100)),
        ]);
        let m = wrote(&[
            ("EFI/debian/vmlinuz", f(1, 100)),
            ("EFI/debian/old-initrd", f(4, 7)),
            ("EFI/old", Node::Dir),
            ("EFI/old/x.efi", f(5, 1)),
            ("EFI/debian/edited.cfg", f(0, 3)),
            ("EFI/gone-already", f(3, 1)),
        ]);
        let p = plan(&pri, &sec, none(), Some(&m));
        assert_eq!(p.copies, ["EFI/debian/vmlinuz"]);
        assert_eq!(p.deletes, ["EFI/debian/old-initrd", "EFI/old/x.efi", "EFI/old"]);
        assert_eq!(p.foreign, ["EFI/Microsoft", "EFI/debian/edited.cfg", "EFI/debian/notes.txt"]);
        assert_eq!(p.kept_local, ["loader/random-seed", "zroam/manifest"]);
        assert!(p.conflicts.is_empty());
        // What the manifest holds before the plan runs: zroam's entries still intact (the
        // ones to delete too, until they are gone), not the changed or vanished ones.
        let keys: Vec<&String> = p.manifest.entries.keys().collect();
        assert_eq!(keys, ["EFI/debian/old-initrd", "EFI/debian/vmlinuz", "EFI/old", "EFI/old/x.efi"]);
    }

    #[test]
    fn a_foreign_file_at_a_primary_path_is_a_conflict_unless_replace() {
        // Windows' fallback loader, lower case, where the primary has systemd-boot.
        let pri = tree(&[("EFI", Node::Dir), ("EFI/BOOT", Node::Dir), ("EFI/BOOT/BOOTX64.EFI", f(1, 10)), ("EFI/BOOT/fbx64.efi", f(2, 5))]);
        let sec = tree(&[("efi", Node::Dir), ("efi/boot", Node::Dir), ("efi/boot/bootx64.efi", f(7, 20))]);
        let p = plan(&pri, &sec, none(), Some(&Manifest::default()));
        assert_eq!(p.conflicts, ["efi/boot/bootx64.efi"]);
        assert_eq!(p.foreign, ["efi/boot/bootx64.efi"]);
        // The new file goes into the existing directory, spelled as the secondary spells it.
        assert_eq!(p.copies, ["EFI/BOOT/fbx64.efi"]);
        assert_eq!(target(&p, "EFI/BOOT/fbx64.efi"), Some("efi/boot/fbx64.efi"));
        assert!(p.deletes.is_empty() && p.mkdirs.is_empty());
        let replace = ["EFI/BOOT/BOOTX64.EFI".to_string()];
        let p = plan(&pri, &sec, Rules { local: &[], replace: &replace }, Some(&Manifest::default()));
        assert!(p.conflicts.is_empty());
        assert_eq!(p.copies, ["EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/fbx64.efi"]);
        assert_eq!(target(&p, "EFI/BOOT/BOOTX64.EFI"), Some("efi/boot/bootx64.efi"));
    }

    #[test]
    fn an_upgrade_from_the_mirror_format_deletes_nothing() {
        // Mirrored by an older zroam: no manifest, but the set file came along.
        let pri = tree(&[("zroam", Node::Dir), ("zroam/esp-set", f(1, 10)), ("vmlinuz", f(2, 10))]);
        let sec = tree(&[("zroam", Node::Dir), ("zroam/esp-set", f(1, 10)), ("vmlinuz", f(3, 10)), ("old-vmlinuz", f(4, 10))]);
        let p = plan(&pri, &sec, none(), None);
        assert_eq!(p.copies, ["vmlinuz"], "files at the primary's paths are zroam's to update");
        assert!(p.deletes.is_empty());
        assert_eq!(p.foreign, ["old-vmlinuz"]);
        // Without the set file there is no sign zroam wrote anything: a conflict instead.
        let sec2: Tree = sec.into_iter().filter(|(k, _)| !k.starts_with("zroam")).collect();
        let p = plan(&pri, &sec2, none(), None);
        assert_eq!(p.conflicts, ["vmlinuz"]);
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn type_clash_and_user_local_paths() {
        let pri = tree(&[("a", f(1, 1)), ("keep", Node::Dir), ("keep/x", f(5, 5))]);
        let sec = tree(&[("a", Node::Dir), ("a/inner", f(2, 2)), ("keep", Node::Dir), ("keep/y", f(6, 6))]);
        let m = wrote(&[("a", Node::Dir), ("a/inner", f(2, 2)), ("keep/y", f(6, 6))]);
        let p = plan(&pri, &sec, Rules { local: &["KEEP/".to_string()], replace: &[] }, Some(&m));
        // A directory is never deleted to make room for a file: reported.
        assert_eq!(p.conflicts, ["a"]);
        assert!(p.copies.is_empty());
        assert_eq!(p.kept_local, ["keep", "keep/y"]);
        // zroam's own file inside it still goes: the primary has no such path.
        assert_eq!(p.deletes, ["a/inner"]);
    }

    #[test]
    fn a_directory_zroam_made_stays_while_something_else_is_in_it() {
        // zroam made old/ and old/x; the primary dropped both; someone put a file in old/.
        let sec = tree(&[("old", Node::Dir), ("old/x", f(1, 1)), ("old/theirs", f(2, 1)), ("older", Node::Dir)]);
        let m = wrote(&[("old", Node::Dir), ("old/x", f(1, 1)), ("older", Node::Dir)]);
        let p = plan(&Tree::new(), &sec, none(), Some(&m));
        // "older" sorts right after "old/…" but is not below it: it goes.
        assert_eq!(p.deletes, ["old/x", "older"]);
        assert_eq!(p.foreign, ["old/theirs"]);
    }

    #[test]
    fn leftover_temporaries_are_removed_and_new_dirs_made() {
        let pri = tree(&[("f", f(1, 1)), ("d", Node::Dir), ("d/e", Node::Dir), ("d/e/g", f(2, 2))]);
        let sec = tree(&[("f", f(1, 1)), ("f.zroam-tmp", f(2, 1))]);
        let p = plan(&pri, &sec, none(), Some(&Manifest::default()));
        assert_eq!(p.deletes, ["f.zroam-tmp"]);
        assert_eq!(p.mkdirs, ["d", "d/e"]);
        assert_eq!(p.copies, ["d/e/g"]);
    }
}
