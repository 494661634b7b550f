//! Finish (seed step 2.5, "End Job"): reconcile counts, sweep a complete full
//! snapshot, write the run summary (audit), set the final state, and start the
//! next queued job of the target.

use chrono::Utc;
use provsync_core::job::{Counts, JobEvent, JobId, JobMachine, JobState, KindCounts, Mode, Stage};
use provsync_core::model::EntityKind;
use provsync_core::source::SourceError;
use provsync_core::store::{ClaimConflict, ErrorEntry, JobRecord, PageEntry};
use serde::Serialize;

use super::reconcile::{self, ScopeLedger, SweepReport};
use super::{Engine, EngineError, JobContext};

/// Error entries copied into the summary; the rest are counted and pageable.
const SUMMARY_ERRORS: u32 = 20;

/// The audit record of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Job id.
    pub job_id: String,
    /// Final state.
    pub state: JobState,
    /// Job kind.
    pub kind: &'static str,
    /// Full or delta.
    pub mode: Mode,
    /// Target dispatch name.
    pub target: String,
    /// Who started it.
    pub requested_by: String,
    /// The headline: outcome counts in the source's terms, each source record once
    /// (the kinds in `counted`; GMC: doctors, not their connections and bodies).
    pub counts: Counts,
    /// The kinds the headline counts.
    pub counted: Vec<EntityKind>,
    /// Outcome counts per kind (every kind, derived ones too).
    pub per_kind: KindCounts,
    /// Pages fetched.
    pub pages: u64,
    /// Pages fetched but never loaded, and their records: the run stopped (an
    /// abort, a failure) before a worker loaded them. Accounted, not lost; the
    /// counts above leave them out.
    pub not_loaded: NotLoaded,
    /// What the sweep did.
    pub sweep: SweepReport,
    /// Whether the counts reconcile (every extracted record in one bucket).
    pub reconciled: bool,
    /// The failure that ended the run, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Rejected and failed records in all.
    pub errors_total: u64,
    /// The first errors.
    pub first_errors: Vec<ErrorEntry>,
    /// When the job was accepted.
    pub created_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: String,
    /// From start to finish.
    pub duration_ms: i64,
    /// The scope asked for (countries, designated bodies...).
    pub scope: Vec<String>,
    /// What an operator should look at although nothing failed (a full snapshot
    /// that held no record).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the target's own record of the run (Salesforce: IntegrationJobRun) could
    /// not be written, if it could not: the data was loaded, the org's audit record
    /// is missing or stale, so the run ends no better than `completed_with_errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_failure: Option<String>,
    /// What the target did at job end (Salesforce: IntegrationJobRun, post-job
    /// actions, value sets, API calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_report: Option<serde_json::Value>,
}

/// Pages the ledger holds but never loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotLoaded {
    /// Pages.
    pub pages: u64,
    /// Records they held.
    pub records: u64,
}

impl NotLoaded {
    /// The pages of a ledger not loaded.
    pub fn of(pages: &[PageEntry]) -> Self {
        pages
            .iter()
            .filter(|p| !p.loaded)
            .fold(Self::default(), |n, p| Self {
                pages: n.pages + 1,
                records: n.records + p.records,
            })
    }
}

/// Finishes a job whose connectors are open.
pub async fn run(ctx: &JobContext) -> Result<(), EngineError> {
    let started = std::time::Instant::now();
    let result = finish(ctx).await;
    super::Progress::time(&ctx.engine.progress.finish_ns, started);
    result
}

