//! The kernel command line, as zroam reads it. Pure: a string in, settings out.
//! Unknown `zroam.*` keys and bad values become warnings, never errors: a typo must not
//! stop a boot.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What `root=` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootSpec {
    /// `root=zfs:AUTO` (or `root=zfs` / `root=ZFS=` with nothing after): any pool.
    Auto,
    /// `root=ZFS=POOL[/DATASET]` or `root=zfs:POOL[/DATASET]`.
    Dataset { pool: String, dataset: Option<String> },
}

impl Cmdline {
    /// Does this command line ask for a ZFS root? Only `root=` naming something else (a
    /// block device, NFS) without `zroam.pool=` says no; no `root=` at all means AUTO.
    pub fn wants_zfs_root(&self) -> bool {
        self.foreign_root.is_none() || self.pool.is_some()
    }
}

impl RootSpec {
    pub fn pool(&self) -> Option<&str> {
        match self {
            RootSpec::Auto => None,
            RootSpec::Dataset { pool, .. } => Some(pool),
        }
    }
}

/// Which pool `zroam.pool=` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum PoolSel {
    Name(String),
    Guid(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostidMode {
    Adopt,
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EspMode {
    Sync,
    Check,
    Off,
}

/// Which LUKS containers zroam may open (`rd.luks=`, `rd.luks.uuid=`, `zroam.luks=`,
/// `zroam.luks.uuid=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LuksOpts {
    /// `rd.luks=0` / `zroam.luks=off`: open none.
    pub enabled: bool,
    /// Only these container UUIDs (lower case, without a `luks-` prefix); empty: any.
    pub uuids: Vec<String>,
}

/// A key file named on the command line: `zroam.key=PATH[:DEVICE]`, or dracut's
/// `rd.luks.key=PATH[:KEYDEV[:LUKSDEV]]` and systemd's `rd.luks.key=UUID=PATH[:KEYDEV]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpec {
    /// Path of the file: in the ramdisk, or on `device` when given.
    pub path: String,
    /// `PARTUUID=…`, `/dev/…` or `esp` (any ESP on the disks zroam probed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device: Option<String>,
    /// Only for this LUKS container (UUID) when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub for_uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cmdline {
    /// None: `root=` is absent or names something that is not ZFS.
    pub root: Option<RootSpec>,
    /// The raw `root=` value when it is not a ZFS spelling (reported, then ignored).
    pub foreign_root: Option<String>,
    pub pool: Option<PoolSel>,
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub wait: Duration,
    /// Extra wait for a pool that is importable but degraded, for its missing members.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub grace: Duration,
    pub force: bool,
    pub hostid: HostidMode,
    pub readonly: bool,
    pub esp: EspMode,
    /// Longest time the ESP stage may take.
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub esp_budget: Duration,
    pub shell: bool,
    pub luks: LuksOpts,
    pub keys: Vec<KeySpec>,
    /// Passphrase attempts per container or encryption root before giving up.
    pub key_tries: u32,
    /// Longest wait for a passphrase to be typed (zero: no limit).
    #[serde(serialize_with = "secs", deserialize_with = "from_secs")]
    pub key_timeout: Duration,
    pub init: Option<String>,
    pub quiet: bool,
    pub debug: bool,
    /// `zroam.pin=off`: boot without the ramdisk's root pin (a pool restored onto new disks).
    #[serde(default = "yes")]
    pub pin: bool,
    /// `zroam.ignore=`: devices (node, name or disk serial) whose labels zroam leaves out.
    #[serde(default)]
    pub ignore: Vec<String>,
    pub warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn from_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = f64::deserialize(d)?;
    Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
}

pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_ESP_BUDGET: Duration = Duration::from_secs(15);
pub const DEFAULT_KEY_TRIES: u32 = 3;
pub const DEFAULT_KEY_TIMEOUT: Duration = Duration::from_secs(300);
/// A longer wait is a typo, not a wish: cap it so boot stays bounded.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            root: None,
            foreign_root: None,
            pool: None,
            wait: DEFAULT_WAIT,
            grace: DEFAULT_GRACE,
            force: false,
            hostid: HostidMode::Adopt,
            readonly: false,
            esp: EspMode::Sync,
            esp_budget: DEFAULT_ESP_BUDGET,
            shell: false,
            luks: LuksOpts { enabled: true, uuids: Vec::new() },
            keys: Vec::new(),
            key_tries: DEFAULT_KEY_TRIES,
            key_timeout: DEFAULT_KEY_TIMEOUT,
            init: None,
            quiet: false,
            debug: false,
            pin: true,
            ignore: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Split like the kernel does: whitespace separates words, double quotes group.
pub fn split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn parse_root(v: &str) -> Option<RootSpec> {
    let rest = v
        .strip_prefix("ZFS=")
        .or_else(|| v.strip_prefix("zfs:"))
        .or_else(|| v.strip_prefix("zfs="))
        .or(if v == "zfs" || v == "ZFS" { Some("") } else { None })?;
    let rest = rest.trim_matches('/');
    if rest.is_empty() || rest.eq_ignore_ascii_case("AUTO") {
        return Some(RootSpec::Auto);
    }
    let (pool, ds) = match rest.split_once('/') {
        Some((p, _)) => (p.to_string(), Some(rest.to_string())),
        None => (rest.to_string(), None),
    };
    Some(RootSpec::Dataset { pool, dataset: ds })
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v {
        None | Some("1" | "yes" | "on" | "true" | "y") => Some(true),
        Some("0" | "no" | "off" | "false" | "n") => Some(false),
        _ => None,
    }
}

fn parse_secs(v: &str) -> Option<Duration> {
    let s: f64 = v.trim_end_matches('s').parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s).min(MAX_WAIT))
}

/// A pool GUID as written by `zpool get guid` (decimal) or by zdb (hex with 0x).
pub fn parse_guid(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    // Pool names start with a letter, so digits alone are a GUID.
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    None
}

/// A LUKS UUID as the command line may write it (`luks-` prefix, upper case): None when
/// it is not a UUID.
pub fn luks_uuid(v: &str) -> Option<String> {
    let u = v.strip_prefix("UUID=").unwrap_or(v);
    let u = u.strip_prefix("luks-").unwrap_or(u).to_ascii_lowercase();
    let ok = u.len() == 36 && u.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() });
    ok.then_some(u)
}

/// `PATH[:DEVICE[:LUKSDEV]]` (dracut) or `UUID=PATH[:DEVICE]` (systemd).
fn parse_key(v: &str) -> Option<KeySpec> {
    if let Some((u, rest)) = v.split_once('=').filter(|(u, _)| luks_uuid(u).is_some()) {
        let (path, dev) = match rest.split_once(':') {
            Some((p, d)) => (p, Some(d)),
            None => (rest, None),
        };
        return (!path.is_empty()).then(|| KeySpec {
            path: path.to_string(),
            device: dev.filter(|d| !d.is_empty()).map(str::to_string),
            for_uuid: luks_uuid(u),
        });
    }
    let mut it = v.splitn(3, ':');
    let path = it.next().filter(|p| !p.is_empty())?;
    let device = it.next().filter(|d| !d.is_empty()).map(str::to_string);
    let for_uuid = match it.next() {
        Some(l) => Some(luks_uuid(l)?),
        None => None,
    };
    Some(KeySpec { path: path.to_string(), device, for_uuid })
}

