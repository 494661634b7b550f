//! HTTP to the org: bearer auth with one re-auth on 401, retries of transient
//! failures with jittered exponential backoff, `Sforce-Limit-Info` bookkeeping, the
//! adaptive concurrency gate, and parking while the daily API budget is spent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::sync::RwLock;

use super::auth::{self, Credentials, Session};
use super::config::SalesforceConfig;
use super::limits::{parse_limit_info, ApiUsage, Budget, Gate};
use super::SfError;
use crate::retry::Backoff;

/// The REST API's duplicate rule header
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_duplicaterules.htm),
/// sent on JSON writes (sObject Collections, Composite Graph, the IntegrationJobRun)
/// when `duplicate_rule_allow_save` is set. Composite Graph subrequests do not
/// inherit it (only Accept, Authorization and Content-Type are): each node
/// carries it in its own `httpHeaders` too (`graph.rs`).
pub const DUPLICATE_RULE_HEADER: &str = "Sforce-Duplicate-Rule-Header";
/// Its value: save records that a duplicate rule alerts on.
pub const ALLOW_SAVE: &str = "allowSave=true";

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// JSON.
    Json(serde_json::Value),
    /// Bulk API CSV.
    Csv(String),
    /// A SOAP envelope; the session id is put in place of `{SESSION_ID}`.
    Soap(String),
}

/// An answer that is not a transport failure (any status).
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: bytes::Bytes,
}

impl Response {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, SfError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SfError::Protocol(format!(
                "unreadable answer ({}): {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            ))
        })
    }

    /// The answer if it is a success, else the request-level error it carries
    /// (status, Salesforce's `errorCode` and message).
    pub fn ok(self) -> Result<Response, SfError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let (code, message) = self.error().unwrap_or_default();
        Err(SfError::Api {
            status: self.status.as_u16(),
            code,
            message,
        })
    }

    /// Salesforce's first `errorCode` and message of an error body, if any.
    pub fn error(&self) -> Option<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let e = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
        let code = e
            .get("errorCode")
            .or_else(|| e.get("statusCode"))
            .or_else(|| e.get("error"))?
            .as_str()?
            .to_string();
        let msg = e
            .get("message")
            .or_else(|| e.get("error_description"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        Some((code, msg))
    }
}

/// The org connection shared by every request of a job.
pub struct Client {
    http: reqwest::Client,
    cfg: SalesforceConfig,
    creds: Credentials,
    session: RwLock<Option<Session>>,
    /// In-flight cap (adaptive).
    pub gate: Gate,
    /// Last reported API usage.
    pub budget: Budget,
    /// Requests sent (token requests included).
    pub calls: AtomicU64,
    /// Requests sent and not answered yet (they spend budget the header does not show).
    in_flight: AtomicU64,
    /// Why the job is parked, while it is.
    parked: Mutex<Option<String>>,
    /// One parked request checks the budget; the others wait for its answer.
    park_lock: tokio::sync::Mutex<()>,
    /// Times the job resumed from parking (a waiter that sees it change goes on).
    resumed: AtomicU64,
    /// Raised when the run is aborted: nothing waits for the budget any more.
    cancelled: tokio_util::sync::CancellationToken,
}

