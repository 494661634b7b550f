//! The HTTP routes of the OneKey emulator, with the fault-injecting, request-logging
//! middleware in front of them.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::codes::{code_lists, LOCALES};
use super::cursor::{PacketCursor, SyncMode};
use super::packets::BuiltPacket;
use super::wire::WireError;
use super::{mix, OneKeyEmulator, Session, MAX_PACKET_SIZE};

type Emu = Arc<OneKeyEmulator>;

/// The contract's OpenAPI document, served at `/openapi.json`.
const OPENAPI: &str = include_str!("../../../../docs/onekey-openapi.json");

/// A fault the handler injected, for the request log.
#[derive(Debug, Clone, Copy)]
struct Fault(&'static str);

/// The emulator's routes.
pub fn router(emu: Emu) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/api/v1/countries", get(countries))
        .route("/api/v1/countries/{country}/code-lists", get(country_codes))
        .route("/api/v1/sync-sessions", post(activate))
        .route(
            "/api/v1/sync-sessions/{id}",
            axum::routing::delete(delete_session),
        )
        .route("/api/v1/sync-sessions/{id}/packets", get(packet))
        .route("/_emulator/requests", get(requests))
        .route("/_emulator/stats", get(stats))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(emu.clone(), around))
        .with_state(emu)
}

/// Errors answered so far: numbers each error's `request_id`.
static ERRORS: AtomicU64 = AtomicU64::new(0);

/// An error response with the contract's body.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = WireError {
        code: code.to_owned(),
        message: message.into(),
        request_id: format!("req-{:06}", ERRORS.fetch_add(1, Ordering::Relaxed) + 1),
    };
    (status, Json(body)).into_response()
}

fn with_fault(mut r: Response, fault: &'static str) -> Response {
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

/// Checks the bearer token or API key of a request.
fn authorize(emu: &OneKeyEmulator, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let unauthorized = |code: &str, msg: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, code, msg);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Box::new(r)
    };
    if let Some(key) = headers.get("x-api-key") {
        return if key.as_bytes() == emu.config().api_key.as_bytes() {
            Ok(())
        } else {
            Err(unauthorized("INVALID_API_KEY", "the API key is not valid"))
        };
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "UNAUTHORIZED",
            "send `Authorization: Bearer <token>` (from POST /oauth2/token) or `X-API-Key`",
        ));
    };
    let token = auth
        .to_str()
        .ok()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let expires = emu.tokens.lock().ok().and_then(|t| t.get(token).copied());
    match expires {
        Some(at) if at > Instant::now() => Ok(()),
        Some(_) => Err(unauthorized(
            "TOKEN_EXPIRED",
            "the access token has expired; request a new one",
        )),
        None => Err(unauthorized("INVALID_TOKEN", "unknown access token")),
    }
}

/// `POST /oauth2/token`: OAuth2 client credentials (form fields or HTTP Basic).
async fn token(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, code: &str, msg: &str| {
        (
            status,
            Json(json!({"error": error, "error_description": msg, "code": code, "message": msg})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "UNSUPPORTED_GRANT_TYPE",
            "grant_type must be client_credentials",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(decode_basic);
    let (id, secret) = match (&basic, form.get("client_id"), form.get("client_secret")) {
        (Some((i, s)), _, _) => (i.as_str(), s.as_str()),
        (None, Some(i), Some(s)) => (i.as_str(), s.as_str()),
        _ => ("", ""),
    };
    let cfg = emu.config();
    if id != cfg.client_id || secret != cfg.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "INVALID_CLIENT",
            "client authentication failed",
        );
    }
    let token = emu.new_id("tok_");
    if let Ok(mut tokens) = emu.tokens.lock() {
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(token.clone(), now + cfg.token_ttl);
    }
    emu.journal()
        .counters
        .tokens
        .fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": cfg.token_ttl.as_secs(),
    }))
    .into_response()
}

