//! The key stage's state across one boot: passphrases typed (kept in zeroed-on-drop memory,
//! asked once and tried everywhere), LUKS containers opened or given up on, ZFS encryption
//! roots loaded, and a record of each for the report. The decisions are in `unlock` and
//! `zfskey`; this file applies them.

pub mod ask;
pub mod askfile;
pub mod hooks;
pub mod keyfile;
pub mod publish;
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

/// Names the targets still locked (indices into the records), for the question: its text
/// and its id for agents.
type Subject<'a> = &'a dyn Fn(&[usize]) -> (String, String);

/// How a key opened something typed earlier is reported.
const EARLIER: &str = "the passphrase typed earlier in this boot";
/// How a target unlocked by hand (`zfs load-key`, `cryptsetup open` over SSH) is reported.
const OUTSIDE: &str = "unlocked outside zroam";

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

    /// Tries keys on several targets at once (the records in `recs`): each target's own keys
    /// (files, hooks), then passphrases typed earlier in this boot (when `reuse`), then,
    /// when `subject` names the targets still locked, questions. Each typed passphrase is
    /// tried on every target still locked, and `key_tries` bounds the wrong answers for all
    /// of them together. `attempt(i, key)` tries a key on target i; `had(i)` says whether
    /// target i was opened by other means meanwhile (by hand, over SSH), which ends its
    /// question. Returns which targets opened; their records say with what (`done` is the
    /// outcome's word).
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
        had: &dyn Fn(usize) -> bool,
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
        let mut wrong_answers = 0;
        while wrong_answers < cmd.key_tries {
            let waiting: Vec<usize> = (0..n).filter(|&i| !open[i] && !broken[i]).collect();
            if waiting.is_empty() {
                break;
            }
            let (what, id) = subject(&waiting);
            let mut elsewhere = || waiting.iter().any(|&i| had(i));
            let answer = ask::ask(&format!("zroam: passphrase for {what}"), &id, cmd.key_timeout, pid1, &mut elsewhere);
            let (p, via, token) = match answer {
                Ok(ask::Answer::Typed { secret, via, token }) => (secret, via, token),
                Ok(ask::Answer::Elsewhere) => {
                    for &i in &waiting {
                        if had(i) {
                            log::info!("{} was unlocked outside zroam", recs[i].what);
                            settle(recs, &mut open, i, OUTSIDE.into());
                        }
                    }
                    continue;
                }
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
                        settle(recs, &mut open, i, if any { EARLIER.into() } else { format!("passphrase ({via})") });
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
            if let Some(t) = token {
                publish::tell(&t, any);
            }
            if any {
                self.passphrases.push(p);
            } else if wrong {
                wrong_answers += 1;
                log::warn!("wrong passphrase for {what} ({wrong_answers} of {})", cmd.key_tries);
            }
        }
        open
    }

    /// Open each container: its LUKS2 token (a TPM2 enrolled with systemd-cryptenroll),
    /// key files, key hooks, passphrases typed earlier, then ask (one passphrase tried on
    /// all). Returns warnings; containers that stay locked are remembered as given up.
    pub fn open_containers(&mut self, locked: &[Container], rep: &ProbeReport, cmd: &Cmdline, pid1: bool) -> Vec<String> {
        let mut notes = Vec::new();
        let keys = self.cmdline_keys(cmd, rep, |_| true, &mut notes);
        let ro = cmd.readonly;
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
        // Tokens first: a container they open needs no key file, hook or question.
        let mut open = vec![false; locked.len()];
        let plugins = if locked.iter().any(|c| !c.tokens.is_empty()) { unlock::token_plugins() } else { Vec::new() };
        for (i, c) in locked.iter().enumerate().filter(|(_, c)| c.version == 2 && !c.tokens.is_empty()) {
            let (usable, other) = unlock::usable_tokens(&c.tokens, &plugins);
            if !other.is_empty() {
                log::info!("{}: no cryptsetup plugin here for token(s) {}", c.device, other.join(", "));
                recs[i].notes.push(format!("token(s) {}: no cryptsetup plugin in this image", other.join(", ")));
            }
            if usable.is_empty() {
                continue;
            }
            let kinds = usable.join(", ");
            match unlock::open_token(c, ro) {
                Ok(()) => {
                    recs[i].outcome = KeyOutcome::Opened;
                    recs[i].source = Some(format!("LUKS2 token ({kinds})"));
                    open[i] = true;
                }
                Err(m) => {
                    log::info!("{}: its token(s) ({kinds}) did not open it: {m}", c.device);
                    recs[i].notes.push(format!("token(s) {kinds}: {m}"));
                }
            }
        }
        let rest: Vec<usize> = (0..locked.len()).filter(|&i| !open[i]).collect();
        let files: Vec<Vec<(String, Secret)>> = rest
            .iter()
            .map(|&i| {
                let c = &locked[i];
                let mine = keys.iter().filter(|(u, ..)| u.is_none() || u.as_deref() == Some(c.uuid.as_str()));
                let mut v: Vec<(String, Secret)> = mine.map(|(_, l, s)| (l.clone(), s.clone())).collect();
                let target = hooks::Target::Luks { uuid: &c.uuid, device: &c.device };
                v.extend(hooks::keys_for(Path::new(hooks::DIR), &target, &mut recs[i].notes));
                v
            })
            .collect();
        let subject = |waiting: &[usize]| {
            let c = &locked[rest[waiting[0]]];
            let more = if waiting.len() > 1 { format!(" and {} more LUKS container(s)", waiting.len() - 1) } else { String::new() };
            (format!("{} (LUKS{} {}){more}", c.device, c.version, c.uuid), format!("zroam:luks:{}", c.uuid))
        };
        let mut attempt = |j: usize, k: &[u8]| match unlock::open(&locked[rest[j]], k, ro) {
            Ok(()) => Try::Ok,
            Err(OpenError::WrongKey) => Try::Wrong,
            Err(OpenError::Other(m)) => Try::Failed(m),
        };
        let had = |j: usize| unlock::is_open(&locked[rest[j]]);
        let mut sub: Vec<KeyRecord> = rest.iter().map(|&i| recs[i].clone()).collect();
        let got = self.try_keys(&mut sub, &files, true, Some(&subject), cmd, pid1, KeyOutcome::Opened, &mut attempt, &had);
        for (j, &i) in rest.iter().enumerate() {
            recs[i] = sub[j].clone();
            open[i] = got[j];
        }
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
            let mut ask_it = n.source == KeySource::Prompt;
            match &n.source {
                KeySource::Prompt => {}
                KeySource::File(p) => match self.find_file(p, rep) {
                    Ok(f) => files.push(f),
                    // A passphrase can be typed instead; raw and hex keys cannot.
                    Err(e) if n.passphrase => {
                        log::warn!("{e}; asking for the passphrase instead");
                        rec.notes.push(format!("{e}; asked instead"));
                        ask_it = true;
                    }
                    Err(e) => rec.notes.push(e),
                },
                KeySource::Unsupported(l) => rec.notes.push(format!("keylocation={l} cannot be read in the ramdisk")),
            }
            files.extend(hooks::keys_for(Path::new(hooks::DIR), &hooks::Target::Zfs { root: &n.root }, &mut rec.notes));
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
            let had = |_: usize| zfskey::key_available(&n.root);
            let subject = |_: &[usize]| (n.root.clone(), format!("zroam:zfs:{}", n.root));
            let ask = ask_it.then_some(&subject as Subject);
            let mut recs = [rec];
            let opened = self.try_keys(&mut recs, &[files], n.passphrase, ask, cmd, pid1, KeyOutcome::Loaded, &mut attempt, &had);
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
                hint: "exit the shell to type the passphrase again, answer it with `zroam unlock` (over SSH), or name a key file with zroam.key=PATH[:DEVICE]".into(),
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