impl Client {
    /// A client; no request is sent until the first call.
    pub fn new(cfg: SalesforceConfig, creds: Credentials) -> Result<Self, SfError> {
        let http = crate::http::client_builder()
            // Salesforce ends requests at 10 minutes; a little more lets its answer in.
            .timeout(Duration::from_secs(620))
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| SfError::Config(format!("HTTP client: {}", crate::errors::http(&e))))?;
        Ok(Client {
            http,
            gate: Gate::new(cfg.max_concurrency),
            cfg,
            creds,
            session: RwLock::new(None),
            budget: Budget::default(),
            calls: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            parked: Mutex::new(None),
            park_lock: tokio::sync::Mutex::new(()),
            resumed: AtomicU64::new(0),
            cancelled: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SalesforceConfig {
        &self.cfg
    }

    /// `/services/data/vNN.0`.
    pub fn data_path(&self) -> String {
        format!("/services/data/v{}", self.cfg.api_version)
    }

    /// The run was aborted: requests parked on the spent budget (and any that would
    /// park from now on) give up with [`SfError::Cancelled`] instead of waiting hours.
    pub fn cancel(&self) {
        self.cancelled.cancel();
    }

    /// Why the job is parked now, if it is.
    pub fn parked(&self) -> Option<String> {
        self.parked.lock().expect("parked lock").clone()
    }

    async fn session(&self) -> Result<Session, SfError> {
        if let Some(s) = self.session.read().await.as_ref() {
            return Ok(s.clone());
        }
        self.login(None).await
    }

    /// Logs in, unless another request already replaced the `stale` token.
    async fn login(&self, stale: Option<&Session>) -> Result<Session, SfError> {
        let mut guard = self.session.write().await;
        if let (Some(cur), Some(stale)) = (guard.as_ref(), stale) {
            if cur.token.expose() != stale.token.expose() {
                return Ok(cur.clone());
            }
        }
        if let (Some(cur), None) = (guard.as_ref(), stale) {
            return Ok(cur.clone());
        }
        let mut retries = self.retry().start();
        let mut s = loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let m = match auth::login(&self.http, &self.cfg.login_url, &self.creds).await {
                Ok(s) => break s,
                Err(SfError::Transient(m)) => m,
                Err(e) => return Err(e),
            };
            let Some(delay) = retries.next(None) else {
                return Err(SfError::Unavailable(m));
            };
            tracing::warn!(attempt = retries.failed(), reason = %m, "Salesforce login failed, retrying");
            tokio::time::sleep(delay).await;
        };
        if let Some(url) = &self.cfg.instance_url {
            s.instance_url = url.trim_end_matches('/').to_string();
        }
        *guard = Some(s.clone());
        Ok(s)
    }

    /// The retry policy: `max_attempts`, full jitter below twice `backoff_ms`
    /// doubled per retry, capped at 30 s.
    fn retry(&self) -> Backoff {
        Backoff {
            attempts: self.cfg.max_attempts,
            base: Duration::from_millis(self.cfg.backoff_ms.max(1).saturating_mul(2)),
            max: Duration::from_secs(30),
            jitter: 1.0,
        }
    }

    /// The delay before retry `attempt` (1-based) of the retry policy.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.retry().delay(attempt, None)
    }

    /// Sends one API call (`path` from the host root) with the connector's retry policy:
    /// 503 and transport errors and concurrency refusals are retried with backoff; a 401
    /// logs in again once; a spent daily budget parks until it resets. Every other
    /// answer (2xx, data errors) is returned to the caller.
    pub async fn call(&self, method: Method, path: &str, body: &Body) -> Result<Response, SfError> {
        self.call_with(method, path, body, false).await
    }

