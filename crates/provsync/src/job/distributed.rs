//! The distributed runtime's pipeline (DESIGN section 6): the job's driver extracts
//! pages and publishes them to the transform queue; any number of workers map
//! them ([`transform::transform_page`]), publish the mapped page to the load
//! queue, and load it ([`load::load_page`]): the same stage code as the embedded
//! runtime. A message is acknowledged only after its effect is committed (the
//! next message published, or the page committed in the store), so a worker
//! killed at any moment loses nothing; a redelivered page changes nothing (the
//! ledger is keyed by job and page).
//!
//! The driver keeps a bounded window of pages in flight (extracted, not yet
//! loaded) as backpressure, then waits for every page to be loaded (the barrier
//! before relations). A message that fails every allowed attempt is dead-lettered;
//! whoever reads the dead-letter queue books its page as rejected with the reason
//! and fails the job.
//!
//! Runs always stop. The driver's [`Lookout`] asks the broker how many consumers
//! the stage queues have: with none, it says so (a warning, repeated, and the job's
//! note). After an abort or a failure the driver waits for the pages handed to
//! workers at most [`STOP_GRACE`], and not at all when no worker consumes; the
//! pages left are reported as not loaded in the summary. A worker that lacks what
//! a job needs (a secret's variable, the mapping file) fails the job at once and
//! dead-letters its pages without retrying them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use provsync_core::job::{Counts, JobEvent, JobId, KindCounts, Threshold};
use provsync_core::model::EntityKind;
use provsync_core::source::Page;
use provsync_core::store::{ErrorEntry, PageCommit};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::transform::TransformedPage;
use super::{abort, extract, load, transform, Engine, EngineError, JobContext};
use crate::queue::{Delivery, Headers, Queue, StageQueue, JOB_HEADER, PAGE_HEADER, REASON_HEADER};

/// Pages extracted but not yet loaded, at most, per job.
pub const WINDOW: u64 = 8;
/// How often the driver looks at the ledger while it waits.
const POLL: Duration = Duration::from_millis(100);
/// How often the driver's lookout counts consumers and reads the job's flags.
const LOOK: Duration = Duration::from_secs(1);
/// Looks in a row that must find no consumer before the driver says so (a worker
/// resubscribing after a broker hiccup is not "no worker").
const IDLE_LOOKS: u32 = 2;
/// How often the "no worker" warning is repeated while it holds.
const REMIND: Duration = Duration::from_secs(30);
/// After an abort or a failure, how long the driver waits at most for the pages it
/// handed to workers before it finishes the job without them (README documents
/// the bound an abort takes).
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// The job's note while no worker consumes the stage queues.
pub const NO_WORKER_NOTE: &str = "no worker consumes the stage queues: pages wait until a \
    `provsync worker` runs with this run's --state and --queue";

/// The body of a transform message.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransformMessage {
    /// The job.
    pub job: JobId,
    /// Ledger page number.
    pub page_no: u64,
    /// The page as the source returned it.
    pub page: Page,
}

/// The body of a load message.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadMessage {
    /// The job.
    pub job: JobId,
    /// The mapped page.
    pub page: TransformedPage,
}

fn headers(job: &JobId, page_no: u64) -> Headers {
    Headers::from([
        (JOB_HEADER.to_owned(), job.to_string()),
        (PAGE_HEADER.to_owned(), page_no.to_string()),
    ])
}

fn queue_err(e: crate::queue::QueueError) -> EngineError {
    EngineError::Task(e.to_string())
}

/// Publishes one extracted page to the transform queue.
pub async fn publish_page(
    queue: &dyn Queue,
    job: &JobId,
    page_no: u64,
    page: Page,
) -> Result<(), EngineError> {
    let msg = TransformMessage {
        job: job.clone(),
        page_no,
        page,
    };
    let body = serde_json::to_vec(&msg).map_err(|e| EngineError::Task(e.to_string()))?;
    queue
        .publish(StageQueue::Transform, &headers(job, page_no), &body)
        .await
        .map_err(queue_err)
}

