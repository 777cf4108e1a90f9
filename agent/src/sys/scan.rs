//! Storage scans the kernel still has in flight, as sysfs shows them: what may yet add a
//! block device although every driver has loaded. Read from a sysfs root given as a path
//! (tests build small trees); every directory read stops at `MAX_ENTRIES`, every attribute
//! at `MAX_ATTR` bytes, and odd or missing files count as "nothing to see".
//!
//! What sysfs shows, and what it does not:
//! - usb-storage binds an interface, adds a SCSI host below it and scans that host only
//!   after `delay_use` (1 s by default): a bound usb-storage or uas interface whose host has
//!   no `target*` yet is a scan still to come.
//! - A USB device being enumerated has no sysfs directory until it is addressed and
//!   described. Kernels from 6.5 show it on the hub port (`<hub>/<port>/state`: powered,
//!   default, addressed...). Before the hub has even noticed a connection (power-on delay,
//!   debounce) nothing shows at all, so a hub counts for `HUB_WINDOW` after it first appears.
//! - A configured device's mass-storage interface (class 08) without a driver is waiting for
//!   one (usb-storage or uas being loaded).
//! - libata probes a port from its error handler: while it runs the port's SCSI host is in
//!   state `recovery`. A device it identified (`ata_device` class ata, atapi or zac) whose
//!   host has no target yet still awaits its SCSI scan. A port not probed yet and an empty
//!   port look alike (class `unknown`, link speed `<unknown>`), so a port counts for
//!   `ATA_WINDOW` after it first appears.
//! - A SCSI disk (type 0, 7 or 14) without a driver has not been attached by sd yet: its
//!   block device is still to come.
//!
//! When a hub or port "first appeared" is read from its sysfs directory's change time
//! (`age`): kernfs stamps an inode when it is first looked up (udev's trigger does that for
//! every device) and again when the inode is made anew, never earlier than the node itself,
//! so the age is never more than the real one. It is the wall clock's: an age that is
//! negative or longer than the uptime says the clock moved, and is not used.

use serde::Serialize;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most entries read from one sysfs directory.
pub const MAX_ENTRIES: usize = 256;
/// Most bytes read from one attribute.
const MAX_ATTR: u64 = 4096;
/// How long a scan the kernel shows in flight is waited for once first seen (on top of
/// usb-storage's `delay_use` for its hosts): one that never completes must not hold the boot.
pub const SCAN_BOUND: Duration = Duration::from_secs(3);
/// How long after a USB hub first appears a device behind it may still be invisible.
pub const HUB_WINDOW: Duration = Duration::from_millis(500);
/// How long after an ATA port first appears its probe may not have started yet.
pub const ATA_WINDOW: Duration = Duration::from_millis(200);
/// usb-storage's `delay_use` when the parameter cannot be read (the kernel's default).
const DEFAULT_DELAY_USE: Duration = Duration::from_secs(1);

/// One scan in flight, or a place where one may be and cannot be seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// Names the scan across looks (when it was first seen is kept by this key).
    pub key: String,
    /// What is pending, for the log and the report.
    pub why: String,
    /// The kernel shows it in flight (true), or it is only young and what follows would not
    /// show (false).
    pub observed: bool,
    /// How long after first seen it counts.
    #[serde(skip)]
    pub bound: Duration,
    /// A window's sysfs node: its `age` (read once, when the key is first seen) says how
    /// long ago it appeared, and its bound counts from then.
    #[serde(skip)]
    pub node: Option<PathBuf>,
}

/// A scan the kernel shows in flight.
pub fn observed(key: String, why: String, bound: Duration) -> Scan {
    Scan { key, why, observed: true, bound, node: None }
}

fn window(key: String, why: String, bound: Duration, dir: &Path) -> Scan {
    Scan { key, why, observed: false, bound, node: Some(dir.to_path_buf()) }
}

/// How long ago the sysfs node at `p` appeared, at least (see the module's notes), given
/// the uptime (`sys::usage::uptime`, read once by a caller that asks about many nodes).
pub fn age(p: &Path, uptime: Option<Duration>) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).ok()?;
    let ctime = std::time::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(m.ctime()).ok()?, u32::try_from(m.ctime_nsec()).ok()?))?;
    plausible_age(std::time::SystemTime::now().duration_since(ctime).ok(), uptime)
}

/// Pure: an age read off the wall clock, kept only when it fits in the uptime (a clock set
/// forward since would make everything look older than it is).
pub fn plausible_age(age: Option<Duration>, uptime: Option<Duration>) -> Option<Duration> {
    age.filter(|a| uptime.is_some_and(|u| *a <= u))
}

