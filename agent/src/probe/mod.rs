//! The probe, run on each pass of stage `wait`: read every block device (in parallel, each
//! within a time bound) and record what is on it; then `assemble` over the labels found.

pub mod assemble;
pub mod sysfs;
pub mod table;

use crate::ondisk::blockdev::{BlockSource, FileSource, Head};
use crate::ondisk::fat::{self, Fat};
use crate::ondisk::gpt::{self, Gpt, PartKind, Partition};
use crate::ondisk::label::{self, DeviceLabels, Uberblock};
use crate::ondisk::luks::{self, Luks};
use crate::ondisk::mdraid::{self, MdSuper};
use crate::ondisk::nvlist::NvList;
use crate::ondisk::swap::{self, Swap};
use crate::ondisk::vdev::LabelInfo;
use assemble::{AuxDevice, Found, Pool};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use sysfs::{BlockDev, Bus};

/// Most devices probed in one pass; a machine with more is reported, not hung on.
pub const MAX_DEVICES: usize = 512;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct ZfsFound {
    /// The chosen copy's decoded meaning.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label: Option<LabelInfo>,
    pub chosen_label: Option<u8>,
    /// Label copies that were blank, foreign, damaged or unreadable while another was good.
    pub damaged_labels: Vec<u8>,
    pub copies: Vec<label::LabelCopy>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uberblock: Option<Uberblock>,
    /// The chosen copy's full config, as decoded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config: Option<NvList>,
    /// Why the config is not kept (too large: the summary in `label` is).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub config_not_kept: Option<String>,
}

/// A single device's decoded config is kept up to this size (a label area is 112 KiB;
/// a config that decodes larger is padding or an attack, and its summary suffices).
pub const KEEP_CONFIG: usize = 256 << 10;

impl ZfsFound {
    /// Keeps one decoded config per device (the chosen copy's), and only up to
    /// `KEEP_CONFIG`: the other copies' are dropped once the choice is made.
    fn new(mut l: DeviceLabels) -> Self {
        let mut config = l.config().cloned();
        for c in l.copies.iter_mut() {
            c.config = None;
        }
        let label = config.as_ref().and_then(LabelInfo::from_config);
        let mut config_not_kept = None;
        if let Some(b) = config.as_ref().map(NvList::heap_bytes).filter(|b| *b > KEEP_CONFIG) {
            config = None;
            config_not_kept = Some(format!("the config decodes to about {} KiB, more than the {} KiB kept", b >> 10, KEEP_CONFIG >> 10));
        }
        ZfsFound {
            label,
            chosen_label: l.chosen,
            damaged_labels: l.damaged(),
            uberblock: l.uberblock.clone(),
            copies: l.copies,
            config,
            config_not_kept,
        }
    }
}

/// Bytes of a device's start read at once by `read_contents` (the GPT's header and a
/// 16 KiB entry array with 512- or 4096-byte sectors, a LUKS2 header with the default
/// JSON area, the md 1.2 superblock at 4 KiB all fit).
const HEAD: usize = 32 << 10;

/// What one device holds.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Contents {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gpt: Option<Gpt>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gpt_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fat: Option<Fat>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub luks: Option<Luks>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mdraid: Option<MdSuper>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zfs: Option<ZfsFound>,
    /// A swap area, and whether it holds a hibernation image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub swap: Option<Swap>,
}

