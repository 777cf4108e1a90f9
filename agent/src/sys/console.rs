//! Log lines as `zroam: …` on the console (stderr) and in the kernel log (/dev/kmsg), and kept
//! in memory for the report. `quiet` keeps only warnings and errors on the console.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::{Mutex, OnceLock};

struct Console {
    quiet: bool,
    /// The kernel's console_loglevel: kmsg lines below it already reach the console.
    console_level: Mutex<u8>,
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
        // Syslog priorities: 3 err, 4 warning, 6 info, 7 debug.
        let pri: u8 = match lvl {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            _ => 7,
        };
        let kmsg_open = self.kmsg.lock().map(|k| k.is_some()).unwrap_or(false);
        let echoed = kmsg_open && pri < self.console_level.lock().map(|l| *l).unwrap_or(0);
        if (!self.quiet || lvl <= Level::Warn) && !echoed {
            let prefix = match lvl {
                Level::Error => "zroam: error: ",
                Level::Warn => "zroam: warning: ",
                _ => "zroam: ",
            };
            let _ = writeln!(std::io::stderr(), "{prefix}{msg}");
        }
        if let Ok(mut k) = self.kmsg.lock() {
            if let Some(f) = k.as_mut() {
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
    let c = CONSOLE.get_or_init(|| Console { quiet, console_level: Mutex::new(0), kmsg: Mutex::new(None), lines: Mutex::new(Vec::new()) });
    reopen_kmsg();
    if log::set_logger(c).is_ok() {
        log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Info });
    }
}

/// As PID 1: lift the kernel's rate limit on /dev/kmsg writers so that lines the kernel
/// echoes to the console are never dropped; only then does zroam rely on that echo instead
/// of printing them twice.
pub fn trust_kernel_echo() {
    if std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n").is_ok() {
        reopen_kmsg();
    }
}

/// Open /dev/kmsg (again): it exists only once devtmpfs is mounted.
pub fn reopen_kmsg() {
    if let Some(c) = CONSOLE.get() {
        if let Ok(mut k) = c.kmsg.lock() {
            *k = std::fs::OpenOptions::new().write(true).open("/dev/kmsg").ok();
        }
        // /proc/sys/kernel/printk: "console_loglevel default ..."; 0 (never echoed) unless the
        // rate limit is off.
        let unlimited = std::fs::read_to_string("/proc/sys/kernel/printk_devkmsg").is_ok_and(|v| v.trim() == "on");
        let lvl = std::fs::read_to_string("/proc/sys/kernel/printk")
            .ok()
            .filter(|_| unlimited)
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if let Ok(mut l) = c.console_level.lock() {
            *l = lvl;
        }
    }
}

/// Every line logged so far.
pub fn lines() -> Vec<String> {
    CONSOLE.get().and_then(|c| c.lines.lock().ok().map(|l| l.clone())).unwrap_or_default()
}
