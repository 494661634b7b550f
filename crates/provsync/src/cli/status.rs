//! `provsync status` and `provsync abort`: read and flag jobs in the store.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use provsync_core::job::JobId;

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
    let (headline, per_kind) = crate::job::counts::of_job(store.as_ref(), &job).await?;
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
            "counts": headline,
            "per_kind": per_kind,
            "scopes": crate::api::jobs::scopes_of(&job),
            "errors_total": error_count,
            "errors": errors,
            "transitions": transitions,
            "summary": job.summary,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("job      {}", job.id);
        println!("state    {} (stage {})", job.state, job.stage.as_str());
        println!("target   {}", job.target);
        if let Some(f) = &job.failure {
            println!("failure  {f}");
        }
        if let Some(n) = &job.note {
            println!("note     {n}");
        }
        let c = headline;
        println!(
            "counts   extracted {} rejected {} created {} updated {} unchanged {} failed {} disconnected {}",
            c.extracted, c.rejected, c.created, c.updated, c.unchanged, c.failed, c.disconnected
        );
        for (kind, c) in &per_kind.0 {
            println!(
                "  {:<10} extracted {} rejected {} created {} updated {} unchanged {} failed {} disconnected {}",
                kind.as_str(), c.extracted, c.rejected, c.created, c.updated, c.unchanged, c.failed,
                c.disconnected
            );
        }
        for t in transitions {
            println!("  {} {} -> {}", t.at.to_rfc3339(), t.from, t.to);
        }
        if error_count > 0 {
            println!("errors   {error_count} (first {}):", errors.len());
            for e in errors {
                println!(
                    "  [{}] {} {}: {}",
                    e.stage,
                    e.kind.map(|k| k.as_str()).unwrap_or("-"),
                    e.source_id.as_deref().unwrap_or("-"),
                    e.reason
                );
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
        AbortOutcome::Cancelled => println!("job {id} was waiting: cancelled"),
        AbortOutcome::Aborting => {
            println!("job {id}: abort requested; it stops fetching and winds down")
        }
        AbortOutcome::TooLate(state) => {
            println!("job {id} is {state}: nothing to abort");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