/// `user:password` of an HTTP Basic header.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.trim_end_matches('=').bytes() {
        bits = bits << 6 | A.iter().position(|a| *a == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    let text = String::from_utf8(out).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// `GET /api/v1/countries`.
async fn countries(State(emu): State<Emu>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
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
    if let Err(r) = authorize(&emu, &headers) {
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

fn unknown_country(emu: &OneKeyEmulator, country: &str) -> Response {
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

/// The body of `POST /api/v1/sync-sessions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActivateBody {
    #[serde(default)]
    countries: Vec<String>,
    mode: String,
    since_night: Option<u32>,
    since: Option<DateTime<Utc>>,
    packet_size: Option<u32>,
}

/// `POST /api/v1/sync-sessions`: activates a sync session.
async fn activate(State(emu): State<Emu>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let b: ActivateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("request body: {e}"),
            )
        }
    };
    let cfg = emu.config();
    let night = cfg.night;
    let countries: Vec<String> = if b.countries.is_empty() {
        emu.catalog().countries().map(str::to_owned).collect()
    } else {
        b.countries.clone()
    };
    for (i, c) in countries.iter().enumerate() {
        if emu.catalog().world(c).is_none() {
            return unknown_country(&emu, c);
        }
        if countries[..i].contains(c) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("countries: {c} is given twice"),
            );
        }
    }
    let mode = match b.mode.as_str() {
        "full" => SyncMode::Full,
        "delta" => {
            let since = match (b.since_night, b.since) {
                (Some(n), None) => n,
                (None, Some(t)) => emu
                    .catalog()
                    .world(&countries[0])
                    .map(|w| w.night_at(t))
                    .unwrap_or(0),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        "mode delta needs exactly one of sinceNight or since (RFC 3339)",
                    )
                }
            };
            if since > night {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    format!("sinceNight {since} is after the current night {night}"),
                );
            }
            SyncMode::Delta { since }
        }
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("mode must be full or delta, got {other:?}"),
            )
        }
    };
    let packet_size = b.packet_size.unwrap_or(1_000);
    if packet_size == 0 || packet_size > MAX_PACKET_SIZE {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!("packetSize must be 1..={MAX_PACKET_SIZE}, got {packet_size}"),
        );
    }
    let id = emu.new_id("SES");
    let now = Instant::now();
    let session = Session {
        countries: countries.clone(),
        mode,
        night,
        packet_size,
        expires: now + cfg.session_ttl,
        served: 0,
    };
    if let Ok(mut s) = emu.sessions.lock() {
        s.retain(|_, x| x.expires > now);
        s.insert(id.clone(), session);
    }
    emu.journal()
        .counters
        .sessions_opened
        .fetch_add(1, Ordering::Relaxed);
    let first = PacketCursor::first(countries.clone(), mode, night, packet_size);
    let expires_at = Utc::now()
        + chrono::Duration::from_std(cfg.session_ttl).unwrap_or(chrono::Duration::hours(1));
    let (mode_name, since) = match mode {
        SyncMode::Full => ("full", None),
        SyncMode::Delta { since } => ("delta", Some(since)),
    };
    (
        StatusCode::CREATED,
        Json(json!({
            "sessionId": id,
            "mode": mode_name,
            "countries": countries,
            "night": night,
            "sinceNight": since,
            "packetSize": packet_size,
            "firstCursor": first.encode(),
            "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
    )
        .into_response()
}

/// `DELETE /api/v1/sync-sessions/{id}`: ends (aborts) a session.
async fn delete_session(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let removed = emu.sessions.lock().ok().and_then(|mut s| s.remove(&id));
    match removed {
        Some(_) => {
            emu.journal()
                .counters
                .sessions_deleted
                .fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no active session {id}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct PacketQuery {
    cursor: Option<String>,
}

/// `GET /api/v1/sync-sessions/{id}/packets?cursor=…`: the packet at a cursor.
async fn packet(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PacketQuery>,
) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let session = match claim_packet(&emu, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(text) = q.cursor else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "query parameter `cursor` is required (the session's firstCursor, then each nextCursor)",
        );
    };
    let cursor = match PacketCursor::decode(&text) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_CURSOR", e.to_string()),
    };
    if cursor.countries != session.countries
        || cursor.mode != session.mode
        || cursor.packet_size != session.packet_size
    {
        return error(
            StatusCode::CONFLICT,
            "CURSOR_MISMATCH",
            "the cursor belongs to a sync of other countries, mode or packet size than this session",
        );
    }
    if cursor.night != session.night {
        return error(
            StatusCode::CONFLICT,
            "CURSOR_STALE",
            format!(
                "the cursor is of night {} but the MDM now serves night {}; start a new sync",
                cursor.night, session.night
            ),
        );
    }
    let worker = emu.clone();
    let c = cursor.clone();
    let started = Instant::now();
    let built = tokio::task::spawn_blocking(move || worker.catalog().packet(&c)).await;
    let Ok(Some(mut built)) = built else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "the packet could not be built",
        );
    };
    let counters = &emu.journal().counters;
    counters
        .build_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let malformed = emu.config().malformed_packet == Some(cursor.packet_no);
    if malformed {
        corrupt(&mut built);
    }
    let body = render(&id, &cursor, &text, &built);
    counters.packets.fetch_add(1, Ordering::Relaxed);
    counters
        .records
        .fetch_add(built.records() as u64, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let r = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    if malformed {
        with_fault(r, "malformed")
    } else {
        r
    }
}

/// Takes one packet from a session's allowance, or answers why not.
fn claim_packet(emu: &OneKeyEmulator, id: &str) -> Result<Session, Box<Response>> {
    let mut sessions = emu.sessions.lock().map_err(|_| {
        Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "session table poisoned",
        ))
    })?;
    let Some(s) = sessions.get_mut(id) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no active session {id}"),
        )));
    };
    let used_up = emu
        .config()
        .expire_session_after
        .is_some_and(|n| s.served >= n);
    if s.expires <= Instant::now() || used_up {
        sessions.remove(id);
        emu.journal()
            .counters
            .sessions_expired
            .fetch_add(1, Ordering::Relaxed);
        return Err(Box::new(with_fault(
            error(
                StatusCode::GONE,
                "SESSION_EXPIRED",
                format!(
                    "session {id} has expired; activate a new one and continue with your cursor"
                ),
            ),
            "expired",
        )));
    }
    s.served += 1;
    Ok(s.clone())
}

