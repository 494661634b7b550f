//! The HTTP client of the `onekey` source: bearer tokens (fetched, cached, renewed
//! before expiry and once on a 401), API key, and bounded retries with exponential
//! backoff and jitter that honour `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use provsync_core::source::SourceError;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::config::{Credentials, OneKeySettings};
use crate::retry::Backoff;

/// Renew a token this long before the MDM says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// A failed call, after retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The MDM answered with an error that retrying cannot fix.
    #[error("{what}: HTTP {status} {code}: {message}")]
    Api {
        /// The call, e.g. `GET packet 3`.
        what: String,
        /// HTTP status.
        status: u16,
        /// The body's `code`.
        code: String,
        /// The body's `message`.
        message: String,
    },
    /// Transient failures outlived the attempts.
    #[error("{what}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// The call.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl CallError {
    /// The API error code, if the MDM gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => Some(code),
            CallError::Exhausted { .. } => None,
        }
    }

    /// The HTTP status, if the MDM answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Api { status, .. } => Some(*status),
            CallError::Exhausted { .. } => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A cached bearer token (never printed).
struct Token {
    value: String,
    renew_at: Instant,
}

/// The client: one connection pool, the credentials, the retry policy.
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    token: Mutex<Option<Token>>,
    retry: Backoff,
    /// Retries made (transient errors and 429), for logs and tests.
    pub retries: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Retry-After in seconds (the HTTP-date form is treated as one second).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    Some(Duration::from_secs(v.trim().parse().unwrap_or(1)))
}

impl Client {
    /// A client for the MDM the settings name.
    pub fn new(s: &OneKeySettings) -> Result<Self, SourceError> {
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(s.timeout_secs))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                SourceError::Config(format!("HTTP client: {}", crate::errors::http(&e)))
            })?;
        Ok(Self {
            http,
            base: s.url.trim_end_matches('/').to_owned(),
            credentials: s.credentials()?,
            token: Mutex::new(None),
            retry: Backoff {
                attempts: s.max_attempts,
                base: Duration::from_millis(s.backoff_ms),
                max: Duration::from_millis(s.backoff_max_ms),
                // Equal jitter: half of each delay fixed, half random.
                jitter: 0.5,
            },
            retries: AtomicU64::new(0),
        })
    }

    /// A valid bearer token: the cached one, or a new one.
    async fn bearer(&self, what: &str) -> Result<String, CallError> {
        let Credentials::OAuth { client_id, secret } = &self.credentials else {
            return Ok(String::new());
        };
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(t.value.clone());
        }
        let url = format!("{}/oauth2/token", self.base);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.expose()),
        ];
        let body = self
            .retrying(&format!("{what} (token)"), || {
                self.http.post(&url).form(&form)
            })
            .await?;
        let t: TokenBody = serde_json::from_slice(&body).map_err(|e| CallError::Api {
            what: "POST /oauth2/token".into(),
            status: 200,
            code: "MALFORMED_RESPONSE".into(),
            message: format!("token response is not {{access_token, expires_in}}: {e}"),
        })?;
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(300));
        let value = t.access_token;
        *cached = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + ttl.saturating_sub(TOKEN_MARGIN.min(ttl / 2)),
        });
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Calls the API with authentication: renews the token once on a 401 it sent.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        json: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Vec<u8>, CallError> {
        let url = format!("{}{path}", self.base);
        let mut renewed = false;
        loop {
            let token = self.bearer(what).await?;
            let result = self
                .retrying(what, || {
                    let mut r = self.http.request(method.clone(), &url).query(query);
                    r = match &self.credentials {
                        Credentials::OAuth { .. } => r.bearer_auth(&token),
                        Credentials::ApiKey(k) => r.header("x-api-key", k.expose()),
                    };
                    if let Some(body) = json {
                        r = r.json(body);
                    }
                    r
                })
                .await;
            match result {
                Err(e)
                    if !renewed
                        && e.status() == Some(401)
                        && matches!(self.credentials, Credentials::OAuth { .. })
                        && matches!(e.code(), Some("TOKEN_EXPIRED" | "INVALID_TOKEN")) =>
                {
                    tracing::info!(call = what, "token refused: requesting a new one");
                    self.forget_token().await;
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    /// Sends a request until it succeeds, fails for good, or the attempts run out.
    async fn retrying(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CallError> {
        let mut retries = self.retry.start();
        loop {
            let (last, hint) = match self.once(what, build()).await {
                Ok(body) => return Ok(body),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(last, hint)) => (last, hint),
            };
            let Some(delay) = retries.next(hint) else {
                return Err(CallError::Exhausted {
                    what: what.to_owned(),
                    attempts: retries.failed(),
                    last,
                });
            };
            tracing::debug!(call = what, attempt = retries.failed(), error = %last, "retrying");
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt, its failure classified: 429, 5xx and transport errors are
    /// transient (with the server's `Retry-After`), any other answer is final.
    async fn once(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        let resp = req.send().await.map_err(|e| {
            Failure::Transient(format!("transport: {}", crate::errors::http(&e)), None)
        })?;
        let status = resp.status();
        let hint = retry_after(resp.headers());
        let body = resp.bytes().await.map_err(|e| {
            Failure::Transient(
                format!("reading the body: {}", crate::errors::http(&e)),
                None,
            )
        })?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let err: ErrorBody = serde_json::from_slice(&body).unwrap_or(ErrorBody {
            code: None,
            message: Some(String::from_utf8_lossy(&body).chars().take(200).collect()),
            error: None,
        });
        let code = err.code.or(err.error).unwrap_or_else(|| "UNKNOWN".into());
        let message = err.message.unwrap_or_default();
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let last = format!("HTTP {} {code}: {message}", status.as_u16());
            return Err(Failure::Transient(last, hint));
        }
        Err(Failure::Final(CallError::Api {
            what: what.to_owned(),
            status: status.as_u16(),
            code,
            message,
        }))
    }
}

/// How one attempt failed.
enum Failure {
    /// A retry can help: why, and the delay the server asked for.
    Transient(String, Option<Duration>),
    /// A retry cannot help.
    Final(CallError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        // Any variable that is set serves as the key: no request is sent.
        let s: OneKeySettings =
            toml::from_str("url = \"http://127.0.0.1:1\"\napi_key_env = \"PATH\"\nbackoff_ms = 100\nbackoff_max_ms = 1000")
                .unwrap();
        Client::new(&s).unwrap()
    }

    #[test]
    fn the_retry_policy_follows_the_settings() {
        assert_eq!(
            client().retry,
            Backoff {
                attempts: 8,
                base: Duration::from_millis(100),
                max: Duration::from_millis(1000),
                jitter: 0.5,
            }
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(1)));
    }
}
