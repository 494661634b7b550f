//! Abort (seed steps 5.x): the flag stops extraction; in-flight pages finish; the
//! relations of loaded data are processed; the job ends `aborted`. A queued job is
//! simply cancelled. Every process holding the job's connectors hears of the abort
//! through its [`super::watch`]er, which has the target stop its own work in flight
//! (Salesforce Bulk jobs, writes parked on a spent budget).

use provsync_core::job::{JobEvent, JobId, JobState};
use provsync_core::store::StoreError;

use super::{Engine, EngineError};

/// What an abort request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortOutcome {
    /// The job was queued or accepted: cancelled at once.
    Cancelled,
    /// The job is running: it stops fetching and winds down to `aborted`.
    Aborting,
    /// The job had already ended (or is finishing): nothing to abort.
    TooLate(JobState),
}

impl Engine {
    /// Requests an abort of a job. Racing requests (two operators, a retrying
    /// client, the job starting meanwhile) each get an answer from the state they
    /// finally meet, never an error: a transition another request made first is
    /// read back and answered from.
    pub async fn abort(&self, id: &JobId) -> Result<AbortOutcome, EngineError> {
        loop {
            let job = self.store.job(id).await?;
            match job.state {
                JobState::Accepted | JobState::Queued => {
                    match self.apply(id, JobEvent::Abort).await {
                        Ok(_) => {
                            self.store.request_abort(id).await?;
                            return Ok(AbortOutcome::Cancelled);
                        }
                        // Moved since we read it: answer from where it is now.
                        Err(EngineError::Illegal(_))
                        | Err(EngineError::Store(StoreError::Conflict { .. })) => continue,
                        Err(e) => return Err(e),
                    }
                }
                JobState::Running | JobState::Aborting => {
                    // The running process sees the flag before its next fetch.
                    self.store.request_abort(id).await?;
                    return Ok(AbortOutcome::Aborting);
                }
                other => return Ok(AbortOutcome::TooLate(other)),
            }
        }
    }
}

/// Moves a running job whose abort flag is up to `aborting`.
pub async fn enter_aborting_if_requested(engine: &Engine, id: &JobId) -> Result<bool, EngineError> {
    if !engine.store.abort_requested(id).await? {
        return Ok(false);
    }
    let job = engine.store.job(id).await?;
    if job.state == JobState::Running {
        match engine.apply(id, JobEvent::Abort).await {
            Ok(_) => {}
            // Another task of this process (the distributed driver's lookout) moved
            // it first.
            Err(_) if engine.store.job(id).await?.state == JobState::Aborting => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
