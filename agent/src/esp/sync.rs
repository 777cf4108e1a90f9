//! Stage `esp`, effectful part: mount the ESPs, read their trees, apply `tree::plan` to each
//! secondary with copy-to-temporary + fsync + rename, and report. The primary is mounted
//! read-only and never written. Every problem is a warning: the boot goes on.

use crate::esp::set::{self, Esp, Role};
use crate::esp::tree::{self, Node, Plan, Tree, MARKER, TMP_SUFFIX};
use crate::probe::ProbeReport;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Bounds on what an ESP may hold (a hostile or broken FAT must not run the boot out of
/// memory or time): entries per tree and directory depth.
const MAX_ENTRIES: usize = 20_000;
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Sync,
    Check,
}

pub struct Options {
    pub mode: Mode,
    pub dry_run: bool,
    pub budget: Duration,
    /// Where ESPs are mounted, one directory each.
    pub mount_base: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EspResult {
    #[serde(flatten)]
    pub esp: Option<Esp>,
    pub copied: Vec<String>,
    pub deleted: Vec<String>,
    pub kept_local: Vec<String>,
    pub bytes: u64,
    pub ms: u64,
    /// An in-progress marker from an interrupted sync was found (full verification forced).
    pub resumed: bool,
    /// After the sync, the tree was read again and matched the primary's.
    pub verified: bool,
    /// In check mode (or a dry run): what a sync would change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drift: Option<Plan>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EspReport {
    pub mode: Option<Mode>,
    pub primary: Option<Uuid>,
    pub esps: Vec<EspResult>,
    pub ms: u64,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("cannot mount {node}: {source}")]
    Mount { node: String, source: nix::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("more than {MAX_ENTRIES} entries or deeper than {MAX_DEPTH} levels")]
    TooBig,
    #[error("time budget spent")]
    Budget,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EspError + '_ {
    move |source| EspError::Io { path: path.display().to_string(), source }
}

/// vfat and the code pages its mount asks for (modules in distribution kernels; loading
/// what is already there is a no-op).
pub fn load_fat_modules() {
    let args = ["-q", "-a", "vfat", "nls_cp437", "nls_ascii"].map(String::from);
    crate::sys::run::run("modprobe", &args, Duration::from_secs(10));
}

/// A mounted ESP, unmounted when dropped.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Mounted {
    pub fn new(node: &str, dir: PathBuf, readonly: bool) -> Result<Mounted, EspError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        // flush: write dirty data at close, so a crash loses at most the file being written.
        let data = if readonly { "" } else { "flush" };
        mount(Some(node), &dir, Some("vfat"), flags, Some(data)).map_err(|source| EspError::Mount { node: node.to_string(), source })?;
        Ok(Mounted { dir })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        nix::unistd::sync();
        let _ = umount2(&self.dir, MntFlags::empty());
        let _ = fs::remove_dir(&self.dir);
    }
}

