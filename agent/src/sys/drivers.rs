//! Storage drivers still on their way, from what the kernel shows rather than from udev's
//! queue: udev's queue also holds every unrelated event queued while zfs.ko's init stalled
//! the machine, and waiting for it to drain costs most of a second in a generator's image.
//!
//! What is still on its way:
//! - a module initialising (`Loading` in /proc/modules): its init waits for the async
//!   probes it started (libata's ports, SCSI hosts), so the disks behind it are not all
//!   there yet. zfs and its own modules are not counted: zroam waits for them on its own.
//! - a device on a storage bus (`modules::storage_alias`) with no driver bound, which a
//!   module of this ramdisk would drive (its alias matches `modules.alias`, or kmod's index
//!   of it), none of which is loaded yet: udev (or zroam) is about to load them. A device no module here can
//!   drive is not waited for; one whose module loaded and did not bind it has had its
//!   chance.
//! - an NVMe controller being set up (`state` new, connecting or resetting): its
//!   namespaces appear after it is live.
//!
//! The inputs are parsed by pure functions with bounded reads: the kernel is the source of
//! all of them but the module aliases, which are the ramdisk's own.

use super::modules;
use super::scan::{self, Scan, MAX_ENTRIES, SCAN_BOUND};
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

/// Pure: /proc/modules into the modules loaded (any state) and those still initialising.
pub fn parse_proc_modules(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut loaded = BTreeSet::new();
    let mut loading = Vec::new();
    for line in text.lines().take(4 * MAX_ENTRIES) {
        let f: Vec<&str> = line.split_whitespace().take(5).collect();
        let [name, _, _, _, state] = f[..] else { continue };
        let name = normalize(name);
        if state == "Loading" && !OWN.contains(&name.as_str()) {
            loading.push(name.clone());
        }
        loaded.insert(name);
    }
    (loaded, loading)
}

/// An alias or a module's name as kmod compares them: `-` is `_` outside brackets (its
/// index stores keys so, and the kernel names `usb-storage` `usb_storage`).
fn normalize(alias: &str) -> String {
    let mut in_brackets = false;
    alias
        .chars()
        .map(|c| match c {
            '[' => {
                in_brackets = true;
                c
            }
            ']' => {
                in_brackets = false;
                c
            }
            '-' if !in_brackets => '_',
            c => c,
        })
        .collect()
}

/// Pure: the modules whose `alias PATTERN MODULE` lines in `text` match `modalias`, in
/// order and once each (kmod loads them all). Malformed lines and bad patterns match
/// nothing; a pattern is compiled only when the text before its first wildcard matches.
pub fn matching(text: &str, modalias: &str) -> Vec<String> {
    let modalias = &normalize(modalias);
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some("alias"), Some(pat), Some(module), None) = (f.next(), f.next(), f.next(), f.next()) else { continue };
        let pat = &normalize(pat);
        let literal = pat.split(['*', '?', '[']).next().unwrap_or("");
        if !modalias.starts_with(literal) || !glob::Pattern::new(pat).is_ok_and(|p| p.matches(modalias)) {
            continue;
        }
        let module = normalize(module);
        if !out.contains(&module) {
            out.push(module);
        }
    }
    out
}

/// kmod's index files (`modules.alias.bin`): a trie of keys with values. Big-endian u32s.
const INDEX_MAGIC: u32 = 0xB007_F457;
const INDEX_MAJOR: u32 = 2;
const NODE_PREFIX: u32 = 0x8000_0000;
const NODE_VALUES: u32 = 0x4000_0000;
const NODE_CHILDS: u32 = 0x2000_0000;
const NODE_MASK: u32 = 0x0FFF_FFFF;
/// Most nodes visited and longest key rebuilt in one index.
const MAX_NODES: usize = 1 << 20;
pub const MAX_KEY: usize = 4096;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn cstr(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = rest.iter().position(|&c| c == 0)?;
    Some((&rest[..n], at + n + 1))
}

/// A node of kmod's index whose children are being walked: where their offsets start, the
/// first one's character, how many, the next to visit, the node's own offset (children lie
/// below it) and the length of its key (prefix included).
struct Frame {
    childs_at: usize,
    first: u8,
    count: usize,
    next: usize,
    offset: usize,
    key_len: usize,
}

