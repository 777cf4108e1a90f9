//! Storage drivers still on their way, from what the kernel shows rather than from udev's
//! queue: udev's queue also holds every unrelated event queued while zfs.ko's init stalled
//! the machine, and waiting for it to drain costs most of a second in a generator's image.
//!
//! What is still on its way:
//! - a module initialising (`Loading` in /proc/modules): its init waits for the async
//!   probes it started (libata's ports, SCSI hosts), so the disks behind it are not all
//!   there yet. zfs and its own modules are not counted: zroam waits for them on its own.
//! - a device on a storage bus (`modules::storage_alias`) with no driver bound, which a
//!   module of this ramdisk would drive (its alias matches `modules.alias`), none of which
//!   is loaded yet: udev (or zroam) is about to load them. A device no module here can
//!   drive is not waited for; one whose module loaded and did not bind it has had its
//!   chance.
//! - an NVMe controller being set up (`state` new, connecting or resetting): its
//!   namespaces appear after it is live.
//!
//! The text inputs are parsed by pure functions with bounded reads; the kernel is the
//! source of all of it, the ramdisk of `modules.alias`.

use super::modules;
use super::scan::{Scan, MAX_ENTRIES, SCAN_BOUND};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

/// Most bytes read from /proc/modules.
const MAX_PROC_MODULES: u64 = 1 << 20;
/// Most bytes read from `modules.alias` (a full distribution kernel's is about 1.5 MiB).
const MAX_ALIASES: u64 = 16 << 20;
/// Most modalias answers remembered (one per distinct driverless device).
const MAX_CACHED: usize = 1024;
/// Modules zroam waits for itself (`wait_zfs_module`): zfs and what it needs (OpenZFS
/// before 2.2 split it into several modules).
const OWN: [&str; 9] = ["zfs", "spl", "icp", "zavl", "zcommon", "zlua", "znvpair", "zunicode", "zzstd"];

fn read_bounded(p: &Path, max: u64) -> Option<String> {
    let mut s = String::new();
    fs::File::open(p).ok()?.take(max).read_to_string(&mut s).ok()?;
    Some(s)
}

/// A module's name as the kernel keeps it (`usb-storage` is `usb_storage`).
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// Pure: /proc/modules into the modules loaded (any state) and those still initialising.
pub fn parse_proc_modules(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut loaded = BTreeSet::new();
    let mut loading = Vec::new();
    for line in text.lines().take(4 * MAX_ENTRIES) {
        let f: Vec<&str> = line.split_whitespace().take(5).collect();
        let [name, _, _, _, state] = f[..] else { continue };
        let name = norm(name);
        if state == "Loading" && !OWN.contains(&name.as_str()) {
            loading.push(name.clone());
        }
        loaded.insert(name);
    }
    (loaded, loading)
}

/// One line of `modules.alias` on a storage bus: the literal text before its first
/// wildcard (a cheap filter), the pattern, the module.
struct Alias {
    literal: String,
    pattern: glob::Pattern,
    module: String,
}

/// The storage buses' lines of this ramdisk's `modules.alias`, and the answers given.
pub struct Aliases {
    lines: Vec<Alias>,
    cache: HashMap<String, Vec<String>>,
}

