//! Helpers the checks share: jobs in a given state, hashes, records, errors.

use provsync_core::job::{Counts, JobId, JobSpec, JobState, KindCounts};
use provsync_core::mapped::MappedRecord;
use provsync_core::model::{ContentHash, EntityKind, EntityRef, Scope, SourceId};
use provsync_core::source::Cursor;
use serde_json::json;

use crate::store::{Checkpoint, Dispatch, ErrorEntry, HashUpdate, StateStore, StoreError};

pub(super) const LEASE: i64 = 60_000;

pub(super) fn spec() -> JobSpec {
    serde_json::from_value(json!({
        "scope": ["US"],
        "source": {"type": "file", "path": "world.ndjson"},
        "target": {"type": "sqlite", "url": "sqlite://t.db"},
    }))
    .expect("spec")
}

pub(super) async fn new_job(s: &dyn StateStore, target: &str) -> JobId {
    let id = JobId::new();
    s.create_job(&id, target, &spec(), "test").await.unwrap();
    id
}

pub(super) async fn running_job(s: &dyn StateStore, target: &str) -> JobId {
    let id = new_job(s, target).await;
    assert_eq!(
        s.dispatch(&id, "w1", LEASE).await.unwrap(),
        Dispatch::Started
    );
    id
}

pub(super) async fn complete(s: &dyn StateStore, id: &JobId) {
    s.transition(id, JobState::Running, JobState::Finishing, None)
        .await
        .unwrap();
    s.transition(id, JobState::Finishing, JobState::Completed, None)
        .await
        .unwrap();
}

pub(super) async fn state(s: &dyn StateStore, id: &JobId) -> JobState {
    s.job(id).await.unwrap().state
}

pub(super) fn hash(n: u128) -> ContentHash {
    ContentHash(n)
}

pub(super) fn update(
    kind: EntityKind,
    id: &str,
    scope: &str,
    h: u128,
    target_id: Option<&str>,
) -> HashUpdate {
    HashUpdate {
        kind,
        source_id: SourceId::from(id),
        scope: Scope::from(scope),
        hash: hash(h),
        target_id: target_id.map(str::to_owned),
        anchor: None,
    }
}

pub(super) fn ids(list: &[&str]) -> Vec<SourceId> {
    list.iter().map(|s| SourceId::from(*s)).collect()
}

pub(super) fn activity(id: &str, individual: &str, workplace: &str) -> MappedRecord {
    MappedRecord::new(
        EntityKind::Activity,
        SourceId::from(id),
        Scope::from("US"),
        "activity".into(),
        vec![
            ("role".into(), json!("GP")),
            ("primary".into(), json!(true)),
            ("rank".into(), json!(3)),
            ("phone".into(), serde_json::Value::Null),
        ],
        vec![
            (
                "individual".into(),
                EntityRef {
                    kind: EntityKind::Individual,
                    id: SourceId::from(individual),
                },
            ),
            (
                "workplace".into(),
                EntityRef {
                    kind: EntityKind::Workplace,
                    id: SourceId::from(workplace),
                },
            ),
        ],
    )
}

pub(super) fn counts(kind: EntityKind, c: Counts) -> KindCounts {
    let mut k = KindCounts::default();
    *k.kind_mut(kind) = c;
    k
}

pub(super) fn err(page: Option<u64>, n: usize) -> ErrorEntry {
    ErrorEntry {
        page_no: page,
        stage: "transform".into(),
        kind: Some(EntityKind::Individual),
        source_id: Some(format!("bad-{n}")),
        reason: format!("last_name is empty ({n})"),
    }
}

pub(super) async fn record(s: &dyn StateStore, id: &JobId, page: u64) {
    let next = Checkpoint {
        next_page: page + 1,
        next_cursor: Some(Cursor(format!("c{}", page + 1))),
        extraction_complete: false,
    };
    s.record_page(id, page, &Cursor(format!("c{page}")), 10, None, &next)
        .await
        .unwrap();
}

pub(super) fn is_conflict(e: &StoreError, want_actual: JobState) -> bool {
    matches!(e, StoreError::Conflict { actual, .. } if *actual == want_actual)
}
