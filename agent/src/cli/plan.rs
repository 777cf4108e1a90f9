//! `zroam plan`: what the boot would decide now, through the boot's own decision function
//! (`decide::plan::plan`). Changes nothing.

use super::Res;
use crate::decide::choose::{self, Choice, Readiness};
use crate::decide::cmdline::{self, Cmdline};
use crate::decide::pin;
use crate::decide::plan::{self, Plan, System};
use crate::decide::resume::{Action, Guard};
use crate::probe::{self, ProbeReport};
use crate::sys::efi::{self, BootedEsp};
use crate::sys::hostid;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Serialize)]
struct Shown {
    cmdline: Cmdline,
    hostid: Option<String>,
    booted_esp: Option<BootedEsp>,
    #[serde(flatten)]
    plan: Plan,
    probe: ProbeReport,
}

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut json = false;
    let mut line = None;
    let mut popts = probe::Options::default();
    let mut my_hostid = hostid::current(std::path::Path::new("/"));
    let mut efivars = PathBuf::from("/sys/firmware/efi/efivars");
    let mut pin_path = PathBuf::from(pin::PATH);
    let mut hostid_given = false;
    let mut own_ramdisk = false;
    while let Some(arg) = args.next()? {
        match arg {
            Long("json") => json = true,
            Long("cmdline") => line = Some(args.value()?.string()?),
            Long("dev") => popts.paths.push(PathBuf::from(args.value()?)),
            Long("sys") => popts.sys = PathBuf::from(args.value()?),
            Long("efivars") => efivars = PathBuf::from(args.value()?),
            Long("pin") => pin_path = PathBuf::from(args.value()?),
            Long("init") => own_ramdisk = true,
            Long("hostid") => {
                hostid_given = true;
                let v = args.value()?.string()?;
                my_hostid = Some(
                    u32::from_str_radix(v.trim_start_matches("0x"), 16)
                        .map_err(|e| lexopt::Error::ParsingFailed { value: v, error: Box::new(e) })?,
                );
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let cmd = cmdline::parse(&super::read_cmdline(line));
    if !hostid_given {
        // As the boot does: spl_hostid= sets the hostid before anything is decided.
        my_hostid = cmd.spl_hostid.or(my_hostid);
    }
    let rep = probe::probe(&popts);
    let sys = System { hostid: my_hostid, booted: efi::booted_esp(&efivars), pin: pin::load(&pin_path), own_ramdisk };
    let decided = plan::plan(&rep, &cmd, &sys);
    let shown = Shown { cmdline: cmd, hostid: my_hostid.map(|h| format!("{h:08x}")), booted_esp: sys.booted, plan: decided, probe: rep };
    if json {
        println!("{}", serde_json::to_string_pretty(&shown).expect("plan serialises"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("hostid:      {}", shown.hostid.as_deref().unwrap_or("none"));
    println!("booted ESP:  {}", shown.booted_esp.as_ref().map_or("unknown".to_string(), |b| format!("{} ({})", b.partuuid, b.source)));
    let t = &shown.plan.trust;
    println!("pin:         {}", serde_json::to_string(&t.pin).unwrap_or_default());
    for i in &t.ignored {
        println!("ignored:     {i}");
    }
    for w in &shown.cmdline.warnings {
        println!("warning:     {w}");
    }
    let code = match &shown.plan.pool {
        Choice::Chosen { name, guid, reason, readiness } => {
            println!("pool:        {name} (guid {guid}): {reason}");
            match readiness {
                Readiness::Now => println!("ready:       now"),
                Readiness::Grace { why } => println!("ready:       after a {:.1} s grace: {why}", shown.cmdline.grace.as_secs_f64()),
                Readiness::Settle { why } => println!("ready:       once discovery has settled: {why}"),
                Readiness::Wait { why } => {
                    println!("ready:       not yet, would wait up to {:.0} s: {why}", shown.cmdline.wait.as_secs_f64())
                }
            }
            if let Some(a) = &shown.plan.hostid_action {
                println!("hostid:      {}", serde_json::to_string(a).unwrap_or_default());
            }
            if let Some(i) = &shown.plan.import {
                println!("import:      {}", i.argv.join(" "));
            }
            println!("resume:      {}", describe_resume(&shown.plan.resume));
            println!("BE:          decided after import (root=, org.zroam:nextboot, bootfs, the only BE)");
            0
        }
        Choice::NotFound { why } => {
            println!("pool:        none yet: {why}");
            1
        }
        Choice::Ambiguous { why, candidates } => {
            println!("pool:        refused: {why}");
            for c in candidates {
                println!("  candidate: {}", choose::describe(c));
            }
            1
        }
        Choice::Refused { why, found, hint } => {
            println!("pool:        refused: {why}");
            for f in found {
                println!("  found:     {f}");
            }
            println!("  settle:    {hint}");
            1
        }
    };
    Ok(ExitCode::from(code))
}

/// The hibernation guard in one line.
fn describe_resume(g: &Guard) -> String {
    let seen = if g.images.is_empty() { String::new() } else { format!(" ({})", g.images.join(", ")) };
    match &g.action {
        Action::Nothing => "nothing to do: no hibernation image".into(),
        Action::Resume { device, major_minor, .. } => format!("resume the image on {device} ({major_minor}) first{seen}"),
        Action::ReadOnly { why, hint } => format!("import read-only: {why}; {hint}"),
        Action::Discard { device, restore } => {
            format!("drop the image on {device}{}{seen}", if *restore { " (plain swap signature restored)" } else { " (left on the disk)" })
        }
    }
}