fn hash_file(p: &Path) -> Result<[u8; 32], EspError> {
    let mut f = fs::File::open(p).map_err(io(p))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io(p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The tree under `root`, files hashed. Symlinks and special files do not exist on FAT.
pub fn read_tree(root: &Path, deadline: Instant) -> Result<Tree, EspError> {
    let mut t = Tree::new();
    let mut stack = vec![(PathBuf::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.as_os_str().is_empty() { PathBuf::from(&name) } else { rel.join(&name) };
            let key = r.to_string_lossy().into_owned();
            let md = e.metadata().map_err(io(&e.path()))?;
            if t.len() >= MAX_ENTRIES || depth >= MAX_DEPTH {
                return Err(EspError::TooBig);
            }
            if Instant::now() > deadline {
                return Err(EspError::Budget);
            }
            if md.is_dir() {
                t.insert(key, Node::Dir);
                stack.push((r, depth + 1));
            } else {
                t.insert(key, Node::File { size: md.len(), hash: hash_file(&e.path())? });
            }
        }
    }
    Ok(t)
}

fn fsync_dir(p: &Path) {
    if let Ok(d) = fs::File::open(p) {
        let _ = d.sync_all();
    }
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), EspError> {
    let mut src = fs::File::open(from).map_err(io(from))?;
    write_atomic(&mut src, to)
}

/// Write `to` from `src` under a temporary name in the same directory, fsync, rename into
/// place, fsync the directory: a crash leaves the old file or the new one.
fn write_atomic(src: &mut dyn Read, to: &Path) -> Result<(), EspError> {
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", to.display()));
    let mut dst = fs::File::create(&tmp).map_err(io(&tmp))?;
    std::io::copy(src, &mut dst).map_err(io(&tmp))?;
    dst.flush().map_err(io(&tmp))?;
    dst.sync_all().map_err(io(&tmp))?;
    drop(dst);
    fs::rename(&tmp, to).map_err(io(to))?;
    if let Some(parent) = to.parent() {
        fsync_dir(parent);
    }
    Ok(())
}

fn set_marker(root: &Path, on: bool) -> Result<(), EspError> {
    let m = root.join(MARKER);
    if on {
        let dir = m.parent().expect("marker has a directory");
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut f = fs::File::create(&m).map_err(io(&m))?;
        f.write_all(b"zroam: a sync to this ESP is in progress; the next boot verifies it in full\n").map_err(io(&m))?;
        f.sync_all().map_err(io(&m))?;
        fsync_dir(dir);
    } else {
        fs::remove_file(&m).map_err(io(&m))?;
        if let Some(dir) = m.parent() {
            // The directory was made for the marker unless the set file lives there too.
            if fs::remove_dir(dir).is_err() {
                fsync_dir(dir);
            }
            fsync_dir(root);
        }
    }
    Ok(())
}

/// Apply a plan to a mounted secondary. Stops at the deadline (the marker stays).
fn apply(pri: &Path, sec: &Path, plan: &Plan, res: &mut EspResult, deadline: Instant) -> Result<(), EspError> {
    set_marker(sec, true)?;
    for d in &plan.deletes {
        let p = sec.join(d);
        let r = if p.is_dir() { fs::remove_dir(&p) } else { fs::remove_file(&p) };
        match r {
            Ok(()) => res.deleted.push(d.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EspError::Io { path: p.display().to_string(), source: e }),
        }
    }
    for d in &plan.mkdirs {
        let p = sec.join(d);
        fs::create_dir_all(&p).map_err(io(&p))?;
    }
    for f in &plan.copies {
        if Instant::now() > deadline {
            return Err(EspError::Budget);
        }
        copy_atomic(&pri.join(f), &sec.join(f))?;
        res.copied.push(f.clone());
    }
    res.bytes = plan.bytes;
    nix::unistd::sync();
    set_marker(sec, false)
}

fn sync_one(pri_root: Option<&Path>, pri: &Tree, local: &[String], esp: &Esp, opts: &Options, deadline: Instant) -> EspResult {
    let t = Instant::now();
    let mut res = EspResult { esp: Some(esp.clone()), ..EspResult::default() };
    let Some(node) = esp.node.as_deref() else { return res };
    let write = esp.role == Role::Secondary && opts.mode == Mode::Sync && !opts.dry_run;
    let dir = opts.mount_base.join(esp.partuuid.to_string());
    let outcome = (|| -> Result<(), EspError> {
        let m = Mounted::new(node, dir, !write)?;
        res.resumed = m.dir.join(MARKER).exists();
        let tree = read_tree(&m.dir, deadline)?;
        let plan = tree::plan(pri, &tree, local);
        res.kept_local = plan.kept_local.clone();
        if !write {
            res.drift = Some(plan);
            return Ok(());
        }
        if plan.is_empty() && !res.resumed {
            res.verified = true;
            return Ok(());
        }
        let pri_root = pri_root.expect("a secondary is only written with a primary");
        log::info!(
            "ESP {}: syncing {} files ({} bytes), {} deletions from the primary{}",
            esp.partuuid,
            plan.copies.len(),
            plan.bytes,
            plan.deletes.len(),
            if res.resumed { " (an earlier sync was interrupted)" } else { "" }
        );
        apply(pri_root, &m.dir, &plan, &mut res, deadline)?;
        let after = tree::plan(pri, &read_tree(&m.dir, deadline)?, local);
        res.verified = after.is_empty();
        if !res.verified {
            res.warnings.push(format!("after the sync {} entries still differ", after.copies.len() + after.deletes.len()));
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        let what = match e {
            EspError::Budget => "the time budget ran out (zroam.esp.budget=); the next boot finishes it".to_string(),
            e => e.to_string(),
        };
        res.warnings.push(format!("ESP {}: {what}", esp.partuuid));
    }
    res.ms = t.elapsed().as_millis() as u64;
    res
}

/// The whole stage: the ESP set of the pool, its primary, and each secondary synced (or
/// checked). Never fails: what goes wrong is in the report's warnings.
pub fn run(rep: &ProbeReport, pool_guid: u64, booted: Option<Uuid>, opts: &Options) -> EspReport {
    let t = Instant::now();
    let deadline = t + opts.budget;
    let mut out = EspReport { mode: Some(opts.mode), ..EspReport::default() };
    let on_pool_disks = set::roles(rep, pool_guid, &[], booted);
    if on_pool_disks.is_empty() {
        // No ESP on the pool's disks: nothing to mount, no modules to load.
        out.ms = t.elapsed().as_millis() as u64;
        return out;
    }
    load_fat_modules();
    // The set file: from the primary when the firmware named one, else from any ESP of the pool.
    let mut set = set::SetFile::default();
    let mut mounted: Option<(Uuid, Mounted)> = None;
    if let Some(src) = pick(&on_pool_disks) {
        match read_set(&src, &opts.mount_base) {
            Ok((s, m)) => {
                out.warnings.extend(s.warnings.iter().map(|w| format!("{}: {w}", set::SET_FILE)));
                set = s;
                mounted = Some((src.partuuid, m));
            }
            Err(e) => out.warnings.push(e.to_string()),
        }
    }
    let esps = set::roles(rep, pool_guid, &set.esps, booted);
    out.primary = esps.iter().find(|e| e.role == Role::Primary).map(|e| e.partuuid);
    // The reference tree: the primary's, or (check only) the first ESP's. It is almost always
    // the ESP the set file came from, already mounted read-only.
    let source = pick(&esps);
    let mut reference: Option<(Tree, Mounted)> = None;
    if let Some(src) = &source {
        let m = match mounted.take() {
            Some((u, m)) if u == src.partuuid => Ok(m),
            _ => Mounted::new(src.node.as_deref().unwrap_or_default(), opts.mount_base.join("source"), true),
        };
        match m {
            Ok(m) => match read_tree(&m.dir, deadline) {
                Ok(tree) => reference = Some((tree, m)),
                Err(e) => out.warnings.push(format!("cannot read ESP {}: {e}", src.partuuid)),
            },
            Err(e) => out.warnings.push(e.to_string()),
        }
    }
    drop(mounted);
    let Some((tree, m)) = reference.as_ref() else {
        out.esps = esps.into_iter().map(|e| EspResult { esp: Some(e), ..EspResult::default() }).collect();
        out.ms = t.elapsed().as_millis() as u64;
        return out;
    };
    let pri_root = out.primary.map(|_| m.dir.as_path());
    for e in &esps {
        let same_as_source = source.as_ref().is_some_and(|s| s.partuuid == e.partuuid);
        let r = match &e.role {
            Role::Primary => EspResult { esp: Some(e.clone()), verified: true, ..EspResult::default() },
            Role::Skipped { why } => {
                out.warnings.push(format!("ESP {} skipped: {why}", e.partuuid));
                EspResult { esp: Some(e.clone()), ..EspResult::default() }
            }
            Role::Check if same_as_source => EspResult { esp: Some(e.clone()), ..EspResult::default() },
            Role::Secondary | Role::Check => sync_one(pri_root, tree, &set.local, e, opts, deadline),
        };
        out.warnings.extend(r.warnings.iter().cloned());
        out.esps.push(r);
    }
    out.ms = t.elapsed().as_millis() as u64;
    out
}

/// The ESP the set file and the reference tree come from: the primary, or with none known
/// the first ESP that is only checked.
fn pick(esps: &[Esp]) -> Option<Esp> {
    esps.iter().find(|e| e.role == Role::Primary).or_else(|| esps.iter().find(|e| e.role == Role::Check)).cloned()
}

/// Mount `esp` read-only and read its set file (absent: an empty set); the mount is kept.
fn read_set(esp: &Esp, base: &Path) -> Result<(set::SetFile, Mounted), EspError> {
    let m = Mounted::new(esp.node.as_deref().unwrap_or_default(), base.join(format!("{}-ro", esp.partuuid)), true)?;
    let set = read_bounded(&m.dir.join(set::SET_FILE)).map(|t| set::parse(&t)).unwrap_or_default();
    Ok((set, m))
}

fn read_bounded(p: &Path) -> std::io::Result<String> {
    let mut s = String::new();
    fs::File::open(p)?.take(set::MAX_SET_FILE as u64).read_to_string(&mut s)?;
    Ok(s)
}

/// Rewrite the ESP-set file on every ESP of the set that can be mounted (the set the file
/// itself describes, old and new members alike). An administrator's explicit change: unlike
/// the boot's sync, it writes the primary too, or the next sync would undo it.
pub fn update_set(
    rep: &ProbeReport,
    pool_guid: u64,
    booted: Option<Uuid>,
    base: &Path,
    change: impl Fn(&mut set::SetFile),
) -> Result<set::SetFile, String> {
    load_fat_modules();
    let src = pick(&set::roles(rep, pool_guid, &[], booted)).ok_or("no usable ESP on the root pool's disks")?;
    let mut set = read_set(&src, base).map_err(|e| e.to_string())?.0;
    let before = set.esps.clone();
    change(&mut set);
    let text = set::render(&set);
    let mut all: Vec<Uuid> = before;
    all.extend(set.esps.iter().copied());
    let mut failures = Vec::new();
    for e in set::roles(rep, pool_guid, &all, booted) {
        let (Some(node), false) = (e.node.as_deref(), matches!(e.role, Role::Skipped { .. })) else { continue };
        let r = (|| -> Result<(), EspError> {
            let m = Mounted::new(node, base.join(e.partuuid.to_string()), false)?;
            let p = m.dir.join(set::SET_FILE);
            let dir = p.parent().expect("set file has a directory");
            fs::create_dir_all(dir).map_err(io(dir))?;
            write_atomic(&mut text.as_bytes(), &p)
        })();
        if let Err(err) = r {
            failures.push(format!("ESP {}: {err}", e.partuuid));
        }
    }
    if failures.is_empty() {
        Ok(set)
    } else {
        Err(failures.join("; "))
    }
}

/// The report for people: the primary, then one line per ESP with what was done and the
/// drift left, then the warnings.
pub fn render(r: &EspReport) -> String {
    let mut s = format!("primary: {}\n", r.primary.map_or("none known (checking only)".into(), |p| p.to_string()));
    for e in &r.esps {
        let Some(x) = &e.esp else { continue };
        let role = serde_json::to_value(&x.role).ok().and_then(|v| v["role"].as_str().map(str::to_string)).unwrap_or_default();
        let drift = e.drift.as_ref().map_or(String::new(), |d| format!(", would copy {} and delete {}", d.copies.len(), d.deletes.len()));
        s += &format!(
            "{} {:<9} {:<14} copied {} deleted {} kept {}{drift}\n",
            x.partuuid,
            role,
            x.node.as_deref().unwrap_or("-"),
            e.copied.len(),
            e.deleted.len(),
            e.kept_local.len()
        );
    }
    for w in &r.warnings {
        s += &format!("warning: {w}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    //! The executor on plain temporary directories: what it writes, its marker, and the
    //! temporaries an interrupted sync leaves behind.
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("zroam-esp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn put(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn tmp_files(root: &Path) -> Vec<String> {
        read_tree(root, far()).unwrap().into_keys().filter(|k| k.ends_with(TMP_SUFFIX)).collect()
    }

    #[test]
    fn apply_makes_the_secondary_match_and_clears_its_marker() {
        let (pri, sec) = (scratch("pri1"), scratch("sec1"));
        put(&pri, "EFI/BOOT/BOOTX64.EFI", b"loader v2");
        put(&pri, "loader/entries/debian.conf", b"title debian");
        put(&sec, "EFI/BOOT/BOOTX64.EFI", b"loader v1");
        put(&sec, "EFI/old/stale.efi", b"gone from the primary");
        // A temporary left by a sync that was cut off mid-copy.
        put(&sec, &format!("EFI/BOOT/BOOTX64.EFI{TMP_SUFFIX}"), b"half");
        let p = read_tree(&pri, far()).unwrap();
        let plan = tree::plan(&p, &read_tree(&sec, far()).unwrap(), &[]);
        assert!(!plan.is_empty());
        let mut res = EspResult::default();
        apply(&pri, &sec, &plan, &mut res, far()).unwrap();
        assert_eq!(fs::read(sec.join("EFI/BOOT/BOOTX64.EFI")).unwrap(), b"loader v2");
        assert!(tree::plan(&p, &read_tree(&sec, far()).unwrap(), &[]).is_empty(), "still differs after apply");
        assert!(!sec.join(MARKER).exists(), "the marker outlived a finished sync");
        assert!(tmp_files(&sec).is_empty(), "temporaries left: {:?}", tmp_files(&sec));
        assert!(res.copied.contains(&"EFI/BOOT/BOOTX64.EFI".to_string()));
        assert!(!res.deleted.is_empty());
        let _ = (fs::remove_dir_all(&pri), fs::remove_dir_all(&sec));
    }

    #[test]
    fn a_sync_cut_off_by_its_budget_keeps_the_marker_until_finished() {
        let (pri, sec) = (scratch("pri2"), scratch("sec2"));
        put(&pri, "EFI/BOOT/BOOTX64.EFI", b"new loader");
        let p = read_tree(&pri, far()).unwrap();
        let plan = tree::plan(&p, &read_tree(&sec, far()).unwrap(), &[]);
        let mut res = EspResult::default();
        let past = Instant::now() - Duration::from_millis(1);
        assert!(matches!(apply(&pri, &sec, &plan, &mut res, past), Err(EspError::Budget)));
        assert!(sec.join(MARKER).exists(), "an interrupted sync must leave its marker");
        // The next run finishes it and only then removes the marker.
        let plan = tree::plan(&p, &read_tree(&sec, far()).unwrap(), &[]);
        apply(&pri, &sec, &plan, &mut EspResult::default(), far()).unwrap();
        assert!(!sec.join(MARKER).exists());
        assert_eq!(fs::read(sec.join("EFI/BOOT/BOOTX64.EFI")).unwrap(), b"new loader");
        let _ = (fs::remove_dir_all(&pri), fs::remove_dir_all(&sec));
    }

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temporary() {
        let d = scratch("atomic");
        put(&d, "f", b"old contents, longer than the new");
        write_atomic(&mut &b"new"[..], &d.join("f")).unwrap();
        assert_eq!(fs::read(d.join("f")).unwrap(), b"new");
        assert!(!d.join(format!("f{TMP_SUFFIX}")).exists());
        // A directory where the file should go: an error, and the temporary is not renamed.
        fs::create_dir_all(d.join("dir/sub")).unwrap();
        assert!(write_atomic(&mut &b"x"[..], &d.join("dir")).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
