//! The effectful shell of the boot: the stage sequence from probe to pivot. Every decision
//! is made by the pure modules (`decide::plan`, `decide::be`, `keys::zfskey`); these files
//! only apply them and record what happened (`record::Record`).
//!
//! - `mod.rs`: the sequence and the stage timer.
//! - `wait`: probe on every new block device until the planned pool is ready.
//! - `zfs`: zfs.ko, `zpool import`, the BE's datasets, keys, the one-shot next boot.
//! - `mount`: the BE and its children at the sysroot.
//! - `setup`, `pivot`, `emergency`: PID 1's pseudo-filesystems, switch_root, the shell.

pub mod emergency;
pub mod failure;
mod menu;
mod mount;
pub mod pivot;
pub mod record;
pub mod remote;
mod resume;
pub mod setup;
pub mod stage;
mod wait;
mod zfs;

use crate::decide::choose::{Choice, HostidAction};
use crate::decide::cmdline::{Cmdline, EspMode, PoolSel};
use crate::decide::plan::{Plan, System};
use crate::esp;
use crate::keys::Keys;
use crate::sys::efi::{self, BootedEsp};
use crate::sys::uevent::Listener;
use crate::sys::{hostid, run, usage};
use failure::{fail, Failure};
use record::{Hostid, Outcome, Record, Timing};
use stage::Stage;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

pub struct Options {
    pub cmdline: Cmdline,
    pub sysroot: PathBuf,
    pub switch: bool,
    /// Load hardware modules ourselves (PID 1 of our own ramdisk; a generator has udev).
    pub load_hw_modules: bool,
    pub sys: PathBuf,
    /// The root pin in the ramdisk.
    pub pin: PathBuf,
}

impl Options {
    pub fn new(cmdline: Cmdline, sysroot: PathBuf, switch: bool, pid1: bool) -> Self {
        Options {
            cmdline,
            sysroot,
            switch,
            load_hw_modules: pid1,
            sys: PathBuf::from("/sys"),
            pin: PathBuf::from(crate::decide::pin::PATH),
        }
    }
}

/// Where the record goes each time it is worth keeping (a failure, the end): the report
/// writer, given by the caller so that the boot does not depend on the report.
pub type Sink = Box<dyn FnMut(&Record)>;

pub struct Boot {
    t0: Instant,
    pub record: Record,
    opts: Options,
    sink: Sink,
    children: Vec<Child>,
    /// When device discovery last went quiet: the storage-module loads we started finished,
    /// or udev's event queue drained (in a generator's image). Devices follow soon after.
    discovery_idle_since: Option<Instant>,
    /// What kept discovery busy at the last look (`decide::settle::Input::busy`); None when
    /// it was idle.
    busy_why: Option<String>,
    /// This ramdisk's storage module aliases (`sys::drivers`), read at the first look; None
    /// inside when there are none, and then udev's queue says whether drivers still load.
    aliases: Option<Option<crate::sys::drivers::Aliases>>,
    /// The modules loaded at the last look (`sys::drivers::proc_modules`).
    modules_loaded: std::collections::BTreeSet<String>,
    /// When each storage scan the kernel showed in flight was first seen (`sys::scan`), and
    /// the last look that saw one count: the quiet window runs from there.
    scan_first_seen: std::collections::HashMap<String, Instant>,
    scan_last_seen: Option<Instant>,
    /// Where the quiet window starts before any event (`decide::settle::quiet_base`), once
    /// per wait.
    quiet_base: Option<Instant>,
    /// When a wait for discovery first found zfs.ko live (the settle record's `added_ms`).
    zfs_live_at: Option<Instant>,
    /// zfs.ko's load as boot itself saw it (completed by preload's record for the report;
    /// its `live_s` is `zfs_live_at`'s, set once the module is waited for).
    zfs_load: record::ZfsLoad,
    /// The scans seen in flight during the current wait, for the report.
    scans_seen: Vec<String>,
    zfs_modprobe: Option<run::Pending>,
    /// Passphrases typed, containers opened or given up on, keys loaded, this boot.
    keys: Keys,
    /// Probe results reused across passes, and how many of the record's events it has seen.
    cache: crate::probe::Cache,
    seen_events: usize,
    /// The probe the decision was made on (the record keeps its JSON form).
    probe: Option<crate::probe::ProbeReport>,
}

impl Boot {
    pub fn new(opts: Options, sink: Sink) -> Self {
        let record = Record { cmdline: serde_json::to_value(&opts.cmdline).ok(), ..Record::default() };
        Boot {
            t0: Instant::now(),
            record,
            opts,
            sink,
            children: Vec::new(),
            discovery_idle_since: None,
            busy_why: None,
            aliases: None,
            modules_loaded: Default::default(),
            scan_first_seen: std::collections::HashMap::new(),
            scan_last_seen: None,
            quiet_base: None,
            zfs_live_at: None,
            zfs_load: Default::default(),
            scans_seen: Vec::new(),
            zfs_modprobe: None,
            keys: Keys::default(),
            cache: crate::probe::Cache::default(),
            seen_events: 0,
            probe: None,
        }
    }

    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn stage<T>(&mut self, name: Stage, f: impl FnOnce(&mut Self) -> T) -> T {
        let (start, cpu) = (self.ms(), usage::own_cpu_ms());
        let r = f(self);
        let ms = self.ms() - start;
        self.record.stages.push(Timing { name, start_ms: start, ms, cpu_ms: usage::own_cpu_ms() - cpu });
        r
    }

