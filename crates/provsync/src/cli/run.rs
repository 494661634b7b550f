//! `provsync run <job.toml>`: submit (or resume) a job and drive it to its end on
//! the embedded runtime, with progress on stderr and a summary on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use provsync_core::job::{JobId, JobSpec, JobState};
use provsync_core::store::{Dispatch, JobFilter, JobRecord};

use super::out::{note, outln};
use super::{exit_code, progress};
use crate::job::Engine;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job file (TOML); relative paths in it start at its folder.
    pub job: PathBuf,
    /// State store URL.
    #[arg(long, env = "PROVSYNC_STATE", default_value_t = crate::paths::default_state_url())]
    pub state: String,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run the stages on a queue (`amqp://...`: `provsync worker` processes map
    /// and load the pages; `memory://`: this process does); default: in-process
    /// channels.
    #[arg(long, env = "PROVSYNC_QUEUE")]
    pub queue: Option<String>,
    /// Deliveries of a message before it is dead-lettered (with `--queue`).
    #[arg(long, default_value_t = super::worker::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
}

/// Runs a job file.
pub async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = crate::job::file::read(&a.job)?;
    let engine = super::worker::open_engine(&a.state, a.queue.as_deref(), a.max_attempts).await?;
    let stages = match (
        &engine.queue,
        super::worker::needs_own_stages(a.queue.as_deref()),
    ) {
        (Some(q), true) => Some(
            crate::job::distributed::StageWorker::new(engine.clone(), q.clone())
                .start(2)
                .await?,
        ),
        _ => None,
    };
    let job = run_spec(&engine, &spec, "cli", !a.quiet).await?;
    if let Some(s) = stages {
        s.cancel();
    }
    print_summary(&job, a.json)?;
    Ok(exit_code(job.state))
}

/// Submits a job (or resumes an interrupted run of the same request) and drives it,
/// and any orphaned job it waits behind, to the end.
pub async fn run_spec(
    engine: &Engine,
    spec: &JobSpec,
    requested_by: &str,
    show_progress: bool,
) -> anyhow::Result<JobRecord> {
    let target = crate::target::target_name(&spec.target)?;
    let id = match interrupted_run_of(engine, &target, spec).await? {
        Some(id) => {
            note!("resuming interrupted job {id}");
            id
        }
        None => {
            let (id, how) = engine.submit(spec, requested_by).await?;
            match how {
                Dispatch::Queued => note!("job {id} queued behind the target's active job"),
                Dispatch::Started => note!("job {id} started"),
            }
            id
        }
    };
    let bars = show_progress
        .then(|| progress::spawn(engine.progress.clone(), engine.store.clone(), id.clone()));
    let ctrl_c = abort_on_ctrl_c(engine.clone(), id.clone());
    let result = drive(engine, &id, &target).await;
    ctrl_c.abort();
    if let Some(b) = bars {
        b.finish(result.as_ref().ok()).await;
    }
    result
}

/// First Ctrl-C: abort the job gracefully (relations of loaded data are processed).
fn abort_on_ctrl_c(engine: Engine, id: JobId) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            note!("\ninterrupt: aborting job {id} (press Ctrl-C again to exit at once)");
            let _ = engine.abort(&id).await;
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    })
}

/// An unfinished job of this target with the same request, left by a dead process.
async fn interrupted_run_of(
    engine: &Engine,
    target: &str,
    spec: &JobSpec,
) -> anyhow::Result<Option<JobId>> {
    let active = active_jobs(engine, target).await?;
    for job in active {
        if &job.spec == spec {
            wait_until_orphaned(engine, &job.id).await?;
            return Ok(Some(job.id));
        }
    }
    Ok(None)
}

async fn active_jobs(engine: &Engine, target: &str) -> anyhow::Result<Vec<JobRecord>> {
    let jobs = engine
        .store
        .list_jobs(&JobFilter {
            target: Some(target.to_owned()),
            limit: 100,
            ..JobFilter::default()
        })
        .await?;
    Ok(jobs.into_iter().filter(|j| j.state.is_active()).collect())
}