async fn finish(ctx: &JobContext) -> Result<(), EngineError> {
    let engine = &ctx.engine;
    let id = &ctx.id;
    engine.store.set_stage(id, Stage::Finish).await?;
    let mut job = enter_finishing(engine, id).await?;
    let counts = engine.store.counts(id).await?;
    let pages = engine.store.pages(id).await?;
    let scopes = ScopeLedger::new(&pages);
    let aborted = job.state == JobState::Aborting || job.abort_requested;
    // The source refused the run's credentials on a scope: the run fails, but only
    // after the scopes that did answer completely are swept (seed step 3.1).
    let refusal = scopes
        .refusal()
        .map(|r| SourceError::Refused(r.to_owned()).to_string());
    if job.failure.is_none() && !aborted && scopes.per_scope() && !scopes.any_complete() {
        // Not one scope could be read: the run did nothing, so it failed.
        let first = scopes.first_failure().unwrap_or("no scope was loaded");
        let reason = refusal
            .clone()
            .unwrap_or_else(|| format!("every scope failed; first: {first}"));
        engine.apply(id, JobEvent::Fail(reason)).await?;
        job = engine.store.job(id).await?;
    }
    // The failure threshold is judged before the sweep: a run that fails on it
    // disconnects nothing (DESIGN section 5).
    if job.failure.is_none() && !aborted {
        if let Some(reason) = threshold_failure(&job, &counts.total()) {
            engine.apply(id, JobEvent::Fail(reason)).await?;
            job = engine.store.job(id).await?;
        }
    }
    let sweep = match sweep_blocker(engine, &job, &counts, &pages).await? {
        Some(reason) => SweepReport::skipped(reason, &job.spec, &pages),
        None => match reconcile::sweep(ctx, &counts, &pages).await {
            Ok(r) => r,
            Err(EngineError::Target(e)) => {
                engine
                    .apply(id, JobEvent::Fail(format!("sweep: {e}")))
                    .await?;
                SweepReport::skipped(
                    format!("target failed during the sweep: {e}"),
                    &job.spec,
                    &pages,
                )
            }
            Err(e) => return Err(e),
        },
    };
    if let Some(reason) = refusal {
        if engine.store.job(id).await?.failure.is_none() && !aborted {
            engine.apply(id, JobEvent::Fail(reason)).await?;
        }
    }
    conclude(engine, id, counts, sweep, Some(ctx)).await
}

/// Finishes a job that failed before its connectors could be opened.
pub async fn run_without_context(engine: &Engine, id: &JobId) -> Result<(), EngineError> {
    engine.store.set_stage(id, Stage::Finish).await?;
    let job = enter_finishing(engine, id).await?;
    let counts = engine.store.counts(id).await?;
    let pages = engine.store.pages(id).await?;
    conclude(
        engine,
        id,
        counts,
        SweepReport::skipped(
            if job.state == JobState::Aborting {
                "the job was aborted before extraction"
            } else {
                "the job failed before extraction"
            },
            &job.spec,
            &pages,
        ),
        None,
    )
    .await
}

/// What the summary flags for an operator: a full run whose source held no record
/// ends `completed`, but an empty snapshot is more often a broken feed than an
/// empty register.
fn warnings(
    job: &JobRecord,
    counts: &Counts,
    conflicts: &(u64, Vec<ClaimConflict>),
) -> Vec<String> {
    let mut out = Vec::new();
    let (total, listed) = conflicts;
    if *total > 0 {
        let mut text = format!(
            "{total} record(s) listed in two scopes in this run (conflicts: moved by neither, see the errors): "
        );
        let names: Vec<String> = listed
            .iter()
            .map(|c| format!("{} {} ({}, {})", c.kind, c.source_id, c.scope, c.other))
            .collect();
        text.push_str(&names.join(", "));
        if *total > listed.len() as u64 {
            text.push_str(", ...");
        }
        out.push(text);
    }
    if job.spec.mode == Mode::Full && counts.extracted == 0 && job.failure.is_none() {
        out.push(
            "the source returned no records: nothing was loaded, and nothing was disconnected (an empty snapshot is never swept)"
                .to_string(),
        );
    }
    out
}

