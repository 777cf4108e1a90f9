//! The ZFS side of the boot: zfs.ko's load, `zpool import` as planned, the BE's datasets
//! and keys, and the one-shot next boot.

use super::failure::{fail, Failure};
use super::record::{ImportRecord, ZfsLoad, PRELOAD_RECORD, PRELOAD_RECORD_MAX};
use super::stage::Stage;
use super::Boot;
use crate::decide::be;
use crate::decide::cmdline::RootSpec;
use crate::decide::import;
use crate::decide::menu::Pick;
use crate::decide::plan::Import;
use crate::keys::zfskey;
use crate::sys::{modules, run, udevdb, usage, zfsparam};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bounds on helpers: loading zfs.ko under emulation takes seconds, an import with a
/// multihost activity check tens of seconds.
const MODPROBE_BOUND: Duration = Duration::from_secs(90);
const IMPORT_BOUND: Duration = Duration::from_secs(180);
const ZFS_BOUND: Duration = Duration::from_secs(60);
/// A menu offered instead of a refusal waits this long for somebody (then refuses).
pub(super) const OFFER_BOUND: Duration = Duration::from_secs(60);

/// How long a menu waits for a line once its countdown stopped: as long as a passphrase
/// prompt (`zroam.key.timeout`), an hour when that is unlimited.
pub(super) fn menu_bound(key_timeout: Duration) -> Duration {
    if key_timeout.is_zero() {
        Duration::from_secs(3600)
    } else {
        key_timeout
    }
}

/// What `zroam preload` recorded, if it ran this boot (read bounded; an odd file is none).
fn read_preload_record() -> Option<ZfsLoad> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(PRELOAD_RECORD).ok()?.take(PRELOAD_RECORD_MAX).read_to_string(&mut text).ok()?;
    ZfsLoad::parse(&text)
}

impl Boot {
    pub(super) fn wait_zfs_module(&mut self) -> Result<(), Failure> {
        if let Some(p) = self.zfs_modprobe.take() {
            match p.wait_until(Instant::now() + MODPROBE_BOUND) {
                Some(Ok(st)) if !st.success() && !modules::zfs_loaded() => {
                    return Err(fail(
                        Stage::ZfsModule,
                        format!("modprobe zfs failed ({st})"),
                        "rebuild the ramdisk with the zfs modules for this kernel",
                    ));
                }
                Some(_) => {}
                None => return Err(fail(Stage::ZfsModule, "modprobe zfs did not finish in 90 s", "zroam.debug=1 and dmesg show why")),
            }
        }
        // modprobe returns early when someone else (udev, a stock hook) is still loading
        // the module; wait for its init to finish.
        let until = Instant::now() + MODPROBE_BOUND;
        while !modules::zfs_loaded() || !Path::new("/dev/zfs").exists() {
            if Instant::now() > until {
                return Err(fail(
                    Stage::ZfsModule,
                    "the zfs module did not finish loading (or /dev/zfs is missing)",
                    "check that the ramdisk's zfs.ko matches this kernel",
                ));
            }
            // A bounded poll on a path that has no event of its own to wait for.
            std::thread::sleep(Duration::from_millis(10));
        }
        // Live since a wait first saw it, or now.
        let live_at = *self.zfs_live_at.get_or_insert_with(Instant::now);
        self.zfs_load.live_s = usage::uptime().map(|u| (u - live_at.elapsed().as_secs_f64()).max(0.0));
        self.record.zfs_load = Some(ZfsLoad::merge(read_preload_record(), self.zfs_load.clone()));
        Ok(())
    }
    /// `zpool import` exactly as planned (`decide::plan`).
    pub(super) fn import(&mut self, plan: &Import) -> Result<(), Failure> {
        let Import { guid, name, devices, degraded, argv, .. } = plan;
        let args = &argv[1..];
        log::info!("{}", argv.join(" "));
        let start_ms = self.ms();
        let marked = udevdb::mark_ready(Path::new(udevdb::DB_DIR), devices);
        if marked.count() > 0 {
            log::debug!("no udev entry for {} import device(s): marked ready for libzfs", marked.count());
        }
        // Members zroam did not find are nowhere: no point retrying their old paths.
        let params = Path::new("/sys/module/zfs/parameters");
        let no_retry = if *degraded { zfsparam::set(params, zfsparam::VDEV_OPEN_TIMEOUT, zfsparam::VDEV_OPEN_TIMEOUT_SHORT) } else { None };
        let out = run::run("zpool", args, IMPORT_BOUND);
        drop((marked, no_retry));
        let ok = out.ok();
        let said = out.said();
        self.record.import = Some(ImportRecord { start_ms, outcome: out });
        if ok {
            log::info!("imported {name} in {} ms", self.ms() - start_ms);
            return Ok(());
        }
        let (kind, hint) = import::classify(&said);
        Err(fail(Stage::Import, format!("not importing {name} (guid {guid}): {}. zpool said: {said}", kind.meaning()), hint))
    }

