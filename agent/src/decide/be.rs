//! Stage `choose-be` and the plan of stage `mount`: which boot environment, and which
//! datasets mount where. Pure: `zfs list` output and the command line in; a decision out.

use crate::decide::cmdline::{Cmdline, RootSpec};
use serde::{Deserialize, Serialize};

/// The user property that names a one-shot next boot (set on the pool's root dataset).
pub const NEXTBOOT_PROP: &str = "org.zroam:nextboot";
/// The `zfs list` columns `parse_list` expects, in order.
pub const LIST_COLUMNS: &str =
    "name,mountpoint,canmount,org.zroam:nextboot,encryptionroot,keystatus,keylocation,keyformat,org.zol:mountpoint";
/// Where a clone made at boot keeps its dataset's mountpoint (its own is `none`, so that
/// `zfs mount -a` leaves it alone): the stock initramfs-tools script's property, so
/// clones made by either are booted alike.
pub const CLONE_MOUNTPOINT_PROP: &str = "org.zol:mountpoint";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Dataset {
    pub name: String,
    pub mountpoint: String,
    pub canmount: String,
    /// `org.zroam:nextboot` as listed (None when "-").
    pub nextboot: Option<String>,
    /// Native encryption: the dataset whose key this one uses (None: not encrypted).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encryption_root: Option<String>,
    /// "available" or "unavailable" (None: not encrypted).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keystatus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keylocation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keyformat: Option<String>,
    /// `org.zol:mountpoint` (a boot-time clone's mountpoint).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub clone_mountpoint: Option<String>,
}

impl Dataset {
    /// Where it mounts: its mountpoint, or a boot-time clone's remembered one.
    fn mount_path(&self) -> Option<&str> {
        let own = Some(self.mountpoint.as_str()).filter(|m| m.starts_with('/'));
        own.or(self.clone_mountpoint.as_deref().filter(|m| m.starts_with('/')))
    }
}

fn value(v: Option<&str>) -> Option<String> {
    v.filter(|v| !v.is_empty() && *v != "-" && *v != "none").map(str::to_string)
}

