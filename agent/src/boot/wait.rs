//! Waiting for the pool: probe, plan, and sleep until a block device appears, discovery
//! settles (`decide::settle` over `sys::scan`), a grace ends, or the bound. Module loads
//! for hardware that shows up late start from here too.

use super::failure::{fail, Failure};
use super::record::{DeviceEvent, LoadedBy, Pass, SettleRecord, ZfsLoad};
use super::stage::Stage;
use super::Boot;
use crate::decide::choose::{Choice, Readiness};
use crate::decide::plan::{self, Plan, System};
use crate::decide::settle::{self, Settle, Tracked};
use crate::decide::trust::{self, PinState};
use crate::probe::{self, ProbeReport};
use crate::sys::uevent::{Listener, Uevent};
use crate::sys::{drivers, modules, run, scan, usage};
use std::path::Path;
use std::time::{Duration, Instant};

/// After one uevent, how long to gather its companions (a disk's partitions) into one batch.
const SETTLE: Duration = Duration::from_millis(30);
/// How often to look whether module loads have finished (their exit raises no uevent).
const MODULE_POLL: Duration = Duration::from_millis(50);
/// Present while systemd-udevd has events queued (it is what `udevadm settle` waits on).
const UDEV_QUEUE: &str = "/run/udev/queue";
/// How often to collect the answers of reads that outlived their pass (they raise no event).
const PENDING_POLL: Duration = Duration::from_millis(250);

/// Most distinct things a wait names in the report's `settle[].scans`.
const MAX_SEEN: usize = 32;

fn note_seen(seen: &mut Vec<String>, why: &str) {
    if seen.len() < MAX_SEEN && !seen.iter().any(|s| s == why) {
        seen.push(why.to_string());
    }
}