impl Aliases {
    /// Pure: `alias PATTERN MODULE` lines; others, and patterns of other buses, are skipped.
    pub fn parse(text: &str) -> Aliases {
        let prefixes: Vec<String> = modules::BUSES.iter().map(|b| format!("{b}:")).collect();
        let mut lines = Vec::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some("alias"), Some(pat), Some(module), None) = (f.next(), f.next(), f.next(), f.next()) else { continue };
            if !prefixes.iter().any(|p| pat.starts_with(p.as_str())) {
                continue;
            }
            let Ok(pattern) = glob::Pattern::new(pat) else { continue };
            let literal = pat.split(['*', '?', '[']).next().unwrap_or("").to_string();
            lines.push(Alias { literal, pattern, module: norm(module) });
        }
        Aliases { lines, cache: HashMap::new() }
    }

    /// This ramdisk's, for the running kernel; None when it cannot be read (the caller then
    /// falls back to udev's queue).
    pub fn load() -> Option<Aliases> {
        let release = read_bounded(Path::new("/proc/sys/kernel/osrelease"), 256)?;
        let p = Path::new("/lib/modules").join(release.trim()).join("modules.alias");
        read_bounded(&p, MAX_ALIASES).map(|t| Aliases::parse(&t))
    }

    /// The modules whose patterns match `modalias` (kmod loads them all).
    pub fn modules_for(&mut self, modalias: &str) -> Vec<String> {
        if let Some(m) = self.cache.get(modalias) {
            return m.clone();
        }
        let mut m: Vec<String> = Vec::new();
        for a in self.lines.iter().filter(|a| modalias.starts_with(a.literal.as_str()) && a.pattern.matches(modalias)) {
            if !m.contains(&a.module) {
                m.push(a.module.clone());
            }
        }
        if self.cache.len() < MAX_CACHED {
            self.cache.insert(modalias.to_string(), m.clone());
        }
        m
    }
}

/// Storage devices without a driver that a module here would drive and that is not
/// loaded yet, and NVMe controllers being set up, under the sysfs root `sys`.
pub fn in_flight(sys: &Path, loaded: &BTreeSet<String>, aliases: &mut Aliases) -> Vec<Scan> {
    let mut out = Vec::new();
    for bus in modules::BUSES {
        let dir = sys.join("bus").join(bus).join("devices");
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten().take(MAX_ENTRIES) {
            let p = e.path();
            if fs::symlink_metadata(p.join("driver")).is_ok() {
                continue;
            }
            let Some(alias) = read_bounded(&p.join("modalias"), 4096) else { continue };
            let alias = alias.trim();
            if !modules::storage_alias(alias) {
                continue;
            }
            let modules = aliases.modules_for(alias);
            if modules.is_empty() || modules.iter().any(|m| loaded.contains(m)) {
                continue;
            }
            let module = modules.join(", ");
            let name = e.file_name().to_string_lossy().into_owned();
            out.push(Scan {
                key: format!("driver {bus} {name}"),
                why: format!("{bus} device {name} has no driver yet ({module} is to be loaded)"),
                observed: true,
                bound: SCAN_BOUND,
                node: None,
            });
        }
    }
    let nvme = sys.join("class/nvme");
    if let Ok(rd) = fs::read_dir(&nvme) {
        for e in rd.flatten().take(MAX_ENTRIES) {
            let Some(state) = read_bounded(&e.path().join("state"), 64) else { continue };
            let state = state.trim();
            if matches!(state, "new" | "connecting" | "resetting") {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push(Scan {
                    key: format!("nvme {name}"),
                    why: format!("NVMe controller {name} is being set up ({state})"),
                    observed: true,
                    bound: SCAN_BOUND,
                    node: None,
                });
            }
        }
    }
    out.truncate(MAX_ENTRIES);
    out
}

