//! `provsync relay-changes`: drain a target database's change outbox to RabbitMQ.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::out::outln;
use crate::events::relay::{self, RelayConfig};

/// Arguments of `relay-changes`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// PostgreSQL URL of the target database holding `change_outbox`.
    #[arg(long, env = "PROVSYNC_RELAY_DATABASE", hide_env_values = true)]
    pub database: String,
    /// Schema of the outbox.
    #[arg(long, default_value = "gmc")]
    pub schema: String,
    /// AMQP URL of the broker.
    #[arg(
        long,
        env = "PROVSYNC_RELAY_AMQP",
        default_value = "amqp://127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp: String,
    /// Topic exchange.
    #[arg(long, default_value = "provsync.changes")]
    pub exchange: String,
    /// Poll interval of an empty outbox, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Exit once the outbox is empty.
    #[arg(long)]
    pub until_empty: bool,
}

/// Runs the relay until Ctrl-C / SIGTERM (or an empty outbox with `--until-empty`).
pub async fn relay_changes(a: RelayArgs) -> anyhow::Result<ExitCode> {
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    let stats = relay::run(
        RelayConfig {
            database_url: a.database,
            schema: a.schema,
            amqp_url: a.amqp,
            exchange: a.exchange,
            batch: 500,
            poll: Duration::from_millis(a.poll_ms),
            until_empty: a.until_empty,
        },
        stop,
    )
    .await?;
    outln!(
        "{}",
        serde_json::json!({"published": stats.published, "retries": stats.retries})
    )?;
    Ok(ExitCode::SUCCESS)
}
