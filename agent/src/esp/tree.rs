//! Stage `esp`, pure part: what turns a secondary ESP's tree into the primary's. Trees are
//! compared by size and content hash (FAT timestamps are not trusted) and by name without
//! regard to case, as FAT looks names up; a name whose case differs is rewritten with the
//! primary's case. Per-ESP paths are never touched.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One entry of an ESP's tree, by path relative to its root ("EFI/BOOT/BOOTX64.EFI").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { size: u64, hash: [u8; 32] },
}

pub type Tree = BTreeMap<String, Node>;

/// Paths that stay each ESP's own: systemd-boot's random seed (a per-disk secret would be
/// cloned otherwise) and zroam's own in-progress marker.
pub const ALWAYS_LOCAL: &[&str] = &["loader/random-seed", MARKER];
/// Written on a secondary before its first change and removed after its last.
pub const MARKER: &str = "zroam/sync-in-progress";
/// Suffix of the temporary name a file is written under before the rename.
pub const TMP_SUFFIX: &str = ".zroam-tmp";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Directories to create, parents first.
    pub mkdirs: Vec<String>,
    /// Files to write (new or changed content).
    pub copies: Vec<String>,
    /// Entries to remove, children first (extras, stale temporaries, case or type clashes).
    pub deletes: Vec<String>,
    /// Entries left alone because they are per-ESP.
    pub kept_local: Vec<String>,
    /// Bytes the copies write.
    pub bytes: u64,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.mkdirs.is_empty() && self.copies.is_empty() && self.deletes.is_empty()
    }
}

fn key(p: &str) -> String {
    p.to_lowercase()
}

/// Is `path` (or a parent of it) one of the per-ESP paths?
pub fn is_local(path: &str, local: &[String]) -> bool {
    let k = key(path);
    ALWAYS_LOCAL.iter().map(|s| s.to_string()).chain(local.iter().cloned()).any(|l| {
        let l = key(l.trim_matches('/'));
        !l.is_empty() && (k == l || k.starts_with(&format!("{l}/")))
    })
}

