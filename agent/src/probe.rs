//! Stage 2: read every block device (in parallel, each within a time bound) and record
//! what is on it; then stage 3 (assemble) over the labels found.

use crate::assemble::{self, AuxDevice, Found, Pool};
use crate::blockdev::{BlockSource, FileSource};
use crate::fat::{self, Fat};
use crate::gpt::{self, Gpt, PartKind, Partition};
use crate::label::{self, DeviceLabels, Uberblock};
use crate::luks::{self, Luks};
use crate::mdraid::{self, MdSuper};
use crate::nvlist::NvList;
use crate::sysfs::{self, BlockDev, Bus};
use crate::vdev::LabelInfo;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most devices probed in one pass; a machine with more is reported, not hung on.
pub const MAX_DEVICES: usize = 512;

#[derive(Debug, Clone, Serialize)]
pub struct ZfsFound {
    /// The chosen copy's decoded meaning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelInfo>,
    pub chosen_label: Option<u8>,
    /// Label copies that were blank, foreign, damaged or unreadable while another was good.
    pub damaged_labels: Vec<u8>,
    pub copies: Vec<label::LabelCopy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uberblock: Option<Uberblock>,
    /// The chosen copy's full config, as decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
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
pub struct Contents {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt: Option<Gpt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fat: Option<Fat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub luks: Option<Luks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdraid: Option<MdSuper>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
pub struct DeviceReport {
    #[serde(flatten)]
    pub dev: BlockDev,
    /// The GPT entry describing this partition, from its disk's table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpt_entry: Option<Partition>,
    #[serde(flatten)]
    pub contents: Contents,
    pub elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DeviceReport {
    pub fn is_esp(&self) -> bool {
        self.gpt_entry.as_ref().is_some_and(|p| p.kind == PartKind::Esp)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub version: &'static str,
    pub elapsed_ms: f64,
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

/// Probe devices in parallel. Each runs on its own thread; any not done by the deadline
/// is reported as timed out (its thread is left behind: a read stuck in the kernel cannot
/// be cancelled, but it must not hold up boot).
pub fn probe(opts: &Options) -> ProbeReport {
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

    let (tx, rx) = mpsc::channel();
    for (i, d) in devs.iter().enumerate() {
        let tx = tx.clone();
        let d = d.clone();
        std::thread::Builder::new()
            .name(format!("probe-{}", d.name))
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send((i, probe_one(&d)));
            })
            .map_err(|e| warnings.push(format!("cannot start a probe thread: {e}")))
            .ok();
    }
    drop(tx);
    let mut results: Vec<Option<Probed>> = vec![None; devs.len()];
    let deadline = Instant::now() + opts.device_timeout;
    while results.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, p)) => results[i] = Some(p),
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
        version: env!("CARGO_PKG_VERSION"),
        elapsed_ms: ms(t0.elapsed()),
        devices: reports,
        pools: asm.pools,
        aux: asm.aux,
        warnings,
    }
}

/// Give each partition the GPT entry its disk's table holds for it.
pub fn link_partitions(reports: &mut [DeviceReport]) {
    let tables: Vec<(String, Gpt)> =
        reports.iter().filter_map(|r| Some((r.dev.name.clone(), r.contents.gpt.clone()?))).collect();
    for r in reports.iter_mut() {
        let (Some(parent), Some(n)) = (&r.dev.parent, r.dev.partition) else { continue };
        if let Some((_, g)) = tables.iter().find(|(name, _)| name == parent) {
            r.gpt_entry = g.partitions.iter().find(|p| p.number == n).cloned();
        }
    }
}