/// Waits until a job's holder is gone (its lease lapsed) or the job ended.
async fn wait_until_orphaned(engine: &Engine, id: &JobId) -> anyhow::Result<()> {
    let mut told = false;
    loop {
        let job = engine.store.job(id).await?;
        if job.state.is_terminal() || engine.store.orphaned_jobs().await?.contains(id) {
            return Ok(());
        }
        if !told {
            note!(
                "job {id} is held by another process; waiting for it to end or its lease to lapse"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `id` once the target is ours; meanwhile resumes orphaned jobs of the target
/// (a dead process's run would otherwise block the queue forever).
async fn drive(engine: &Engine, id: &JobId, target: &str) -> anyhow::Result<JobRecord> {
    loop {
        let job = engine.store.job(id).await?;
        if job.state.is_terminal() {
            return Ok(job);
        }
        let orphans = engine.store.orphaned_jobs().await?;
        if job.state.is_active() && (orphans.contains(id) || job_lease_is_ours(engine, id).await?) {
            return Ok(engine.run(id).await?);
        }
        for other in active_jobs(engine, target).await? {
            if other.id != *id && orphans.contains(&other.id) {
                note!(
                    "resuming orphaned job {} of the same target first",
                    other.id
                );
                Box::pin(engine.run(&other.id)).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn job_lease_is_ours(engine: &Engine, id: &JobId) -> anyhow::Result<bool> {
    // Renewing succeeds only if we hold it (or nobody does).
    Ok(engine
        .store
        .acquire_lease(
            &crate::job::lease_name(id),
            &engine.owner,
            engine.lease.as_millis() as i64,
        )
        .await?)
}

/// Prints the run summary (JSON or text).
pub fn print_summary(job: &JobRecord, json: bool) -> anyhow::Result<()> {
    let summary = job.summary.clone().unwrap_or(serde_json::Value::Null);
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
        return Ok(());
    }
    let c = &summary["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    outln!("job {} {}", job.id, job.state)?;
    let counted: Vec<&str> = summary["counted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str())
        .collect();
    outln!(
        "  {}{}",
        counts_line(c),
        if counted.is_empty() {
            String::new()
        } else {
            format!("  ({})", counted.join(", "))
        }
    )?;
    for (kind, k) in summary["per_kind"].as_object().into_iter().flatten() {
        outln!("    {kind:<10} {}", counts_line(k))?;
    }
    let links = |f: &str| -> u64 {
        summary["per_kind"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, k)| k[f].as_u64().unwrap_or(0))
            .sum()
    };
    let (deferred, loaded, failed) = (
        links("relations_staged"),
        links("relations_loaded"),
        links("relations_failed"),
    );
    if deferred > 0 {
        outln!(
            "  links deferred to the relations stage {deferred}: loaded {loaded}, failed {failed}"
        )?;
    }
    let not_loaded = |k: &str| summary["not_loaded"][k].as_u64().unwrap_or(0);
    if not_loaded("pages") > 0 {
        outln!(
            "  not loaded {} records in {} pages (the run stopped before they were loaded)",
            not_loaded("records"),
            not_loaded("pages")
        )?;
    }
    if let Some(ms) = summary["duration_ms"].as_i64() {
        let secs = ms as f64 / 1000.0;
        let rate = if secs > 0.0 {
            n("extracted") as f64 / secs
        } else {
            0.0
        };
        outln!("  {secs:.1} s, {rate:.0} records/s")?;
    }
    if let Some(f) = summary["failure"].as_str() {
        outln!("  failure: {f}")?;
    }
    if let Some(a) = summary["audit_failure"].as_str() {
        outln!("  AUDIT: the target's record of this run is missing: {a}")?;
    }
    for w in summary["warnings"].as_array().into_iter().flatten() {
        outln!("  WARNING: {}", w.as_str().unwrap_or(""))?;
    }
    for r in summary["sweep"]["refused"].as_array().into_iter().flatten() {
        outln!("  sweep refused: {}", r.as_str().unwrap_or(""))?;
    }
    if let Some(s) = summary["sweep"]["skipped"].as_str() {
        outln!("  sweep: {s}")?;
    }
    print_scopes(&summary["sweep"]["scopes"])?;
    let total = summary["errors_total"].as_u64().unwrap_or(0);
    if total > 0 {
        outln!("  {total} errors; first ones:")?;
        for e in summary["first_errors"]
            .as_array()
            .into_iter()
            .flatten()
            .take(5)
        {
            outln!(
                "    {} {}: {}",
                e["kind"].as_str().unwrap_or("-"),
                e["source_id"].as_str().unwrap_or("-"),
                e["reason"].as_str().unwrap_or("")
            )?;
        }
        outln!("  (provsync status {} lists them)", job.id)?;
    }
    if job.state == JobState::Failed && summary.is_null() {
        outln!("  (no summary written)")?;
    }
    Ok(())
}

/// The outcome counts of a headline or of one kind, as one line.
fn counts_line(c: &serde_json::Value) -> String {
    [
        "extracted",
        "rejected",
        "created",
        "updated",
        "unchanged",
        "failed",
        "disconnected",
    ]
    .iter()
    .map(|k| format!("{k} {}", c[*k].as_u64().unwrap_or(0)))
    .collect::<Vec<_>>()
    .join("  ")
}

/// One line per scope: its outcome and its individuals' counts (doctors, for GMC).
fn print_scopes(scopes: &serde_json::Value) -> std::io::Result<()> {
    let scopes = scopes.as_array().map(Vec::as_slice).unwrap_or_default();
    if scopes.len() < 2
        && scopes
            .iter()
            .all(|s| s["per_kind"].as_object().is_none_or(|k| k.is_empty()))
    {
        return Ok(());
    }
    for s in scopes {
        let people = &s["per_kind"]["individual"];
        let n = |k: &str| people[k].as_u64().unwrap_or(0);
        outln!(
            "  scope {}: {}  returned {}  connected {}  moved {}  disconnected {}{}",
            s["scope"].as_str().unwrap_or("?"),
            s["outcome"].as_str().unwrap_or("?"),
            n("returned"),
            n("connected"),
            n("moved"),
            n("disconnected"),
            s["reason"]
                .as_str()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}