    fn warn(&mut self, w: String) {
        log::warn!("{w}");
        self.record.warnings.push(w);
    }

    fn keep_probe(&mut self, rep: crate::probe::ProbeReport) {
        self.record.probe = serde_json::to_value(&rep).ok();
        self.probe = Some(rep);
    }

    fn keep_record(&mut self) {
        (self.sink)(&self.record);
    }

    /// The stages up to mount (and pivot with `switch`). On failure the record is kept and
    /// the failure returned for the caller to show.
    pub fn run(&mut self) -> Result<(), Failure> {
        let r = self.run_inner();
        if let Err(f) = &r {
            self.record.outcome = Outcome::Failed;
            self.record.failure = Some(f.clone());
            self.keep_record();
        }
        r
    }

    fn run_inner(&mut self) -> Result<(), Failure> {
        for w in self.opts.cmdline.warnings.clone() {
            self.warn(w);
        }
        if let Some(r) = self.opts.cmdline.foreign_root.clone() {
            self.warn(format!("root={r} is not a ZFS root; looking for a ZFS pool anyway"));
        }
        // Listen before the first probe so no device slips between the two.
        let listener = match Listener::open() {
            Ok(l) => Some(l),
            Err(e) => {
                self.warn(format!("no uevent socket ({e}); looking again every 250 ms instead"));
                None
            }
        };
        self.stage(Stage::Modules, |b| b.load_modules());
        let booted = efi::booted_esp(&self.opts.sys.join("firmware/efi/efivars"));
        if let Some(b) = &booted {
            log::info!("firmware booted the ESP with PARTUUID {} ({})", b.partuuid, b.source);
        }
        self.record.booted_esp = booted.clone();
        if let Some(h) = self.opts.cmdline.spl_hostid {
            // dracut's spl_hostid=: the command line's hostid before anything is decided.
            match hostid::adopt(h) {
                Ok(()) => log::info!("hostid {h:08x} from spl_hostid="),
                Err(e) => self.warn(format!("spl_hostid={h:08x} not applied: {e}")),
            }
        }
        let system = System {
            hostid: hostid::current(Path::new("/")),
            booted,
            pin: crate::decide::pin::load(&self.opts.pin),
            own_ramdisk: self.opts.load_hw_modules,
        };
        if let Some(Ok(p)) = &system.pin {
            log::info!("root pin: pool {} (guid {}), {} member(s)", p.pool_name, p.pool_guid, p.vdevs.len());
        }

        // Decide, wait for the zfs module, and decide again just before the import: a
        // device that appeared meanwhile may change the answer (a second candidate, the
        // rest of a degraded pool).
        let (plan, rep) = loop {
            let (plan, _) = match self.stage(Stage::Wait, |b| b.wait_for_pool(listener.as_ref(), &system)) {
                Ok(x) => x,
                Err(f) => match self.pool_menu(&f) {
                    Some(guid) => {
                        self.opts.cmdline.pool = Some(PoolSel::Guid(guid));
                        continue;
                    }
                    None => return Err(f),
                },
            };
            self.stage(Stage::ZfsModule, |b| b.wait_zfs_module())?;
            let (again, rep2) = self.pass(&system);
            let same = |p: &Plan| p.import.as_ref().map(|i| (i.guid, i.devices.clone()));
            match &again.pool {
                Choice::Chosen { .. } if same(&again) == same(&plan) => break (again, rep2),
                Choice::Chosen { guid, .. } if plan.import.as_ref().is_some_and(|i| i.guid == *guid) && again.import.is_some() => {
                    log::info!("re-checked before the import: the same pool, with other devices now");
                    break (again, rep2);
                }
                _ => log::info!("re-checked before the import: the decision changed; deciding again"),
            }
        };
        let Choice::Chosen { guid, name, reason, .. } = &plan.pool else { unreachable!("wait returns a chosen pool") };
        let (guid, name) = (*guid, name.clone());
        log::info!("pool {name} (guid {guid}): {reason}");
        let pool = plan.chosen.clone().expect("a chosen pool is assembled");
        self.record.pool = serde_json::to_value(&plan.pool).ok();
        self.keep_probe(rep);

        let action = plan.hostid_action.clone().expect("a chosen pool has a hostid action");
        self.record.hostid = Some(Hostid {
            system: system.hostid.map(|h| format!("{h:08x}")),
            label: pool.hostid.map(|h| format!("{h:08x}")),
            action: action.clone(),
        });
        if let HostidAction::Refuse { why, hint } = &action {
            return Err(fail(Stage::Hostid, why.clone(), hint.clone()));
        }
        let mut import = plan.import.expect("a pool whose hostid does not refuse has an import");
        self.resume_guard(&plan.resume, &mut import);

        if let HostidAction::Adopt { hostid: h } = action {
            let had = system.hostid.map_or("none".to_string(), |m| format!("{m:08x}"));
            log::info!("adopting hostid {h:08x} from {name}'s label (this system had {had})");
            hostid::adopt(h).map_err(|e| fail(Stage::Hostid, format!("cannot adopt hostid {h:08x}: {e}"), "zroam.force=1"))?;
        }
        self.stage(Stage::Import, |b| b.import(&import))?;
        let (be, ds, bootfs) = self.stage(Stage::ChooseBe, |b| b.choose_be(&name))?;
        if !crate::keys::zfskey::needed(&be, &ds).is_empty() {
            self.stage(Stage::Keys, |b| b.load_zfs_keys(&be, &ds))?;
        }
        let be = self.consume_nextboot(&name, be, ds.clone(), &bootfs)?;
        self.record.be = serde_json::to_value(&be).ok();
        if !be.steps.is_empty() {
            self.stage(Stage::Snapshots, |b| b.apply_steps(&be))?;
        }
        self.stage(Stage::Mount, |b| b.mount_all(&be, &ds))?;
        if self.opts.cmdline.esp != EspMode::Off {
            let booted = system.booted.clone();
            let pinned = if self.opts.cmdline.pin { crate::decide::pin::esps_for(&system.pin, guid) } else { Vec::new() };
            self.stage(Stage::Esp, |b| b.esp_stage(guid, booted.as_ref(), pinned));
        }

        if !self.opts.switch {
            self.record.outcome = Outcome::Mounted;
            self.keep_record();
            return Ok(());
        }
        if self.opts.cmdline.shell {
            self.keep_record();
            let banner = format!("zroam.shell=1: the root is mounted at {}; exit the shell to boot it", self.opts.sysroot.display());
            emergency::shell(&banner, emergency::Why::Asked);
        }
        let init = self.opts.cmdline.init.clone().unwrap_or_else(|| {
            ["/sbin/init", "/lib/systemd/systemd", "/etc/init", "/bin/init"]
                .into_iter()
                .find(|i| pivot::resolve_in(&self.opts.sysroot, i).is_some())
                .unwrap_or("/sbin/init")
                .to_string()
        });
        self.record.init = Some(init.clone());
        self.record.outcome = Outcome::Booted;
        let start = self.ms();
        self.record.stages.push(Timing { name: Stage::Pivot, start_ms: start, ms: 0, cpu_ms: 0.0 });
        self.keep_record();
        remote::stop();
        log::info!("switching root to {} and running {init} ({} ms after start)", self.opts.sysroot.display(), start);
        let e = pivot::switch_root(&self.opts.sysroot, &init).unwrap_err();
        Err(fail(Stage::Pivot, e.to_string(), "init=PATH names another init"))
    }

