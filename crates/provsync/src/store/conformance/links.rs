//! Staged links: kept in page order and committed once per chunk.

use provsync_core::job::Counts;
use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, EntityRef, Scope, SourceId};
use serde_json::json;

use crate::store::{ErrorEntry, LinkCommit, PageCommit, StateStore};

use super::support::{activity, counts, ids, new_job, record, running_job, update, LEASE};

/// Staged links read back intact in seq order (page order), page by page; a committed
/// chunk removes its links and counts once even when replayed.
pub async fn staged_links_round_trip_and_commit_once(s: &dyn StateStore) {
    let j = running_job(s, "t").await;
    record(s, &j, 0).await;
    record(s, &j, 1).await;
    let relation = MappedRecord::new(
        EntityKind::Relation,
        SourceId::from("w2>parent"),
        Scope::from("US"),
        "relation".into(),
        vec![("type".into(), json!("parent"))],
        vec![
            (
                "from".into(),
                EntityRef {
                    kind: EntityKind::Workplace,
                    id: SourceId::from("w2"),
                },
            ),
            (
                "to".into(),
                EntityRef {
                    kind: EntityKind::Workplace,
                    id: SourceId::from("w1"),
                },
            ),
        ],
    );
    // Page 1 is committed first: order still follows pages, not commit time.
    let p1 = vec![activity("a3", "i2", "w1"), activity("a4", "i1", "w2")];
    let p0 = vec![
        activity("a1", "i1", "w1"),
        relation.clone(),
        activity("a2", "i2", "w2"),
    ];
    for (page, staged) in [(1, &p1), (0, &p0)] {
        let c = PageCommit {
            counts: counts(
                EntityKind::Activity,
                Counts {
                    extracted: staged.len() as u64,
                    relations_staged: staged.len() as u64,
                    ..Counts::default()
                },
            ),
            staged: staged.clone(),
            ..PageCommit::default()
        };
        assert!(s.commit_page(&j, "t", page, &c).await.unwrap());
    }
    let all = s.staged_links(&j, i64::MIN, 100).await.unwrap();
    let got: Vec<_> = all.iter().map(|l| l.record.clone()).collect();
    let want: Vec<_> = p0.iter().chain(p1.iter()).cloned().collect();
    assert_eq!(got, want);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        all.iter().map(|l| l.page_no).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1]
    );
    assert!(all.iter().all(|l| l.created), "never loaded: created");

    // Paging by seq.
    let first = s.staged_links(&j, i64::MIN, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = s.staged_links(&j, first[1].seq, 100).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0], all[2]);

    let chunk = LinkCommit {
        upto_seq: all[2].seq,
        counts: counts(
            EntityKind::Activity,
            Counts {
                relations_loaded: 2,
                relations_failed: 1,
                ..Counts::default()
            },
        ),
        errors: vec![ErrorEntry {
            page_no: Some(0),
            stage: "relations".into(),
            kind: Some(EntityKind::Activity),
            source_id: Some("a2".into()),
            reason: "workplace w2 not found".into(),
        }],
        written: vec![
            update(
                EntityKind::Activity,
                "a1",
                "US",
                all[0].record.hash.0,
                Some("L1"),
            ),
            update(
                EntityKind::Relation,
                "w2>parent",
                "US",
                all[1].record.hash.0,
                None,
            ),
        ],
        // A scope move page 1 delivered, applied here: counted on page 1.
        pages: [(
            1,
            counts(
                EntityKind::Individual,
                Counts {
                    updated: 1,
                    moved: 1,
                    ..Counts::default()
                },
            ),
        )]
        .into(),
    };
    let page1_before = s.pages(&j).await.unwrap()[1]
        .counts
        .clone()
        .unwrap_or_default();
    s.commit_links(&j, "t", &chunk).await.unwrap();
    s.commit_links(&j, "t", &chunk).await.unwrap();
    let left = s.staged_links(&j, i64::MIN, 100).await.unwrap();
    assert_eq!(left, all[3..].to_vec());
    let total = s.counts(&j).await.unwrap().total();
    assert_eq!(total.relations_staged, 5);
    assert_eq!(total.relations_loaded, 2, "a replayed chunk counts once");
    assert_eq!(total.relations_failed, 1);
    let page1 = s.pages(&j).await.unwrap()[1].counts.clone().unwrap();
    assert_eq!(
        page1.of(EntityKind::Individual).moved,
        page1_before.of(EntityKind::Individual).moved + 1,
        "a page's move, once"
    );
    assert_eq!(
        total.moved, 1,
        "counted on its page, not again in the chunk"
    );
    assert_eq!(s.error_count(&j).await.unwrap(), 1);
    let tids = s
        .target_ids("t", EntityKind::Activity, &ids(&["a1"]))
        .await
        .unwrap();
    assert_eq!(tids[&SourceId::from("a1")], "L1");

    // The next run stages a1 again: the target has it now, so it is an update.
    let j2 = new_job(s, "t2").await;
    s.dispatch(&j2, "w", LEASE).await.unwrap();
    record(s, &j2, 0).await;
    let c = PageCommit {
        staged: vec![activity("a1", "i1", "w1"), activity("a9", "i1", "w1")],
        ..PageCommit::default()
    };
    s.commit_page(&j2, "t", 0, &c).await.unwrap();
    let again = s.staged_links(&j2, i64::MIN, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|l| l.created).collect::<Vec<_>>(),
        [false, true]
    );
    // Jobs do not see each other's staged links.
    assert_eq!(s.staged_links(&j, i64::MIN, 100).await.unwrap().len(), 2);
}
