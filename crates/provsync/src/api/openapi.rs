//! The OpenAPI 3 document served at `GET /openapi.json`, generated with utoipa from
//! the handlers' `#[utoipa::path]` annotations and the schema types below.
//!
//! The handlers build their JSON bodies with `serde_json::json!`, and the job
//! request is `provsync_core::job::JobSpec` (the core crate stays free of web
//! dependencies), so the bodies are described by the mirror types of this module.
//! The API tests check the document against the live routes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ApiError, ErrorCode, FieldError};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "provsync",
        description = "provsync: provider master data sync engine. Every route but \
                       /healthz, /readyz and /openapi.json needs a bearer token; tokens \
                       have roles (read < operate < admin)."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        openapi_json,
        super::jobs::create,
        super::jobs::list,
        super::jobs::get_job,
        super::jobs::abort,
        super::jobs::replay,
        super::jobs::codes_sync,
        super::jobs::errors,
        super::schedules::list,
        super::schedules::trigger,
        super::connections::list,
    ),
    components(schemas(
        ApiError,
        ErrorCode,
        FieldError,
        JobRequest,
        SourceRef,
        TargetRef,
        JobConnections,
        ConnectionList,
        ConnectionView,
        JobKind,
        Mode,
        crate::source::SourceConfig,
        crate::target::TargetConfig,
        JobOptions,
        Threshold,
        JobState,
        Stage,
        JobAccepted,
        JobStatus,
        StatusCounts,
        Counts,
        ErrorsSummary,
        ScopeStatus,
        ScopeOutcome,
        ScopeCounts,
        ErrorEntry,
        Transition,
        Timings,
        JobList,
        JobListItem,
        AbortAccepted,
        AbortOutcome,
        ErrorPage,
        Health,
        CallbackState,
        ScheduleList,
        ScheduleView,
        ScheduleRunView,
        TriggerAccepted,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Start, inspect, list and abort jobs; read their errors"),
        (name = "schedules", description = "Configured schedules, their runs, and manual triggers"),
        (name = "ops", description = "Health, readiness, metrics and this document")
    )
)]
pub struct ApiDoc;

/// Adds `components.securitySchemes.bearer`, and to every operation that takes a
/// token the 429 its client's address gets once it has presented too many wrong
/// ones (see `api::throttle`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{header::HeaderBuilder, ContentBuilder, Ref, ResponseBuilder, Type};
        let throttled = ResponseBuilder::new()
            .description(
                "Too many refused tokens from this address (`too_many_requests`); the \
                 token was not checked",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::schema::Object::with_type(Type::Integer))
                    .description(Some("Seconds until the address may try again"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            .filter(|op| op.security.is_some())
            {
                op.responses
                    .responses
                    .insert("429".to_owned(), throttled.clone().into());
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A configured token (stored as its SHA-256) with role read, operate or admin",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json` (no token).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "This OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    Json(document()).into_response()
}

// ---- request mirror ----

/// A job request: `provsync_core::job::JobSpec` plus the optional `callback_url`.
/// Unknown fields are refused (`unknown_field`). The source and target name
/// connections the service configures (`GET /v1/connections`). Where the service
/// allows it (`[api] free_form_connectors`, `admin` tokens only), they may be
/// written out in full instead; relative file paths in them start at the folder of
/// the service's configuration file, and must lie in its `[api] data_folders`.
/// A job file (`provsync run job.toml`) has the same keys and writes its source and
/// target out in full.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Provider sync or codes sync.
    #[schema(default = "provider-sync")]
    #[serde(default)]
    pub kind: JobKind,
    /// Full snapshot (absent records are swept) or delta.
    #[schema(default = "full")]
    #[serde(default)]
    pub mode: Mode,
    /// Partitions (ISO 3166-1 alpha-2 countries, GMC designated bodies); empty means
    /// all the source has.
    #[schema(example = json!(["US"]))]
    #[serde(default)]
    pub scope: Vec<String>,
    /// Where the data comes from: a source connection's name, or the connector
    /// written out in full (`type` picks it, its keys follow).
    #[schema(value_type = SourceRef)]
    pub source: serde_json::Value,
    /// Where it goes: a target connection's name, or the connector written out in
    /// full.
    #[schema(value_type = TargetRef)]
    pub target: serde_json::Value,
    /// Over the API: the name of a mapping in the service's `[api] mappings` folder
    /// (`lsc-custom` reads `lsc-custom.toml`). In a job file: its path (relative to
    /// the job file). The target's default mapping when absent.
    pub mapping: Option<String>,
    /// Tuning and safety options.
    #[serde(default)]
    pub options: JobOptions,
    /// `http(s)://` URL that receives `job.accepted` and `job.finished` POSTs, signed
    /// with HMAC-SHA256 (`X-Provsync-Signature`), retried with backoff.
    #[schema(example = "https://crm.example/hooks/provsync")]
    pub callback_url: Option<String>,
    /// Re-run only the records this earlier run rejected or failed (mode must be `delta`).
    pub replay_of: Option<String>,
}

/// A job's source: a configured connection's name or a full section.
pub struct SourceRef;

impl utoipa::PartialSchema for SourceRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::connector::named_or_full("source", "Source")
    }
}

