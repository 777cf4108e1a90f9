//! zroam's own CPU time and memory, and its helpers', from getrusage(2); the kernel's
//! uptime.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub user_ms: f64,
    pub sys_ms: f64,
    pub max_rss_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// zroam itself since it started, all threads (waits cost no CPU time, helpers are
    /// not counted).
    #[serde(rename = "self")]
    pub own: Usage,
    /// Waited-for helpers: zpool, zfs, modprobe, mount.
    pub children: Usage,
}

/// zroam's own CPU time when it started: as PID 1 the process already carries the kernel's
/// boot work (initcalls run in PID 1 before it execs /init), which is not zroam's.
static START: std::sync::OnceLock<Usage> = std::sync::OnceLock::new();

pub fn mark_start() {
    let _ = START.set(usage(libc::RUSAGE_SELF));
}

fn own() -> Usage {
    let u = usage(libc::RUSAGE_SELF);
    let s = START.get().cloned().unwrap_or_default();
    Usage { user_ms: u.user_ms - s.user_ms, sys_ms: u.sys_ms - s.sys_ms, max_rss_kib: u.max_rss_kib }
}

fn usage(who: libc::c_int) -> Usage {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut r) } != 0 {
        return Usage::default();
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Usage { user_ms: ms(r.ru_utime), sys_ms: ms(r.ru_stime), max_rss_kib: r.ru_maxrss as u64 }
}

/// zroam's own CPU time so far (user + system), in ms.
pub fn own_cpu_ms() -> f64 {
    let u = own();
    u.user_ms + u.sys_ms
}

pub fn resources() -> Resources {
    Resources { own: own(), children: usage(libc::RUSAGE_CHILDREN) }
}

/// Seconds since the kernel started.
pub fn uptime() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()
}
