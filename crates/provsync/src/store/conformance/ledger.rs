//! The page ledger: recorded and committed pages, their snapshots, errors and counts.

use provsync_core::job::{Counts, JobId, KindCounts};
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::source::{Cursor, ScopeSnapshot};

use crate::store::{Checkpoint, ErrorEntry, LinkCommit, PageCommit, StateStore, StoreError};

use super::support::{activity, counts, err, hash, ids, new_job, record, running_job, update};

/// A page recorded with what it says of its scope reads back with it, and with
/// its counts once loaded; fetching it again replaces the snapshot (a retried
/// scope that now answers is complete).
pub async fn pages_keep_their_scope_snapshot_and_counts(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    let next = |n: u64| Checkpoint {
        next_page: n,
        next_cursor: Some(Cursor(n.to_string())),
        extraction_complete: false,
    };
    let failed = ScopeSnapshot::Failed {
        scope: Scope::from("1-B"),
        reason: "designated body 1-B: ReturnCode 81".into(),
    };
    let complete = ScopeSnapshot::Complete {
        scope: Scope::from("1-A"),
    };
    s.record_page(&id, 0, &Cursor("0".into()), 3, Some(&complete), &next(1))
        .await
        .unwrap();
    s.record_page(&id, 1, &Cursor("1".into()), 0, Some(&failed), &next(2))
        .await
        .unwrap();
    record(s, &id, 2).await;
    let mut counts = KindCounts::default();
    counts.kind_mut(EntityKind::Individual).extracted = 3;
    counts.kind_mut(EntityKind::Individual).moved = 1;
    let commit = PageCommit {
        counts: counts.clone(),
        ..PageCommit::default()
    };
    s.commit_page(&id, "t", 0, &commit).await.unwrap();
    let pages = s.pages(&id).await.unwrap();
    assert_eq!(pages[0].snapshot, Some(complete.clone()));
    assert_eq!(pages[0].counts, Some(counts));
    assert_eq!(pages[1].snapshot, Some(failed));
    assert_eq!(pages[1].counts, None, "not loaded yet");
    assert_eq!(pages[2].snapshot, None);

    let answered = ScopeSnapshot::Complete {
        scope: Scope::from("1-B"),
    };
    s.record_page(&id, 1, &Cursor("1".into()), 5, Some(&answered), &next(2))
        .await
        .unwrap();
    assert_eq!(s.pages(&id).await.unwrap()[1].snapshot, Some(answered));
}

