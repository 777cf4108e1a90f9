//! `zroam status`: this boot's report, read back through the typed contract.

use super::Res;
use crate::report::{self, timeline, Report};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let (mut json, mut chart, mut svg) = (false, false, None);
    let mut path = PathBuf::from(report::PATH);
    while let Some(arg) = args.next()? {
        match arg {
            Long("json") => json = true,
            Long("timeline") => chart = true,
            Long("svg") => svg = Some(PathBuf::from(args.value()?)),
            Long("report") => path = PathBuf::from(args.value()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if json && chart {
        eprintln!("zroam: status: --json and --timeline cannot go together: --json prints the report as data (its \"stages\" hold the timings), --timeline draws them for people");
        return Ok(ExitCode::from(2));
    }
    let r = match Report::read(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zroam: {e} (this boot did not go through zroam?)");
            return Ok(ExitCode::from(1));
        }
    };
    let t = timeline::build(&r);
    if let Some(out) = &svg {
        if let Err(e) = write_whole(out, timeline::svg::render(&t).as_bytes()) {
            eprintln!("zroam: cannot write {}: {e}", out.display());
            return Ok(ExitCode::from(1));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r).expect("report serialises"));
    } else if chart {
        print!("{}", timeline::text::render(&t));
    } else if svg.is_none() {
        print!("{}", render(&r));
    }
    Ok(ExitCode::SUCCESS)
}

/// Written to a temporary name beside `path` and renamed: `path` is whole or as it was.
/// The temporary is created exclusively (O_EXCL), so in a shared directory such as /tmp
/// nobody can have put a link there for root to write through.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Write};
    use std::os::unix::ffi::OsStrExt;
    if path.is_dir() || path.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Error::new(ErrorKind::IsADirectory, "a directory, not a file name"));
    }
    let name = path.file_name().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let r = f.write_all(bytes).and_then(|_| f.sync_all()).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let s = serde_json::to_value(v).unwrap_or_default();
    s.as_str().map_or(s.to_string(), str::to_string)
}

/// The report for people: one line per decision.
pub fn render(r: &Report) -> String {
    let b = &r.boot;
    let dash = || "-".to_string();
    let mut s = String::new();
    let _ = writeln!(s, "outcome:  {}", json(&b.outcome));
    match &b.pool {
        Some(p) if p["decision"] == "chosen" => {
            let _ = writeln!(
                s,
                "pool:     {} (guid {}): {}",
                p["name"].as_str().unwrap_or("?"),
                p["guid"],
                p["reason"].as_str().unwrap_or("?")
            );
        }
        Some(c) => {
            let _ = writeln!(s, "pool:     none: {c}");
        }
        None => {
            let _ = writeln!(s, "pool:     -");
        }
    }
    if let Some(h) = &b.hostid {
        let action = serde_json::to_value(&h.action).ok().and_then(|v| v["action"].as_str().map(str::to_string)).unwrap_or_else(dash);
        let _ = writeln!(
            s,
            "hostid:   system {} label {} action {action}",
            h.system.clone().unwrap_or_else(dash),
            h.label.clone().unwrap_or_else(dash)
        );
    }
    let _ = writeln!(s, "import:   {}", b.import.as_ref().map_or_else(dash, |i| i.outcome.argv.join(" ")));
    for k in &b.keys {
        let src = k.source.as_ref().map(|x| format!(" with {x}")).unwrap_or_default();
        let wrong = if k.wrong_keys > 0 { format!(" ({} wrong)", k.wrong_keys) } else { String::new() };
        let _ = writeln!(s, "key:      {} {}: {}{src}{wrong}", json(&k.kind), k.what, json(&k.outcome));
    }
    let _ = writeln!(
        s,
        "BE:       {}",
        b.be.as_ref().map_or_else(dash, |be| format!(
            "{}: {}",
            be["dataset"].as_str().unwrap_or("?"),
            be["reason"].as_str().unwrap_or("?")
        ))
    );
    for m in &b.mounts {
        let _ = writeln!(s, "mount:    {} on {}", m.mount.dataset, m.path);
    }
    if !b.stages.is_empty() {
        let parts: Vec<String> = b.stages.iter().map(|t| format!("{} {} ms", t.name, t.ms)).collect();
        let _ = writeln!(s, "stages:   {}", parts.join(", "));
    }
    if let Some(z) = &b.zfs_load {
        let at = |v: Option<f64>| v.filter(|t| t.is_finite()).map_or_else(dash, |t| format!("{t:.2} s"));
        let _ = writeln!(s, "zfs.ko:   loaded by {}, from {} to {} of uptime", json(&z.by), at(z.started_s), at(z.live_s));
    }
    if let Some(f) = &b.failure {
        let _ = writeln!(s, "failure:  {} — fix: {}", f.message, f.hint);
    }
    for w in &b.warnings {
        let _ = writeln!(s, "warning:  {w}");
    }
    s
}
