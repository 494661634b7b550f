//! `/v1/schedules` and `/v1/admin/sync/{schedule}`: the configured schedules with
//! their recent runs, and the manual trigger (GMC's "run the nightly sync now").

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use chrono::Utc;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, Segment};
#[allow(unused_imports)] // named in the OpenAPI annotations
use super::openapi::{ScheduleList, TriggerAccepted};
use super::{json, AppState};
use crate::config::Role;
use crate::schedule::Triggered;

/// Runs shown per schedule.
const RECENT_RUNS: u32 = 10;

#[utoipa::path(
    get,
    path = "/v1/schedules",
    operation_id = "list_schedules",
    tag = "schedules",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The configured schedules, next tick and latest runs", body = ScheduleList),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `GET /v1/schedules` (read).
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for s in st.scheduler.schedules() {
        let runs = st
            .engine
            .store
            .schedule_runs(&s.name, RECENT_RUNS)
            .await
            .map_err(ApiError::store)?;
        out.push(json!({
            "name": s.name,
            "cron": s.pattern,
            "timezone": s.offset.to_string(),
            "enabled": s.enabled,
            "after": s.after,
            "next_at": if s.enabled { s.next_after(now) } else { None },
            "kind": s.spec.kind,
            "target": s.target,
            "runs": runs.iter().map(|r| json!({
                "fired_by": r.fired_by,
                "tick_at": r.tick_at,
                "job_id": r.job_id,
                "after_job": r.after_job,
                "outcome": r.outcome,
                "note": r.note,
            })).collect::<Vec<Value>>(),
        }));
    }
    Ok(json(StatusCode::OK, json!({ "schedules": out })))
}

#[utoipa::path(
    post,
    path = "/v1/admin/sync/{schedule}",
    operation_id = "trigger_schedule",
    tag = "schedules",
    security(("bearer" = [])),
    params(("schedule" = String, Path, description = "A configured schedule's name")),
    responses(
        (status = 202, description = "The schedule's job was started (or waits for the run it depends on)", body = TriggerAccepted,
            headers(("Location" = String, description = "The job's status URL"))),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than admin (`forbidden`)", body = ApiError),
        (status = 404, description = "No such schedule (`schedule_not_found`)", body = ApiError),
        (status = 409, description = "The schedule's previous job is still active (`schedule_running`, its id in `job_id`)", body = ApiError),
        (status = 500, description = "Failure on our side (`internal`)", body = ApiError)
    )
)]
/// `POST /v1/admin/sync/{schedule}` (admin): runs a schedule's job now.
pub async fn trigger(
    State(st): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Segment(name): Segment,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let Some(schedule) = st.scheduler.get(&name) else {
        let known: Vec<&str> = st
            .scheduler
            .schedules()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        return Err(ApiError::new(
            ErrorCode::ScheduleNotFound,
            format!(
                "no schedule {name:?} is configured (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let by = format!("api:{} (schedule:{})", caller.name, schedule.name);
    match st
        .scheduler
        .trigger(schedule, &by)
        .await
        .map_err(ApiError::engine)?
    {
        Triggered::Started {
            job,
            state,
            after_job,
        } => {
            let mut resp = json(
                StatusCode::ACCEPTED,
                json!({
                    "job_id": job,
                    "state": state,
                    "schedule": schedule.name,
                    "after_job": after_job,
                }),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{job}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Triggered::AlreadyRunning(job) => {
            let mut e = ApiError::new(
                ErrorCode::ScheduleRunning,
                format!(
                    "schedule {} already has job {job} running; try again when it has ended",
                    schedule.name
                ),
            );
            e.job_id = Some(job.to_string());
            Err(e)
        }
    }
}
