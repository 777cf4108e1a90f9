//! Paths inside the new root, resolved as the booted system will see them: a symlink or a
//! `..` in a mountpoint or in the BE's files cannot lead outside the sysroot (the kernel's
//! RESOLVE_IN_ROOT, done by hand so that it also works where openat2 is missing).

use std::io;
use std::path::{Component, Path, PathBuf};

/// More than this many symlinks on one path is a loop (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// `path` (absolute, as inside the new root) resolved under `root`: symlinks are followed
/// with `root` as their `/`, `..` stops at `root`. Components that do not exist yet are
/// kept as written. Returns the host path and whether all of it exists.
pub fn resolve(root: &Path, path: &str) -> io::Result<(PathBuf, bool)> {
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = comps(Path::new(path));
    todo.reverse();
    let mut links = 0;
    let mut exists = true;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let here: PathBuf = root.join(done.iter().collect::<PathBuf>()).join(&c);
        if exists {
            match std::fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::other(format!("{path}: too many symlinks")));
                    }
                    let t = std::fs::read_link(&here)?;
                    if t.is_absolute() {
                        done.clear();
                    }
                    let mut more = comps(&t);
                    more.reverse();
                    todo.extend(more);
                    continue;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => exists = false,
                Err(e) => return Err(e),
            }
        }
        done.push(c);
    }
    Ok((root.join(done.iter().collect::<PathBuf>()), exists))
}

fn comps(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// `resolve`, then create what is missing (as directories, never through a symlink).
pub fn make_dir(root: &Path, path: &str) -> io::Result<PathBuf> {
    let (p, exists) = resolve(root, path)?;
    if !exists {
        // Create one level at a time, re-resolving, so nothing is created through a link.
        let rel = p.strip_prefix(root).map_err(io::Error::other)?.to_path_buf();
        let mut cur = PathBuf::from("/");
        for c in rel.components() {
            cur.push(c);
            let (q, there) = resolve(root, &cur.to_string_lossy())?;
            if !there {
                std::fs::create_dir(&q).or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })?;
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_dotdot_stay_inside() {
        let t = std::env::temp_dir().join(format!("zroam-confine-{}", std::process::id()));
        let root = t.join("root");
        std::fs::create_dir_all(root.join("usr/home")).unwrap();
        std::fs::create_dir_all(t.join("outside")).unwrap();
        symlink("/usr/home", root.join("home")).unwrap();
        symlink("../../../../outside", root.join("escape")).unwrap();
        symlink("/../../outside/x", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve(&root, "/home").unwrap(), (root.join("usr/home"), true));
        assert_eq!(resolve(&root, "/../../etc").unwrap(), (root.join("etc"), false));
        assert_eq!(resolve(&root, "/escape").unwrap(), (root.join("outside"), false));
        assert_eq!(resolve(&root, "/abs/y").unwrap(), (root.join("outside/x/y"), false));
        assert!(resolve(&root, "/loop").is_err());
        let made = make_dir(&root, "/escape/var/log").unwrap();
        assert_eq!(made, root.join("outside/var/log"));
        assert!(made.is_dir() && !t.join("outside/var").exists());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
