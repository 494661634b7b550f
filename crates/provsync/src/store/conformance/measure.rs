//! A one-off measurement of the largest page commit, run by hand.

use provsync_core::job::Counts;
use provsync_core::model::{EntityKind, Scope, SourceId};

use crate::store::PageCommit;

use super::sqlite_file_fixture;
use super::support::{activity, counts, record, running_job, update};

/// Times a 100k-record page commit and a 100k-id `known_records` (run by hand:
/// `cargo test --release -p provsync --lib store::conformance::measure -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn measure_100k_commit_and_known_records() {
    let fx = sqlite_file_fixture().await;
    let s = &*fx.store;
    let j = running_job(s, "t").await;
    record(s, &j, 0).await;
    record(s, &j, 1).await;
    let n = 100_000;
    let written: Vec<_> = (0..n)
        .map(|i| {
            update(
                EntityKind::Individual,
                &format!("WUSM{i:08}"),
                "US",
                i,
                Some("001"),
            )
        })
        .collect();
    let commit = PageCommit {
        counts: counts(
            EntityKind::Individual,
            Counts {
                extracted: n as u64,
                created: n as u64,
                ..Counts::default()
            },
        ),
        written,
        ..PageCommit::default()
    };
    let t = std::time::Instant::now();
    s.commit_page(&j, "t", 0, &commit).await.unwrap();
    println!("commit_page, 100k hash updates: {:?}", t.elapsed());

    let staged: Vec<_> = (0..n)
        .map(|i| activity(&format!("A{i:08}"), &format!("WUSM{i:08}"), "w1"))
        .collect();
    let commit = PageCommit {
        staged,
        ..PageCommit::default()
    };
    let t = std::time::Instant::now();
    s.commit_page(&j, "t", 1, &commit).await.unwrap();
    println!("commit_page, 100k staged links: {:?}", t.elapsed());

    let ids: Vec<_> = (0..n).map(|i| SourceId(format!("WUSM{i:08}"))).collect();
    let t = std::time::Instant::now();
    let known = s
        .known_records("t", EntityKind::Individual, &ids)
        .await
        .unwrap();
    println!("known_records, 100k ids: {:?}", t.elapsed());
    assert_eq!(known.len(), n as usize);
    let claims: Vec<(SourceId, Scope)> =
        ids.into_iter().map(|id| (id, Scope::from("US"))).collect();
    let t = std::time::Instant::now();
    s.claim_records(&j, Some(2), EntityKind::Individual, &claims)
        .await
        .unwrap();
    println!("claim_records, 100k records: {:?}", t.elapsed());
}
