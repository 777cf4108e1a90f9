//! `zroam pin`: the root's identity for the ramdisk (`decide::pin`), from the labels of
//! the pool as the probe reads them now. The generators run it when they build an image.

use super::Res;
use crate::decide::cmdline::parse_guid;
use crate::decide::pin;
use crate::probe;
use crate::sys::mounts;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let mut popts = probe::Options::default();
    let mut which = None;
    let mut out = None;
    while let Some(arg) = args.next()? {
        match arg {
            Long("pool") => which = Some(args.value()?.string()?),
            Long("dev") => popts.paths.push(PathBuf::from(args.value()?)),
            Long("sys") => popts.sys = PathBuf::from(args.value()?),
            Short('o') | Long("output") => out = Some(PathBuf::from(args.value()?)),
            _ => return Err(arg.unexpected()),
        }
    }
    let fail = |m: String| {
        eprintln!("zroam pin: {m}");
        Ok(ExitCode::from(1))
    };
    // The pool of / is asked of zpool first: a host whose / is not ZFS is told so without
    // reading every disk.
    let root = match which {
        Some(_) => None,
        None => match mounts::root_pool_guid() {
            Some(g) => Some(g),
            None => return fail("/ is not on ZFS here; --pool NAME|GUID names the pool".into()),
        },
    };
    let rep = probe::probe(&popts);
    let guid = match which.as_deref() {
        Some(w) => match parse_guid(w) {
            Some(g) => Some(g),
            None => {
                let named: Vec<_> = rep.pools.iter().filter(|p| p.name == w).collect();
                match named[..] {
                    [p] => Some(p.guid),
                    [] => None,
                    _ => {
                        let gs: Vec<String> = named.iter().map(|p| p.guid.to_string()).collect();
                        return fail(format!("{} pools are named {w} (guids {}): --pool GUID names one", named.len(), gs.join(", ")));
                    }
                }
            }
        },
        None => root,
    };
    let Some(pool) = guid.and_then(|g| rep.pools.iter().find(|p| p.guid == g)) else {
        return fail(format!("no labels of pool {} found on this system's block devices", which.as_deref().unwrap_or("of /")));
    };
    if !pool.conflicts.is_empty() {
        return fail(format!("the labels of {} contradict each other, so they cannot be pinned: {}", pool.name, pool.conflicts.join("; ")));
    }
    let text = pin::render(&pin::of_pool(&rep, pool));
    match out {
        None => print!("{text}"),
        Some(p) => {
            let write = || -> std::io::Result<()> {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)?;
                }
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, &text)?;
                std::fs::rename(&tmp, &p)
            };
            if let Err(e) = write() {
                return fail(format!("cannot write {}: {e}", p.display()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
