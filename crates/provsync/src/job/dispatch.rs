//! Dispatch (seed steps 1.1-1.6, 2.5): validate, persist, then give the target to one
//! job at a time; the others wait in FIFO order and start when it ends.

use provsync_core::job::{JobId, JobSpec};
use provsync_core::store::Dispatch;

use super::{Engine, EngineError};

impl Engine {
    /// Validates and persists a request, then dispatches it.
    pub async fn submit(
        &self,
        spec: &JobSpec,
        requested_by: &str,
    ) -> Result<(JobId, Dispatch), EngineError> {
        spec.validate().map_err(EngineError::Invalid)?;
        let target = crate::target::target_name(&spec.target).map_err(|e| {
            EngineError::Invalid(vec![provsync_core::job::SpecError {
                field: "target".into(),
                message: e.to_string(),
            }])
        })?;
        let id = JobId::new();
        self.store
            .create_job(&id, &target, spec, requested_by)
            .await?;
        let how = self
            .store
            .dispatch(&id, &self.owner, self.lease.as_millis() as i64)
            .await?;
        tracing::info!(
            job = %id,
            kind = %spec.kind.as_str(),
            %target,
            dispatch = ?how,
            by = %requested_by,
            "job accepted"
        );
        Ok((id, how))
    }

    /// Starts the oldest queued job of a target if the target is free. Its lease is
    /// left lapsed: whichever process runs jobs (the waiting submitter, a server's
    /// worker loop) takes it over like any orphaned job.
    pub async fn start_next(&self, target: &str) -> Result<Option<JobId>, EngineError> {
        Ok(self.store.start_next_queued(target, &self.owner, 0).await?)
    }
}