    fn zfs(&mut self, args: &[&str]) -> run::Outcome {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run::run("zfs", &a, ZFS_BOUND)
    }

    pub(super) fn choose_be(&mut self, pool: &str) -> Result<(be::BePlan, Vec<be::Dataset>, String), Failure> {
        // Two independent questions, asked at once (each helper spends ~80 ms starting libzfs).
        // The checkpoint rides along: the labels cannot tell (each txg's uberblock zeroes it).
        let bootfs_args: Vec<String> = ["get", "-H", "-o", "value", "bootfs,checkpoint", pool].map(String::from).to_vec();
        let list_args: Vec<String> = ["list", "-H", "-o", be::LIST_COLUMNS, "-t", "filesystem", "-r", pool].map(String::from).to_vec();
        let (bootfs, list) = std::thread::scope(|s| {
            let b = s.spawn(|| run::run("zpool", &bootfs_args, ZFS_BOUND));
            let l = run::run("zfs", &list_args, ZFS_BOUND);
            (b.join().unwrap_or_else(|_| run::Outcome::failed(bootfs_args.clone(), "thread panicked".into())), l)
        });
        if !bootfs.ok() {
            return Err(fail(Stage::ChooseBe, format!("zpool get bootfs {pool}: {}", bootfs.said()), "zroam.shell=1 to look by hand"));
        }
        if !list.ok() {
            return Err(fail(Stage::ChooseBe, format!("zfs list {pool}: {}", list.said()), "zroam.shell=1 to look by hand"));
        }
        let ds = be::parse_list(&list.stdout);
        let mut values = bootfs.stdout.lines().map(str::trim);
        let bootfs = values.next().unwrap_or("-").to_string();
        self.record.checkpoint = values.next().filter(|v| !v.is_empty() && *v != "-").map(str::to_string);
        if let Some(c) = &self.record.checkpoint {
            log::info!("{pool} has a checkpoint ({c}): zroam.rewind=checkpoint goes back to it");
        }
        let chosen = be::choose(pool, &bootfs, &ds, &self.opts.cmdline);
        let cmd = &self.opts.cmdline;
        let offer = cmd.menu.is_some() || (cmd.menu_offer && matches!(&chosen, Err(r) if r.ambiguous));
        let chosen = if offer { self.be_menu(pool, &bootfs, &ds, chosen) } else { chosen };
        let plan = chosen.map_err(Failure::from)?;
        let plan = self.prepare_be(plan, &ds)?;
        log::info!("boot environment {}: {}", plan.dataset, plan.reason);
        Ok((plan, ds, bootfs))
    }

    /// The menu (`zroam.menu`, or offered when several BEs and nothing picks one). A pick
    /// boots as `root=` would; no pick leaves the boot's own answer, a refusal included.
    fn be_menu(
        &mut self,
        pool: &str,
        bootfs: &str,
        ds: &[be::Dataset],
        chosen: Result<be::BePlan, be::BeRefusal>,
    ) -> Result<be::BePlan, be::BeRefusal> {
        let root = format!("{pool}/ROOT");
        let o = self.zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-s", "creation", "-r", &root]);
        let snaps: Vec<String> = if o.ok() { o.stdout.lines().map(str::to_string).collect() } else { Vec::new() };
        let default = chosen.as_ref().ok().map(|p| p.dataset.clone());
        let mut m = crate::decide::menu::for_bes(pool, bootfs, ds, &snaps, default.as_deref());
        if let (Some(rep), Some(guid)) = (&self.probe, self.record.pool.as_ref().and_then(|p| p["guid"].as_u64())) {
            m.also = crate::decide::menu::other_pools(&rep.pools, guid);
        }
        if m.items.is_empty() {
            return chosen;
        }
        let cmd = &self.opts.cmdline;
        let countdown = cmd.menu.filter(|_| default.is_some());
        let bound = if default.is_some() { menu_bound(cmd.key_timeout) } else { OFFER_BOUND };
        let banner = "zroam: the pool is imported; exit the shell to return to the menu";
        let (name, snapshot) = match self.ask(&m, "boot environments", countdown, bound, banner) {
            Some(Pick::Item { index }) => (m.items[index].name.clone(), None),
            Some(Pick::Snapshot { index, snapshot }) => (m.items[index].name.clone(), Some(snapshot)),
            _ => return chosen,
        };
        if snapshot.is_none() && default.as_deref() == Some(name.as_str()) {
            return chosen;
        }
        self.opts.cmdline.root = Some(RootSpec::Dataset { pool: pool.to_string(), dataset: Some(name), snapshot });
        let mut p = be::choose(pool, bootfs, ds, &self.opts.cmdline)?;
        p.reason = "picked in the menu".into();
        Ok(p)
    }

