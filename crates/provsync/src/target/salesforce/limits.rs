//! The org's limits as the connector sees them: the daily API budget read from
//! `Sforce-Limit-Info`, and an adaptive cap on requests in flight.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `api-usage=USED/MAX` from a `Sforce-Limit-Info` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    /// Calls used in the current window.
    pub used: u64,
    /// The window's budget.
    pub max: u64,
}

/// Parses `api-usage=18/5000` (other `;`-separated items, such as `api-bursts`,
/// are ignored); `None` when the header has no readable usage.
pub fn parse_limit_info(header: &str) -> Option<ApiUsage> {
    header.split(';').find_map(|item| {
        let (k, v) = item.trim().split_once('=')?;
        if k.trim() != "api-usage" {
            return None;
        }
        let (used, max) = v.trim().split_once('/')?;
        Some(ApiUsage {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    })
}

/// Budget last reported by the org (0/0 until a response carried the header).
#[derive(Debug, Default)]
pub struct Budget {
    used: AtomicU64,
    max: AtomicU64,
}

impl Budget {
    /// Records a response's usage. Answers arrive out of order, so a header never
    /// lowers the count (an older answer says less than is spent).
    pub fn observe(&self, u: ApiUsage) {
        self.max.store(u.max, Ordering::Relaxed);
        self.used.fetch_max(u.used, Ordering::Relaxed);
    }

    /// Records the usage `/limits` reports: the truth now, lower after a reset.
    pub fn reset_to(&self, u: ApiUsage) {
        self.max.store(u.max, Ordering::Relaxed);
        self.used.store(u.used, Ordering::Relaxed);
    }

    /// The last usage seen.
    pub fn last(&self) -> Option<ApiUsage> {
        let max = self.max.load(Ordering::Relaxed);
        (max > 0).then(|| ApiUsage {
            used: self.used.load(Ordering::Relaxed),
            max,
        })
    }
}

/// An adaptive limit (AIMD): halves on trouble, grows by `step` after `grow_after`
/// clean answers in a row, between 1 and its ceiling. The shape of every adaptive
/// cap of the connector (requests in flight, graphs per request).
#[derive(Debug)]
pub struct Aimd {
    limit: AtomicUsize,
    ceiling: usize,
    step: usize,
    grow_after: usize,
    clean: AtomicUsize,
}

impl Aimd {
    /// A limit starting at `ceiling`.
    pub fn new(ceiling: usize, step: usize, grow_after: usize) -> Self {
        let ceiling = ceiling.max(1);
        Aimd {
            limit: AtomicUsize::new(ceiling),
            ceiling,
            step: step.max(1),
            grow_after: grow_after.max(1),
            clean: AtomicUsize::new(0),
        }
    }

    /// The current limit.
    pub fn get(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Multiplicative decrease: halves `seen`, the limit the troubled answer was sent
    /// under (so answers of requests sent before an earlier cut do not cut again);
    /// returns (from, to) when the limit fell.
    pub fn cut(&self, seen: usize) -> Option<(usize, usize)> {
        let next = (seen / 2).max(1);
        let cur = self.get();
        if next < cur
            && self
                .limit
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.clean.store(0, Ordering::Relaxed);
            return Some((cur, next));
        }
        None
    }

    /// Additive increase after enough clean answers; returns (from, to) when the
    /// limit grew.
    pub fn success(&self) -> Option<(usize, usize)> {
        if self.clean.fetch_add(1, Ordering::Relaxed) + 1 < self.grow_after {
            return None;
        }
        self.clean.store(0, Ordering::Relaxed);
        let cur = self.get();
        let next = (cur + self.step).min(self.ceiling);
        (next > cur
            && self
                .limit
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then_some((cur, next))
    }
}

/// A cap on requests in flight that halves when the org says too many concurrent
/// calls, and grows back by one after `GROW_AFTER` clean responses.
#[derive(Debug)]
pub struct Gate {
    sem: Arc<Semaphore>,
    /// Current cap.
    limit: Aimd,
    /// Permits to swallow (a cut takes effect as permits come back).
    debt: AtomicUsize,
}

const GROW_AFTER: usize = 20;

impl Gate {
    /// A gate allowing `ceiling` requests at once.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Gate {
            sem: Arc::new(Semaphore::new(ceiling)),
            limit: Aimd::new(ceiling, 1, GROW_AFTER),
            debt: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        loop {
            let permit = self
                .sem
                .clone()
                .acquire_owned()
                .await
                .expect("the gate's semaphore is never closed");
            // Pay a cut's debt by forgetting permits instead of using them.
            let paid = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok();
            if paid {
                permit.forget();
                continue;
            }
            return permit;
        }
    }

    /// The current cap.
    pub fn limit(&self) -> usize {
        self.limit.get()
    }

    /// Multiplicative decrease: halves the cap (never below one).
    pub fn cut(&self) {
        if let Some((from, to)) = self.limit.cut(self.limit()) {
            self.debt.fetch_add(from - to, Ordering::AcqRel);
            tracing::warn!(
                from,
                to,
                "Salesforce: concurrent call limit hit, fewer requests in flight"
            );
        }
    }

    /// Additive increase after enough clean responses.
    pub fn success(&self) {
        if self.limit.success().is_some() {
            // An unpaid debt is cancelled before new permits are made.
            let cancelled = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                .is_ok();
            if !cancelled {
                self.sem.add_permits(1);
            }
        }
    }
}

/// Graph failures a composite graph request may have: once they exceed 14,
/// Salesforce halts the request's remaining graphs with `PROCESSING_HALTED` (REST
/// API Developer Guide, "Composite Graph Limits",
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_graph_limits.htm>).
pub const MAX_FAILED_GRAPHS: usize = 14;

/// Graphs per composite graph request, kept so a request's expected failures stay
/// well under `MAX_FAILED_GRAPHS`: halved when an answer had halted graphs or more
/// than half the limit failed (lock storms, bad data), grown back by
/// `GRAPH_STEP` after `GRAPH_GROW_AFTER` answers under that.
#[derive(Debug)]
pub struct GraphCap {
    limit: Aimd,
}

/// Graphs added per growth step (the ceiling, 75, is 15 steps).
const GRAPH_STEP: usize = 5;
/// Answers under half the failure limit before the cap grows.
const GRAPH_GROW_AFTER: usize = 4;

impl GraphCap {
    /// A cap starting at `ceiling` graphs per request.
    pub fn new(ceiling: usize) -> Self {
        GraphCap {
            limit: Aimd::new(ceiling, GRAPH_STEP, GRAPH_GROW_AFTER),
        }
    }

    /// Graphs the next request may hold.
    pub fn get(&self) -> usize {
        self.limit.get()
    }

    /// Learns from one answer: `sent` graphs, of which `failed` ran and failed and
    /// `halted` were not run.
    pub fn observe(&self, sent: usize, failed: usize, halted: usize) {
        if halted > 0 || failed > MAX_FAILED_GRAPHS / 2 {
            if let Some((from, to)) = self.limit.cut(sent) {
                tracing::info!(
                    sent,
                    failed,
                    halted,
                    from,
                    to,
                    "Salesforce: many graphs of a request failed, fewer graphs per request"
                );
            }
        } else if let Some((from, to)) = self.limit.success() {
            tracing::debug!(from, to, "Salesforce: more graphs per request");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_usage_among_other_items() {
        assert_eq!(
            parse_limit_info("api-usage=18/5000"),
            Some(ApiUsage {
                used: 18,
                max: 5000
            })
        );
        assert_eq!(
            parse_limit_info("api-bursts=2/10; api-usage= 7 / 100 "),
            Some(ApiUsage { used: 7, max: 100 })
        );
        assert_eq!(parse_limit_info("api-usage=x/100"), None);
        assert_eq!(parse_limit_info(""), None);
        assert_eq!(parse_limit_info("api-usage"), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(used in 0u64..u64::MAX, max in 0u64..u64::MAX, junk in "[ -~]{0,30}") {
            let _ = parse_limit_info(&junk);
            prop_assert_eq!(
                parse_limit_info(&format!("api-usage={used}/{max}")),
                Some(ApiUsage { used, max })
            );
        }
    }

    #[tokio::test]
    async fn the_gate_never_lets_more_than_its_cap_in() {
        let gate = Gate::new(8);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(gate.enter().await);
        }
        gate.cut();
        assert_eq!(gate.limit(), 4);
        // Returning all eight: four are swallowed, four remain usable.
        held.clear();
        let mut again = Vec::new();
        for _ in 0..4 {
            again.push(gate.enter().await);
        }
        let fifth = tokio::time::timeout(std::time::Duration::from_millis(50), gate.enter()).await;
        assert!(fifth.is_err(), "a fifth request got in after the cut to 4");
        drop(again);
        for _ in 0..GROW_AFTER {
            gate.success();
        }
        assert_eq!(gate.limit(), 5);
    }

    #[test]
    fn the_graph_cap_halves_on_halted_graphs_and_grows_back_when_failures_fall() {
        let cap = GraphCap::new(75);
        cap.observe(75, 15, 3);
        assert_eq!(cap.get(), 37);
        // A request sent at 75 before the cut answers the same: no second halving.
        cap.observe(75, 15, 10);
        assert_eq!(cap.get(), 37);
        // More than half the limit failed in a request at the new size: halved again.
        cap.observe(37, MAX_FAILED_GRAPHS / 2 + 1, 0);
        assert_eq!(cap.get(), 18);
        cap.observe(18, MAX_FAILED_GRAPHS / 2, 0);
        assert_eq!(cap.get(), 18, "half the limit is not yet trouble");
        for _ in 1..GRAPH_GROW_AFTER {
            cap.observe(18, 1, 0);
        }
        assert_eq!(cap.get(), 18 + GRAPH_STEP);
        for _ in 0..100 {
            cap.observe(cap.get(), 0, 0);
        }
        assert_eq!(cap.get(), 75, "grows back to the ceiling, not past it");
    }
}
