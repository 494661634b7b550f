//! Job records: creation, the state machine, notes, the abort flag and listing.

use std::time::Duration;

use chrono::Utc;
use provsync_core::job::{JobId, JobState, Stage};
use serde_json::json;

use crate::store::{JobFilter, StateStore, StoreError};

use super::support::{complete, is_conflict, new_job, running_job, spec, state, LEASE};

/// A created job reads back as accepted/pending with its request, and setters stick.
pub async fn create_and_get_round_trip(s: &dyn StateStore) {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let id = JobId::new();
    let created = s.create_job(&id, "sf-prod", &spec(), "cli").await.unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.target, "sf-prod");
    assert_eq!(created.spec, spec());
    assert_eq!(created.requested_by, "cli");
    assert_eq!(created.state, JobState::Accepted);
    assert_eq!(created.stage, Stage::Pending);
    assert_eq!(created.failure, None);
    assert!(!created.abort_requested);
    assert!(created.created_at >= before && created.created_at <= Utc::now());
    assert_eq!(created.started_at, None);
    assert_eq!(created.finished_at, None);
    assert_eq!(created.summary, None);
    assert_eq!(created.note, None);
    assert_eq!(s.job(&id).await.unwrap(), created);
    // Creation is not a transition: the history starts with the first state change.
    assert!(s.transitions(&id).await.unwrap().is_empty());

    s.set_stage(&id, Stage::Extract).await.unwrap();
    let summary = json!({"counts": {"extracted": 3}, "note": "ok"});
    s.set_summary(&id, &summary).await.unwrap();
    s.record_failure(&id, "auth refused").await.unwrap();
    s.record_failure(&id, "later consequence").await.unwrap();
    let job = s.job(&id).await.unwrap();
    assert_eq!(job.stage, Stage::Extract);
    assert_eq!(job.summary, Some(summary));
    assert_eq!(
        job.failure.as_deref(),
        Some("auth refused"),
        "first failure wins"
    );

    let ghost = JobId::new();
    assert!(matches!(s.job(&ghost).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.set_stage(&ghost, Stage::Done).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.record_failure(&ghost, "x").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.dispatch(&ghost, "w", LEASE).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A transition the state machine does not allow is an error and changes nothing.
pub async fn illegal_transition_is_refused(s: &dyn StateStore) {
    let id = new_job(s, "t").await;
    let e = s
        .transition(&id, JobState::Accepted, JobState::Completed, None)
        .await
        .unwrap_err();
    assert!(is_conflict(&e, JobState::Accepted), "{e}");
    assert!(e.to_string().contains("completed"), "{e}");
    assert_eq!(state(s, &id).await, JobState::Accepted);
    assert!(s.transitions(&id).await.unwrap().is_empty());

    let run = running_job(s, "u").await;
    let e = s
        .transition(&run, JobState::Running, JobState::Completed, None)
        .await
        .unwrap_err();
    assert!(is_conflict(&e, JobState::Running), "{e}");
    assert_eq!(state(s, &run).await, JobState::Running);
    assert_eq!(s.job(&run).await.unwrap().finished_at, None);
    assert_eq!(s.transitions(&run).await.unwrap().len(), 1);
}

/// A transition from a state the job has already left is a conflict naming the
/// actual state; an unknown job is `NotFound`.
pub async fn conditional_transition_conflicts(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    let e = s
        .transition(&id, JobState::Queued, JobState::Running, None)
        .await
        .unwrap_err();
    match &e {
        StoreError::Conflict {
            actual, expected, ..
        } => {
            assert_eq!(*actual, JobState::Running);
            assert_eq!(expected, "queued");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    // Two workers racing on the same move: the second loses.
    s.transition(&id, JobState::Running, JobState::Aborting, None)
        .await
        .unwrap();
    let e = s
        .transition(&id, JobState::Running, JobState::Aborting, None)
        .await
        .unwrap_err();
    assert!(is_conflict(&e, JobState::Aborting), "{e}");
    assert_eq!(s.transitions(&id).await.unwrap().len(), 2);
    assert!(matches!(
        s.transition(&JobId::new(), JobState::Accepted, JobState::Queued, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A terminal state stamps `finished_at` and frees the job's lease; transitions are
/// kept oldest first with their reasons.
pub async fn terminal_sets_finished_and_releases_lease(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    let lease = format!("job:{id}");
    assert!(!s.acquire_lease(&lease, "intruder", LEASE).await.unwrap());
    assert!(s.acquire_lease(&lease, "w1", LEASE).await.unwrap(), "renew");
    s.transition(
        &id,
        JobState::Running,
        JobState::Aborting,
        Some("abort by api:ops"),
    )
    .await
    .unwrap();
    assert_eq!(s.job(&id).await.unwrap().finished_at, None);
    assert!(!s.acquire_lease(&lease, "intruder", LEASE).await.unwrap());
    s.transition(&id, JobState::Aborting, JobState::Aborted, Some("aborted"))
        .await
        .unwrap();
    let job = s.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Aborted);
    let finished = job.finished_at.expect("finished_at");
    assert!(finished >= job.started_at.unwrap());
    assert!(s.orphaned_jobs().await.unwrap().is_empty());
    assert!(s.acquire_lease(&lease, "intruder", LEASE).await.unwrap());

    let ts = s.transitions(&id).await.unwrap();
    let got: Vec<_> = ts
        .iter()
        .map(|t| (t.from, t.to, t.reason.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (JobState::Accepted, JobState::Running, None),
            (
                JobState::Running,
                JobState::Aborting,
                Some("abort by api:ops")
            ),
            (JobState::Aborting, JobState::Aborted, Some("aborted")),
        ]
    );
    assert!(ts.windows(2).all(|w| w[0].at <= w[1].at));

    // Cancelling a queued job is terminal too.
    let q = new_job(s, "u").await;
    s.transition(&q, JobState::Accepted, JobState::Aborted, None)
        .await
        .unwrap();
    assert!(s.job(&q).await.unwrap().finished_at.is_some());
}

/// A parked job's note is read back by anyone sharing the store, cleared by the
/// caller when the job resumes, and cleared by a terminal transition in any case
/// (the process that parked the job may have died without clearing it).
pub async fn a_parked_jobs_note_is_kept_until_it_resumes_or_ends(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    let reason = "Salesforce API budget spent (100 of 100 requests); waiting for it to reset";
    s.set_note(&id, Some(reason)).await.unwrap();
    s.set_stage(&id, Stage::Parked).await.unwrap();
    let job = s.job(&id).await.unwrap();
    assert_eq!(
        (job.stage, job.note.as_deref()),
        (Stage::Parked, Some(reason))
    );
    let listed = s.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(
        listed[0].note.as_deref(),
        Some(reason),
        "listing shows it too"
    );

    s.set_stage(&id, Stage::Extract).await.unwrap();
    s.set_note(&id, None).await.unwrap();
    assert_eq!(s.job(&id).await.unwrap().note, None, "cleared on resume");

    s.set_note(&id, Some(reason)).await.unwrap();
    complete(s, &id).await;
    assert_eq!(s.job(&id).await.unwrap().note, None, "cleared when it ends");

    assert!(matches!(
        s.set_note(&JobId::new(), Some(reason)).await,
        Err(StoreError::NotFound(_))
    ));
}

/// What the target keeps of a run (the Salesforce IntegrationJobRun's Id) is read
/// back by whichever process resumes the job, and stays once the job has ended.
pub async fn a_jobs_target_ref_is_kept_for_whoever_resumes_it(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    assert_eq!(s.job(&id).await.unwrap().target_ref, None);
    s.set_target_ref(&id, "1jR000000000001AAA").await.unwrap();
    assert_eq!(
        s.job(&id).await.unwrap().target_ref.as_deref(),
        Some("1jR000000000001AAA")
    );
    complete(s, &id).await;
    assert_eq!(
        s.job(&id).await.unwrap().target_ref.as_deref(),
        Some("1jR000000000001AAA"),
        "kept after the end"
    );
    assert!(matches!(
        s.set_target_ref(&JobId::new(), "x").await,
        Err(StoreError::NotFound(_))
    ));
}

/// The abort flag is a flag: raising it does not move the job.
pub async fn abort_flag(s: &dyn StateStore) {
    let id = running_job(s, "t").await;
    assert!(!s.abort_requested(&id).await.unwrap());
    s.request_abort(&id).await.unwrap();
    s.request_abort(&id).await.unwrap();
    assert!(s.abort_requested(&id).await.unwrap());
    let job = s.job(&id).await.unwrap();
    assert!(job.abort_requested);
    assert_eq!(job.state, JobState::Running);
    let ghost = JobId::new();
    assert!(matches!(
        s.abort_requested(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.request_abort(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Listing is newest first and honours state, target, since, limit and offset.
pub async fn list_jobs_filters_newest_first(s: &dyn StateStore) {
    let mut made = Vec::new();
    for target in ["a", "b", "a", "a"] {
        made.push(new_job(s, target).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    s.dispatch(&made[0], "w", LEASE).await.unwrap();
    let all = s.list_jobs(&JobFilter::default()).await.unwrap();
    let order: Vec<_> = all.iter().map(|j| j.id.clone()).collect();
    let mut newest_first = made.clone();
    newest_first.reverse();
    assert_eq!(order, newest_first);

    let only_a = s
        .list_jobs(&JobFilter {
            target: Some("a".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_a.len(), 3);
    let accepted_a = s
        .list_jobs(&JobFilter {
            target: Some("a".into()),
            state: Some(JobState::Accepted),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        accepted_a.iter().map(|j| &j.id).collect::<Vec<_>>(),
        [&made[3], &made[2]]
    );
    let page = s
        .list_jobs(&JobFilter {
            limit: 2,
            offset: 1,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|j| &j.id).collect::<Vec<_>>(),
        [&made[2], &made[1]]
    );
    let since = s.job(&made[2]).await.unwrap().created_at;
    let recent = s
        .list_jobs(&JobFilter {
            since: Some(since),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
}
