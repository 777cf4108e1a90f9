//! Stage `esp`, effectful part: mount the ESPs, read their trees and manifests, apply
//! `tree::plan` to each secondary (new and changed files first, each by copy-to-temporary +
//! fsync + rename, then deletions), and report. The primary is mounted read-only (or used
//! where it is already mounted) and never written. Every problem is a warning: the boot
//! goes on.

use crate::esp::manifest::{self, Manifest};
use crate::esp::set::{self, Esp, Role};
use crate::esp::tree::{self, Node, Plan, Rules, Tree, MARKER, TMP_SUFFIX};
use crate::probe::ProbeReport;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
    /// ESPs the root pin names (members of the set wherever they are).
    pub pinned: Vec<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct EspResult {
    #[serde(flatten)]
    pub esp: Option<Esp>,
    pub copied: Vec<String>,
    pub deleted: Vec<String>,
    pub kept_local: Vec<String>,
    /// What zroam did not write and left alone (a directory stands for what is under it).
    #[serde(default)]
    pub foreign: Vec<String>,
    /// Foreign files at paths the primary has: not overwritten (`replace PATH` allows it).
    #[serde(default)]
    pub conflicts: Vec<String>,
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

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct EspReport {
    pub mode: Option<Mode>,
    pub primary: Option<Uuid>,
    /// Why nothing is written (no primary known), when that is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_only: Option<String>,
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

/// A mounted ESP, unmounted when dropped if zroam mounted it.
pub struct Mounted {
    pub dir: PathBuf,
    owned: bool,
}

/// Where `node` is already mounted whole (a running system's /boot/efi), and whether rw.
fn existing_mount(node: &str) -> Option<(PathBuf, bool)> {
    use std::os::unix::fs::MetadataExt;
    let rdev = fs::metadata(node).ok()?.rdev();
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (dir, rw) = crate::sys::mounts::mount_of(&info, nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32)?;
    Some((PathBuf::from(dir), rw))
}

impl Mounted {
    /// Mount `node` at `dir`; where it is mounted already, that mount is used (a second
    /// mount of a vfat with other flags is refused by the kernel) and left in place.
    pub fn new(node: &str, dir: PathBuf, readonly: bool) -> Result<Mounted, EspError> {
        if let Some((at, rw)) = existing_mount(node) {
            if rw || readonly {
                return Ok(Mounted { dir: at, owned: false });
            }
            let e = std::io::Error::other(format!("mounted read-only at {}", at.display()));
            return Err(EspError::Io { path: node.to_string(), source: e });
        }
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        // flush: write dirty data at close, so a crash loses at most the file being written.
        let data = if readonly { "" } else { "flush" };
        mount(Some(node), &dir, Some("vfat"), flags, Some(data)).map_err(|source| EspError::Mount { node: node.to_string(), source })?;
        Ok(Mounted { dir, owned: true })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        nix::unistd::sync();
        if self.owned {
            let _ = umount2(&self.dir, MntFlags::empty());
            let _ = fs::remove_dir(&self.dir);
        }
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

/// Copy `from` to `to` atomically (as `write_atomic`) and return the hash of the bytes
/// written: the manifest records what reached the disk, even if the primary changed since
/// its tree was read.
fn copy_atomic(from: &Path, to: &Path, deadline: Instant) -> Result<(u64, [u8; 32]), EspError> {
    let src = fs::File::open(from).map_err(io(from))?;
    let mut h = Hashing { inner: src, hash: Sha256::new(), size: 0 };
    write_atomic(&mut h, to, deadline)?;
    Ok((h.size, h.hash.finalize().into()))
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Bytes written between two looks at the clock: a large file on a slow stick cannot
/// overrun the stage's budget by more than one chunk.
const CHUNK: usize = 1 << 20;

/// Write `to` from `src` under a temporary name in the same directory, fsync, rename into
/// place, fsync the directory: a crash leaves the old file or the new one. Past the
/// deadline the temporary is removed and the old file stays.
fn write_atomic(src: &mut dyn Read, to: &Path, deadline: Instant) -> Result<(), EspError> {
    let tmp = temporary(to);
    let mut dst = fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut since_check = 0usize;
    let written = (|| -> Result<(), EspError> {
        loop {
            let n = src.read(&mut buf).map_err(io(&tmp))?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n]).map_err(io(&tmp))?;
            since_check += n;
            if since_check >= CHUNK {
                since_check = 0;
                // Data in the page cache is not on a slow disk yet: push it out so the
                // clock sees what the copy costs.
                dst.sync_data().map_err(io(&tmp))?;
                if Instant::now() > deadline {
                    return Err(EspError::Budget);
                }
            }
        }
        dst.flush().map_err(io(&tmp))?;
        dst.sync_all().map_err(io(&tmp))
    })();
    drop(dst);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename_synced(&tmp, to).map_err(io(to))
}

/// The name `to` is written under before its rename: the ESP's tree knows it as zroam's
/// temporary (never mirrored; removed from a secondary when a sync was cut off).
pub(crate) fn temporary(to: &Path) -> PathBuf {
    PathBuf::from(format!("{}{TMP_SUFFIX}", to.display()))
}

/// Renames `from` to `to` on an ESP and makes the rename durable.
pub(crate) fn rename_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    // On FAT the directory entry of a renamed file (where it starts, how long it is) is
    // written with the file's inode, not with its directory: without this fsync the old
    // entry can stay on the disk while the old clusters are freed (seen in the lab after a
    // crash: a file of the old size pointing at free clusters).
    if let Ok(f) = fs::File::open(to) {
        f.sync_all()?;
    }
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

/// Write the manifest (atomically: a crash leaves the old one or the new one).
fn write_manifest(root: &Path, m: &Manifest) -> Result<(), EspError> {
    let p = root.join(manifest::PATH);
    let dir = p.parent().expect("the manifest has a directory");
    fs::create_dir_all(dir).map_err(io(dir))?;
    write_atomic(&mut manifest::render(m).as_bytes(), &p, Instant::now() + Duration::from_secs(3600))
}

/// Apply a plan to a mounted secondary: directories and files first, the manifest, then
/// the deletions, so a loader is on the disk at every instant. Stops at the deadline (the
/// marker stays; the manifest records what was written).
fn apply(pri: &Path, sec: &Path, plan: &Plan, res: &mut EspResult, deadline: Instant) -> Result<(), EspError> {
    set_marker(sec, true)?;
    let mut m = plan.manifest.clone();
    let written = (|| -> Result<(), EspError> {
        for d in &plan.mkdirs {
            let p = sec.join(d);
            if !p.is_dir() {
                fs::create_dir_all(&p).map_err(io(&p))?;
                m.entries.insert(d.clone(), Node::Dir);
            }
        }
        for f in &plan.copies {
            if Instant::now() > deadline {
                return Err(EspError::Budget);
            }
            let to = plan.target.iter().find(|(from, _)| from == f).map_or(f, |(_, t)| t);
            let (size, hash) = copy_atomic(&pri.join(f), &sec.join(to), deadline)?;
            m.entries.insert(to.clone(), Node::File { size, hash });
            res.copied.push(f.clone());
            res.bytes += size;
        }
        Ok(())
    })();
    // Recorded before anything is deleted, and also when the copies were cut short.
    write_manifest(sec, &m)?;
    written?;
    if !plan.deletes.is_empty() {
        log::info!("ESP {}: new files written; now {} deletion(s) of zroam's own files", sec.display(), plan.deletes.len());
    }
    for d in &plan.deletes {
        let p = sec.join(d);
        let r = if p.is_dir() { fs::remove_dir(&p) } else { fs::remove_file(&p) };
        match r {
            Ok(()) => {
                // One deletion at a time on the disk: FAT has no journal, and a crash with
                // many unlinks in the cache can leave entries whose clusters are freed.
                if let Some(parent) = p.parent() {
                    fsync_dir(parent);
                }
                res.deleted.push(d.clone())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = write_manifest(sec, &m);
                return Err(EspError::Io { path: p.display().to_string(), source: e });
            }
        }
        m.entries.remove(d);
    }
    write_manifest(sec, &m)?;
    nix::unistd::sync();
    set_marker(sec, false)
}

/// The secondary's manifest: None when there is none; a damaged one counts what it still
/// says (zroam then deletes less, never more).
fn read_manifest(root: &Path, warnings: &mut Vec<String>) -> Option<Manifest> {
    let p = root.join(manifest::PATH);
    let mut text = String::new();
    let f = fs::File::open(&p).ok()?;
    if let Err(e) = f.take(manifest::MAX_BYTES as u64).read_to_string(&mut text) {
        warnings.push(format!("{}: {e}; treated as empty", manifest::PATH));
        return Some(Manifest::default());
    }
    let (m, bad) = manifest::parse(&text);
    if bad > 0 {
        warnings.push(format!("{}: {bad} line(s) not understood and ignored", manifest::PATH));
    }
    Some(m)
}

fn sync_one(pri_root: Option<&Path>, pri: &Tree, rules: Rules, esp: &Esp, opts: &Options, deadline: Instant) -> EspResult {
    let t = Instant::now();
    let mut res = EspResult { esp: Some(esp.clone()), ..EspResult::default() };
    let Some(node) = esp.node.as_deref() else { return res };
    let write = esp.role == Role::Secondary && opts.mode == Mode::Sync && !opts.dry_run;
    let dir = opts.mount_base.join(esp.partuuid.to_string());
    let outcome = (|| -> Result<(), EspError> {
        let m = Mounted::new(node, dir, !write)?;
        res.resumed = m.dir.join(MARKER).exists();
        let tree = read_tree(&m.dir, deadline)?;
        let mut notes = Vec::new();
        let manifest = read_manifest(&m.dir, &mut notes);
        res.warnings.extend(notes.into_iter().map(|w| format!("ESP {}: {w}", esp.partuuid)));
        let plan = tree::plan(pri, &tree, rules, manifest.as_ref());
        res.kept_local = plan.kept_local.clone();
        res.foreign = plan.foreign.clone();
        res.conflicts = plan.conflicts.clone();
        for c in &plan.conflicts {
            res.warnings.push(format!(
                "ESP {}: {c} was not written by zroam and differs from the primary's; left as it is (`replace {c}` in the primary's {} overwrites it)",
                esp.partuuid,
                set::SET_FILE
            ));
        }
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
            "ESP {}: syncing {} files ({} bytes), then {} deletions of zroam's own files{}",
            esp.partuuid,
            plan.copies.len(),
            plan.bytes,
            plan.deletes.len(),
            if res.resumed { " (an earlier sync was interrupted)" } else { "" }
        );
        apply(pri_root, &m.dir, &plan, &mut res, deadline)?;
        let mut ignore = Vec::new();
        let after = tree::plan(pri, &read_tree(&m.dir, deadline)?, rules, read_manifest(&m.dir, &mut ignore).as_ref());
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
    let first = set::roles(rep, pool_guid, &[], &opts.pinned, booted);
    if first.is_empty() {
        // No ESP on the pool's disks: nothing to mount, no modules to load.
        out.ms = t.elapsed().as_millis() as u64;
        return out;
    }
    load_fat_modules();
    // The set file is read from the primary only: on any other ESP it is data (a stick can
    // list our PARTUUIDs in one).
    let mut set = set::SetFile::default();
    let mut mounted: Option<(Uuid, Mounted)> = None;
    if let Some(src) = first.iter().find(|e| e.role == Role::Primary) {
        match read_set(src, &opts.mount_base) {
            Ok((s, m)) => {
                out.warnings.extend(s.warnings.iter().map(|w| format!("{}: {w}", set::SET_FILE)));
                set = s;
                mounted = Some((src.partuuid, m));
            }
            Err(e) => out.warnings.push(e.to_string()),
        }
    }
    let esps = set::roles(rep, pool_guid, &set.esps, &opts.pinned, booted);
    out.primary = esps.iter().find(|e| e.role == Role::Primary).map(|e| e.partuuid);
    out.check_only = set::why_check_only(rep, &esps, booted);
    // The reference tree: the primary's, or (check only) the first ESP's, already mounted
    // read-only when it is the primary.
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
    let rules = Rules { local: &set.local, replace: &set.replace };
    for e in &esps {
        let same_as_source = source.as_ref().is_some_and(|s| s.partuuid == e.partuuid);
        let r = match &e.role {
            Role::Primary => EspResult { esp: Some(e.clone()), verified: true, ..EspResult::default() },
            Role::Skipped { why } => {
                out.warnings.push(format!("ESP {} skipped: {why}", e.partuuid));
                EspResult { esp: Some(e.clone()), ..EspResult::default() }
            }
            Role::Check if same_as_source => EspResult { esp: Some(e.clone()), ..EspResult::default() },
            Role::Secondary | Role::Check => sync_one(pri_root, tree, rules, e, opts, deadline),
        };
        out.warnings.extend(r.warnings.iter().cloned());
        out.esps.push(r);
    }
    out.ms = t.elapsed().as_millis() as u64;
    out
}

/// The ESP the reference tree comes from: the primary, or with none known the first ESP
/// that is only checked.
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

/// Rewrite the ESP-set file on the primary, the only place it is read (the next sync
/// copies it to the secondaries). An administrator's explicit change: unlike the sync, it
/// writes the booted ESP.
pub fn update_set(
    rep: &ProbeReport,
    pool_guid: u64,
    booted: Option<Uuid>,
    pinned: &[Uuid],
    base: &Path,
    change: impl Fn(&mut set::SetFile),
) -> Result<set::SetFile, String> {
    load_fat_modules();
    let first = set::roles(rep, pool_guid, &[], pinned, booted);
    let src = first.iter().find(|e| e.role == Role::Primary).ok_or_else(|| {
        format!(
            "the set file is kept on the booted ESP, and none is known: {}",
            set::why_check_only(rep, &first, booted).unwrap_or_default()
        )
    })?;
    let node = src.node.as_deref().unwrap_or_default();
    let m = Mounted::new(node, base.join(src.partuuid.to_string()), false).map_err(|e| e.to_string())?;
    let p = m.dir.join(set::SET_FILE);
    let mut set = read_bounded(&p).map(|t| set::parse(&t)).unwrap_or_default();
    change(&mut set);
    let dir = p.parent().expect("set file has a directory");
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_atomic(&mut set::render(&set).as_bytes(), &p, Instant::now() + Duration::from_secs(60)).map_err(|e| e.to_string())?;
    Ok(set)
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
            "{} {:<9} {:<14} copied {} deleted {} kept {} foreign {} conflicts {}{drift}\n",
            x.partuuid,
            role,
            x.node.as_deref().unwrap_or("-"),
            e.copied.len(),
            e.deleted.len(),
            e.kept_local.len(),
            e.foreign.len(),
            e.conflicts.len()
        );
        for f in &e.foreign {
            s += &format!("    foreign: {f}\n");
        }
    }
    if let Some(why) = &r.check_only {
        s += &format!("checking only: {why}\n");
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

    fn plan_for(pri: &Path, sec: &Path) -> Plan {
        let m = read_manifest(sec, &mut Vec::new());
        tree::plan(&read_tree(pri, far()).unwrap(), &read_tree(sec, far()).unwrap(), Rules::default(), m.as_ref())
    }

    #[test]
    fn apply_brings_the_secondary_in_line_and_keeps_what_is_not_zroams() {
        let (pri, sec) = (scratch("pri1"), scratch("sec1"));
        put(&pri, "EFI/BOOT/BOOTX64.EFI", b"loader v2");
        put(&pri, "loader/entries/debian.conf", b"title debian");
        put(&pri, "EFI/old/stale.efi", b"soon gone from the primary");
        put(&sec, "EFI/Microsoft/Boot/bootmgfw.efi", b"another OS");
        // A temporary left by a sync that was cut off mid-copy.
        put(&sec, &format!("EFI/BOOT/BOOTX64.EFI{TMP_SUFFIX}"), b"half");
        // First sync: everything is new; the other OS's file stays and is foreign.
        let mut res = EspResult::default();
        apply(&pri, &sec, &plan_for(&pri, &sec), &mut res, far()).unwrap();
        assert_eq!(fs::read(sec.join("EFI/old/stale.efi")).unwrap(), b"soon gone from the primary");
        assert!(plan_for(&pri, &sec).is_empty(), "still differs after apply");
        assert!(!sec.join(MARKER).exists(), "the marker outlived a finished sync");
        assert!(tmp_files(&sec).is_empty(), "temporaries left: {:?}", tmp_files(&sec));
        // The primary changes: a new loader, a file and its directory gone.
        put(&pri, "EFI/BOOT/BOOTX64.EFI", b"loader v3");
        fs::remove_dir_all(pri.join("EFI/old")).unwrap();
        let plan = plan_for(&pri, &sec);
        assert_eq!(plan.deletes, ["EFI/old/stale.efi", "EFI/old"]);
        assert_eq!(plan.foreign, ["EFI/Microsoft"]);
        let mut res = EspResult::default();
        apply(&pri, &sec, &plan, &mut res, far()).unwrap();
        assert_eq!(fs::read(sec.join("EFI/BOOT/BOOTX64.EFI")).unwrap(), b"loader v3");
        assert!(!sec.join("EFI/old").exists());
        assert_eq!(fs::read(sec.join("EFI/Microsoft/Boot/bootmgfw.efi")).unwrap(), b"another OS");
        assert_eq!((res.copied.len(), res.deleted.len()), (1, 2));
        let (m, bad) = manifest::parse(&fs::read_to_string(sec.join(manifest::PATH)).unwrap());
        assert_eq!(bad, 0);
        assert!(!m.entries.contains_key("EFI/old/stale.efi") && m.entries.contains_key("EFI/BOOT/BOOTX64.EFI"));
        assert!(!m.entries.keys().any(|k| k.contains("Microsoft")));
        let _ = (fs::remove_dir_all(&pri), fs::remove_dir_all(&sec));
    }

    #[test]
    fn a_sync_cut_off_by_its_budget_keeps_the_marker_and_what_it_wrote() {
        let (pri, sec) = (scratch("pri2"), scratch("sec2"));
        put(&pri, "EFI/BOOT/BOOTX64.EFI", b"new loader");
        put(&pri, "big.bin", &vec![7u8; 3 * CHUNK]);
        put(&sec, "EFI/BOOT/BOOTX64.EFI", b"old loader");
        fs::create_dir_all(sec.join("zroam")).unwrap();
        let hash = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        let old = Node::File { size: 10, hash: hash(b"old loader") };
        let m = Manifest { entries: [("EFI/BOOT/BOOTX64.EFI".to_string(), old)].into() };
        write_manifest(&sec, &m).unwrap();
        let mut res = EspResult::default();
        let past = Instant::now() - Duration::from_millis(1);
        assert!(matches!(apply(&pri, &sec, &plan_for(&pri, &sec), &mut res, past), Err(EspError::Budget)));
        assert!(sec.join(MARKER).exists(), "an interrupted sync must leave its marker");
        assert!(tmp_files(&sec).is_empty(), "a copy cut off by the budget leaves no temporary");
        // A copy that outlives the deadline inside a large file stops at the next chunk.
        let mut src = &vec![1u8; 3 * CHUNK][..];
        assert!(matches!(write_atomic(&mut src, &sec.join("big.bin"), past), Err(EspError::Budget)));
        assert!(!sec.join("big.bin").exists());
        // The manifest still says the old loader is zroam's: the next run updates it.
        apply(&pri, &sec, &plan_for(&pri, &sec), &mut EspResult::default(), far()).unwrap();
        assert!(!sec.join(MARKER).exists());
        assert_eq!(fs::read(sec.join("EFI/BOOT/BOOTX64.EFI")).unwrap(), b"new loader");
        assert_eq!(fs::read(sec.join("big.bin")).unwrap().len(), 3 * CHUNK);
        let _ = (fs::remove_dir_all(&pri), fs::remove_dir_all(&sec));
    }

    #[test]
    fn write_atomic_replaces_whole_and_leaves_no_temporary() {
        let d = scratch("atomic");
        put(&d, "f", b"old contents, longer than the new");
        write_atomic(&mut &b"new"[..], &d.join("f"), far()).unwrap();
        assert_eq!(fs::read(d.join("f")).unwrap(), b"new");
        assert!(!d.join(format!("f{TMP_SUFFIX}")).exists());
        // A directory where the file should go: an error, and the temporary is not renamed.
        fs::create_dir_all(d.join("dir/sub")).unwrap();
        assert!(write_atomic(&mut &b"x"[..], &d.join("dir"), far()).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
