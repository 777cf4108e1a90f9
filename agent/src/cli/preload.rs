//! `zroam preload`: `modprobe zfs` from a generator's earliest hook (`decide::preload`), so
//! that zfs.ko, seconds to load, is ready or nearly when `zroam boot` starts. It never
//! fails a boot: exit 0 whatever happens (2 only for a usage error), a problem one line on
//! stderr. It probes nothing.
//!
//! Racing `zroam boot` is safe: boot starts its own `modprobe zfs` unless zfs is live
//! (`Boot::load_modules`). kmod's modprobe returns 0 at once for a module whose sysfs
//! directory exists, `coming` included; one started before that waits in the kernel for
//! the first load to end and gets EEXIST, which kmod counts as success. Boot then waits,
//! bounded, for `initstate` to read `live` and for `/dev/zfs` (`Boot::wait_zfs_module`),
//! and a failed early load leaves boot's own modprobe to load the module or to report why
//! it cannot.

use super::Res;
use crate::decide::preload::{self, Preload};
use crate::sys::modules;
use std::process::ExitCode;

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut line = None;
    while let Some(arg) = args.next()? {
        match arg {
            Long("cmdline") => line = Some(args.value()?.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if preload::decide(&super::read_cmdline(line), modules::zfs_loaded()) != Preload::Load {
        return Ok(ExitCode::SUCCESS);
    }
    // Waiting keeps this the unit's main process under systemd, so the load is not killed
    // when it "ends"; under a shell hook it runs in the background.
    match modules::spawn_modprobe(&["zfs".to_string()]).and_then(|mut c| c.wait()) {
        Ok(st) if !st.success() => eprintln!("zroam preload: modprobe zfs failed ({st}); zroam boot will try again"),
        Err(e) => eprintln!("zroam preload: cannot load zfs: {e}"),
        Ok(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}