/// The changes that make `secondary` hold exactly the primary's managed tree.
pub fn plan(primary: &Tree, secondary: &Tree, local: &[String]) -> Plan {
    let mut p = Plan::default();
    let sec: BTreeMap<String, (&String, &Node)> = secondary.iter().map(|(k, v)| (key(k), (k, v))).collect();
    let pri_keys: BTreeSet<String> = primary.keys().filter(|k| !is_local(k, local)).map(|k| key(k)).collect();
    let mut delete: BTreeSet<String> = BTreeSet::new();

    for (path, node) in primary {
        if is_local(path, local) {
            continue;
        }
        let theirs = sec.get(&key(path));
        let same_name = theirs.is_some_and(|(name, _)| *name == path);
        match (node, theirs) {
            (Node::Dir, Some((_, Node::Dir))) if same_name => {}
            (Node::Dir, other) => {
                if let Some((name, _)) = other {
                    delete.insert((*name).clone());
                }
                p.mkdirs.push(path.clone());
            }
            (Node::File { size, hash }, Some((_, Node::File { size: s2, hash: h2 }))) if same_name && size == s2 && hash == h2 => {}
            (Node::File { size, .. }, other) => {
                if let Some((name, n)) = other {
                    // A directory in the way, or a name in another case: out first.
                    if matches!(n, Node::Dir) || *name != path {
                        delete.insert((*name).clone());
                    }
                }
                p.copies.push(path.clone());
                p.bytes += size;
            }
        }
    }
    // Directories that hold per-ESP entries stay, whatever the primary has.
    let mut protected: BTreeSet<String> = BTreeSet::new();
    for (k, (name, _)) in &sec {
        if is_local(name, local) {
            let mut a = k.as_str();
            while let Some((parent, _)) = a.rsplit_once('/') {
                protected.insert(parent.to_string());
                a = parent;
            }
        }
    }
    let deletable = |name: &str| !is_local(name, local) && !protected.contains(&key(name));
    for (k, (name, _)) in &sec {
        if is_local(name, local) {
            if !k.ends_with(TMP_SUFFIX) {
                p.kept_local.push((*name).clone());
            }
        } else if !pri_keys.contains(k) && deletable(name) {
            delete.insert((*name).clone());
        }
    }
    // Everything under a deleted directory goes too (and must not be listed twice).
    let mut dels: Vec<String> = delete.into_iter().filter(|d| deletable(d)).collect();
    let roots: Vec<String> = dels.iter().map(|d| format!("{}/", key(d))).collect();
    for name in secondary.keys() {
        if roots.iter().any(|r| key(name).starts_with(r.as_str())) && !dels.contains(name) && deletable(name) {
            dels.push(name.clone());
        }
    }
    // Children before parents: deepest first.
    dels.sort_by(|a, b| b.matches('/').count().cmp(&a.matches('/').count()).then(a.cmp(b)));
    p.deletes = dels;
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

    #[test]
    fn identical_trees_need_nothing() {
        let t = tree(&[("EFI", Node::Dir), ("EFI/BOOT", Node::Dir), ("EFI/BOOT/BOOTX64.EFI", f(1, 10))]);
        assert!(plan(&t, &t, &[]).is_empty());
    }

    #[test]
    fn new_changed_extra_and_local() {
        let pri = tree(&[
            ("EFI", Node::Dir),
            ("EFI/debian", Node::Dir),
            ("EFI/debian/vmlinuz", f(2, 100)),
            ("loader", Node::Dir),
            ("loader/loader.conf", f(3, 5)),
            ("loader/random-seed", f(9, 32)),
        ]);
        let sec = tree(&[
            ("EFI", Node::Dir),
            ("EFI/debian", Node::Dir),
            ("EFI/debian/vmlinuz", f(1, 100)), // same size, other content
            ("EFI/stray", Node::Dir),
            ("EFI/stray/old.efi", f(4, 7)),
            ("loader", Node::Dir),
            ("loader/random-seed", f(8, 32)),
            ("zroam", Node::Dir),
            ("zroam/sync-in-progress", f(0, 0)),
        ]);
        let p = plan(&pri, &sec, &[]);
        assert_eq!(p.copies, ["EFI/debian/vmlinuz", "loader/loader.conf"]);
        assert_eq!(p.bytes, 105);
        // zroam/ holds the marker: it stays although the primary has no such directory.
        assert_eq!(p.deletes, ["EFI/stray/old.efi", "EFI/stray"]);
        assert_eq!(p.kept_local, ["loader/random-seed", "zroam/sync-in-progress"]);
        assert!(p.mkdirs.is_empty());
    }

    #[test]
    fn case_differences_are_rewritten() {
        let pri = tree(&[("EFI", Node::Dir), ("EFI/BOOT", Node::Dir), ("EFI/BOOT/BOOTX64.EFI", f(1, 10))]);
        let sec = tree(&[("efi", Node::Dir), ("efi/boot", Node::Dir), ("efi/boot/bootx64.efi", f(1, 10))]);
        let p = plan(&pri, &sec, &[]);
        assert_eq!(p.mkdirs, ["EFI", "EFI/BOOT"]);
        assert_eq!(p.copies, ["EFI/BOOT/BOOTX64.EFI"]);
        assert_eq!(p.deletes, ["efi/boot/bootx64.efi", "efi/boot", "efi"]);
    }

    #[test]
    fn type_clash_and_user_local_paths() {
        let pri = tree(&[("a", f(1, 1)), ("keep", Node::Dir), ("keep/x", f(5, 5))]);
        let sec = tree(&[("a", Node::Dir), ("a/inner", f(2, 2)), ("keep", Node::Dir), ("keep/y", f(6, 6))]);
        let p = plan(&pri, &sec, &["KEEP/".to_string()]);
        assert_eq!(p.copies, ["a"]);
        assert_eq!(p.deletes, ["a/inner", "a"]);
        assert_eq!(p.kept_local, ["keep", "keep/y"]);
    }

    #[test]
    fn leftover_temporaries_are_removed() {
        let pri = tree(&[("f", f(1, 1))]);
        let sec = tree(&[("f", f(1, 1)), ("f.zroam-tmp", f(2, 1))]);
        assert_eq!(plan(&pri, &sec, &[]).deletes, ["f.zroam-tmp"]);
    }
}
