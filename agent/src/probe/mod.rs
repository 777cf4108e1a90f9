//! The probe, run on each pass of stage `wait`: read every block device (in parallel, each
//! within a time bound) and record what is on it; then `assemble` over the labels found.

pub mod assemble;
pub mod sysfs;
pub mod table;

use crate::ondisk::blockdev::{BlockSource, FileSource};
use crate::ondisk::fat::{self, Fat};
use crate::ondisk::gpt::{self, Gpt, PartKind, Partition};
use crate::ondisk::label::{self, DeviceLabels, Uberblock};
use crate::ondisk::luks::{self, Luks};
use crate::ondisk::mdraid::{self, MdSuper};
use crate::ondisk::nvlist::NvList;
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
}

impl ZfsFound {
    fn new(l: DeviceLabels) -> Self {
        let config = l.config().cloned();
        ZfsFound {
            label: config.as_ref().and_then(LabelInfo::from_config),
            chosen_label: l.chosen,
            damaged_labels: l.damaged(),
            uberblock: l.uberblock.clone(),
            copies: l.copies,
            config,
        }
    }
}

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
}

/// Read everything zroam recognises from one device. `whole_disk` asks for a partition
/// table; a disk that has one keeps its ZFS labels in its partitions, so labels are not
/// looked for on it.
pub fn read_contents(src: &dyn BlockSource, whole_disk: bool, sector: u32) -> Contents {
    let mut c = Contents::default();
    if whole_disk {
        match gpt::read(src, sector) {
            Ok(g) => c.gpt = Some(g),
            Err(gpt::GptError::NoSignature) => {}
            Err(e) => c.gpt_error = Some(e.to_string()),
        }
    }
    if let Ok(b) = src.read_vec(0, 512) {
        c.fat = fat::parse(&b);
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
    pub warnings: Vec<String>,
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

/// Results of earlier passes, reused while a device is unchanged. A boot's wait loop
/// probes again whenever devices appear; without this every pass would read (and hash)
/// every label again, which made waiting for 32 disks cost seconds of CPU under emulation.
#[derive(Default)]
pub struct Cache {
    entries: HashMap<(String, u32, u32, u64), Probed>,
}

impl Cache {
    /// Drop what is known about a device (a uevent said it was added, changed or removed).
    pub fn forget(&mut self, name: &str) {
        self.entries.retain(|k, _| k.0 != name);
    }
}

fn cache_key(d: &BlockDev) -> (String, u32, u32, u64) {
    (d.name.clone(), d.major, d.minor, d.size)
}

/// At most this many devices are read at once: enough to overlap slow devices, few enough
/// that thread start-up (costly under emulation) and label buffers stay small.
pub const WORKERS: usize = 4;

/// Probe devices in parallel on a few worker threads. Any device not done by the deadline
/// is reported as timed out (its worker is left behind: a read stuck in the kernel cannot
/// be cancelled, but it must not hold up boot).
pub fn probe(opts: &Options) -> ProbeReport {
    probe_cached(opts, &mut Cache::default())
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

    let mut results: Vec<Option<Probed>> = devs.iter().map(|d| cache.entries.get(&cache_key(d)).cloned()).collect();
    let reused = results.iter().filter(|r| r.is_some()).count();
    let todo: Arc<Vec<(usize, BlockDev)>> =
        Arc::new(devs.iter().enumerate().filter(|(i, _)| results[*i].is_none()).map(|(i, d)| (i, d.clone())).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for w in 0..WORKERS.min(todo.len()) {
        let (tx, todo, next) = (tx.clone(), todo.clone(), next.clone());
        std::thread::Builder::new()
            .name(format!("probe-{w}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                while let Some((i, d)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if tx.send((*i, probe_one(d))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| warnings.push(format!("cannot start a probe thread: {e}")))
            .ok();
    }
    drop(tx);
    let deadline = Instant::now() + opts.device_timeout;
    while results.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, p)) => {
                if p.error.is_none() {
                    cache.entries.insert(cache_key(&devs[i]), p.clone());
                }
                results[i] = Some(p);
            }
            Err(_) => break,
        }
    }

    let mut reports: Vec<DeviceReport> = devs
        .into_iter()
        .zip(results)
        .map(|(mut dev, r)| {
            let Probed { contents, error, size, elapsed } = r.unwrap_or_else(|| Probed {
                contents: Contents::default(),
                error: Some(format!("no answer within {:?}", opts.device_timeout)),
                size: 0,
                elapsed: opts.device_timeout,
            });
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
        warnings,
    }
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