impl ToSchema for SourceRef {}

/// A job's target: a configured connection's name or a full section.
pub struct TargetRef;

impl utoipa::PartialSchema for TargetRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::connector::named_or_full("target", "Target")
    }
}

impl ToSchema for TargetRef {}

/// The connections a job ran over (`null`: written out in full).
#[derive(Serialize, ToSchema)]
pub struct JobConnections {
    /// The source connection's name.
    pub source: Option<String>,
    /// The target connection's name.
    pub target: Option<String>,
}

/// `GET /v1/connections`.
#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub sources: Vec<ConnectionView>,
    pub targets: Vec<ConnectionView>,
}

/// A configured connection, without its secrets or their references.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    /// What a job request names.
    pub name: String,
    /// The connector type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it points: `url`, `path`, `login_url`, `instance_url`, `schema`,
    /// `scope`, `api_version`, those it has.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Targets: the name jobs on it queue under (one runs at a time).
    pub queue: Option<String>,
}

/// What a job does.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Entities, then their relations.
    ProviderSync,
    /// Code lists into target picklists.
    CodesSync,
}

/// Full snapshot or delta.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A complete snapshot of the scope.
    Full,
    /// Changes since a watermark.
    Delta,
}

/// Tuning and safety options (every field optional).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Above this many rejected or failed records the run ends `failed`.
    #[serde(default)]
    pub max_failed_records: Threshold,
    /// Share (0..=1) of a scope's records a full snapshot may disconnect.
    #[schema(default = 0.1, minimum = 0.0, maximum = 1.0)]
    #[serde(default)]
    pub max_disconnect_share: f64,
    /// Lifts the guards against an empty scope and a mass disconnect.
    #[schema(default = false)]
    #[serde(default)]
    pub allow_mass_disconnect: bool,
    /// Records per page the source is asked for.
    #[schema(default = 2500, minimum = 1, maximum = 100000)]
    #[serde(default)]
    pub page_size: u64,
    /// Records per target write.
    #[schema(default = 1000, minimum = 1)]
    #[serde(default)]
    pub batch_size: u64,
    /// Pages loaded at once.
    #[schema(default = 2, minimum = 1)]
    #[serde(default)]
    pub load_workers: u64,
}

/// A record count, or a share of the extracted records like `"5%"` (default `"5%"`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Threshold {
    /// At most this many records.
    Count(u64),
    /// At most this percentage, e.g. `"5%"`.
    Percent(String),
}

// ---- response mirrors ----

/// Where a job is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Accepted,
    Queued,
    Running,
    Finishing,
    Aborting,
    Completed,
    CompletedWithErrors,
    Failed,
    Aborted,
}

/// The stage a job is in.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Pending,
    Extract,
    Relations,
    /// Waiting for the target's API budget to reset; resumes by itself (see `note`).
    Parked,
    Finish,
    Done,
}

/// `202` of `POST /v1/jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobAccepted {
    /// The new job's id.
    pub job_id: String,
    /// `running`, or `queued` behind the target's active job.
    pub state: JobState,
}

