//! Dispatch (seed steps 1.1-1.6, 2.5): validate, persist, then give the target to one
//! job at a time; the others wait in FIFO order and start when it ends.

use provsync_core::job::{JobId, JobSpec, SpecError};
use provsync_core::store::Dispatch;

use super::{Engine, EngineError};

/// Checks a job request before it exists: the fields serde cannot check, then the
/// source and target sections against their connectors' typed settings (unknown
/// keys, wrong types, secrets written inline). Returns every problem found, or the
/// target's dispatch key.
pub fn check(spec: &JobSpec) -> Result<String, Vec<SpecError>> {
    // A name only the service's configuration resolves (`source = "onekey-eu"`).
    let unresolved: Vec<SpecError> = [("source", &spec.source), ("target", &spec.target)]
        .into_iter()
        .filter_map(|(key, s)| {
            Some(SpecError {
                field: key.into(),
                message: format!(
                    "names the connection {:?}; connections are configured for the \
                     service ([{key}s.<name>] in its configuration) and used by API \
                     requests and schedules; here write the {key} out in full \
                     ({key}.type and its settings)",
                    s.unresolved()?
                ),
            })
        })
        .collect();
    if !unresolved.is_empty() {
        return Err(unresolved);
    }
    let mut errs = spec.validate().err().unwrap_or_default();
    if let Err(e) = crate::source::SourceConfig::parse(&spec.source) {
        errs.push(e);
    }
    match crate::target::target_name(&spec.target) {
        Ok(name) if errs.is_empty() => Ok(name),
        Ok(_) => Err(errs),
        Err(e) => {
            errs.push(e);
            Err(errs)
        }
    }
}

impl Engine {
    /// Validates and persists a request, then dispatches it.
    pub async fn submit(
        &self,
        spec: &JobSpec,
        requested_by: &str,
    ) -> Result<(JobId, Dispatch), EngineError> {
        let target = check(spec).map_err(EngineError::Invalid)?;
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
