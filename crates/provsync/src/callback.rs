//! Job callbacks (the seeds' confirmation to the calling system): a job that names a
//! `callback_url` gets a POST when it is accepted and when it ends.
//!
//! The store queues each callback in the transaction that accepts or ends the job
//! (an outbox), so none is lost and the job never waits for the receiver. This
//! delivery loop claims due callbacks (a lease: another process takes over if this
//! one dies), POSTs them signed, and retries failures with exponential backoff and
//! jitter until `max_attempts`; a 4xx other than 408 and 429 is final.
//!
//! Signature: `X-Provsync-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`
//! with `X-Provsync-Timestamp: <unix seconds>`: the receiver recomputes it and
//! refuses stale timestamps, which defeats replays.
//!
//! Where a callback may go is [`address`]'s rule, checked when the job is submitted
//! and again before each attempt; the attempt then connects to the addresses just
//! checked (no second lookup), so a DNS answer changed in between cannot send it
//! elsewhere.

pub mod address;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use provsync_core::store::{CallbackDue, Delivery, StateStore};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::config::CallbackSettings;
use crate::retry::Backoff;
use address::Destination;

/// How often the loop looks for due callbacks.
const POLL: Duration = Duration::from_millis(250);
/// Callbacks claimed per round.
const BATCH: u32 = 32;
/// Retry delays: 1 s, 2 s, 4 s ... 300 s, each plus up to a quarter (the top of the
/// range, 1.25 s ... 375 s, with a fifth of it random); attempts are the settings'.
const BACKOFF: Backoff = Backoff {
    attempts: 0,
    base: Duration::from_millis(1250),
    max: Duration::from_secs(375),
    jitter: 0.2,
};

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "x-provsync-signature";
/// Header with the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-provsync-timestamp";
/// Header with the event (`job.accepted`, `job.finished`).
pub const EVENT_HEADER: &str = "x-provsync-event";
/// Header with a delivery id, stable across retries (receivers deduplicate on it).
pub const DELIVERY_HEADER: &str = "x-provsync-delivery";

/// `sha256=<hex>` of `timestamp.body` under `key`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A client for one attempt to `to`: its host name resolves only to the addresses
/// checked for it.
fn pinned_client(
    settings: &CallbackSettings,
    to: &Destination,
) -> reqwest::Result<reqwest::Client> {
    let mut b = crate::http::client_builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        // A callback URL is the caller's: no redirect at all, not even within it.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(domain) = &to.domain {
        b = b.resolve_to_addrs(domain, &to.addrs);
    }
    b.build()
}

/// Delivers queued callbacks.
#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn StateStore>,
    settings: CallbackSettings,
}

impl Deliverer {
    /// A deliverer over `store`.
    pub fn new(store: Arc<dyn StateStore>, settings: CallbackSettings) -> Self {
        Self { store, settings }
    }