/// Reads the node at `off` (flags in its top bits): adds its prefix to `key`, writes its
/// values as lines to `out`, and returns its children to walk, if it has any.
fn index_node(b: &[u8], off: u32, key: &mut Vec<u8>, out: &mut String) -> Option<Frame> {
    let offset = (off & NODE_MASK) as usize;
    let mut at = offset;
    if off & NODE_PREFIX != 0 {
        let (prefix, next) = cstr(b, at)?;
        if key.len() + prefix.len() > MAX_KEY {
            return None;
        }
        key.extend_from_slice(prefix);
        at = next;
    }
    let mut frame = None;
    if off & NODE_CHILDS != 0 {
        let (&first, &last) = (b.get(at)?, b.get(at + 1)?);
        let count = usize::from(last.checked_sub(first)?) + 1;
        frame = Some(Frame { childs_at: at + 2, first, count, next: 0, offset, key_len: key.len() });
        at += 2 + 4 * count;
    }
    if off & NODE_VALUES != 0 {
        let count = be32(b, at)?;
        at += 4;
        // A key or name that is empty or holds a space or a control character is not one
        // kmod wrote (and would break the line it becomes).
        let word = |w: &[u8]| !w.is_empty() && w.iter().all(|&c| c > b' ' && c != 0x7f);
        for _ in 0..count.min(1024) {
            // Each value: a priority, then the module's name.
            let Some((module, next)) = cstr(b, at + 4) else { break };
            at = next;
            if let (true, true, Ok(k), Ok(m)) = (word(key), word(module), std::str::from_utf8(key), std::str::from_utf8(module)) {
                out.push_str(&format!("alias {k} {m}\n"));
            }
        }
    }
    frame
}

/// Pure: kmod's `modules.alias.bin` as the `alias PATTERN MODULE` lines of the text file it
/// is built beside (in no particular order), for images that keep only the index
/// (mkinitcpio). None when it is not such an index; a damaged node ends its branch. depmod
/// writes a node's children before the node, so a child's offset must lie below its
/// parent's: the walk cannot loop. Each level adds a character to a key of at most
/// `MAX_KEY`, so one key buffer and at most `MAX_KEY` frames are all it holds; the nodes
/// visited and the text written are bounded too.
pub fn alias_index_lines(b: &[u8]) -> Option<String> {
    if be32(b, 0)? != INDEX_MAGIC || be32(b, 4)? >> 16 != INDEX_MAJOR {
        return None;
    }
    let mut out = String::new();
    let mut key = Vec::new();
    let mut stack: Vec<Frame> = index_node(b, be32(b, 8)?, &mut key, &mut out).into_iter().collect();
    let mut visited = 1;
    while let Some(f) = stack.last_mut() {
        if f.next >= f.count || visited >= MAX_NODES || out.len() as u64 > MAX_ALIASES {
            stack.pop();
            continue;
        }
        let i = f.next;
        f.next += 1;
        let (Some(child), Ok(ch)) = (be32(b, f.childs_at + 4 * i), u8::try_from(usize::from(f.first) + i)) else {
            stack.pop();
            continue;
        };
        if child == 0 || (child & NODE_MASK) as usize >= f.offset || f.key_len >= MAX_KEY {
            continue;
        }
        visited += 1;
        key.truncate(f.key_len);
        key.push(ch);
        if let Some(frame) = index_node(b, child, &mut key, &mut out) {
            stack.push(frame);
        }
    }
    Some(out)
}

/// This ramdisk's `modules.alias`, read when first asked about (most boots never are: every
/// storage device already has its driver), and the answers given.
pub struct Aliases {
    path: Option<std::path::PathBuf>,
    text: Option<String>,
    cache: HashMap<String, Vec<String>>,
}

