//! Claims: the records a run holds, the first copy kept, conflicts marked.

use provsync_core::model::{EntityKind, Scope, SourceId};

use crate::store::{ClaimConflict, PageCommit, StateStore};

use super::support::{complete, hash, ids, record, running_job, update};

/// `known_records` returns what the target holds; the run's claims spare those
/// records from its sweep, until the run ends.
pub async fn known_records_and_claims(s: &dyn StateStore) {
    let j1 = running_job(s, "t").await;
    record(s, &j1, 0).await;
    let commit = PageCommit {
        written: vec![
            update(EntityKind::Individual, "i1", "US", 11, None),
            update(EntityKind::Individual, "i2", "US", 12, None),
            update(EntityKind::Workplace, "w1", "US", 21, None),
        ],
        ..PageCommit::default()
    };
    s.commit_page(&j1, "t", 0, &commit).await.unwrap();
    complete(s, &j1).await;

    let j2 = running_job(s, "t").await;
    record(s, &j2, 0).await;
    let known = s
        .known_records("t", EntityKind::Individual, &ids(&["i1", "i2", "i3"]))
        .await
        .unwrap();
    assert_eq!(known.len(), 2);
    assert_eq!(known[&SourceId::from("i1")].hash, hash(11));
    assert_eq!(known[&SourceId::from("i1")].scope, Scope::from("US"));
    assert_eq!(known[&SourceId::from("i2")].hash, hash(12));
    assert!(known[&SourceId::from("i2")].connected);
    assert!(s
        .known_records("other", EntityKind::Individual, &ids(&["i1"]))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .known_records("t", EntityKind::Workplace, &ids(&["i1"]))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .known_records("t", EntityKind::Workplace, &[])
        .await
        .unwrap()
        .is_empty());
    // A read marks nothing: before its claims, j2 has seen nothing.
    assert_eq!(
        s.unseen_count("t", EntityKind::Individual, &[], &j2)
            .await
            .unwrap(),
        2
    );
    let us = |id: &str| (SourceId::from(id), Scope::from("US"));
    s.claim_records(&j2, Some(0), EntityKind::Individual, &[us("i1"), us("i2")])
        .await
        .unwrap();
    // Both individuals were claimed by j2; the workplace was not.
    assert_eq!(
        s.unseen_count("t", EntityKind::Individual, &[], &j2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.unseen_count("t", EntityKind::Workplace, &[], &j2)
            .await
            .unwrap(),
        1
    );
    // Ending the run drops its marks.
    s.end_run(&j2).await.unwrap();
    assert_eq!(
        s.unseen_count("t", EntityKind::Individual, &[], &j2)
            .await
            .unwrap(),
        2
    );

    // Many ids in one call (more than one statement's worth).
    let many: Vec<SourceId> = (0..2_500).map(|n| SourceId(format!("n{n}"))).collect();
    let known = s
        .known_records("t", EntityKind::Individual, &many)
        .await
        .unwrap();
    assert!(known.is_empty());
}

/// Claims: the first page to claim a record keeps it, whatever claims it later (a
/// replayed page keeps its own); a copy in another scope marks the claim
/// conflicted, once, and the run lists its conflicts until it ends.
pub async fn claims_keep_the_first_copy_and_mark_conflicts(s: &dyn StateStore) {
    let j = running_job(s, "t").await;
    let ind = EntityKind::Individual;
    let rec = |id: &str, scope: &str| (SourceId::from(id), Scope::from(scope));
    let first = s
        .claim_records(
            &j,
            Some(3),
            ind,
            &[rec("x", "A"), rec("y", "A"), rec("z", "")],
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(first
        .values()
        .all(|c| c.page_no == 3 && c.conflict.is_none()));
    // Page 1 comes later: x in another scope (a conflict), y in the same scope
    // (a duplicate), z named no scope (a rejected copy: a duplicate, no conflict).
    let later = s
        .claim_records(
            &j,
            Some(1),
            ind,
            &[rec("x", "B"), rec("y", "A"), rec("z", "B")],
        )
        .await
        .unwrap();
    assert_eq!(later[&SourceId::from("x")].page_no, 3);
    assert_eq!(later[&SourceId::from("x")].scope, Scope::from("A"));
    assert_eq!(later[&SourceId::from("x")].conflict, Some(Scope::from("B")));
    assert_eq!(later[&SourceId::from("y")].page_no, 3);
    assert_eq!(later[&SourceId::from("y")].conflict, None);
    assert_eq!(later[&SourceId::from("z")].conflict, None);
    // A rejected copy (no page) is seen, but a good copy on any page, even one
    // loaded after it, takes its claim over; a later rejected copy changes nothing.
    let rejected = s
        .claim_records(&j, None, ind, &[rec("r", "")])
        .await
        .unwrap();
    assert_eq!(rejected[&SourceId::from("r")].page_no, u64::MAX);
    let good = s
        .claim_records(&j, Some(0), ind, &[rec("r", "A")])
        .await
        .unwrap();
    assert_eq!(good[&SourceId::from("r")].page_no, 0);
    assert_eq!(good[&SourceId::from("r")].scope, Scope::from("A"));
    let again = s
        .claim_records(&j, None, ind, &[rec("r", "")])
        .await
        .unwrap();
    assert_eq!(again[&SourceId::from("r")].page_no, 0);
    // A replay of page 3 keeps its claims and sees the conflict.
    let replay = s
        .claim_records(&j, Some(3), ind, &[rec("x", "A")])
        .await
        .unwrap();
    assert_eq!(replay[&SourceId::from("x")].page_no, 3);
    assert_eq!(
        replay[&SourceId::from("x")].conflict,
        Some(Scope::from("B"))
    );
    // Another kind is another record.
    let w = s
        .claim_records(&j, Some(1), EntityKind::Workplace, &[rec("x", "B")])
        .await
        .unwrap();
    assert_eq!(w[&SourceId::from("x")].page_no, 1);
    // A third scope changes nothing: the first conflict is the one reported.
    s.claim_records(&j, Some(2), ind, &[rec("x", "C")])
        .await
        .unwrap();
    let (total, listed) = s.claim_conflicts(&j, 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        listed,
        vec![ClaimConflict {
            kind: ind,
            source_id: SourceId::from("x"),
            scope: Scope::from("A"),
            other: Scope::from("B"),
        }]
    );
    // Claims are per run.
    let other = running_job(s, "t2").await;
    let mine = s
        .claim_records(&other, Some(1), ind, &[rec("x", "B")])
        .await
        .unwrap();
    assert_eq!(mine[&SourceId::from("x")].page_no, 1);
    assert_eq!(s.claim_conflicts(&other, 10).await.unwrap().0, 0);
    // Many records in one call (more than one statement's worth).
    let many: Vec<(SourceId, Scope)> = (0..2_500).map(|n| rec(&format!("n{n}"), "A")).collect();
    assert_eq!(
        s.claim_records(&j, Some(4), ind, &many)
            .await
            .unwrap()
            .len(),
        2_500
    );
    s.end_run(&j).await.unwrap();
    assert_eq!(s.claim_conflicts(&j, 10).await.unwrap().0, 0);
}
