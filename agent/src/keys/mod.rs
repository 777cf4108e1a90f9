//! The key stage's state across one boot: passphrases typed (kept in zeroed-on-drop memory,
//! asked once and tried everywhere), LUKS containers opened or given up on, ZFS encryption
//! roots loaded, and a record of each for the report. The decisions are in `unlock` and
//! `zfskey`; this file applies them.

pub mod ask;
pub mod keyfile;
pub mod unlock;
pub mod zfskey;

use crate::decide::cmdline::{Cmdline, LuksOpts};
use crate::keys::zfskey::{KeyNeed, KeySource};
use crate::probe::ProbeReport;
use ask::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use unlock::{Container, OpenError};

const ZFS_BOUND: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A LUKS container under the pool.
    Luks,
    /// A native ZFS encryption root.
    Zfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOutcome {
    #[serde(rename = "opened")]
    Opened,
    #[serde(rename = "loaded")]
    Loaded,
    #[serde(rename = "given up")]
    GivenUp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kind: KeyKind,
    /// The container (device and UUID) or the encryption root.
    pub what: String,
    pub outcome: KeyOutcome,
    /// Where the key that worked came from (never the key).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    pub wrong_keys: u32,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

/// Keys that could not be had: what stays locked, and how the user gets past it.
#[derive(Debug, Clone)]
pub struct Stuck {
    pub message: String,
    pub hint: String,
}

#[derive(Default)]
pub struct Keys {
    passphrases: Vec<Secret>,
    settled: Vec<String>,
    gave_up: Vec<(Container, String)>,
    loaded: Vec<String>,
    dm_loaded: bool,
    pub records: Vec<KeyRecord>,
}

/// Where key files on a device are mounted while read.
fn key_mounts() -> PathBuf {
    PathBuf::from("/run/zroam/keydev")
}

/// The disks holding the probe's ZFS pools and LUKS containers: their ESPs are looked at
/// first for key files.
fn pool_disks(rep: &ProbeReport) -> Vec<String> {
    rep.devices.iter().filter(|d| d.contents.zfs.is_some() || d.contents.luks.is_some()).map(|d| rep.disk_of(d)).collect()
}

/// Names the targets still locked (indices into the records), for the question.
type Subject<'a> = &'a dyn Fn(&[usize]) -> String;

/// How a key opened something typed earlier is reported.
const EARLIER: &str = "the passphrase typed earlier in this boot";

enum Try {
    Ok,
    Wrong,
    Failed(String),
}

impl Keys {
    pub fn locked(&self, rep: &ProbeReport, opts: &LuksOpts) -> Vec<Container> {
        unlock::to_open(rep, opts, &self.settled, |n| Path::new("/dev/mapper").join(n).exists())
    }

    pub fn load_dm_modules(&mut self) {
        if !self.dm_loaded {
            unlock::load_modules();
            self.dm_loaded = true;
        }
    }

    /// The key files the command line names, each with the container it is limited to
    /// (None: any target), read once; `want` picks specs by that limit.
    fn cmdline_keys(
        &self,
        cmd: &Cmdline,
        rep: &ProbeReport,
        want: impl Fn(Option<&str>) -> bool,
        notes: &mut Vec<String>,
    ) -> Vec<(Option<String>, String, Secret)> {
        let prefer = pool_disks(rep);
        cmd.keys
            .iter()
            .filter(|k| want(k.for_uuid.as_deref()))
            .filter_map(|k| {
                let label = match &k.device {
                    Some(d) => format!("key file {} on {d}", k.path),
                    None => format!("key file {}", k.path),
                };
                match keyfile::load_spec(k, rep, &prefer, &key_mounts()) {
                    Ok(s) => Some((k.for_uuid.clone(), label, s)),
                    Err(e) => {
                        notes.push(format!("{label}: {e}"));
                        None
                    }
                }
            })
            .collect()
    }

    /// Tries keys on several targets at once (the records in `recs`): each target's own key
    /// files, then passphrases typed earlier in this boot (when `reuse`), then, when
    /// `subject` names the targets still locked, questions. Each typed passphrase is tried
    /// on every target still locked, and `key_tries` bounds the questions for all of them
    /// together. `attempt(i, key)` tries a key on target i. Returns which targets opened;
    /// their records say with what (`done` is the outcome's word).
    #[allow(clippy::too_many_arguments)]
    fn try_keys(
        &mut self,
        recs: &mut [KeyRecord],
        files: &[Vec<(String, Secret)>],
        reuse: bool,
        subject: Option<Subject>,
        cmd: &Cmdline,
        pid1: bool,
        done: KeyOutcome,
        attempt: &mut dyn FnMut(usize, &[u8]) -> Try,
    ) -> Vec<bool> {
        let n = recs.len();
        let mut open = vec![false; n];
        // Targets whose key was refused for another reason than a wrong key: not asked again.
        let mut broken = vec![false; n];
        let settle = |recs: &mut [KeyRecord], open: &mut [bool], i: usize, source: String| {
            recs[i].outcome = done;
            recs[i].source = Some(source);
            open[i] = true;
        };
        for i in 0..n {
            for (label, key) in &files[i] {
                match attempt(i, key) {
                    Try::Ok => {
                        settle(recs, &mut open, i, label.clone());
                        break;
                    }
                    Try::Wrong => recs[i].notes.push(format!("{label} is not the key")),
                    Try::Failed(m) => recs[i].notes.push(format!("with {label}: {m}")),
                }
            }
            if !open[i] && reuse {
                for p in &self.passphrases {
                    if let Try::Ok = attempt(i, p) {
                        settle(recs, &mut open, i, EARLIER.into());
                        break;
                    }
                }
            }
        }
        let Some(subject) = subject else { return open };
        let how = ask::method(pid1);
        for asked in 1..=cmd.key_tries {
            let waiting: Vec<usize> = (0..n).filter(|&i| !open[i] && !broken[i]).collect();
            if waiting.is_empty() {
                break;
            }
            let what = subject(&waiting);
            let p = match ask::ask(&format!("zroam: passphrase for {what}"), cmd.key_timeout, pid1) {
                Ok(p) => p,
                Err(e) => {
                    for &i in &waiting {
                        recs[i].notes.push(e.to_string());
                    }
                    break;
                }
            };
            let (mut any, mut wrong) = (false, false);
            for &i in &waiting {
                match attempt(i, &p) {
                    Try::Ok => {
                        settle(recs, &mut open, i, if any { EARLIER.into() } else { format!("passphrase ({how})") });
                        any = true;
                    }
                    Try::Wrong => {
                        recs[i].wrong_keys += 1;
                        wrong = true;
                    }
                    Try::Failed(m) => {
                        recs[i].notes.push(m);
                        broken[i] = true;
                    }
                }
            }
            if any {
                self.passphrases.push(p);
            } else if wrong {
                log::warn!("wrong passphrase for {what} ({asked} of {})", cmd.key_tries);
            }
        }
        open
    }

    /// Open each container: key files first, then passphrases typed earlier, then ask (one
    /// passphrase tried on all). Returns warnings; containers that stay locked are
    /// remembered as given up.
    pub fn open_containers(&mut self, locked: &[Container], rep: &ProbeReport, cmd: &Cmdline, pid1: bool) -> Vec<String> {
        let mut notes = Vec::new();
        let keys = self.cmdline_keys(cmd, rep, |_| true, &mut notes);
        let files: Vec<Vec<(String, Secret)>> = locked
            .iter()
            .map(|c| {
                let mine = keys.iter().filter(|(u, ..)| u.is_none() || u.as_deref() == Some(c.uuid.as_str()));
                mine.map(|(_, l, s)| (l.clone(), s.clone())).collect()
            })
            .collect();
        let mut recs: Vec<KeyRecord> = locked
            .iter()
            .map(|c| KeyRecord {
                kind: KeyKind::Luks,
                what: format!("{} (LUKS{} {})", c.device, c.version, c.uuid),
                outcome: KeyOutcome::GivenUp,
                source: None,
                wrong_keys: 0,
                notes: notes.clone(),
            })
            .collect();
        let subject = |waiting: &[usize]| {
            let c = &locked[waiting[0]];
            let more = if waiting.len() > 1 { format!(" and {} more LUKS container(s)", waiting.len() - 1) } else { String::new() };
            format!("{} (LUKS{} {}){more}", c.device, c.version, c.uuid)
        };
        let ro = cmd.readonly;
        let mut attempt = |i: usize, k: &[u8]| match unlock::open(&locked[i], k, ro) {
            Ok(()) => Try::Ok,
            Err(OpenError::WrongKey) => Try::Wrong,
            Err(OpenError::Other(m)) => Try::Failed(m),
        };
        let open = self.try_keys(&mut recs, &files, true, Some(&subject), cmd, pid1, KeyOutcome::Opened, &mut attempt);
        let mut warnings = Vec::new();
        for (i, c) in locked.iter().enumerate() {
            self.settled.push(c.uuid.clone());
            let r = &recs[i];
            if open[i] {
                log::info!("opened {} as /dev/mapper/{} with {}", r.what, unlock::mapper_name(&c.uuid), r.source.as_deref().unwrap_or("?"));
            } else {
                let why = if r.wrong_keys > 0 {
                    format!("{} wrong passphrase(s)", r.wrong_keys)
                } else {
                    r.notes.last().cloned().unwrap_or_else(|| "no key".into())
                };
                warnings.push(format!("{} stays locked: {why}", r.what));
                self.gave_up.push((c.clone(), why));
            }
        }
        self.records.extend(recs);
        warnings
    }

    /// Has any container been given up on (its tries ran out) this boot?
    pub fn gave_up_any(&self) -> bool {
        !self.gave_up.is_empty()
    }

    /// With containers given up on and no pool to boot without them: fail now rather than
    /// wait out zroam.wait.
    pub fn stuck(&self, why: &str) -> Option<Stuck> {
        if self.gave_up.is_empty() {
            return None;
        }
        let list: Vec<String> = self.gave_up.iter().map(|(c, w)| format!("{} ({}): {w}", c.device, c.uuid)).collect();
        Some(Stuck {
            message: format!("{} LUKS container(s) stay locked ({}); without them: {why}", list.len(), list.join("; ")),
            hint: "exit the shell to type the passphrase again, or name a key file with zroam.key=PATH[:DEVICE] (rd.luks.key= is read too)"
                .into(),
        })
    }

    /// Load the key of each encryption root in `needs`.
    pub fn load_zfs(&mut self, needs: &[KeyNeed], rep: &ProbeReport, cmd: &Cmdline, pid1: bool) -> Result<(), Stuck> {
        for n in needs {
            if self.loaded.contains(&n.root) {
                continue;
            }
            let mut notes = Vec::new();
            let mut files: Vec<(String, Secret)> =
                self.cmdline_keys(cmd, rep, |u| u.is_none(), &mut notes).into_iter().map(|(_, l, s)| (l, s)).collect();
            let mut rec =
                KeyRecord { kind: KeyKind::Zfs, what: n.root.clone(), outcome: KeyOutcome::GivenUp, source: None, wrong_keys: 0, notes };
            match &n.source {
                KeySource::Prompt => {}
                KeySource::File(p) => match self.find_file(p, rep) {
                    Ok(f) => files.push(f),
                    Err(e) => rec.notes.push(e),
                },
                KeySource::Unsupported(l) => rec.notes.push(format!("keylocation={l} cannot be read in the ramdisk")),
            }
            let root = n.root.clone();
            let mut attempt = |_: usize, k: &[u8]| {
                let args: Vec<String> = ["load-key", "-L", "prompt", &root].map(String::from).to_vec();
                let o = crate::sys::run::run_with("zfs", &args, Some(k), &[], ZFS_BOUND);
                if o.ok() {
                    Try::Ok
                } else if crate::keys::zfskey::wrong_key(&o.said()) {
                    Try::Wrong
                } else {
                    Try::Failed(format!("zfs load-key {root}: {}", o.said()))
                }
            };
            let subject = |_: &[usize]| n.root.clone();
            let ask = (n.source == KeySource::Prompt).then_some(&subject as Subject);
            let mut recs = [rec];
            let opened = self.try_keys(&mut recs, &[files], n.passphrase, ask, cmd, pid1, KeyOutcome::Loaded, &mut attempt);
            let [rec] = recs;
            if opened[0] {
                log::info!("loaded the key of {} from {}", n.root, rec.source.as_deref().unwrap_or("?"));
                self.loaded.push(n.root.clone());
                self.records.push(rec);
                continue;
            }
            let why = if rec.wrong_keys > 0 { format!("{} wrong passphrase(s)", rec.wrong_keys) } else { rec.notes.join("; ") };
            self.records.push(rec);
            return Err(Stuck {
                message: format!("cannot load the key of {}: {why}; nothing was mounted", n.root),
                hint: "exit the shell to type the passphrase again, or name a key file with zroam.key=PATH[:DEVICE]".into(),
            });
        }
        Ok(())
    }

    /// A `keylocation=file://` key: the ramdisk's copy, else the same path under an ESP.
    fn find_file(&self, path: &str, rep: &ProbeReport) -> Result<(String, Secret), String> {
        if Path::new(path).exists() {
            return keyfile::read(Path::new(path)).map(|s| (format!("key file {path}"), s));
        }
        let Some(rel) = keyfile::esp_relative(path) else {
            return Err(format!("key file {path} is not in the ramdisk (and not under an ESP mount point)"));
        };
        let esps = keyfile::devices_for("esp", rep, &pool_disks(rep));
        if esps.is_empty() {
            return Err(format!("key file {path}: no ESP found"));
        }
        keyfile::read_first(&esps, rel, &key_mounts()).map(|(node, s)| (format!("key file {rel} on the ESP {node}"), s))
    }
}
