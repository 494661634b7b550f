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

/// A cap on requests in flight that halves when the org says too many concurrent
/// calls, and grows back by one after `GROW_AFTER` clean responses (AIMD).
#[derive(Debug)]
pub struct Gate {
    sem: Arc<Semaphore>,
    /// Current cap.
    limit: AtomicUsize,
    /// Permits to swallow (a cut takes effect as permits come back).
    debt: AtomicUsize,
    ceiling: usize,
    clean: AtomicUsize,
}

const GROW_AFTER: usize = 20;

impl Gate {
    /// A gate allowing `ceiling` requests at once.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Gate {
            sem: Arc::new(Semaphore::new(ceiling)),
            limit: AtomicUsize::new(ceiling),
            debt: AtomicUsize::new(0),
            ceiling,
            clean: AtomicUsize::new(0),
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
        self.limit.load(Ordering::Relaxed)
    }

    /// Multiplicative decrease: halves the cap (never below one).
    pub fn cut(&self) {
        let cur = self.limit();
        let next = (cur / 2).max(1);
        if next < cur
            && self
                .limit
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.debt.fetch_add(cur - next, Ordering::AcqRel);
            self.clean.store(0, Ordering::Relaxed);
            tracing::warn!(
                from = cur,
                to = next,
                "Salesforce: concurrent call limit hit, fewer requests in flight"
            );
        }
    }

    /// Additive increase after enough clean responses.
    pub fn success(&self) {
        if self.clean.fetch_add(1, Ordering::Relaxed) + 1 < GROW_AFTER {
            return;
        }
        self.clean.store(0, Ordering::Relaxed);
        let cur = self.limit();
        if cur < self.ceiling
            && self
                .limit
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
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
}
