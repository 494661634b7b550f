//! Parent rows held by requests in flight. Salesforce locks a parent record while a
//! request writes its children; two concurrent requests writing children of one
//! parent make one of them fail with `UNABLE_TO_LOCK_ROW`. Requests declare the
//! parents they reference and only start when none is held by another request.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// The parents referenced by requests in flight (all upsert calls of the target).
#[derive(Debug, Default)]
pub struct ParentLocks {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

impl ParentLocks {
    /// Takes every key, or none if one is held.
    pub fn try_take(&self, keys: &BTreeSet<String>) -> bool {
        let mut held = self.held.lock().expect("locks");
        if keys.iter().any(|k| held.contains(k)) {
            return false;
        }
        held.extend(keys.iter().cloned());
        true
    }

    /// Gives keys back.
    pub fn release(&self, keys: &BTreeSet<String>) {
        let mut held = self.held.lock().expect("locks");
        for k in keys {
            held.remove(k);
        }
        drop(held);
        self.released.notify_waiters();
    }

    /// Waits until some keys are released (or a short while: a release may have
    /// happened between the failed take and this wait).
    pub async fn changed(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(20), self.released.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> BTreeSet<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlapping_requests_do_not_hold_a_parent_together() {
        let l = ParentLocks::default();
        assert!(l.try_take(&keys(&["W1", "I1"])));
        assert!(!l.try_take(&keys(&["W2", "I1"])));
        // A refused take holds nothing.
        assert!(l.try_take(&keys(&["W2"])));
        l.release(&keys(&["W1", "I1"]));
        assert!(l.try_take(&keys(&["I1", "W3"])));
    }
}
