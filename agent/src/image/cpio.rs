//! The ramdisk's archive: the kernel's "newc" cpio format, written so that the same tree
//! gives the same bytes: entries in byte order of their paths, one mtime for all, owner
//! root, inode numbers counted from 1, no device numbers but a device node's own.

use std::io::{self, Write};

/// What an entry is; its permission bits are `Entry::mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A file read from the build host when written (the staged tree's files are many MiB).
    Copy(std::path::PathBuf),
    Symlink(String),
    /// A character device: major, minor.
    Char(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the archive's root, without a leading `/` (the kernel's own form).
    pub path: String,
    pub mode: u32,
    pub kind: Kind,
}

const MAGIC: &[u8] = b"070701";

/// A header's fields that vary: inode, mode, links, mtime, size, device (major, minor).
struct Head {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

/// The kernel reads a header's fields as 8 hex digits each.
fn header(w: &mut impl Write, h: Head, name: &str) -> io::Result<usize> {
    let name_len = name.len() + 1;
    let fields = [h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.size, 0, 0, h.rdev.0, h.rdev.1, name_len as u32, 0];
    let mut out = Vec::with_capacity(110 + name_len + 3);
    out.extend_from_slice(MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    w.write_all(&out)?;
    Ok(out.len())
}

fn pad(w: &mut impl Write, written: usize, to: usize) -> io::Result<usize> {
    let n = written.next_multiple_of(to) - written;
    w.write_all(&[0u8; 512][..n])?;
    Ok(n)
}

/// Writes `entries` (sorted here) and the trailer, padded to 512 bytes; returns the bytes
/// written. A path that is empty, absolute or holds `..` or a NUL is refused: the archive
/// unpacks over the ramdisk's root.
pub fn write(w: &mut impl Write, mut entries: Vec<Entry>, mtime: u32) -> io::Result<u64> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    entries.dedup_by(|a, b| a.path == b.path);
    let mut n = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let p = &e.path;
        if p.is_empty() || p.starts_with('/') || p.contains('\0') || p.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unsafe path in the ramdisk: {p:?}")));
        }
        let perm = e.mode & 0o7777;
        let ino = i as u32 + 1;
        let read;
        let (ty, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &e.kind {
            Kind::Dir => (0o040000, 2, &[], (0, 0)),
            Kind::File(d) => (0o100000, 1, d, (0, 0)),
            Kind::Copy(src) => {
                read = std::fs::read(src).map_err(|x| io::Error::new(x.kind(), format!("{}: {x}", src.display())))?;
                (0o100000, 1, &read, (0, 0))
            }
            Kind::Symlink(t) => (0o120000, 1, t.as_bytes(), (0, 0)),
            Kind::Char(ma, mi) => (0o020000, 1, &[], (*ma, *mi)),
        };
        let size = u32::try_from(data.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{p} is 4 GiB or larger")))?;
        n += header(w, Head { ino, mode: ty | perm, nlink, mtime, size, rdev }, p)?;
        w.write_all(data)?;
        n += data.len();
        n += pad(w, n, 4)?;
    }
    n += header(w, Head { ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdev: (0, 0) }, "TRAILER!!!")?;
    n += pad(w, n, 512)?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str, d: &[u8]) -> Entry {
        Entry { path: p.into(), mode: 0o644, kind: Kind::File(d.to_vec()) }
    }

    /// The fields of each header, as (name, mode, size, data), read back the way the
    /// kernel's unpacker does.
    fn read(b: &[u8]) -> Vec<(String, u32, Vec<u8>, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&b[at..at + 6], MAGIC);
            let f = |i: usize| u32::from_str_radix(std::str::from_utf8(&b[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(), 16).unwrap();
            let (ino, mode, size, namesize) = (f(0), f(1), f(6) as usize, f(11) as usize);
            let name = String::from_utf8(b[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
            let data_at = (at + 110 + namesize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(b.len() % 512, 0);
                return out;
            }
            out.push((name, mode, b[data_at..data_at + size].to_vec(), ino));
            at = (data_at + size).next_multiple_of(4);
        }
    }

    #[test]
    fn sorted_numbered_and_read_back() {
        let es = vec![
            file("init", b"\x7fELF"),
            Entry { path: "bin".into(), mode: 0o755, kind: Kind::Dir },
            Entry { path: "bin/sh".into(), mode: 0o777, kind: Kind::Symlink("busybox".into()) },
            Entry { path: "dev/console".into(), mode: 0o600, kind: Kind::Char(5, 1) },
            file("bin/busybox", b"12345"),
        ];
        let mut b = Vec::new();
        let n = write(&mut b, es.clone(), 0).unwrap();
        assert_eq!(n as usize, b.len());
        let got = read(&b);
        let names: Vec<_> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "dev/console", "init"]);
        assert_eq!(got[1].2, b"12345");
        assert_eq!(got[2].1, 0o120777);
        assert_eq!(got[2].2, b"busybox");
        assert_eq!(got[3].1, 0o020600);
        assert_eq!(got.iter().map(|g| g.3).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        // The order given does not matter; the mtime does.
        let mut rev = es.clone();
        rev.reverse();
        let mut b2 = Vec::new();
        write(&mut b2, rev, 0).unwrap();
        assert_eq!(b, b2);
        let mut b3 = Vec::new();
        write(&mut b3, es, 1).unwrap();
        assert_ne!(b, b3);
    }

    #[test]
    fn unsafe_paths_refused() {
        for p in ["", "/etc/passwd", "a/../../x", "a//b", "a\0b"] {
            assert!(write(&mut Vec::new(), vec![file(p, b"")], 0).is_err(), "{p:?}");
        }
    }

    /// GNU cpio, where installed, reads the archive as the kernel would.
    #[test]
    fn gnu_cpio_lists_it() {
        let Ok(mut c) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return;
        };
        let mut b = Vec::new();
        write(&mut b, vec![file("a", b"x"), file("b/c", b"yy")], 0).unwrap();
        c.stdin.take().unwrap().write_all(&b).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "a\nb/c\n");
    }
}
