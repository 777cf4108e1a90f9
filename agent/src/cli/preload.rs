//! `zroam preload`: `modprobe zfs` from a generator's earliest hook (`decide::preload`), so
//! that zfs.ko, seconds to load, is ready or nearly when `zroam boot` starts. It never
//! fails a boot: exit 0 whatever happens (2 only for a usage error), a problem one line on
//! stderr. It probes nothing.
//!
//! With `--drivers` it first loads the drivers of the storage controllers already present
//! (the modaliases `zroam boot` loads as `/init`), waiting at most `DRIVERS_BOUND`. zfs.ko's
//! init runs its checksum and RAID-Z benchmarks without preemption for long stretches,
//! which holds up the rest of the machine while it lasts (seconds under emulation): other
//! module loads, and under systemd udev's start and its trigger, which come late. Loaded
//! first, the disks' drivers find the disks before that rather than after it. udev loads
//! the same modules later and finds them loaded; `-b` keeps modprobe's blacklist. Where
//! udev triggers right after the hook (initramfs-tools, mkinitcpio, dracut without
//! systemd), udev's own loads come as early and the drivers' pass only delays zfs.ko.
//!
//! Racing `zroam boot` is safe: boot starts its own `modprobe zfs` unless zfs is live
//! (`Boot::load_modules`). kmod's modprobe returns 0 at once for a module whose sysfs
//! directory exists, `coming` included; one started before that waits in the kernel for
//! the first load to end and gets EEXIST, which kmod counts as success. Boot then waits,
//! bounded, for `initstate` to read `live` and for `/dev/zfs` (`Boot::wait_zfs_module`),
//! and a failed early load leaves boot's own modprobe to load the module or to report why
//! it cannot.

use super::Res;
use crate::boot::record::{LoadedBy, ZfsLoad, PRELOAD_RECORD};
use crate::decide::preload::{self, Preload};
use crate::sys::modules;
use crate::sys::{run, usage};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the storage drivers may hold back zfs.ko: a driver whose init hangs costs this
/// much and no more (its modprobe goes on alone).
const DRIVERS_BOUND: Duration = Duration::from_secs(3);

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let (mut line, mut drivers) = (None, false);
    while let Some(arg) = args.next()? {
        match arg {
            Long("cmdline") => line = Some(args.value()?.string()?),
            Long("drivers") => drivers = true,
            _ => return Err(arg.unexpected()),
        }
    }
    if preload::decide(&super::read_cmdline(line), modules::zfs_loaded()) != Preload::Load {
        return Ok(ExitCode::SUCCESS);
    }
    let mut rec = ZfsLoad { by: LoadedBy::Preload, hook_s: usage::uptime(), ..ZfsLoad::default() };
    // --drivers: the drivers first, bounded. zfs.ko's init holds up every other module load
    // (and most of the machine) while it runs, so a driver started beside it finds its
    // disks only after it. Their modprobe takes about a second under emulation.
    let aliases = if drivers { modules::present_aliases(Path::new("/sys")) } else { Vec::new() };
    if !aliases.is_empty() {
        match modules::spawn_modprobe(&aliases) {
            // modprobe -q -a exits 1 when an alias has no module (a built-in driver): not news.
            Ok(c) => match run::Pending::new(c).wait_detached(Instant::now() + DRIVERS_BOUND) {
                Some(Err(e)) => eprintln!("zroam preload: loading storage drivers: {e}"),
                None => eprintln!("zroam preload: storage drivers still loading after {DRIVERS_BOUND:?}; loading zfs now"),
                Some(Ok(_)) => {}
            },
            Err(e) => eprintln!("zroam preload: cannot load storage drivers: {e}"),
        }
        rec.drivers_s = rec.hook_s.zip(usage::uptime());
    }
    rec.started_s = usage::uptime();
    // Written before the load too: a boot that starts meanwhile sees who is loading zfs.
    keep(&rec);
    // Waiting keeps this the unit's main process under systemd, so the load is not killed
    // when it "ends"; under a shell hook it runs in the background.
    match modules::spawn_modprobe(&["zfs".to_string()]).and_then(|mut c| c.wait()) {
        Ok(st) if !st.success() => eprintln!("zroam preload: modprobe zfs failed ({st}); zroam boot will try again"),
        Err(e) => eprintln!("zroam preload: cannot load zfs: {e}"),
        Ok(_) => {}
    }
    if modules::zfs_loaded() {
        rec.live_s = usage::uptime();
        keep(&rec);
    }
    Ok(ExitCode::SUCCESS)
}

/// Leaves the record for `zroam boot`'s report (best effort: a boot never needs it). The
/// directory is the report's, root's alone.
fn keep(rec: &ZfsLoad) {
    use std::os::unix::fs::DirBuilderExt;
    let path = Path::new(PRELOAD_RECORD);
    let Some(dir) = path.parent() else { return };
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    let tmp = path.with_extension("json.tmp");
    let done = serde_json::to_vec(rec)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        eprintln!("zroam preload: cannot write {}: {e}", path.display());
    }
}
