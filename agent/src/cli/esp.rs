//! `zroam esp`: the ESP mirror on a running system.

use super::Res;
use crate::esp::{set, sync};
use crate::probe;
use crate::sys::{efi, mounts};
use std::path::PathBuf;
use std::process::ExitCode;

const RUNNING_BUDGET: std::time::Duration = std::time::Duration::from_secs(300);

const USAGE: &str = "usage: zroam esp sync [--dry-run] [--hook] | status | add PARTUUID | remove PARTUUID   [--json] [--pool-guid G] [--efivars DIR] [--budget S (default 300)] [--pin FILE]

--hook: for the hooks that run after the boot files change: silent when / is not on ZFS or
there is no secondary ESP to sync to; one line per secondary otherwise.";

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut action = None;
    let mut target = None;
    let (mut dry_run, mut json, mut hook) = (false, false, false);
    let mut pin_path = PathBuf::from(crate::decide::pin::PATH);
    let mut guid = None;
    let mut efivars = PathBuf::from("/sys/firmware/efi/efivars");
    // On a running system nothing waits for the sync the way a boot does: a longer bound.
    let mut budget = RUNNING_BUDGET;
    while let Some(arg) = args.next()? {
        match arg {
            Value(v) if action.is_none() => action = Some(v.string()?),
            Value(v) if target.is_none() => target = Some(v.string()?),
            Long("dry-run") => dry_run = true,
            Long("json") => json = true,
            Long("hook") => hook = true,
            Long("pin") => pin_path = PathBuf::from(args.value()?),
            Long("pool-guid") => guid = Some(args.value()?.parse()?),
            Long("efivars") => efivars = PathBuf::from(args.value()?),
            Long("budget") => budget = std::time::Duration::from_secs_f64(args.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let Some(guid) = guid.or_else(mounts::root_pool_guid) else {
        if hook {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("zroam esp: / is not on ZFS here; --pool-guid GUID names the pool");
        return Ok(ExitCode::from(2));
    };
    // The root pin names ESPs that belong to the set wherever they are (a running system
    // keeps the one its ramdisk was made with in the same place, when it was staged there).
    let pinned = crate::decide::pin::esps_for(&crate::decide::pin::load(&pin_path), guid);
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
            match sync::update_set(&rep, guid, booted, &pinned, &base, |s: &mut set::SetFile| {
                s.esps.retain(|x| *x != u);
                if add {
                    s.esps.push(u);
                }
            }) {
                Ok(s) => {
                    print!("{}", set::render(&s));
                    eprintln!("zroam esp: written to the booted ESP; `zroam esp sync` (or the next boot) brings the others in line");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("zroam esp: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        (Some(a @ ("sync" | "status")), None) => {
            let mode = if a == "sync" { sync::Mode::Sync } else { sync::Mode::Check };
            let opts = sync::Options { mode, dry_run, budget, mount_base: base, pinned };
            let r = sync::run(&rep, guid, booted, &opts);
            if hook {
                return Ok(hook_summary(&r));
            }
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

/// What a hook prints: nothing when there is nothing to sync to; else one line per
/// secondary, and the warnings on stderr (exit 1 with warnings; the hooks ignore it).
fn hook_summary(r: &sync::EspReport) -> ExitCode {
    let secondaries: Vec<_> = r.esps.iter().filter(|e| e.esp.as_ref().is_some_and(|x| x.role == set::Role::Secondary)).collect();
    // md-mirrored ESPs are md's to keep alike: alone they are no set to report on.
    let others =
        r.esps.iter().filter(|e| e.esp.as_ref().is_some_and(|x| x.role != set::Role::Primary && !x.role.left_to_a_layer())).count();
    if others == 0 {
        return ExitCode::SUCCESS;
    }
    if let Some(why) = &r.check_only {
        eprintln!("zroam esp: nothing synced: {why}");
    }
    for e in secondaries {
        let id = e.esp.as_ref().map(|x| x.partuuid.to_string()).unwrap_or_default();
        println!(
            "zroam esp: {id}: {} copied, {} deleted, {} foreign left alone{}",
            e.copied.len(),
            e.deleted.len(),
            e.foreign.len(),
            if e.verified { "" } else { " (not verified)" }
        );
    }
    for w in &r.warnings {
        eprintln!("zroam esp: {w}");
    }
    if r.warnings.is_empty() && r.check_only.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::set::{Esp, Role};

    fn esp(n: u8, role: Role) -> sync::EspResult {
        let e = Esp { partuuid: uuid::Uuid::from_bytes([n; 16]), node: None, disk: None, member_because: String::new(), role };
        sync::EspResult { esp: Some(e), ..sync::EspResult::default() }
    }

    #[test]
    fn the_hook_is_silent_without_a_set_and_speaks_up_for_a_broken_one() {
        let md = roles_of(&[Role::Primary, md_member()]);
        let mut r = sync::EspReport { esps: md, warnings: vec!["ESP skipped: md".into()], ..Default::default() };
        assert_eq!(format!("{:?}", hook_summary(&r)), format!("{:?}", ExitCode::SUCCESS), "md keeps that pair: nothing to say");
        r.esps = roles_of(&[Role::Primary, Role::Skipped { why: "no FAT filesystem found on it".into() }]);
        assert_eq!(format!("{:?}", hook_summary(&r)), format!("{:?}", ExitCode::from(1)), "a broken secondary is reported");
    }

    fn roles_of(roles: &[Role]) -> Vec<sync::EspResult> {
        roles.iter().enumerate().map(|(i, r)| esp(i as u8, r.clone())).collect()
    }

    /// The role `esp::set::roles` gives an md member, as it gives it.
    fn md_member() -> Role {
        let r = Role::Skipped { why: "an mdraid member (md keeps this copy in step)".into() };
        assert!(r.left_to_a_layer());
        r
    }
}