/// The failure of a run whose rejected and failed records cross the job's
/// `max_failed_records`, if they do.
fn threshold_failure(job: &JobRecord, counts: &Counts) -> Option<String> {
    job.spec
        .options
        .max_failed_records
        .exceeded(counts.errors(), counts.extracted)
        .then(|| {
            format!(
                "max_failed_records exceeded: {} of {} records rejected or failed",
                counts.errors(),
                counts.extracted
            )
        })
}

/// Running -> finishing (aborting stays aborting: it ends `aborted`).
async fn enter_finishing(engine: &Engine, id: &JobId) -> Result<JobRecord, EngineError> {
    let job = engine.store.job(id).await?;
    if job.state == JobState::Running {
        engine.apply(id, JobEvent::WorkDone).await?;
    }
    Ok(engine.store.job(id).await?)
}

/// Why the sweep must not run, if it must not: only a complete, successful,
/// reconciled full snapshot may disconnect anything.
async fn sweep_blocker(
    engine: &Engine,
    job: &JobRecord,
    counts: &KindCounts,
    pages: &[PageEntry],
) -> Result<Option<String>, EngineError> {
    if job.spec.mode != Mode::Full {
        return Ok(Some("delta run: nothing is swept".into()));
    }
    if job.state == JobState::Aborting || job.abort_requested {
        return Ok(Some("aborted run: nothing is disconnected".into()));
    }
    if job.failure.is_some() {
        // The failure itself is the summary's `failure`: said once.
        return Ok(Some("failed run: nothing is disconnected".into()));
    }
    let complete = engine
        .store
        .checkpoint(&job.id)
        .await?
        .is_some_and(|c| c.extraction_complete);
    let all_loaded = pages.iter().all(|p| p.loaded);
    if !complete || !all_loaded {
        return Ok(Some("incomplete snapshot: nothing is disconnected".into()));
    }
    if let Err(e) = counts.total().reconcile() {
        return Ok(Some(format!("counts do not reconcile: {e}")));
    }
    Ok(None)
}

async fn conclude(
    engine: &Engine,
    id: &JobId,
    mut per_kind: KindCounts,
    sweep: SweepReport,
    ctx: Option<&JobContext>,
) -> Result<(), EngineError> {
    for (kind, n) in &sweep.disconnected {
        per_kind.kind_mut(*kind).disconnected += n;
    }
    let counts = per_kind.total();
    let reconciled = counts.reconcile();
    let job = fail_if_off(engine, id, &reconciled, &counts).await?;
    // A scope that failed or whose sweep was refused leaves the run with errors:
    // the other scopes are reconciled, but the night's sync is not whole.
    let mut with_errors =
        counts.errors() > 0 || !sweep.refused.is_empty() || sweep.failed_scopes() > 0;
    // Decide the final state first, so the summary is written before readers can
    // see the terminal state.
    let ending = |with_errors| {
        JobMachine::restore(job.state, job.failure.clone())
            .apply(JobEvent::Finished { with_errors })
    };
    let mut final_state = ending(with_errors)?;
    let summary = summarize(
        engine,
        &job,
        per_kind,
        sweep,
        final_state,
        &counts,
        reconciled.is_ok(),
    )
    .await?;
    let mut value = serde_json::to_value(&summary).expect("summary serializes");
    if let Some(ctx) = ctx {
        // The target's audit record is written with the state the run ends in if it
        // is written; if it cannot be, the run has an error of its own: a completed
        // run ends `completed_with_errors` (README, "The org's audit record").
        if let Err(e) = ctx.target.write_audit(&ctx.run, &value).await {
            with_errors = true;
            final_state = ending(with_errors)?;
            if let Some(o) = value.as_object_mut() {
                o.insert(
                    "state".into(),
                    serde_json::to_value(final_state).expect("state"),
                );
                o.insert("audit_failure".into(), e.to_string().into());
            }
        }
        // The rest of the target's end-of-run work (post-job actions) sees the
        // final summary; its failures are reported in the summary, not fatal.
        let report = match ctx.target.end_run(&ctx.run, &value).await {
            Ok(r) => r,
            Err(e) => Some(serde_json::json!({ "error": e.to_string() })),
        };
        if let (Some(r), Some(o)) = (report, value.as_object_mut()) {
            o.insert("target_report".into(), r);
        }
    }
    for w in &summary.warnings {
        tracing::warn!(job = %id, warning = %w, "run finished with a warning");
    }
    engine.store.set_summary(id, &value).await?;
    // Stage first: whoever sees the terminal state must also see stage `done`
    // (a poller saw `completed` with stage `finish` in between).
    engine.store.set_stage(id, Stage::Done).await?;
    engine.apply(id, JobEvent::Finished { with_errors }).await?;
    engine.store.end_run(id).await?;
    tracing::info!(
        job = %id,
        state = %final_state,
        extracted = counts.extracted,
        created = counts.created,
        updated = counts.updated,
        unchanged = counts.unchanged,
        rejected = counts.rejected,
        failed = counts.failed,
        disconnected = counts.disconnected,
        relations_loaded = counts.relations_loaded,
        "job finished"
    );
    if let Some(next) = engine.start_next(&job.target).await? {
        tracing::info!(job = %next, target = %job.target, "next queued job started");
    }
    Ok(())
}

