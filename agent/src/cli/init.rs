//! `zroam init`: PID 1 of a zroam ramdisk.

use crate::boot::{self, emergency, setup};
use crate::decide::cmdline;
use crate::report::{self, Mode};
use crate::sys::console;
use std::path::PathBuf;
use std::process::ExitCode;

/// Never returns as PID 1 while there is anything left to try.
pub fn run() -> ExitCode {
    let pid1 = std::process::id() == 1;
    let mut warnings = Vec::new();
    if pid1 {
        setup::search_path();
        warnings = setup::pseudo_filesystems();
        setup::console_stdio();
    }
    let cmd = cmdline::parse(&super::read_cmdline(None));
    console::init(cmd.quiet, cmd.debug);
    if pid1 {
        console::trust_kernel_echo();
    }
    for w in warnings {
        log::warn!("{w}");
    }
    log::info!("zroam {} starting", env!("CARGO_PKG_VERSION"));
    // In another ramdisk the network is its generator's business (dropbear-initramfs,
    // dracut's network module); in zroam's own, zroam brings it up for remote unlock.
    if let (true, Some(net)) = (pid1, cmd.net.clone()) {
        boot::remote::start(net);
    }
    loop {
        let opts = boot::Options::new(cmd.clone(), PathBuf::from("/sysroot"), true, pid1);
        let mut b = boot::Boot::new(opts, report::writer(PathBuf::from(report::PATH), Mode::Init));
        if let Err(f) = b.run() {
            eprint!("{}", emergency::explain(&f, report::PATH));
            log::error!("{}: {}", f.stage, f.message);
            if !pid1 {
                return ExitCode::from(1);
            }
            emergency::shell("emergency shell; exit it to try the boot again", emergency::Why::Failure);
            log::info!("trying the boot again");
        }
    }
}
