//! Stage `choose-be` and the plan of stage `mount`: which boot environment, and which
//! datasets mount where. Pure: `zfs list` output and the command line in; a decision out.

use crate::decide::cmdline::{Cmdline, RootSpec};
use serde::{Deserialize, Serialize};

/// The user property that names a one-shot next boot (set on the pool's root dataset).
pub const NEXTBOOT_PROP: &str = "org.zroam:nextboot";
/// The `zfs list` columns `parse_list` expects, in order.
pub const LIST_COLUMNS: &str = "name,mountpoint,canmount,org.zroam:nextboot,encryptionroot,keystatus,keylocation,keyformat";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn value(v: Option<&str>) -> Option<String> {
    v.filter(|v| !v.is_empty() && *v != "-" && *v != "none").map(str::to_string)
}

/// Parse `zfs list -H -o LIST_COLUMNS` (tab-separated; the first four columns alone are
/// accepted too).
pub fn parse_list(out: &str) -> Vec<Dataset> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 4 && f.len() != 8 {
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
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub dataset: String,
    /// Path inside the new root ("/" for the BE itself).
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BePlan {
    pub dataset: String,
    pub reason: String,
    /// Consume `org.zroam:nextboot` on this dataset before mounting.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consume_nextboot: Option<String>,
    pub mounts: Vec<Mount>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeRefusal {
    pub why: String,
    pub hint: String,
    pub environments: Vec<String>,
}

/// Boot environments: datasets directly under `<pool>/ROOT`.
fn environments<'a>(pool: &str, ds: &'a [Dataset]) -> Vec<&'a Dataset> {
    let prefix = format!("{pool}/ROOT/");
    ds.iter().filter(|d| d.name.strip_prefix(&prefix).is_some_and(|r| !r.contains('/'))).collect()
}

/// `bootfs` is the pool property ("-" when unset).
pub fn choose(pool: &str, bootfs: &str, ds: &[Dataset], cmd: &Cmdline) -> Result<BePlan, BeRefusal> {
    let envs = environments(pool, ds);
    let names: Vec<String> = envs.iter().map(|d| d.name.clone()).collect();
    let refuse = |why: String| BeRefusal { why, hint: format!("root=ZFS={pool}/ROOT/NAME picks one"), environments: names.clone() };
    let exists = |n: &str| ds.iter().any(|d| d.name == n);
    let mut warnings = Vec::new();
    let mut consume = None;

    let (be, reason) = if let Some(RootSpec::Dataset { dataset: Some(d), .. }) = &cmd.root {
        if !exists(d) {
            return Err(refuse(format!("root= names {d}, which is not a dataset of {pool}")));
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
    Ok(BePlan { dataset: be, reason, consume_nextboot: consume, mounts, warnings })
}

fn fallback(pool: &str, bootfs: &str, envs: &[&Dataset], exists: impl Fn(&str) -> bool) -> Result<(String, String), String> {
    if bootfs != "-" && !bootfs.is_empty() {
        if exists(bootfs) {
            return Ok((bootfs.to_string(), "the pool's bootfs".to_string()));
        }
        return Err(format!("bootfs of {pool} is {bootfs}, which does not exist"));
    }
    let roots: Vec<&&Dataset> = envs.iter().filter(|d| d.mountpoint == "/").collect();
    match roots[..] {
        [d] => Ok((d.name.clone(), format!("the only dataset under {pool}/ROOT with mountpoint=/"))),
        [] => Err(format!("{pool} has no bootfs and no dataset under {pool}/ROOT with mountpoint=/")),
        _ => Err(format!("{pool} has no bootfs and {} boot environments", roots.len())),
    }
}

/// The BE at "/", then its descendants that mount beneath it, parents first.
fn mounts_for(be: &str, ds: &[Dataset]) -> Vec<Mount> {
    let base = ds.iter().find(|d| d.name == be).map(|d| d.mountpoint.as_str()).unwrap_or("/");
    // A BE with mountpoint=legacy or none still roots its children at its own path.
    let base = if base.starts_with('/') { base.trim_end_matches('/') } else { "" };
    let prefix = format!("{be}/");
    let mut out = vec![Mount { dataset: be.to_string(), target: "/".to_string() }];
    let mut kids: Vec<Mount> = ds
        .iter()
        .filter(|d| d.name.starts_with(&prefix) && d.canmount == "on" && d.mountpoint.starts_with('/'))
        .filter_map(|d| {
            let rel = d.mountpoint.strip_prefix(base)?;
            (rel.starts_with('/') && rel.len() > 1).then(|| Mount { dataset: d.name.clone(), target: rel.to_string() })
        })
        .collect();
    kids.sort_by_key(|m| (m.target.matches('/').count(), m.target.clone()));
    out.extend(kids);
    out
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
        // legacy, noauto and datasets outside the BE are not ours to mount.
        assert_eq!(t, ["/", "/var", "/var/log"]);
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
        assert!(e.why.contains("2 boot environments"), "{e:?}");
        let one: Vec<Dataset> = ds.into_iter().filter(|d| d.name != "rpool/ROOT/other").collect();
        assert_eq!(choose("rpool", "-", &one, &parse("")).unwrap().dataset, "rpool/ROOT/debian");
        assert!(choose("rpool", "rpool/ROOT/gone", &one, &parse("")).is_err());
        assert!(parse_list("garbage\n\n").is_empty());
    }
}