impl Boot {
    pub(super) fn load_modules(&mut self) {
        // In a generator's image `zroam preload` may be loading zfs already: racing it is
        // safe (cli/preload.rs says why), and `wait_zfs_module` waits for `live` either way.
        if modules::zfs_loaded() {
            self.zfs_load.by = LoadedBy::Other;
        } else {
            self.zfs_load = ZfsLoad { by: LoadedBy::Boot, started_s: usage::uptime(), ..ZfsLoad::default() };
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
        self.record.modules.extend(aliases.iter().cloned());
        match modules::spawn_modprobe(&aliases) {
            Ok(c) => self.children.push(c),
            Err(e) => self.warn(format!("cannot load storage modules: {e}")),
        }
    }

    /// Is device discovery still under way? Our module loads are running, or a module is
    /// initialising (`sys::drivers`). Where this ramdisk's module aliases cannot be read,
    /// udev's queue stands in for the drivers udev is about to load (it exists while udev
    /// has events in flight, including every unrelated one).
    fn discovery_busy(&mut self) -> bool {
        self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let was_busy = self.busy_why.is_some();
        let (loaded, loading) = drivers::proc_modules().unwrap_or_default();
        self.modules_loaded = loaded;
        let known = self.aliases.get_or_insert_with(drivers::Aliases::find).is_some();
        self.busy_why = if !self.children.is_empty() {
            Some("storage drivers loading (modprobe)".to_string())
        } else if !loading.is_empty() {
            Some(format!("{} initialising", loading.join(", ")))
        } else if !known && Path::new(UDEV_QUEUE).exists() {
            Some("udev has events queued".to_string())
        } else {
            None
        };
        let busy = self.busy_why.is_some();
        if was_busy && !busy {
            self.discovery_idle_since = Some(Instant::now());
        }
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
                self.record.events.push(DeviceEvent { t_ms, action: ev.action.clone(), device });
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

    /// One probe pass (devices a uevent touched are read again, the rest reused) and the
    /// plan over it.
    pub(super) fn pass(&mut self, system: &System) -> (Plan, ProbeReport) {
        for e in &self.record.events[self.seen_events..] {
            self.cache.forget(e.device.rsplit('/').next().unwrap_or(&e.device));
        }
        self.seen_events = self.record.events.len();
        let popts = probe::Options { sys: self.opts.sys.clone(), ..probe::Options::default() };
        let (t_ms, cpu) = (self.ms(), usage::own_cpu_ms());
        let rep = probe::probe_cached(&popts, &mut self.cache);
        self.record.probe_passes.push(Pass {
            t_ms,
            ms: rep.elapsed_ms,
            cpu_ms: usage::own_cpu_ms() - cpu,
            devices: rep.devices.len(),
            reused: rep.reused,
        });
        let plan = plan::plan(&rep, &self.opts.cmdline, system);
        self.record.trust = serde_json::to_value(&plan.trust).ok();
        (plan, rep)
    }

    /// Has discovery settled (`decide::settle`)? Drivers loaded (our modprobes done, no
    /// module initialising), no read in flight within its bound, no scan the kernel shows
    /// pending (`sys::scan`) and no storage device awaiting its module (`sys::drivers`), and
    /// quiet since the latest of the first pass's devices' appearance, discovery going idle,
    /// the last block uevent and the last look that saw a scan.
    fn settle_state(&mut self, first_pass: Instant, rep: &ProbeReport) -> Settle {
        self.discovery_busy();
        self.note_zfs_live();
        // A read still within its bound may yet answer; a stuck one has had its chance.
        let bound = probe::Options::default().device_timeout.as_millis() as u64;
        let reading = rep.pending.iter().any(|p| p.ms < bound);
        let now = Instant::now();
        let uptime = || usage::uptime().map(Duration::from_secs_f64);
        // Looked at while drivers load too, so that a scan's first sighting is early.
        let mut scans = scan::in_flight(&self.opts.sys);
        if let Some(Some(aliases)) = self.aliases.as_mut() {
            scans.extend(drivers::in_flight(&self.opts.sys, &self.modules_loaded, aliases));
        }
        let tracked: Vec<Tracked> = scans
            .into_iter()
            .map(|s| {
                // Bounded: past the limit an unknown scan counts as old as the boot.
                let first_seen = if self.scan_first_seen.len() < 4 * scan::MAX_ENTRIES {
                    *self
                        .scan_first_seen
                        .entry(s.key.clone())
                        .or_insert_with(|| settle::first_seen(now, s.node.as_deref().and_then(|n| scan::age(n, uptime()))))
                } else {
                    self.scan_first_seen.get(&s.key).copied().unwrap_or(self.t0)
                };
                Tracked { scan: s, first_seen }
            })
            .collect();
        for t in settle::counting(now, &tracked).filter(|t| t.scan.observed) {
            self.scan_last_seen = Some(now);
            note_seen(&mut self.scans_seen, &t.scan.why);
        }
        // What kept drivers busy is named in the report beside the scans.
        if let Some(why) = &self.busy_why {
            note_seen(&mut self.scans_seen, why);
        }
        let last_event = self.record.events.last().map(|e| self.t0 + Duration::from_millis(e.t_ms));
        let sys = &self.opts.sys;
        let base = *self.quiet_base.get_or_insert_with(|| {
            let up = uptime();
            let ages: Vec<_> = rep.devices.iter().map(|d| scan::age(&sys.join("class/block").join(&d.dev.name), up)).collect();
            settle::quiet_base(first_pass, now, &ages)
        });
        let quiet_from =
            [Some(base), self.discovery_idle_since, last_event, self.scan_last_seen].into_iter().flatten().max().unwrap_or(first_pass);
        settle::decide(now, &settle::Input { busy: self.busy_why.as_deref(), reading, quiet_from, scans: &tracked })
    }

    /// Notes when zfs.ko is first seen live during a wait for discovery.
    fn note_zfs_live(&mut self) {
        if self.zfs_live_at.is_none() && modules::zfs_loaded() {
            self.zfs_live_at = Some(Instant::now());
        }
    }

    /// Note in the record what a wait for discovery cost and how it ended.
    /// `since`: when the choice first stood ready but for this wait. What the wait added
    /// counts from then, or from when zfs.ko was live if that came later: before it, the
    /// import would have waited for the module anyway (nothing, if it is not live yet). A
    /// refusal imports nothing: its wait counts from `since`.
    fn note_settle(&mut self, wait: &str, first_pass: Instant, since: Option<Instant>, ended: &str, why: &str) {
        let ms = first_pass.elapsed().as_millis() as u64;
        self.note_zfs_live();
        let from = match (since, self.zfs_live_at) {
            (Some(t), _) if wait == "refusal" => Some(t),
            (Some(t), Some(z)) => Some(t.max(z)),
            _ => None,
        };
        let added_ms = from.map_or(0, |t| t.elapsed().as_millis() as u64);
        let scans = std::mem::take(&mut self.scans_seen);
        self.record.settle.push(SettleRecord {
            wait: wait.to_string(),
            ms,
            added_ms,
            ended: ended.to_string(),
            why: why.to_string(),
            scans,
        });
    }

    pub(super) fn wait_for_pool(&mut self, listener: Option<&Listener>, system: &System) -> Result<(Plan, ProbeReport), Failure> {
        let cmd = self.opts.cmdline.clone();
        let deadline = Instant::now() + cmd.wait;
        let first_pass = Instant::now();
        self.quiet_base = None;
        let mut grace_from: Option<Instant> = None;
        // When the choice first stood ready but for discovery (settle, grace, a refusal):
        // the report's `added_ms`, what the settle rule cost this boot.
        let mut ready_from: Option<Instant> = None;
        let mut last_why = String::new();
        self.scans_seen.clear();
        let pinned_luks: Vec<String> = match (&system.pin, trust::pin_state(&system.pin, &cmd)) {
            (Some(Ok(p)), PinState::Active { .. }) => p.luks.clone(),
            _ => Vec::new(),
        };
        // A pass reads nothing new unless a block device changed, a read was still in
        // flight, or a container was opened: ticks that only wait for module loads to
        // finish reuse the last decision instead of probing again.
        let mut last: Option<(Plan, ProbeReport)> = None;
        loop {
            let (plan, rep) = match last.take() {
                Some(kept) => kept,
                None => self.pass(system),
            };
            let choice = &plan.pool;
            // The pool (or a member) may be inside LUKS containers: open them, then look
            // again at once. The pin's containers are opened before anything is imported,
            // so that a plain stick that looks like the root cannot stand in for them.
            let locked = self.keys.locked(&rep, &cmd.luks);
            let pinned_locked = locked.iter().any(|c| pinned_luks.contains(&c.uuid.to_ascii_lowercase()));
            // Only a certain, complete choice (or a refusal) goes ahead with containers locked:
            // anything else may be inside one of them.
            let decided =
                matches!(choice, Choice::Chosen { readiness: Readiness::Now, .. } | Choice::Ambiguous { .. } | Choice::Refused { .. });
            // After the tries ran out on one container, no other is asked for: the tries
            // bound all questions of a boot, and the shell is the way back.
            if !locked.is_empty() && (!decided || pinned_locked) && !self.keys.gave_up_any() {
                if self.opts.load_hw_modules {
                    self.keys.load_dm_modules();
                }
                let pid1 = self.opts.load_hw_modules;
                let r = self.keys.open_containers(&locked, &rep, &cmd, pid1);
                for w in r {
                    self.warn(w);
                }
                self.record.keys = self.keys.records.clone();
                // Tried containers are settled either way: the next pass does not ask again.
                continue;
            }
            let now = Instant::now();
            match choice {
                Choice::Chosen { readiness: Readiness::Wait { .. }, .. } | Choice::NotFound { .. } => ready_from = None,
                _ => _ = ready_from.get_or_insert(now),
            }
            let (why, wake) = match choice {
                Choice::Chosen { readiness: Readiness::Now, .. } => return Ok((plan, rep)),
                Choice::Chosen { readiness: Readiness::Settle { why }, .. } => match self.settle_state(first_pass, &rep) {
                    Settle::Settled { why: s, .. } => {
                        log::info!("discovery settled after {} ms ({s}): {why}", first_pass.elapsed().as_millis());
                        self.note_settle("settle", first_pass, ready_from, "settled", &s);
                        return Ok((plan, rep));
                    }
                    _ if now >= deadline => {
                        self.warn(format!("going ahead after zroam.wait although discovery has not settled: {why}"));
                        self.note_settle("settle", first_pass, ready_from, "wait", why);
                        return Ok((plan, rep));
                    }
                    Settle::Pending { wake, why: s } => (format!("{why} ({s})"), wake.min(deadline)),
                    Settle::Busy { why: s } => (format!("{why} ({s})"), (now + MODULE_POLL).min(deadline)),
                },
                Choice::Chosen { readiness: Readiness::Grace { why }, .. } => {
                    // The grace ends as soon as discovery has settled: every device the
                    // kernel was still finding has been found, so a missing member is not
                    // on its way. zroam.grace is the cap, counted from when discovery went
                    // quiet: a controller still initialising (AHCI under emulation takes
                    // seconds) has not had its chance yet. With a pin the same holds: a
                    // pinned member that is not present once discovery has settled is not
                    // coming.
                    let seen = *grace_from.get_or_insert(now);
                    let state = self.settle_state(first_pass, &rep);
                    let busy = self.busy_why.is_some();
                    let g = (seen.max(self.discovery_idle_since.unwrap_or(seen)) + cmd.grace).min(deadline);
                    let (pending, wake) = match state {
                        Settle::Settled { why: s, .. } => {
                            self.warn(format!("going ahead: {why}: discovery settled after {} ms ({s})", first_pass.elapsed().as_millis()));
                            self.note_settle("grace", first_pass, ready_from, "settled", &s);
                            return Ok((plan, rep));
                        }
                        Settle::Pending { wake, why } if !busy => (why, wake.min(g)),
                        Settle::Pending { why, .. } | Settle::Busy { why } => (why, now + MODULE_POLL),
                    };
                    if now >= deadline || (!busy && now >= g) {
                        let ended = if now >= deadline { "wait" } else { "grace" };
                        self.warn(format!("going ahead: {why}: zroam.grace ran out while waiting for {pending}"));
                        self.note_settle("grace", first_pass, ready_from, ended, &pending);
                        return Ok((plan, rep));
                    }
                    (format!("{why}; waiting up to {:.1} s for more devices ({pending})", cmd.grace.as_secs_f64()), wake.min(deadline))
                }
                Choice::Chosen { readiness: Readiness::Wait { why }, .. } | Choice::NotFound { why } => {
                    grace_from = None;
                    if let Some(s) = self.keys.stuck(why) {
                        self.keep_probe(rep);
                        return Err(fail(Stage::Unlock, s.message, s.hint));
                    }
                    if now >= deadline {
                        self.keep_probe(rep);
                        let pinned = matches!(plan.trust.pin, PinState::Active { .. });
                        let hint = match (choice, pinned) {
                            (Choice::NotFound { .. }, true) => {
                                "attach the pool's disks; the ramdisk's pin names the pool by GUID: after zpool reguid or a restore onto new disks, zroam.pin=off boots without it (then rebuild the ramdisk); zroam.pool=GUID names another pool"
                            }
                            (Choice::NotFound { .. }, false) => {
                                "attach the pool's disks; zroam.wait=SECONDS waits longer; root=ZFS=POOL or zroam.pool=NAME|GUID names another pool"
                            }
                            _ => "attach the missing disks, or zroam.wait=SECONDS waits longer",
                        };
                        return Err(fail(Stage::Wait, format!("{why} (waited {:.1} s)", cmd.wait.as_secs_f64()), hint));
                    }
                    (why.clone(), deadline)
                }
                Choice::Ambiguous { .. } | Choice::Refused { .. } => {
                    // A choice by name waits for discovery to settle; so does a refusal,
                    // since a device still arriving may be the one that settles it (a
                    // pinned member, the copy's original).
                    let wake = match self.settle_state(first_pass, &rep) {
                        _ if now >= deadline => None,
                        Settle::Settled { .. } => None,
                        Settle::Pending { wake, .. } => Some(wake.min(deadline)),
                        Settle::Busy { .. } => Some((now + MODULE_POLL).min(deadline)),
                    };
                    let Some(wake) = wake else {
                        let ended = if now >= deadline { "wait" } else { "settled" };
                        self.note_settle("refusal", first_pass, ready_from, ended, "");
                        self.keep_probe(rep);
                        self.record.pool = serde_json::to_value(&plan.pool).ok();
                        return Err(refusal(&plan.pool));
                    };
                    ("several candidates or contradicting labels; waiting for the devices to settle".to_string(), wake)
                }
            };
            if why != last_why {
                log::info!("waiting: {why}");
                last_why = why;
            }
            // Reads in flight answer without a uevent: look again soon while there are any.
            let wake = if rep.pending.is_empty() { wake } else { wake.min(Instant::now() + PENDING_POLL) };
            // Sleep until a block device appears (or the wake time); other events only load modules.
            let mut block = listener.is_none() || !rep.pending.is_empty();
            loop {
                let evs = match listener {
                    Some(l) => l.wait(wake, SETTLE),
                    None => {
                        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(250)));
                        break;
                    }
                };
                if self.handle_events(evs) {
                    block = true;
                    break;
                }
                if Instant::now() >= wake {
                    break;
                }
            }
            if !block {
                last = Some((plan, rep));
            }
        }
    }
}

/// The failure for a choice that refuses.
pub(super) fn refusal(choice: &Choice) -> Failure {
    match choice {
        Choice::Ambiguous { why, candidates } => {
            let mut f = fail(Stage::ChoosePool, why.clone(), "zroam.pool=GUID picks one (GUIDs below)");
            f.candidates = candidates.clone();
            f
        }
        Choice::Refused { why, found, hint } => fail(Stage::ChoosePool, format!("{why}: {}", found.join("; ")), hint.clone()),
        Choice::NotFound { why } | Choice::Chosen { reason: why, .. } => fail(Stage::ChoosePool, why.clone(), "zroam.pool=GUID"),
    }
}