/// Outcome counts as the target's own change log records them: every extracted
/// record ends in exactly one of rejected, created, updated, unchanged, failed
/// (links as entities; a link deferred to the relations stage is pending until it
/// is booked there).
#[derive(Serialize, ToSchema)]
pub struct Counts {
    pub extracted: u64,
    pub rejected: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub disconnected: u64,
    /// Links deferred to the relations stage (an end was not loaded yet).
    pub relations_staged: u64,
    /// Deferred links the relations stage loaded (also in created/updated/unchanged).
    pub relations_loaded: u64,
    /// Deferred links the relations stage could not load (also in failed).
    pub relations_failed: u64,
    /// Records written that were new or disconnected before (a subset, not a bucket).
    pub connected: u64,
    /// Records written whose scope changed, e.g. a doctor moving to another
    /// designated body (a subset, not a bucket).
    pub moved: u64,
}

/// The headline and the counts per entity kind.
#[derive(Serialize, ToSchema)]
pub struct StatusCounts {
    /// The headline, in the source's terms: each source record once (GMC: doctors,
    /// not their connections and designated bodies; other sources: every kind).
    pub total: Counts,
    /// Keyed by entity kind (`individual`, `workplace`, `activity`, `relation`, `code`).
    pub per_kind: BTreeMap<String, Counts>,
}

/// One rejected or failed record.
#[derive(Serialize, ToSchema)]
pub struct ErrorEntry {
    /// Page it came from (`null` for finish-stage errors).
    pub page_no: Option<u64>,
    /// `transform`, `load`, `relations` or `finish`.
    pub stage: String,
    /// Entity kind, when known.
    pub kind: Option<String>,
    /// Source id, when known.
    pub source_id: Option<String>,
    /// Why, naming the field or reference at fault.
    pub reason: String,
}

/// The errors of a job in its status.
#[derive(Serialize, ToSchema)]
pub struct ErrorsSummary {
    pub total: u64,
    /// The first few (see `GET /v1/jobs/{id}/errors` for all).
    pub first: Vec<ErrorEntry>,
}

/// A state change.
#[derive(Serialize, ToSchema)]
pub struct Transition {
    pub from: JobState,
    pub to: JobState,
    /// RFC 3339.
    pub at: String,
    pub reason: Option<String>,
}

/// When a job was accepted, started, finished.
#[derive(Serialize, ToSchema)]
pub struct Timings {
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

/// `GET /v1/jobs/{id}`.
#[derive(Serialize, ToSchema)]
pub struct JobStatus {
    pub job_id: String,
    pub state: JobState,
    pub stage: Stage,
    pub kind: JobKind,
    pub mode: Mode,
    /// Target dispatch name.
    pub target: String,
    /// The named connections the job runs over.
    pub connections: JobConnections,
    pub requested_by: String,
    pub failure: Option<String>,
    /// Set when the target's own record of the finished run (Salesforce:
    /// IntegrationJobRun) could not be written: why. A run that would have completed
    /// ends `completed_with_errors`.
    pub audit_failure: Option<String>,
    /// What a finished run wants an operator to look at although nothing failed
    /// (a full snapshot with no records).
    pub warnings: Vec<String>,
    /// Why a running job is waiting (e.g. parked on a spent Salesforce API budget),
    /// whichever process runs it; `null` once it resumes or ends.
    pub note: Option<String>,
    pub abort_requested: bool,
    pub counts: StatusCounts,
    /// Each scope of a finished full run (each GMC designated body): its outcome
    /// and counts. Empty until the run finishes.
    pub scopes: Vec<ScopeStatus>,
    pub errors: ErrorsSummary,
    pub transitions: Vec<Transition>,
    /// Delivery state of the job's callbacks (empty without `callback_url`).
    pub callbacks: Vec<CallbackState>,
    pub timings: Timings,
}

/// What happened to one scope of a run.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeOutcome {
    /// Complete snapshot: records it no longer has were disconnected.
    Swept,
    /// The snapshot had none of its records: nobody was disconnected.
    EmptyNoSweep,
    /// The source could not deliver it (see `reason`): nobody was disconnected.
    Failed,
    /// It would lose more than `max_disconnect_share`: nobody was disconnected.
    RefusedByGuard,
    /// The run's sweep did not run (delta, aborted or failed run).
    NotSwept,
}

/// Counts of one entity kind in one scope.
#[derive(Serialize, ToSchema)]
pub struct ScopeCounts {
    /// Records the source returned for the scope.
    pub returned: u64,
    /// Connected to the scope by the run (new, or back after a disconnect).
    pub connected: u64,
    /// Moved into the scope from another one.
    pub moved: u64,
    /// Disconnected from the scope by the sweep.
    pub disconnected: u64,
}

