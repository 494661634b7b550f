//! What every stage of one job needs: its request, its source, target and mapping,
//! and the stop signal raised on abort or failure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use provsync_core::job::{JobId, JobKind, JobSpec};
use provsync_core::mapping::Mapping;
use provsync_core::source::Source;
use provsync_core::store::JobRecord;
use provsync_core::target::{RunRef, Target};
use tokio_util::sync::CancellationToken;

use super::codes_sync::CodesOnly;
use super::{Engine, EngineError};
use crate::source::replay::ReplaySource;

/// One running job's connectors and settings.
pub struct JobContext {
    /// The engine (store, owner, progress).
    pub engine: Engine,
    /// Job id.
    pub id: JobId,
    /// Dispatch key of the target.
    pub target_name: String,
    /// The request.
    pub spec: JobSpec,
    /// Source connector.
    pub source: Arc<dyn Source>,
    /// Target connector.
    pub target: Arc<dyn Target>,
    /// Compiled mapping.
    pub mapping: Arc<Mapping>,
    /// The run, as the target's change log names it.
    pub run: RunRef,
    /// Raised on abort or failure: extraction stops fetching.
    pub stop: CancellationToken,
    /// When this process took the job.
    pub started: Instant,
    /// Stops this process's watcher of the job (parking, abort) when dropped.
    _watch: tokio_util::sync::DropGuard,
}

impl JobContext {
    /// Opens the connectors and loads the mapping of a job.
    pub async fn open(engine: &Engine, job: &JobRecord) -> Result<Self, EngineError> {
        let mapping = Arc::new(load_mapping(&job.spec)?);
        let mut source = crate::source::open(&job.spec.source)?;
        if let Some(earlier) = &job.spec.replay_of {
            source = Arc::new(ReplaySource::new(
                source,
                failed_ids(engine, earlier).await?,
            ));
        }
        if job.spec.kind == JobKind::CodesSync {
            source = Arc::new(CodesOnly::new(source));
        }
        let target = crate::target::open(&job.spec.target).await?;
        let run = RunRef {
            job_id: job.id.to_string(),
            started_at_ms: Some(
                job.started_at
                    .unwrap_or_else(chrono::Utc::now)
                    .timestamp_millis(),
            ),
        };
        // Watching starts before the preflight: it may already park on the budget.
        let watch = super::watch::spawn(
            engine.store.clone(),
            job.id.clone(),
            target.clone(),
            run.clone(),
        );
        let mut plan = mapping.plan();
        if job.spec.kind == JobKind::CodesSync {
            // A codes sync writes only code lists: the target checks only those.
            plan.retain(|p| p.kind == provsync_core::model::EntityKind::Code);
        }
        target.prepare(&plan).await?;
        Ok(Self {
            engine: engine.clone(),
            id: job.id.clone(),
            target_name: job.target.clone(),
            spec: job.spec.clone(),
            source,
            target,
            mapping,
            run,
            stop: CancellationToken::new(),
            started: Instant::now(),
            _watch: watch,
        })
    }

    /// The state store.
    pub fn store(&self) -> &dyn provsync_core::store::StateStore {
        self.engine.store.as_ref()
    }
}

/// Source ids an earlier run rejected or failed (its error ledger, read in pages).
async fn failed_ids(engine: &Engine, earlier: &JobId) -> Result<HashSet<String>, EngineError> {
    let store = &engine.store;
    store.job(earlier).await?;
    let mut ids = HashSet::new();
    let mut offset = 0;
    loop {
        let page = store.errors(earlier, offset, 1_000).await?;
        if page.is_empty() {
            return Ok(ids);
        }
        offset += page.len() as u32;
        ids.extend(page.into_iter().filter_map(|e| e.source_id));
    }
}

/// The job's mapping file, or the target's default mapping.
pub fn load_mapping(spec: &JobSpec) -> Result<Mapping, EngineError> {
    match &spec.mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EngineError::Mapping(format!("cannot read {path}: {e}")))?;
            Mapping::from_toml(&text, path).map_err(|e| EngineError::Mapping(e.to_string()))
        }
        None => {
            let (text, name) = match spec.target.kind.as_str() {
                "sqlite" | "postgres" => (
                    provsync_core::mapping::SQL_PROVIDER,
                    "mappings/sql-provider.toml",
                ),
                "salesforce" => (
                    provsync_core::mapping::SALESFORCE_LSC,
                    "mappings/salesforce-lsc.toml",
                ),
                other => {
                    return Err(EngineError::Mapping(format!(
                        "target.type {other:?} has no default mapping: set `mapping` in the job"
                    )))
                }
            };
            Mapping::from_toml(text, name).map_err(|e| EngineError::Mapping(e.to_string()))
        }
    }
}
