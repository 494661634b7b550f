//! The background runner: drives jobs this process started, and every 500 ms picks
//! up orphaned jobs (a queued job the finish stage started with a lapsed lease, or
//! the job of a crashed process). A set of ids keeps one task per job.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provsync_core::job::{JobId, KindCounts};
use provsync_core::store::JobRecord;
use tokio_util::sync::CancellationToken;

use crate::job::{Engine, EngineError};

/// Runs jobs in background tasks, at most one task per job.
#[derive(Clone)]
pub struct Runner {
    engine: Engine,
    running: Arc<Mutex<HashSet<JobId>>>,
}

impl Runner {
    /// A runner over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Jobs this process is driving now.
    pub fn running(&self) -> usize {
        self.running.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Drives `id` to its end in a background task, unless a task already does.
    pub fn spawn(&self, id: JobId) -> bool {
        {
            let Ok(mut set) = self.running.lock() else {
                return false;
            };
            if !set.insert(id.clone()) {
                return false;
            }
        }
        let engine = self.engine.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            let was_terminal =
                matches!(engine.store.job(&id).await, Ok(j) if j.state.is_terminal());
            match engine.run(&id).await {
                Ok(job) => {
                    tracing::info!(job = %id, state = %job.state, "job ended");
                    if !was_terminal && job.state.is_terminal() {
                        record_finished(&engine, &job).await;
                    }
                }
                Err(EngineError::Busy(_)) => {
                    tracing::debug!(job = %id, "job is held by another process")
                }
                Err(e) => tracing::error!(job = %id, error = %e, "job run failed"),
            }
            if let Ok(mut set) = running.lock() {
                set.remove(&id);
            }
        });
        true
    }

    /// Polls the store for orphaned jobs every `every` until the token is cancelled.
    pub fn start_polling(&self, every: Duration) -> CancellationToken {
        let token = CancellationToken::new();
        let stop = token.clone();
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match me.engine.store.orphaned_jobs().await {
                    Ok(ids) => {
                        for id in ids {
                            if me.spawn(id.clone()) {
                                tracing::info!(job = %id, "picking up orphaned job");
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot list orphaned jobs"),
                }
            }
        });
        token
    }
}

/// Records a job this runner drove to its end in the metrics: final state,
/// duration, and the per-kind counts of its summary (the store's page counts when
/// it has none, e.g. a job cancelled before its finish stage).
async fn record_finished(engine: &Engine, job: &JobRecord) {
    let from_summary = job
        .summary
        .as_ref()
        .and_then(|s| s.get("per_kind"))
        .and_then(|k| serde_json::from_value::<KindCounts>(k.clone()).ok());
    let per_kind = match from_summary {
        Some(k) => k,
        None => engine.store.counts(&job.id).await.unwrap_or_default(),
    };
    let duration = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => (f - s).to_std().ok(),
        _ => None,
    };
    crate::metrics::job_finished(job.state, duration, &per_kind);
}
