//! The `zroam` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zroam::{boot, choose, cmdline, console, efi, emergency, espset, espsync, hostid, import, probe, report, run, setup};

const USAGE: &str = "usage: zroam init | boot | probe | plan | status | esp   (zroam --version)

  init    PID 1 of a zroam ramdisk (also when run as /init): mount /proc /sys /dev /run,
          load storage and zfs modules, then boot; on failure, the report and a shell.
  boot [--sysroot DIR] [--no-switch] [--cmdline STR]
          find the pool (waiting on uevents), import it, choose the boot environment, mount
          it at DIR (default /sysroot) and switch root into its init, or with --no-switch
          stop after mounting (for dracut, initramfs-tools and mkinitcpio hooks).
  probe [--json] [--timeout S] [--dev PATH]...
          read every block device: partition tables, ESPs, LUKS, md, ZFS labels; group the
          labels into pools. Read-only.
  plan [--json] [--cmdline STR] [--dev PATH]... [--hostid HEX] [--efivars DIR]
          what boot would decide now (pool, why, hostid, import command); changes nothing.
  status [--json] [--report PATH]
          this boot's report (/run/zroam/report.json).
  esp sync [--dry-run] | esp status | esp add|remove PARTUUID
          the ESP mirror on a running system: sync every secondary from the ESP the firmware
          booted, show each ESP's role and drift, or change the ESP set.

Kernel command line: root=ZFS=POOL[/DATASET] | root=zfs:AUTO, zroam.pool=NAME|GUID,
zroam.wait=S (30), zroam.grace=S (2), zroam.force=1 (zfs_force=1), zroam.hostid=adopt|strict,
zroam.readonly=1, zroam.esp=sync|check|off, zroam.esp.budget=S (15), zroam.shell=1,
zroam.debug=1, init=PATH, quiet.
";

type Res = Result<ExitCode, lexopt::Error>;