    /// Several pools and nothing tells them apart: offer them on the console (no default,
    /// no countdown) instead of refusing at once. Once per boot; a refusal for anything
    /// else (contradicting labels, a forged GUID) is never offered.
    fn pool_menu(&mut self, f: &Failure) -> Option<u64> {
        let cmd = &self.opts.cmdline;
        if f.stage != Stage::ChoosePool || f.candidates.len() < 2 || !(cmd.menu_offer || cmd.menu.is_some()) || !self.record.menu.is_empty()
        {
            return None;
        }
        let m = crate::decide::menu::for_pools(&f.candidates);
        match self.ask(&m, "pools", None, zfs::OFFER_BOUND, "zroam: exit the shell to return to the menu") {
            Some(crate::decide::menu::Pick::Item { index }) => Some(f.candidates[index].guid),
            _ => None,
        }
    }

    /// The ESP stage, never fatal: its problems become warnings in the record.
    fn esp_stage(&mut self, guid: u64, booted: Option<&BootedEsp>, pinned: Vec<uuid::Uuid>) {
        let cmd = &self.opts.cmdline;
        let opts = esp::sync::Options {
            mode: if cmd.esp == EspMode::Check { esp::sync::Mode::Check } else { esp::sync::Mode::Sync },
            dry_run: false,
            budget: cmd.esp_budget,
            mount_base: PathBuf::from("/run/zroam/esp"),
            pinned,
        };
        let Some(rep) = self.probe.as_ref() else { return };
        let r = esp::sync::run(rep, guid, booted.map(|b| b.partuuid), &opts);
        match (r.primary, &r.check_only) {
            (Some(p), _) => log::info!("ESPs: primary {p}; {} in the set", r.esps.len()),
            (None, why) => log::info!("ESPs: no primary known ({}): checking only", why.as_deref().unwrap_or("no ESP")),
        }
        for e in &r.esps {
            if !e.copied.is_empty() || !e.deleted.is_empty() {
                let id = e.esp.as_ref().map(|x| x.partuuid.to_string()).unwrap_or_default();
                log::info!("ESP {id}: {} copied, {} deleted ({} bytes)", e.copied.len(), e.deleted.len(), e.bytes);
            }
        }
        for w in r.warnings.clone() {
            self.warn(w);
        }
        self.record.esp = serde_json::to_value(&r).ok();
    }
}
