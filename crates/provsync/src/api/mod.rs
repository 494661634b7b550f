//! The HTTP API of `provsync serve` (DESIGN section 7): `/v1` JSON routes to start,
//! inspect, list and abort jobs and read their errors, health and readiness, bearer
//! tokens with roles, one error table ([`error::ErrorCode`]), and the background
//! [`runner`] that drives started, queued-then-started and orphaned jobs.

pub mod auth;
pub mod connections;
pub mod error;
pub mod jobs;
pub mod openapi;
pub mod request;
pub mod runner;
pub mod schedules;
pub mod server;
pub mod throttle;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use provsync_core::job::JobState;
use provsync_core::store::JobFilter;

use crate::callback::Deliverer;
use crate::config::{ApiSettings, CallbackSettings, Role, Token};
use crate::connections::Connections;
use crate::job::Engine;
use crate::schedule::{Schedule, Scheduler};
use error::{ApiError, ErrorCode};
pub use runner::Runner;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    /// The engine (and its store).
    pub engine: Engine,
    /// Configured tokens.
    pub tokens: Vec<Token>,
    /// The background job runner.
    pub runner: Runner,
    /// Schedules and manual triggers.
    pub scheduler: Scheduler,
    /// Callback settings (a job's `callback_url` is checked against them).
    pub callbacks: CallbackSettings,
    /// Where a submitted job's relative paths start (the config file's folder).
    pub base_dir: std::path::PathBuf,
    /// The named sources and targets requests use.
    pub connections: Connections,
    /// What requests may choose besides them.
    pub api: ApiSettings,
    /// Refused-token budgets of peer addresses.
    pub throttle: throttle::AuthThrottle,
    /// Served over TLS: cookies the API sets (the web page's session cookie, when
    /// there is a web page) carry `Secure`.
    pub secure_cookies: bool,
}

/// What `serve` needs besides the engine and the listener.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// API tokens.
    pub tokens: Vec<Token>,
    /// Callback delivery.
    pub callbacks: CallbackSettings,
    /// Schedules, in dependency order.
    pub schedules: Vec<Schedule>,
    /// Where a submitted job's relative paths start (the config file's folder).
    pub base_dir: std::path::PathBuf,
    /// Connection limits and timeouts.
    pub http: server::HttpLimits,
    /// The named sources and targets requests use.
    pub connections: Connections,
    /// What requests may choose besides them.
    pub api: ApiSettings,
    /// Serve HTTPS with this certificate and key (plain HTTP without).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The API's router.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/jobs", post(jobs::create).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get_job))
        .route("/jobs/{id}/abort", post(jobs::abort))
        .route("/jobs/{id}/replay", post(jobs::replay))
        .route("/codes-sync", post(jobs::codes_sync))
        .route("/jobs/{id}/errors", get(jobs::errors))
        .route("/connections", get(connections::list))
        .route("/schedules", get(schedules::list))
        .route("/admin/sync/{schedule}", post(schedules::trigger));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::auth_and_log,
        ))
        .with_state(state)
}

/// `GET /healthz` (no token): the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "Up", body = openapi::Health))
)]
pub async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// `GET /readyz` (no token): the state store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = openapi::Health),
        (status = 503, description = "The state store does not answer (`not_ready`)", body = ApiError)
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let filter = JobFilter {
        limit: 1,
        ..JobFilter::default()
    };
    let probe = state.engine.store.list_jobs(&filter);
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => {
            ApiError::new(ErrorCode::NotReady, format!("state store: {e}")).into_response()
        }
        Err(_) => ApiError::new(ErrorCode::NotReady, "state store does not answer").into_response(),
    }
}

/// `GET /metrics` (read): Prometheus text exposition; queue depth and the live
/// progress counters are refreshed on each scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "No bearer token, or an unknown one (`unauthorized`)", body = ApiError),
        (status = 403, description = "The token's role is weaker than read (`forbidden`)", body = ApiError)
    )
)]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<auth::Caller>,
) -> Result<Response, ApiError> {
    caller.require(Role::Read)?;
    let filter = JobFilter {
        state: Some(JobState::Queued),
        limit: u32::MAX,
        ..JobFilter::default()
    };
    match state.engine.store.list_jobs(&filter).await {
        Ok(jobs) => crate::metrics::set_queue_depth(jobs.iter().map(|j| j.target.as_str())),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot list queued jobs"),
    }
    crate::metrics::set_progress(&state.engine.progress, state.runner.running());
    let mut resp = crate::metrics::render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take this method",
    )
}

/// Serves the API on `listener` until `shutdown` resolves, with the runner polling
/// for orphaned jobs, the scheduler firing schedules and the callback deliverer
/// meanwhile. Jobs still running when it returns are left to their ledger: the
/// next process resumes them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::metrics::init();
    let runner = Runner::new(engine.clone());
    let poller = runner.start_polling(Duration::from_millis(500));
    let scheduler = Scheduler::new(engine.clone(), runner.clone(), opts.schedules);
    let ticking = scheduler.start();
    let delivering = Deliverer::new(engine.store.clone(), opts.callbacks.clone()).start();
    let state = Arc::new(AppState {
        engine,
        tokens: opts.tokens,
        runner: runner.clone(),
        scheduler,
        callbacks: opts.callbacks,
        base_dir: opts.base_dir,
        connections: opts.connections,
        api: opts.api,
        throttle: throttle::AuthThrottle::per_minute(opts.http.auth_failures_per_minute),
        secure_cookies: opts.tls.is_some(),
    });
    let app = router(state);
    let result = server::run(listener, app, opts.http, opts.tls, shutdown).await;
    // Stop taking work: no new ticks, no new orphans; queued callbacks stay in
    // the outbox for the next process.
    ticking.cancel();
    poller.cancel();
    delivering.cancel();
    if runner.running() > 0 {
        tracing::info!(
            jobs = runner.running(),
            "leaving running jobs to their ledger; the next process resumes them"
        );
    }
    result
}

/// The 200/202 JSON response helper; a `job_id` in the body also names the job
/// the response is about for the audit log ([`error::AboutJob`]).
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let job = value
        .get("job_id")
        .and_then(serde_json::Value::as_str)
        .map(|id| error::AboutJob(id.to_owned()));
    let mut resp = (status, Json(value)).into_response();
    if let Some(j) = job {
        resp.extensions_mut().insert(j);
    }
    resp
}
