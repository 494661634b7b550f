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
    /// Records the target created (links included), as its change log says.
    pub created: u64,
    /// Records whose content the target changed (links included).
    pub updated: u64,
    /// Records whose content the target already had (not written).
    pub unchanged: u64,
    /// Records the target refused (links included).
    pub failed: u64,
    /// Records swept from the target because the snapshot no longer has them.
    pub disconnected: u64,
    /// Links deferred to the relations stage because an end was not loaded yet.
    pub relations_staged: u64,
    /// Deferred links the relations stage wrote or found unchanged (also counted
    /// in created, updated or unchanged).
    pub relations_loaded: u64,
    /// Deferred links the relations stage could not load (also counted in failed).
    pub relations_failed: u64,
    /// Records written that were new or disconnected before: connected by this run
    /// (a subset of created, updated and links loaded; not a bucket of its own).
    pub connected: u64,
    /// Records written whose scope changed: a doctor moving to another designated
    /// body (a subset of updated and links loaded; not a bucket of its own).
    pub moved: u64,
}

impl Counts {
    /// Records that did not make it (rejected, failed; failed links are in failed).
    pub fn errors(&self) -> u64 {
        self.rejected + self.failed
    }

    /// Links deferred to the relations stage and not resolved yet (0 once it ran).
    pub fn links_pending(&self) -> u64 {
        self.relations_staged
            .saturating_sub(self.relations_loaded + self.relations_failed)
    }

    /// Checks that every extracted record is in exactly one bucket; `Err` says which
    /// equation does not hold.
    pub fn reconcile(&self) -> Result<(), String> {
        if self.relations_loaded + self.relations_failed > self.relations_staged {
            return Err(format!(
                "links loaded {} + failed {} > deferred {}",
                self.relations_loaded, self.relations_failed, self.relations_staged
            ));
        }
        let accounted = self.rejected
            + self.created
            + self.updated
            + self.unchanged
            + self.failed
            + self.links_pending();
        if self.extracted != accounted {
            return Err(format!(
                "extracted {} != rejected {} + created {} + updated {} + unchanged {} + failed {} + links pending {}",
                self.extracted,
                self.rejected,
                self.created,
                self.updated,
                self.unchanged,
                self.failed,
                self.links_pending()
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

/// Counts per entity kind, plus source lines whose kind could not be read (kept
/// apart: counting them under any kind would be a guess); serialized as one map,
/// `unreadable` beside the kinds when there were any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Per entity kind.
    pub kinds: BTreeMap<EntityKind, Counts>,
    /// Source lines whose kind could not be read (extracted and rejected).
    pub unreadable: Counts,
}

/// The map key of unreadable lines.
const UNREADABLE: &str = "unreadable";

impl KindCounts {
    /// The counts of one kind, created on first use.
    pub fn kind_mut(&mut self, kind: EntityKind) -> &mut Counts {
        self.kinds.entry(kind).or_default()
    }

    /// The counts of a kind (zero when the kind was not seen).
    pub fn of(&self, kind: EntityKind) -> Counts {
        self.kinds.get(&kind).copied().unwrap_or_default()
    }

    /// Sum over kinds and unreadable lines.
    pub fn total(&self) -> Counts {
        let mut t = self.unreadable;
        for c in self.kinds.values() {
            t += *c;
        }
        t
    }

    /// Adds another set of counts, kind by kind.
    pub fn add(&mut self, other: &KindCounts) {
        for (k, c) in &other.kinds {
            *self.kind_mut(*k) += *c;
        }
        self.unreadable += other.unreadable;
    }
}

impl Serialize for KindCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = usize::from(self.unreadable != Counts::default());
        let mut map = s.serialize_map(Some(self.kinds.len() + extra))?;
        for (k, c) in &self.kinds {
            map.serialize_entry(k.as_str(), c)?;
        }
        if extra == 1 {
            map.serialize_entry(UNREADABLE, &self.unreadable)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for KindCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Counts>::deserialize(d)?;
        let mut out = KindCounts::default();
        for (k, c) in raw {
            if k == UNREADABLE {
                out.unreadable = c;
            } else {
                let kind = EntityKind::parse(&k)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown kind {k:?}")))?;
                out.kinds.insert(kind, c);
            }
        }
        Ok(out)
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

    #[test]
    fn deferred_links_count_as_pending_until_the_relations_stage_books_them() {
        // Load: 3 entities created, 2 links deferred.
        let mut c = Counts {
            extracted: 5,
            created: 3,
            relations_staged: 2,
            ..Counts::default()
        };
        assert_eq!(c.links_pending(), 2);
        assert_eq!(c.reconcile(), Ok(()));
        // Relations stage: one link created, one failed.
        c += Counts {
            created: 1,
            failed: 1,
            relations_loaded: 1,
            relations_failed: 1,
            ..Counts::default()
        };
        assert_eq!(c.links_pending(), 0);
        assert_eq!(c.reconcile(), Ok(()));
        assert_eq!(c.errors(), 1);
    }
}

#[cfg(test)]
mod kind_counts_tests {
    use super::*;

    #[test]
    fn unreadable_lines_are_counted_apart_from_every_kind_and_in_the_total() {
        let mut k = KindCounts::default();
        k.kind_mut(EntityKind::Individual).extracted = 3;
        k.unreadable.extracted = 1;
        k.unreadable.rejected = 1;
        assert_eq!(k.total().extracted, 4);
        assert_eq!(k.of(EntityKind::Individual).extracted, 3);
        let json = serde_json::to_value(&k).unwrap();
        assert_eq!(json["unreadable"]["rejected"], 1);
        assert_eq!(json["individual"]["extracted"], 3);
        assert_eq!(serde_json::from_value::<KindCounts>(json).unwrap(), k);
        // Without unreadable lines the map holds the kinds only, as before.
        let plain = KindCounts::default();
        assert_eq!(serde_json::to_string(&plain).unwrap(), "{}");
    }
}
