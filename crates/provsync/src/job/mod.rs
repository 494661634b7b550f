//! The job engine: dispatch, then the stages of DESIGN section 2 —
//! [`extract`] -> [`transform`] -> [`load`] -> [`relations`] -> [`finish`] —
//! with [`abort`], [`reconcile`] (the snapshot sweep) and [`codes_sync`]. The stage handlers hold
//! no state of their own: everything that must survive a crash is in the store.

pub mod abort;
pub mod codes_sync;
pub mod context;
pub mod counts;
pub mod dispatch;
pub mod distributed;
pub mod extract;
pub mod file;
pub mod finish;
pub mod load;
pub mod progress;
pub mod reconcile;
pub mod relations;
pub mod transform;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use provsync_core::fault::Domain;
use provsync_core::job::{
    IllegalTransition, JobEvent, JobId, JobMachine, JobState, SpecError, Stage,
};
use provsync_core::source::SourceError;
use provsync_core::store::{JobRecord, StateStore, StoreError};
use provsync_core::target::TargetError;
use tokio_util::sync::CancellationToken;

pub use context::JobContext;
pub use progress::Progress;

/// Why the engine could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job request is invalid; each entry names a field.
    #[error("invalid job request: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<SpecError>),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The target failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The mapping could not be loaded.
    #[error("mapping: {0}")]
    Mapping(String),
    /// The state machine refused an event.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// Another live process holds the job.
    #[error("job {0} is held by another live process")]
    Busy(String),
    /// A stage task panicked or was cancelled.
    #[error("stage task: {0}")]
    Task(String),
    /// This process lacks what the job needs (a secret's variable, a mapping
    /// file): the job has failed, saying so.
    #[error("{0}")]
    Unfit(String),
}

impl EngineError {
    /// Who can fix it: the job's settings and this process's setup (a variable not
    /// set, a file missing) are the user's; a connector's failure says its own.
    pub fn domain(&self) -> Domain {
        match self {
            EngineError::Invalid(_) | EngineError::Mapping(_) | EngineError::Unfit(_) => {
                Domain::User
            }
            EngineError::Source(e) => e.domain(),
            EngineError::Target(e) => e.domain(),
            EngineError::Store(_)
            | EngineError::Illegal(_)
            | EngineError::Busy(_)
            | EngineError::Task(_) => Domain::Internal,
        }
    }

    /// Whether the error lies in this process's setup or the job's settings (a
    /// variable not set, a file missing, refused credentials): trying the same
    /// work again cannot help.
    pub fn is_setup(&self) -> bool {
        self.domain() == Domain::User
    }
}

/// Runs jobs against one state store, as one owner (process).
#[derive(Clone)]
pub struct Engine {
    /// Where every job's state lives.
    pub store: Arc<dyn StateStore>,
    /// This process's lease owner name.
    pub owner: String,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// Live counters for progress display.
    pub progress: Arc<Progress>,
    /// The stage queue of the distributed runtime; `None` runs the stages in
    /// this process over bounded channels.
    pub queue: Option<Arc<dyn crate::queue::Queue>>,
}

/// The lease name of a job.
pub fn lease_name(id: &JobId) -> String {
    format!("job:{id}")
}