/// Recording a page moves the checkpoint; recording it again (crash replay) keeps its
/// `loaded` mark.
pub async fn record_page_is_idempotent_and_moves_checkpoint(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    assert_eq!(s.checkpoint(&id).await.unwrap(), None);
    assert!(s.pages(&id).await.unwrap().is_empty());
    assert_eq!(s.page_progress(&id).await.unwrap(), (0, 0));
    let first = Checkpoint {
        next_page: 0,
        next_cursor: Some(Cursor("start".into())),
        extraction_complete: false,
    };
    s.set_checkpoint(&id, &first).await.unwrap();
    assert_eq!(s.checkpoint(&id).await.unwrap(), Some(first));

    record(s, &id, 0).await;
    record(s, &id, 1).await;
    assert_eq!(
        s.checkpoint(&id).await.unwrap().unwrap(),
        Checkpoint {
            next_page: 2,
            next_cursor: Some(Cursor("c2".into())),
            extraction_complete: false,
        }
    );
    assert!(s
        .commit_page(&id, "t", 0, &PageCommit::default())
        .await
        .unwrap());
    record(s, &id, 0).await;
    assert_eq!(
        s.page_progress(&id).await.unwrap(),
        (2, 1),
        "recorded, loaded"
    );
    let pages = s.pages(&id).await.unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].page_no, 0);
    assert_eq!(pages[0].cursor, Cursor("c0".into()));
    assert_eq!(pages[0].records, 10);
    assert!(pages[0].loaded, "a replayed fetch keeps the loaded mark");
    assert!(!pages[1].loaded);

    let done = Checkpoint {
        next_page: 2,
        next_cursor: None,
        extraction_complete: true,
    };
    s.set_checkpoint(&id, &done).await.unwrap();
    assert_eq!(s.checkpoint(&id).await.unwrap(), Some(done.clone()));
    let ghost = JobId::new();
    assert!(matches!(
        s.record_page(&ghost, 0, &Cursor("c".into()), 1, None, &done)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A page commits once: a redelivered page returns false and changes nothing.
pub async fn commit_page_is_idempotent(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    record(s, &id, 0).await;
    let c = counts(
        EntityKind::Individual,
        Counts {
            extracted: 3,
            rejected: 1,
            created: 2,
            ..Counts::default()
        },
    );
    let commit = PageCommit {
        counts: c.clone(),
        errors: vec![err(Some(0), 1)],
        written: vec![
            update(EntityKind::Individual, "i1", "US", 1, Some("T1")),
            update(EntityKind::Individual, "i2", "US", 2, None),
        ],
        staged: vec![activity("a1", "i1", "w1")],
    };
    assert!(s.commit_page(&id, "t", 0, &commit).await.unwrap());
    assert!(s.pages(&id).await.unwrap()[0].loaded);

    let replay = PageCommit {
        counts: counts(
            EntityKind::Individual,
            Counts {
                extracted: 99,
                ..Counts::default()
            },
        ),
        errors: vec![err(Some(0), 2)],
        written: vec![update(EntityKind::Individual, "i1", "US", 7, Some("T9"))],
        staged: vec![activity("a2", "i2", "w1")],
    };
    assert!(!s.commit_page(&id, "t", 0, &replay).await.unwrap());
    assert_eq!(s.counts(&id).await.unwrap(), c);
    assert_eq!(s.error_count(&id).await.unwrap(), 1);
    assert_eq!(s.staged_links(&id, -1, 100).await.unwrap().len(), 1);
    let known = s
        .known_records("t", EntityKind::Individual, &ids(&["i1"]))
        .await
        .unwrap();
    assert_eq!(known[&SourceId::from("i1")].hash, hash(1));
    let tids = s
        .target_ids("t", EntityKind::Individual, &ids(&["i1"]))
        .await
        .unwrap();
    assert_eq!(tids[&SourceId::from("i1")], "T1");

    // A page the ledger never recorded cannot be committed.
    assert!(matches!(
        s.commit_page(&id, "t", 5, &commit).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A page whose commit fails leaves nothing behind: no errors, no hashes, not loaded.
/// (The failure is provoked with a page number too large to derive staged-link
/// sequence numbers from: `page_no * 1_000_000` overflows.)
pub async fn commit_page_is_atomic(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    let page = 10_000_000_000_000;
    let next = Checkpoint {
        next_page: page + 1,
        next_cursor: None,
        extraction_complete: true,
    };
    s.record_page(&id, page, &Cursor("big".into()), 1, None, &next)
        .await
        .unwrap();
    let commit = PageCommit {
        counts: counts(
            EntityKind::Individual,
            Counts {
                extracted: 1,
                created: 1,
                ..Counts::default()
            },
        ),
        errors: vec![err(Some(page), 1)],
        written: vec![update(EntityKind::Individual, "i1", "US", 1, None)],
        staged: vec![activity("a1", "i1", "w1")],
    };
    assert!(s.commit_page(&id, "t", page, &commit).await.is_err());
    assert_eq!(s.error_count(&id).await.unwrap(), 0);
    assert!(!s.pages(&id).await.unwrap()[0].loaded);
    assert_eq!(s.counts(&id).await.unwrap(), KindCounts::default());
    assert!(s.staged_links(&id, i64::MIN, 10).await.unwrap().is_empty());
    assert_eq!(
        s.connected_count("t", EntityKind::Individual, &[])
            .await
            .unwrap(),
        0
    );
}

/// Errors come back oldest first, paged, page errors and loose errors interleaved in
/// arrival order.
pub async fn errors_are_paged_in_order(s: &dyn StateStore) {
    let j = running_job(s, "t").await;
    let loose: Vec<_> = (0..10).map(|n| err(None, n)).collect();
    s.add_errors(&j, &loose).await.unwrap();
    s.add_errors(&j, &[]).await.unwrap();
    record(s, &j, 0).await;
    let page: Vec<_> = (10..25).map(|n| err(Some(0), n)).collect();
    let commit = PageCommit {
        errors: page.clone(),
        ..PageCommit::default()
    };
    s.commit_page(&j, "t", 0, &commit).await.unwrap();
    let finish = ErrorEntry {
        page_no: None,
        stage: "finish".into(),
        kind: None,
        source_id: None,
        reason: "disconnect refused: 40% of scope US".into(),
    };
    s.add_errors(&j, std::slice::from_ref(&finish))
        .await
        .unwrap();

    assert_eq!(s.error_count(&j).await.unwrap(), 26);
    let all: Vec<_> = loose
        .iter()
        .chain(page.iter())
        .chain(std::iter::once(&finish))
        .cloned()
        .collect();
    assert_eq!(s.errors(&j, 0, 10).await.unwrap(), all[..10].to_vec());
    assert_eq!(s.errors(&j, 10, 10).await.unwrap(), all[10..20].to_vec());
    assert_eq!(s.errors(&j, 20, 10).await.unwrap(), all[20..].to_vec());
    assert!(s.errors(&j, 30, 10).await.unwrap().is_empty());
    assert_eq!(s.error_count(&new_job(s, "u").await).await.unwrap(), 0);
}

/// Job counts are the sum of loaded pages and committed link chunks, kind by kind.
pub async fn counts_sum_pages_and_link_chunks(s: &dyn StateStore) {
    let j = running_job(s, "t").await;
    assert_eq!(s.counts(&j).await.unwrap(), KindCounts::default());
    for p in 0..3 {
        record(s, &j, p).await;
    }
    let mut p0 = counts(
        EntityKind::Individual,
        Counts {
            extracted: 5,
            created: 4,
            rejected: 1,
            ..Counts::default()
        },
    );
    *p0.kind_mut(EntityKind::Activity) = Counts {
        extracted: 2,
        relations_staged: 2,
        ..Counts::default()
    };
    let p1 = counts(
        EntityKind::Individual,
        Counts {
            extracted: 3,
            unchanged: 2,
            updated: 1,
            ..Counts::default()
        },
    );
    for (page, c) in [(0, &p0), (1, &p1)] {
        let commit = PageCommit {
            counts: c.clone(),
            ..PageCommit::default()
        };
        s.commit_page(&j, "t", page, &commit).await.unwrap();
    }
    // Page 2 is recorded but not loaded: it does not count.
    // The relations stage books the two deferred links: created, and loaded there.
    let links = counts(
        EntityKind::Activity,
        Counts {
            created: 2,
            relations_loaded: 2,
            ..Counts::default()
        },
    );
    s.commit_links(
        &j,
        "t",
        &LinkCommit {
            upto_seq: 1,
            counts: links.clone(),
            ..LinkCommit::default()
        },
    )
    .await
    .unwrap();

    let mut want = KindCounts::default();
    want.add(&p0);
    want.add(&p1);
    want.add(&links);
    let got = s.counts(&j).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(got.kinds[&EntityKind::Individual].extracted, 8);
    assert_eq!(got.kinds[&EntityKind::Activity].relations_loaded, 2);
    assert_eq!(got.total().reconcile(), Ok(()));
}
