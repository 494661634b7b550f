//! The HTTP routes of the OneKey emulator, the fault-injecting, request-logging
//! middleware in front of them, and the country, code-list and emulator routes;
//! authentication is in [`super::auth`], sessions and packets in [`super::sessions`].

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::codes::{code_lists, LOCALES};
use super::wire::WireError;
use super::{auth, sessions};
use super::{mix, OneKeyEmulator};

/// The shared emulator state of every handler.
pub(super) type Emu = Arc<OneKeyEmulator>;

/// The contract's OpenAPI document, served at `/openapi.json`.
const OPENAPI: &str = include_str!("../../../../docs/onekey-openapi.json");

/// A fault the handler injected, for the request log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fault(&'static str);

/// The emulator's routes.
pub fn router(emu: Emu) -> Router {
    Router::new()
        .route("/oauth2/token", post(auth::token))
        .route("/api/v1/countries", get(countries))
        .route("/api/v1/countries/{country}/code-lists", get(country_codes))
        .route("/api/v1/sync-sessions", post(sessions::activate))
        .route(
            "/api/v1/sync-sessions/{id}",
            axum::routing::delete(sessions::delete_session),
        )
        .route("/api/v1/sync-sessions/{id}/packets", get(sessions::packet))
        .route("/_emulator/requests", get(requests))
        .route("/_emulator/stats", get(stats))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(emu.clone(), around))
        .with_state(emu)
}

/// Errors answered so far: numbers each error's `request_id`.
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// An error response with the contract's body.
pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = WireError {
        code: code.to_owned(),
        message: message.into(),
        request_id: format!("req-{:06}", ERRORS.fetch_add(1, Ordering::Relaxed) + 1),
    };
    (status, Json(body)).into_response()
}

pub(super) fn with_fault(mut r: Response, fault: &'static str) -> Response {
    r.extensions_mut().insert(Fault(fault));
    r
}

/// Latency, injected faults and the request log around every route.
async fn around(State(emu): State<Emu>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let cursor = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .map(str::to_owned)
    });
    let cfg = emu.config();
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let api = path.starts_with("/api/") || path.starts_with("/oauth2/");
    let n = emu.journal().counters.requests.load(Ordering::Relaxed);
    let roll = (mix(cfg.fault_seed ^ mix(n)) >> 11) as f64 / (1u64 << 53) as f64;
    let response = if api && roll < cfg.fail_5xx_share {
        emu.journal()
            .counters
            .faults_5xx
            .fetch_add(1, Ordering::Relaxed);
        let status = [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
        ][(n % 3) as usize];
        with_fault(
            error(
                status,
                "SERVER_ERROR",
                "the MDM failed to answer; retry later",
            ),
            "5xx",
        )
    } else if api && roll < cfg.fail_5xx_share + cfg.fail_429_share {
        emu.journal()
            .counters
            .faults_429
            .fetch_add(1, Ordering::Relaxed);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests; retry after {}s", cfg.retry_after_secs),
        );
        if let Ok(v) = HeaderValue::from_str(&cfg.retry_after_secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        with_fault(r, "429")
    } else {
        next.run(req).await
    };
    let fault = response.extensions().get::<Fault>().map(|f| f.0);
    emu.journal()
        .log(&method, &path, cursor, response.status().as_u16(), fault);
    response
}

/// `GET /api/v1/countries`.
async fn countries(State(emu): State<Emu>, headers: HeaderMap) -> Response {
    if let Err(r) = auth::authorize(&emu, &headers) {
        return *r;
    }
    let list: Vec<_> = emu
        .catalog()
        .countries()
        .map(|c| json!({"code": c, "night": emu.config().night, "locales": LOCALES}))
        .collect();
    Json(json!({ "countries": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct CodeQuery {
    list: Option<String>,
}

/// `GET /api/v1/countries/{country}/code-lists[?list=SP]`.
async fn country_codes(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(country): Path<String>,
    Query(q): Query<CodeQuery>,
) -> Response {
    if let Err(r) = auth::authorize(&emu, &headers) {
        return *r;
    }
    let Some(world) = emu.catalog().world(&country) else {
        return unknown_country(&emu, &country);
    };
    let mut lists = code_lists(world, &country);
    if let Some(only) = &q.list {
        lists.retain(|l| &l.list == only);
        if lists.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "UNKNOWN_CODE_LIST",
                format!("country {country} has no code list {only:?} (lists: SP, ROL)"),
            );
        }
    }
    Json(json!({"country": country, "locales": LOCALES, "lists": lists})).into_response()
}

pub(super) fn unknown_country(emu: &OneKeyEmulator, country: &str) -> Response {
    let served: Vec<&str> = emu.catalog().countries().collect();
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_COUNTRY",
        format!(
            "country {country:?} is not served by this MDM (served: {})",
            served.join(", ")
        ),
    )
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    after: Option<u64>,
}

/// `GET /_emulator/requests[?after=SEQ]`: the request log (no auth: a test hook).
async fn requests(State(emu): State<Emu>, Query(q): Query<LogQuery>) -> Response {
    Json(emu.journal().entries(q.after.unwrap_or(0))).into_response()
}

/// `GET /_emulator/stats`: counters.
async fn stats(State(emu): State<Emu>) -> Response {
    let active = emu.sessions.lock().map(|s| s.len() as u64).unwrap_or(0);
    Json(emu.journal().stats(active)).into_response()
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