impl Aliases {
    /// The running kernel's, if this ramdisk has one (the text, or kmod's index where only
    /// that was kept); None otherwise (the caller then falls back to udev's queue). Nothing
    /// is read yet.
    pub fn find() -> Option<Aliases> {
        let release = read_bounded(Path::new("/proc/sys/kernel/osrelease"), 256)?;
        let dir = Path::new("/lib/modules").join(release.trim());
        ["modules.alias", "modules.alias.bin"].iter().map(|f| dir.join(f)).find(|p| p.is_file()).map(|p| Aliases {
            path: Some(p),
            text: None,
            cache: HashMap::new(),
        })
    }

    /// Those of the modules in `dir` (another kernel's, when building its ramdisk).
    pub fn at(dir: &Path) -> Aliases {
        let path = ["modules.alias", "modules.alias.bin"].iter().map(|f| dir.join(f)).find(|p| p.is_file());
        Aliases { path, text: None, cache: HashMap::new() }
    }

    /// Over a given text (tests, fuzzing).
    pub fn from_text(text: &str) -> Aliases {
        Aliases { path: None, text: Some(text.to_string()), cache: HashMap::new() }
    }

    /// The modules whose patterns match `modalias`.
    pub fn modules_for(&mut self, modalias: &str) -> Vec<String> {
        if let Some(m) = self.cache.get(modalias) {
            return m.clone();
        }
        // Unreadable: no module is known to be on its way.
        let path = self.path.as_deref();
        let text = self.text.get_or_insert_with(|| path.and_then(read_aliases).unwrap_or_default());
        let m = matching(text, modalias);
        if self.cache.len() < MAX_CACHED {
            self.cache.insert(modalias.to_string(), m.clone());
        }
        m
    }
}

