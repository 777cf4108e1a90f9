//! The kernel command line, as zroam reads it. Pure: a string in, settings out.
//! Unknown `zroam.*` keys and bad values become warnings, never errors: a typo must not
//! stop a boot.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::time::Duration;

/// What `root=` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RootSpec {
    /// `root=zfs:AUTO` (or `root=zfs` / `root=ZFS=` with nothing after): any pool.
    Auto,
    /// `root=ZFS=POOL[/DATASET][@SNAPSHOT]` or `root=zfs:…` (and the other spellings).
    Dataset {
        pool: String,
        dataset: Option<String>,
        /// `@SNAPSHOT`: boot a clone of it (or roll back to it with `rollback=1`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        snapshot: Option<String>,
    },
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum PoolSel {
    Name(String),
    Guid(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum HostidMode {
    Adopt,
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum EspMode {
    Sync,
    Check,
    Off,
}

/// Which LUKS containers zroam may open (`rd.luks=`, `rd.luks.uuid=`, `zroam.luks=`,
/// `zroam.luks.uuid=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct LuksOpts {
    /// `rd.luks=0` / `zroam.luks=off`: open none.
    pub enabled: bool,
    /// Only these container UUIDs (lower case, without a `luks-` prefix); empty: any.
    pub uuids: Vec<String>,
}

/// A key file named on the command line: `zroam.key=PATH[:DEVICE]`, or dracut's
/// `rd.luks.key=PATH[:KEYDEV[:LUKSDEV]]` and systemd's `rd.luks.key=UUID=PATH[:KEYDEV]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
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
    /// What to do to the BE before it is mounted (snapshots, rollback).
    #[serde(default, skip_serializing_if = "is_default")]
    pub be: BeOpts,
    /// `zroam.menu[=SECONDS]`: show the menu, booting the default after this long.
    #[serde(skip_serializing_if = "Option::is_none", default, serialize_with = "opt_secs", deserialize_with = "from_opt_secs")]
    pub menu: Option<Duration>,
    /// Offer the menu (without a countdown) instead of refusing when several pools or BEs
    /// could boot and nothing tells them apart; `zroam.menu=off` turns it off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub menu_offer: bool,
    /// `rootflags=`: mount options for the BE (not its children), as the kernel takes them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rootflags: Option<String>,
    /// `spl_hostid=`: the hostid this boot uses, whatever the ramdisk's /etc/hostid says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub spl_hostid: Option<u32>,
    /// Hibernation: `resume=`, `noresume`, `zroam.resume=discard`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resume: ResumeOpts,
    /// `zroam.rewind=checkpoint`: import with `--rewind-to-checkpoint`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rewind_checkpoint: bool,
    /// `zroam.net=` or `ip=`: the ramdisk's network (remote unlock, key servers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub net: Option<crate::decide::net::NetPlan>,
    pub warnings: Vec<String>,
}

/// Snapshots and rollbacks asked for on the command line. Nothing is destroyed unless one
/// of these says so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct BeOpts {
    /// `rollback=1` (initramfs-tools): with `root=…@SNAP`, roll the BE back instead of
    /// booting a clone.
    #[serde(default)]
    pub rollback: bool,
    /// `bootfs.snapshot[=NAME]` (dracut): snapshot the BE before booting it; "" names the
    /// snapshot after the running kernel's release.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub snapshot: Option<String>,
    /// `bootfs.rollback[=NAME]` (dracut): roll the BE back to this snapshot ("": the
    /// kernel's release) before booting it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rollback_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct ResumeOpts {
    /// `resume=DEVICE` as written (`/dev/…`, `UUID=…`, `PARTUUID=…`, `LABEL=…`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device: Option<String>,
    /// `noresume`: never resume an image.
    #[serde(default)]
    pub off: bool,
    /// `zroam.resume=discard`: an image that was not resumed is dropped and the pool
    /// imported read-write.
    #[serde(default)]
    pub discard: bool,
}

/// Settings left at their default are not written: reports from before they existed read
/// back the same.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_true(v: &bool) -> bool {
    *v
}

#[cfg(test)]
fn yes() -> bool {
    true
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
fn from_opt_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<f64>::deserialize(d)?.map(|s| Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)).transpose()
}

