//! The watcher every process runs beside a job's connectors (the driver and each
//! distributed worker), from the moment its target is open (the preflight may
//! already park) until the job ends or the connectors are dropped:
//! - a parked target (spent API budget) shows as stage `parked`, with the reason as
//!   the job's note, both in the store so every process sees why the job waits; the
//!   stage comes back when the target resumes;
//! - an abort request reaches the target once, which stops its own work in flight
//!   (the Salesforce Bulk jobs this process started, writes parked on the budget).

use std::sync::Arc;
use std::time::Duration;

use provsync_core::job::{JobId, JobState, Stage};
use provsync_core::store::{StateStore, StoreError};
use provsync_core::target::{RunRef, Target};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the watcher looks at the target and the job.
const TICK: Duration = Duration::from_millis(500);

/// Starts watching; the watcher stops when the guard is dropped or the job ends.
pub fn spawn(
    store: Arc<dyn StateStore>,
    id: JobId,
    target: Arc<dyn Target>,
    run: RunRef,
) -> DropGuard {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut before: Option<Stage> = None;
        let mut abort_sent = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Ok(job) = store.job(&id).await else {
                continue; // a store hiccup: look again
            };
            if job.state.is_terminal() {
                break;
            }
            if !abort_sent && (job.abort_requested || job.state == JobState::Aborting) {
                abort_sent = true;
                match target.abort(&run).await {
                    Ok(stopped) if !stopped.is_empty() => {
                        tracing::info!(job = %id, ?stopped, "abort: target-side work stopped");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "abort: the target could not stop its work");
                    }
                }
            }
            match (target.parked(), before) {
                (Some(reason), None) => {
                    tracing::warn!(job = %id, %reason, "job parked");
                    // The note first: whoever sees stage `parked` also sees why.
                    if store.set_note(&id, Some(&reason)).await.is_ok()
                        && store.set_stage(&id, Stage::Parked).await.is_ok()
                    {
                        // Parked already (another process, or a run resumed while
                        // parked): the job goes back to loading pages.
                        before = Some(match job.stage {
                            Stage::Parked => Stage::Extract,
                            other => other,
                        });
                    }
                }
                (None, Some(stage)) => {
                    tracing::info!(job = %id, "job resumed");
                    if unpark(&*store, &id, stage).await.is_ok() {
                        before = None;
                    }
                }
                _ => {}
            }
        }
        if let Some(stage) = before {
            let _ = unpark(&*store, &id, stage).await;
        }
    });
    token.drop_guard()
}

/// Puts the stage a parked job had back (unless it moved on meanwhile: finish
/// writes `done` before the watcher's next tick sees the target resumed) and clears
/// the note (the stage first: whoever sees the note gone sees it moving).
async fn unpark(store: &dyn StateStore, id: &JobId, stage: Stage) -> Result<(), StoreError> {
    if store.job(id).await?.stage == Stage::Parked {
        store.set_stage(id, stage).await?;
    }
    store.set_note(id, None).await
}