fn read_cmdline(over: Option<String>) -> String {
    over.unwrap_or_else(|| std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
}

fn probe_cmd(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut json = false;
    let mut opts = probe::Options::default();
    while let Some(arg) = args.next()? {
        match arg {
            Long("json") => json = true,
            Long("timeout") => opts.device_timeout = Duration::from_secs_f64(args.value()?.parse()?),
            Long("dev") => opts.paths.push(PathBuf::from(args.value()?)),
            Long("sys") => opts.sys = PathBuf::from(args.value()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let rep = probe::probe(&opts);
    if json {
        println!("{}", serde_json::to_string_pretty(&rep).expect("report serialises"));
    } else {
        print!("{}", zroam::table::render(&rep));
    }
    Ok(ExitCode::SUCCESS)
}

fn boot_opts(cmd: cmdline::Cmdline, sysroot: PathBuf, switch: bool, pid1: bool) -> boot::Options {
    boot::Options {
        cmdline: cmd,
        sysroot,
        switch,
        load_hw_modules: pid1,
        sys: PathBuf::from("/sys"),
        report_path: PathBuf::from(report::PATH),
    }
}

/// PID 1: never returns while there is anything left to try.
fn init_cmd() -> ExitCode {
    let pid1 = std::process::id() == 1;
    let mut warnings = Vec::new();
    if pid1 {
        warnings = setup::pseudo_filesystems();
        setup::console_stdio();
    }
    let cmd = cmdline::parse(&read_cmdline(None));
    console::init(cmd.quiet, cmd.debug);
    if pid1 {
        console::trust_kernel_echo();
    }
    for w in warnings {
        log::warn!("{w}");
    }
    log::info!("zroam {} starting", env!("CARGO_PKG_VERSION"));
    loop {
        let mut b = boot::Boot::new(boot_opts(cmd.clone(), PathBuf::from("/sysroot"), true, pid1), "init");
        if let Err(f) = b.run() {
            eprint!("{}", emergency::explain(&f));
            log::error!("{}: {}", f.stage, f.message);
            if !pid1 {
                return ExitCode::from(1);
            }
            emergency::shell("emergency shell; exit it to try the boot again");
            log::info!("trying the boot again");
        }
    }
}

fn boot_cmd(mut args: lexopt::Parser) -> Res {
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
    let cmd = cmdline::parse(&read_cmdline(line));
    console::init(cmd.quiet, cmd.debug);
    if !switch && !cmd.wants_zfs_root() {
        // A generator's hook runs us on every boot; another kind of root is not ours.
        log::info!("root={} is not a ZFS root; nothing to do", cmd.foreign_root.as_deref().unwrap_or(""));
        return Ok(ExitCode::SUCCESS);
    }
    let mut b = boot::Boot::new(boot_opts(cmd, sysroot, switch, false), "boot");
    match b.run() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(f) => {
            eprint!("{}", emergency::explain(&f));
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(serde::Serialize)]
struct Plan {
    cmdline: cmdline::Cmdline,
    hostid: Option<String>,
    booted_esp: Option<efi::BootedEsp>,
    pool: choose::Choice,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostid_action: Option<choose::HostidAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<Vec<String>>,
    probe: probe::ProbeReport,
}

fn plan_cmd(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut json = false;
    let mut line = None;
    let mut popts = probe::Options::default();
    let mut my_hostid = hostid::current(std::path::Path::new("/"));
    let mut efivars = PathBuf::from("/sys/firmware/efi/efivars");
    while let Some(arg) = args.next()? {
        match arg {
            Long("json") => json = true,
            Long("cmdline") => line = Some(args.value()?.string()?),
            Long("dev") => popts.paths.push(PathBuf::from(args.value()?)),
            Long("sys") => popts.sys = PathBuf::from(args.value()?),
            Long("efivars") => efivars = PathBuf::from(args.value()?),
            Long("hostid") => {
                let v = args.value()?.string()?;
                my_hostid = Some(u32::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|e| lexopt::Error::ParsingFailed { value: v, error: Box::new(e) })?);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    let cmd = cmdline::parse(&read_cmdline(line));
    let rep = probe::probe(&popts);
    let booted = efi::booted_esp(&efivars);
    let facts = choose::Facts { hostid: my_hostid, boot_disk_pools: boot::boot_disk_pools(&rep, booted.as_ref()) };
    let choice = choose::choose(&rep.pools, &cmd, &facts);
    let (mut action, mut import_args) = (None, None);
    if let choose::Choice::Chosen { guid, .. } = &choice {
        let pool = rep.pools.iter().find(|p| p.guid == *guid).expect("chosen from these pools");
        let a = choose::hostid_action(pool, my_hostid, &cmd);
        let devs: Vec<String> = pool.members.iter().filter(|m| m.current).map(|m| m.device.clone()).collect();
        let force = cmd.force || a == choose::HostidAction::Force;
        import_args = Some(std::iter::once("zpool".to_string()).chain(import::args(*guid, &devs, cmd.readonly, force)).collect());
        action = Some(a);
    }
    let plan = Plan {
        cmdline: cmd,
        hostid: my_hostid.map(|h| format!("{h:08x}")),
        booted_esp: booted,
        pool: choice,
        hostid_action: action,
        import: import_args,
        probe: rep,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan).expect("plan serialises"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("hostid:      {}", plan.hostid.as_deref().unwrap_or("none"));
    println!("booted ESP:  {}", plan.booted_esp.as_ref().map_or("unknown".to_string(), |b| format!("{} ({})", b.partuuid, b.source)));
    for w in &plan.cmdline.warnings {
        println!("warning:     {w}");
    }
    let code = match &plan.pool {
        choose::Choice::Chosen { name, guid, reason, readiness } => {
            println!("pool:        {name} (guid {guid}): {reason}");
            match readiness {
                choose::Readiness::Now => println!("ready:       now"),
                choose::Readiness::Grace { why } => println!("ready:       after a {:.1} s grace: {why}", plan.cmdline.grace.as_secs_f64()),
                choose::Readiness::Wait { why } => println!("ready:       not yet, would wait up to {:.0} s: {why}", plan.cmdline.wait.as_secs_f64()),
            }
            if let Some(a) = &plan.hostid_action {
                println!("hostid:      {}", serde_json::to_string(a).unwrap_or_default());
            }
            if let Some(i) = &plan.import {
                println!("import:      {}", i.join(" "));
            }
            println!("BE:          decided after import (root=, org.zroam:nextboot, bootfs, the only BE)");
            0
        }
        choose::Choice::NotFound { why } => {
            println!("pool:        none yet: {why}");
            1
        }
        choose::Choice::Ambiguous { why, candidates } => {
            println!("pool:        refused: {why}");
            for c in candidates {
                println!("  candidate: {}", choose::describe(c));
            }
            1
        }
    };
    Ok(ExitCode::from(code))
}

/// The pool mounted at / (a running system's root pool): its GUID, as zpool reports it.
fn root_pool_guid() -> Option<u64> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let ds = mounts.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.len() > 2 && f[1] == "/" && f[2] == "zfs")?[0].to_string();
    let pool = ds.split('/').next()?.to_string();
    let o = run::run("zpool", &["get", "-H", "-o", "value", "guid", &pool].map(String::from), std::time::Duration::from_secs(30));
    o.stdout.trim().parse().ok()
}

fn esp_cmd(mut args: lexopt::Parser) -> Res {
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
    let Some(guid) = guid.or_else(root_pool_guid) else {
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
            match espsync::update_set(&rep, guid, booted, &base, |s| {
                s.esps.retain(|x| *x != u);
                if add {
                    s.esps.push(u);
                }
            }) {
                Ok(s) => {
                    print!("{}", espset::render(&s));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("zroam esp: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        (Some(a @ ("sync" | "status")), None) => {
            let opts = espsync::Options {
                mode: if a == "sync" { espsync::Mode::Sync } else { espsync::Mode::Check },
                dry_run,
                budget,
                mount_base: base,
            };
            let r = espsync::run(&rep, guid, booted, &opts);
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!("primary: {}", r.primary.map_or("none known (checking only)".into(), |p| p.to_string()));
                for e in &r.esps {
                    let Some(x) = &e.esp else { continue };
                    let role = serde_json::to_value(&x.role).ok().and_then(|v| v["role"].as_str().map(str::to_string)).unwrap_or_default();
                    let drift = e.drift.as_ref().map_or(String::new(), |d| format!(", would copy {} and delete {}", d.copies.len(), d.deletes.len()));
                    println!("{} {:<9} {:<14} copied {} deleted {} kept {}{drift}", x.partuuid, role, x.node.as_deref().unwrap_or("-"), e.copied.len(), e.deleted.len(), e.kept_local.len());
                }
                for w in &r.warnings {
                    println!("warning: {w}");
                }
            }
            Ok(if r.warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        _ => {
            eprintln!("usage: zroam esp sync [--dry-run] | status | add PARTUUID | remove PARTUUID   [--json] [--pool-guid G] [--efivars DIR] [--budget S]");
            Ok(ExitCode::from(2))
        }
    }
}

fn status_cmd(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut json = false;
    let mut path = PathBuf::from(report::PATH);
    while let Some(arg) = args.next()? {
        match arg {
            Long("json") => json = true,
            Long("report") => path = PathBuf::from(args.value()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("zroam: no report at {}: {e} (this boot did not go through zroam?)", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    if json {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("zroam: {} is not a report: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    let s = |p: &str| v.pointer(p).map(|x| x.as_str().map_or(x.to_string(), str::to_string)).unwrap_or("-".into());
    println!("outcome:  {}", s("/outcome"));
    println!("pool:     {} (guid {}): {}", s("/pool/name"), s("/pool/guid"), s("/pool/reason"));
    println!("hostid:   system {} label {} action {}", s("/hostid/system"), s("/hostid/label"), s("/hostid/action"));
    println!("import:   {}", v.pointer("/import/argv").and_then(|a| a.as_array()).map_or("-".into(), |a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" ")));
    if let Some(ks) = v.pointer("/keys").and_then(|m| m.as_array()) {
        for k in ks {
            let src = k["source"].as_str().map(|x| format!(" with {x}")).unwrap_or_default();
            let wrong = k["wrong_keys"].as_u64().filter(|n| *n > 0).map(|n| format!(" ({n} wrong)")).unwrap_or_default();
            println!("key:      {} {}: {}{src}{wrong}", k["kind"].as_str().unwrap_or("?"), k["what"].as_str().unwrap_or("?"), k["outcome"].as_str().unwrap_or("?"));
        }
    }
    println!("BE:       {}: {}", s("/be/dataset"), s("/be/reason"));
    if let Some(ms) = v.pointer("/mounts").and_then(|m| m.as_array()) {
        for m in ms {
            println!("mount:    {} on {}", m["dataset"].as_str().unwrap_or("?"), m["path"].as_str().unwrap_or("?"));
        }
    }
    if let Some(st) = v.pointer("/stages").and_then(|m| m.as_array()) {
        let parts: Vec<String> = st.iter().map(|x| format!("{} {} ms", x["name"].as_str().unwrap_or("?"), x["ms"])).collect();
        println!("stages:   {}", parts.join(", "));
    }
    if v.pointer("/failure").is_some_and(|f| !f.is_null()) {
        println!("failure:  {} — fix: {}", s("/failure/message"), s("/failure/hint"));
    }
    for w in v.pointer("/warnings").and_then(|w| w.as_array()).into_iter().flatten() {
        println!("warning:  {}", w.as_str().unwrap_or("?"));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // As PID 1, the kernel's own boot work before exec is on this process's clock.
    zroam::report::mark_start();
    // Run as the ramdisk's /init: behave as `zroam init`.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name().is_some_and(|n| n == "init") {
        return init_cmd();
    }
    let mut args = lexopt::Parser::from_env();
    let sub = match args.next() {
        Ok(Some(lexopt::Arg::Value(v))) => v.to_string_lossy().into_owned(),
        Ok(Some(lexopt::Arg::Long("help") | lexopt::Arg::Short('h'))) | Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(lexopt::Arg::Long("version"))) => {
            println!("zroam {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match sub.as_str() {
        "init" => return init_cmd(),
        "boot" => boot_cmd(args),
        "probe" => probe_cmd(args),
        "plan" => plan_cmd(args),
        "status" => status_cmd(args),
        "esp" => esp_cmd(args),
        other => {
            eprintln!("zroam: unknown command '{other}'\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    r.unwrap_or_else(|e| {
        eprintln!("zroam: {e}\n{USAGE}");
        ExitCode::from(2)
    })
}