/// A sysfs attribute, trimmed, at most `MAX_ATTR` bytes read; None when absent or empty.
pub fn attr(p: &Path) -> Option<String> {
    let f = fs::File::open(p).ok()?;
    let mut s = String::new();
    f.take(MAX_ATTR).read_to_string(&mut s).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Names in a directory, sorted, at most `MAX_ENTRIES`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(it) => it.flatten().take(MAX_ENTRIES).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn has_child(dir: &Path, prefix: &str) -> bool {
    names(dir).iter().any(|n| n.starts_with(prefix))
}

/// usb-storage's `delay_use`: whole seconds (`1`), or milliseconds (`500ms`, kernels from
/// 6.11).
pub fn parse_delay_use(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    s.parse::<u64>().ok().filter(|&n| n <= 3600).map(Duration::from_secs)
}

fn delay_use(sys: &Path) -> Duration {
    attr(&sys.join("module/usb_storage/parameters/delay_use")).and_then(|s| parse_delay_use(&s)).unwrap_or(DEFAULT_DELAY_USE)
}

/// Bound usb-storage and uas interfaces whose SCSI host has not been scanned yet.
fn usb_storage(sys: &Path, out: &mut Vec<Scan>) {
    let delay = delay_use(sys);
    for driver in ["usb-storage", "uas"] {
        let dir = sys.join("bus/usb/drivers").join(driver);
        for intf in names(&dir).into_iter().filter(|n| n.contains(':')) {
            let idir = dir.join(&intf);
            for host in names(&idir).into_iter().filter(|n| n.starts_with("host") && n[4..].parse::<u32>().is_ok()) {
                if has_child(&idir.join(&host), "target") {
                    continue;
                }
                let (why, bound) = if driver == "usb-storage" {
                    (format!("usb-storage {intf} ({host}) scans after delay_use ({} ms)", delay.as_millis()), delay + SCAN_BOUND)
                } else {
                    (format!("uas {intf} ({host}) is being scanned"), SCAN_BOUND)
                };
                out.push(observed(format!("{driver} {intf} {host}"), why, bound));
            }
        }
    }
}

/// Hub port states of a device being enumerated (kernels from 6.5).
const ENUMERATING: [&str; 6] = ["attached", "powered", "reconnecting", "unauthenticated", "default", "addressed"];

/// USB hubs (young ones, whose ports may hide a device), ports enumerating a device, and
/// mass-storage interfaces without a driver.
fn usb(sys: &Path, out: &mut Vec<Scan>) {
    let hubs = sys.join("bus/usb/drivers/hub");
    for intf in names(&hubs).into_iter().filter(|n| n.contains(':')) {
        let idir = hubs.join(&intf);
        out.push(window(
            format!("usb hub {intf}"),
            format!("USB hub {intf} is young: a device behind it is not visible until it is enumerated"),
            HUB_WINDOW,
            &idir,
        ));
        for port in names(&idir).into_iter().filter(|n| n.contains("-port")) {
            let Some(state) = attr(&idir.join(&port).join("state")) else { continue };
            if ENUMERATING.contains(&state.as_str()) {
                out.push(observed(format!("usb port {port}"), format!("USB port {port} is enumerating a device ({state})"), SCAN_BOUND));
            }
        }
    }
    let devices = sys.join("bus/usb/devices");
    for intf in names(&devices).into_iter().filter(|n| n.contains(':')) {
        let idir = devices.join(&intf);
        if attr(&idir.join("bInterfaceClass")).as_deref() == Some("08") && fs::symlink_metadata(idir.join("driver")).is_err() {
            out.push(observed(
                format!("usb mass storage {intf}"),
                format!("USB mass-storage interface {intf} has no driver yet"),
                SCAN_BOUND,
            ));
        }
    }
}

/// The directory of a class device's parent device (`class/ata_port/ata3` → `.../ata3`).
fn device_dir(class_entry: &Path) -> Option<PathBuf> {
    let real = fs::canonicalize(class_entry).ok()?;
    Some(real.parent()?.parent()?.to_path_buf())
}

/// ATA ports being probed, devices found and not scanned yet, and young ports.
fn ata(sys: &Path, out: &mut Vec<Scan>) {
    let class = sys.join("class/ata_port");
    for port in names(&class).into_iter().filter(|n| n.starts_with("ata")) {
        let Some(pdir) = device_dir(&class.join(&port)) else { continue };
        let hosts: Vec<String> = names(&pdir).into_iter().filter(|n| n.starts_with("host") && n[4..].parse::<u32>().is_ok()).collect();
        let recovering =
            hosts.iter().any(|h| attr(&pdir.join(h).join("scsi_host").join(h).join("state")).is_some_and(|s| s.contains("recovery")));
        if recovering {
            out.push(observed(format!("ata {port}"), format!("{port} is being probed (its SCSI host is in recovery)"), SCAN_BOUND));
            continue;
        }
        let scanned = hosts.iter().any(|h| has_child(&pdir.join(h), "target"));
        let found = names(&pdir).into_iter().filter(|n| n.starts_with("link")).any(|link| {
            let ldir = pdir.join(&link);
            names(&ldir).into_iter().filter(|n| n.starts_with("dev")).any(|dev| {
                let class = attr(&ldir.join(&dev).join("ata_device").join(&dev).join("class"));
                matches!(class.as_deref(), Some("ata" | "atapi" | "zac"))
            })
        });
        if found && !scanned {
            out.push(observed(format!("ata {port}"), format!("{port} found a device its SCSI scan has not added yet"), SCAN_BOUND));
        } else if !found {
            out.push(window(
                format!("ata {port}"),
                format!("{port} is young: a port not probed yet looks like an empty one"),
                ATA_WINDOW,
                &pdir,
            ));
        }
    }
}

/// SCSI disks sd has not attached yet (their block device is still to come).
fn scsi_disks(sys: &Path, out: &mut Vec<Scan>) {
    let dir = sys.join("bus/scsi/devices");
    for dev in names(&dir).into_iter().filter(|n| n.split(':').count() == 4 && n.split(':').all(|p| p.parse::<u64>().is_ok())) {
        let ddir = dir.join(&dev);
        let disk = matches!(attr(&ddir.join("type")).as_deref(), Some("0" | "7" | "14"));
        if disk && fs::symlink_metadata(ddir.join("driver")).is_err() {
            out.push(observed(format!("scsi {dev}"), format!("SCSI disk {dev} has no driver yet (sd)"), SCAN_BOUND));
        }
    }
}

/// Every scan in flight under the sysfs root `sys`, and every young hub and port, by key.
pub fn in_flight(sys: &Path) -> Vec<Scan> {
    let mut out = Vec::new();
    usb_storage(sys, &mut out);
    usb(sys, &mut out);
    ata(sys, &mut out);
    scsi_disks(sys, &mut out);
    out.truncate(MAX_ENTRIES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree(PathBuf);
    impl Tree {
        fn new(name: &str) -> Tree {
            let root = std::env::temp_dir().join(format!("zroam-scan-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Tree(root)
        }
        fn dir(&self, p: &str) -> PathBuf {
            let d = self.0.join(p);
            fs::create_dir_all(&d).unwrap();
            d
        }
        fn write(&self, p: &str, s: &str) {
            let f = self.0.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, s).unwrap();
        }
        fn link(&self, target: &str, at: &str) {
            let l = self.0.join(at);
            fs::create_dir_all(l.parent().unwrap()).unwrap();
            symlink(self.0.join(target), l).unwrap();
        }
        fn keys(&self) -> Vec<String> {
            in_flight(&self.0).into_iter().filter(|s| s.observed).map(|s| s.key).collect()
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const STICK: &str = "devices/pci0000:00/0000:00:05.0/usb2/2-1/2-1:1.0";

    #[test]
    fn a_wall_clock_age_is_kept_only_within_the_uptime() {
        let s = Duration::from_secs;
        assert_eq!(plausible_age(Some(s(5)), Some(s(20))), Some(s(5)));
        assert_eq!(plausible_age(Some(s(50)), Some(s(20))), None, "the clock moved forward");
        assert_eq!(plausible_age(None, Some(s(20))), None, "the node is newer than the clock says: moved back");
        assert_eq!(plausible_age(Some(s(5)), None), None);
    }

    #[test]
    fn usb_storage_host_without_target_is_pending() {
        let t = Tree::new("usb-pending");
        t.dir(&format!("{STICK}/host6/scsi_host/host6"));
        t.link(STICK, "bus/usb/drivers/usb-storage/2-1:1.0");
        t.write("bus/usb/drivers/usb-storage/uevent", "");
        t.write("module/usb_storage/parameters/delay_use", "2\n");
        let scans = in_flight(&t.0);
        assert_eq!(scans.len(), 1, "{scans:?}");
        assert_eq!(scans[0].key, "usb-storage 2-1:1.0 host6");
        assert!(scans[0].observed && scans[0].why.contains("2000 ms"), "{}", scans[0].why);
        assert_eq!(scans[0].bound, Duration::from_secs(2) + SCAN_BOUND);
    }

    #[test]
    fn usb_storage_host_with_target_is_done() {
        let t = Tree::new("usb-done");
        t.dir(&format!("{STICK}/host6/target6:0:0/6:0:0:0"));
        t.link(STICK, "bus/usb/drivers/usb-storage/2-1:1.0");
        t.link(STICK, "bus/usb/devices/2-1:1.0");
        t.write(&format!("{STICK}/bInterfaceClass"), "08\n");
        t.link("bus/usb/drivers/usb-storage", &format!("{STICK}/driver"));
        assert!(t.keys().is_empty(), "{:?}", t.keys());
    }

    #[test]
    fn mass_storage_interface_without_driver_and_enumerating_port() {
        let t = Tree::new("usb-enum");
        t.write(&format!("{STICK}/bInterfaceClass"), "08\n");
        t.link(STICK, "bus/usb/devices/2-1:1.0");
        let hub = "devices/pci0000:00/0000:00:05.0/usb2/2-0:1.0";
        t.write(&format!("{hub}/usb2-port1/state"), "configured\n");
        t.write(&format!("{hub}/usb2-port2/state"), "addressed\n");
        t.write(&format!("{hub}/usb2-port3/state"), "not-attached\n");
        t.link(hub, "bus/usb/drivers/hub/2-0:1.0");
        assert_eq!(t.keys(), ["usb port usb2-port2", "usb mass storage 2-1:1.0"]);
        let young: Vec<String> = in_flight(&t.0).into_iter().filter(|s| !s.observed).map(|s| s.key).collect();
        assert_eq!(young, ["usb hub 2-0:1.0"]);
    }

    fn ata_port(t: &Tree, n: u32, host: u32, class: &str, state: &str, target: bool) {
        let p = format!("devices/pci0000:00/0000:00:1f.2/ata{n}");
        t.dir(&format!("{p}/ata_port/ata{n}"));
        t.write(&format!("{p}/link{n}/dev{n}.0/ata_device/dev{n}.0/class"), &format!("{class}\n"));
        t.write(&format!("{p}/host{host}/scsi_host/host{host}/state"), &format!("{state}\n"));
        if target {
            t.dir(&format!("{p}/host{host}/target{host}:0:0/{host}:0:0:0"));
        }
        t.link(&format!("{p}/ata_port/ata{n}"), &format!("class/ata_port/ata{n}"));
    }

    #[test]
    fn ata_ports_probing_found_scanned_and_empty() {
        let t = Tree::new("ata");
        ata_port(&t, 1, 0, "unknown", "recovery", false);
        ata_port(&t, 2, 1, "ata", "running", false);
        ata_port(&t, 3, 2, "ata", "running", true);
        ata_port(&t, 4, 3, "unknown", "running", false);
        let scans = in_flight(&t.0);
        let get = |k: &str| scans.iter().find(|s| s.key == k).cloned();
        assert!(get("ata ata1").unwrap().observed && get("ata ata1").unwrap().why.contains("recovery"));
        assert!(get("ata ata2").unwrap().observed && get("ata ata2").unwrap().why.contains("SCSI scan"));
        assert!(get("ata ata3").is_none(), "a scanned device is done");
        let empty = get("ata ata4").unwrap();
        assert!(!empty.observed && empty.bound == ATA_WINDOW, "an idle port counts only while young");
    }

    #[test]
    fn scsi_disk_without_driver_is_pending() {
        let t = Tree::new("scsi");
        t.write("bus/scsi/devices/0:0:0:0/type", "0\n");
        t.write("bus/scsi/devices/1:0:0:0/type", "5\n");
        t.write("bus/scsi/devices/2:0:0:0/type", "0\n");
        t.dir("bus/scsi/drivers/sd");
        t.link("bus/scsi/drivers/sd", "bus/scsi/devices/2:0:0:0/driver");
        t.dir("bus/scsi/devices/host0");
        assert_eq!(t.keys(), ["scsi 0:0:0:0"]);
    }

    #[test]
    fn garbage_and_absent_trees_are_nothing() {
        assert!(in_flight(Path::new("/nonexistent/zroam-scan")).is_empty());
        let t = Tree::new("garbage");
        t.write("module/usb_storage/parameters/delay_use", "\u{0}\u{ff}garbage");
        t.write("bus/usb/drivers/usb-storage/2-1:1.0", "not a directory");
        t.write("bus/usb/drivers/hub/1-0:1.0", "");
        t.write("bus/scsi/devices/a:b:c:d/type", "0");
        t.write("bus/scsi/devices/3:0:0:0", "file, not a directory");
        t.write("class/ata_port/ata9", "dangling");
        t.write("bus/usb/devices/1-1:1.0/bInterfaceClass", &"0".repeat(100_000));
        assert_eq!(t.keys(), Vec::<String>::new());
        for n in 0..(MAX_ENTRIES + 10) {
            t.write(&format!("bus/usb/drivers/uas/x{n}:1.0/host{n}/uevent"), "");
        }
        assert_eq!(in_flight(&t.0).len(), MAX_ENTRIES, "bounded");
    }

    #[test]
    fn delay_use_forms() {
        assert_eq!(parse_delay_use("1\n"), Some(Duration::from_secs(1)));
        assert_eq!(parse_delay_use("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_delay_use("0"), Some(Duration::ZERO));
        assert_eq!(parse_delay_use("-1"), None);
        assert_eq!(parse_delay_use("99999"), None);
        assert_eq!(parse_delay_use("1.5"), None);
    }
}
