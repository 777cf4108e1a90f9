//! What zroam wrote on a secondary ESP (`zroam/manifest`, kept on that ESP only). zroam
//! deletes nothing else there: files of another OS or a vendor tool are never its to remove.
//!
//! ```text
//! # zroam manifest: what zroam wrote on this ESP; it deletes nothing else. Do not edit.
//! dir EFI/debian
//! file 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 8718336 EFI/debian/vmlinuz
//! ```
//!
//! A file counts as zroam's only while its content still has the recorded hash: a file
//! someone changed after zroam wrote it is theirs again. The file comes from a disk anyone
//! can write, so it is parsed with bounds, and a damaged line only makes zroam delete less.

use crate::esp::tree::{Node, Tree};

/// Where the manifest lives on each secondary.
pub const PATH: &str = "zroam/manifest";
/// Most bytes read (20 000 entries of long paths fit).
pub const MAX_BYTES: usize = 4 << 20;
/// Most entries kept (as many as an ESP tree may hold).
pub const MAX_ENTRIES: usize = 20_000;

/// Entries by the name zroam wrote (the secondary's spelling), each a directory or a file
/// with its size and hash: a tree of the ESP's own shape (and the same code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Tree,
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(h)
}

/// A path on the ESP as the manifest may name it: relative, no way out, no control bytes.
fn valid_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.chars().any(char::is_control) && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The manifest and the count of lines that were not understood (ignored).
pub fn parse(text: &str) -> (Manifest, usize) {
    let mut m = Manifest::default();
    let mut bad = 0;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if m.entries.len() >= MAX_ENTRIES {
            bad += 1;
            continue;
        }
        let parsed = match line.split_once(' ') {
            Some(("dir", p)) if valid_path(p) => Some((p, Node::Dir)),
            Some(("file", rest)) => {
                let mut w = rest.splitn(3, ' ');
                let (h, size, p) = (w.next().and_then(unhex), w.next().and_then(|n| n.parse().ok()), w.next().filter(|p| valid_path(p)));
                h.zip(size).zip(p).map(|((hash, size), p)| (p, Node::File { size, hash }))
            }
            _ => None,
        };
        match parsed {
            Some((p, e)) => {
                m.entries.insert(p.to_string(), e);
            }
            None => bad += 1,
        }
    }
    (m, bad)
}

pub fn render(m: &Manifest) -> String {
    let mut s = String::from("# zroam manifest: what zroam wrote on this ESP; it deletes nothing else. Do not edit.\n");
    for (p, e) in &m.entries {
        match e {
            Node::Dir => s += &format!("dir {p}\n"),
            Node::File { size, hash } => s += &format!("file {} {size} {p}\n", hex(hash)),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_lines() {
        let mut m = Manifest::default();
        m.entries.insert("EFI/debian".into(), Node::Dir);
        m.entries.insert("EFI/debian/vm linuz".into(), Node::File { size: 7, hash: [0xab; 32] });
        let (again, bad) = parse(&render(&m));
        assert_eq!((again, bad), (m, 0));
        let h = "ab".repeat(32);
        let text = format!("file zz 1 EFI/x\nfile {h} EFI/y\nfile {h} -1 EFI/z\ndir ../etc\ndir /abs\ndir a//b\nbogus\ndir ok\n");
        let (m, bad) = parse(&text);
        assert_eq!(m.entries.keys().collect::<Vec<_>>(), ["ok"]);
        assert_eq!(bad, 7);
        let many: String = (0..MAX_ENTRIES + 5).map(|i| format!("dir d{i}\n")).collect();
        let (m, bad) = parse(&many);
        assert_eq!((m.entries.len(), bad), (MAX_ENTRIES, 5));
        // Multi-byte text where a hash should be: not a hash, no panic.
        assert_eq!(parse(&format!("file {} 1 p\n", "é".repeat(32))).1, 1);
    }
}
