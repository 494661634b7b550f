//! The HTTP side: routes, and the gate every Salesforce call passes (injected 503,
//! access token, concurrent long calls, daily API budget, latency while holding row
//! locks, `Sforce-Limit-Info`), plus the `/_emulator/` control endpoints.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::ApiError;
use super::faults::FaultsPatch;
use super::rest::{self, Body, Exec, Reply};
use super::store::Tx;
use super::{apex, auth, epoch_secs, metadata, Emu};

/// Longest request URI Salesforce accepts: "the maximum length for the combined URI
/// and headers is 16,384 bytes ... If the URI itself exceeds this limit, the request
/// returns a 414 URI Too Long error" (Salesforce Help, knowledge article 000386264,
/// https://help.salesforce.com/s/articleView?id=000386264&type=1). The error body's
/// code and message are a guess.
pub const MAX_URI_BYTES: usize = 16_384;
/// Largest body accepted (a Bulk upload of 150 MB base64 is about 112 MB raw).
const MAX_BODY_BYTES: usize = 160 * 1024 * 1024;

/// The emulator's routes.
pub fn router(emu: Arc<Emu>) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{*rest}", any(data))
        .route("/services/apexrest/{*rest}", any(apexrest))
        .route("/services/Soap/m/{version}", post(soap))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/faults", post(faults).get(get_faults))
        .route("/_emulator/expire-tokens", post(expire_tokens))
        .route("/_emulator/reset-budget", post(reset_budget))
        .route("/_emulator/apex-calls", get(apex_calls))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(emu)
}