/// `modules.alias`, or the lines of `modules.alias.bin`, bounded.
fn read_aliases(p: &Path) -> Option<String> {
    if p.extension().is_some_and(|e| e == "bin") {
        let mut b = Vec::new();
        fs::File::open(p).ok()?.take(MAX_ALIASES).read_to_end(&mut b).ok()?;
        return alias_index_lines(&b);
    }
    read_bounded(p, MAX_ALIASES)
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
            let Some(alias) = scan::attr(&p.join("modalias")) else { continue };
            if !modules::storage_alias(&alias) {
                continue;
            }
            let modules = aliases.modules_for(&alias);
            if modules.is_empty() || modules.iter().any(|m| loaded.contains(m)) {
                continue;
            }
            let module = modules.join(", ");
            let name = e.file_name().to_string_lossy().into_owned();
            out.push(scan::observed(
                format!("driver {bus} {name}"),
                format!("{bus} device {name} has no driver yet ({module} is to be loaded)"),
                SCAN_BOUND,
            ));
        }
    }
    let nvme = sys.join("class/nvme");
    if let Ok(rd) = fs::read_dir(&nvme) {
        for e in rd.flatten().take(MAX_ENTRIES) {
            let Some(state) = read_bounded(&e.path().join("state"), 64) else { continue };
            let state = state.trim();
            if matches!(state, "new" | "connecting" | "resetting") {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push(scan::observed(format!("nvme {name}"), format!("NVMe controller {name} is being set up ({state})"), SCAN_BOUND));
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
        let mut a = Aliases::from_text(ALIASES);
        assert!(matching(ALIASES, "pci:v[").is_empty(), "a bad pattern matches nothing");
        assert!(matching(ALIASES, "broken").is_empty(), "nor does a line without a module");
        assert_eq!(a.modules_for("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), ["ahci"]);
        assert_eq!(a.modules_for("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(a.modules_for("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"), ["usb_storage", "uas"]);
        assert!(a.modules_for("virtio:d00000005v00001AF4").is_empty(), "the balloon: no module here");
        // Answers are remembered.
        assert_eq!(a.modules_for("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(a.cache.len(), 4);
    }

    fn fixture(name: &str) -> Vec<u8> {
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/modules").join(name)).unwrap()
    }

    fn sorted_lines(text: &str) -> Vec<String> {
        let mut v: Vec<String> = text.lines().filter(|l| l.starts_with("alias ")).map(normalize).collect();
        v.sort();
        v
    }

    #[test]
    fn kmods_index_holds_the_same_aliases_as_its_text() {
        let text = String::from_utf8(fixture("modules.alias")).unwrap();
        let index = alias_index_lines(&fixture("modules.alias.bin")).unwrap();
        let (a, b) = (sorted_lines(&text), sorted_lines(&index));
        assert!(a.len() > 900, "{}", a.len());
        let only_text: Vec<_> = a.iter().filter(|l| !b.contains(l)).take(5).collect();
        let only_index: Vec<_> = b.iter().filter(|l| !a.contains(l)).take(5).collect();
        assert!(only_text.is_empty() && only_index.is_empty(), "text only: {only_text:?}, index only: {only_index:?}");
        assert_eq!(a.len(), b.len());
        // And they answer alike.
        let ahci = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
        assert_eq!(matching(&index, ahci), ["ahci"]);
        assert_eq!(matching(&text, "virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(matching(&index, "virtio:d00000002v00001AF4"), ["virtio_blk"]);
        // The index keeps keys with `-` as `_`, as kmod compares them.
        assert_eq!(matching(&index, "scsi:t-0x00"), ["sd_mod"]);
        assert_eq!(matching(&text, "scsi:t-0x00"), ["sd_mod"]);
    }

    #[test]
    fn a_damaged_index_is_no_answer_or_a_short_one_never_a_panic() {
        let bin = fixture("modules.alias.bin");
        assert_eq!(alias_index_lines(b"not an index"), None);
        assert_eq!(alias_index_lines(&[]), None);
        let full = alias_index_lines(&bin).unwrap().len();
        for cut in [12, 100, 4096, bin.len() / 2, bin.len() - 1] {
            assert!(alias_index_lines(&bin[..cut]).map_or(0, |s| s.len()) <= full);
        }
        let mut flipped = bin.clone();
        for i in (12..flipped.len()).step_by(97) {
            flipped[i] ^= 0x5a;
        }
        let _ = alias_index_lines(&flipped);
        // A node that points at itself (or above) is not followed.
        let mut lo = Vec::new();
        lo.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
        lo.extend_from_slice(&0x0002_0001u32.to_be_bytes());
        lo.extend_from_slice(&(NODE_CHILDS | 12).to_be_bytes());
        lo.extend_from_slice(b"aa");
        lo.extend_from_slice(&(NODE_CHILDS | 12).to_be_bytes());
        assert_eq!(alias_index_lines(&lo).as_deref(), Some(""));
        // Nodes shared by many parents (each level's two children are the level below):
        // 2^40 paths, walked within the bounds on nodes and text.
        let mut dag = Vec::new();
        dag.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
        dag.extend_from_slice(&0x0002_0001u32.to_be_bytes());
        dag.extend_from_slice(&[0; 4]);
        let leaf = dag.len() as u32;
        dag.extend_from_slice(&1u32.to_be_bytes());
        dag.extend_from_slice(&[0, 0, 0, 0, b'm', 0]);
        let mut below = NODE_VALUES | leaf;
        for _ in 0..40 {
            let at = dag.len() as u32;
            dag.extend_from_slice(b"ab");
            dag.extend_from_slice(&below.to_be_bytes());
            dag.extend_from_slice(&below.to_be_bytes());
            below = NODE_CHILDS | at;
        }
        dag[8..12].copy_from_slice(&below.to_be_bytes());
        let text = alias_index_lines(&dag).unwrap();
        assert!(text.len() as u64 <= MAX_ALIASES + 128 && text.lines().count() < MAX_NODES, "{}", text.len());
        assert!(text.starts_with("alias aaaa"), "{}", &text[..60]);
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
        let mut a = Aliases::from_text(ALIASES);
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
        let mut a = Aliases::from_text(ALIASES);
        assert!(in_flight(Path::new("/nonexistent/zroam-drivers"), &BTreeSet::new(), &mut a).is_empty());
        let t = Tree::new("garbage");
        t.device("pci", "x", &"\u{ff}".repeat(10_000), false);
        fs::create_dir_all(t.0.join("class/nvme/nvme0/state")).unwrap();
        assert!(in_flight(&t.0, &BTreeSet::new(), &mut a).is_empty());
        let mut empty = Aliases::from_text("\0\0\nalias\nalias a b c d\n");
        assert!(empty.modules_for("pci:v00008086").is_empty());
    }
}