/// Read everything zroam recognises from one device. `whole_disk` asks for a partition
/// table; a disk that has one keeps its ZFS labels in its partitions, so labels are not
/// looked for on it.
pub fn read_contents(src: &dyn BlockSource, whole_disk: bool, sector: u32) -> Contents {
    let mut c = Contents::default();
    // The first 32 KiB in one read: everything below reads there first, in small pieces.
    let head = Head::new(src, HEAD);
    let src: &dyn BlockSource = &head;
    if whole_disk {
        match gpt::read(src, sector) {
            Ok(g) => c.gpt = Some(g),
            Err(gpt::GptError::NoSignature) => {}
            Err(e) => c.gpt_error = Some(e.to_string()),
        }
    }
    // One read of the first page serves the FAT boot sector and the swap signature.
    if let Ok(b) = src.read_vec(0, src.size().min(swap::PAGE as u64) as usize) {
        c.fat = fat::parse(&b);
        c.swap = swap::parse(&b);
    }
    c.luks = luks::probe(src);
    c.mdraid = mdraid::probe(src);
    if c.gpt.as_ref().is_none_or(|g| g.partitions.is_empty()) {
        c.zfs = label::read_labels(src).filter(DeviceLabels::is_zfs).map(ZfsFound::new);
    }
    c
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct DeviceReport {
    #[serde(flatten)]
    pub dev: BlockDev,
    /// The GPT entry describing this partition, from its disk's table.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gpt_entry: Option<Partition>,
    #[serde(flatten)]
    pub contents: Contents,
    pub elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl DeviceReport {
    pub fn is_esp(&self) -> bool {
        self.gpt_entry.as_ref().is_some_and(|p| p.kind == PartKind::Esp)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct ProbeReport {
    pub version: String,
    pub elapsed_ms: f64,
    /// Devices answered from an earlier pass of the same boot (unchanged since).
    pub reused: usize,
    pub devices: Vec<DeviceReport>,
    pub pools: Vec<Pool>,
    pub aux: Vec<AuxDevice>,
    /// Reads in flight when the pass ended (stuck or slow devices), and for how long.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pending: Vec<PendingRead>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct PendingRead {
    pub device: String,
    pub ms: u64,
}

pub struct Options {
    pub sys: PathBuf,
    /// Longest time one device may take before it is reported as timed out.
    pub device_timeout: Duration,
    /// Probe these files or device nodes instead of enumerating sysfs.
    pub paths: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options { sys: PathBuf::from("/sys"), device_timeout: Duration::from_secs(5), paths: Vec::new() }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// An explicitly named file or node, described without sysfs.
fn dev_for_path(p: &Path) -> BlockDev {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    BlockDev {
        name,
        node: p.to_string_lossy().into_owned(),
        major: 0,
        minor: 0,
        size: 0,
        partition: None,
        parent: None,
        start: None,
        removable: false,
        read_only: true,
        bus: Bus::Unknown,
        logical_block_size: 512,
        model: None,
        serial: None,
        holders: Vec::new(),
        detail: None,
    }
}

/// What one probe thread found, and how long it took.
#[derive(Clone)]
struct Probed {
    contents: Contents,
    error: Option<String>,
    /// The size the open device reported (files named with --dev have no sysfs size).
    size: u64,
    elapsed: Duration,
}

fn probe_one(dev: &BlockDev) -> Probed {
    let t = Instant::now();
    let (contents, error, size) = match FileSource::open(Path::new(&dev.node)) {
        Ok(src) => (read_contents(&src, dev.partition.is_none(), dev.logical_block_size), None, src.size()),
        Err(e) => (Contents::default(), Some(format!("open {}: {e}", dev.node)), 0),
    };
    Probed { contents, error, size, elapsed: t.elapsed() }
}

type Key = (String, u32, u32, u64);

/// What the probe remembers across the passes of one boot: results reused while a device
/// is unchanged (a boot's wait loop probes again whenever devices appear; without this every
/// pass would read and hash every label again), reads still in flight (a read stuck in the
/// kernel cannot be cancelled: it is never started a second time, so stuck devices cost
/// one thread each, not one per pass), and devices whose read failed, tried again only
/// after a back-off or when a uevent says they changed.
pub struct Cache {
    entries: HashMap<Key, Probed>,
    /// Reads started and not answered yet, and when they started.
    inflight: HashMap<Key, Instant>,
    /// Devices whose read failed: not before this instant, and how often so far.
    backoff: HashMap<Key, (Instant, u32)>,
    /// Every read's answer comes here, in the pass that started it or a later one.
    tx: mpsc::Sender<(Key, Probed)>,
    rx: mpsc::Receiver<(Key, Probed)>,
    /// Probe threads alive, stuck ones included.
    threads: Arc<AtomicUsize>,
    /// Decoded label configs kept in `entries`, in estimated bytes.
    config_bytes: usize,
}

impl Default for Cache {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Cache {
            entries: HashMap::new(),
            inflight: HashMap::new(),
            backoff: HashMap::new(),
            tx,
            rx,
            threads: Arc::new(AtomicUsize::new(0)),
            config_bytes: 0,
        }
    }
}

impl Cache {
    /// Drop what is known about a device (a uevent said it was added, changed or removed).
    /// A read in flight stays in flight: it is not started twice.
    pub fn forget(&mut self, name: &str) {
        let mut freed = 0;
        self.entries.retain(|k, v| {
            let keep = k.0 != name;
            if !keep {
                freed += v.contents.zfs.as_ref().and_then(|z| z.config.as_ref()).map_or(0, NvList::heap_bytes);
            }
            keep
        });
        self.config_bytes -= freed.min(self.config_bytes);
        self.backoff.retain(|k, _| k.0 != name);
    }

    /// Take an answer in: keep a good one (its config only while the budget allows), put a
    /// failed device on back-off.
    fn answer(&mut self, key: Key, mut p: Probed) -> Probed {
        self.inflight.remove(&key);
        if p.error.is_some() {
            let tries = self.backoff.get(&key).map_or(0, |b| b.1) + 1;
            let wait = BACKOFF_FIRST * 2u32.saturating_pow(tries.min(5) - 1);
            self.backoff.insert(key, (Instant::now() + wait.min(BACKOFF_MAX), tries));
            return p;
        }
        self.backoff.remove(&key);
        if let Some(z) = p.contents.zfs.as_mut() {
            let bytes = z.config.as_ref().map_or(0, NvList::heap_bytes);
            if self.config_bytes + bytes > CONFIG_BUDGET {
                z.config = None;
                z.config_not_kept = Some(format!("the probe keeps at most {} KiB of decoded configs", CONFIG_BUDGET >> 10));
            } else {
                self.config_bytes += bytes;
            }
        }
        self.entries.insert(key, p.clone());
        p
    }
}

fn cache_key(d: &BlockDev) -> Key {
    (d.name.clone(), d.major, d.minor, d.size)
}

/// Reads started at once at the start of a pass: enough to overlap slow devices, few
/// enough that thread start-up (costly under emulation) and label buffers stay small.
pub const WORKERS: usize = 4;
/// A read that has not answered after this long is taken for stuck: another thread takes
/// over the devices still waiting to be read.
pub const STUCK_AFTER: Duration = Duration::from_millis(1000);
/// Most probe threads alive at once, stuck ones included (each stuck device holds one).
pub const MAX_THREADS: usize = 32;
/// Decoded label configs the probe keeps across passes (the rest is summarised).
pub const CONFIG_BUDGET: usize = 16 << 20;
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Probe devices in parallel. A device not done by the bound is reported as timed out;
/// its read goes on in its own thread and its answer is used by a later pass.
pub fn probe(opts: &Options) -> ProbeReport {
    probe_cached(opts, &mut Cache::default())
}

/// The devices one pass reads, shared with its threads.
struct Jobs {
    queue: std::sync::Mutex<std::collections::VecDeque<(Key, BlockDev)>>,
    started: std::sync::Mutex<HashMap<Key, Instant>>,
}

fn spawn_worker(jobs: &Arc<Jobs>, cache: &Cache) -> Result<(), String> {
    let (jobs, tx, threads) = (jobs.clone(), cache.tx.clone(), cache.threads.clone());
    threads.fetch_add(1, Ordering::SeqCst);
    let count = threads.clone();
    std::thread::Builder::new()
        .name("probe".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            loop {
                let job = jobs.queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((key, dev)) = job else { break };
                if let Ok(mut s) = jobs.started.lock() {
                    s.insert(key.clone(), Instant::now());
                }
                if tx.send((key, probe_one(&dev))).is_err() {
                    break;
                }
            }
            threads.fetch_sub(1, Ordering::SeqCst);
        })
        .map(|_| ())
        .map_err(|e| {
            count.fetch_sub(1, Ordering::SeqCst);
            format!("cannot start a probe thread: {e}")
        })
}

/// `probe`, answering from `cache` for devices seen before and filling it.
pub fn probe_cached(opts: &Options, cache: &mut Cache) -> ProbeReport {
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let mut devs: Vec<BlockDev> = if opts.paths.is_empty() {
        match sysfs::enumerate(&opts.sys) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(format!("cannot list {}/class/block: {e}", opts.sys.display()));
                Vec::new()
            }
        }
    } else {
        opts.paths.iter().map(|p| dev_for_path(p)).collect()
    };
    if devs.len() > MAX_DEVICES {
        warnings.push(format!("{} block devices; only the first {MAX_DEVICES} were probed", devs.len()));
        devs.truncate(MAX_DEVICES);
    }
    // Answers that came after their pass ended.
    while let Ok((k, p)) = cache.rx.try_recv() {
        cache.answer(k, p);
    }

    let keys: Vec<Key> = devs.iter().map(cache_key).collect();
    let mut results: Vec<Option<Probed>> = keys.iter().map(|k| cache.entries.get(k).cloned()).collect();
    let reused = results.iter().filter(|r| r.is_some()).count();
    let now = Instant::now();
    let mut todo = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        if let Some(since) = cache.inflight.get(k) {
            results[i] =
                Some(not_answered(format!("still reading after {:.1} s (not read again until it answers)", since.elapsed().as_secs_f64())));
        } else if let Some((until, tries)) = cache.backoff.get(k).filter(|(until, _)| now < *until) {
            let left = until.saturating_duration_since(now).as_secs_f64();
            results[i] = Some(not_answered(format!("failed {tries} time(s); read again in {left:.1} s or when it changes")));
        } else {
            todo.push(i);
        }
    }
    let jobs = Arc::new(Jobs {
        queue: std::sync::Mutex::new(todo.iter().map(|&i| (keys[i].clone(), devs[i].clone())).collect()),
        started: std::sync::Mutex::new(HashMap::new()),
    });
    for &i in &todo {
        cache.inflight.insert(keys[i].clone(), now);
    }
    let room = MAX_THREADS.saturating_sub(cache.threads.load(Ordering::SeqCst));
    for _ in 0..WORKERS.min(todo.len()).min(room) {
        if let Err(e) = spawn_worker(&jobs, cache) {
            warnings.push(e);
            break;
        }
    }
    let deadline = now + opts.device_timeout;
    let mut replaced = 0usize;
    let mut open: Vec<usize> = todo.clone();
    while !open.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match cache.rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok((k, p)) => take(cache, &keys, &mut open, &mut results, k, p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Reads that have not answered for a while hold their threads: start as many
        // threads as there are stuck reads, so the devices still queued are read.
        let stuck = jobs
            .started
            .lock()
            .map_or(0, |s| open.iter().filter(|&&i| s.get(&keys[i]).is_some_and(|t| t.elapsed() >= STUCK_AFTER)).count());
        let queued = jobs.queue.lock().map_or(0, |q| q.len());
        if queued > 0 && stuck > replaced && cache.threads.load(Ordering::SeqCst) < MAX_THREADS {
            match spawn_worker(&jobs, cache) {
                Ok(()) => replaced += 1,
                Err(e) => warnings.push(e),
            }
        }
        // Only stuck reads left: they answer into the cache when they do; a later pass
        // uses them.
        if queued == 0 && stuck == open.len() && !open.is_empty() {
            break;
        }
    }
    // Answers that came after the loop: reported now, not left for a pass that may not come.
    while let Ok((k, p)) = cache.rx.try_recv() {
        take(cache, &keys, &mut open, &mut results, k, p);
    }
    // Devices no thread took up are read by a later pass.
    let unstarted: Vec<Key> = jobs.queue.lock().map(|mut q| q.drain(..).map(|(k, _)| k).collect()).unwrap_or_default();
    for k in &unstarted {
        cache.inflight.remove(k);
    }
    for i in open {
        let why = if unstarted.contains(&keys[i]) {
            "not read in this pass: every probe thread is held by a stuck device".to_string()
        } else {
            format!("no answer within {:.1} s (still reading; not read again until it answers)", t0.elapsed().as_secs_f64())
        };
        results[i] = Some(not_answered(why));
    }
    let pending: Vec<PendingRead> = devs
        .iter()
        .zip(&keys)
        .filter_map(|(d, k)| {
            cache.inflight.get(k).map(|since| PendingRead { device: d.node.clone(), ms: since.elapsed().as_millis() as u64 })
        })
        .collect();

    let mut reports: Vec<DeviceReport> = devs
        .into_iter()
        .zip(results)
        .map(|(mut dev, r)| {
            let Probed { contents, error, size, elapsed } = r.expect("every device has an answer or a reason");
            if let Some(e) = &error {
                warnings.push(format!("{}: {e}", dev.node));
            }
            if dev.size == 0 {
                dev.size = size;
            }
            DeviceReport { dev, gpt_entry: None, contents, elapsed_ms: ms(elapsed), error }
        })
        .collect();
    link_partitions(&mut reports);

    let found: Vec<Found> = reports
        .iter()
        .filter_map(|r| {
            let z = r.contents.zfs.as_ref()?;
            Some(Found { device: r.dev.node.clone(), info: z.label.clone()?, uberblock: z.uberblock.clone() })
        })
        .collect();
    let asm = assemble::assemble(&found);
    ProbeReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        elapsed_ms: ms(t0.elapsed()),
        reused,
        devices: reports,
        pools: asm.pools,
        aux: asm.aux,
        pending,
        warnings,
    }
}

