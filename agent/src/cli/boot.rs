//! `zroam boot`: stages probe to pivot, for a generator's hook (`--no-switch`) or by hand.

use super::Res;
use crate::boot::{self, emergency};
use crate::decide::cmdline;
use crate::report::{self, Mode};
use crate::sys::console;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut sysroot = PathBuf::from("/sysroot");
    let mut switch = true;
    let mut line = None;
    while let Some(arg) = args.next()? {
        match arg {
            Long("sysroot") => sysroot = PathBuf::from(args.value()?),
            Long("no-switch") => switch = false,
            Long("cmdline") => line = Some(args.value()?.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let cmd = cmdline::parse(&super::read_cmdline(line));
    console::init(cmd.quiet, cmd.debug);
    if !switch && !cmd.wants_zfs_root() {
        // A generator's hook runs us on every boot; another kind of root is not ours.
        log::info!("root={} is not a ZFS root; nothing to do", cmd.foreign_root.as_deref().unwrap_or(""));
        return Ok(ExitCode::SUCCESS);
    }
    // The booted ESP is read from efivarfs, which this generator may not have mounted.
    if let Some(w) = crate::boot::setup::efivarfs() {
        log::warn!("{w}");
    }
    let sink = report::writer(PathBuf::from(report::PATH), Mode::Boot);
    let mut b = boot::Boot::new(boot::Options::new(cmd, sysroot, switch, false), sink);
    match b.run() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(f) => {
            eprint!("{}", emergency::explain(&f, report::PATH));
            Ok(ExitCode::from(1))
        }
    }
}