impl Engine {
    /// An engine over `store` with a fresh owner name for this process.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        Self {
            store,
            owner: format!("{host}:{}:{}", std::process::id(), uuid::Uuid::now_v7()),
            lease: Duration::from_secs(10),
            progress: Arc::new(Progress::default()),
            queue: None,
        }
    }

    /// The same engine, with its stages on `queue` (the distributed runtime).
    pub fn with_queue(mut self, queue: Arc<dyn crate::queue::Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Applies an event to a job through the state machine and persists the change.
    pub async fn apply(&self, id: &JobId, event: JobEvent) -> Result<JobState, EngineError> {
        let job = self.store.job(id).await?;
        let mut machine = JobMachine::restore(job.state, job.failure.clone());
        let reason = match &event {
            JobEvent::Fail(r) => r.clone(),
            other => other.name().to_owned(),
        };
        if let JobEvent::Fail(r) = &event {
            self.store.record_failure(id, r).await?;
        }
        let next = machine.apply(event)?;
        if next != job.state {
            self.store
                .transition(id, job.state, next, Some(&reason))
                .await?;
        }
        Ok(next)
    }

    /// Drives a started (or orphaned) job to its end; returns its final record.
    pub async fn run(&self, id: &JobId) -> Result<JobRecord, EngineError> {
        let job = self.store.job(id).await?;
        if job.state.is_terminal() {
            return Ok(job);
        }
        if !self
            .store
            .acquire_lease(&lease_name(id), &self.owner, self.lease_ms())
            .await?
        {
            return Err(EngineError::Busy(id.to_string()));
        }
        let heartbeat = self.heartbeat(id.clone());
        let result = self.drive(job).await;
        heartbeat.cancel();
        let _ = self.store.release_lease(&lease_name(id), &self.owner).await;
        result?;
        Ok(self.store.job(id).await?)
    }

    /// Renews the job's lease until cancelled, so a crash lets another process resume it.
    fn heartbeat(&self, id: JobId) -> CancellationToken {
        let token = CancellationToken::new();
        let stop = token.clone();
        let store = self.store.clone();
        let owner = self.owner.clone();
        let lease = self.lease;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        match store.acquire_lease(&lease_name(&id), &owner, lease.as_millis() as i64).await {
                            Ok(true) => {}
                            Ok(false) => tracing::error!(job = %id, "lease taken by another process"),
                            Err(e) => tracing::warn!(job = %id, error = %e, "lease renewal failed"),
                        }
                    }
                }
            }
        });
        token
    }

    async fn drive(&self, job: JobRecord) -> Result<(), EngineError> {
        let id = job.id.clone();
        if job.state == JobState::Accepted || job.state == JobState::Queued {
            self.apply(&id, JobEvent::Start).await?;
        }
        let ctx = match JobContext::open(self, &job).await {
            Ok(ctx) => Arc::new(ctx),
            Err(e) => {
                // Nothing was fetched: record why, and end through the finish stage.
                // Aborted while opening (a preflight parked on the budget gives up
                // when aborted): the job ends `aborted`, not `failed`.
                if abort::enter_aborting_if_requested(self, &id).await? {
                    tracing::info!(job = %id, reason = %e, "job aborted before it started loading");
                } else {
                    tracing::error!(job = %id, error = %e, "job could not start");
                    self.apply(&id, JobEvent::Fail(e.to_string())).await?;
                }
                return finish::run_without_context(self, &id).await;
            }
        };
        self.start_target_run(&job, &ctx).await?;
        self.stages(&job, &ctx).await
    }

    /// The target's start-of-run record (Salesforce: the run's IntegrationJobRun,
    /// seed step 1.10), made by the process driving the run, never by its workers.
    /// A resumed run hands the target what the store kept, so it makes no second
    /// record. A failure is logged; the end of the run tries again and the run's
    /// summary says whether the record was written.
    async fn start_target_run(&self, job: &JobRecord, ctx: &JobContext) -> Result<(), EngineError> {
        let info = serde_json::json!({
            "job_id": job.id,
            "kind": job.spec.kind.as_str(),
            "mode": job.spec.mode,
            "target": job.target,
            "requested_by": job.requested_by,
            "scope": job.spec.scope.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "started_at": ctx
                .run
                .started_at_ms
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339()),
        });
        let kept = job.target_ref.as_deref();
        match ctx.target.start_run(&ctx.run, &info, kept).await {
            Ok(Some(v)) if kept != Some(v.as_str()) => {
                self.store.set_target_ref(&job.id, &v).await?;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "the target's record of the run was not created at its start; the end of the run tries again");
            }
        }
        Ok(())
    }

    async fn stages(&self, job: &JobRecord, ctx: &Arc<JobContext>) -> Result<(), EngineError> {
        let id = &job.id;
        // A job resumed while parked goes back to loading pages.
        if matches!(job.stage, Stage::Pending | Stage::Extract | Stage::Parked) {
            self.store.set_stage(id, Stage::Extract).await?;
            if job.stage == Stage::Parked {
                // The process that parked it died: its note no longer says why it waits.
                self.store.set_note(id, None).await?;
            }
            extract::run(ctx).await?;
        }
        abort::enter_aborting_if_requested(self, id).await?;
        if job.stage != Stage::Finish {
            self.store.set_stage(id, Stage::Relations).await?;
            relations::run(ctx).await?;
        }
        finish::run(ctx).await
    }
}
