//! Has device discovery settled? Pure: the loop's timestamps and the kernel's scans in
//! flight (`sys::scan`) in, "settled", "not before then" or "busy" out.
//!
//! Settled means: the drivers have loaded (nothing `busy`), no read is in flight within
//! its bound, no scan the kernel shows is pending (each counts at most its bound after it
//! was first seen, so one that never completes cannot hold the boot), no young hub or port
//! may still hide a device, and `QUIET` has passed since the latest of the first pass's
//! devices' appearance (`quiet_base`), the moment discovery went idle, the last block
//! uevent and the last look that saw a scan.

use crate::sys::scan::Scan;
use std::time::{Duration, Instant};

/// How long nothing may have changed before discovery counts as settled, once nothing the
/// kernel shows is pending.
pub const QUIET: Duration = Duration::from_millis(300);
/// How often to look at the kernel's scans again while one is pending (their end raises no
/// block uevent of its own when nothing is found).
pub const SCAN_POLL: Duration = Duration::from_millis(100);

/// A scan as the loop tracks it: when it was first seen.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub scan: Scan,
    pub first_seen: Instant,
}

/// What the loop knows.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// What is still loading drivers, if anything: our module loads, a module initialising
    /// (`sys::drivers`), or udev's queue where that stands in.
    pub busy: Option<&'a str>,
    /// A device read is in flight and still within its bound.
    pub reading: bool,
    /// The latest of the first pass, discovery going idle, the last block uevent, and the
    /// last look that saw a scan count.
    pub quiet_from: Instant,
    /// The scans of the latest look.
    pub scans: &'a [Tracked],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Drivers loading or reads in flight: look again soon.
    Busy { why: String },
    /// Not settled; look again at `wake` at the latest.
    Pending { wake: Instant, why: String },
    /// Settled at `at` (not after now): `why` says what was waited for, what was given up on.
    Settled { at: Instant, why: String },
}

/// Where the quiet window starts before any event: when the newest of the devices the first
/// pass found appeared (`ages`: how long ago each did, at least, as of `now`), or the first
/// pass itself when any age is unknown. A zroam that starts after udev has settled (inside
/// a generator's image) then need not wait out a window for devices that came long ago.
pub fn quiet_base(first_pass: Instant, now: Instant, ages: &[Option<Duration>]) -> Instant {
    let mut newest: Option<Instant> = None;
    for a in ages {
        let Some(at) = a.and_then(|a| now.checked_sub(a)) else { return first_pass };
        newest = Some(newest.map_or(at, |n| n.max(at)));
    }
    newest.map_or(first_pass, |n| n.min(first_pass))
}

/// When a window's thing first counts: `age` before `now` if known, else `now`.
pub fn first_seen(now: Instant, age: Option<Duration>) -> Instant {
    age.and_then(|a| now.checked_sub(a)).unwrap_or(now)
}

/// The scans that still count at `now`.
pub fn counting<'a>(now: Instant, scans: &'a [Tracked]) -> impl Iterator<Item = &'a Tracked> + 'a {
    scans.iter().filter(move |t| now < t.first_seen + t.scan.bound)
}

