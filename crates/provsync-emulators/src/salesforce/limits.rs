//! Org limits outside the record data: the daily API budget (kept in the org, it is
//! durable), concurrent long-running calls, and the parent row locks that make two
//! in-flight writes of children of one Account conflict.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::errors::{unable_to_lock, RecordError};
use super::faults::Rng;
use super::stats::Stats;

/// Calls in flight, with their start, for the concurrent long-call limit.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<u64, Instant>>,
}

impl InFlight {
    /// Calls running for at least `long`.
    pub fn long_running(&self, long: Duration) -> usize {
        let now = Instant::now();
        self.calls
            .lock()
            .expect("in-flight lock")
            .values()
            .filter(|&&at| now.duration_since(at) >= long)
            .count()
    }

    /// Registers a call.
    pub fn start(&self, req: u64) {
        self.calls
            .lock()
            .expect("in-flight lock")
            .insert(req, Instant::now());
    }

    /// Unregisters a call.
    pub fn end(&self, req: u64) {
        self.calls.lock().expect("in-flight lock").remove(&req);
    }
}

/// Parent rows held by in-flight requests.
#[derive(Debug, Default)]
pub struct ParentLocks {
    held: Mutex<HashMap<String, u64>>,
}

impl ParentLocks {
    /// Takes `parent` for `req`; false when another request holds it.
    pub fn try_hold(&self, parent: &str, req: u64) -> bool {
        let mut held = self.held.lock().expect("parent locks");
        match held.get(parent) {
            Some(&owner) => owner == req,
            None => {
                held.insert(parent.to_owned(), req);
                true
            }
        }
    }

    /// Releases what `req` holds among `parents`.
    pub fn release(&self, req: u64, parents: &[String]) {
        let mut held = self.held.lock().expect("parent locks");
        for p in parents {
            if held.get(p) == Some(&req) {
                held.remove(p);
            }
        }
    }
}

/// One request's view of the row locks: the parents it holds until it answers (its
/// processing plus the injected latency), and the injected lock error share.
#[derive(Debug)]
pub struct CallScope {
    /// Request number.
    pub req: u64,
    /// The request (or composite subrequest) set `allowSave=true` in its
    /// `Sforce-Duplicate-Rule-Header`: duplicate rules that alert let it save.
    pub allow_save: bool,
    locks: Arc<ParentLocks>,
    held: Vec<String>,
    lock_share: f64,
    rng: Arc<Rng>,
    stats: Arc<Stats>,
}

impl CallScope {
    /// A scope for request `req`.
    pub fn new(
        req: u64,
        locks: Arc<ParentLocks>,
        lock_share: f64,
        rng: Arc<Rng>,
        stats: Arc<Stats>,
    ) -> CallScope {
        CallScope {
            req,
            allow_save: false,
            locks,
            held: Vec::new(),
            lock_share,
            rng,
            stats,
        }
    }

    /// Locks a parent row for the rest of the request, or fails the record the way
    /// Salesforce does when another transaction holds it (or the fault roll says so).
    pub fn lock_parent(&mut self, parent: &str) -> Result<(), RecordError> {
        if self.held.iter().any(|p| p == parent) {
            return Ok(());
        }
        if !self.locks.try_hold(parent, self.req) {
            self.stats.lock_conflict();
            return Err(unable_to_lock(parent));
        }
        self.held.push(parent.to_owned());
        if self.rng.chance(self.lock_share) {
            self.stats.lock_injected();
            return Err(unable_to_lock(parent));
        }
        Ok(())
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        self.locks.release(self.req, &self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_request_cannot_lock_a_held_parent_until_the_first_ends() {
        let locks = Arc::new(ParentLocks::default());
        let rng = Arc::new(Rng::new(1));
        let stats = Arc::new(Stats::default());
        let mut a = CallScope::new(1, locks.clone(), 0.0, rng.clone(), stats.clone());
        let mut b = CallScope::new(2, locks.clone(), 0.0, rng.clone(), stats.clone());
        a.lock_parent("001X").unwrap();
        a.lock_parent("001X").unwrap();
        let err = b.lock_parent("001X").unwrap_err();
        assert_eq!(err.code, "UNABLE_TO_LOCK_ROW");
        assert!(err.message.ends_with("1 records: 001X"));
        drop(a);
        b.lock_parent("001X").unwrap();
    }

    #[test]
    fn long_running_counts_only_calls_past_the_threshold() {
        let f = InFlight::default();
        f.start(1);
        assert_eq!(f.long_running(Duration::ZERO), 1);
        assert_eq!(f.long_running(Duration::from_secs(60)), 0);
        f.end(1);
        assert_eq!(f.long_running(Duration::ZERO), 0);
    }
}
