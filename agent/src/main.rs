//! The `zroam` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zroam::probe;

const USAGE: &str = "usage: zroam probe [--json] [--timeout SECONDS] [--dev PATH]...

  probe   read every block device: partition tables, ESPs, LUKS, md, ZFS labels;
          group the labels into pools. Read-only.
          --json         machine-readable report
          --timeout S    per-device time bound (default 5)
          --dev PATH     probe this file or device instead of all of /sys/class/block
";

fn probe_cmd(mut args: lexopt::Parser) -> Result<ExitCode, lexopt::Error> {
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

fn main() -> ExitCode {
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
        "probe" => probe_cmd(args),
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
