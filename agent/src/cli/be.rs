//! `zroam be`: boot environments on a running system, thin over `zfs` and `zpool`, with the
//! boot's own names and decisions (`decide::be`: what a BE is, `org.zroam:nextboot`, and
//! `choose` for what the next boot picks).

use super::Res;
use crate::decide::be::{self, BeRefusal, Dataset, NEXTBOOT_PROP};
use crate::decide::cmdline;
use crate::probe::table::human_size;
use crate::sys::{mounts, run};
use serde::Serialize;
use std::fmt::Write;
use std::process::ExitCode;
use std::time::Duration;

/// A running system's helpers: nothing is waiting on them as at boot, but a hung pool must
/// not hang the command.
const BOUND: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: zroam be list [--json] [POOL]
       zroam be next BE | next --clear [POOL]
       zroam be activate BE
       zroam be snapshot [BE] [--name NAME]

A BE is a filesystem directly under POOL/ROOT, named in full (rpool/ROOT/debian) or by its
last part in the pool of /. `next` names the BE for the next boot only (org.zroam:nextboot on
the pool's root dataset); `activate` sets the pool's bootfs. `snapshot` snapshots a BE and its
children (default: the BE at /, named zroam-YYYY-MM-DDTHHMMSSZ in UTC).";

/// Columns of the listing's one `zfs list` of filesystems: the boot's own, then space.
fn fs_columns() -> String {
    format!("{},used,referenced,creation,origin", be::LIST_COLUMNS)
}

/// One filesystem of `zfs list -H -p -o fs_columns()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsRow {
    pub ds: Dataset,
    pub used: u64,
    pub referenced: u64,
    pub creation: u64,
    pub origin: Option<String>,
}

/// Parse `zfs list -H -p -o fs_columns()`; the first columns through the boot's `parse_list`.
pub fn parse_fs(out: &str) -> Vec<FsRow> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let k = be::LIST_COLUMNS.split(',').count();
            let [used, referenced, creation, origin] = f.get(k..)? else { return None };
            let ds = be::parse_list(&f[..k].join("\t")).pop()?;
            let n = |s: &str| s.parse().unwrap_or(0);
            let origin = Some(*origin).filter(|o| !o.is_empty() && *o != "-").map(str::to_string);
            Some(FsRow { ds, used: n(used), referenced: n(referenced), creation: n(creation), origin })
        })
        .collect()
}

/// One snapshot of `zfs list -H -p -t snapshot -o name,creation,used`: (dataset, snapshot).
pub fn parse_snapshots(out: &str) -> Vec<(String, Snapshot)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [name, creation, used] = f[..] else { return None };
            let (ds, snap) = name.split_once('@')?;
            let s = Snapshot { name: snap.to_string(), creation: creation.parse().unwrap_or(0), used: used.parse().unwrap_or(0) };
            Some((ds.to_string(), s))
        })
        .collect()
}

/// `zpool get -H -o name,value bootfs`: each pool and its bootfs ("-" when unset).
pub fn parse_bootfs(out: &str) -> Vec<(String, String)> {
    out.lines().filter_map(|l| l.split_once('\t')).map(|(p, v)| (p.to_string(), v.trim().to_string())).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The part after `@`.
    pub name: String,
    /// Seconds since the epoch.
    pub creation: u64,
    /// Bytes only this snapshot holds.
    pub used: u64,
}

/// `zroam be list --json`: a stable shape, fields added but never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The dataset mounted at `/` now (None: `/` is not ZFS).
    pub root: Option<String>,
    pub pools: Vec<PoolBes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolBes {
    pub pool: String,
    /// The pool property (None: unset).
    pub bootfs: Option<String>,
    /// `org.zroam:nextboot` on the pool's root dataset.
    pub nextboot: Option<String>,
    /// What the boot would pick now with an empty command line (None: it would refuse).
    pub next_boot: Option<String>,
    /// Why it picks that one, or why it would refuse.
    pub next_boot_why: String,
    pub warnings: Vec<String>,
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    pub name: String,
    pub mountpoint: String,
    pub canmount: String,
    /// The snapshot it was cloned from.
    pub origin: Option<String>,
    pub creation: u64,
    /// Bytes, with its snapshots and children.
    pub used: u64,
    pub referenced: u64,
    pub bootfs: bool,
    pub nextboot: bool,
    /// The boot would pick it now (empty command line).
    pub next_boot: bool,
    /// Mounted at `/` now.
    pub mounted: bool,
    /// Its own snapshots (not its children's), oldest first.
    pub snapshots: Vec<Snapshot>,
}

