//! The effectful shell of stages 2-9: waits on uevents, runs zpool/zfs, mounts, pivots. Every
//! decision is made by the pure modules (choose, be, import); this file only applies them
//! and records what happened in the report.

use crate::be;
use crate::choose::{self, Choice, Facts, HostidAction, Readiness};
use crate::cmdline::{Cmdline, EspMode};
use crate::espsync;
use crate::efi::{self, BootedEsp};
use crate::hostid;
use crate::import;
use crate::modules;
use crate::pivot;
use crate::probe::{self, ProbeReport};
use crate::report::{self, DeviceEvent, Failure, Hostid, ImportRecord, MountRecord, Report, Stage};
use crate::run;
use crate::udevdb;
use crate::zfsparam;
use crate::zfskey;
use crate::keys::Keys;
use crate::uevent::{Listener, Uevent};
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Bounds on helpers: loading zfs.ko under emulation takes seconds, an import with a
/// multihost activity check tens of seconds.
const MODPROBE_BOUND: Duration = Duration::from_secs(90);
const IMPORT_BOUND: Duration = Duration::from_secs(180);
const ZFS_BOUND: Duration = Duration::from_secs(60);
/// After one uevent, how long to gather its companions (a disk's partitions) into one batch.
const SETTLE: Duration = Duration::from_millis(30);
/// How often to look whether module loads have finished (their exit raises no uevent).
const MODULE_POLL: Duration = Duration::from_millis(50);
/// Present while systemd-udevd has events queued (it is what `udevadm settle` waits on).
const UDEV_QUEUE: &str = "/run/udev/queue";

pub struct Options {
    pub cmdline: Cmdline,
    pub sysroot: PathBuf,
    pub switch: bool,
    /// Load hardware modules ourselves (PID 1 of our own ramdisk; a generator has udev).
    pub load_hw_modules: bool,
    pub sys: PathBuf,
    pub report_path: PathBuf,
}

pub struct Boot {
    t0: Instant,
    pub report: Report,
    opts: Options,
    children: Vec<Child>,
    /// When device discovery last went quiet: the storage-module loads we started finished,
    /// or udev's event queue drained (in a generator's image). Devices follow soon after.
    discovery_idle_since: Option<Instant>,
    discovery_was_busy: bool,
    zfs_modprobe: Option<run::Pending>,
    /// Passphrases typed, containers opened or given up on, keys loaded, this boot.
    keys: Keys,
}

