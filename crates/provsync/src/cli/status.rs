//! `provsync status` and `provsync abort`: read and flag jobs in the store.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use provsync_core::job::JobId;

use super::out::outln;
use super::DEFAULT_STATE;
use crate::job::abort::AbortOutcome;
use crate::job::Engine;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Job id.
    pub job_id: String,
    /// State store URL.
    #[arg(long, env = "PROVSYNC_STATE", default_value = DEFAULT_STATE)]
    pub state: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `abort`.
#[derive(Debug, Args)]
pub struct AbortArgs {
    /// Job id.
    pub job_id: String,
    /// State store URL.
    #[arg(long, env = "PROVSYNC_STATE", default_value = DEFAULT_STATE)]
    pub state: String,
}

/// Prints a job's state, stage, counts and first errors.
pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(&a.state)
        .await
        .with_context(|| format!("opening state store {}", a.state))?;
    let id = JobId::from(a.job_id.as_str());
    let job = store.job(&id).await?;
    let mut counts = store.counts(&id).await?;
    // The sweep's disconnections are recorded in the summary, not in page counts.
    if let Some(per_kind) = job.summary.as_ref().and_then(|s| s.get("per_kind")) {
        if let Ok(k) = serde_json::from_value(per_kind.clone()) {
            counts = k;
        }
    }
    let errors = store.errors(&id, 0, 10).await?;
    let error_count = store.error_count(&id).await?;
    let transitions = store.transitions(&id).await?;
    if a.json {
        let out = serde_json::json!({
            "job_id": job.id,
            "state": job.state,
            "stage": job.stage,
            "target": job.target,
            "failure": job.failure,
            "note": job.note,
            "abort_requested": job.abort_requested,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "counts": counts.total(),
            "per_kind": counts,
            "scopes": crate::api::jobs::scopes_of(&job),
            "errors_total": error_count,
            "errors": errors,
            "transitions": transitions,
            "summary": job.summary,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        outln!("job      {}", job.id)?;
        outln!("state    {} (stage {})", job.state, job.stage.as_str())?;
        outln!("target   {}", job.target)?;
        if let Some(f) = &job.failure {
            outln!("failure  {f}")?;
        }
        if let Some(n) = &job.note {
            outln!("note     {n}")?;
        }
        let c = counts.total();
        outln!(
            "counts   extracted {} rejected {} created {} updated {} unchanged {} failed {} disconnected {} relations {}/{}",
            c.extracted, c.rejected, c.created, c.updated, c.unchanged, c.failed,
            c.disconnected, c.relations_loaded, c.relations_failed
        )?;
        for t in transitions {
            outln!("  {} {} -> {}", t.at.to_rfc3339(), t.from, t.to)?;
        }
        if error_count > 0 {
            outln!("errors   {error_count} (first {}):", errors.len())?;
            for e in errors {
                outln!(
                    "  [{}] {} {}: {}",
                    e.stage,
                    e.kind.map(|k| k.as_str()).unwrap_or("-"),
                    e.source_id.as_deref().unwrap_or("-"),
                    e.reason
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Requests an abort.
pub async fn abort(a: AbortArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(&a.state)
        .await
        .with_context(|| format!("opening state store {}", a.state))?;
    let engine = Engine::new(store);
    let id = JobId::from(a.job_id.as_str());
    match engine.abort(&id).await? {
        AbortOutcome::Cancelled => outln!("job {id} was waiting: cancelled")?,
        AbortOutcome::Aborting => {
            outln!("job {id}: abort requested; it stops fetching and winds down")?
        }
        AbortOutcome::TooLate(state) => {
            outln!("job {id} is {state}: nothing to abort")?;
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
