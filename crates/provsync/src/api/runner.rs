//! The background runner: drives jobs this process started, and every 500 ms picks
//! up orphaned jobs (a queued job the finish stage started with a lapsed lease, or
//! the job of a crashed process). A set of ids keeps one task per job.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provsync_core::job::JobId;
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
            match engine.run(&id).await {
                Ok(job) => tracing::info!(job = %id, state = %job.state, "job ended"),
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
