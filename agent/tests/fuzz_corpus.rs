//! The fuzz corpora replayed under `cargo test`: every file of `agent/fuzz/corpus/<target>/`
//! (and of `agent/fuzz/artifacts/<target>/`, where `make fuzz` leaves the inputs that crashed,
//! when there are any) goes through `zroam::fuzzing::<target>`, the function the cargo-fuzz
//! target calls, as libFuzzer's `-runs=0` replay did: a crash that was fixed stays fixed.
//!
//! An input fails when the harness panics, when the heap it holds at its peak exceeds
//! `PEAK_LIMIT`, or when it leaves memory allocated behind (a leak, as LeakSanitizer would
//! report). The heap is counted by this binary's global allocator, per thread, so the five
//! targets replay side by side without counting each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The most heap one input may hold at once. The parsers bound what they allocate far below
/// this (a device's label area is 256 KiB, a decoded nvlist at most `MAX_DECODED`, 512 KiB,
/// and `make fuzz` makes inputs of at most 300 000 bytes): the committed corpora peak at
/// 758 871 bytes (label), 558 352 (nvlist) and under 50 KB for the other targets. 64 MiB is
/// 80 times that, and still catches an allocation sized from a hostile length field, which
/// the bounds exist to stop. The count is of the heap the harness holds, so it is exact and
/// the same on every run and machine; libFuzzer's `-rss_limit_mb=1024`, which this replaces,
/// measured the whole process's RSS, sanitizer shadow and quarantine included (300 MB for
/// the label corpus).
const PEAK_LIMIT: usize = 64 << 20;

struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread since the last `reset`.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last `reset`.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down may still free memory after its TLS is gone.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn reset() {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
}

/// What one run of the harness did: its panic message, if it panicked, and its heap.
struct Run {
    panic: Option<String>,
    peak: usize,
    net: isize,
}

fn run(harness: fn(&[u8]), data: &[u8]) -> Run {
    reset();
    let r = catch_unwind(AssertUnwindSafe(|| harness(data)));
    let (peak, net) = (PEAK.with(Cell::get).max(0) as usize, LIVE.with(Cell::get));
    let panic = r.err().map(|e| {
        // Read after the counters: the message's own allocation is not the harness's.
        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
    });
    Run { panic, peak, net }
}

/// The committed corpus of `target`, then the crash artifacts `make fuzz` left, each sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let list = |dir: &Path| {
        let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path()).filter(|p| p.is_file()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != corpus => Vec::new(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        v.sort();
        v
    };
    let mut all = list(&corpus);
    assert!(!all.is_empty(), "{}: no corpus to replay", corpus.display());
    all.extend(list(&fuzz.join("artifacts").join(target)));
    all
}

fn replay(target: &str, harness: fn(&[u8])) {
    let files = inputs(target);
    let mut failures = Vec::new();
    let (mut worst, mut worst_peak) = (String::from("(empty input)"), 0);
    // libFuzzer runs the empty input before the corpus; so does this.
    let empty = [(String::from("(empty input)"), Vec::new())].into_iter();
    let read = files.iter().map(|p| (p.display().to_string(), fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))));
    for (name, data) in empty.chain(read) {
        let mut r = run(harness, &data);
        if r.panic.is_none() && r.net > 0 {
            // Memory kept by a one-time cache (the label reader's per-thread buffer) is
            // not a leak: a second run of the same input leaves nothing behind.
            r = run(harness, &data);
        }
        if r.peak > worst_peak {
            (worst, worst_peak) = (name.clone(), r.peak);
        }
        if let Some(msg) = &r.panic {
            failures.push(format!("{name}: panicked: {msg}"));
        }
        if r.peak > PEAK_LIMIT {
            failures.push(format!("{name}: {} bytes of heap at the peak, over the {PEAK_LIMIT}-byte limit", r.peak));
        }
        if r.panic.is_none() && r.net > 0 {
            failures.push(format!("{name}: {} bytes still allocated after the harness returned", r.net));
        }
    }
    eprintln!("fuzz corpus {target}: {} inputs, peak heap {worst_peak} bytes ({worst})", files.len() + 1);
    assert!(failures.is_empty(), "fuzz corpus {target}: {} of {} inputs failed:\n{}", failures.len(), files.len() + 1, failures.join("\n"));
}

#[test]
fn nvlist() {
    replay("nvlist", zroam::fuzzing::nvlist);
}

#[test]
fn label() {
    replay("label", zroam::fuzzing::label);
}

#[test]
fn gpt() {
    replay("gpt", zroam::fuzzing::gpt);
}

#[test]
fn espset() {
    replay("espset", zroam::fuzzing::espset);
}

#[test]
fn keys() {
    replay("keys", zroam::fuzzing::keys);
}

#[test]
fn modalias() {
    replay("modalias", zroam::fuzzing::modalias);
}

#[test]
fn image() {
    replay("image", zroam::fuzzing::image);
}