/// One scope (one GMC designated body) of a run.
#[derive(Serialize, ToSchema)]
pub struct ScopeStatus {
    pub scope: String,
    pub outcome: ScopeOutcome,
    /// Why it was not swept.
    #[schema(required = false)]
    pub reason: Option<String>,
    /// Keyed by entity kind; for GMC, `individual` counts doctors.
    pub per_kind: BTreeMap<String, ScopeCounts>,
}

/// Delivery state of one callback.
#[derive(Serialize, ToSchema)]
pub struct CallbackState {
    /// `accepted` or `finished`.
    pub event: String,
    pub attempts: u32,
    pub delivered_at: Option<String>,
    pub gave_up_at: Option<String>,
    /// The next attempt, while pending.
    pub next_at: Option<String>,
    pub last_error: Option<String>,
}

/// `GET /v1/schedules`.
#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// A configured schedule and its recent runs.
#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    /// The cron pattern.
    pub cron: String,
    /// `+00:00` for UTC.
    pub timezone: String,
    pub enabled: bool,
    /// The schedule whose latest run this one waits for.
    pub after: Option<String>,
    /// Next cron tick (RFC 3339).
    pub next_at: Option<String>,
    pub kind: JobKind,
    /// Target dispatch name.
    pub target: String,
    /// The latest runs, newest first.
    pub runs: Vec<ScheduleRunView>,
}

/// One run of a schedule.
#[derive(Serialize, ToSchema)]
pub struct ScheduleRunView {
    /// `cron` or `manual`.
    pub fired_by: String,
    pub tick_at: String,
    /// `null` when the tick was skipped.
    pub job_id: Option<String>,
    pub after_job: Option<String>,
    /// `fired` or `skipped`.
    pub outcome: String,
    pub note: Option<String>,
}

/// `202` of `POST /v1/admin/sync/{schedule}`.
#[derive(Serialize, ToSchema)]
pub struct TriggerAccepted {
    pub job_id: String,
    /// `running`, `queued`, or `accepted` while it waits for `after_job`.
    pub state: JobState,
    pub schedule: String,
    /// The run it waits for.
    pub after_job: Option<String>,
}

/// One job of `GET /v1/jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobListItem {
    pub job_id: String,
    pub state: JobState,
    pub stage: Stage,
    pub kind: JobKind,
    pub target: String,
    /// The named connections the job runs over.
    pub connections: JobConnections,
    pub requested_by: String,
    pub failure: Option<String>,
    /// As `audit_failure` of the job's status.
    pub audit_failure: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From start to end, once the job ended.
    pub duration_ms: Option<i64>,
    /// Totals over every kind (as `counts.total` of the job's status).
    pub counts: Counts,
}

/// `GET /v1/jobs`: newest first.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobListItem>,
    pub limit: u32,
    pub offset: u32,
}

/// What an abort did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbortOutcome {
    /// The job had not started: it ends `aborted` at once.
    Cancelled,
    /// The job stops after its in-flight work.
    Aborting,
}

/// `202` of `POST /v1/jobs/{id}/replay`.
#[derive(Serialize, ToSchema)]
pub struct ReplayAccepted {
    /// The new (delta) job's id.
    pub job_id: String,
    /// `running`, or `queued` behind the target's active job.
    pub state: JobState,
    /// The run whose failed records it re-runs.
    pub replay_of: String,
}

/// `202` of `POST /v1/jobs/{id}/abort`.
#[derive(Serialize, ToSchema)]
pub struct AbortAccepted {
    pub job_id: String,
    pub outcome: AbortOutcome,
}

/// `GET /v1/jobs/{id}/errors` (JSON).
#[derive(Serialize, ToSchema)]
pub struct ErrorPage {
    pub job_id: String,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
    pub errors: Vec<ErrorEntry>,
}

/// Health and readiness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_with_bearer_security() {
        let v = serde_json::to_value(document()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."), "{v}");
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(v["paths"]["/healthz"]["get"].get("security").is_none());
        assert!(v["paths"]["/v1/jobs"]["post"]["security"].is_array());
        let throttled = &v["paths"]["/v1/jobs"]["post"]["responses"]["429"];
        assert!(
            throttled["headers"]["Retry-After"].is_object(),
            "{throttled}"
        );
        assert!(v["paths"]["/healthz"]["get"]["responses"]
            .get("429")
            .is_none());
    }
}
