//! `provsync worker`: a process of the distributed runtime. It consumes the stage
//! queues (transform, load, dead letters) and takes over the jobs of dead
//! processes (drives them from their ledger); any number of them can run, and
//! any of them can be killed at any moment.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::out::note;
use crate::api::Runner;
use crate::job::distributed::StageWorker;
use crate::job::Engine;

/// Default deliveries of a message before it is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Arguments of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// State store URL (the distributed runtime shares one PostgreSQL store).
    #[arg(long, env = "PROVSYNC_STATE")]
    pub state: String,
    /// Queue URL: `amqp://user:pass@host:5672/%2f[?prefix=NAME]`.
    #[arg(long, env = "PROVSYNC_QUEUE")]
    pub queue: String,
    /// Messages each stage consumer holds unacknowledged (backpressure).
    #[arg(long, default_value_t = 2)]
    pub prefetch: u16,
    /// Deliveries of a message before it goes to the dead-letter queue.
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
}

/// Opens the queue a URL names, with the store and engine around it.
pub async fn open_engine(
    state: &str,
    queue: Option<&str>,
    max_attempts: u32,
) -> anyhow::Result<Engine> {
    let store = crate::store::open(state)
        .await
        .with_context(|| format!("opening state store {}", crate::secret::redact_urls(state)))?;
    let engine = Engine::new(store);
    Ok(match queue {
        None => engine,
        Some(url) => {
            let q = crate::queue::open(url, max_attempts)
                .await
                .with_context(|| format!("opening queue {}", crate::secret::redact_urls(url)))?;
            engine.with_queue(q)
        }
    })
}

/// Whether this process must consume its own queue (an in-process one: no other
/// process can see it).
pub fn needs_own_stages(queue: Option<&str>) -> bool {
    queue.is_some_and(|q| q.starts_with("memory:"))
}

/// Runs the worker until SIGTERM or Ctrl-C.
pub async fn worker(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    crate::metrics::init();
    let engine = open_engine(&a.state, Some(&a.queue), a.max_attempts).await?;
    let queue: Arc<dyn crate::queue::Queue> = engine.queue.clone().expect("opened with a queue");
    let stages = StageWorker::new(engine.clone(), queue)
        .start(a.prefetch.max(1))
        .await
        .context("starting the stage consumers")?;
    let shutdown = super::serve::shutdown_signal();
    let runner = Runner::new(engine.clone());
    let poller = runner.start_polling(Duration::from_millis(500));
    note!(
        "worker {} consuming {} (prefetch {}, {} attempts)",
        engine.owner,
        crate::secret::redact_urls(&a.queue),
        a.prefetch,
        a.max_attempts
    );
    shutdown.await;
    poller.cancel();
    stages.cancel();
    note!("worker stopped: unacknowledged messages go back to the queue");
    Ok(ExitCode::SUCCESS)
}
