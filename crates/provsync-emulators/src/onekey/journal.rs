//! The emulator's request log (what tests read to see which packets were fetched)
//! and its counters.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Entries kept in memory for `GET /_emulator/requests` (older ones are dropped;
/// the log file keeps them all).
const KEPT: usize = 100_000;

/// One request as the emulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Sequence number from 1.
    pub seq: u64,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The `cursor` query parameter, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Response status.
    pub status: u16,
    /// Fault injected instead of the real answer (`5xx`, `429`, `expired`, `malformed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Counters of `GET /_emulator/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Packets served with 200.
    pub packets: AtomicU64,
    /// Records in those packets.
    pub records: AtomicU64,
    /// Bytes of those packets.
    pub bytes: AtomicU64,
    /// Nanoseconds spent building packets.
    pub build_ns: AtomicU64,
    /// Sessions activated.
    pub sessions_opened: AtomicU64,
    /// Sessions deleted by the client.
    pub sessions_deleted: AtomicU64,
    /// Requests refused because their session had expired.
    pub sessions_expired: AtomicU64,
    /// Injected 5xx answers.
    pub faults_5xx: AtomicU64,
    /// Injected 429 answers.
    pub faults_429: AtomicU64,
    /// Tokens issued.
    pub tokens: AtomicU64,
}

/// Snapshot of the counters, as JSON.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Seconds since start.
    pub uptime_secs: f64,
    /// Requests answered.
    pub requests: u64,
    /// Packets served.
    pub packets: u64,
    /// Records served.
    pub records: u64,
    /// Bytes served in packets.
    pub bytes: u64,
    /// Records built per second of build time (the generator's serving rate).
    pub build_records_per_sec: f64,
    /// Sessions activated.
    pub sessions_opened: u64,
    /// Sessions deleted.
    pub sessions_deleted: u64,
    /// Requests on expired sessions.
    pub sessions_expired: u64,
    /// Sessions alive now.
    pub sessions_active: u64,
    /// Injected 5xx.
    pub faults_5xx: u64,
    /// Injected 429.
    pub faults_429: u64,
    /// Tokens issued.
    pub tokens: u64,
}

/// The request log: a bounded in-memory tail plus an optional NDJSON file.
#[derive(Debug)]
pub struct Journal {
    started: Instant,
    seq: AtomicU64,
    tail: Mutex<VecDeque<LogEntry>>,
    file: Option<Mutex<std::io::LineWriter<std::fs::File>>>,
    /// The counters.
    pub counters: Counters,
}

impl Journal {
    /// A journal, appending to `file` when given.
    pub fn new(file: Option<&Path>) -> std::io::Result<Self> {
        let file = match file {
            Some(p) => Some(Mutex::new(std::io::LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ))),
            None => None,
        };
        Ok(Self {
            started: Instant::now(),
            seq: AtomicU64::new(0),
            tail: Mutex::new(VecDeque::new()),
            file,
            counters: Counters::default(),
        })
    }

    /// Records one request.
    pub fn log(
        &self,
        method: &str,
        path: &str,
        cursor: Option<String>,
        status: u16,
        fault: Option<&str>,
    ) {
        let entry = LogEntry {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_ms: self.started.elapsed().as_millis() as u64,
            method: method.to_owned(),
            path: path.to_owned(),
            cursor,
            status,
            fault: fault.map(str::to_owned),
        };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = &self.file {
            if let (Ok(mut f), Ok(line)) = (f.lock(), serde_json::to_string(&entry)) {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!(error = %e, "cannot write the request log");
                }
            }
        }
        if let Ok(mut tail) = self.tail.lock() {
            if tail.len() == KEPT {
                tail.pop_front();
            }
            tail.push_back(entry);
        }
    }

    /// The kept entries with `seq > after`.
    pub fn entries(&self, after: u64) -> Vec<LogEntry> {
        self.tail
            .lock()
            .map(|t| t.iter().filter(|e| e.seq > after).cloned().collect())
            .unwrap_or_default()
    }

    /// The counters now.
    pub fn stats(&self, sessions_active: u64) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let build_secs = get(&c.build_ns) as f64 / 1e9;
        Stats {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            requests: get(&c.requests),
            packets: get(&c.packets),
            records: get(&c.records),
            bytes: get(&c.bytes),
            build_records_per_sec: if build_secs > 0.0 {
                get(&c.records) as f64 / build_secs
            } else {
                0.0
            },
            sessions_opened: get(&c.sessions_opened),
            sessions_deleted: get(&c.sessions_deleted),
            sessions_expired: get(&c.sessions_expired),
            sessions_active,
            faults_5xx: get(&c.faults_5xx),
            faults_429: get(&c.faults_429),
            tokens: get(&c.tokens),
        }
    }
}
