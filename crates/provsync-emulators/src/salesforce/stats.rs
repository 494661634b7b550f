//! What `GET /_emulator/stats` reports: calls by kind, records written by object, the
//! largest request seen, limit violations, injected faults.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Violations kept in the list (the count keeps growing).
const KEPT_VIOLATIONS: usize = 1_000;

/// A request refused because it went over a documented limit.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Which limit (`collections_records`, `graph_nodes`, `api_budget`, ...).
    pub limit: String,
    /// The error message sent.
    pub message: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The largest request seen, by each measure separately.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Largest {
    /// Body bytes.
    pub bytes: u64,
    /// Records in one call (collections, composite, graph, Bulk upload).
    pub records: u64,
    /// Nodes of one composite graph request.
    pub graph_nodes: u64,
}

#[derive(Debug, Default)]
struct Inner {
    calls_by_kind: BTreeMap<String, u64>,
    records_written: BTreeMap<String, u64>,
    largest: Largest,
    violations: Vec<Violation>,
}

/// Counters, shared by every handler.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
    violations: AtomicU64,
    fail_503: AtomicU64,
    lock_injected: AtomicU64,
    lock_conflicts: AtomicU64,
    tokens_issued: AtomicU64,
    auth_refused: AtomicU64,
    graphs: GraphCounts,
}

/// Graphs of composite graph requests, by what became of them.
#[derive(Debug, Default)]
struct GraphCounts {
    /// Graphs received in requests that passed the limits.
    sent: AtomicU64,
    /// Graphs that ran and failed (rolled back).
    failed: AtomicU64,
    /// Graphs not run: the request's failures had exceeded 14.
    halted: AtomicU64,
}

/// The JSON of `GET /_emulator/stats`.
#[derive(Debug, Serialize)]
pub struct StatsReport {
    /// Calls answered, by kind (`rest_upsert`, `collections_upsert`, `graph`, ...).
    pub calls_by_kind: BTreeMap<String, u64>,
    /// Records created or updated, by object.
    pub records_written: BTreeMap<String, u64>,
    /// The largest request seen.
    pub largest_request: Largest,
    /// API calls counted in the current window.
    pub api_calls_used: u64,
    /// Calls left in the window.
    pub api_calls_remaining: u64,
    /// The budget.
    pub api_budget: u64,
    /// Requests refused for going over a documented limit (a well-behaved client: 0).
    pub limit_violations: u64,
    /// The latest of them.
    pub violations: Vec<Violation>,
    /// Faults injected or met: `fail_503`, `lock_errors` (injected share),
    /// `lock_conflicts` (real conflicts between in-flight requests).
    pub faults: BTreeMap<&'static str, u64>,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Calls refused for a missing, unknown or expired token.
    pub auth_refused: u64,
    /// Composite graphs: `sent`, `failed`, `halted` (`PROCESSING_HALTED` because
    /// the request's failures exceeded 14).
    pub graphs: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Counts one call of a kind.
    pub fn call(&self, kind: &str) {
        let mut i = self.inner.lock().expect("stats lock");
        *i.calls_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds records written per object.
    pub fn written(&self, per_object: &BTreeMap<String, u64>) {
        if per_object.is_empty() {
            return;
        }
        let mut i = self.inner.lock().expect("stats lock");
        for (o, n) in per_object {
            *i.records_written.entry(o.clone()).or_default() += n;
        }
    }

    /// Notes a request's size.
    pub fn request_size(&self, bytes: u64, records: u64, graph_nodes: u64) {
        let mut i = self.inner.lock().expect("stats lock");
        i.largest.bytes = i.largest.bytes.max(bytes);
        i.largest.records = i.largest.records.max(records);
        i.largest.graph_nodes = i.largest.graph_nodes.max(graph_nodes);
    }

    /// Records a limit violation.
    pub fn violation(&self, limit: &str, message: &str) {
        self.violations.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(limit, message, "salesforce emulator: limit violation");
        let mut i = self.inner.lock().expect("stats lock");
        if i.violations.len() == KEPT_VIOLATIONS {
            i.violations.remove(0);
        }
        i.violations.push(Violation {
            limit: limit.to_owned(),
            message: message.to_owned(),
            at: chrono::Utc::now().to_rfc3339(),
        });
    }

    /// Counts an injected 503.
    pub fn fail_503(&self) {
        self.fail_503.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an injected lock error.
    pub fn lock_injected(&self) {
        self.lock_injected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a real lock conflict.
    pub fn lock_conflict(&self) {
        self.lock_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the graphs of one composite graph request.
    pub fn graphs(&self, sent: u64, failed: u64, halted: u64) {
        self.graphs.sent.fetch_add(sent, Ordering::Relaxed);
        self.graphs.failed.fetch_add(failed, Ordering::Relaxed);
        self.graphs.halted.fetch_add(halted, Ordering::Relaxed);
    }

    /// Counts a token issued.
    pub fn token(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call refused for its token.
    pub fn auth_refused(&self) {
        self.auth_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Violations so far.
    pub fn violation_count(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// The report, with the budget figures supplied by the org.
    pub fn report(&self, used: u64, budget: u64) -> StatsReport {
        let i = self.inner.lock().expect("stats lock");
        StatsReport {
            calls_by_kind: i.calls_by_kind.clone(),
            records_written: i.records_written.clone(),
            largest_request: i.largest.clone(),
            api_calls_used: used,
            api_calls_remaining: budget.saturating_sub(used),
            api_budget: budget,
            limit_violations: self.violations.load(Ordering::Relaxed),
            violations: i.violations.clone(),
            faults: BTreeMap::from([
                ("fail_503", self.fail_503.load(Ordering::Relaxed)),
                ("lock_errors", self.lock_injected.load(Ordering::Relaxed)),
                (
                    "lock_conflicts",
                    self.lock_conflicts.load(Ordering::Relaxed),
                ),
            ]),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            auth_refused: self.auth_refused.load(Ordering::Relaxed),
            graphs: BTreeMap::from([
                ("sent", self.graphs.sent.load(Ordering::Relaxed)),
                ("failed", self.graphs.failed.load(Ordering::Relaxed)),
                ("halted", self.graphs.halted.load(Ordering::Relaxed)),
            ]),
        }
    }
}
