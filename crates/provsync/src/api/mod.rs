//! The HTTP API of `provsync serve` (DESIGN section 7): `/v1` JSON routes to start,
//! inspect, list and abort jobs and read their errors, health and readiness, bearer
//! tokens with roles, one error table ([`error::ErrorCode`]), and the background
//! [`runner`] that drives started, queued-then-started and orphaned jobs.

pub mod auth;
pub mod error;
pub mod jobs;
pub mod runner;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use provsync_core::store::JobFilter;

use crate::config::Token;
use crate::job::Engine;
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
}

/// The API's router.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/jobs", post(jobs::create).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get_job))
        .route("/jobs/{id}/abort", post(jobs::abort))
        .route("/jobs/{id}/errors", get(jobs::errors));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
/// for orphaned jobs meanwhile. Jobs still running when it returns are left to
/// their ledger: the next process resumes them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    tokens: Vec<Token>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runner = Runner::new(engine.clone());
    let poller = runner.start_polling(Duration::from_millis(500));
    let state = Arc::new(AppState {
        engine,
        tokens,
        runner: runner.clone(),
    });
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    poller.cancel();
    if runner.running() > 0 {
        tracing::info!(
            jobs = runner.running(),
            "leaving running jobs to their ledger; the next process resumes them"
        );
    }
    result
}

/// The 200/202 JSON response helper.
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, Json(value)).into_response()
}