#[cfg(test)]
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
/// `zroam.menu` without a time: as long as ZFSBootMenu's default countdown.
pub const DEFAULT_MENU: Duration = Duration::from_secs(10);

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
            be: BeOpts::default(),
            menu: None,
            menu_offer: true,
            rootflags: None,
            spl_hostid: None,
            resume: ResumeOpts::default(),
            rewind_checkpoint: false,
            net: None,
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

/// `root=` in any of the stock spellings: `ZFS=`, `zfs:`, `zfs=`, `zfs:FILESYSTEM=`,
/// `FILESYSTEM=`, bare `zfs`. `+` stands for a space (dracut).
fn parse_root(v: &str) -> Option<RootSpec> {
    let rest = v
        .strip_prefix("ZFS=")
        .or_else(|| v.strip_prefix("zfs:"))
        .or_else(|| v.strip_prefix("zfs="))
        .or_else(|| v.strip_prefix("FILESYSTEM="))
        .or(if v == "zfs" || v == "ZFS" { Some("") } else { None })?;
    Some(zfs_spec(rest.strip_prefix("FILESYSTEM=").unwrap_or(rest)))
}

/// `POOL[/DATASET][@SNAPSHOT]`, `AUTO`/`bootfs`/empty for any pool.
fn zfs_spec(rest: &str) -> RootSpec {
    let rest = rest.replace('+', " ");
    let rest = rest.trim_matches('/');
    if rest.is_empty() || rest.eq_ignore_ascii_case("AUTO") || rest == "bootfs" {
        return RootSpec::Auto;
    }
    let (fs, snapshot) = match rest.split_once('@') {
        Some((f, s)) => (f.trim_end_matches('/'), Some(s.to_string()).filter(|s| !s.is_empty())),
        None => (rest, None),
    };
    let (pool, ds) = match fs.split_once('/') {
        Some((p, _)) => (p.to_string(), Some(fs.to_string())),
        // `root=ZFS=rpool@snap` names the pool's root dataset.
        None if snapshot.is_some() => (fs.to_string(), Some(fs.to_string())),
        None => (fs.to_string(), None),
    };
    RootSpec::Dataset { pool, dataset: ds, snapshot }
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

/// Hex as `spl_hostid=` takes it (`0x` optional), as in /etc/hostid's `zgenhostid`.
fn parse_hostid(v: &str) -> Option<u32> {
    let h = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
    (h.len() <= 8).then(|| u32::from_str_radix(h, 16).ok()).flatten()
}

/// Spellings of the other tools that only take effect together: `root=POOL/DS` counts as
/// ZFS with `rootfstype=zfs` or `boot=zfs`; `bootfs=` and `zfs=` win over `root=`;
/// `rpool=` names the pool when nothing names a dataset.
#[derive(Default)]
struct Pending {
    bare_root: Option<String>,
    zfs_type: bool,
    bootfs: Option<RootSpec>,
    zfs: Option<RootSpec>,
    rpool: Option<String>,
    floor: Option<Duration>,
    /// `zroam.net=` (Some(None): off) and `ip=`: the first wins.
    net: Option<Option<crate::decide::net::NetPlan>>,
    ip: Option<Option<crate::decide::net::NetPlan>>,
}

pub fn parse(line: &str) -> Cmdline {
    let mut c = Cmdline::default();
    let mut p = Pending::default();
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
                        p.bare_root = None;
                    }
                    None => {
                        c.root = None;
                        c.foreign_root = Some(v.to_string());
                        // `root=rpool/ROOT/debian` with `boot=zfs` or `rootfstype=zfs`.
                        let bare = !v.is_empty() && !v.starts_with('/') && !v.contains('=') && !v.contains(':');
                        p.bare_root = bare.then(|| v.to_string());
                    }
                }
            }
            "rootfstype" | "boot" => p.zfs_type |= val == Some("zfs"),
            "bootfs" => match val.filter(|v| !v.is_empty()) {
                Some(v) => p.bootfs = Some(zfs_spec(v)),
                None => bad(&mut c),
            },
            "zfs" => match val {
                Some("off" | "no" | "0") => c.foreign_root = Some(word.clone()),
                Some(v) if !v.is_empty() => p.zfs = Some(zfs_spec(v)),
                _ => bad(&mut c),
            },
            "rpool" => match val.filter(|v| !v.is_empty() && !v.contains('/')) {
                Some(v) => p.rpool = Some(v.to_string()),
                None => bad(&mut c),
            },
            "rootdelay" | "zfs_wait" => match val.and_then(parse_secs) {
                Some(d) => p.floor = Some(d),
                None => bad(&mut c),
            },
            "rootflags" => c.rootflags = val.filter(|v| !v.is_empty()).map(str::to_string),
            "spl_hostid" => match val.and_then(parse_hostid) {
                Some(h) => c.spl_hostid = Some(h),
                None => bad(&mut c),
            },
            "rollback" => match parse_bool(val) {
                Some(b) => c.be.rollback = b,
                None => bad(&mut c),
            },
            "bootfs.snapshot" => c.be.snapshot = Some(val.unwrap_or("").to_string()),
            "bootfs.rollback" => c.be.rollback_to = Some(val.unwrap_or("").to_string()),
            "resume" => c.resume.device = val.filter(|v| !v.is_empty()).map(str::to_string),
            "noresume" => c.resume.off = true,
            "zroam.resume" => match val {
                Some("discard") => c.resume.discard = true,
                Some("keep") => c.resume.discard = false,
                _ => bad(&mut c),
            },
            "zroam.rewind" => match val {
                Some("checkpoint") => c.rewind_checkpoint = true,
                Some("off") => c.rewind_checkpoint = false,
                _ => bad(&mut c),
            },
            "zroam.menu" => match val {
                None => c.menu = Some(DEFAULT_MENU),
                Some(v) => match parse_bool(Some(v)) {
                    Some(true) => c.menu = Some(DEFAULT_MENU),
                    Some(false) => {
                        c.menu = None;
                        c.menu_offer = false;
                    }
                    None => match parse_secs(v) {
                        Some(d) => c.menu = Some(d),
                        None => bad(&mut c),
                    },
                },
            },
            "init" => c.init = val.filter(|v| !v.is_empty()).map(str::to_string),
            "quiet" => c.quiet = true,
            "zfs_force" | "zfs.force" | "zfsforce" | "zroam.force" => match parse_bool(val) {
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
            "zroam.net" | "ip" => {
                let parsed = if key == "ip" {
                    crate::decide::net::parse_ip(val.unwrap_or(""))
                } else {
                    crate::decide::net::parse_zroam(val.unwrap_or(""))
                };
                match parsed {
                    Ok(n) if key == "ip" => p.ip = Some(n),
                    Ok(n) => p.net = Some(n),
                    Err(m) => c.warnings.push(format!("ignored: {m}")),
                }
            }
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
    p.resolve(&mut c);
    c
}

