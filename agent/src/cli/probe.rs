//! `zroam probe`: every block device and what is on it. Read-only.

use super::Res;
use crate::probe::{self, table};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(mut args: lexopt::Parser) -> Res {
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
        print!("{}", table::render(&rep));
    }
    Ok(ExitCode::SUCCESS)
}
