//! `/v1/jobs` routes: start, get, list, abort, and a job's errors (JSON or CSV).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use provsync_core::job::{JobId, JobKind, JobSpec, JobState};
use provsync_core::store::{Dispatch, JobFilter, JobRecord, StateStore, StoreError};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Segment};
#[allow(unused_imports)] // named in the OpenAPI annotations
use super::openapi::{
    AbortAccepted, ErrorPage, JobAccepted, JobList, JobRequest, JobStatus, ReplayAccepted,
};
use super::{json, AppState};
use crate::config::Role;
use crate::job::abort::AbortOutcome;

/// Default and largest page of `GET /v1/jobs`.
pub const LIST_DEFAULT: u32 = 50;
/// Largest page of `GET /v1/jobs`.
pub const LIST_MAX: u32 = 500;
/// Default page of `GET /v1/jobs/{id}/errors`.
pub const ERRORS_DEFAULT: u32 = 100;
/// Largest page of `GET /v1/jobs/{id}/errors`.
pub const ERRORS_MAX: u32 = 1000;
/// Errors shown in a job's status.
pub const FIRST_ERRORS: u32 = 10;

type ApiResult = Result<Response, ApiError>;

/// Parses a job request body: malformed JSON, unknown fields and wrong types are
/// refused with the field's path.
pub fn parse_job_request(body: &[u8]) -> Result<JobSpec, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_eof() {
            "unexpected end of JSON"
        } else {
            "malformed JSON"
        };
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("{what} at line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::new(
            ErrorCode::InvalidValue,
            "the body must be a JSON object (a job request)",
        ));
    };
    serde_path_to_error::deserialize::<_, JobSpec>(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        serde_error(&path, message)
    })
}

/// Maps a serde error at `path` to `unknown_field` or `invalid_value`.
fn serde_error(path: &str, message: String) -> ApiError {
    let (field, problem) = crate::connector::field_of(path, &message);
    let code = match problem {
        crate::connector::Problem::Unknown => ErrorCode::UnknownField,
        _ => ErrorCode::InvalidValue,
    };
    if field.is_empty() {
        return ApiError::new(code, message);
    }
    ApiError::field(code, field, message)
}

#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    security(("bearer" = [])),
    request_body(content = JobRequest, description = "The job request", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: started, or queued behind the target's active job", body = JobAccepted,
            headers(("Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`invalid_json`, `unknown_field`, `invalid_value` or `invalid_job` (with `field` and `errors`)", body = ApiError),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than operate (`forbidden`)", body = ApiError),
        (status = 413, description = "The body is larger than 1 MiB (`payload_too_large`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `POST /v1/jobs` (operate): validates and submits a job; 202 `{job_id, state}`.
/// Relative paths in it start at the service config file's folder (the working
/// directory of a service without one).
pub async fn create(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Role::Operate)?;
    let mut spec = parse_job_request(&read_body(body)?)?;
    super::request::admit(&st, &caller, &mut spec)?;
    accepted(submit(&st, &caller, &spec).await?)
}

/// The request body, or the error for one too large or unreadable.
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {} bytes", super::BODY_LIMIT),
            )
        } else {
            ApiError::new(ErrorCode::InvalidJson, r.body_text())
        }
    })
}

/// Submits a validated job and starts it (or leaves it queued).
async fn submit(
    st: &AppState,
    caller: &Caller,
    spec: &JobSpec,
) -> Result<(JobId, JobState), ApiError> {
    // A malformed URL is left to the job's own validation (`invalid_job`).
    let well_formed = spec
        .callback_url
        .as_deref()
        .filter(|u| provsync_core::job::spec::check_callback_url(u).is_ok());
    if let Some(url) = well_formed {
        crate::callback::address::admit(&st.callbacks, url)
            .await
            .map_err(|r| ApiError::field(ErrorCode::InvalidValue, "callback_url", r.why))?;
    }
    let (id, how) = st
        .engine
        .submit(spec, &format!("api:{}", caller.name))
        .await
        .map_err(ApiError::engine)?;
    let state = match how {
        Dispatch::Started => {
            st.runner.spawn(id.clone());
            JobState::Running
        }
        // The finish stage of the job ahead starts it; the runner then picks it up.
        Dispatch::Queued => JobState::Queued,
    };
    Ok((id, state))
}