/// Parse `zfs list -H -o LIST_COLUMNS` (tab-separated; the first four or eight columns
/// alone are accepted too).
pub fn parse_list(out: &str) -> Vec<Dataset> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if ![4, 8, 9].contains(&f.len()) {
                return None;
            }
            Some(Dataset {
                name: f[0].to_string(),
                mountpoint: f[1].to_string(),
                canmount: f[2].to_string(),
                nextboot: value(Some(f[3])),
                encryption_root: value(f.get(4).copied()),
                keystatus: value(f.get(5).copied()),
                keylocation: value(f.get(6).copied()),
                keyformat: value(f.get(7).copied()),
                clone_mountpoint: value(f.get(8).copied()),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub dataset: String,
    /// Path inside the new root ("/" for the BE itself).
    pub target: String,
    /// A clone made at boot: the dataset it was cloned from (whose key it needs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub origin: Option<String>,
}

/// A change to the pool made before the BE is mounted, only ever because the command line
/// asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Step {
    /// `zfs snapshot -r SNAPSHOT` (`bootfs.snapshot`).
    Snapshot { snapshot: String },
    /// `zfs rollback -r SNAPSHOT`: later snapshots of that dataset go; a clone of one of
    /// them stops the rollback instead (`rollback=1`, `bootfs.rollback`).
    Rollback { snapshot: String },
    /// `zfs clone` of SNAPSHOT as TARGET, not mounted by anyone else (`root=…@SNAP`).
    Clone { snapshot: String, target: String, mountpoint: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct BePlan {
    pub dataset: String,
    pub reason: String,
    /// Consume `org.zroam:nextboot` on this dataset before mounting.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consume_nextboot: Option<String>,
    pub mounts: Vec<Mount>,
    /// Snapshots, rollbacks and clones to make first, in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl BePlan {
    /// The command line asks for something done with the BE's snapshots: list them.
    pub fn wants_snapshots(cmd: &Cmdline) -> bool {
        matches!(&cmd.root, Some(RootSpec::Dataset { snapshot: Some(_), .. })) || cmd.be.snapshot.is_some() || cmd.be.rollback_to.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct BeRefusal {
    pub why: String,
    pub hint: String,
    pub environments: Vec<String>,
    /// Several BEs and nothing picks one: a person at the console may (the menu).
    #[serde(skip)]
    pub ambiguous: bool,
}

/// Boot environments: datasets directly under `<pool>/ROOT`.
pub fn environments<'a>(pool: &str, ds: &'a [Dataset]) -> Vec<&'a Dataset> {
    let prefix = format!("{pool}/ROOT/");
    ds.iter().filter(|d| d.name.strip_prefix(&prefix).is_some_and(|r| !r.contains('/'))).collect()
}

/// What `zroam be next|activate|snapshot` accept: a boot environment of `pool` (`ds` is the
/// boot's own `zfs list -t filesystem`) whose mountpoint `mounts_for` roots at the sysroot
/// as it is: `/`, `legacy` or `none`. The boot would mount a BE with any other mountpoint
/// too; refused here because it is most likely one mounted elsewhere to be looked at.
pub fn check(pool: &str, ds: &[Dataset], name: &str) -> Result<(), BeRefusal> {
    let envs = environments(pool, ds);
    let refuse =
        |why: String, hint: String| BeRefusal { why, hint, environments: envs.iter().map(|d| d.name.clone()).collect(), ambiguous: false };
    let Some(d) = envs.iter().find(|d| d.name == name) else {
        let why = if ds.iter().any(|d| d.name == name) {
            format!("{name} is not a boot environment (those are the filesystems directly under {pool}/ROOT)")
        } else {
            format!("{name} is not a filesystem of {pool}")
        };
        return Err(refuse(why, format!("zroam be list {pool}")));
    };
    match d.mountpoint.as_str() {
        "/" | "legacy" | "none" => Ok(()),
        mp => Err(refuse(
            format!("{name} has mountpoint={mp}: a boot environment mounts at / (mountpoint=/, legacy or none)"),
            format!("zfs set mountpoint=/ {name} (with canmount=noauto), once it is not mounted"),
        )),
    }
}

/// `bootfs` is the pool property ("-" when unset).
pub fn choose(pool: &str, bootfs: &str, ds: &[Dataset], cmd: &Cmdline) -> Result<BePlan, BeRefusal> {
    let envs = environments(pool, ds);
    let names: Vec<String> = envs.iter().map(|d| d.name.clone()).collect();
    // `ambiguous`: several BEs and nothing to pick one (a person may, in the menu).
    let refuse = |(why, ambiguous): (String, bool)| BeRefusal {
        why,
        hint: format!("root=ZFS={pool}/ROOT/NAME picks one"),
        environments: names.clone(),
        ambiguous,
    };
    let exists = |n: &str| ds.iter().any(|d| d.name == n);
    let mut warnings = Vec::new();
    let mut consume = None;

    let (be, reason) = if let Some(RootSpec::Dataset { dataset: Some(d), .. }) = &cmd.root {
        if !exists(d) {
            return Err(refuse((format!("root= names {d}, which is not a dataset of {pool}"), false)));
        }
        (d.clone(), "named by root=".to_string())
    } else if let Some(nb) = ds.iter().find(|d| d.name == pool).and_then(|d| d.nextboot.clone()) {
        if cmd.readonly {
            warnings.push(format!("{NEXTBOOT_PROP}={nb} left for a writable boot (zroam.readonly=1)"));
            fallback(pool, bootfs, &envs, exists).map_err(refuse)?
        } else if exists(&nb) {
            consume = Some(pool.to_string());
            (nb, format!("one-shot {NEXTBOOT_PROP} on {pool}"))
        } else {
            warnings.push(format!("{NEXTBOOT_PROP}={nb} names no dataset; ignored (and cleared)"));
            consume = Some(pool.to_string());
            fallback(pool, bootfs, &envs, exists).map_err(refuse)?
        }
    } else {
        fallback(pool, bootfs, &envs, exists).map_err(refuse)?
    };
    let mounts = mounts_for(&be, ds);
    Ok(BePlan { dataset: be, reason, consume_nextboot: consume, mounts, steps: Vec::new(), warnings })
}

/// bootfs, else the only BE; the error says why, and whether it is a choice a person could
/// make (several BEs).
fn fallback(pool: &str, bootfs: &str, envs: &[&Dataset], exists: impl Fn(&str) -> bool) -> Result<(String, String), (String, bool)> {
    if bootfs != "-" && !bootfs.is_empty() {
        if exists(bootfs) {
            return Ok((bootfs.to_string(), "the pool's bootfs".to_string()));
        }
        return Err((format!("bootfs of {pool} is {bootfs}, which does not exist"), false));
    }
    let roots: Vec<&&Dataset> = envs.iter().filter(|d| d.mountpoint == "/").collect();
    match roots[..] {
        [d] => Ok((d.name.clone(), format!("the only dataset under {pool}/ROOT with mountpoint=/"))),
        [] => Err((format!("{pool} has no bootfs and no dataset under {pool}/ROOT with mountpoint=/"), false)),
        _ => Err((format!("{pool} has no bootfs and {} boot environments", roots.len()), true)),
    }
}

/// The BE at "/", then its descendants that mount beneath it, parents first: `canmount`
/// `on` and `noauto` alike, as the stock initramfs-tools script mounts them (a `noauto`
/// `/usr` must be there before init runs).
fn mounts_for(be: &str, ds: &[Dataset]) -> Vec<Mount> {
    // A BE with mountpoint=legacy or none still roots its children at its own path.
    let base = ds.iter().find(|d| d.name == be).and_then(Dataset::mount_path).unwrap_or("").trim_end_matches('/');
    let prefix = format!("{be}/");
    let mut out = vec![Mount { dataset: be.to_string(), target: "/".to_string(), origin: None }];
    let mut kids: Vec<Mount> = ds
        .iter()
        .filter(|d| d.name.starts_with(&prefix) && (d.canmount == "on" || d.canmount == "noauto"))
        .filter_map(|d| {
            let rel = d.mount_path()?.strip_prefix(base)?;
            (rel.starts_with('/') && rel.len() > 1).then(|| Mount { dataset: d.name.clone(), target: rel.to_string(), origin: None })
        })
        .collect();
    kids.sort_by_key(|m| (m.target.matches('/').count(), m.target.clone()));
    out.extend(kids);
    out
}

/// ZFS's characters for a snapshot's name (the part after `@`).
pub fn valid_snapshot_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 200 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.: ".contains(&b))
}

/// A name for `DS@NAME`, as the boot (`bootfs.snapshot=`) and `zroam be snapshot` take it:
/// ZFS's characters, not `.` or `..`, within ZFS's 255-byte names.
pub fn check_snapshot_name(ds: &str, name: &str) -> Result<(), String> {
    if !valid_snapshot_name(name) || name == "." || name == ".." {
        return Err(format!("'{name}' is not a snapshot name (letters, digits, space and _ - . : only)"));
    }
    if ds.len() + 1 + name.len() > 255 {
        return Err(format!("{ds}@{name} is longer than ZFS's 255 bytes"));
    }
    Ok(())
}

/// What the command line asks done with the chosen BE's snapshots before it is mounted,
/// and the mounts that follow: `root=…@SNAP` clones the snapshot (and its children's
/// snapshots of that name) or, with `rollback=1`, rolls them back; `bootfs.snapshot` and
/// `bootfs.rollback` snapshot or roll back the BE. `snaps`: the snapshot names under the
/// BE (`zfs list -H -o name -t snapshot -r BE`); `release`: the running kernel's, the
/// default snapshot name of the dracut spellings.
pub fn prepare(mut plan: BePlan, ds: &[Dataset], snaps: &[String], cmd: &Cmdline, release: &str) -> Result<BePlan, BeRefusal> {
    let be = plan.dataset.clone();
    let in_be = |fs: &str| fs == be || fs.strip_prefix(be.as_str()).is_some_and(|r| r.starts_with('/'));
    // Parents first, so a child's clone lands under its parent's.
    let same_named = |name: &str| -> Vec<&str> {
        let mut v: Vec<&str> =
            snaps.iter().filter(|s| s.split_once('@').is_some_and(|(fs, n)| n == name && in_be(fs))).map(String::as_str).collect();
        v.sort_by_key(|s| (s.matches('/').count(), *s));
        v
    };
    let own: Vec<String> = snaps.iter().filter(|s| s.split_once('@').is_some_and(|(fs, _)| fs == be)).cloned().collect();
    // The snapshots are in the message; no BE list (the BE is chosen).
    let refuse = |why: String, hint: &str| BeRefusal { why, hint: hint.to_string(), environments: Vec::new(), ambiguous: false };
    let missing = |name: &str, by: &str| {
        let list = if own.is_empty() { "it has no snapshots".to_string() } else { format!("its snapshots: {}", own.join(", ")) };
        refuse(
            format!("{by} asks for {be}@{name}, which does not exist; {list}"),
            "name one of the listed snapshots, or drop the parameter",
        )
    };
    // A release such as 6.12.95+deb12-amd64 has characters ZFS refuses in a name.
    let snap_name = |v: &str| {
        if v.is_empty() {
            release.chars().map(|c| if valid_snapshot_name(c.encode_utf8(&mut [0; 4])) { c } else { '_' }).collect()
        } else {
            v.to_string()
        }
    };
    let root_snap = match &cmd.root {
        Some(RootSpec::Dataset { dataset: Some(d), snapshot: Some(s), .. }) if *d == be => Some(s.clone()),
        _ => None,
    };
    if cmd.readonly && (root_snap.is_some() || cmd.be.snapshot.is_some() || cmd.be.rollback_to.is_some()) {
        return Err(refuse(
            "the command line asks for a snapshot, rollback or clone, but the pool is imported read-only".into(),
            "drop zroam.readonly=1, or the snapshot parameter",
        ));
    }
    if let Some(v) = &cmd.be.snapshot {
        let name = snap_name(v);
        if let Err(e) = check_snapshot_name(&be, &name) {
            return Err(refuse(format!("bootfs.snapshot: {e}"), "bootfs.snapshot=NAME with letters, digits and _-.:"));
        }
        if own.iter().any(|s| s.ends_with(&format!("@{name}"))) {
            plan.warnings.push(format!("{be}@{name} exists already: not snapshotted again (bootfs.snapshot)"));
        } else {
            plan.steps.push(Step::Snapshot { snapshot: format!("{be}@{name}") });
        }
    }
    if let Some(v) = &cmd.be.rollback_to {
        let name = snap_name(v);
        if !own.iter().any(|s| s.ends_with(&format!("@{name}"))) {
            return Err(missing(&name, "bootfs.rollback"));
        }
        plan.steps.extend(same_named(&name).into_iter().map(|s| Step::Rollback { snapshot: s.to_string() }));
        plan.reason.push_str(&format!(", rolled back to @{name}"));
    }
    let Some(snap) = root_snap else { return Ok(plan) };
    if !own.iter().any(|s| s.ends_with(&format!("@{snap}"))) {
        return Err(missing(&snap, "root="));
    }
    let tree = same_named(&snap);
    if cmd.be.rollback {
        plan.steps.extend(tree.iter().map(|s| Step::Rollback { snapshot: s.to_string() }));
        plan.reason.push_str(&format!(", rolled back to @{snap} (rollback=1)"));
        return Ok(plan);
    }
    // A fresh clone under a free name: an earlier clone is the user's to keep or destroy.
    let taken = |n: &str| ds.iter().any(|d| d.name == n || d.name.starts_with(&format!("{n}/")));
    let base = format!("{be}_{snap}");
    let Some(target) = std::iter::once(base.clone()).chain((2..100).map(|i| format!("{base}_{i}"))).find(|n| !taken(n)) else {
        return Err(refuse(format!("99 clones of {be}@{snap} exist already"), "zfs destroy -r the clones no longer needed"));
    };
    if target != base {
        plan.warnings.push(format!("{base} exists (an earlier boot of @{snap}): left as it is, booting the new clone {target}"));
    }
    let by_origin = |fs: &str| ds.iter().find(|d| d.name == fs);
    let mut mounts = Vec::new();
    for s in &tree {
        let fs = s.split_once('@').map_or(*s, |(f, _)| f);
        let sub = &fs[be.len()..];
        let dest = format!("{target}{sub}");
        let mp = by_origin(fs).and_then(Dataset::mount_path).map(str::to_string).unwrap_or_else(|| {
            if sub.is_empty() {
                "/".into()
            } else {
                sub.into()
            }
        });
        plan.steps.push(Step::Clone { snapshot: s.to_string(), target: dest.clone(), mountpoint: mp });
    }
    for m in &plan.mounts {
        match tree.iter().find(|s| s.split_once('@').is_some_and(|(fs, _)| fs == m.dataset)) {
            Some(_) => mounts.push(Mount {
                dataset: format!("{target}{}", &m.dataset[be.len()..]),
                target: m.target.clone(),
                origin: Some(m.dataset.clone()),
            }),
            None => plan.warnings.push(format!(
                "{} has no @{snap}: not mounted on {} (its current files would mix with the snapshot's)",
                m.dataset, m.target
            )),
        }
    }
    plan.mounts = mounts;
    plan.reason.push_str(&format!(", booted as {target}, a clone of @{snap} (zfs promote {target} keeps it)"));
    plan.dataset = target;
    Ok(plan)
}

/// `ZFS_INITRD_ADDITIONAL_DATASETS` from the BE's `/etc/default/zfs` (a shell fragment:
/// the last plain assignment wins; nothing is evaluated).
pub fn additional_datasets(defaults: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in defaults.lines() {
        let l = line.trim();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some(v) = l.strip_prefix("ZFS_INITRD_ADDITIONAL_DATASETS=") else { continue };
        let v = v.split(" #").next().unwrap_or("").trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out = v.split_whitespace().take(64).map(str::to_string).collect();
    }
    out
}

/// Mounts for the additional datasets: each at its own mountpoint, unless it is not in the
/// imported pool, has `canmount=off` or no mountpoint, or is mounted already.
pub fn extra_mounts(names: &[String], ds: &[Dataset], planned: &[Mount]) -> (Vec<Mount>, Vec<String>) {
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for n in names {
        if planned.iter().chain(out.iter()).any(|m: &Mount| &m.dataset == n) {
            continue;
        }
        match ds.iter().find(|d| &d.name == n) {
            None => warnings.push(format!("{n} (ZFS_INITRD_ADDITIONAL_DATASETS) is not a dataset of the imported pool: not mounted")),
            Some(d) if d.canmount == "off" => {}
            Some(d) => match d.mount_path() {
                Some(p) => out.push(Mount { dataset: n.clone(), target: p.to_string(), origin: None }),
                None => warnings.push(format!("{n} (ZFS_INITRD_ADDITIONAL_DATASETS) has no mountpoint: not mounted")),
            },
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::parse;

    const LIST: &str = "rpool\tnone\toff\t-\n\
rpool/ROOT\tnone\toff\t-\n\
rpool/ROOT/debian\t/\tnoauto\t-\n\
rpool/ROOT/debian/var\t/var\ton\t-\n\
rpool/ROOT/debian/var/log\t/var/log\ton\t-\n\
rpool/ROOT/debian/opt\tlegacy\ton\t-\n\
rpool/ROOT/debian/srv\t/srv\tnoauto\t-\n\
rpool/ROOT/other\t/\tnoauto\t-\n\
rpool/home\t/home\ton\t-\n";

    #[test]
    fn bootfs_and_children() {
        let ds = parse_list(LIST);
        let p = choose("rpool", "rpool/ROOT/debian", &ds, &parse("root=zfs:AUTO")).unwrap();
        assert_eq!(p.dataset, "rpool/ROOT/debian");
        let t: Vec<&str> = p.mounts.iter().map(|m| m.target.as_str()).collect();
        // legacy and datasets outside the BE are not ours to mount; noauto is (stock).
        assert_eq!(t, ["/", "/srv", "/var", "/var/log"]);
    }

    #[test]
    fn root_names_the_be() {
        let ds = parse_list(LIST);
        let p = choose("rpool", "rpool/ROOT/debian", &ds, &parse("root=ZFS=rpool/ROOT/other")).unwrap();
        assert_eq!((p.dataset.as_str(), p.mounts.len()), ("rpool/ROOT/other", 1));
        let e = choose("rpool", "-", &ds, &parse("root=ZFS=rpool/ROOT/nope")).unwrap_err();
        assert!(e.why.contains("rpool/ROOT/nope") && e.environments.len() == 2, "{e:?}");
    }

    #[test]
    fn nextboot_is_one_shot() {
        let l = LIST.replacen("rpool\tnone\toff\t-", "rpool\tnone\toff\trpool/ROOT/other", 1);
        let ds = parse_list(&l);
        let p = choose("rpool", "rpool/ROOT/debian", &ds, &parse("")).unwrap();
        assert_eq!((p.dataset.as_str(), p.consume_nextboot.as_deref()), ("rpool/ROOT/other", Some("rpool")));
        // Read-only: cannot consume, so not used.
        let p = choose("rpool", "rpool/ROOT/debian", &ds, &parse("zroam.readonly=1")).unwrap();
        assert_eq!((p.dataset.as_str(), p.consume_nextboot), ("rpool/ROOT/debian", None));
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn without_bootfs() {
        let ds = parse_list(LIST);
        let e = choose("rpool", "-", &ds, &parse("")).unwrap_err();
        assert!(e.why.contains("2 boot environments") && e.ambiguous, "{e:?}");
        let one: Vec<Dataset> = ds.into_iter().filter(|d| d.name != "rpool/ROOT/other").collect();
        assert_eq!(choose("rpool", "-", &one, &parse("")).unwrap().dataset, "rpool/ROOT/debian");
        assert!(choose("rpool", "rpool/ROOT/gone", &one, &parse("")).is_err());
        assert!(parse_list("garbage\n\n").is_empty());
    }

    fn snaps() -> Vec<String> {
        [
            "rpool/ROOT/debian@pre",
            "rpool/ROOT/debian/var@pre",
            "rpool/ROOT/debian/var/log@pre",
            "rpool/ROOT/debian@6.12",
            "rpool/ROOT/other@pre",
        ]
        .map(String::from)
        .to_vec()
    }

    fn prepared(line: &str, ds: &[Dataset]) -> Result<BePlan, BeRefusal> {
        let cmd = parse(line);
        let p = choose("rpool", "rpool/ROOT/debian", ds, &cmd).unwrap();
        prepare(p, ds, &snaps(), &cmd, "6.12")
    }

    #[test]
    fn snapshot_boots_a_clone_of_the_tree() {
        let ds = parse_list(LIST);
        let p = prepared("root=ZFS=rpool/ROOT/debian@pre", &ds).unwrap();
        assert_eq!(p.dataset, "rpool/ROOT/debian_pre");
        let clones: Vec<(&str, &str, &str)> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::Clone { snapshot, target, mountpoint } => (snapshot.as_str(), target.as_str(), mountpoint.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            clones,
            [
                ("rpool/ROOT/debian@pre", "rpool/ROOT/debian_pre", "/"),
                ("rpool/ROOT/debian/var@pre", "rpool/ROOT/debian_pre/var", "/var"),
                ("rpool/ROOT/debian/var/log@pre", "rpool/ROOT/debian_pre/var/log", "/var/log")
            ]
        );
        let m: Vec<(&str, &str, Option<&str>)> =
            p.mounts.iter().map(|m| (m.dataset.as_str(), m.target.as_str(), m.origin.as_deref())).collect();
        assert_eq!(m[0], ("rpool/ROOT/debian_pre", "/", Some("rpool/ROOT/debian")));
        assert_eq!(m[1], ("rpool/ROOT/debian_pre/var", "/var", Some("rpool/ROOT/debian/var")));
        // /srv has no @pre: not mixed in.
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(p.warnings.iter().any(|w| w.contains("rpool/ROOT/debian/srv has no @pre")), "{:?}", p.warnings);
        // An earlier clone is left alone: the next one gets a free name.
        let again = format!("{LIST}rpool/ROOT/debian_pre\tnone\tnoauto\t-\t-\t-\tnone\tnone\t/\n");
        let ds2 = parse_list(&again);
        let p = prepared("root=ZFS=rpool/ROOT/debian@pre", &ds2).unwrap();
        assert_eq!(p.dataset, "rpool/ROOT/debian_pre_2");
        assert!(p.warnings.iter().any(|w| w.contains("left as it is")));
        // ... and a clone made earlier boots by name, at its remembered mountpoint.
        let p = choose("rpool", "-", &ds2, &parse("root=ZFS=rpool/ROOT/debian_pre")).unwrap();
        assert_eq!(p.mounts[0].target, "/");
    }

    #[test]
    fn rollbacks_and_snapshots() {
        let ds = parse_list(LIST);
        let p = prepared("root=ZFS=rpool/ROOT/debian@pre rollback=1", &ds).unwrap();
        assert_eq!(p.dataset, "rpool/ROOT/debian");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps[0], Step::Rollback { snapshot: "rpool/ROOT/debian@pre".into() });
        // dracut: the kernel's release names the snapshot when none is given.
        let p = prepared("bootfs.snapshot", &ds).unwrap();
        assert!(p.steps.is_empty() && p.warnings[0].contains("exists already"), "{p:?}");
        let p = prepared("bootfs.snapshot=before", &ds).unwrap();
        assert_eq!(p.steps, [Step::Snapshot { snapshot: "rpool/ROOT/debian@before".into() }]);
        let p = prepared("bootfs.rollback", &ds).unwrap();
        assert_eq!(p.steps, [Step::Rollback { snapshot: "rpool/ROOT/debian@6.12".into() }]);
        // Snapshot before rolling back: nothing is lost that was not asked for.
        let p = prepared("bootfs.snapshot=keep bootfs.rollback=pre", &ds).unwrap();
        assert!(matches!(p.steps[0], Step::Snapshot { .. }) && p.steps.len() == 4, "{:?}", p.steps);
    }

    #[test]
    fn missing_snapshots_and_read_only_refuse() {
        let ds = parse_list(LIST);
        let e = prepared("root=ZFS=rpool/ROOT/debian@nope", &ds).unwrap_err();
        assert!(e.why.contains("rpool/ROOT/debian@nope") && e.why.contains("rpool/ROOT/debian@pre, rpool/ROOT/debian@6.12"), "{e:?}");
        // Debian's kernel releases carry a '+', which ZFS refuses in a name.
        let cmd = parse("bootfs.snapshot");
        let p = prepare(choose("rpool", "rpool/ROOT/debian", &ds, &cmd).unwrap(), &ds, &snaps(), &cmd, "6.12.95+deb12-amd64").unwrap();
        assert_eq!(p.steps, [Step::Snapshot { snapshot: "rpool/ROOT/debian@6.12.95_deb12-amd64".into() }]);
        assert!(prepared("bootfs.rollback=gone", &ds).is_err());
        assert!(prepared("root=ZFS=rpool/ROOT/debian@pre zroam.readonly=1", &ds).unwrap_err().why.contains("read-only"));
        assert!(prepared("bootfs.snapshot=a/b", &ds).is_err());
        assert!(prepared("bootfs.snapshot=..", &ds).unwrap_err().why.contains("not a snapshot name"));
        assert!(!valid_snapshot_name("") && !valid_snapshot_name("x@y") && valid_snapshot_name("6.12.95-amd64"));
    }

    #[test]
    fn additional_datasets_from_etc_default_zfs() {
        let f = "# ZFS_INITRD_ADDITIONAL_DATASETS=\"no\"\nZFS_INITRD_ADDITIONAL_DATASETS=\"rpool/home rpool/ROOT/debian/var rpool/gone\"\nZFS_DKMS=yes\n";
        let names = additional_datasets(f);
        assert_eq!(names, ["rpool/home", "rpool/ROOT/debian/var", "rpool/gone"]);
        assert_eq!(additional_datasets("export ZFS_INITRD_ADDITIONAL_DATASETS='a b' # two"), ["a", "b"]);
        let ds = parse_list(LIST);
        let p = choose("rpool", "rpool/ROOT/debian", &ds, &parse("")).unwrap();
        let (m, w) = extra_mounts(&names, &ds, &p.mounts);
        assert_eq!(m, [Mount { dataset: "rpool/home".into(), target: "/home".into(), origin: None }]);
        assert!(w.len() == 1 && w[0].contains("rpool/gone"), "{w:?}");
    }

    #[test]
    fn what_zroam_be_accepts() {
        let l = LIST.replacen("rpool/ROOT/other\t/\t", "rpool/ROOT/other\t/mnt\t", 1) + "rpool/ROOT/old\tlegacy\tnoauto\t-\n";
        let ds = parse_list(&l);
        assert_eq!(check("rpool", &ds, "rpool/ROOT/debian"), Ok(()));
        assert_eq!(check("rpool", &ds, "rpool/ROOT/old"), Ok(()));
        let e = check("rpool", &ds, "rpool/ROOT/debian/var").unwrap_err();
        assert!(e.why.contains("not a boot environment"), "{e:?}");
        assert_eq!(e.environments, ["rpool/ROOT/debian", "rpool/ROOT/other", "rpool/ROOT/old"]);
        assert!(check("rpool", &ds, "rpool/ROOT/nope").unwrap_err().why.contains("not a filesystem of rpool"));
        assert!(check("rpool", &ds, "rpool/ROOT/other").unwrap_err().why.contains("mountpoint=/mnt"));
        assert!(check("rpool", &ds, "rpool/ROOT").is_err() && check("rpool", &ds, "rpool").is_err());
    }
}