/// Takes an answer into the cache and into this pass's results: a read this pass started,
/// or one an earlier pass left in flight (its "still reading" would otherwise stand with no
/// read pending to call for another pass).
fn take(cache: &mut Cache, keys: &[Key], open: &mut Vec<usize>, results: &mut [Option<Probed>], k: Key, p: Probed) {
    let p = cache.answer(k.clone(), p);
    if let Some(i) = keys.iter().position(|x| *x == k) {
        open.retain(|&j| j != i);
        results[i] = Some(p);
    }
}

fn not_answered(why: String) -> Probed {
    Probed { contents: Contents::default(), error: Some(why), size: 0, elapsed: Duration::ZERO }
}

impl ProbeReport {
    /// The disk a device lives on: a partition's disk, and for a mapped device (a LUKS
    /// container opened as dm-N) the disk of the device it is mapped from.
    pub fn disk_of(&self, d: &DeviceReport) -> String {
        let mut cur = d;
        // Bounded: a stack deeper than this is not a disk layout zroam knows.
        for _ in 0..4 {
            if let Some(p) = &cur.dev.parent {
                return p.clone();
            }
            match self.devices.iter().find(|x| x.dev.holders.contains(&cur.dev.name)) {
                Some(lower) => cur = lower,
                None => break,
            }
        }
        cur.dev.name.clone()
    }
}