/// 202 `{job_id, state}` with the job's status URL in `Location`.
fn accepted((id, state): (JobId, JobState)) -> ApiResult {
    let mut resp = json(StatusCode::ACCEPTED, json!({"job_id": id, "state": state}));
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[utoipa::path(
    post,
    path = "/v1/codes-sync",
    tag = "jobs",
    security(("bearer" = [])),
    request_body(content = JobRequest, description = "A job request; `kind` is codes-sync (or absent)", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: started, or queued behind the target's active job", body = JobAccepted),
        (status = 400, description = "`invalid_json`, `unknown_field`, `invalid_value` (e.g. `kind` other than codes-sync) or `invalid_job`", body = ApiError),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than operate (`forbidden`)", body = ApiError),
        (status = 413, description = "The body is larger than 1 MiB (`payload_too_large`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `POST /v1/codes-sync` (operate): a codes-sync job (code lists into the target's
/// code tables or picklists; other records of the source are left out).
pub async fn codes_sync(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Role::Operate)?;
    let body = read_body(body)?;
    let mut spec = parse_job_request(&body)?;
    super::request::admit(&st, &caller, &mut spec)?;
    // The kind as the caller wrote it (JobSpec defaults an absent one).
    let explicit = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("kind").cloned());
    match explicit.as_ref().and_then(Value::as_str) {
        None | Some("codes-sync") => spec.kind = JobKind::CodesSync,
        Some(other) => {
            return Err(ApiError::field(
                ErrorCode::InvalidValue,
                "kind",
                format!("this route starts codes-sync jobs, not {other:?}"),
            ))
        }
    }
    accepted(submit(&st, &caller, &spec).await?)
}

/// Each scope's outcome and counts, from the run summary (none before the end).
pub fn scopes_of(job: &provsync_core::store::JobRecord) -> Value {
    job.summary
        .as_ref()
        .and_then(|s| s.pointer("/sweep/scopes"))
        .cloned()
        .unwrap_or_else(|| json!([]))
}

/// The named connections a job runs over (`null` for a section written out).
pub fn connections_of(spec: &JobSpec) -> Value {
    json!({"source": spec.source.connection, "target": spec.target.connection})
}

/// Milliseconds from start to end of a job that ended.
fn duration_ms(job: &JobRecord) -> Option<i64> {
    match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => Some((f - s).num_milliseconds()),
        _ => None,
    }
}

/// Why the target's own record of a finished run (Salesforce: IntegrationJobRun)
/// could not be written, as its summary says.
pub fn audit_failure(job: &JobRecord) -> Option<&str> {
    job.summary.as_ref()?.get("audit_failure")?.as_str()
}

/// What a finished run wants an operator to look at although nothing failed (an
/// empty snapshot), as its summary says.
pub fn warnings(job: &JobRecord) -> Vec<&str> {
    job.summary
        .as_ref()
        .and_then(|s| s.get("warnings"))
        .and_then(|w| w.as_array())
        .map(|w| w.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

/// A job's status: state, stage, counts, per-scope outcomes, failure, errors
/// summary, transitions, timings.
pub async fn status_view(st: &AppState, id: &JobId) -> Result<Value, ApiError> {
    let store = &st.engine.store;
    let job = store.job(id).await.map_err(ApiError::store)?;
    let (headline, per_kind) = crate::job::counts::of_job(store.as_ref(), &job)
        .await
        .map_err(ApiError::store)?;
    let first = store
        .errors(id, 0, FIRST_ERRORS)
        .await
        .map_err(ApiError::store)?;
    let total = store.error_count(id).await.map_err(ApiError::store)?;
    let transitions = store.transitions(id).await.map_err(ApiError::store)?;
    let callbacks = store.callbacks(id).await.map_err(ApiError::store)?;
    Ok(json!({
        "job_id": job.id,
        "state": job.state,
        "stage": job.stage,
        "kind": job.spec.kind,
        "mode": job.spec.mode,
        "target": job.target,
        "connections": connections_of(&job.spec),
        "requested_by": job.requested_by,
        "failure": job.failure,
        "audit_failure": audit_failure(&job),
        "warnings": warnings(&job),
        "note": job.note,
        "abort_requested": job.abort_requested,
        "counts": {"total": headline, "per_kind": per_kind},
        "scopes": scopes_of(&job),
        "errors": {"total": total, "first": first},
        "transitions": transitions,
        "callbacks": callbacks,
        "timings": {
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "duration_ms": duration_ms(&job),
        },
    }))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job's status", body = JobStatus),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError),
        (status = 404, description = "No such job (`job_not_found`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `GET /v1/jobs/{id}` (read).
pub async fn get_job(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment,
) -> ApiResult {
    caller.require(Role::Read)?;
    let view = status_view(&st, &JobId::from(id.as_str())).await?;
    Ok(json(StatusCode::OK, view))
}

/// A page of jobs, newest first, as `GET /v1/jobs` and `provsync jobs --json`
/// show it: `{jobs, limit, offset}`, each job with its timings and total counts.
pub async fn list_view(store: &dyn StateStore, filter: &JobFilter) -> Result<Value, StoreError> {
    let jobs = store.list_jobs(filter).await?;
    let mut items = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let (counts, _) = crate::job::counts::of_job(store, job).await?;
        items.push(json!({
            "job_id": job.id,
            "state": job.state,
            "stage": job.stage,
            "kind": job.spec.kind,
            "target": job.target,
            "connections": connections_of(&job.spec),
            "requested_by": job.requested_by,
            "failure": job.failure,
            "audit_failure": audit_failure(job),
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "duration_ms": duration_ms(job),
            "counts": counts,
        }));
    }
    Ok(json!({"jobs": items, "limit": filter.limit, "offset": filter.offset}))
}

/// Checks that only `allowed` parameters are present.
fn only_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    let mut keys: Vec<&String> = q.keys().collect();
    keys.sort();
    for k in keys {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::param(
                k,
                format!("unknown parameter; expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn paging(q: &HashMap<String, String>, default: u32, max: u32) -> Result<(u32, u32), ApiError> {
    let limit = match q.get("limit") {
        None => default,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::param("limit", format!("expected 1..={max}, got {v:?}")))?,
    };
    let offset = match q.get("offset") {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| {
            ApiError::param(
                "offset",
                format!("expected a non-negative integer, got {v:?}"),
            )
        })?,
    };
    Ok((limit, offset))
}

fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|r| ApiError::new(ErrorCode::InvalidParameter, r.body_text()))
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    security(("bearer" = [])),
    params(
        ("state" = Option<super::openapi::JobState>, Query, description = "Only jobs in this state"),
        ("target" = Option<String>, Query, description = "Only jobs of this target"),
        ("since" = Option<String>, Query, format = DateTime, description = "Only jobs created at or after this RFC 3339 time"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("offset" = Option<u32>, Query, description = "Jobs to skip (default 0)")
    ),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobList),
        (status = 400, description = "Unknown or malformed parameter (`invalid_parameter`, with `field`)", body = ApiError),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `GET /v1/jobs` (read): filters `state`, `target`, `since`; paging `limit`, `offset`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    caller.require(Role::Read)?;
    let q = query(q)?;
    only_params(&q, &["state", "target", "since", "limit", "offset"])?;
    let (limit, offset) = paging(&q, LIST_DEFAULT, LIST_MAX)?;
    let state = match q.get("state") {
        None => None,
        Some(v) => Some(JobState::parse(v).ok_or_else(|| {
            ApiError::param(
                "state",
                format!(
                    "unknown state {v:?}; expected accepted, queued, running, aborting, \
                     finishing, completed, completed_with_errors, failed or aborted"
                ),
            )
        })?),
    };
    let target = match q.get("target") {
        Some(t) if t.trim().is_empty() => {
            return Err(ApiError::param("target", "must not be empty"))
        }
        other => other.cloned(),
    };
    let since = match q.get("since") {
        None => None,
        Some(v) => Some(
            chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|e| {
                    ApiError::param(
                        "since",
                        format!(
                            "expected an RFC 3339 time like 2025-01-31T00:00:00Z, got {v:?}: {e}"
                        ),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let filter = JobFilter {
        state,
        target,
        since,
        limit,
        offset,
    };
    let view = list_view(st.engine.store.as_ref(), &filter)
        .await
        .map_err(ApiError::store)?;
    Ok(json(StatusCode::OK, view))
}

#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/abort",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Abort accepted", body = AbortAccepted),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than operate (`forbidden`)", body = ApiError),
        (status = 404, description = "No such job (`job_not_found`)", body = ApiError),
        (status = 409, description = "The job has already ended (`job_finished`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `POST /v1/jobs/{id}/abort` (operate): 202 `{job_id, outcome}`; 409 when it ended.
pub async fn abort(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment,
) -> ApiResult {
    caller.require(Role::Operate)?;
    let id = JobId::from(id.as_str());
    let outcome = st.engine.abort(&id).await.map_err(ApiError::engine)?;
    let outcome = match outcome {
        AbortOutcome::Cancelled => "cancelled",
        AbortOutcome::Aborting => "aborting",
        AbortOutcome::TooLate(state) => {
            return Err(ApiError::new(
                ErrorCode::JobFinished,
                format!("job {id} is {state}: nothing to abort"),
            ))
        }
    };
    tracing::info!(job = %id, outcome, by = %caller.name, "abort requested");
    Ok(json(
        StatusCode::ACCEPTED,
        json!({"job_id": id, "outcome": outcome}),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/replay",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The ended run whose rejected and failed records are re-run")),
    responses(
        (status = 202, description = "A new delta job re-running only that run's failed source ids", body = ReplayAccepted),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than operate (`forbidden`)", body = ApiError),
        (status = 404, description = "No such job (`job_not_found`)", body = ApiError),
        (status = 409, description = "The run has not ended (`job_not_finished`) or failed no record (`nothing_to_replay`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `POST /v1/jobs/{id}/replay` (operate): a new delta job for that run's rejected
/// and failed source ids only (fix the feed, then replay).
pub async fn replay(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment,
) -> ApiResult {
    caller.require(Role::Operate)?;
    let earlier = JobId::from(id.as_str());
    let store = &st.engine.store;
    let job = store.job(&earlier).await.map_err(ApiError::store)?;
    if !job.state.is_terminal() {
        return Err(ApiError::new(
            ErrorCode::JobNotFinished,
            format!(
                "job {earlier} is {}: replay it once it has ended",
                job.state
            ),
        ));
    }
    let failed = store
        .errors(&earlier, 0, 1_000)
        .await
        .map_err(ApiError::store)?
        .iter()
        .any(|e| e.source_id.is_some());
    if !failed {
        return Err(ApiError::new(
            ErrorCode::NothingToReplay,
            format!("job {earlier} rejected or failed no identified record"),
        ));
    }
    super::request::admit_again(&st, &caller, &job.spec)?;
    let mut spec = job.spec.clone();
    spec.mode = provsync_core::job::Mode::Delta;
    spec.replay_of = Some(earlier.clone());
    let (id, state) = submit(&st, &caller, &spec).await?;
    tracing::info!(job = %id, replay_of = %earlier, by = %caller.name, "replay submitted");
    Ok(json(
        StatusCode::ACCEPTED,
        json!({"job_id": id, "state": state, "replay_of": earlier}),
    ))
}

/// A CSV cell a spreadsheet shows as text rather than runs as a formula: source
/// ids and reasons come from the feed, so a cell starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return gets a leading `'` (OWASP, CSV injection).
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/csv"))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/errors",
    tag = "jobs",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Job id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("offset" = Option<u32>, Query, description = "Errors to skip (default 0)"),
        ("Accept" = Option<String>, Header, description = "`text/csv` for CSV (columns page_no, stage, kind, source_id, reason)")
    ),
    responses(
        (status = 200, description = "A page of the job's errors; with `Accept: text/csv` a CSV with an `x-total-count` header",
            content((ErrorPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Unknown or malformed parameter (`invalid_parameter`, with `field`)", body = ApiError),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError),
        (status = 404, description = "No such job (`job_not_found`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `GET /v1/jobs/{id}/errors` (read): a page of a job's errors, JSON or CSV
/// (`Accept: text/csv`).
pub async fn errors(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Segment(id): Segment,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    caller.require(Role::Read)?;
    let q = query(q)?;
    only_params(&q, &["limit", "offset"])?;
    let (limit, offset) = paging(&q, ERRORS_DEFAULT, ERRORS_MAX)?;
    let id = JobId::from(id.as_str());
    let store = &st.engine.store;
    store.job(&id).await.map_err(ApiError::store)?;
    let total = store.error_count(&id).await.map_err(ApiError::store)?;
    let page = store
        .errors(&id, offset, limit)
        .await
        .map_err(ApiError::store)?;
    if !wants_csv(&headers) {
        return Ok(json(
            StatusCode::OK,
            json!({
                "job_id": id,
                "total": total,
                "offset": offset,
                "limit": limit,
                "errors": page,
            }),
        ));
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::new(ErrorCode::Internal, format!("csv: {e}"));
    w.write_record(["page_no", "stage", "kind", "source_id", "reason"])
        .map_err(internal)?;
    for e in &page {
        let page_no = e.page_no.map(|p| p.to_string()).unwrap_or_default();
        w.write_record(
            [
                page_no.as_str(),
                e.stage.as_str(),
                e.kind.map(|k| k.as_str()).unwrap_or(""),
                e.source_id.as_deref().unwrap_or(""),
                e.reason.as_str(),
            ]
            .map(|cell| spreadsheet_safe(cell).into_owned()),
        )
        .map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("csv: {e}")))?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        h.insert("x-total-count", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_escaped() {
        for (cell, shown) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1", "'+1"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("WUSM0001", "WUSM0001"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), shown);
        }
    }

    fn err(body: &str) -> ApiError {
        parse_job_request(body.as_bytes()).unwrap_err()
    }

    const OK: &str = r#"{"source":{"type":"file","path":"w.ndjson"},"target":{"type":"sqlite","url":"sqlite://t.db"}}"#;

    #[test]
    fn a_valid_request_parses_and_keeps_its_callback_url() {
        let mut v: Value = serde_json::from_str(OK).unwrap();
        v["callback_url"] = json!("http://x/cb");
        let spec = parse_job_request(v.to_string().as_bytes()).unwrap();
        assert_eq!(spec.source.kind, "file");
        assert_eq!(spec.callback_url.as_deref(), Some("http://x/cb"));
        v["callback_url"] = json!(7);
        let e = err(&v.to_string());
        assert_eq!(e.field.as_deref(), Some("callback_url"), "{e:?}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = err("{\n  \"source\": ,\n}");
        assert_eq!(e.code, ErrorCode::InvalidJson);
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let mut v: Value = serde_json::from_str(OK).unwrap();
        v["options"] = json!({"max_fail": 3});
        let e = err(&v.to_string());
        assert_eq!(e.code, ErrorCode::UnknownField);
        assert_eq!(e.field.as_deref(), Some("options.max_fail"), "{e:?}");
        let mut v: Value = serde_json::from_str(OK).unwrap();
        v["colour"] = json!("red");
        let e = err(&v.to_string());
        assert_eq!(e.code, ErrorCode::UnknownField);
        assert_eq!(e.field.as_deref(), Some("colour"), "{e:?}");
    }

    #[test]
    fn wrong_types_and_missing_fields_name_the_field() {
        let mut v: Value = serde_json::from_str(OK).unwrap();
        v["options"] = json!({"page_size": "big"});
        let e = err(&v.to_string());
        assert_eq!(e.code, ErrorCode::InvalidValue);
        assert_eq!(e.field.as_deref(), Some("options.page_size"), "{e:?}");
        let e = err(r#"{"source":{"type":"file"}}"#);
        assert_eq!(e.field.as_deref(), Some("target"), "{e:?}");
        assert_eq!(err("[1]").code, ErrorCode::InvalidValue);
    }
}