    /// A call that may spend the budget's reserve (aborting a Bulk job must not wait
    /// for the budget to come back); otherwise as [`Client::call`].
    pub async fn call_urgent(
        &self,
        method: Method,
        path: &str,
        body: &Body,
    ) -> Result<Response, SfError> {
        self.call_with(method, path, body, true).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: &Body,
        urgent: bool,
    ) -> Result<Response, SfError> {
        let mut retries = self.retry().start();
        let mut reauthed = false;
        let mut parked_since: Option<Instant> = None;
        loop {
            let session = self.session().await?;
            let sent = {
                let _permit = self.gate.enter().await;
                // `pace` counts this request in flight when it lets it go.
                if urgent {
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                } else {
                    self.pace(&mut parked_since).await?;
                }
                let r = self.send(&session, method.clone(), path, body).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                r
            };
            let failure = match sent {
                // The Metadata API says an expired session with a SOAP fault (500).
                Ok(r) if r.status == StatusCode::UNAUTHORIZED || is_soap_session_fault(&r) => {
                    if reauthed {
                        return Err(SfError::Refused(format!(
                            "{path}: session refused right after a new login"
                        )));
                    }
                    reauthed = true;
                    tracing::info!("Salesforce session expired: logging in again");
                    self.login(Some(&session)).await?;
                    continue;
                }
                Ok(r) if r.status == StatusCode::FORBIDDEN && is_limit(&r) => {
                    let (_, msg) = r.error().unwrap_or_default();
                    if is_daily_limit(&msg) {
                        let since = *parked_since.get_or_insert_with(Instant::now);
                        self.park(since, &format!("Salesforce refused: {msg}"))
                            .await?;
                        continue;
                    }
                    self.gate.cut();
                    format!("concurrent request limit: {msg}")
                }
                Ok(r) if is_transient_status(r.status) => format!("HTTP {}", r.status),
                Ok(r) => {
                    self.gate.success();
                    return Ok(r);
                }
                Err(SfError::Transient(m)) => m,
                Err(e) => return Err(e),
            };
            let Some(delay) = retries.next(None) else {
                return Err(SfError::Unavailable(format!(
                    "{method} {path}: {failure} (after {} attempts)",
                    retries.failed()
                )));
            };
            tracing::debug!(%path, attempt = retries.failed(), reason = %failure, "Salesforce call retried");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send(
        &self,
        session: &Session,
        method: Method,
        path: &str,
        body: &Body,
    ) -> Result<Response, SfError> {
        let url = format!("{}{path}", session.instance_url);
        let write = method != Method::GET;
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(session.token.expose());
        req = match body {
            Body::None => req,
            Body::Json(v) if self.cfg.duplicate_rule_allow_save && write => {
                req.header(DUPLICATE_RULE_HEADER, ALLOW_SAVE).json(v)
            }
            Body::Json(v) => req.json(v),
            Body::Csv(s) => req.header("Content-Type", "text/csv").body(s.clone()),
            Body::Soap(s) => req
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"\"")
                .body(s.replace("{SESSION_ID}", &xml_escape(session.token.expose()))),
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|e| SfError::Transient(crate::errors::http(&e)))?;
        if let Some(u) = resp
            .headers()
            .get("Sforce-Limit-Info")
            .and_then(|h| h.to_str().ok())
            .and_then(parse_limit_info)
        {
            self.budget.observe(u);
        }
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            SfError::Transient(format!("reading the answer: {}", crate::errors::http(&e)))
        })?;
        Ok(Response { status, body })
    }

    /// Parks before sending when the last `Sforce-Limit-Info` (plus the requests in
    /// flight) leaves no more than the reserve: the run never spends the budget's
    /// last calls, so the org never has to refuse one.
    async fn pace(&self, parked_since: &mut Option<Instant>) -> Result<(), SfError> {
        loop {
            let Some(u) = self.budget.last() else {
                // Usage unknown until the first answer's `Sforce-Limit-Info`: one
                // request at a time till then, so a first burst (the preflight's
                // describes) cannot overrun a budget that is nearly spent.
                if self
                    .in_flight
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            // Check and count in one step: concurrent requests cannot all pass on
            // the same last free call.
            let admitted = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                    (u.used + f + 1 + self.cfg.budget_reserve <= u.max).then_some(f + 1)
                })
                .is_ok();
            if admitted {
                return Ok(());
            }
            let since = *parked_since.get_or_insert_with(Instant::now);
            self.park(
                since,
                &format!(
                    "{}/{} calls used, {} kept in reserve",
                    u.used, u.max, self.cfg.budget_reserve
                ),
            )
            .await?;
        }
    }

    /// Waits for the daily budget to come back: checks `/limits` after
    /// `park_poll_secs`, then at doubling intervals (each check spends one call of
    /// the reserve), and returns when more than the reserve remains.
    async fn park(&self, since: Instant, why: &str) -> Result<(), SfError> {
        let generation = self.resumed.load(Ordering::SeqCst);
        let aborted = || {
            SfError::Cancelled(format!(
                "not written: the run was aborted while parked on the spent daily API budget ({why})"
            ))
        };
        let _one_checker = tokio::select! {
            g = self.park_lock.lock() => g,
            _ = self.cancelled.cancelled() => return Err(aborted()),
        };
        if self.cancelled.is_cancelled() {
            return Err(aborted());
        }
        // Another request saw the budget come back while this one waited.
        if self.resumed.load(Ordering::SeqCst) != generation {
            return Ok(());
        }
        let max = Duration::from_secs(self.cfg.park_max_hours * 3600);
        let reason = format!(
            "parked: Salesforce daily API budget spent ({why}); resumes by itself when it resets"
        );
        let first = {
            let mut p = self.parked.lock().expect("parked lock");
            let first = p.is_none();
            *p = Some(reason.clone());
            first
        };
        if first {
            tracing::warn!(%reason, "Salesforce job parked");
        }
        let base = Duration::from_secs(self.cfg.park_poll_secs.max(1));
        let mut wait = base;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancelled.cancelled() => {
                    self.parked.lock().expect("parked lock").take();
                    return Err(aborted());
                }
            }
            wait = (wait * 2).min(base * 32);
            if since.elapsed() > max {
                return Err(SfError::Unavailable(format!(
                    "daily API budget still spent after {} h",
                    self.cfg.park_max_hours
                )));
            }
            let session = self.session().await?;
            let path = format!("{}/limits", self.data_path());
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let answer = self.send(&session, Method::GET, &path, &Body::None).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                Ok(r) if r.status.is_success() => {
                    let v = r.json::<serde_json::Value>().ok();
                    let limits = v.as_ref().map(|v| &v["DailyApiRequests"]);
                    let remaining = limits.and_then(|l| l["Remaining"].as_u64());
                    let max_calls = limits.and_then(|l| l["Max"].as_u64());
                    if let (Some(rem), Some(m)) = (remaining, max_calls) {
                        self.budget.reset_to(ApiUsage {
                            used: m.saturating_sub(rem),
                            max: m,
                        });
                    }
                    if remaining.is_some_and(|r| r > self.cfg.budget_reserve + 1) {
                        self.unpark();
                        return Ok(());
                    }
                }
                Ok(r) if r.status == StatusCode::UNAUTHORIZED => {
                    self.login(Some(&session)).await?;
                }
                _ => {}
            }
        }
    }

    fn unpark(&self) {
        self.resumed.fetch_add(1, Ordering::SeqCst);
        if self.parked.lock().expect("parked lock").take().is_some() {
            tracing::info!("Salesforce daily API budget back: job resumed");
        }
    }
}