fn fail(stage: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Failure {
    Failure { stage, message: message.into(), hint: hint.into(), candidates: Vec::new() }
}

fn be_refusal(r: be::BeRefusal) -> Failure {
    fail("choose-be", format!("{} (boot environments: {})", r.why, r.environments.join(", ")), r.hint)
}

/// Pools with a member on the disk whose ESP the firmware booted.
pub fn boot_disk_pools(rep: &ProbeReport, booted: Option<&BootedEsp>) -> Vec<u64> {
    let Some(b) = booted else { return Vec::new() };
    let disk = rep
        .devices
        .iter()
        .find(|d| d.gpt_entry.as_ref().is_some_and(|p| p.partuuid == b.partuuid))
        .and_then(|d| d.dev.parent.clone());
    let Some(disk) = disk else { return Vec::new() };
    let on_disk = |node: &str| {
        rep.devices.iter().any(|d| d.dev.node == node && (d.dev.parent.as_deref() == Some(&disk) || d.dev.name == disk))
    };
    rep.pools.iter().filter(|p| p.members.iter().any(|m| on_disk(&m.device))).map(|p| p.guid).collect()
}

impl Boot {
    pub fn new(opts: Options, mode: &'static str) -> Self {
        let report = Report {
            version: env!("CARGO_PKG_VERSION"),
            uptime_at_start: report::uptime(),
            mode,
            cmdline: Some(opts.cmdline.clone()),
            outcome: "running",
            ..Report::default()
        };
        Boot { t0: Instant::now(), report, opts, children: Vec::new(), discovery_idle_since: None, discovery_was_busy: false, zfs_modprobe: None, keys: Keys::default() }
    }

    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn stage<T>(&mut self, name: &'static str, f: impl FnOnce(&mut Self) -> T) -> T {
        let (start, cpu) = (self.ms(), report::own_cpu_ms());
        let r = f(self);
        let ms = self.ms() - start;
        self.report.stages.push(Stage { name, start_ms: start, ms, cpu_ms: report::own_cpu_ms() - cpu });
        r
    }

    fn warn(&mut self, w: String) {
        log::warn!("{w}");
        self.report.warnings.push(w);
    }

    pub fn write_report(&mut self) {
        let p = self.opts.report_path.clone();
        if let Err(e) = self.report.write(&p) {
            log::warn!("cannot write {}: {e}", p.display());
        }
    }

    /// Stages 2-7 (and 9 with `switch`). On failure the report is written and the failure
    /// returned for the caller to show.
    pub fn run(&mut self) -> Result<(), Failure> {
        let r = self.run_inner();
        if let Err(f) = &r {
            self.report.outcome = "failed";
            self.report.failure = Some(f.clone());
            self.write_report();
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
        self.stage("modules", |b| b.load_modules());
        let booted = efi::booted_esp(&self.opts.sys.join("firmware/efi/efivars"));
        if let Some(b) = &booted {
            log::info!("firmware booted the ESP with PARTUUID {} ({})", b.partuuid, b.source);
        }
        self.report.booted_esp = booted.clone();
        let my_hostid = hostid::current(Path::new("/"));

        let (choice, rep) = self.stage("wait", |b| b.wait_for_pool(listener.as_ref(), booted.as_ref(), my_hostid))?;
        let Choice::Chosen { guid, name, reason, .. } = &choice else { unreachable!("wait returns a chosen pool") };
        let (guid, name) = (*guid, name.clone());
        log::info!("pool {name} (guid {guid}): {reason}");
        let pool = rep.pools.iter().find(|p| p.guid == guid).cloned().expect("chosen from these pools");
        self.report.pool = Some(choice.clone());
        self.report.probe = Some(rep);

        let action = choose::hostid_action(&pool, my_hostid, &self.opts.cmdline);
        self.report.hostid = Some(Hostid {
            system: my_hostid.map(|h| format!("{h:08x}")),
            label: pool.hostid.map(|h| format!("{h:08x}")),
            action: action.clone(),
        });
        if let HostidAction::Refuse { why, hint } = &action {
            return Err(fail("hostid", why.clone(), hint.clone()));
        }

        self.stage("zfs-module", |b| b.wait_zfs_module())?;
        if let HostidAction::Adopt { hostid: h } = action {
            let had = my_hostid.map_or("none".to_string(), |m| format!("{m:08x}"));
            log::info!("adopting hostid {h:08x} from {name}'s label (this system had {had})");
            hostid::adopt(h).map_err(|e| fail("hostid", format!("cannot adopt hostid {h:08x}: {e}"), "zroam.force=1"))?;
        }
        let devices: Vec<String> = pool.members.iter().filter(|m| m.current).map(|m| m.device.clone()).collect();
        let force = self.opts.cmdline.force || action == HostidAction::Force;
        let degraded = pool.members.iter().any(|m| !m.current) || !pool.missing.is_empty();
        self.stage("import", |b| b.import(guid, &name, &devices, force, degraded))?;
        let (plan, ds, bootfs) = self.stage("choose-be", |b| b.choose_be(&name))?;
        if !zfskey::needed(&plan, &ds).is_empty() {
            self.stage("keys", |b| b.load_zfs_keys(&plan, &ds))?;
        }
        let plan = self.consume_nextboot(&name, plan, ds, &bootfs)?;
        self.stage("mount", |b| b.mount_all(&plan))?;
        self.report.be = Some(plan);
        if self.opts.cmdline.esp != EspMode::Off {
            self.stage("esp", |b| b.esp_stage(guid, booted.as_ref()));
        }

        if !self.opts.switch {
            self.report.outcome = "mounted";
            self.write_report();
            return Ok(());
        }
        if self.opts.cmdline.shell {
            self.write_report();
            crate::emergency::shell("zroam.shell=1: the root is mounted at /sysroot; exit the shell to boot it");
        }
        let init = self.opts.cmdline.init.clone().unwrap_or_else(|| {
            ["/sbin/init", "/lib/systemd/systemd", "/etc/init", "/bin/init"]
                .into_iter()
                .find(|i| pivot::resolve_in(&self.opts.sysroot, i).is_some())
                .unwrap_or("/sbin/init")
                .to_string()
        });
        self.report.init = Some(init.clone());
        self.report.outcome = "booted";
        let start = self.ms();
        self.report.stages.push(Stage { name: "pivot", start_ms: start, ms: 0, cpu_ms: 0.0 });
        self.write_report();
        log::info!("switching root to {} and running {init} ({} ms after start)", self.opts.sysroot.display(), start);
        let e = pivot::switch_root(&self.opts.sysroot, &init).unwrap_err();
        Err(fail("pivot", e.to_string(), "init=PATH names another init"))
    }

    fn load_modules(&mut self) {
        if !modules::zfs_loaded() {
            match modules::spawn_modprobe(&["zfs".to_string()]) {
                Ok(c) => self.zfs_modprobe = Some(run::Pending::new(c)),
                Err(e) => self.warn(format!("cannot load zfs: {e}")),
            }
        }
        if self.opts.load_hw_modules {
            let aliases = modules::present_aliases(&self.opts.sys);
            self.spawn_aliases(aliases);
        }
    }

    fn spawn_aliases(&mut self, aliases: Vec<String>) {
        if aliases.is_empty() {
            return;
        }
        log::debug!("loading modules for {}", aliases.join(" "));
        self.report.modules.extend(aliases.iter().cloned());
        match modules::spawn_modprobe(&aliases) {
            Ok(c) => self.children.push(c),
            Err(e) => self.warn(format!("cannot load storage modules: {e}")),
        }
    }

    fn wait_zfs_module(&mut self) -> Result<(), Failure> {
        if let Some(p) = self.zfs_modprobe.take() {
            match p.wait_until(Instant::now() + MODPROBE_BOUND) {
                Some(Ok(st)) if !st.success() && !modules::zfs_loaded() => {
                    return Err(fail("zfs-module", format!("modprobe zfs failed ({st})"), "rebuild the ramdisk with the zfs modules for this kernel"));
                }
                Some(_) => {}
                None => return Err(fail("zfs-module", "modprobe zfs did not finish in 90 s", "zroam.debug=1 and dmesg show why")),
            }
        }
        // modprobe returns early when someone else (udev, a stock hook) is still loading
        // the module; wait for its init to finish.
        let until = Instant::now() + MODPROBE_BOUND;
        while !modules::zfs_loaded() || !Path::new("/dev/zfs").exists() {
            if Instant::now() > until {
                return Err(fail("zfs-module", "the zfs module did not finish loading (or /dev/zfs is missing)", "check that the ramdisk's zfs.ko matches this kernel"));
            }
            // A bounded poll on a path that has no event of its own to wait for.
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Is device discovery still under way? Collects finished module loads; in a
    /// generator's image udev loads the drivers, and /run/udev/queue exists while it has
    /// events in flight.
    fn discovery_busy(&mut self) -> bool {
        self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let busy = !self.children.is_empty() || Path::new(UDEV_QUEUE).exists();
        if self.discovery_was_busy && !busy {
            self.discovery_idle_since = Some(Instant::now());
        }
        self.discovery_was_busy = busy;
        busy
    }

    fn handle_events(&mut self, events: Vec<(Instant, Uevent)>) -> bool {
        let mut block = false;
        let mut aliases = Vec::new();
        for (at, ev) in events {
            if ev.is_block_change() {
                block = true;
                let t_ms = at.saturating_duration_since(self.t0).as_millis() as u64;
                let device = ev.devname.clone().unwrap_or(ev.devpath.clone());
                log::debug!("uevent {} {device}", ev.action);
                self.report.events.push(DeviceEvent { t_ms, action: ev.action.clone(), device });
            }
            if ev.action == "add" && self.opts.load_hw_modules {
                if let Some(a) = ev.modalias.filter(|a| modules::storage_alias(a)) {
                    aliases.push(a);
                }
            }
        }
        self.spawn_aliases(aliases);
        self.discovery_busy();
        block
    }

    fn wait_for_pool(
        &mut self,
        listener: Option<&Listener>,
        booted: Option<&BootedEsp>,
        hostid: Option<u32>,
    ) -> Result<(Choice, ProbeReport), Failure> {
        let cmd = self.opts.cmdline.clone();
        let deadline = Instant::now() + cmd.wait;
        let popts = probe::Options { sys: self.opts.sys.clone(), ..probe::Options::default() };
        let mut grace_from: Option<Instant> = None;
        let mut last_why = String::new();
        let mut cache = probe::Cache::default();
        let mut seen_events = self.report.events.len();
        loop {
            for e in &self.report.events[seen_events..] {
                cache.forget(e.device.rsplit('/').next().unwrap_or(&e.device));
            }
            seen_events = self.report.events.len();
            let (t_ms, cpu) = (self.ms(), report::own_cpu_ms());
            let rep = probe::probe_cached(&popts, &mut cache);
            self.report.probe_passes.push(report::Pass {
                t_ms,
                ms: rep.elapsed_ms,
                cpu_ms: report::own_cpu_ms() - cpu,
                devices: rep.devices.len(),
                reused: rep.reused,
            });
            let facts = Facts { hostid, boot_disk_pools: boot_disk_pools(&rep, booted) };
            let choice = choose::choose(&rep.pools, &cmd, &facts);
            if !matches!(choice, Choice::Chosen { readiness: Readiness::Now, .. } | Choice::Ambiguous { .. }) {
                // The pool (or a member) may be inside LUKS containers: open them, then look
                // again at once.
                let locked = self.keys.locked(&rep, &cmd.luks);
                if !locked.is_empty() {
                    if self.opts.load_hw_modules {
                        self.keys.load_dm_modules();
                    }
                    let pid1 = self.opts.load_hw_modules;
                    let r = self.keys.open_containers(&locked, &rep, &cmd, pid1);
                    for w in r {
                        self.warn(w);
                    }
                    self.report.keys = self.keys.records.clone();
                    continue;
                }
            }
            let now = Instant::now();
            let (why, wake) = match &choice {
                Choice::Chosen { readiness: Readiness::Now, .. } => return Ok((choice, rep)),
                Choice::Chosen { readiness: Readiness::Grace { why }, .. } => {
                    // The grace counts from when device discovery went quiet: a controller
                    // still initialising (AHCI under emulation takes seconds, USB storage
                    // waits a second before scanning) has not had its chance yet.
                    let seen = *grace_from.get_or_insert(now);
                    let busy = self.discovery_busy();
                    let g = (seen.max(self.discovery_idle_since.unwrap_or(seen)) + cmd.grace).min(deadline);
                    if now >= deadline || (!busy && now >= g) {
                        self.warn(format!("going ahead: {why}"));
                        return Ok((choice, rep));
                    }
                    let after = if busy { " once the storage drivers have settled" } else { "" };
                    let wake = if busy { (now + MODULE_POLL).min(deadline) } else { g };
                    (format!("{why}; waiting {:.1} s for more devices{after}", cmd.grace.as_secs_f64()), wake)
                }
                Choice::Chosen { readiness: Readiness::Wait { why }, .. } | Choice::NotFound { why } => {
                    grace_from = None;
                    if let Some(f) = self.keys.gave_up_failure(why) {
                        self.report.probe = Some(rep);
                        return Err(f);
                    }
                    if now >= deadline {
                        self.report.probe = Some(rep);
                        let hint = if matches!(choice, Choice::NotFound { .. }) {
                            "attach the pool's disks; zroam.wait=SECONDS waits longer; root=ZFS=POOL or zroam.pool=NAME|GUID names another pool"
                        } else {
                            "attach the missing disks, or zroam.wait=SECONDS waits longer"
                        };
                        return Err(fail("wait", format!("{why} (waited {:.1} s)", cmd.wait.as_secs_f64()), hint));
                    }
                    (why.clone(), deadline)
                }
                Choice::Ambiguous { why, candidates } => {
                    self.report.probe = Some(rep);
                    self.report.pool = Some(choice.clone());
                    let mut f = fail("choose-pool", why.clone(), "zroam.pool=GUID picks one (GUIDs below)");
                    f.candidates = candidates.clone();
                    return Err(f);
                }
            };
            if why != last_why {
                log::info!("waiting: {why}");
                last_why = why;
            }
            // Sleep until a block device appears (or the wake time); other events only load modules.
            loop {
                let evs = match listener {
                    Some(l) => l.wait(wake, SETTLE),
                    None => {
                        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(250)));
                        break;
                    }
                };
                if self.handle_events(evs) || Instant::now() >= wake {
                    break;
                }
            }
        }
    }

    fn import(&mut self, guid: u64, name: &str, devices: &[String], force: bool, degraded: bool) -> Result<(), Failure> {
        let args = import::args(guid, devices, self.opts.cmdline.readonly, force);
        log::info!("zpool {}", args.join(" "));
        let start_ms = self.ms();
        let marked = udevdb::mark_ready(Path::new(udevdb::DB_DIR), devices);
        if marked.count() > 0 {
            log::debug!("no udev entry for {} import device(s): marked ready for libzfs", marked.count());
        }
        // Members zroam did not find are nowhere: no point retrying their old paths.
        let params = Path::new("/sys/module/zfs/parameters");
        let no_retry = if degraded { zfsparam::set(params, zfsparam::VDEV_OPEN_TIMEOUT, zfsparam::VDEV_OPEN_TIMEOUT_SHORT) } else { None };
        let out = run::run("zpool", &args, IMPORT_BOUND);
        drop((marked, no_retry));
        let ok = out.ok();
        let said = out.said();
        self.report.import = Some(ImportRecord { start_ms, outcome: out });
        if ok {
            log::info!("imported {name} in {} ms", self.ms() - start_ms);
            return Ok(());
        }
        let (kind, hint) = import::classify(&said);
        Err(fail("import", format!("not importing {name} (guid {guid}): {}. zpool said: {said}", kind.meaning()), hint))
    }

    fn zfs(&mut self, args: &[&str]) -> run::Outcome {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run::run("zfs", &a, ZFS_BOUND)
    }

    fn choose_be(&mut self, pool: &str) -> Result<(be::BePlan, Vec<be::Dataset>, String), Failure> {
        // Two independent questions, asked at once (each helper spends ~80 ms starting libzfs).
        let bootfs_args: Vec<String> = ["get", "-H", "-o", "value", "bootfs", pool].map(String::from).to_vec();
        let list_args: Vec<String> = ["list", "-H", "-o", be::LIST_COLUMNS, "-t", "filesystem", "-r", pool].map(String::from).to_vec();
        let (bootfs, list) = std::thread::scope(|s| {
            let b = s.spawn(|| run::run("zpool", &bootfs_args, ZFS_BOUND));
            let l = run::run("zfs", &list_args, ZFS_BOUND);
            (b.join().unwrap_or_else(|_| run::Outcome::failed(bootfs_args.clone(), "thread panicked".into())), l)
        });
        if !bootfs.ok() {
            return Err(fail("choose-be", format!("zpool get bootfs {pool}: {}", bootfs.said()), "zroam.shell=1 to look by hand"));
        }
        if !list.ok() {
            return Err(fail("choose-be", format!("zfs list {pool}: {}", list.said()), "zroam.shell=1 to look by hand"));
        }
        let ds = be::parse_list(&list.stdout);
        let bootfs = bootfs.stdout.trim().to_string();
        let plan = be::choose(pool, &bootfs, &ds, &self.opts.cmdline).map_err(be_refusal)?;
        log::info!("boot environment {}: {}", plan.dataset, plan.reason);
        Ok((plan, ds, bootfs))
    }

    /// The one-shot next boot is consumed before use (if this BE fails to boot, the next
    /// boot falls back) and after the keys are loaded (nothing is written before then).
    fn consume_nextboot(&mut self, pool: &str, plan: be::BePlan, mut ds: Vec<be::Dataset>, bootfs: &str) -> Result<be::BePlan, Failure> {
        let mut plan = plan;
        if let Some(on) = plan.consume_nextboot.clone() {
            let o = self.zfs(&["inherit", be::NEXTBOOT_PROP, &on]);
            if !o.ok() {
                self.warn(format!("cannot clear {} on {on} ({}); ignoring it", be::NEXTBOOT_PROP, o.said()));
                for d in ds.iter_mut() {
                    d.nextboot = None;
                }
                plan = be::choose(pool, bootfs, &ds, &self.opts.cmdline).map_err(be_refusal)?;
                log::info!("boot environment {}: {}", plan.dataset, plan.reason);
                self.load_zfs_keys(&plan, &ds)?;
            }
        }
        for w in plan.warnings.clone() {
            self.warn(w);
        }
        Ok(plan)
    }

    /// Native encryption: the keys of the planned mounts' encryption roots, before anything
    /// is written to the pool.
    fn load_zfs_keys(&mut self, plan: &be::BePlan, ds: &[be::Dataset]) -> Result<(), Failure> {
        let rep = self.report.probe.clone().unwrap_or_default();
        let pid1 = self.opts.load_hw_modules;
        let cmd = self.opts.cmdline.clone();
        let r = self.keys.load_zfs(&zfskey::needed(plan, ds), &rep, &cmd, pid1);
        self.report.keys = self.keys.records.clone();
        r
    }

    /// Stage 8, never fatal: its problems become warnings in the report.
    fn esp_stage(&mut self, guid: u64, booted: Option<&BootedEsp>) {
        let cmd = &self.opts.cmdline;
        let opts = espsync::Options {
            mode: if cmd.esp == EspMode::Check { espsync::Mode::Check } else { espsync::Mode::Sync },
            dry_run: false,
            budget: cmd.esp_budget,
            mount_base: PathBuf::from("/run/zroam/esp"),
        };
        let Some(rep) = self.report.probe.as_ref() else { return };
        let r = espsync::run(rep, guid, booted.map(|b| b.partuuid), &opts);
        match r.primary {
            Some(p) => log::info!("ESPs: primary {p}; {} in the set", r.esps.len()),
            None => log::info!("ESPs: no primary known (no firmware record of the booted ESP): checking only"),
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
        self.report.esp = Some(r);
    }

    fn mount_all(&mut self, plan: &be::BePlan) -> Result<(), Failure> {
        let ro = self.opts.cmdline.readonly;
        let flags = if ro { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        for (i, m) in plan.mounts.iter().enumerate() {
            let path = match m.target.trim_start_matches('/') {
                "" => self.opts.sysroot.clone(),
                rel => self.opts.sysroot.join(rel),
            };
            if let Err(e) = std::fs::create_dir_all(&path) {
                if i == 0 {
                    return Err(fail("mount", format!("cannot create {}: {e}", path.display()), "root= a writable location"));
                }
                self.warn(format!("{} not mounted: cannot create {}: {e}", m.dataset, path.display()));
                continue;
            }
            let r = mount(Some(m.dataset.as_str()), &path, Some("zfs"), flags, Some("zfsutil"));
            match r {
                Ok(()) => {
                    log::info!("mounted {} on {}{}", m.dataset, path.display(), if ro { " (read-only)" } else { "" });
                    self.report.mounts.push(MountRecord { mount: m.clone(), path: path.display().to_string(), readonly: ro });
                }
                Err(e) if i == 0 => {
                    return Err(fail("mount", format!("mount {} on {}: {e}", m.dataset, path.display()), "root=ZFS=POOL/DATASET names another BE"));
                }
                Err(e) => self.warn(format!("{} not mounted on {}: {e}", m.dataset, path.display())),
            }
        }
        Ok(())
    }
}