    /// Runs the delivery loop until the token is cancelled.
    pub fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        let stop = token.clone();
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = me.deliver_due().await {
                    tracing::warn!(error = %e, "callback delivery round failed");
                }
            }
        });
        token
    }

    /// Claims and delivers the callbacks due now; returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, provsync_core::store::StoreError> {
        // The lease outlives one attempt with margin, so a slow receiver is not
        // called twice at once.
        let lease_ms = (self.settings.timeout.as_millis() as i64) * 2 + 5_000;
        let due = self.store.claim_callbacks(BATCH, lease_ms).await?;
        let n = due.len();
        let rounds = due.into_iter().map(|c| {
            let me = self.clone();
            async move { me.deliver(c).await }
        });
        for r in futures::future::join_all(rounds).await {
            r?;
        }
        Ok(n)
    }

    async fn deliver(&self, c: CallbackDue) -> Result<(), provsync_core::store::StoreError> {
        let attempt = c.attempts + 1;
        let policy = Backoff {
            attempts: self.settings.max_attempts,
            ..BACKOFF
        };
        let outcome = match self.attempt(&c).await {
            Ok(()) => Delivery::Delivered,
            Err((error, retryable)) => match policy.after(attempt, None).filter(|_| retryable) {
                Some(delay) => Delivery::Retry {
                    error,
                    at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                },
                None => Delivery::GiveUp {
                    error: format!("after {attempt} attempt(s): {error}"),
                },
            },
        };
        let label = match &outcome {
            Delivery::Delivered => "delivered",
            Delivery::Retry { .. } => "retry",
            Delivery::GiveUp { .. } => "gave_up",
        };
        crate::metrics::callback_attempt(&c.event, label);
        match &outcome {
            Delivery::Delivered => {
                tracing::info!(job = %c.job_id, event = %c.event, attempt, "callback delivered")
            }
            Delivery::Retry { error, at } => tracing::warn!(
                job = %c.job_id, event = %c.event, attempt, %error, retry_at = %at,
                "callback failed; will retry"
            ),
            Delivery::GiveUp { error } => tracing::error!(
                job = %c.job_id, event = %c.event, attempt, %error, "callback given up"
            ),
        }
        self.store
            .callback_attempted(&c.job_id, &c.event, &outcome)
            .await
    }

    /// One POST; on failure (why, worth retrying).
    async fn attempt(&self, c: &CallbackDue) -> Result<(), (String, bool)> {
        let Some(key) = &self.settings.secret else {
            return Err((
                "this server has no callback secret configured".into(),
                false,
            ));
        };
        // The rule may have changed (a restart with new settings) and so may DNS.
        let to = address::admit(&self.settings, &c.url)
            .await
            .map_err(|r| (r.why, r.transient))?;
        let http = pinned_client(&self.settings, &to)
            .map_err(|e| (format!("cannot build the HTTP client: {e}"), false))?;
        let body = self
            .payload(c)
            .await
            .map_err(|e| (format!("cannot build the payload: {e}"), true))?;
        let body = serde_json::to_vec(&body).map_err(|e| (e.to_string(), false))?;
        let ts = Utc::now().timestamp();
        let resp = http
            .post(&c.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, format!("job.{}", c.event))
            .header(DELIVERY_HEADER, format!("{}.{}", c.job_id, c.event))
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(key, ts, &body))
            .body(body)
            .send()
            .await
            // reqwest's error names the URL, which the job request holds anyway.
            .map_err(|e| (crate::errors::http(&e), true))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retryable =
            status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        Err((format!("the receiver answered {status}"), retryable))
    }

    /// The JSON body: the event and the job's state (and, when it ended, its
    /// counts and failure).
    async fn payload(&self, c: &CallbackDue) -> Result<Value, provsync_core::store::StoreError> {
        let job = self.store.job(&c.job_id).await?;
        let mut v = json!({
            "event": format!("job.{}", c.event),
            "job_id": job.id,
            "state": job.state,
            "kind": job.spec.kind,
            "mode": job.spec.mode,
            "target": job.target,
            "requested_by": job.requested_by,
            "created_at": job.created_at,
        });
        if c.event == "finished" {
            v["finished_at"] = json!(job.finished_at);
            v["failure"] = json!(job.failure);
            let counts = job
                .summary
                .as_ref()
                .and_then(|s| s.get("per_kind"))
                .cloned()
                .unwrap_or(Value::Null);
            v["counts"] = counts;
            v["errors"] = json!(self.store.error_count(&c.job_id).await?);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        let a = sign(b"0123456789abcdef", 1_700_000_000, b"{}");
        let b = sign(b"0123456789abcdef", 1_700_000_000, b"{}");
        let c = sign(b"0123456789abcdef", 1_700_000_001, b"{}");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        // The HMAC itself against the well-known answer for this key and message.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[tokio::test]
    async fn an_attempt_connects_to_the_checked_address_and_follows_no_redirect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(|| async { "ok" }))
            .route(
                "/moved",
                axum::routing::post(|| async { axum::response::Redirect::temporary("/hook") }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let settings = CallbackSettings {
            timeout: Duration::from_secs(5),
            ..CallbackSettings::default()
        };
        // A name no resolver knows: only the pin can take the request to `addr`.
        let to = Destination {
            domain: Some("receiver.invalid".into()),
            addrs: vec![addr],
        };
        let http = pinned_client(&settings, &to).unwrap();
        let port = addr.port();
        let ok = http
            .post(format!("http://receiver.invalid:{port}/hook"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let moved = http
            .post(format!("http://receiver.invalid:{port}/moved"))
            .send()
            .await
            .unwrap();
        assert_eq!(moved.status(), 307, "the redirect was followed");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = BACKOFF.delay(1, None);
        assert!(
            b1 >= Duration::from_secs(1) && b1 <= Duration::from_millis(1250),
            "{b1:?}"
        );
        let b4 = BACKOFF.delay(4, None);
        assert!(
            b4 >= Duration::from_secs(8) && b4 <= Duration::from_secs(10),
            "{b4:?}"
        );
        let b30 = BACKOFF.delay(30, None);
        assert!(
            b30 >= Duration::from_secs(300) && b30 <= Duration::from_secs(375),
            "{b30:?}"
        );
    }
}