/// How long the driver's waits ride out a state store that does not answer (a
/// PostgreSQL restart) before giving the job up to its lease.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// Pages recorded in the ledger and pages loaded.
async fn ledger_progress(ctx: &JobContext) -> Result<(u64, u64), EngineError> {
    let started = std::time::Instant::now();
    loop {
        match ctx.store().page_progress(&ctx.id).await {
            Ok(progress) => return Ok(progress),
            Err(provsync_core::store::StoreError::Backend(e))
                if started.elapsed() < STORE_PATIENCE =>
            {
                tracing::warn!(job = %ctx.id, error = %e, "state store unavailable; waiting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until fewer than [`WINDOW`] pages are in flight (or the job stops).
pub async fn wait_for_window(ctx: &JobContext) -> Result<(), EngineError> {
    loop {
        let (recorded, loaded) = ledger_progress(ctx).await?;
        if recorded - loaded < WINDOW || ctx.stop.is_cancelled() {
            return Ok(());
        }
        check_count_threshold(ctx).await?;
        tokio::time::sleep(POLL).await;
    }
}

/// The barrier: waits until every recorded page is loaded (by any worker). Once
/// the job stops (abort, failure), it waits for them at most [`STOP_GRACE`], and
/// not at all while no worker consumes: the pages left show as not loaded.
pub async fn wait_until_loaded(ctx: &JobContext, lookout: &Lookout) -> Result<(), EngineError> {
    let mut last = (u64::MAX, u64::MAX);
    let mut stopped: Option<Instant> = None;
    loop {
        let (recorded, loaded) = ledger_progress(ctx).await?;
        if loaded >= recorded {
            return Ok(());
        }
        if ctx.stop.is_cancelled() {
            let since = *stopped.get_or_insert_with(Instant::now);
            let idle = lookout.idle();
            if idle || since.elapsed() >= STOP_GRACE {
                tracing::warn!(job = %ctx.id, not_loaded = recorded - loaded,
                    "the job stops without waiting for its remaining pages ({})",
                    if idle { "no worker consumes" } else { "grace period over" });
                return Ok(());
            }
        }
        if (recorded, loaded) != last {
            tracing::debug!(job = %ctx.id, recorded, loaded, "waiting for workers to load pages");
            last = (recorded, loaded);
        }
        check_count_threshold(ctx).await?;
        tokio::time::sleep(POLL).await;
    }
}

/// What the driver's lookout saw: whether any worker consumes the stage queues.
#[derive(Debug, Default)]
pub struct Lookout {
    idle: AtomicBool,
}

impl Lookout {
    /// True while no worker consumes the transform or the load queue.
    pub fn idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Starts looking, every [`LOOK`], until the guard is dropped: counts the stage
    /// queues' consumers (saying so when there are none) and stops extraction when
    /// the job is aborted or failed (by a worker) meanwhile.
    pub fn spawn(ctx: Arc<JobContext>, queue: Arc<dyn Queue>) -> (Arc<Lookout>, DropGuard) {
        let lookout = Arc::new(Lookout::default());
        let token = CancellationToken::new();
        let stop = token.clone();
        let me = lookout.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOOK);
            let mut idle_looks = 0;
            let mut said: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = stop_if_ended_elsewhere(&ctx).await {
                    tracing::debug!(job = %ctx.id, error = %e, "cannot read the job");
                }
                idle_looks = match has_consumers(queue.as_ref()).await {
                    Ok(false) => idle_looks + 1,
                    Ok(true) => 0,
                    Err(e) => {
                        tracing::debug!(job = %ctx.id, error = %e, "cannot count consumers");
                        continue;
                    }
                };
                me.idle.store(idle_looks >= IDLE_LOOKS, Ordering::Relaxed);
                match (me.idle(), said) {
                    (true, None) => {
                        tracing::warn!(job = %ctx.id, "{NO_WORKER_NOTE}");
                        let _ = ctx.store().set_note(&ctx.id, Some(NO_WORKER_NOTE)).await;
                        said = Some(Instant::now());
                    }
                    (true, Some(at)) if at.elapsed() >= REMIND => {
                        tracing::warn!(job = %ctx.id, "{NO_WORKER_NOTE}");
                        said = Some(Instant::now());
                    }
                    (false, Some(_)) => {
                        tracing::info!(job = %ctx.id, "a worker consumes the stage queues");
                        clear_note(&ctx).await;
                        said = None;
                    }
                    _ => {}
                }
            }
            if said.is_some() {
                clear_note(&ctx).await;
            }
        });
        (lookout, token.drop_guard())
    }
}

/// Whether both stages that move pages (transform, load) have a consumer.
async fn has_consumers(queue: &dyn Queue) -> Result<bool, crate::queue::QueueError> {
    for q in [StageQueue::Transform, StageQueue::Load] {
        if queue.consumers(q).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Clears the "no worker" note, unless another note (parking) replaced it.
async fn clear_note(ctx: &JobContext) {
    if let Ok(job) = ctx.store().job(&ctx.id).await {
        if job.note.as_deref() == Some(NO_WORKER_NOTE) {
            let _ = ctx.store().set_note(&ctx.id, None).await;
        }
    }
}

/// Stops extraction when the job was aborted (`provsync abort`, the API, Ctrl-C of
/// the driving run) or failed in another process (a worker).
async fn stop_if_ended_elsewhere(ctx: &JobContext) -> Result<(), EngineError> {
    if ctx.stop.is_cancelled() {
        return Ok(());
    }
    let job = ctx.store().job(&ctx.id).await?;
    if job.failure.is_some() {
        tracing::warn!(job = %ctx.id, "the job failed in a worker: extraction stops");
        ctx.stop.cancel();
    } else if abort::enter_aborting_if_requested(&ctx.engine, &ctx.id).await? {
        tracing::info!(job = %ctx.id, "abort requested: extraction stops");
        ctx.stop.cancel();
    }
    Ok(())
}

/// Fails the job once a count threshold is crossed (workers only commit pages;
/// the driver judges the totals, as the embedded load stage does).
async fn check_count_threshold(ctx: &JobContext) -> Result<(), EngineError> {
    let threshold = ctx.spec.options.max_failed_records;
    if !matches!(threshold, Threshold::Count(_)) || ctx.stop.is_cancelled() {
        return Ok(());
    }
    let t = ctx.store().counts(&ctx.id).await?.total();
    if threshold.exceeded(t.errors(), t.extracted) {
        extract::fail(
            ctx,
            &format!(
                "max_failed_records exceeded: {} of {} records rejected or failed",
                t.errors(),
                t.extracted
            ),
        )
        .await?;
    }
    Ok(())
}

/// Runs the stage consumers of one worker process: transform, load and the
/// dead-letter queue, each with `prefetch` messages in hand.
#[derive(Clone)]
pub struct StageWorker {
    engine: Engine,
    queue: Arc<dyn Queue>,
    contexts: Arc<Mutex<HashMap<JobId, Arc<JobContext>>>>,
    /// Jobs this process cannot run, and why (it failed them).
    unfit: Arc<Mutex<HashMap<JobId, String>>>,
}

impl StageWorker {
    /// A worker over the engine's store and `queue`.
    pub fn new(engine: Engine, queue: Arc<dyn Queue>) -> Self {
        Self {
            engine,
            queue,
            contexts: Arc::default(),
            unfit: Arc::default(),
        }
    }

    /// Starts the consumers; they stop when the token is cancelled.
    pub async fn start(&self, prefetch: u16) -> Result<CancellationToken, EngineError> {
        let token = CancellationToken::new();
        for stage in StageQueue::ALL {
            let mut rx = self
                .queue
                .consume(stage, prefetch)
                .await
                .map_err(queue_err)?;
            let me = self.clone();
            let stop = token.clone();
            tokio::spawn(async move {
                let mut tasks = tokio::task::JoinSet::new();
                loop {
                    let delivery = tokio::select! {
                        _ = stop.cancelled() => break,
                        d = rx.recv() => match d { Some(d) => d, None => break },
                    };
                    let me = me.clone();
                    tasks.spawn(async move { me.handle(stage, delivery).await });
                    while tasks.try_join_next().is_some() {}
                }
                // Unsettled deliveries go back to the queue when dropped.
                tasks.abort_all();
            });
        }
        Ok(token)
    }

    async fn handle(&self, stage: StageQueue, d: Delivery) {
        let job = d.job().unwrap_or("?").to_owned();
        let page = d.page();
        let result = match stage {
            StageQueue::Transform => self.transform(&d).await,
            StageQueue::Load => self.load(&d).await,
            StageQueue::Dead => self.dead_letter(&d).await,
        };
        let settled = match result {
            Ok(()) => d.ack().await,
            // The job has failed already, saying why: retrying cannot help.
            Err(e @ EngineError::Unfit(_)) => {
                d.dead_letter(&format!("{} stage: {e}", stage.as_str()))
                    .await
            }
            Err(e) => {
                let attempt = d.attempt;
                tracing::warn!(stage = stage.as_str(), %job, ?page, attempt, error = %e,
                    "stage message failed; it will be retried or dead-lettered");
                // Back off before handing it back: a target or store outage should
                // not burn the attempts in a second.
                tokio::time::sleep(Duration::from_millis(500) * attempt.min(10)).await;
                d.retry(&format!("{} stage, attempt {attempt}: {e}", stage.as_str()))
                    .await
            }
        };
        if let Err(e) = settled {
            // The broker will deliver it again: its effect is idempotent.
            tracing::warn!(stage = stage.as_str(), %job, ?page, error = %e, "cannot settle a message");
        }
    }

    /// The job's context, opened once per worker; `None` once the job has ended
    /// (its summary is written: a page loaded now would not be in it).
    async fn context(&self, job: &JobId) -> Result<Option<Arc<JobContext>>, EngineError> {
        if let Some(why) = self.unfit.lock().await.get(job) {
            return Err(EngineError::Unfit(why.clone()));
        }
        let record = self.engine.store.job(job).await?;
        if record.state.is_terminal() {
            return Ok(None);
        }
        if let Some(c) = self.contexts.lock().await.get(job) {
            return Ok(Some(c.clone()));
        }
        let ctx = match JobContext::open(&self.engine, &record).await {
            Ok(ctx) => Arc::new(ctx),
            Err(e) if e.is_setup() => return Err(self.refuse(job, &e).await),
            Err(e) => return Err(e),
        };
        let mut map = self.contexts.lock().await;
        if let Some(c) = map.get(job) {
            return Ok(Some(c.clone())); // opened meanwhile by another delivery
        }
        // Forget contexts of ended jobs (their connectors hold pools).
        if map.len() > 16 {
            let mut ended = Vec::new();
            for id in map.keys() {
                if matches!(self.engine.store.job(id).await, Ok(j) if j.state.is_terminal()) {
                    ended.push(id.clone());
                }
            }
            let mut unfit = self.unfit.lock().await;
            for id in ended {
                map.remove(&id);
                unfit.remove(&id);
            }
        }
        map.insert(job.clone(), ctx.clone());
        Ok(Some(ctx))
    }

    /// Fails a job this process cannot run (once), naming what it lacks; its
    /// pages are then dead-lettered at once instead of after every attempt.
    async fn refuse(&self, job: &JobId, e: &EngineError) -> EngineError {
        let why = format!("worker {} cannot run the job: {e}", self.engine.owner);
        let mut unfit = self.unfit.lock().await;
        if !unfit.contains_key(job) {
            tracing::error!(%job, reason = %why, "this worker lacks what the job needs: the job fails");
            unfit.insert(job.clone(), why.clone());
            // The driver sees the failure at its next look and stops.
            if let Err(e) = self.engine.apply(job, JobEvent::Fail(why.clone())).await {
                tracing::warn!(%job, error = %e, "cannot mark the job failed");
            }
        }
        EngineError::Unfit(why)
    }

    async fn transform(&self, d: &Delivery) -> Result<(), EngineError> {
        let msg: TransformMessage = serde_json::from_slice(&d.body)
            .map_err(|e| EngineError::Task(format!("unreadable transform message: {e}")))?;
        let Some(ctx) = self.context(&msg.job).await? else {
            return Ok(()); // the job has ended: nothing to do
        };
        let mapping = ctx.mapping.clone();
        let page_no = msg.page_no;
        let out = tokio::task::spawn_blocking(move || {
            transform::transform_page(&mapping, page_no, msg.page)
        })
        .await
        .map_err(|e| EngineError::Task(e.to_string()))?;
        let body = serde_json::to_vec(&LoadMessage {
            job: ctx.id.clone(),
            page: out,
        })
        .map_err(|e| EngineError::Task(e.to_string()))?;
        self.queue
            .publish(StageQueue::Load, &headers(&ctx.id, page_no), &body)
            .await
            .map_err(queue_err)
    }

    async fn load(&self, d: &Delivery) -> Result<(), EngineError> {
        let msg: LoadMessage = serde_json::from_slice(&d.body)
            .map_err(|e| EngineError::Task(format!("unreadable load message: {e}")))?;
        let Some(ctx) = self.context(&msg.job).await? else {
            return Ok(());
        };
        load::load_page(&ctx, msg.page).await?;
        Ok(())
    }

    /// Books a dead-lettered page as rejected, with the reason, and fails its job.
    async fn dead_letter(&self, d: &Delivery) -> Result<(), EngineError> {
        let reason = d.headers.get(REASON_HEADER).cloned().unwrap_or_else(|| {
            "delivered too many times without being settled (consumers crashed or stalled on it)"
                .to_owned()
        });
        let (Some(job), Some(page_no)) = (d.job().map(JobId::from), d.page()) else {
            tracing::error!(%reason, headers = ?d.headers, "dead letter without job or page: dropped");
            return Ok(());
        };
        let Ok(record) = self.engine.store.job(&job).await else {
            tracing::error!(%job, page_no, %reason, "dead letter of an unknown job: dropped");
            return Ok(());
        };
        if record.state.is_terminal() {
            // Its summary counts the page as not loaded already.
            tracing::warn!(%job, page_no, %reason, "dead letter of an ended job: dropped");
            return Ok(());
        }
        let pages = self.engine.store.pages(&job).await?;
        let Some(entry) = pages.iter().find(|p| p.page_no == page_no) else {
            tracing::error!(%job, page_no, %reason, "dead letter of a page not in the ledger: dropped");
            return Ok(());
        };
        let mut counts = KindCounts::default();
        // The page could not be read or mapped: its records are rejected as a whole
        // (counted with individuals, the bulk of any feed), so the run's counts
        // still reconcile.
        *counts.kind_mut(EntityKind::Individual) = Counts {
            extracted: entry.records,
            rejected: entry.records,
            ..Counts::default()
        };
        let why = format!("page {page_no} dead-lettered: {reason}");
        let commit = PageCommit {
            counts,
            errors: vec![ErrorEntry {
                page_no: Some(page_no),
                stage: "queue".into(),
                kind: None,
                source_id: None,
                reason: why.clone(),
            }],
            ..PageCommit::default()
        };
        let fresh = self
            .engine
            .store
            .commit_page(&job, &record.target, page_no, &commit)
            .await?;
        if fresh {
            tracing::error!(%job, page_no, %reason, "poison message: the job fails");
            self.engine.store.record_failure(&job, &why).await?;
            // The driver sees the failure at its next look and finishes the job.
            if let Err(e) = self.engine.apply(&job, JobEvent::Fail(why)).await {
                tracing::warn!(%job, error = %e, "cannot mark the job failed");
            }
        }
        Ok(())
    }
}