/// /proc/modules as `parse_proc_modules` reads it; None when there is none (a kernel
/// without modules: nothing can be loading).
pub fn proc_modules() -> Option<(BTreeSet<String>, Vec<String>)> {
    read_bounded(Path::new("/proc/modules"), MAX_PROC_MODULES).map(|t| parse_proc_modules(&t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    const ALIASES: &str = "# Aliases extracted from modules themselves.
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00001AF4d00001042sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb-storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip*in* uas
alias usb:v*p*d*dc*dsc*dp*ic03isc*ip*in* usbhid
alias acpi*:PNP0303:* atkbd
alias scsi:t-0x00* sd_mod
alias broken
alias pci:v[ bad
";

    #[test]
    fn proc_modules_states() {
        let text = "ahci 45056 0 - Live 0x0000000000000000\nusb-storage 81920 0 - Loading 0x0\nzfs 6225920 0 - Loading 0x0 (POE)\nspl 1 0 - Loading 0x0\nicp 1 0 - Loading 0x0\n\ngarbage\n";
        let (loaded, loading) = parse_proc_modules(text);
        assert_eq!(loading, ["usb_storage"], "zfs and its modules are zroam's own wait");
        assert!(loaded.contains("ahci") && loaded.contains("usb_storage") && loaded.contains("zfs"));
        assert!(!loaded.contains("garbage"), "a line without a state is not a module");
    }

    #[test]
    fn aliases_match_as_kmod_does() {
        let mut a = Aliases::parse(ALIASES);
        assert_eq!(a.lines.len(), 7, "other buses, malformed lines and bad patterns are skipped");
        assert_eq!(a.modules_for("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), ["ahci"]);
        assert_eq!(a.modules_for("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(a.modules_for("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"), ["usb_storage", "uas"]);
        assert!(a.modules_for("virtio:d00000005v00001AF4").is_empty(), "the balloon: no module here");
        // Answers are remembered.
        assert_eq!(a.modules_for("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(a.cache.len(), 4);
    }

    struct Tree(PathBuf);
    impl Tree {
        fn new(name: &str) -> Tree {
            let root = std::env::temp_dir().join(format!("zroam-drivers-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Tree(root)
        }
        fn device(&self, bus: &str, name: &str, alias: &str, driver: bool) {
            let d = self.0.join(format!("devices/{name}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("modalias"), format!("{alias}\n")).unwrap();
            if driver {
                symlink(&self.0, d.join("driver")).unwrap();
            }
            let l = self.0.join(format!("bus/{bus}/devices"));
            fs::create_dir_all(&l).unwrap();
            symlink(&d, l.join(name)).unwrap();
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn driverless_storage_devices_whose_module_is_to_come() {
        let t = Tree::new("pending");
        t.device("virtio", "virtio1", "virtio:d00000002v00001AF4", false);
        t.device("virtio", "virtio2", "virtio:d00000005v00001AF4", false);
        t.device("pci", "0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true);
        t.device("usb", "1-1:1.0", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", false);
        t.device("usb", "1-2:1.0", "usb:v0627p0001d0000dc00dsc00dp00ic03isc01ip01in00", false);
        fs::create_dir_all(t.0.join("class/nvme/nvme0")).unwrap();
        fs::write(t.0.join("class/nvme/nvme0/state"), "connecting\n").unwrap();
        fs::create_dir_all(t.0.join("class/nvme/nvme1")).unwrap();
        fs::write(t.0.join("class/nvme/nvme1/state"), "live\n").unwrap();
        let mut a = Aliases::parse(ALIASES);
        let keys = |loaded: &[&str], a: &mut Aliases| -> Vec<String> {
            let loaded = loaded.iter().map(|s| s.to_string()).collect();
            in_flight(&t.0, &loaded, a).into_iter().map(|s| s.key).collect()
        };
        assert_eq!(keys(&[], &mut a), ["driver virtio virtio1", "driver usb 1-1:1.0", "nvme nvme0"]);
        let all = in_flight(&t.0, &BTreeSet::new(), &mut a);
        assert!(all[1].why.contains("usb_storage, uas"), "{}", all[1].why);
        // Once a module has loaded and still not bound the device, it has had its chance.
        assert_eq!(keys(&["virtio_blk", "uas"], &mut a), ["nvme nvme0"]);
    }

    #[test]
    fn absent_and_garbage_trees_are_nothing() {
        let mut a = Aliases::parse(ALIASES);
        assert!(in_flight(Path::new("/nonexistent/zroam-drivers"), &BTreeSet::new(), &mut a).is_empty());
        let t = Tree::new("garbage");
        t.device("pci", "x", &"\u{ff}".repeat(10_000), false);
        fs::create_dir_all(t.0.join("class/nvme/nvme0/state")).unwrap();
        assert!(in_flight(&t.0, &BTreeSet::new(), &mut a).is_empty());
        let mut empty = Aliases::parse("\0\0\nalias\nalias a b c d\n");
        assert!(empty.modules_for("pci:v00008086").is_empty());
    }
}