pub fn decide(now: Instant, input: &Input) -> Settle {
    if let Some(why) = input.busy {
        return Settle::Busy { why: why.to_string() };
    }
    if input.reading {
        return Settle::Busy { why: "devices still being read".to_string() };
    }
    let live: Vec<&Tracked> = counting(now, input.scans).collect();
    if let Some(first) = live.iter().find(|t| t.scan.observed).or(live.first()) {
        let until = live.iter().map(|t| t.first_seen + t.scan.bound).min().unwrap_or(now);
        let more = if live.len() > 1 { format!(" (and {} more)", live.len() - 1) } else { String::new() };
        return Settle::Pending { wake: until.min(now + SCAN_POLL), why: format!("{}{more}", first.scan.why) };
    }
    let at = input.quiet_from + QUIET;
    let gave_up: Vec<&str> = input.scans.iter().filter(|t| t.scan.observed).map(|t| t.scan.why.as_str()).collect();
    if now < at {
        return Settle::Pending { wake: at, why: format!("no device came or went for {} ms", QUIET.as_millis()) };
    }
    let why = if gave_up.is_empty() { "no scan in flight".to_string() } else { format!("gave up waiting on: {}", gave_up.join("; ")) };
    Settle::Settled { at, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(key: &str, observed: bool, bound_ms: u64) -> Scan {
        Scan { key: key.to_string(), why: format!("{key} pending"), observed, bound: Duration::from_millis(bound_ms), node: None }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_pending_settles_after_the_quiet_window() {
        let t = Instant::now();
        let input = Input { busy: None, reading: false, quiet_from: t, scans: &[] };
        assert_eq!(decide(t + ms(100), &input), Settle::Pending { wake: t + QUIET, why: "no device came or went for 300 ms".into() });
        match decide(t + QUIET, &input) {
            Settle::Settled { at, why } => assert_eq!((at, why.as_str()), (t + QUIET, "no scan in flight")),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn busy_and_reads_come_first() {
        let t = Instant::now();
        let input = Input { busy: Some("sd_mod initialising"), reading: true, quiet_from: t, scans: &[] };
        assert!(matches!(decide(t + ms(5000), &input), Settle::Busy { why } if why == "sd_mod initialising"));
        let input = Input { busy: None, ..input };
        assert!(matches!(decide(t + ms(5000), &input), Settle::Busy { why } if why.contains("read")));
    }

    #[test]
    fn an_observed_scan_holds_until_it_ends_or_its_bound() {
        let t = Instant::now();
        let scans = [Tracked { scan: scan("usb-storage 2-1:1.0 host6", true, 4000), first_seen: t }];
        let input = Input { busy: None, reading: false, quiet_from: t, scans: &scans };
        match decide(t + ms(1000), &input) {
            Settle::Pending { wake, why } => {
                assert_eq!(wake, t + ms(1000) + SCAN_POLL, "polled while pending");
                assert!(why.contains("usb-storage"), "{why}");
            }
            s => panic!("{s:?}"),
        }
        // Past its bound it no longer counts: the quiet window runs from the last look
        // that saw it (the loop moves quiet_from), and the reason names it.
        let input = Input { quiet_from: t + ms(4000), ..input };
        assert!(matches!(decide(t + ms(4100), &input), Settle::Pending { wake, .. } if wake == t + ms(4000) + QUIET));
        match decide(t + ms(4300), &input) {
            Settle::Settled { why, .. } => assert!(why.contains("gave up waiting on: usb-storage"), "{why}"),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn devices_that_came_long_ago_need_no_window() {
        let t = Instant::now() + ms(10_000);
        let first = t - ms(50);
        // Both devices appeared seconds ago: the base is the newer of them.
        assert_eq!(quiet_base(first, t, &[Some(ms(9000)), Some(ms(5000))]), t - ms(5000));
        // One just now: never later than the first pass.
        assert_eq!(quiet_base(first, t, &[Some(ms(9000)), Some(ms(0))]), first);
        // An unknown age, or no device: the first pass.
        assert_eq!(quiet_base(first, t, &[Some(ms(9000)), None]), first);
        assert_eq!(quiet_base(first, t, &[]), first);
        // So a settled machine is settled at once, and one with a device 100 ms old waits
        // the rest of QUIET.
        let input = Input { busy: None, reading: false, quiet_from: quiet_base(first, t, &[Some(ms(5000))]), scans: &[] };
        assert!(matches!(decide(t, &input), Settle::Settled { .. }));
        let input = Input { quiet_from: quiet_base(first, t, &[Some(ms(100))]), ..input };
        assert_eq!(decide(t, &input), Settle::Pending { wake: t + ms(200), why: "no device came or went for 300 ms".into() });
        // A window counts from its thing's age.
        assert_eq!(first_seen(t, Some(ms(700))), t - ms(700));
        assert_eq!(first_seen(t, None), t);
    }

    #[test]
    fn a_finished_scan_settles_quickly() {
        // The scan ended at 1200 ms (the last look that saw it): settled 300 ms later, not
        // at a fixed 1.5 s after idle.
        let t = Instant::now();
        let input = Input { busy: None, reading: false, quiet_from: t + ms(1200), scans: &[] };
        assert!(matches!(decide(t + ms(1500), &input), Settle::Settled { at, .. } if at == t + ms(1500)));
    }

    #[test]
    fn a_young_hub_counts_only_for_its_window() {
        let t = Instant::now();
        let scans = [Tracked { scan: scan("usb hub 2-0:1.0", false, 500), first_seen: t + ms(100) }];
        let input = Input { busy: None, reading: false, quiet_from: t, scans: &scans };
        assert!(matches!(decide(t + ms(550), &input), Settle::Pending { wake, .. } if wake == t + ms(600)));
        // Past the window: no "gave up" (nothing was seen in flight), the quiet window from
        // the loop's quiet_from decides.
        let input = Input { quiet_from: t + ms(600), ..input };
        match decide(t + ms(900), &input) {
            Settle::Settled { why, .. } => assert_eq!(why, "no scan in flight"),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn observed_scans_are_named_before_young_ones() {
        let t = Instant::now();
        let scans = [
            Tracked { scan: scan("usb hub 1-0:1.0", false, 500), first_seen: t },
            Tracked { scan: scan("ata ata1", true, 3000), first_seen: t },
        ];
        let input = Input { busy: None, reading: false, quiet_from: t, scans: &scans };
        match decide(t + ms(10), &input) {
            Settle::Pending { why, .. } => assert_eq!(why, "ata ata1 pending (and 1 more)"),
            s => panic!("{s:?}"),
        }
    }
}