fn is_transient_status(s: StatusCode) -> bool {
    matches!(
        s,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    )
}

fn is_soap_session_fault(r: &Response) -> bool {
    r.status == StatusCode::INTERNAL_SERVER_ERROR
        && r.body.len() < 4096
        && String::from_utf8_lossy(&r.body).contains("INVALID_SESSION_ID")
}

fn is_limit(r: &Response) -> bool {
    r.error()
        .is_some_and(|(code, _)| code == "REQUEST_LIMIT_EXCEEDED")
}

/// Salesforce words the daily cap `TotalRequests Limit exceeded`; the concurrent
/// long-call cap is `ConcurrentPerOrgLongTxn Limit exceeded`.
pub fn is_daily_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("totalrequests") || m.contains("daily")
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_messages_are_told_apart() {
        assert!(is_daily_limit("TotalRequests Limit exceeded."));
        assert!(!is_daily_limit("ConcurrentPerOrgLongTxn Limit exceeded."));
    }

    #[test]
    fn error_bodies_of_both_spellings_are_read() {
        let r = Response {
            status: StatusCode::FORBIDDEN,
            body: bytes::Bytes::from_static(
                br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
            ),
        };
        assert!(is_limit(&r));
        let r = Response {
            status: StatusCode::OK,
            body: bytes::Bytes::from_static(br#"{"statusCode":"X","message":"m"}"#),
        };
        assert_eq!(r.error(), Some(("X".into(), "m".into())));
    }
}

