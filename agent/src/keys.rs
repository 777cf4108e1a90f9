//! The key stage's state across one boot: passphrases typed (kept in zeroed-on-drop memory,
//! asked once and tried everywhere), LUKS containers opened or given up on, ZFS encryption
//! roots loaded, and a record of each for the report. The decisions are in `unlock` and
//! `zfskey`; this file applies them.

use crate::ask::{self, Secret};
use crate::cmdline::{Cmdline, LuksOpts};
use crate::keyfile;
use crate::probe::ProbeReport;
use crate::report::Failure;
use crate::unlock::{self, Container, OpenError};
use crate::zfskey::{KeyNeed, KeySource};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ZFS_BOUND: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    /// "luks" or "zfs".
    pub kind: &'static str,
    /// The container (device and UUID) or the encryption root.
    pub what: String,
    /// "opened", "loaded", "already open", "given up".
    pub outcome: &'static str,
    /// Where the key that worked came from (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub wrong_keys: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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

    /// Each key the command line names for this target (`for_uuid` matching, or any).
    fn cmdline_keys(&self, cmd: &Cmdline, uuid: Option<&str>, rep: &ProbeReport, notes: &mut Vec<String>) -> Vec<(String, Secret)> {
        let prefer = pool_disks(rep);
        cmd.keys
            .iter()
            .filter(|k| k.for_uuid.is_none() || k.for_uuid.as_deref() == uuid)
            .filter_map(|k| {
                let label = match &k.device {
                    Some(d) => format!("key file {} on {d}", k.path),
                    None => format!("key file {}", k.path),
                };
                match keyfile::load_spec(k, rep, &prefer, &key_mounts()) {
                    Ok(s) => Some((label, s)),
                    Err(e) => {
                        notes.push(format!("{label}: {e}"));
                        None
                    }
                }
            })
            .collect()
    }

    /// Tries `attempt` with key files, then passphrases typed earlier, then asks up to
    /// `tries` times. Returns the source that worked, or None; `wrong` counts refusals.
    #[allow(clippy::too_many_arguments)]
    fn find_key(
        &mut self,
        files: Vec<(String, Secret)>,
        reuse_passphrases: bool,
        prompt: Option<String>,
        cmd: &Cmdline,
        pid1: bool,
        rec: &mut KeyRecord,
        attempt: &mut dyn FnMut(&[u8]) -> Try,
    ) -> Option<String> {
        for (label, key) in files {
            match attempt(&key) {
                Try::Ok => return Some(label),
                Try::Wrong => rec.notes.push(format!("{label} is not the key")),
                Try::Failed(m) => rec.notes.push(format!("with {label}: {m}")),
            }
        }
        if reuse_passphrases {
            for i in 0..self.passphrases.len() {
                let p = self.passphrases[i].clone();
                if let Try::Ok = attempt(&p) {
                    return Some("the passphrase typed earlier in this boot".into());
                }
            }
        }
        let prompt = prompt?;
        let how = ask::method(pid1);
        for n in 1..=cmd.key_tries {
            let p = match ask::ask(&prompt, cmd.key_timeout, pid1) {
                Ok(p) => p,
                Err(e) => {
                    rec.notes.push(e.to_string());
                    return None;
                }
            };
            match attempt(&p) {
                Try::Ok => {
                    self.passphrases.push(p);
                    return Some(format!("passphrase ({how})"));
                }
                Try::Wrong => {
                    rec.wrong_keys += 1;
                    log::warn!("wrong passphrase for {} ({n} of {})", rec.what, cmd.key_tries);
                }
                Try::Failed(m) => {
                    rec.notes.push(m);
                    return None;
                }
            }
        }
        None
    }

    /// Open each container: key files first, then passphrases typed earlier, then ask. One
    /// typed passphrase is tried on every locked container, and `key_tries` bounds the
    /// questions for all of them together. Returns warnings; containers that stay locked
    /// are remembered as given up.
    pub fn open_containers(&mut self, locked: &[Container], rep: &ProbeReport, cmd: &Cmdline, pid1: bool) -> Vec<String> {
        let ro = cmd.readonly;
        let mut recs: Vec<KeyRecord> = locked
            .iter()
            .map(|c| KeyRecord {
                kind: "luks",
                what: format!("{} (LUKS{} {})", c.device, c.version, c.uuid),
                outcome: "given up",
                source: None,
                wrong_keys: 0,
                notes: Vec::new(),
            })
            .collect();
        let mut open: Vec<bool> = vec![false; locked.len()];
        let opened = |i: usize, src: String, recs: &mut Vec<KeyRecord>, open: &mut Vec<bool>| {
            log::info!("opened {} as /dev/mapper/{} with {src}", recs[i].what, unlock::mapper_name(&locked[i].uuid));
            recs[i].outcome = "opened";
            recs[i].source = Some(src);
            open[i] = true;
        };
        // Tries one key on container i: Ok(true) opened, Ok(false) wrong key.
        let attempt = |i: usize, k: &[u8], recs: &mut Vec<KeyRecord>| match unlock::open(&locked[i], k, ro) {
            Ok(()) => true,
            Err(OpenError::WrongKey) => false,
            Err(OpenError::Other(m)) => {
                recs[i].notes.push(m);
                false
            }
        };
        for (i, c) in locked.iter().enumerate() {
            let mut notes = Vec::new();
            for (label, key) in self.cmdline_keys(cmd, Some(&c.uuid), rep, &mut notes) {
                if attempt(i, &key, &mut recs) {
                    opened(i, label, &mut recs, &mut open);
                    break;
                }
                recs[i].notes.push(format!("{label} is not the key"));
            }
            recs[i].notes.extend(notes);
            if open[i] {
                continue;
            }
            for p in self.passphrases.clone() {
                if attempt(i, &p, &mut recs) {
                    opened(i, "the passphrase typed earlier in this boot".into(), &mut recs, &mut open);
                    break;
                }
            }
        }
        let how = ask::method(pid1);
        let mut asks = 0;
        while asks < cmd.key_tries {
            let waiting: Vec<usize> = (0..locked.len()).filter(|i| !open[*i]).collect();
            let Some(&first) = waiting.first() else { break };
            let c = &locked[first];
            let more = if waiting.len() > 1 { format!(" and {} more LUKS container(s)", waiting.len() - 1) } else { String::new() };
            let prompt = format!("zroam: passphrase for {} (LUKS{} {}){more}", c.device, c.version, c.uuid);
            asks += 1;
            let p = match ask::ask(&prompt, cmd.key_timeout, pid1) {
                Ok(p) => p,
                Err(e) => {
                    for i in &waiting {
                        recs[*i].notes.push(e.to_string());
                    }
                    break;
                }
            };
            let mut any = false;
            for &i in &waiting {
                if attempt(i, &p, &mut recs) {
                    let src = if any { "the passphrase typed earlier in this boot".to_string() } else { format!("passphrase ({how})") };
                    opened(i, src, &mut recs, &mut open);
                    any = true;
                } else {
                    recs[i].wrong_keys += 1;
                }
            }
            if any {
                self.passphrases.push(p);
            } else {
                log::warn!("wrong passphrase for {}{more} ({asks} of {})", locked[first].device, cmd.key_tries);
            }
        }
        let mut warnings = Vec::new();
        for (i, c) in locked.iter().enumerate() {
            self.settled.push(c.uuid.clone());
            if !open[i] {
                let r = &recs[i];
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

    /// With containers given up on and no pool to boot without them: fail now rather than
    /// wait out zroam.wait.
    pub fn gave_up_failure(&self, why: &str) -> Option<Failure> {
        if self.gave_up.is_empty() {
            return None;
        }
        let list: Vec<String> = self.gave_up.iter().map(|(c, w)| format!("{} ({}): {w}", c.device, c.uuid)).collect();
        Some(Failure {
            stage: "unlock",
            message: format!("{} LUKS container(s) stay locked ({}); without them: {why}", list.len(), list.join("; ")),
            hint: "exit the shell to type the passphrase again, or name a key file with zroam.key=PATH[:DEVICE] (rd.luks.key= is read too)".into(),
            candidates: Vec::new(),
        })
    }

    /// Load the key of each encryption root in `needs`.
    pub fn load_zfs(&mut self, needs: &[KeyNeed], rep: &ProbeReport, cmd: &Cmdline, pid1: bool) -> Result<(), Failure> {
        for n in needs {
            if self.loaded.contains(&n.root) {
                continue;
            }
            let mut rec = KeyRecord { kind: "zfs", what: n.root.clone(), outcome: "given up", source: None, wrong_keys: 0, notes: Vec::new() };
            let mut notes = Vec::new();
            let mut files = self.cmdline_keys(cmd, None, rep, &mut notes);
            rec.notes.extend(notes);
            let mut prompt = None;
            match &n.source {
                KeySource::Prompt => prompt = Some(format!("zroam: passphrase for {}", n.root)),
                KeySource::File(p) => match self.find_file(p, rep) {
                    Ok(f) => files.push(f),
                    Err(e) => rec.notes.push(e),
                },
                KeySource::Unsupported(l) => rec.notes.push(format!("keylocation={l} cannot be read in the ramdisk")),
            }
            let root = n.root.clone();
            let mut attempt = |k: &[u8]| {
                let args: Vec<String> = ["load-key", "-L", "prompt", &root].map(String::from).to_vec();
                let o = crate::run::run_with("zfs", &args, Some(k), &[], ZFS_BOUND);
                if o.ok() {
                    Try::Ok
                } else if crate::zfskey::wrong_key(&o.said()) {
                    Try::Wrong
                } else {
                    Try::Failed(format!("zfs load-key {root}: {}", o.said()))
                }
            };
            let found = self.find_key(files, n.passphrase, prompt, cmd, pid1, &mut rec, &mut attempt);
            match found {
                Some(src) => {
                    log::info!("loaded the key of {} from {src}", n.root);
                    rec.outcome = "loaded";
                    rec.source = Some(src);
                    self.loaded.push(n.root.clone());
                    self.records.push(rec);
                }
                None => {
                    let why = if rec.wrong_keys > 0 {
                        format!("{} wrong passphrase(s)", rec.wrong_keys)
                    } else {
                        rec.notes.join("; ")
                    };
                    self.records.push(rec);
                    return Err(Failure {
                        stage: "keys",
                        message: format!("cannot load the key of {}: {why}; nothing was mounted", n.root),
                        hint: "exit the shell to type the passphrase again, or name a key file with zroam.key=PATH[:DEVICE]".into(),
                        candidates: Vec::new(),
                    });
                }
            }
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
        let mut last = format!("key file {path}: no ESP found");
        for node in keyfile::devices_for("esp", rep, &pool_disks(rep)) {
            match keyfile::read_on(&node, rel, &key_mounts()) {
                Ok(s) => return Ok((format!("key file {rel} on the ESP {node}"), s)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