/// What the boot would pick for `pool` now with an empty command line: the boot's `choose`.
pub fn pick(pool: &str, bootfs: &str, ds: &[Dataset]) -> (Option<String>, String, Vec<String>) {
    match be::choose(pool, bootfs, ds, &cmdline::parse("")) {
        Ok(p) => (Some(p.dataset), p.reason, p.warnings),
        Err(r) => (None, r.why, Vec::new()),
    }
}

/// The listing from the helpers' parsed answers: `pools` with their bootfs, every filesystem
/// of those pools, the BEs' snapshots, and the dataset at `/`.
pub fn assemble(pools: &[(String, String)], rows: &[FsRow], snaps: &[(String, Snapshot)], root: Option<&str>) -> Listing {
    let pools = pools
        .iter()
        .map(|(pool, bootfs)| {
            let prefix = format!("{pool}/");
            let mine: Vec<&FsRow> = rows.iter().filter(|r| r.ds.name == *pool || r.ds.name.starts_with(&prefix)).collect();
            let ds: Vec<Dataset> = mine.iter().map(|r| r.ds.clone()).collect();
            let nextboot = ds.iter().find(|d| d.name == *pool).and_then(|d| d.nextboot.clone());
            let (next_boot, next_boot_why, warnings) = pick(pool, bootfs, &ds);
            let environments = be::environments(pool, &ds)
                .into_iter()
                .filter_map(|d| mine.iter().find(|r| r.ds.name == d.name))
                .map(|r| {
                    let name = r.ds.name.clone();
                    let mut snapshots: Vec<Snapshot> = snaps.iter().filter(|(d, _)| *d == name).map(|(_, s)| s.clone()).collect();
                    snapshots.sort_by(|a, b| (a.creation, &a.name).cmp(&(b.creation, &b.name)));
                    Environment {
                        mountpoint: r.ds.mountpoint.clone(),
                        canmount: r.ds.canmount.clone(),
                        origin: r.origin.clone(),
                        creation: r.creation,
                        used: r.used,
                        referenced: r.referenced,
                        bootfs: *bootfs == name,
                        nextboot: nextboot.as_deref() == Some(name.as_str()),
                        next_boot: next_boot.as_deref() == Some(name.as_str()),
                        mounted: root == Some(name.as_str()),
                        snapshots,
                        name,
                    }
                })
                .collect();
            let bootfs = Some(bootfs.clone()).filter(|b| !b.is_empty() && b != "-");
            PoolBes { pool: pool.clone(), bootfs, nextboot, next_boot, next_boot_why, warnings, environments }
        })
        .collect();
    Listing { root: root.map(str::to_string), pools }
}

