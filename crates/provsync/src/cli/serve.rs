//! `provsync serve`: the HTTP API and the background job runner; and
//! `provsync config check`: validate a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::out::{note, outln, warning};
use crate::config::{self, Overrides};

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "PROVSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides the config and `PROVSYNC_LISTEN`).
    #[arg(long)]
    pub listen: Option<String>,
    /// State store URL (overrides the config and `PROVSYNC_STATE`).
    #[arg(long, help = format!(
        "State store URL (overrides the config and `PROVSYNC_STATE`) [default: {}]",
        crate::paths::default_state_url()
    ))]
    pub state: Option<String>,
    /// Stage queue URL (overrides the config and `PROVSYNC_QUEUE`): `amqp://...`
    /// puts the stages on RabbitMQ for `provsync worker` processes.
    #[arg(long)]
    pub queue: Option<String>,
}

/// Arguments of `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print what it sets (no secrets); warn on
    /// stderr about what is legal but unsafe (no tokens, a well-known token).
    Check {
        /// Configuration file (TOML).
        file: PathBuf,
    },
}

fn load(path: Option<&PathBuf>, flags: &Overrides) -> anyhow::Result<config::Config> {
    let file = match path {
        Some(p) => config::read(p)?,
        None => config::from_env()?,
    };
    let cfg = config::resolve(Some(file), flags)?;
    for w in cfg.warnings() {
        warning!("{w}");
    }
    Ok(cfg)
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let flags = Overrides {
        listen: a.listen.clone(),
        state: a.state.clone(),
        queue: a.queue.clone(),
    };
    let cfg = load(a.config.as_ref(), &flags)?;
    let engine = super::worker::open_engine(
        &cfg.state,
        cfg.queue.as_deref(),
        super::worker::DEFAULT_MAX_ATTEMPTS,
    )
    .await?;
    // An in-process queue has no other consumer than this process.
    let stages = match (
        &engine.queue,
        super::worker::needs_own_stages(cfg.queue.as_deref()),
    ) {
        (Some(q), true) => Some(
            crate::job::distributed::StageWorker::new(engine.clone(), q.clone())
                .start(2)
                .await?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal();
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    note!("listening on {scheme}://{addr}");
    for s in &cfg.schedules {
        note!(
            "schedule {} ({}{}): next tick {}",
            s.name,
            s.pattern,
            if s.enabled { "" } else { ", disabled" },
            s.next_after(chrono::Utc::now())
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
        );
    }
    // The change relay rides along, so one process does the whole nightly flow:
    // schedule, sync, and every connection event on its way to RabbitMQ.
    let relay = cfg.relay.clone().map(|r| {
        note!(
            "relaying {}.change_outbox of {} to exchange {} on {}",
            r.schema,
            crate::secret::redact_urls(&r.database_url),
            r.exchange,
            crate::secret::redact_urls(&r.amqp_url)
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(crate::events::relay::run(r, stop.clone()));
        (stop, task)
    });
    let opts = crate::api::ServeOptions {
        tokens: cfg.tokens,
        callbacks: cfg.callbacks,
        schedules: cfg.schedules,
        base_dir: cfg.base_dir,
        http: cfg.http,
        connections: cfg.connections,
        api: cfg.api,
        tls: cfg.tls,
    };
    crate::api::serve(listener, engine, opts, shutdown)
        .await
        .context("serving the API")?;
    if let Some(s) = stages {
        s.cancel();
    }
    if let Some((stop, task)) = relay {
        stop.cancel();
        match task.await {
            Ok(Ok(stats)) => note!("relay stopped after publishing {}", stats.published),
            Ok(Err(e)) => warning!("relay: {e}"),
            Err(e) => warning!("relay task: {e}"),
        }
    }
    note!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future resolving on SIGTERM or Ctrl-C. The handlers are installed when this
/// is called, not when the future is first polled: a signal arriving after the
/// process said it was ready (but before the server polled its shutdown future)
/// must stop it cleanly, not kill it.
pub(super) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (term, int) = (&mut signals.0, &mut signals.1);
            tokio::select! {
                _ = next_signal(term) => {}
                _ = next_signal(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        note!("shutting down: no new requests; running jobs resume from their ledger later");
    }
}

/// The next delivery of `signal` (never, if it could not be installed).
#[cfg(unix)]
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// `provsync config ...`.
pub fn config_command(a: ConfigArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        ConfigCommand::Check { file } => {
            let cfg = load(Some(&file), &Overrides::default())?;
            outln!("{}: ok", file.display())?;
            outln!("  listen  {}", cfg.listen)?;
            outln!("  state   {}", crate::secret::redact_urls(&cfg.state))?;
            outln!(
                "  tls     {}",
                if cfg.tls.is_some() {
                    "on (certificate and key loaded)"
                } else {
                    "off (plain HTTP)"
                }
            )?;
            outln!("  tokens  {}", cfg.tokens.len())?;
            for t in &cfg.tokens {
                outln!("    {} ({})", t.name, t.role)?;
            }
            outln!(
                "  callbacks  {} (max {} attempts, {} s timeout{})",
                if cfg.callbacks.secret.is_some() {
                    "signed"
                } else {
                    "off (no secret)"
                },
                cfg.callbacks.max_attempts,
                cfg.callbacks.timeout.as_secs(),
                if cfg.callbacks.allowed_hosts.is_empty() {
                    ", no allowed_hosts: every callback refused".to_owned()
                } else {
                    format!(
                        ", hosts {}{}",
                        cfg.callbacks.allowed_hosts.join(" "),
                        if cfg.callbacks.allow_private_addresses {
                            ", private addresses allowed"
                        } else {
                            ""
                        }
                    )
                }
            )?;
            match &cfg.relay {
                Some(r) => outln!(
                    "  relay  {}.change_outbox of {} -> {} on {}",
                    r.schema,
                    crate::secret::redact_urls(&r.database_url),
                    r.exchange,
                    crate::secret::redact_urls(&r.amqp_url)
                )?,
                None => outln!("  relay  off")?,
            }
            let listing = cfg.connections.listing();
            for side in ["sources", "targets"] {
                let items = listing[side]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                outln!("  {side}  {}", items.len())?;
                for c in items {
                    outln!(
                        "    {} ({}){}",
                        c["name"].as_str().unwrap_or_default(),
                        c["type"].as_str().unwrap_or_default(),
                        c["queue"]
                            .as_str()
                            .map(|q| format!(", jobs queue under {q}"))
                            .unwrap_or_default()
                    )?;
                }
            }
            let api = &cfg.api;
            outln!(
                "  api  mappings {}; free-form connectors {}",
                api.mappings
                    .as_ref()
                    .map_or_else(|| "built-in only".to_owned(), |m| m.display().to_string()),
                if api.free_form_connectors {
                    format!(
                        "allowed to admin tokens (data folders: {}; hosts: {})",
                        list_or_none(
                            api.bounds
                                .data_folders
                                .iter()
                                .map(|d| d.display().to_string())
                        ),
                        list_or_none(api.bounds.allowed_hosts.iter().cloned())
                    )
                } else {
                    "refused".to_owned()
                }
            )?;
            outln!("  schedules  {}", cfg.schedules.len())?;
            for s in &cfg.schedules {
                outln!(
                    "    {} `{}` {} -> {} ({}){}{}",
                    s.name,
                    s.pattern,
                    s.offset,
                    s.target,
                    s.spec.kind.as_str(),
                    s.after
                        .as_ref()
                        .map(|a| format!(", after {a}"))
                        .unwrap_or_default(),
                    if s.enabled { "" } else { ", disabled" }
                )?;
            }

            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Items joined by spaces, or `none`.
fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}
