//! The outbox relay: publishes pending `change_outbox` rows to a RabbitMQ topic
//! exchange with publisher confirms, marks them published only once confirmed, and
//! reconnects with backoff when the broker or the database goes away. Delivery is at
//! least once; each message's id is its outbox id, so consumers can drop duplicates.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

/// Settings of a relay (`Debug` hides the URLs' passwords).
#[derive(Clone)]
pub struct RelayConfig {
    /// PostgreSQL URL of the target database.
    pub database_url: String,
    /// Schema holding `change_outbox`.
    pub schema: String,
    /// AMQP URL of the broker.
    pub amqp_url: String,
    /// Topic exchange to publish to.
    pub exchange: String,
    /// Rows published per round trip.
    pub batch: i64,
    /// Pause between polls of an empty outbox.
    pub poll: Duration,
    /// Stop once the outbox is empty (instead of polling forever).
    pub until_empty: bool,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::secret::redact_urls;
        f.debug_struct("RelayConfig")
            .field("database_url", &redact_urls(&self.database_url))
            .field("schema", &self.schema)
            .field("amqp_url", &redact_urls(&self.amqp_url))
            .field("exchange", &self.exchange)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .field("until_empty", &self.until_empty)
            .finish()
    }
}

/// A relay failure that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Bad settings.
    #[error("relay configuration: {0}")]
    Config(String),
}

/// A failure of one round; the relay reconnects and tries again. Each text holds
/// its causes (and no `source()`), so they are shown once.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("{0}")]
    Connect(String),
    #[error("broker: {0}")]
    Broker(String),
    #[error("broker did not confirm message {0}")]
    Nacked(i64),
    #[error("database: {0}")]
    Database(String),
    #[error("no answer within {} s (broker or database stalled)", ROUND_TIMEOUT.as_secs())]
    Stalled,
}

/// How long one round may take: a publish or confirm that never resolves (a broker
/// restarting under the connection) must lead to a reconnect, not a silent stop.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

impl From<lapin::Error> for RoundError {
    fn from(e: lapin::Error) -> Self {
        Self::Broker(crate::errors::chain(&e))
    }
}

impl From<sqlx::Error> for RoundError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(crate::errors::chain(&e))
    }
}

/// Counts of a relay's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Messages confirmed by the broker and marked published.
    pub published: u64,
    /// Rounds that failed and were retried.
    pub retries: u64,
}

async fn connect_db(cfg: &RelayConfig) -> Result<PgPool, RoundError> {
    let settings = crate::pg::PoolSettings {
        application_name: "provsync-relay",
        max_connections: 2,
        search_path: Some(&cfg.schema),
        ..crate::pg::PoolSettings::default()
    };
    crate::pg::connect(&cfg.database_url, &settings)
        .await
        .map_err(|e| RoundError::Connect(e.to_string()))
}

async fn open_channel(cfg: &RelayConfig) -> Result<(Connection, Channel), RoundError> {
    let conn = crate::queue::rabbitmq::connect(&cfg.amqp_url)
        .await
        .map_err(RoundError::Connect)?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .exchange_declare(
            cfg.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel))
}

/// Publishes one batch; returns how many rows it published (0: the outbox is empty).
async fn round(cfg: &RelayConfig, db: &PgPool, channel: &Channel) -> Result<u64, RoundError> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "SELECT id, routing_key, payload::text FROM change_outbox \
         WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(cfg.batch)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let (id, key, payload): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into());
        let confirm = channel
            .basic_publish(
                cfg.exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                props,
            )
            .await?;
        confirms.push((id, confirm));
        ids.push(id);
    }
    for (id, confirm) in confirms {
        if confirm.await?.is_nack() {
            return Err(RoundError::Nacked(id));
        }
    }
    sqlx::query(
        "UPDATE change_outbox SET published_at = (extract(epoch from clock_timestamp()) * 1000)::bigint, \
         attempts = attempts + 1 WHERE id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Drains the outbox until cancelled (or until it is empty, with `until_empty`).
pub async fn run(cfg: RelayConfig, stop: CancellationToken) -> Result<RelayStats, RelayError> {
    if !cfg
        .schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || cfg.schema.is_empty()
    {
        return Err(RelayError::Config(format!(
            "schema {:?} is not a plain identifier",
            cfg.schema
        )));
    }
    let mut stats = RelayStats::default();
    let mut backoff = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let session = async {
            let db = connect_db(&cfg).await?;
            let (conn, channel) = open_channel(&cfg).await?;
            Ok::<_, RoundError>((db, conn, channel))
        }
        .await;
        let (db, _conn, channel) = match session {
            Ok(s) => s,
            Err(e) => {
                stats.retries += 1;
                tracing::warn!(error = %e, ?backoff, "relay cannot connect; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            if stop.is_cancelled() {
                return Ok(stats);
            }
            let answered = tokio::time::timeout(ROUND_TIMEOUT, round(&cfg, &db, &channel)).await;
            match answered.unwrap_or(Err(RoundError::Stalled)) {
                Ok(0) if cfg.until_empty => return Ok(stats),
                Ok(0) => {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(stats),
                        _ = tokio::time::sleep(cfg.poll) => {}
                    }
                }
                Ok(n) => {
                    stats.published += n;
                    tracing::info!(published = n, "relay published");
                }
                Err(e) => {
                    stats.retries += 1;
                    tracing::warn!(error = %e, "relay round failed; reconnecting");
                    break;
                }
            }
        }
    }
    Ok(stats)
}
