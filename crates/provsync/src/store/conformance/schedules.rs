//! Schedules: ticks fire once, skip while a job is active, chain after others.

use std::sync::Arc;
use std::time::Duration;

use provsync_core::job::{JobId, JobState};

use crate::store::{Fired, FiredBy, ScheduleFire, StateStore};

use super::support::{complete, new_job, spec, LEASE};

async fn fire(
    s: &dyn StateStore,
    schedule: &str,
    by: FiredBy,
    tick_ms: i64,
    after: Option<&str>,
) -> Fired {
    let id = JobId::new();
    let spec = spec();
    s.fire_schedule(&ScheduleFire {
        schedule,
        fired_by: by,
        tick_at: chrono::DateTime::from_timestamp_millis(tick_ms).unwrap(),
        job_id: &id,
        target: "t-sched",
        spec: &spec,
        requested_by: "schedule:test",
        after,
    })
    .await
    .unwrap()
}

fn created(f: Fired) -> (JobId, Option<JobId>) {
    match f {
        Fired::Created { job, after_job } => {
            assert_eq!(job.state, JobState::Accepted);
            (job.id, after_job)
        }
        other => panic!("expected a created job, got {other:?}"),
    }
}

pub async fn a_cron_tick_fires_once_and_creates_its_job(s: &dyn StateStore) {
    let (job, after) = created(fire(s, "nightly", FiredBy::Cron, 1_000, None).await);
    assert_eq!(after, None);
    assert_eq!(s.job(&job).await.unwrap().requested_by, "schedule:test");
    // The same tick again: claimed already, even once the job has ended.
    s.transition(&job, JobState::Accepted, JobState::Aborted, None)
        .await
        .unwrap();
    assert_eq!(
        fire(s, "nightly", FiredBy::Cron, 1_000, None).await,
        Fired::AlreadyFired
    );
    // The next tick fires; another schedule's same tick is its own.
    created(fire(s, "nightly", FiredBy::Cron, 2_000, None).await);
    created(fire(s, "other", FiredBy::Cron, 1_000, None).await);
    let runs = s.schedule_runs("nightly", 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].tick_at.timestamp_millis(), 2_000, "newest first");
    assert!(runs
        .iter()
        .all(|r| r.outcome == "fired" && r.job_id.is_some()));
}

pub async fn a_tick_is_skipped_while_the_previous_job_is_active(s: &dyn StateStore) {
    let (job, _) = created(fire(s, "nightly", FiredBy::Cron, 1_000, None).await);
    s.dispatch(&job, "w", LEASE).await.unwrap();
    assert_eq!(
        fire(s, "nightly", FiredBy::Cron, 2_000, None).await,
        Fired::Running(job.clone())
    );
    let runs = s.schedule_runs("nightly", 10).await.unwrap();
    assert_eq!(runs[0].outcome, "skipped");
    assert_eq!(runs[0].job_id, None);
    assert!(runs[0].note.as_deref().unwrap().contains(job.as_str()));
    // The skipped tick stays claimed.
    assert_eq!(
        fire(s, "nightly", FiredBy::Cron, 2_000, None).await,
        Fired::AlreadyFired
    );
    complete(s, &job).await;
    created(fire(s, "nightly", FiredBy::Cron, 3_000, None).await);
}

pub async fn a_manual_trigger_reports_the_active_job(s: &dyn StateStore) {
    let (job, _) = created(fire(s, "gmc", FiredBy::Manual, 1_000, None).await);
    s.dispatch(&job, "w", LEASE).await.unwrap();
    assert_eq!(
        fire(s, "gmc", FiredBy::Manual, 1_500, None).await,
        Fired::Running(job.clone())
    );
    // A refused manual trigger leaves no run behind.
    assert_eq!(s.schedule_runs("gmc", 10).await.unwrap().len(), 1);
    complete(s, &job).await;
    let (again, _) = created(fire(s, "gmc", FiredBy::Manual, 1_600, None).await);
    assert_ne!(again, job);
}

pub async fn after_links_the_awaited_schedules_latest_job(s: &dyn StateStore) {
    // Nothing to wait for yet.
    let (first, after) = created(fire(s, "bulk", FiredBy::Cron, 500, Some("codes")).await);
    assert_eq!(after, None);
    s.transition(&first, JobState::Accepted, JobState::Aborted, None)
        .await
        .unwrap();
    let (codes, _) = created(fire(s, "codes", FiredBy::Cron, 1_000, None).await);
    let (bulk, after) = created(fire(s, "bulk", FiredBy::Cron, 1_000, Some("codes")).await);
    assert_eq!(after.as_ref(), Some(&codes));
    let runs = s.schedule_runs("bulk", 1).await.unwrap();
    assert_eq!(runs[0].job_id.as_ref(), Some(&bulk));
    assert_eq!(runs[0].after_job.as_ref(), Some(&codes));
}

pub async fn held_jobs_lists_schedule_jobs_and_stranded_ones(s: &dyn StateStore) {
    let (codes, _) = created(fire(s, "codes", FiredBy::Cron, 1_000, None).await);
    let (bulk, _) = created(fire(s, "bulk", FiredBy::Cron, 1_000, Some("codes")).await);
    let plain = new_job(s, "elsewhere").await;
    let held = s.held_jobs(60_000).await.unwrap();
    let ids: Vec<&JobId> = held.iter().map(|h| &h.id).collect();
    assert_eq!(ids, [&codes, &bulk], "a fresh plain job is its submitter's");
    assert_eq!(held[0].after, None);
    assert_eq!(held[0].schedule.as_deref(), Some("codes"));
    assert_eq!(held[1].after, Some((codes.clone(), JobState::Accepted)));
    // Once older than the threshold, the plain accepted job is listed too.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let held = s.held_jobs(10).await.unwrap();
    assert!(held.iter().any(|h| h.id == plain && h.schedule.is_none()));
    // Dispatched jobs are no longer held; the awaited state follows the job.
    s.dispatch(&codes, "w", LEASE).await.unwrap();
    complete(s, &codes).await;
    let held = s.held_jobs(60_000).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].after, Some((codes, JobState::Completed)));
}

pub async fn concurrent_ticks_fire_exactly_once(s: Arc<dyn StateStore>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                // Ten contenders per tick, two ticks.
                fire(
                    &*s,
                    "busy-schedule",
                    FiredBy::Cron,
                    1_000 * (1 + i % 2),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut fired = 0;
    let mut skipped = 0;
    for t in tasks {
        match t.await.unwrap() {
            Fired::Created { .. } => fired += 1,
            Fired::Running(_) => skipped += 1,
            Fired::AlreadyFired => {}
        }
    }
    // The first tick to be claimed creates a job; the other tick either creates one
    // (if it came first) or is skipped because that job is still active.
    assert_eq!(fired + skipped, 2, "fired {fired}, skipped {skipped}");
    assert!(fired >= 1);
    let runs = s.schedule_runs("busy-schedule", 10).await.unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
}