/// Breaks two records of a packet the way a faulty MDM export does: the first
/// individual loses its last name, the first activity's individual id is a number.
fn corrupt(p: &mut BuiltPacket) {
    let edit = |text: &mut String, field: &str, value: serde_json::Value| {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
            v[field] = value;
            *text = v.to_string();
        }
    };
    if let Some(i) = p.individuals.first_mut() {
        edit(i, "lastName", serde_json::Value::Null);
    }
    if let Some(a) = p.activities.first_mut() {
        edit(a, "individualEid", json!(12345));
    }
}

/// The packet's JSON, written directly from its serialized records.
fn render(session: &str, cursor: &PacketCursor, text: &str, p: &BuiltPacket) -> String {
    let size: usize = p
        .workplaces
        .iter()
        .chain(&p.individuals)
        .chain(&p.activities)
        .map(|r| r.len() + 1)
        .sum();
    let mut out = String::with_capacity(size + 512);
    let next = p.next.as_ref().map(PacketCursor::encode);
    out.push_str(
        &json!({
            "sessionId": session,
            "packetNo": cursor.packet_no,
            "country": cursor.country_code(),
            "cursor": text,
            "nextCursor": next,
            "lastPacket": next.is_none(),
        })
        .to_string(),
    );
    out.pop(); // the closing brace: the arrays follow
    for (name, items) in [
        ("workplaces", &p.workplaces),
        ("individuals", &p.individuals),
        ("activities", &p.activities),
    ] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        out.push(']');
    }
    out.push('}');
    out
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