/// Give each partition the GPT entry its disk's table holds for it.
pub fn link_partitions(reports: &mut [DeviceReport]) {
    let tables: Vec<(String, Gpt)> = reports.iter().filter_map(|r| Some((r.dev.name.clone(), r.contents.gpt.clone()?))).collect();
    for r in reports.iter_mut() {
        let (Some(parent), Some(n)) = (&r.dev.parent, r.dev.partition) else { continue };
        if let Some((_, g)) = tables.iter().find(|(name, _)| name == parent) {
            r.gpt_entry = g.partitions.iter().find(|p| p.number == n).cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO nobody writes to blocks its reader in open(2), as a device that never
    /// answers blocks its reader in the kernel.
    fn fifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn stuck_devices_hold_neither_the_other_devices_nor_more_threads() {
        let dir = std::env::temp_dir().join(format!("zroam-stuck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Vec::new();
        // Four stuck devices first, so they take every initial thread.
        for i in 0..4 {
            let p = dir.join(format!("stuck{i}"));
            fifo(&p);
            paths.push(p);
        }
        for i in 0..3 {
            let p = dir.join(format!("disk{i}"));
            std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
            paths.push(p);
        }
        let opts = Options { paths: paths.clone(), device_timeout: Duration::from_secs(4), ..Options::default() };
        let mut cache = Cache::default();
        let t = Instant::now();
        let rep = probe_cached(&opts, &mut cache);
        // The good devices were read by the threads started for the stuck ones, and the
        // pass did not wait out the whole bound for reads that are only stuck.
        for d in rep.devices.iter().filter(|d| d.dev.name.starts_with("disk")) {
            assert!(d.error.is_none(), "{}: {:?}", d.dev.name, d.error);
        }
        assert!(t.elapsed() < Duration::from_secs(3), "the pass took {:?}", t.elapsed());
        assert_eq!(rep.pending.len(), 4, "{:?}", rep.pending);
        let threads = cache.threads.load(Ordering::SeqCst);
        assert!((4..=8).contains(&threads), "{threads} threads");
        // Later passes do not start the stuck reads again: no thread per pass.
        for _ in 0..3 {
            let rep = probe_cached(&opts, &mut cache);
            assert_eq!(rep.pending.len(), 4);
            assert!(rep
                .devices
                .iter()
                .filter(|d| d.dev.name.starts_with("stuck"))
                .all(|d| d.error.as_deref().is_some_and(|e| e.contains("still reading"))));
        }
        assert!(cache.threads.load(Ordering::SeqCst) <= threads, "threads leaked across passes");
        // Once a stuck device answers, the next pass uses its answer.
        for p in &paths[..4] {
            drop(std::fs::OpenOptions::new().write(true).open(p).unwrap());
        }
        let until = Instant::now() + Duration::from_secs(5);
        let mut rep = probe_cached(&opts, &mut cache);
        while !rep.pending.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            rep = probe_cached(&opts, &mut cache);
        }
        assert!(rep.pending.is_empty(), "{:?}", rep.pending);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A read that an earlier pass left in flight and that answers while a later pass is
    /// busy with other devices is reported by that pass: nothing says "still reading" once
    /// no read is pending (the wait loop probes again only while one is).
    #[test]
    fn a_late_answer_is_reported_by_the_pass_it_comes_in() {
        let dir = std::env::temp_dir().join(format!("zroam-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let late = dir.join("late");
        std::fs::write(&late, vec![0u8; 1 << 20]).unwrap();
        // A device this pass reads, which answers only after the late one has.
        let slow = dir.join("slow");
        fifo(&slow);
        let opts = Options { paths: vec![late.clone(), slow.clone()], device_timeout: Duration::from_secs(4), ..Options::default() };
        let mut cache = Cache::default();
        let key = cache_key(&dev_for_path(&late));
        // As an earlier pass leaves it: started, not answered.
        cache.inflight.insert(key.clone(), Instant::now());
        let tx = cache.tx.clone();
        let answer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send((key, Probed { contents: Contents::default(), error: None, size: 1 << 20, elapsed: Duration::ZERO })).unwrap();
        });
        let unblock = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(std::fs::OpenOptions::new().write(true).open(&slow).unwrap());
        });
        let rep = probe_cached(&opts, &mut cache);
        answer.join().unwrap();
        unblock.join().unwrap();
        let d = rep.devices.iter().find(|d| d.dev.name == "late").unwrap();
        assert!(d.error.is_none(), "the late answer was not reported: {:?}", d.error);
        assert!(rep.pending.iter().all(|p| !p.device.ends_with("late")), "{:?}", rep.pending);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