    /// Snapshots, rollbacks and clones the command line asks for (`decide::be::prepare`):
    /// the BE's snapshots are listed only then (a pool may hold thousands).
    fn prepare_be(&mut self, plan: be::BePlan, ds: &[be::Dataset]) -> Result<be::BePlan, Failure> {
        if !be::BePlan::wants_snapshots(&self.opts.cmdline) {
            return Ok(plan);
        }
        let o = self.zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &plan.dataset]);
        if !o.ok() {
            return Err(fail(
                Stage::ChooseBe,
                format!("zfs list -t snapshot {}: {}", plan.dataset, o.said()),
                "zroam.shell=1 to look by hand",
            ));
        }
        let snaps: Vec<String> = o.stdout.lines().map(str::to_string).collect();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        be::prepare(plan, ds, &snaps, &self.opts.cmdline, release.trim()).map_err(Failure::from)
    }

    /// Make the snapshots, rollbacks and clones planned. A failed snapshot only warns (as
    /// dracut's `bootfs.snapshot`); a failed rollback or clone stops the boot, which would
    /// otherwise start something the command line did not ask for.
    pub(super) fn apply_steps(&mut self, plan: &be::BePlan) -> Result<(), Failure> {
        for step in &plan.steps {
            let o = match step {
                be::Step::Snapshot { snapshot } => self.zfs(&["snapshot", "-r", snapshot]),
                be::Step::Rollback { snapshot } => self.zfs(&["rollback", "-r", snapshot]),
                be::Step::Clone { snapshot, target, mountpoint } => {
                    let mp = format!("{}={mountpoint}", be::CLONE_MOUNTPOINT_PROP);
                    self.zfs(&["clone", "-o", "canmount=noauto", "-o", "mountpoint=none", "-o", &mp, snapshot, target])
                }
            };
            let what = match step {
                be::Step::Snapshot { snapshot } => format!("snapshot {snapshot}"),
                be::Step::Rollback { snapshot } => format!("rollback to {snapshot}"),
                be::Step::Clone { snapshot, target, .. } => format!("clone of {snapshot} as {target}"),
            };
            if o.ok() {
                log::info!("{what}: done");
                self.record.steps.push(what);
                continue;
            }
            match step {
                be::Step::Snapshot { .. } => self.warn(format!("{what} failed: {}", o.said())),
                be::Step::Rollback { .. } => {
                    return Err(fail(
                        Stage::Snapshots,
                        format!("{what} failed: {}", o.said()),
                        "a clone of a later snapshot stops a rollback: zfs destroy or promote it by hand (zroam.shell=1), or drop rollback=/bootfs.rollback",
                    ))
                }
                be::Step::Clone { .. } => {
                    return Err(fail(Stage::Snapshots, format!("{what} failed: {}", o.said()), "zroam.shell=1 to look by hand, or boot the BE itself"))
                }
            }
        }
        Ok(())
    }

    /// The one-shot next boot is consumed before use (if this BE fails to boot, the next
    /// boot falls back) and after the keys are loaded (nothing is written before then).
    pub(super) fn consume_nextboot(
        &mut self,
        pool: &str,
        plan: be::BePlan,
        mut ds: Vec<be::Dataset>,
        bootfs: &str,
    ) -> Result<be::BePlan, Failure> {
        let mut plan = plan;
        if let Some(on) = plan.consume_nextboot.clone() {
            let o = self.zfs(&["inherit", be::NEXTBOOT_PROP, &on]);
            if !o.ok() {
                self.warn(format!("cannot clear {} on {on} ({}); ignoring it", be::NEXTBOOT_PROP, o.said()));
                for d in ds.iter_mut() {
                    d.nextboot = None;
                }
                plan = be::choose(pool, bootfs, &ds, &self.opts.cmdline).map_err(Failure::from)?;
                plan = self.prepare_be(plan, &ds)?;
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
    pub(super) fn load_zfs_keys(&mut self, plan: &be::BePlan, ds: &[be::Dataset]) -> Result<(), Failure> {
        let rep = self.probe.clone().unwrap_or_default();
        let pid1 = self.opts.load_hw_modules;
        let cmd = self.opts.cmdline.clone();
        let r = self.keys.load_zfs(&zfskey::needed(plan, ds), &rep, &cmd, pid1);
        self.record.keys = self.keys.records.clone();
        r.map_err(|s| fail(Stage::Keys, s.message, s.hint))
    }
}