/// Days since the epoch as (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`): no date crate in a binary kept small.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (y, m, d, H, M, S) in UTC.
fn utc(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

/// "2026-11-30 06:15" (UTC), for people.
fn when(secs: u64) -> String {
    let (y, m, d, h, min, _) = utc(secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}")
}

/// The default snapshot name: `zroam-2026-11-30T061500Z` (UTC; sorts by time).
pub fn default_name(secs: u64) -> String {
    let (y, m, d, h, min, s) = utc(secs);
    format!("zroam-{y:04}-{m:02}-{d:02}T{h:02}{min:02}{s:02}Z")
}

/// A BE as given: in full, or its last part in the pool of `/` (`root`, the dataset there).
pub fn resolve(arg: &str, root: Option<&str>) -> Result<String, String> {
    if arg.contains('/') {
        return Ok(arg.to_string());
    }
    match root.and_then(|r| r.split('/').next()) {
        Some(pool) => Ok(format!("{pool}/ROOT/{arg}")),
        None => Err(format!("'{arg}' is not a full dataset name and / is not on ZFS: name it POOL/ROOT/{arg}")),
    }
}

/// The listing for people: one block per pool, one line per BE, its snapshots under it.
pub fn render(l: &Listing) -> String {
    let mut o = String::new();
    for p in &l.pools {
        let _ = writeln!(
            o,
            "{}: bootfs {}, {NEXTBOOT_PROP} {}",
            p.pool,
            p.bootfs.as_deref().unwrap_or("-"),
            p.nextboot.as_deref().unwrap_or("-")
        );
        match &p.next_boot {
            Some(b) => {
                let _ = writeln!(o, "  next boot: {b} ({})", p.next_boot_why);
            }
            None => {
                let _ = writeln!(o, "  next boot: refused: {}", p.next_boot_why);
            }
        }
        for w in &p.warnings {
            let _ = writeln!(o, "  warning: {w}");
        }
        if p.environments.is_empty() {
            let _ = writeln!(o, "  no boot environments (no filesystem directly under {}/ROOT)", p.pool);
            continue;
        }
        let w = p.environments.iter().map(|e| e.name.len()).max().unwrap_or(0).max(2);
        let _ = writeln!(o, "  {:<w$}  FLAGS  MOUNTPOINT  {:>6}  {:>6}  CREATED (UTC)", "BE", "USED", "REFER");
        for e in &p.environments {
            let flags: String = [(e.next_boot, '*'), (e.mounted, 'R'), (e.bootfs, 'B'), (e.nextboot, 'N')]
                .iter()
                .map(|&(on, c)| if on { c } else { '-' })
                .collect();
            let _ = writeln!(
                o,
                "  {:<w$}  {flags}   {:<10}  {:>6}  {:>6}  {}",
                e.name,
                e.mountpoint,
                human_size(e.used),
                human_size(e.referenced),
                when(e.creation)
            );
            if let Some(origin) = &e.origin {
                let _ = writeln!(o, "    cloned from {origin}");
            }
            let sw = e.snapshots.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in &e.snapshots {
                let _ = writeln!(o, "    @{:<sw$}  {}  {:>6}", s.name, when(s.creation), human_size(s.used));
            }
        }
    }
    if l.pools.iter().any(|p| !p.environments.is_empty()) {
        o.push_str("flags: * the next boot picks it (empty command line), R mounted at / now, B bootfs, N named by ");
        o.push_str(NEXTBOOT_PROP);
        o.push('\n');
    }
    o
}

fn helper(prog: &str, args: &[&str]) -> Result<String, String> {
    let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let o = run::run(prog, &a, BOUND);
    if o.ok() {
        Ok(o.stdout)
    } else {
        Err(format!("{prog} {}: {}", args.join(" "), o.said()))
    }
}

fn root_dataset() -> Option<String> {
    mounts::root_dataset(&std::fs::read_to_string("/proc/self/mounts").unwrap_or_default())
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("zroam be: {msg}");
    ExitCode::from(1)
}

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut action = None;
    let mut rest = Vec::new();
    let (mut json, mut clear) = (false, false);
    let mut name = None;
    while let Some(arg) = args.next()? {
        match arg {
            Value(v) if action.is_none() => action = Some(v.string()?),
            Value(v) => rest.push(v.string()?),
            Long("json") => json = true,
            Long("clear") => clear = true,
            Long("name") => name = Some(args.value()?.string()?),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if rest.first().is_some_and(|v| v == "-") {
        clear = true;
        rest.remove(0);
    }
    let root = root_dataset();
    let usage = || {
        eprintln!("{USAGE}");
        ExitCode::from(2)
    };
    Ok(match (action.as_deref(), &rest[..]) {
        (Some("list"), [] | [_]) if !clear && name.is_none() => list(rest.first().map(String::as_str), json, root.as_deref()),
        (Some("next"), [pool]) if clear && !json && name.is_none() => clear_next(pool),
        (Some("next"), []) if clear && !json && name.is_none() => match root.as_deref().and_then(|r| r.split('/').next()) {
            Some(pool) => clear_next(pool),
            None => fail("/ is not on ZFS: name the pool (zroam be next --clear POOL)"),
        },
        (Some(a @ ("next" | "activate")), [ds]) if !clear && !json && name.is_none() => match resolve(ds, root.as_deref()) {
            Ok(ds) if a == "next" => next(&ds),
            Ok(ds) => activate(&ds),
            Err(e) => fail(e),
        },
        (Some("snapshot"), [] | [_]) if !clear && !json => {
            let ds = match rest.first() {
                Some(d) => resolve(d, root.as_deref()),
                None => root.clone().ok_or_else(|| "/ is not on ZFS: name the BE (zroam be snapshot POOL/ROOT/NAME)".to_string()),
            };
            match ds {
                Ok(ds) => snapshot(&ds, name),
                Err(e) => fail(e),
            }
        }
        _ => usage(),
    })
}

fn list(pool: Option<&str>, json: bool, root: Option<&str>) -> ExitCode {
    let cols = fs_columns();
    let mut get = vec!["get", "-H", "-o", "name,value", "bootfs"];
    let mut fs = vec!["list", "-H", "-p", "-o", cols.as_str(), "-t", "filesystem"];
    if let Some(p) = pool {
        get.push(p);
        fs.extend(["-r", p]);
    }
    // One after the other, unlike the boot: nothing waits on a running system's listing.
    let (pools, rows) = match helper("zpool", &get).and_then(|b| Ok((parse_bootfs(&b), parse_fs(&helper("zfs", &fs)?)))) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if pools.is_empty() {
        return fail("no pool is imported");
    }
    // Only the BEs' own snapshots (depth 2 below POOL/ROOT): their children's would be as
    // many again, and a helper's output is kept to 256 KiB.
    let roots: Vec<String> = pools.iter().map(|(p, _)| format!("{p}/ROOT")).filter(|r| rows.iter().any(|x| x.ds.name == *r)).collect();
    let mut code = ExitCode::SUCCESS;
    let snaps = if roots.is_empty() {
        Vec::new()
    } else {
        let mut a = vec!["list", "-H", "-p", "-t", "snapshot", "-o", "name,creation,used", "-d", "2"];
        a.extend(roots.iter().map(String::as_str));
        match helper("zfs", &a) {
            Ok(out) => parse_snapshots(&out),
            Err(e) => {
                code = fail(format!("{e} (snapshots not listed)"));
                Vec::new()
            }
        }
    };
    let l = assemble(&pools, &rows, &snaps, root);
    if json {
        println!("{}", serde_json::to_string_pretty(&l).unwrap_or_default());
    } else {
        print!("{}", render(&l));
    }
    code
}

/// The pool's bootfs and filesystems, asked as the boot asks them (`boot::zfs::choose_be`).
fn state(pool: &str) -> Result<(String, Vec<Dataset>), String> {
    let b = helper("zpool", &["get", "-H", "-o", "value", "bootfs", pool])?;
    let l = helper("zfs", &["list", "-H", "-o", be::LIST_COLUMNS, "-t", "filesystem", "-r", pool])?;
    Ok((b.trim().to_string(), be::parse_list(&l)))
}

/// A refusal as `check` gives it, with the BEs there are.
fn refused(pool: &str, r: &BeRefusal) -> ExitCode {
    let mut m = format!("{}\nboot environments of {pool}:", r.why);
    if r.environments.is_empty() {
        let _ = write!(m, " none (no filesystem directly under {pool}/ROOT)");
    }
    for e in &r.environments {
        let _ = write!(m, "\n  {e}");
    }
    let _ = write!(m, "\n({})", r.hint);
    fail(m)
}

/// The pool of `ds`, its bootfs and filesystems, once `ds` is known to be one of its BEs.
fn checked(ds: &str) -> Result<(String, String, Vec<Dataset>), ExitCode> {
    let pool = ds.split('/').next().unwrap_or(ds).to_string();
    let (bootfs, all) = state(&pool).map_err(fail)?;
    be::check(&pool, &all, ds).map_err(|r| refused(&pool, &r))?;
    Ok((pool, bootfs, all))
}

/// What the next boot picks after a change, in the words `list` uses.
fn say_next_boot(pool: &str, bootfs: &str, ds: &[Dataset]) {
    match pick(pool, bootfs, ds) {
        (Some(b), why, _) => println!("next boot: {b} ({why})"),
        (None, why, _) => println!("next boot: refused: {why}"),
    }
}

/// `ds` as the pool's pending one-shot (None: none), as the boot would read it.
fn with_nextboot(all: &mut [Dataset], pool: &str, ds: Option<&str>) {
    for d in all.iter_mut().filter(|d| d.name == pool) {
        d.nextboot = ds.map(str::to_string);
    }
}

fn pending(all: &[Dataset], pool: &str) -> Option<String> {
    all.iter().find(|d| d.name == pool).and_then(|d| d.nextboot.clone())
}

/// `next DS`: the one-shot `org.zroam:nextboot=DS` on the pool's root dataset.
fn next(ds: &str) -> ExitCode {
    let (pool, bootfs, mut all) = match checked(ds) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if let Err(e) = helper("zfs", &["set", &format!("{NEXTBOOT_PROP}={ds}"), &pool]) {
        return fail(e);
    }
    match pending(&all, &pool) {
        Some(p) if p != ds => println!("{NEXTBOOT_PROP} on {pool}: {ds} (was {p})"),
        _ => println!("{NEXTBOOT_PROP} on {pool}: {ds}"),
    }
    with_nextboot(&mut all, &pool, Some(ds));
    say_next_boot(&pool, &bootfs, &all);
    // The boot clears the property before it uses it: the one after falls back.
    with_nextboot(&mut all, &pool, None);
    match pick(&pool, &bootfs, &all) {
        (Some(b), why, _) => println!("the boot after it: {b} ({why}); zroam be next --clear cancels"),
        (None, why, _) => println!("the boot after it: refused: {why}; zroam be next --clear cancels"),
    }
    ExitCode::SUCCESS
}

/// `activate DS`: the pool's bootfs. A pending one-shot for another BE is someone's plan
/// for the next boot and is kept; one for DS itself says nothing more and is cleared.
fn activate(ds: &str) -> ExitCode {
    let (pool, was, mut all) = match checked(ds) {
        Ok(s) => s,
        Err(c) => return c,
    };
    if let Err(e) = helper("zpool", &["set", &format!("bootfs={ds}"), &pool]) {
        return fail(e);
    }
    if was == ds {
        println!("bootfs of {pool}: {ds} (it was already)");
    } else {
        println!("bootfs of {pool}: {ds} (was {was})");
    }
    match pending(&all, &pool) {
        Some(p) if p == ds => match helper("zfs", &["inherit", NEXTBOOT_PROP, &pool]) {
            Ok(_) => {
                println!("{NEXTBOOT_PROP} named {ds} too: cleared");
                with_nextboot(&mut all, &pool, None);
            }
            Err(e) => eprintln!("zroam be: {e} ({NEXTBOOT_PROP} still names {ds}: harmless)"),
        },
        Some(p) => println!("{NEXTBOOT_PROP} still names {p}: the next boot uses it once, then {ds} (zroam be next --clear cancels)"),
        None => {}
    }
    say_next_boot(&pool, ds, &all);
    ExitCode::SUCCESS
}

fn clear_next(pool: &str) -> ExitCode {
    let was = match helper("zfs", &["get", "-H", "-o", "value", NEXTBOOT_PROP, pool]) {
        Ok(v) => v.trim().to_string(),
        Err(e) => return fail(e),
    };
    if was.is_empty() || was == "-" {
        println!("{NEXTBOOT_PROP} is not set on {pool}: nothing to clear");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = helper("zfs", &["inherit", NEXTBOOT_PROP, pool]) {
        return fail(e);
    }
    println!("{NEXTBOOT_PROP} on {pool} cleared (it named {was})");
    match state(pool) {
        Ok((bootfs, all)) => say_next_boot(pool, &bootfs, &all),
        Err(e) => eprintln!("zroam be: {e}"),
    }
    ExitCode::SUCCESS
}

fn snapshot(ds: &str, name: Option<String>) -> ExitCode {
    let name = name.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        default_name(now)
    });
    if let Err(e) = be::check_snapshot_name(ds, &name) {
        eprintln!("zroam be: {e}");
        return ExitCode::from(2);
    }
    if let Err(c) = checked(ds) {
        return c;
    }
    // Recursive: the BE's children get the same name, which is what a clone of the BE
    // (and the boot's snapshot of a BE) takes with it.
    let snap = format!("{ds}@{name}");
    match helper("zfs", &["snapshot", "-r", &snap]) {
        Ok(_) => {
            println!("{snap} (with its children's)");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `zfs list -H -p -o fs_columns() -t filesystem` as OpenZFS 2.3 prints it.
    const FS: &str = "rpool\t/\toff\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t2147483648\t98304\t1764483300\t-\n\
rpool/ROOT\tnone\toff\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t2000000000\t98304\t1764483300\t-\n\
rpool/ROOT/debian\t/\tnoauto\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t1288490188\t943718400\t1764483301\t-\n\
rpool/ROOT/debian/var\t/var\ton\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t104857600\t104857600\t1764483301\t-\n\
rpool/ROOT/other\t/\tnoauto\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t8192\t943718400\t1764569700\trpool/ROOT/debian@before\n\
rpool/home\t/home\ton\trpool/ROOT/other\t-\t-\tnone\tnone\t-\t4096\t4096\t1764483300\t-\n\
tank\t/tank\ton\t-\t-\t-\tnone\tnone\t-\t4096\t4096\t1764483300\t-\n";

    const SNAPS: &str = "rpool/ROOT/debian@zroam-2025-12-01T061500Z\t1764569700\t12288\n\
rpool/ROOT/debian@before\t1764483400\t409600\n\
rpool/ROOT@x\t1764483400\t0\n";

    const BOOTFS: &str = "rpool\trpool/ROOT/debian\ntank\t-\n";

    #[test]
    fn parses_what_zfs_prints() {
        let rows = parse_fs(FS);
        assert_eq!(rows.len(), 7);
        let other = &rows[4];
        assert_eq!((other.ds.name.as_str(), other.ds.mountpoint.as_str()), ("rpool/ROOT/other", "/"));
        assert_eq!((other.used, other.referenced, other.creation), (8192, 943718400, 1764569700));
        assert_eq!(other.origin.as_deref(), Some("rpool/ROOT/debian@before"));
        assert_eq!(rows[0].ds.nextboot.as_deref(), Some("rpool/ROOT/other"));
        assert_eq!((rows[6].origin.as_ref(), rows[6].ds.nextboot.as_ref()), (None, None));
        assert!(parse_fs("rpool\t/\toff\t-\n\ngarbage\n").is_empty(), "the boot's four columns alone are not a listing");
        assert!(parse_fs(&FS.replace("\t-\t2147483648", "\t2147483648")).len() == 6, "a column short: the line is left out");
        let s = parse_snapshots(SNAPS);
        assert_eq!(s.len(), 3);
        assert_eq!((s[1].0.as_str(), s[1].1.name.as_str(), s[1].1.used), ("rpool/ROOT/debian", "before", 409600));
        assert!(parse_snapshots("rpool/ROOT/debian\t1\t2\nx@y\t1\n").is_empty());
        assert_eq!(parse_bootfs(BOOTFS), [("rpool".into(), "rpool/ROOT/debian".into()), ("tank".into(), "-".into())]);
    }

    #[test]
    fn the_listing_says_what_the_boot_would_do() {
        let l = assemble(&parse_bootfs(BOOTFS), &parse_fs(FS), &parse_snapshots(SNAPS), Some("rpool/ROOT/debian"));
        assert_eq!(l.pools.len(), 2);
        let r = &l.pools[0];
        assert_eq!((r.bootfs.as_deref(), r.nextboot.as_deref()), (Some("rpool/ROOT/debian"), Some("rpool/ROOT/other")));
        // The one-shot wins over bootfs, as at boot.
        assert_eq!(r.next_boot.as_deref(), Some("rpool/ROOT/other"));
        assert!(r.next_boot_why.contains("one-shot"), "{}", r.next_boot_why);
        let names: Vec<&str> = r.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["rpool/ROOT/debian", "rpool/ROOT/other"]);
        let (deb, oth) = (&r.environments[0], &r.environments[1]);
        assert_eq!((deb.bootfs, deb.nextboot, deb.next_boot, deb.mounted), (true, false, false, true));
        assert_eq!((oth.bootfs, oth.nextboot, oth.next_boot, oth.mounted), (false, true, true, false));
        let snaps: Vec<&str> = deb.snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(snaps, ["before", "zroam-2025-12-01T061500Z"], "oldest first; POOL/ROOT's own left out");
        assert!(oth.snapshots.is_empty());
        let t = &l.pools[1];
        assert_eq!((t.bootfs.as_ref(), t.next_boot.as_ref(), t.environments.len()), (None, None, 0));
        assert!(t.next_boot_why.contains("tank has no bootfs"), "{}", t.next_boot_why);

        let text = render(&l);
        assert!(text.contains("  next boot: rpool/ROOT/other (one-shot org.zroam:nextboot on rpool)\n"), "{text}");
        assert!(text.contains("  rpool/ROOT/debian  -RB-   /             1.2G    900M  2025-11-30 06:15\n"), "{text}");
        assert!(
            text.contains(
                "  rpool/ROOT/other   *--N   /             8.0K    900M  2025-12-01 06:15\n    cloned from rpool/ROOT/debian@before\n"
            ),
            "{text}"
        );
        assert!(text.contains("    @before                    2025-11-30 06:16    400K\n"), "{text}");
        assert!(text.contains("tank: bootfs -, org.zroam:nextboot -\n  next boot: refused: tank has no bootfs"), "{text}");
        let j: serde_json::Value = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(j["pools"][0]["environments"][0]["snapshots"][0]["used"], 409600);
        assert_eq!(j["root"], "rpool/ROOT/debian");
    }

    #[test]
    fn a_nextboot_that_names_nothing_is_a_warning_as_at_boot() {
        let fs = FS.replacen("rpool\t/\toff\trpool/ROOT/other", "rpool\t/\toff\trpool/ROOT/gone", 1);
        let l = assemble(&parse_bootfs(BOOTFS), &parse_fs(&fs), &[], None);
        let r = &l.pools[0];
        assert_eq!(r.next_boot.as_deref(), Some("rpool/ROOT/debian"));
        assert!(r.warnings[0].contains("names no dataset"), "{:?}", r.warnings);
        assert!(r.environments.iter().all(|e| !e.nextboot && !e.mounted));
    }

    #[test]
    fn dates_and_names() {
        assert_eq!(default_name(0), "zroam-1970-01-01T000000Z");
        assert_eq!(default_name(1_796_019_300), "zroam-2026-11-30T061500Z");
        assert_eq!(default_name(951_782_400), "zroam-2000-02-29T000000Z");
        assert_eq!(default_name(4_107_542_399), "zroam-2100-02-28T235959Z");
        assert_eq!(when(1_764_483_300), "2025-11-30 06:15");
        let ds = "rpool/ROOT/debian";
        assert_eq!(be::check_snapshot_name(ds, &default_name(1_796_019_300)), Ok(()));
        assert_eq!(be::check_snapshot_name(ds, "pre-upgrade_2.3:1"), Ok(()));
        assert_eq!(be::check_snapshot_name(ds, "before upgrade"), Ok(()), "the boot's rule takes a space");
        for bad in ["", ".", "..", "a@b", "a/b", "a\tb", "é"] {
            assert!(be::check_snapshot_name(ds, bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("rpool/ROOT/{}", "d".repeat(100));
        assert!(be::check_snapshot_name(&long, &"x".repeat(150)).unwrap_err().contains("255"));
        assert!(be::check_snapshot_name(ds, &"x".repeat(201)).is_err());
        assert_eq!(resolve("other", Some("rpool/ROOT/debian")).as_deref(), Ok("rpool/ROOT/other"));
        assert_eq!(resolve("tank/ROOT/x", None).as_deref(), Ok("tank/ROOT/x"));
        assert!(resolve("other", None).is_err());
    }
}
