//! Outcome counters. Every extracted record ends in exactly one bucket, and
//! [`Counts::reconcile`] proves it.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::model::EntityKind;

/// Outcome counts of one run, one page or one entity kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Records read from the source (well-formed or not).
    pub extracted: u64,
    /// Records refused before loading (malformed, invalid, unmappable).
    pub rejected: u64,
    /// Records new to the target.
    pub created: u64,
    /// Records whose content changed.
    pub updated: u64,
    /// Records whose content hash the target already had (not written).
    pub unchanged: u64,
    /// Records the target refused.
    pub failed: u64,
    /// Records swept from the target because the snapshot no longer has them.
    pub disconnected: u64,
    /// Links (activities, relations) loaded in the relations stage.
    pub relations_loaded: u64,
    /// Links that could not be loaded (unresolved end, target refusal).
    pub relations_failed: u64,
    /// Links staged for the relations stage (created or updated, not yet loaded).
    pub relations_staged: u64,
    /// Records written that were new or disconnected before: connected by this run
    /// (a subset of created, updated and links loaded; not a bucket of its own).
    pub connected: u64,
    /// Records written whose scope changed: a doctor moving to another designated
    /// body (a subset of updated and links loaded; not a bucket of its own).
    pub moved: u64,
}

impl Counts {
    /// Records that did not make it (rejected, failed, failed links).
    pub fn errors(&self) -> u64 {
        self.rejected + self.failed + self.relations_failed
    }

    /// Checks that every extracted record is in exactly one bucket; `Err` says which
    /// equation does not hold.
    pub fn reconcile(&self) -> Result<(), String> {
        let accounted = self.rejected
            + self.created
            + self.updated
            + self.unchanged
            + self.failed
            + self.relations_staged;
        if self.extracted != accounted {
            return Err(format!(
                "extracted {} != rejected {} + created {} + updated {} + unchanged {} + failed {} + staged links {}",
                self.extracted,
                self.rejected,
                self.created,
                self.updated,
                self.unchanged,
                self.failed,
                self.relations_staged
            ));
        }
        if self.relations_loaded + self.relations_failed > self.relations_staged {
            return Err(format!(
                "links loaded {} + failed {} > staged {}",
                self.relations_loaded, self.relations_failed, self.relations_staged
            ));
        }
        Ok(())
    }
}

impl AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.extracted += o.extracted;
        self.rejected += o.rejected;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.failed += o.failed;
        self.disconnected += o.disconnected;
        self.relations_loaded += o.relations_loaded;
        self.relations_failed += o.relations_failed;
        self.relations_staged += o.relations_staged;
        self.connected += o.connected;
        self.moved += o.moved;
    }
}

/// Counts per entity kind, plus their total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts(pub BTreeMap<EntityKind, Counts>);

impl KindCounts {
    /// The counts of one kind, created on first use.
    pub fn kind_mut(&mut self, kind: EntityKind) -> &mut Counts {
        self.0.entry(kind).or_default()
    }

    /// Sum over kinds.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.0.values() {
            t += *c;
        }
        t
    }

    /// Adds another set of counts, kind by kind.
    pub fn add(&mut self, other: &KindCounts) {
        for (k, c) in &other.0 {
            *self.kind_mut(*k) += *c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_names_the_equation_that_fails() {
        let c = Counts {
            extracted: 10,
            created: 5,
            unchanged: 4,
            ..Counts::default()
        };
        let err = c.reconcile().unwrap_err();
        assert!(
            err.starts_with("extracted 10 != rejected 0 + created 5"),
            "{err}"
        );
        let ok = Counts { rejected: 1, ..c };
        assert_eq!(ok.reconcile(), Ok(()));
    }
}