pub fn parse(line: &str) -> Cmdline {
    let mut c = Cmdline::default();
    for word in split(line) {
        let (key, val) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        let bad = |c: &mut Cmdline| c.warnings.push(format!("ignored {word}: bad value"));
        match key {
            "root" => {
                let v = val.unwrap_or("");
                match parse_root(v) {
                    Some(r) => {
                        c.root = Some(r);
                        c.foreign_root = None;
                    }
                    None => c.foreign_root = Some(v.to_string()),
                }
            }
            "init" => c.init = val.filter(|v| !v.is_empty()).map(str::to_string),
            "quiet" => c.quiet = true,
            "zfs_force" | "zfs.force" | "zroam.force" => match parse_bool(val) {
                Some(b) => c.force = b,
                None => bad(&mut c),
            },
            "zroam.pool" => match val.filter(|v| !v.is_empty()) {
                Some(v) => c.pool = Some(parse_guid(v).map_or_else(|| PoolSel::Name(v.to_string()), PoolSel::Guid)),
                None => bad(&mut c),
            },
            "zroam.wait" | "zroam.grace" => match val.and_then(parse_secs) {
                Some(d) if key == "zroam.wait" => c.wait = d,
                Some(d) => c.grace = d,
                None => bad(&mut c),
            },
            "zroam.hostid" => match val {
                Some("adopt") => c.hostid = HostidMode::Adopt,
                Some("strict") => c.hostid = HostidMode::Strict,
                _ => bad(&mut c),
            },
            "zroam.readonly" | "zroam.shell" | "zroam.debug" => match parse_bool(val) {
                Some(b) if key == "zroam.readonly" => c.readonly = b,
                Some(b) if key == "zroam.shell" => c.shell = b,
                Some(b) => c.debug = b,
                None => bad(&mut c),
            },
            "zroam.esp" => match val {
                Some("sync") => c.esp = EspMode::Sync,
                Some("check") => c.esp = EspMode::Check,
                Some("off") => c.esp = EspMode::Off,
                _ => bad(&mut c),
            },
            "zroam.esp.budget" => match val.and_then(parse_secs) {
                Some(d) => c.esp_budget = d,
                None => bad(&mut c),
            },
            "rd.luks" | "zroam.luks" => match parse_bool(val) {
                Some(b) => c.luks.enabled = b,
                None => bad(&mut c),
            },
            "rd.luks.uuid" | "zroam.luks.uuid" => {
                let us: Option<Vec<String>> = val.unwrap_or("").split(',').map(luks_uuid).collect();
                match us {
                    Some(us) => c.luks.uuids.extend(us),
                    None => bad(&mut c),
                }
            }
            "rd.luks.key" | "zroam.key" => match val.and_then(parse_key) {
                Some(k) => c.keys.push(k),
                None => bad(&mut c),
            },
            "zroam.key.tries" => match val.and_then(|v| v.parse::<u32>().ok()).filter(|n| (1..=10).contains(n)) {
                Some(n) => c.key_tries = n,
                None => bad(&mut c),
            },
            "zroam.key.timeout" => match val.and_then(parse_secs) {
                Some(d) => c.key_timeout = d,
                None => bad(&mut c),
            },
            "zroam.pin" => match parse_bool(val) {
                Some(b) => c.pin = b,
                None => bad(&mut c),
            },
            "zroam.ignore" => {
                let items: Vec<String> = val.unwrap_or("").split(',').filter(|v| !v.is_empty()).map(str::to_string).collect();
                if items.is_empty() {
                    bad(&mut c);
                }
                c.ignore.extend(items.into_iter().take(64));
            }
            k if k.starts_with("zroam.") => c.warnings.push(format!("unknown parameter {word} ignored")),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zfs_root_or_not() {
        assert!(parse("root=zfs:AUTO").wants_zfs_root());
        assert!(parse("quiet").wants_zfs_root());
        assert!(!parse("root=/dev/sda1").wants_zfs_root());
        assert!(!parse("root=UUID=1234 ro").wants_zfs_root());
        assert!(parse("root=/dev/sda1 zroam.pool=rpool").wants_zfs_root());
    }

    #[test]
    fn root_spellings() {
        let ds = |p: &str, d: Option<&str>| Some(RootSpec::Dataset { pool: p.into(), dataset: d.map(Into::into) });
        assert_eq!(parse("root=zfs:AUTO").root, Some(RootSpec::Auto));
        assert_eq!(parse("root=zfs").root, Some(RootSpec::Auto));
        assert_eq!(parse("root=ZFS=rpool/ROOT/other").root, ds("rpool", Some("rpool/ROOT/other")));
        assert_eq!(parse("root=zfs:rpool").root, ds("rpool", None));
        assert_eq!(parse("root=ZFS=rpool/").root, ds("rpool", None));
        let c = parse("root=/dev/sda1");
        assert_eq!((c.root, c.foreign_root.as_deref()), (None, Some("/dev/sda1")));
        // The last root= wins, as in the kernel.
        assert_eq!(parse("root=/dev/sda1 root=zfs:AUTO").foreign_root, None);
    }

    #[test]
    fn zroam_keys() {
        let c = parse(
            "quiet zroam.pool=1234567890123 zroam.wait=3 zfs_force=1 zroam.hostid=strict \
             zroam.readonly=1 zroam.esp=check init=/bin/sh zroam.grace=0.5 zroam.esp.budget=4",
        );
        assert_eq!(c.esp_budget, Duration::from_secs(4));
        assert_eq!(c.pool, Some(PoolSel::Guid(1234567890123)));
        assert_eq!(c.wait, Duration::from_secs(3));
        assert_eq!(c.grace, Duration::from_millis(500));
        assert!(c.force && c.readonly && c.quiet);
        assert_eq!(c.hostid, HostidMode::Strict);
        assert_eq!(c.esp, EspMode::Check);
        assert_eq!(c.init.as_deref(), Some("/bin/sh"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(parse("zroam.pool=0xDEAD").pool, Some(PoolSel::Guid(0xdead)));
        assert_eq!(parse("zroam.pool=tank").pool, Some(PoolSel::Name("tank".into())));
    }

    #[test]
    fn typos_warn_and_keep_defaults() {
        let c = parse("zroam.wiat=5 zroam.wait=soon zroam.hostid=maybe zroam.esp");
        assert_eq!(c.wait, DEFAULT_WAIT);
        assert_eq!(c.hostid, HostidMode::Adopt);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("zroam.wiat=5"));
        assert_eq!(parse("zroam.wait=99999").wait, MAX_WAIT);
    }

    #[test]
    fn luks_and_keys() {
        let u = "0b1e3a8c-5d2f-4c6e-9a7b-1c2d3e4f5a6b";
        let c = parse(&format!(
            "rd.luks.uuid=luks-{} zroam.luks.uuid={u},{u} rd.luks.key=/k.bin:PARTUUID=abcd rd.luks.key={u}=/x:/dev/vda1 \
             zroam.key=/keys/rpool.key:esp zroam.key.tries=5 zroam.key.timeout=0",
            u.to_uppercase()
        ));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.luks.enabled);
        assert_eq!(c.luks.uuids, vec![u, u, u]);
        assert_eq!(c.keys[0], KeySpec { path: "/k.bin".into(), device: Some("PARTUUID=abcd".into()), for_uuid: None });
        assert_eq!(c.keys[1], KeySpec { path: "/x".into(), device: Some("/dev/vda1".into()), for_uuid: Some(u.into()) });
        assert_eq!(c.keys[2].device.as_deref(), Some("esp"));
        assert_eq!((c.key_tries, c.key_timeout), (5, Duration::ZERO));
        assert!(!parse("rd.luks=0").luks.enabled);
        assert!(!parse("zroam.luks=off").luks.enabled);
        let bad = parse("rd.luks.uuid=nope zroam.key.tries=0 zroam.key= rd.luks.key=/a:b:notauuid");
        assert_eq!(bad.warnings.len(), 4, "{:?}", bad.warnings);
        assert_eq!(bad.key_tries, DEFAULT_KEY_TRIES);
    }

    #[test]
    fn quoting() {
        assert_eq!(split(r#"a "b c" d=" e""#), vec!["a", "b c", "d= e"]);
        assert_eq!(split("  "), Vec::<String>::new());
    }
}
