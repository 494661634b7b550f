//! A job's counts as every surface shows them (run summary, `status`, the API,
//! progress): one headline in the source's terms, each source record once, beside
//! the counts per kind.

use provsync_core::job::{Counts, KindCounts};
use provsync_core::model::EntityKind;
use provsync_core::store::{JobRecord, StateStore, StoreError};

/// The headline of a run reading `source_type`: the counts of the kinds that are the
/// source's own records (all kinds when the source derives none, or when only
/// derived kinds were seen), and those kinds.
pub fn headline(per_kind: &KindCounts, source_type: &str) -> (Counts, Vec<EntityKind>) {
    let derived = crate::source::derived_kinds(source_type);
    let own: Vec<EntityKind> = per_kind
        .kinds
        .keys()
        .copied()
        .filter(|k| !derived.contains(k))
        .collect();
    let kinds = if own.is_empty() {
        per_kind.kinds.keys().copied().collect()
    } else {
        own
    };
    // Unreadable lines are source lines too: they count in every headline.
    let mut counts = per_kind.unreadable;
    for k in &kinds {
        counts += per_kind.of(*k);
    }
    (counts, kinds)
}

/// A job's headline and per-kind counts: the run summary's once it finished (it
/// holds the sweep's disconnections), else what its committed pages say so far.
pub async fn of_job(
    store: &dyn StateStore,
    job: &JobRecord,
) -> Result<(Counts, KindCounts), StoreError> {
    let per_kind = match job
        .summary
        .as_ref()
        .and_then(|s| s.get("per_kind"))
        .and_then(|k| serde_json::from_value::<KindCounts>(k.clone()).ok())
    {
        Some(k) => k,
        None => store.counts(&job.id).await?,
    };
    let (headline, _) = headline(&per_kind, &job.spec.source.kind);
    Ok((headline, per_kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gmc_headline_counts_each_doctor_once() {
        let mut per_kind = KindCounts::default();
        per_kind.kind_mut(EntityKind::Individual).disconnected = 2;
        per_kind.kind_mut(EntityKind::Activity).disconnected = 2;
        per_kind.kind_mut(EntityKind::Workplace).extracted = 1;
        let (gmc, kinds) = headline(&per_kind, "gmc");
        assert_eq!(gmc.disconnected, 2);
        assert_eq!(gmc.extracted, 0);
        assert_eq!(kinds, vec![EntityKind::Individual]);
        let (file, _) = headline(&per_kind, "file");
        assert_eq!(file.disconnected, 4);
        assert_eq!(file.extracted, 1);
    }
}
