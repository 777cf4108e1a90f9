//! `zroam esp`: the ESP mirror on a running system.

use super::Res;
use crate::decide::cmdline;
use crate::esp::{set, sync};
use crate::probe;
use crate::sys::{efi, mounts};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: zroam esp sync [--dry-run] | status | add PARTUUID | remove PARTUUID   [--json] [--pool-guid G] [--efivars DIR] [--budget S]";

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut action = None;
    let mut target = None;
    let (mut dry_run, mut json) = (false, false);
    let mut guid = None;
    let mut efivars = PathBuf::from("/sys/firmware/efi/efivars");
    let mut budget = cmdline::DEFAULT_ESP_BUDGET;
    while let Some(arg) = args.next()? {
        match arg {
            Value(v) if action.is_none() => action = Some(v.string()?),
            Value(v) if target.is_none() => target = Some(v.string()?),
            Long("dry-run") => dry_run = true,
            Long("json") => json = true,
            Long("pool-guid") => guid = Some(args.value()?.parse()?),
            Long("efivars") => efivars = PathBuf::from(args.value()?),
            Long("budget") => budget = std::time::Duration::from_secs_f64(args.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let Some(guid) = guid.or_else(mounts::root_pool_guid) else {
        eprintln!("zroam esp: / is not on ZFS here; --pool-guid GUID names the pool");
        return Ok(ExitCode::from(2));
    };
    let rep = probe::probe(&probe::Options::default());
    let booted = efi::booted_esp(&efivars).map(|b| b.partuuid);
    let base = PathBuf::from("/run/zroam/esp");
    match (action.as_deref(), target) {
        (Some("add" | "remove"), Some(t)) => {
            let Ok(u) = uuid::Uuid::parse_str(&t) else {
                eprintln!("zroam esp: '{t}' is not a PARTUUID");
                return Ok(ExitCode::from(2));
            };
            let add = action.as_deref() == Some("add");
            match sync::update_set(&rep, guid, booted, &base, |s| {
                s.esps.retain(|x| *x != u);
                if add {
                    s.esps.push(u);
                }
            }) {
                Ok(s) => {
                    print!("{}", set::render(&s));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("zroam esp: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        (Some(a @ ("sync" | "status")), None) => {
            let opts =
                sync::Options { mode: if a == "sync" { sync::Mode::Sync } else { sync::Mode::Check }, dry_run, budget, mount_base: base };
            let r = sync::run(&rep, guid, booted, &opts);
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", sync::render(&r));
            }
            Ok(if r.warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    }
}
