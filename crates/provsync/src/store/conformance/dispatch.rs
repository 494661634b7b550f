//! Dispatch and leases: one active job per target, in queue order, and orphans.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use provsync_core::job::JobState;

use crate::store::{Dispatch, JobFilter, StateStore};

use super::support::{complete, is_conflict, new_job, running_job, state, LEASE};

/// One active job per target; the others start in the order they were queued, and a
/// newcomer never overtakes a queued job even when the target is momentarily free.
pub async fn dispatch_is_fifo_per_target(s: &dyn StateStore) {
    let j1 = running_job(s, "t").await;
    let j2 = new_job(s, "t").await;
    let j3 = new_job(s, "t").await;
    assert_eq!(s.dispatch(&j2, "w", LEASE).await.unwrap(), Dispatch::Queued);
    assert_eq!(s.dispatch(&j3, "w", LEASE).await.unwrap(), Dispatch::Queued);
    assert_eq!(state(s, &j2).await, JobState::Queued);
    assert!(s.job(&j2).await.unwrap().started_at.is_none());
    let again = s.dispatch(&j2, "w", LEASE).await.unwrap_err();
    assert!(is_conflict(&again, JobState::Queued), "{again}");

    // Busy while j1 is active, in any active state.
    assert_eq!(s.start_next_queued("t", "w2", LEASE).await.unwrap(), None);
    s.transition(&j1, JobState::Running, JobState::Finishing, None)
        .await
        .unwrap();
    assert_eq!(s.start_next_queued("t", "w2", LEASE).await.unwrap(), None);
    s.transition(&j1, JobState::Finishing, JobState::Completed, None)
        .await
        .unwrap();

    // Free, but j2 and j3 wait: a new job queues behind them.
    let j4 = new_job(s, "t").await;
    assert_eq!(s.dispatch(&j4, "w", LEASE).await.unwrap(), Dispatch::Queued);

    for expected in [&j2, &j3, &j4] {
        let next = s.start_next_queued("t", "w2", LEASE).await.unwrap();
        assert_eq!(next.as_ref(), Some(expected));
        let job = s.job(expected).await.unwrap();
        assert_eq!(job.state, JobState::Running);
        assert!(job.started_at.is_some());
        assert_eq!(s.start_next_queued("t", "w2", LEASE).await.unwrap(), None);
        complete(s, expected).await;
    }
    assert_eq!(s.start_next_queued("t", "w2", LEASE).await.unwrap(), None);
    let hops: Vec<_> = s
        .transitions(&j2)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        hops,
        [
            (JobState::Accepted, JobState::Queued),
            (JobState::Queued, JobState::Running),
            (JobState::Running, JobState::Finishing),
            (JobState::Finishing, JobState::Completed),
        ]
    );
    // A free target with an empty queue starts a new job at once.
    running_job(s, "t").await;
}

/// Targets do not wait for each other.
pub async fn targets_are_independent(s: &dyn StateStore) {
    let a = running_job(s, "a").await;
    let b = running_job(s, "b").await;
    let a2 = new_job(s, "a").await;
    assert_eq!(s.dispatch(&a2, "w", LEASE).await.unwrap(), Dispatch::Queued);
    complete(s, &b).await;
    assert_eq!(s.start_next_queued("b", "w", LEASE).await.unwrap(), None);
    assert_eq!(s.start_next_queued("a", "w", LEASE).await.unwrap(), None);
    complete(s, &a).await;
    assert_eq!(
        s.start_next_queued("a", "w", LEASE).await.unwrap(),
        Some(a2)
    );
}

/// Fifty simultaneous dispatches for one target: exactly one starts, the rest queue,
/// and the queue then drains one job at a time, each exactly once.
pub async fn concurrent_dispatch_starts_exactly_one(s: Arc<dyn StateStore>) {
    let mut jobs = Vec::new();
    for _ in 0..50 {
        jobs.push(new_job(&*s, "busy").await);
    }
    let tasks: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|id| {
            let s = s.clone();
            tokio::spawn(async move { s.dispatch(&id, "w", LEASE).await })
        })
        .collect();
    let mut started = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == Dispatch::Started {
            started += 1;
        }
    }
    assert_eq!(started, 1);
    let running = s
        .list_jobs(&JobFilter {
            state: Some(JobState::Running),
            target: Some("busy".into()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let mut seen = HashSet::from([running[0].id.clone()]);
    let mut current = running[0].id.clone();
    loop {
        complete(&*s, &current).await;
        match s.start_next_queued("busy", "w", LEASE).await.unwrap() {
            Some(next) => {
                assert!(seen.insert(next.clone()), "{next} started twice");
                current = next;
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
}

/// Leases: take, renew, refuse another owner, release by owner only, take over once expired.
pub async fn leases_take_renew_refuse_expire(s: &dyn StateStore) {
    assert!(s.acquire_lease("schedule:gmc", "a", LEASE).await.unwrap());
    assert!(s.acquire_lease("schedule:gmc", "a", LEASE).await.unwrap());
    assert!(!s.acquire_lease("schedule:gmc", "b", LEASE).await.unwrap());
    s.release_lease("schedule:gmc", "b").await.unwrap();
    assert!(!s.acquire_lease("schedule:gmc", "b", LEASE).await.unwrap());
    s.release_lease("schedule:gmc", "a").await.unwrap();
    assert!(s.acquire_lease("schedule:gmc", "b", LEASE).await.unwrap());
    assert!(!s.acquire_lease("schedule:gmc", "a", LEASE).await.unwrap());

    assert!(s.acquire_lease("short", "a", 50).await.unwrap());
    assert!(!s.acquire_lease("short", "b", LEASE).await.unwrap());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        s.acquire_lease("short", "b", LEASE).await.unwrap(),
        "takeover"
    );
    assert!(!s.acquire_lease("short", "a", LEASE).await.unwrap());
}

/// An active job whose lease lapsed is orphaned until a worker takes its lease.
pub async fn orphaned_jobs_after_lease_expiry(s: &dyn StateStore) {
    // The lease must outlive the setup below even on a loaded 2-core machine (50 ms
    // did not, 1 run in 4), yet lapse soon enough to keep the test short.
    const SHORT: i64 = 1_000;
    let id = new_job(s, "t").await;
    assert_eq!(
        s.dispatch(&id, "w1", SHORT).await.unwrap(),
        Dispatch::Started
    );
    let queued = new_job(s, "t").await;
    assert_eq!(
        s.dispatch(&queued, "w1", SHORT).await.unwrap(),
        Dispatch::Queued
    );
    let healthy = running_job(s, "u").await;
    assert!(s.orphaned_jobs().await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(SHORT as u64 + 300)).await;
    assert_eq!(s.orphaned_jobs().await.unwrap(), vec![id.clone()]);
    // Another worker resumes it by taking over the lapsed lease.
    assert!(s
        .acquire_lease(&format!("job:{id}"), "w2", LEASE)
        .await
        .unwrap());
    assert!(s.orphaned_jobs().await.unwrap().is_empty());

    // A running job with no lease row at all is orphaned too.
    s.release_lease(&format!("job:{healthy}"), "w1")
        .await
        .unwrap();
    assert_eq!(s.orphaned_jobs().await.unwrap(), vec![healthy]);
}