impl Pending {
    fn resolve(self, c: &mut Cmdline) {
        c.net = self.net.or(self.ip).flatten();
        if let (Some(r), true) = (&self.bare_root, self.zfs_type) {
            c.root = Some(zfs_spec(r));
            c.foreign_root = None;
        } else if self.zfs_type && c.root.is_none() && c.foreign_root.is_none() {
            c.root = Some(RootSpec::Auto);
        }
        if let Some(r) = self.bootfs.or(self.zfs) {
            if c.foreign_root.as_deref().is_some_and(|f| f.starts_with("zfs=")) {
                // zfs=off said no ZFS at all.
            } else {
                c.root = Some(r);
                c.foreign_root = None;
            }
        }
        if let Some(pool) = self.rpool {
            match &c.root {
                Some(RootSpec::Dataset { pool: q, dataset: Some(_), .. }) if *q != pool => {
                    c.warnings.push(format!("rpool={pool} ignored: the root named is in pool {q}"))
                }
                Some(RootSpec::Dataset { dataset: Some(_), .. }) => {}
                _ => {
                    c.root = Some(RootSpec::Dataset { pool, dataset: None, snapshot: None });
                    c.foreign_root = None;
                }
            }
        }
        if let Some(f) = self.floor {
            c.wait = c.wait.max(f);
        }
    }
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
        let ds = |p: &str, d: Option<&str>| Some(RootSpec::Dataset { pool: p.into(), dataset: d.map(Into::into), snapshot: None });
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
    fn other_tools_spellings() {
        let ds = |p: &str, d: &str, s: Option<&str>| {
            Some(RootSpec::Dataset { pool: p.into(), dataset: Some(d.into()), snapshot: s.map(Into::into) })
        };
        let root = |l: &str| parse(l).root;
        // Snapshots, and `+` for a space (dracut).
        assert_eq!(root("root=ZFS=rpool/ROOT/debian@pre-upgrade"), ds("rpool", "rpool/ROOT/debian", Some("pre-upgrade")));
        assert_eq!(root("root=zfs:rpool/ROOT/with+space"), ds("rpool", "rpool/ROOT/with space", None));
        assert_eq!(root("root=zfs:FILESYSTEM=rpool/ROOT/a"), ds("rpool", "rpool/ROOT/a", None));
        assert_eq!(root("root=ZFS=rpool@snap"), ds("rpool", "rpool", Some("snap")));
        // archzfs / ZFSBootMenu's zfs=, initramfs-tools' bootfs= and rpool=.
        assert_eq!(root("zfs=rpool/ROOT/arch"), ds("rpool", "rpool/ROOT/arch", None));
        assert_eq!(root("zfs=bootfs"), Some(RootSpec::Auto));
        assert_eq!(root("root=ZFS=rpool/ROOT/a bootfs=tank/ROOT/b"), ds("tank", "tank/ROOT/b", None));
        assert_eq!(root("rpool=tank"), Some(RootSpec::Dataset { pool: "tank".into(), dataset: None, snapshot: None }));
        assert_eq!(root("rpool=tank bootfs=tank/ROOT/x"), ds("tank", "tank/ROOT/x", None));
        assert_eq!(parse("rpool=tank root=ZFS=rpool/ROOT/a").warnings.len(), 1);
        // root=POOL/DS counts only with rootfstype=zfs or boot=zfs.
        assert_eq!(root("root=rpool/ROOT/debian rootfstype=zfs"), ds("rpool", "rpool/ROOT/debian", None));
        assert_eq!(root("boot=zfs root=rpool/ROOT/debian"), ds("rpool", "rpool/ROOT/debian", None));
        assert_eq!(parse("root=rpool/ROOT/debian").foreign_root.as_deref(), Some("rpool/ROOT/debian"));
        assert_eq!(root("rootfstype=zfs"), Some(RootSpec::Auto));
        assert!(!parse("zfs=off").wants_zfs_root());
        // Force, hostid, waits, mount options.
        for f in ["zfsforce", "zfsforce=1", "zfs_force=yes", "zfs.force=on"] {
            assert!(parse(f).force, "{f}");
        }
        assert_eq!(parse("spl_hostid=0x00bab10c").spl_hostid, Some(0x00bab10c));
        assert_eq!(parse("spl_hostid=deadbeef").spl_hostid, Some(0xdeadbeef));
        assert_eq!(parse("spl_hostid=nothex").warnings.len(), 1);
        assert_eq!(parse("rootdelay=45").wait, Duration::from_secs(45));
        assert_eq!(parse("zfs_wait=5").wait, DEFAULT_WAIT, "a floor, not a cap");
        assert_eq!(parse("zroam.wait=3 zfs_wait=5").wait, Duration::from_secs(5));
        assert_eq!(parse("rootflags=noatime,xattr").rootflags.as_deref(), Some("noatime,xattr"));
    }

    #[test]
    fn snapshots_menu_and_guards() {
        let c = parse("rollback=1 bootfs.snapshot bootfs.rollback=good zroam.menu noresume resume=/dev/vda3 zroam.resume=discard zroam.rewind=checkpoint");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.be, BeOpts { rollback: true, snapshot: Some(String::new()), rollback_to: Some("good".into()) });
        assert_eq!(c.menu, Some(DEFAULT_MENU));
        assert_eq!(c.resume, ResumeOpts { device: Some("/dev/vda3".into()), off: true, discard: true });
        assert!(c.rewind_checkpoint);
        assert_eq!(parse("zroam.menu=3").menu, Some(Duration::from_secs(3)));
        assert_eq!(parse("zroam.menu=0").menu, None);
        assert!(parse("").menu_offer && !parse("zroam.menu=off").menu_offer);
        assert_eq!(parse("rollback=maybe zroam.menu=soon zroam.resume=x zroam.rewind=y").warnings.len(), 4);
        assert_eq!(parse("").be, BeOpts::default());
    }

    #[test]
    fn quoting() {
        assert_eq!(split(r#"a "b c" d=" e""#), vec!["a", "b c", "d= e"]);
        assert_eq!(split("  "), Vec::<String>::new());
    }
}
