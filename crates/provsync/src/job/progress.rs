//! Live counters of the running job, read by the CLI's progress bars and by metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the stages as they go (not persisted: the store has the truth).
#[derive(Debug, Default)]
pub struct Progress {
    /// Pages fetched.
    pub pages: AtomicU64,
    /// Records extracted.
    pub extracted: AtomicU64,
    /// Records transformed (mapped or rejected).
    pub transformed: AtomicU64,
    /// Records loaded (written, unchanged or failed).
    pub loaded: AtomicU64,
    /// Links processed by the relations stage.
    pub links: AtomicU64,
    /// Records disconnected by the sweep.
    pub disconnected: AtomicU64,
    /// How far extraction is through the source, in the source's unit (0: unknown).
    pub source_done: AtomicU64,
    /// The source's size in that unit (0: unknown).
    pub source_total: AtomicU64,
    /// Time spent fetching pages (ns).
    pub extract_ns: AtomicU64,
    /// Time spent mapping pages (ns).
    pub transform_ns: AtomicU64,
    /// Time spent loading pages: hash checks, target writes, ledger commits (ns).
    pub load_ns: AtomicU64,
    /// Part of load: content-hash lookups in the store (ns).
    pub load_known_ns: AtomicU64,
    /// Part of load: target writes (ns).
    pub load_target_ns: AtomicU64,
    /// Part of load: ledger commits in the store (ns).
    pub load_commit_ns: AtomicU64,
    /// Time spent in the relations stage (ns).
    pub relations_ns: AtomicU64,
    /// Time spent in the finish stage, sweep included (ns).
    pub finish_ns: AtomicU64,
}

impl Progress {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds the time elapsed since `start` to a stage timer.
    pub fn time(counter: &AtomicU64, start: std::time::Instant) {
        counter.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
