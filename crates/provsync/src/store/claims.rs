//! What both SQL backends decide the same way about a run's claims (the SQL that
//! stores them is the backends'): which copy keeps a record, and when a copy in
//! another scope makes it a conflict.

use std::collections::HashMap;

use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::store::{Claim, ClaimConflict, StoreError};

/// The clause ending a claim insert: a record claimed already keeps its claim,
/// unless its page is -1 (a rejected copy's claim, or one carried over from a seen
/// mark by migration 0007): then the first page to claim the record takes it over.
pub(crate) const CLAIM_CONFLICT_CLAUSE: &str = " ON CONFLICT (run_no, kind, source_id) DO UPDATE \
     SET page_no = excluded.page_no, scope = excluded.scope WHERE run_claims.page_no = -1";

/// The page a claim is made for, as returned (`u64::MAX`: a rejected copy's, which
/// any page takes over) and as stored (-1).
pub(crate) fn claim_page(page_no: Option<u64>) -> Result<(u64, i64), StoreError> {
    match page_no {
        Some(p) => Ok((
            p,
            i64::try_from(p).map_err(|_| StoreError::Corrupt("page number".into()))?,
        )),
        None => Ok((u64::MAX, -1)),
    }
}

/// The records to claim once each, in key order (pages claiming concurrently lock
/// rows in the same order; an upsert must not touch a row twice in one statement).
pub(crate) fn claim_order(records: &[(SourceId, Scope)]) -> Vec<(SourceId, Scope)> {
    let mut out = records.to_vec();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The claims an insert made (`inserted`: the ids its `RETURNING` gave back) are
/// this page's, as given; returns the other ids of `chunk`, whose claims must be
/// read (another page's, or this page's from a replay). Reading back only those
/// keeps a claim to one statement per chunk when nothing is claimed twice.
pub(crate) fn take_inserted<'a>(
    page_no: u64,
    chunk: &'a [(SourceId, Scope)],
    inserted: &std::collections::HashSet<String>,
    claims: &mut HashMap<SourceId, Claim>,
) -> Vec<&'a SourceId> {
    let mut rest = Vec::new();
    for (id, scope) in chunk {
        if inserted.contains(id.as_str()) {
            claims.insert(
                id.clone(),
                Claim {
                    page_no,
                    scope: scope.clone(),
                    conflict: None,
                },
            );
        } else {
            rest.push(id);
        }
    }
    rest
}

/// A claim as read back.
pub(crate) fn claim_of(page_no: i64, scope: String, conflict: Option<String>) -> Claim {
    Claim {
        page_no: u64::try_from(page_no).unwrap_or(u64::MAX),
        scope: Scope(scope),
        conflict: conflict.map(Scope),
    }
}

/// A conflict as read back.
pub(crate) fn conflict_of(
    kind: String,
    source_id: String,
    scope: String,
    other: String,
) -> Result<ClaimConflict, StoreError> {
    Ok(ClaimConflict {
        kind: EntityKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("claim kind {kind:?}")))?,
        source_id: SourceId(source_id),
        scope: Scope(scope),
        other: Scope(other),
    })
}

/// The copies of page `page_no` that another page claimed in another scope, for
/// claims not marked conflicted yet; marks them in `claims` too (the caller stores
/// the marks).
pub(crate) fn new_conflicts(
    page_no: u64,
    records: &[(SourceId, Scope)],
    claims: &mut HashMap<SourceId, Claim>,
) -> Vec<(SourceId, Scope)> {
    let mut out = Vec::new();
    for (id, scope) in records {
        if let Some(c) = claims.get_mut(id) {
            if c.page_no != page_no && c.conflict.is_none() && c.conflicts_with(scope) {
                c.conflict = Some(scope.clone());
                out.push((id.clone(), scope.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, scope: &str) -> (SourceId, Scope) {
        (SourceId(id.into()), Scope(scope.into()))
    }

    #[test]
    fn a_copy_in_another_scope_marks_the_claim_conflicted_once() {
        let mut claims = HashMap::from([
            (SourceId("X".into()), claim_of(1, "A".into(), None)),
            (SourceId("Y".into()), claim_of(1, "A".into(), None)),
            (SourceId("Z".into()), claim_of(2, "B".into(), None)),
        ]);
        // Page 2: X in another scope (conflict), Y in the same one (a duplicate),
        // Z its own claim.
        let page = [rec("X", "B"), rec("Y", "A"), rec("Z", "B")];
        assert_eq!(new_conflicts(2, &page, &mut claims), vec![rec("X", "B")]);
        assert_eq!(
            claims[&SourceId("X".into())].conflict,
            Some(Scope("B".into()))
        );
        // Seen again (a third scope, or a replay): already marked.
        assert!(new_conflicts(3, &[rec("X", "C")], &mut claims).is_empty());
    }

    #[test]
    fn a_record_rejected_before_mapping_names_no_scope_and_conflicts_with_none() {
        let mut claims = HashMap::from([(SourceId("X".into()), claim_of(1, String::new(), None))]);
        assert!(new_conflicts(2, &[rec("X", "B")], &mut claims).is_empty());
    }

    #[test]
    fn claims_are_made_once_per_record_in_key_order() {
        let got = claim_order(&[rec("b", "A"), rec("a", "A"), rec("b", "A")]);
        assert_eq!(got, vec![rec("a", "A"), rec("b", "A")]);
    }

    #[test]
    fn a_claim_carried_over_from_a_seen_mark_has_no_page() {
        assert_eq!(claim_of(-1, "A".into(), None).page_no, u64::MAX);
    }
}
