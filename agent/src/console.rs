//! Log lines as `zroam: …` on the console (stderr) and in the kernel log (/dev/kmsg), and kept
//! in memory for the report. `quiet` keeps only warnings and errors on the console.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

struct Console {
    quiet: bool,
    kmsg: Mutex<Option<std::fs::File>>,
    lines: Mutex<Vec<String>>,
}

static CONSOLE: OnceLock<Console> = OnceLock::new();
/// The report keeps at most this many log lines.
const MAX_LINES: usize = 2000;

impl Log for Console {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }
    fn log(&self, r: &Record) {
        let msg = format!("{}", r.args());
        let lvl = r.level();
        if !self.quiet || lvl <= Level::Warn {
            let prefix = match lvl {
                Level::Error => "zroam: error: ",
                Level::Warn => "zroam: warning: ",
                _ => "zroam: ",
            };
            let _ = writeln!(std::io::stderr(), "{prefix}{msg}");
        }
        if let Ok(mut k) = self.kmsg.lock() {
            if let Some(f) = k.as_mut() {
                // Syslog priorities: 3 err, 4 warning, 6 info, 7 debug.
                let pri = match lvl {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    _ => 7,
                };
                let _ = f.write_all(format!("<{pri}>zroam: {msg}\n").as_bytes());
            }
        }
        if let Ok(mut l) = self.lines.lock() {
            if l.len() < MAX_LINES {
                l.push(format!("{}: {msg}", lvl.as_str().to_ascii_lowercase()));
            }
        }
    }
    fn flush(&self) {}
}

/// Install the logger (once; later calls only change nothing).
pub fn init(quiet: bool, debug: bool) {
    let c = CONSOLE.get_or_init(|| Console {
        quiet,
        kmsg: Mutex::new(None),
        lines: Mutex::new(Vec::new()),
    });
    reopen_kmsg();
    if log::set_logger(c).is_ok() {
        log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Info });
    }
}

/// Open /dev/kmsg (again): it exists only once devtmpfs is mounted.
pub fn reopen_kmsg() {
    if let Some(c) = CONSOLE.get() {
        if let Ok(mut k) = c.kmsg.lock() {
            *k = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").ok();
        }
    }
}

/// Every line logged so far.
pub fn lines() -> Vec<String> {
    CONSOLE.get().and_then(|c| c.lines.lock().ok().map(|l| l.clone())).unwrap_or_default()
}
