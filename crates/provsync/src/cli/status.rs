//! `provsync status`, `provsync jobs` and `provsync abort`: read and flag jobs in
//! an existing store (none is created to answer "not found").

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobId, JobState};
use provsync_core::store::{JobFilter, StateStore};

use super::out::outln;
use crate::api::jobs::{list_view, LIST_DEFAULT, LIST_MAX};
use crate::job::abort::AbortOutcome;
use crate::job::Engine;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Job id.
    pub job_id: String,
    /// State store URL.
    #[arg(long, env = "PROVSYNC_STATE", default_value_t = crate::paths::default_state_url())]
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
    #[arg(long, env = "PROVSYNC_STATE", default_value_t = crate::paths::default_state_url())]
    pub state: String,
}

/// Arguments of `jobs`: the filters and paging of `GET /v1/jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// State store URL.
    #[arg(long, env = "PROVSYNC_STATE", default_value_t = crate::paths::default_state_url())]
    pub state: String,
    /// Only jobs in this state (accepted, queued, running, aborting, finishing,
    /// completed, completed_with_errors, failed, aborted).
    #[arg(long, value_parser = parse_state)]
    pub state_filter: Option<JobState>,
    /// Only jobs of this target (its dispatch name, as listed).
    #[arg(long)]
    pub target: Option<String>,
    /// Only jobs created at or after this RFC 3339 time (2025-01-31T00:00:00Z).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Jobs shown, newest first.
    #[arg(long, default_value_t = LIST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(LIST_MAX)))]
    pub limit: u32,
    /// Jobs skipped.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Print JSON (the body `GET /v1/jobs` answers).
    #[arg(long)]
    pub json: bool,
}

fn parse_state(v: &str) -> Result<JobState, String> {
    JobState::parse(v).ok_or_else(|| format!("unknown state {v:?}"))
}

/// Opens the store at `url` if it exists.
async fn existing_store(url: &str) -> anyhow::Result<Arc<dyn StateStore>> {
    crate::store::open_existing(url)
        .await
        .with_context(|| format!("opening state store {}", crate::secret::redact_urls(url)))
}

/// Prints a job's state, stage, counts and first errors.
pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = existing_store(&a.state).await?;
    let id = JobId::from(a.job_id.as_str());
    let job = store.job(&id).await?;
    let (headline, per_kind) = crate::job::counts::of_job(store.as_ref(), &job).await?;
    let errors = store.errors(&id, 0, 10).await?;
    let error_count = store.error_count(&id).await?;
    let transitions = store.transitions(&id).await?;
    let audit_failure = crate::api::jobs::audit_failure(&job);
    if a.json {
        let out = serde_json::json!({
            "job_id": job.id,
            "state": job.state,
            "stage": job.stage,
            "target": job.target,
            "failure": job.failure,
            "audit_failure": audit_failure,
            "warnings": crate::api::jobs::warnings(&job),
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
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        outln!("job      {}", job.id)?;
        outln!("state    {} (stage {})", job.state, job.stage.as_str())?;
        outln!("target   {}", job.target)?;
        if let Some(f) = &job.failure {
            outln!("failure  {f}")?;
        }
        if let Some(a) = audit_failure {
            outln!("AUDIT    the target's record of this run is missing: {a}")?;
        }
        for w in crate::api::jobs::warnings(&job) {
            outln!("WARNING  {w}")?;
        }
        if let Some(n) = &job.note {
            outln!("note     {n}")?;
        }
        let c = headline;
        outln!(
            "counts   extracted {} rejected {} created {} updated {} unchanged {} failed {} disconnected {}",
            c.extracted, c.rejected, c.created, c.updated, c.unchanged, c.failed, c.disconnected
        )?;
        let unreadable = (per_kind.unreadable != Default::default())
            .then_some(("unreadable", &per_kind.unreadable));
        let kinds = per_kind.kinds.iter().map(|(k, c)| (k.as_str(), c));
        for (kind, c) in kinds.chain(unreadable) {
            outln!(
                "  {:<10} extracted {} rejected {} created {} updated {} unchanged {} failed {} disconnected {}",
                kind, c.extracted, c.rejected, c.created, c.updated, c.unchanged, c.failed,
                c.disconnected
            )?;
        }
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
    let store = existing_store(&a.state).await?;
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

/// Lists jobs, newest first: a table, or with `--json` the API's page.
pub async fn jobs(a: JobsArgs) -> anyhow::Result<ExitCode> {
    let store = existing_store(&a.state).await?;
    let filter = JobFilter {
        state: a.state_filter,
        target: a.target,
        since: a.since.map(|t| t.with_timezone(&chrono::Utc)),
        limit: a.limit,
        offset: a.offset,
    };
    let page = list_view(store.as_ref(), &filter).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&page)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = page["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if jobs.is_empty() {
        outln!("no jobs")?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{}", jobs_table(jobs).trim_end_matches('\n'))?;
    Ok(ExitCode::SUCCESS)
}

/// Headline counts of the table, in the summary's order.
const TABLE_COUNTS: [&str; 6] = [
    "extracted",
    "created",
    "updated",
    "unchanged",
    "failed",
    "disconnected",
];

/// One row per job of a `list_view` page, columns aligned.
fn jobs_table(jobs: &[serde_json::Value]) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let mut rows = vec![["ID", "KIND", "TARGET", "STATE", "STARTED", "DURATION"]
        .iter()
        .map(|h| (*h).to_owned())
        .chain(TABLE_COUNTS.iter().map(|c| c.to_uppercase()))
        .collect::<Vec<_>>()];
    for j in jobs {
        let started = j["started_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(
                || "-".to_owned(),
                |t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M:%SZ")
                        .to_string()
                },
            );
        let duration = j["duration_ms"]
            .as_i64()
            .map_or_else(|| "-".to_owned(), duration);
        let mut row = vec![
            text(&j["job_id"]),
            text(&j["kind"]),
            text(&j["target"]),
            text(&j["state"]),
            started,
            duration,
        ];
        row.extend(
            TABLE_COUNTS
                .iter()
                .map(|c| j["counts"][c].as_u64().unwrap_or(0).to_string()),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                // Numbers (the counts) align right.
                if i >= 6 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 07 min`.
fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match ms {
        ..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_620_000), "2 h 07 min");
    }

    #[test]
    fn the_table_aligns_columns_and_right_aligns_counts() {
        let jobs = [
            serde_json::json!({"job_id": "a", "kind": "provider-sync", "target": "t",
                "state": "completed", "started_at": "2025-01-31T02:00:00Z",
                "duration_ms": 1500, "counts": {"extracted": 120, "created": 120}}),
            serde_json::json!({"job_id": "bb", "kind": "codes-sync", "target": "t2",
                "state": "running", "started_at": null, "duration_ms": null,
                "counts": {"extracted": 5}}),
        ];
        let t = jobs_table(&jobs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  KIND"), "{t}");
        assert!(lines[1].contains("2025-01-31 02:00:00Z  1.5 s"), "{t}");
        assert!(lines[2].contains("running    -"), "{t}");
        // Counts are right-aligned: every row ends in the same column.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{t}");
    }
}