/// Serves until the future `shutdown` completes, then writes a snapshot.
pub async fn serve(
    emu: Arc<Emu>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(emu.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    emu.checkpoint()
}

async fn versions() -> Response {
    Json(rest::versions()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    assertion: Option<String>,
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn instance_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn token(
    State(emu): State<Arc<Emu>>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    emu.stats.call("token");
    match f.grant_type.as_str() {
        "client_credentials" => {
            let (id, secret) = basic_credentials(&headers).unwrap_or((
                f.client_id.unwrap_or_default(),
                f.client_secret.unwrap_or_default(),
            ));
            if id != emu.client_id {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if secret != emu.client_secret {
                return oauth_error("invalid_client", "invalid client credentials");
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some(key) = &emu.jwt_key else {
                return oauth_error(
                    "invalid_grant",
                    "no certificate is configured for the JWT bearer flow",
                );
            };
            let Some(assertion) = f.assertion else {
                return oauth_error("invalid_request", "assertion is required");
            };
            if let Err((e, d)) =
                auth::check_assertion(key, &assertion, &emu.client_id, &emu.username)
            {
                return oauth_error(e, &d);
            }
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    }
    emu.stats.token();
    let instance = instance_url(&headers);
    let access = emu.tokens.issue();
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    Json(json!({
        "access_token": access,
        "instance_url": instance,
        "id": format!("{instance}/id/00DEm0000000001AAA/005Em0000000001AAA"),
        "token_type": "Bearer",
        "scope": "api",
        "issued_at": issued.to_string(),
        "signature": "ZW11bGF0b3I=",
    }))
    .into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let text =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("OAuth "))
}

fn limit_info(used: u64, max: u64) -> (&'static str, String) {
    ("sforce-limit-info", format!("api-usage={used}/{max}"))
}

fn respond(reply: Reply, limit: Option<(&'static str, String)>) -> Response {
    let mut resp = match reply.body {
        Body::Json(v) => (reply.status, Json(v)).into_response(),
        Body::Csv(s) => (reply.status, [(header::CONTENT_TYPE, "text/csv")], s).into_response(),
        Body::Empty => reply.status.into_response(),
    };
    for (k, v) in reply.headers.into_iter().chain(limit) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// What the gate lets through: the request number, or the answer refusing it.
enum Gate {
    Pass(u64, (&'static str, String)),
    Refuse(Response),
}

fn gate(emu: &Emu, headers: &HeaderMap, session: Option<&str>) -> Gate {
    let faults = emu.faults();
    if emu.rng.chance(faults.fail_503) {
        // An injected fault: its body is ours (guess: real 503s vary).
        emu.stats.fail_503();
        let body = json!([{"message": "Service temporarily unavailable (emulated)", "errorCode": "SERVER_UNAVAILABLE"}]);
        return Gate::Refuse((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    // 401 "The session ID or OAuth token used has expired or is invalid" (REST API
    // Developer Guide, "Status Codes and Error Responses"); the code and message are
    // those orgs answer, as users quote them.
    let token = session.or_else(|| bearer(headers));
    if !token.is_some_and(|t| emu.tokens.valid(t)) {
        emu.stats.auth_refused();
        return Gate::Refuse(respond(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            )
            .into(),
            None,
        ));
    }
    let max = emu.api_budget.load(Ordering::Relaxed);
    let now = epoch_secs();
    let mut org = emu.org_guard();
    let used = org.calls.used(now, emu.window_secs);
    // "API Request Limits and Allocations"
    // (https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm):
    // at most 25 concurrent calls of 20 seconds or longer in a production org, beyond
    // which the API answers REQUEST_LIMIT_EXCEEDED; a total request allocation per 24
    // hours, the same code (403 per "Status Codes and Error Responses"). The two
    // messages are the wording orgs answer as users quote it.
    if emu.inflight.long_running(emu.long_call) >= emu.max_long_calls {
        drop(org);
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        );
        emu.stats.violation("concurrent_long_calls", &e.message);
        return Gate::Refuse(respond(e.into(), Some(limit_info(used, max))));
    }
    if used >= max {
        drop(org);
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        emu.stats.violation("api_budget", &e.message);
        return Gate::Refuse(respond(e.into(), Some(limit_info(used, max))));
    }
    org.count_call(now);
    org.flush();
    drop(org);
    let req = emu.next_req();
    emu.inflight.start(req);
    Gate::Pass(req, limit_info(used + 1, max))
}

/// Runs a gated call: the handler under the org lock, then the latency with the row
/// locks still held, then the answer.
async fn run_gated(
    emu: Arc<Emu>,
    req: u64,
    limit: (&'static str, String),
    body_len: usize,
    f: impl FnOnce(&mut Exec<'_>) -> Reply,
) -> Response {
    let mut scope = emu.scope(req);
    let (reply, kind, records, nodes) = {
        let mut org = emu.org_guard();
        let mut tx = Tx::default();
        let mut x = Exec {
            emu: &emu,
            org: &mut org,
            tx: &mut tx,
            scope: &mut scope,
            kind: "other",
            records: 0,
            graph_nodes: 0,
        };
        let reply = f(&mut x);
        let (kind, records, nodes) = (x.kind, x.records, x.graph_nodes);
        let written = org.commit(tx);
        org.flush();
        drop(org);
        emu.stats.written(&written);
        (reply, kind, records, nodes)
    };
    emu.stats.call(kind);
    emu.stats.request_size(body_len as u64, records, nodes);
    let latency = emu.faults().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    drop(scope);
    emu.inflight.end(req);
    respond(reply, Some(limit))
}

async fn data(
    State(emu): State<Arc<Emu>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let uri_len = uri.to_string().len();
    let (req, limit) = match gate(&emu, &headers, None) {
        Gate::Pass(req, limit) => (req, limit),
        Gate::Refuse(r) => return r,
    };
    if uri_len > MAX_URI_BYTES {
        let e = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("The request URI is {uri_len} bytes; at most {MAX_URI_BYTES} are allowed"),
        );
        emu.stats.violation("uri_length", &e.message);
        emu.inflight.end(req);
        return respond(e.into(), Some(limit));
    }
    let len = body.len();
    // The raw path: segments are percent-decoded once, by the dispatcher, as they are
    // for composite subrequest URLs.
    let rest = uri
        .path()
        .strip_prefix("/services/data/")
        .unwrap_or_default()
        .to_owned();
    let allow_save = headers
        .get(rest::DUPLICATE_RULE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(rest::allows_save);
    run_gated(emu.clone(), req, limit, len, move |x| {
        x.scope.allow_save = allow_save;
        x.dispatch(&method, &rest, query.as_deref(), &body)
    })
    .await
}

async fn apexrest(
    State(emu): State<Arc<Emu>>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, limit) = match gate(&emu, &headers, None) {
        Gate::Pass(req, limit) => (req, limit),
        Gate::Refuse(r) => return r,
    };
    let len = body.len();
    run_gated(emu.clone(), req, limit, len, move |x| {
        x.kind = "apex";
        apex::record(x.emu, method.as_str(), &rest, query.as_deref(), &body)
    })
    .await
}

async fn soap(State(emu): State<Arc<Emu>>, headers: HeaderMap, body: Bytes) -> Response {
    let call = match metadata::parse(&body) {
        Ok(c) => c,
        Err(why) => return metadata::fault_response("sf:INVALID_XML", &why),
    };
    let (req, limit) = match gate(&emu, &headers, Some(call.session_id.as_str())) {
        Gate::Pass(req, limit) => (req, limit),
        Gate::Refuse(r) => {
            if r.status() == StatusCode::UNAUTHORIZED {
                return metadata::fault_response(
                    "sf:INVALID_SESSION_ID",
                    "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
                );
            }
            return r;
        }
    };
    let len = body.len();
    let mut resp = run_gated(emu.clone(), req, limit, len, move |x| {
        metadata::handle(x, &call)
    })
    .await;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    resp
}

async fn stats(State(emu): State<Arc<Emu>>) -> Response {
    let (used, max) = emu.budget();
    Json(emu.stats.report(used, max)).into_response()
}

async fn get_faults(State(emu): State<Arc<Emu>>) -> Response {
    Json(emu.faults()).into_response()
}

async fn faults(State(emu): State<Arc<Emu>>, body: Bytes) -> Response {
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    {
        let mut f = emu.faults.write().expect("faults lock");
        if let Err(e) = f.apply(&patch) {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    }
    if let Some(ttl) = patch.token_ttl_secs {
        emu.tokens.set_ttl(Duration::from_secs(ttl));
    }
    if let Some(b) = patch.api_budget {
        emu.api_budget.store(b, Ordering::Relaxed);
    }
    Json(emu.faults()).into_response()
}

async fn expire_tokens(State(emu): State<Arc<Emu>>) -> Response {
    let n = emu.tokens.expire_all();
    Json(json!({"expired": n})).into_response()
}

async fn reset_budget(State(emu): State<Arc<Emu>>) -> Response {
    emu.org_guard().reset_calls();
    let (used, max) = emu.budget();
    Json(json!({"api_calls_used": used, "api_budget": max})).into_response()
}

async fn apex_calls(State(emu): State<Arc<Emu>>) -> Response {
    Json(apex::list(&emu) as Value).into_response()
}