#[cfg(test)]
mod server_tests {
    //! The retry, re-auth and parking policy against a scripted local server.

    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as Status};
    use axum::response::{IntoResponse, Response as AxumResponse};
    use axum::routing::{get, post};
    use axum::Router;

    use super::*;
    use crate::target::salesforce::auth::Secret;
    use crate::target::salesforce::config::AuthConfig;

    #[derive(Default)]
    struct Script {
        logins: AtomicUsize,
        calls: AtomicUsize,
        limits_polls: AtomicUsize,
        url: std::sync::Mutex<String>,
        /// Answers of `/data` in order (status, body); then 200.
        answers: std::sync::Mutex<Vec<(u16, &'static str)>>,
    }

    async fn token(State(s): State<Arc<Script>>) -> AxumResponse {
        let n = s.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let url = s.url.lock().unwrap().clone();
        axum::Json(serde_json::json!({"access_token": format!("t{n}"), "instance_url": url, "token_type": "Bearer"}))
            .into_response()
    }

    async fn data(State(s): State<Arc<Script>>, headers: HeaderMap) -> AxumResponse {
        s.calls.fetch_add(1, Ordering::SeqCst);
        let auth = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let next = {
            let mut a = s.answers.lock().unwrap();
            (!a.is_empty()).then(|| a.remove(0))
        };
        let (status, body) = match next {
            Some((401, _)) if auth == "Bearer t1" => (
                401,
                r#"[{"errorCode":"INVALID_SESSION_ID","message":"Session expired"}]"#,
            ),
            Some((401, _)) => (200, "{}"),
            Some(x) => x,
            None => (200, r#"{"ok":true}"#),
        };
        (
            Status::from_u16(status).unwrap(),
            [("Sforce-Limit-Info", "api-usage=42/15000")],
            body,
        )
            .into_response()
    }

    async fn limits(State(s): State<Arc<Script>>) -> AxumResponse {
        let n = s.limits_polls.fetch_add(1, Ordering::SeqCst);
        let remaining = if n == 0 { 0 } else { 500 };
        axum::Json(serde_json::json!({"DailyApiRequests": {"Max": 15000, "Remaining": remaining}}))
            .into_response()
    }

    async fn serve(answers: Vec<(u16, &'static str)>) -> (Arc<Script>, Client) {
        let script = Arc::new(Script::default());
        *script.answers.lock().unwrap() = answers;
        let app = Router::new()
            .route("/services/oauth2/token", post(token))
            .route("/services/data/v65.0/data", get(data))
            .route("/services/data/v65.0/limits", get(limits))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *script.url.lock().unwrap() = url.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg: SalesforceConfig = serde_json::from_value(serde_json::json!({
            "login_url": url,
            "backoff_ms": 5,
            "park_poll_secs": 1,
            "max_attempts": 4,
            "auth": {"flow": "client_credentials", "client_id": "provsync", "client_secret_env": "UNUSED"}
        }))
        .unwrap();
        assert!(matches!(cfg.auth, AuthConfig::ClientCredentials { .. }));
        let creds = Credentials::ClientCredentials {
            client_id: "provsync".into(),
            secret: Secret::new("s"),
        };
        (script, Client::new(cfg, creds).unwrap())
    }

    const PATH: &str = "/services/data/v65.0/data";

    #[tokio::test]
    async fn an_expired_session_logs_in_once_more_and_503s_are_retried() {
        let (script, client) = serve(vec![(401, ""), (503, "busy"), (503, "busy")]).await;
        let r = client.call(Method::GET, PATH, &Body::None).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(script.logins.load(Ordering::SeqCst), 2);
        assert_eq!(script.calls.load(Ordering::SeqCst), 4);
        assert_eq!(
            client.budget.last(),
            Some(ApiUsage {
                used: 42,
                max: 15000
            })
        );
    }

    #[tokio::test]
    async fn the_retry_policy_is_full_jitter_from_twice_backoff_ms_capped_at_30_s() {
        let (_, client) = serve(vec![]).await;
        assert_eq!(
            client.retry(),
            Backoff {
                attempts: 4,
                base: Duration::from_millis(10),
                max: Duration::from_secs(30),
                jitter: 1.0,
            }
        );
    }

    #[tokio::test]
    async fn transient_failures_give_up_after_max_attempts() {
        let (_, client) = serve(vec![(503, ""); 6]).await;
        let e = client
            .call(Method::GET, PATH, &Body::None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, SfError::Unavailable(ref m) if m.contains("after 4 attempts")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_spent_daily_budget_parks_then_resumes_by_itself() {
        let spent =
            r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"TotalRequests Limit exceeded."}]"#;
        let (script, client) = serve(vec![(403, spent)]).await;
        let client = Arc::new(client);
        let c = client.clone();
        let call = tokio::spawn(async move { c.call(Method::GET, PATH, &Body::None).await });
        let mut seen_parked = None;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(p) = client.parked() {
                seen_parked = Some(p);
                break;
            }
        }
        let r = call.await.unwrap().unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let reason = seen_parked.expect("the client never said it was parked");
        assert!(reason.contains("daily API budget spent"), "{reason}");
        assert_eq!(client.parked(), None);
        // Polled until /limits showed budget again (the first poll still said 0).
        assert_eq!(script.limits_polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_concurrent_call_limit_cuts_the_gate_and_retries() {
        let busy = r#"[{"errorCode":"REQUEST_LIMIT_EXCEEDED","message":"ConcurrentPerOrgLongTxn Limit exceeded."}]"#;
        let (_, client) = serve(vec![(403, busy)]).await;
        let before = client.gate.limit();
        let r = client.call(Method::GET, PATH, &Body::None).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(client.gate.limit(), before / 2);
        assert_eq!(client.parked(), None);
    }
}