/// Fails the run whose counts do not reconcile (with an error saying so) or that
/// passed a threshold; the job as it then stands.
async fn fail_if_off(
    engine: &Engine,
    id: &JobId,
    reconciled: &Result<(), String>,
    counts: &Counts,
) -> Result<JobRecord, EngineError> {
    if let Err(e) = reconciled {
        engine
            .store
            .add_errors(
                id,
                &[ErrorEntry {
                    page_no: None,
                    stage: "finish".into(),
                    kind: None,
                    source_id: None,
                    reason: format!("counts do not reconcile: {e}"),
                }],
            )
            .await?;
        engine
            .apply(id, JobEvent::Fail(format!("counts do not reconcile: {e}")))
            .await?;
    }
    let job = engine.store.job(id).await?;
    if job.failure.is_none() {
        if let Some(reason) = threshold_failure(&job, counts) {
            engine.apply(id, JobEvent::Fail(reason)).await?;
        }
    }
    Ok(engine.store.job(id).await?)
}

/// The run's summary as it ends in `state`.
async fn summarize(
    engine: &Engine,
    job: &JobRecord,
    per_kind: KindCounts,
    sweep: SweepReport,
    state: JobState,
    counts: &Counts,
    reconciled: bool,
) -> Result<RunSummary, EngineError> {
    let pages = engine.store.page_progress(&job.id).await?.0;
    let not_loaded = NotLoaded::of(&engine.store.pages(&job.id).await?);
    let now = Utc::now();
    let (headline, counted) = super::counts::headline(&per_kind, &job.spec.source.kind);
    Ok(RunSummary {
        job_id: job.id.to_string(),
        state,
        kind: job.spec.kind.as_str(),
        mode: job.spec.mode,
        target: job.target.clone(),
        requested_by: job.requested_by.clone(),
        counts: headline,
        counted,
        per_kind,
        pages,
        not_loaded,
        sweep,
        reconciled,
        failure: job.failure.clone(),
        errors_total: engine.store.error_count(&job.id).await?,
        first_errors: engine.store.errors(&job.id, 0, SUMMARY_ERRORS).await?,
        created_at: job.created_at.to_rfc3339(),
        started_at: job.started_at.map(|t| t.to_rfc3339()),
        finished_at: now.to_rfc3339(),
        duration_ms: job
            .started_at
            .map(|s| (now - s).num_milliseconds())
            .unwrap_or(0),
        scope: job.spec.scope.iter().map(|s| s.to_string()).collect(),
        warnings: warnings(
            job,
            counts,
            &engine
                .store
                .claim_conflicts(&job.id, SUMMARY_ERRORS)
                .await?,
        ),
        audit_failure: None,
        target_report: None,
    })
}
