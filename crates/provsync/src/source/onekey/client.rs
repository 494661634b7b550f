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
    attempts: u32,
    backoff: Duration,
    backoff_max: Duration,
    jitter: AtomicU64,
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
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Ok(Self {
            http,
            base: s.url.trim_end_matches('/').to_owned(),
            credentials: s.credentials()?,
            token: Mutex::new(None),
            attempts: s.max_attempts,
            backoff: Duration::from_millis(s.backoff_ms),
            backoff_max: Duration::from_millis(s.backoff_max_ms),
            jitter: AtomicU64::new(seed),
            retries: AtomicU64::new(0),
        })
    }

    /// The delay before retry `attempt` (from 1): exponential, capped, with equal
    /// jitter (half fixed, half random), and never shorter than `Retry-After`.
    fn delay(&self, attempt: u32, at_least: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.backoff_max);
        // xorshift64: jitter needs no quality, only spread between clients.
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        let half = exp / 2;
        let jittered = half + half.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64);
        jittered.max(at_least.unwrap_or_default())
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
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            let wait_hint;
            match build().send().await {
                Err(e) => {
                    last = format!("transport: {}", crate::errors::http(&e));
                    wait_hint = None;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let hint = retry_after(resp.headers());
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            last = format!("reading the body: {}", crate::errors::http(&e));
                            self.pause(attempt, None).await;
                            continue;
                        }
                    };
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
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        return Err(CallError::Api {
                            what: what.to_owned(),
                            status: status.as_u16(),
                            code,
                            message,
                        });
                    }
                    last = format!("HTTP {} {code}: {message}", status.as_u16());
                    wait_hint = hint;
                }
            }
            if attempt < self.attempts {
                tracing::debug!(call = what, attempt, error = %last, "retrying");
                self.pause(attempt, wait_hint).await;
            }
        }
        Err(CallError::Exhausted {
            what: what.to_owned(),
            attempts: self.attempts,
            last,
        })
    }

    async fn pause(&self, attempt: u32, at_least: Option<Duration>) {
        tokio::time::sleep(self.delay(attempt, at_least)).await;
    }
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
    fn backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let c = client();
        for attempt in 1..=10 {
            let exp = Duration::from_millis((100u64 << (attempt - 1)).min(1000));
            let d = c.delay(attempt, None);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
        assert!(c.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        let spread: std::collections::HashSet<_> = (0..20).map(|_| c.delay(5, None)).collect();
        assert!(spread.len() > 1, "jitter spreads delays");
    }
}
