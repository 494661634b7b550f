//! Records the target holds: anchors, target ids and the sweep.

use provsync_core::model::{EntityKind, Scope, SourceId};

use crate::store::{HashUpdate, PageCommit, StateStore};

use super::support::{complete, hash, ids, record, running_job, update};

/// A record's anchor (an activity's workplace) is the last write's, so the next
/// write can tell a move; a write without one clears it.
pub async fn a_records_anchor_is_the_last_writes(s: &dyn StateStore) {
    for (h, anchor) in [(1, Some("w1")), (2, Some("w2")), (3, None)] {
        let j = running_job(s, "t").await;
        record(s, &j, 0).await;
        let written = HashUpdate {
            anchor: anchor.map(str::to_owned),
            ..update(EntityKind::Activity, "a1", "US", h, None)
        };
        let commit = PageCommit {
            written: vec![written],
            ..PageCommit::default()
        };
        s.commit_page(&j, "t", 0, &commit).await.unwrap();
        complete(s, &j).await;
        let known = s
            .known_records("t", EntityKind::Activity, &ids(&["a1"]))
            .await
            .unwrap();
        assert_eq!(
            known[&SourceId::from("a1")].anchor.as_deref(),
            anchor,
            "after a write placed by {anchor:?}"
        );
    }
}

/// The id map: target ids are kept when a later write reports none.
pub async fn target_ids_map(s: &dyn StateStore) {
    let j = running_job(s, "t").await;
    record(s, &j, 0).await;
    record(s, &j, 1).await;
    let first = PageCommit {
        written: vec![
            update(EntityKind::Workplace, "w1", "US", 1, Some("001A")),
            update(EntityKind::Workplace, "w2", "US", 2, None),
        ],
        ..PageCommit::default()
    };
    s.commit_page(&j, "t", 0, &first).await.unwrap();
    let second = PageCommit {
        written: vec![update(EntityKind::Workplace, "w1", "US", 3, None)],
        ..PageCommit::default()
    };
    s.commit_page(&j, "t", 1, &second).await.unwrap();
    let map = s
        .target_ids("t", EntityKind::Workplace, &ids(&["w1", "w2", "w3"]))
        .await
        .unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!(map[&SourceId::from("w1")], "001A");
    assert!(s
        .target_ids("t", EntityKind::Individual, &ids(&["w1"]))
        .await
        .unwrap()
        .is_empty());
}

/// The sweep: connected counts per scope, unseen records of a run, disconnect, and a
/// record that comes back is connected again by the next commit.
pub async fn sweep_queries_and_reconnect(s: &dyn StateStore) {
    let ind = EntityKind::Individual;
    let j1 = running_job(s, "t").await;
    record(s, &j1, 0).await;
    let commit = PageCommit {
        written: vec![
            update(ind, "a", "US", 1, None),
            update(ind, "b", "US", 2, None),
            update(ind, "c", "GB", 3, None),
            update(EntityKind::Workplace, "w", "US", 4, None),
        ],
        ..PageCommit::default()
    };
    s.commit_page(&j1, "t", 0, &commit).await.unwrap();
    let us = [Scope::from("US")];
    let both = [Scope::from("US"), Scope::from("GB")];
    assert_eq!(s.connected_count("t", ind, &[]).await.unwrap(), 3);
    assert_eq!(s.connected_count("t", ind, &us).await.unwrap(), 2);
    assert_eq!(s.connected_count("t", ind, &both).await.unwrap(), 3);
    assert_eq!(s.connected_count("other", ind, &[]).await.unwrap(), 0);
    // Everything j1 wrote counts as seen by j1.
    assert_eq!(s.unseen_count("t", ind, &[], &j1).await.unwrap(), 0);

    complete(s, &j1).await;
    let j2 = running_job(s, "t").await;
    record(s, &j2, 0).await;
    s.claim_records(
        &j2,
        Some(0),
        ind,
        &[(SourceId::from("a"), Scope::from("US"))],
    )
    .await
    .unwrap();
    assert_eq!(
        s.unseen_records("t", ind, &us, &j2, 10).await.unwrap(),
        ids(&["b"])
    );
    assert_eq!(
        s.unseen_records("t", ind, &[], &j2, 10).await.unwrap(),
        ids(&["b", "c"])
    );
    assert_eq!(
        s.unseen_records("t", ind, &[], &j2, 1).await.unwrap(),
        ids(&["b"])
    );
    assert_eq!(s.unseen_count("t", ind, &us, &j2).await.unwrap(), 1);
    assert_eq!(s.unseen_count("t", ind, &[], &j2).await.unwrap(), 2);

    s.mark_disconnected("t", ind, &ids(&["b"]), &j2)
        .await
        .unwrap();
    s.mark_disconnected("t", ind, &[], &j2).await.unwrap();
    assert_eq!(s.connected_count("t", ind, &us).await.unwrap(), 1);
    assert!(s
        .unseen_records("t", ind, &us, &j2, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.unseen_count("t", ind, &[], &j2).await.unwrap(), 1);
    let known = s.known_records("t", ind, &ids(&["b"])).await.unwrap();
    assert_eq!(known[&SourceId::from("b")].hash, hash(2));
    assert!(!known[&SourceId::from("b")].connected);
    // The workplace of another kind is untouched.
    assert_eq!(
        s.connected_count("t", EntityKind::Workplace, &us)
            .await
            .unwrap(),
        1
    );

    complete(s, &j2).await;
    let j3 = running_job(s, "t").await;
    record(s, &j3, 0).await;
    let back = PageCommit {
        written: vec![update(ind, "b", "US", 2, None)],
        ..PageCommit::default()
    };
    s.commit_page(&j3, "t", 0, &back).await.unwrap();
    assert_eq!(s.connected_count("t", ind, &us).await.unwrap(), 2);
    let known = s.known_records("t", ind, &ids(&["b"])).await.unwrap();
    assert!(known[&SourceId::from("b")].connected, "reconnected");
}
