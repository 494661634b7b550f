//! Extract (seed step 2.1): fetch one page at a time by cursor, record it in the
//! ledger, hand it to transform; stop on abort or failure. One page in flight per
//! source session, like the seed's "Next Packet" queue; transform and load run
//! concurrently behind bounded channels (backpressure).

use std::sync::Arc;

use provsync_core::job::JobEvent;
use provsync_core::source::{Cursor, OpenRequest, Page};
use provsync_core::store::Checkpoint;
use tokio::sync::mpsc;

use super::{abort, distributed, load, transform, EngineError, JobContext, Progress};

/// Pages buffered between stages: enough to overlap I/O and CPU, small enough to
/// keep memory flat.
const CHANNEL_PAGES: usize = 1;

/// Runs extract -> transform -> load until the source is exhausted, the job is
/// aborted or a stage fails. Failures are recorded on the job, not returned: the job
/// still goes on to process relations of loaded pages and finish.
pub async fn run(ctx: &Arc<JobContext>) -> Result<(), EngineError> {
    if let Some(queue) = ctx.engine.queue.clone() {
        return run_distributed(ctx, queue).await;
    }
    let (page_tx, page_rx) = mpsc::channel(CHANNEL_PAGES);
    let (batch_tx, batch_rx) = mpsc::channel(CHANNEL_PAGES);
    let transform = tokio::spawn(transform::run(ctx.clone(), page_rx, batch_tx));
    let load = tokio::spawn(load::run(ctx.clone(), batch_rx));
    let extracted = extract_pages(ctx, Sink::Channel(page_tx)).await;
    let transformed = transform.await;
    let loaded = load.await;
    for (stage, result) in [("transform", transformed), ("load", loaded)] {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(ctx, &format!("{stage}: {e}")).await?,
            Err(e) => fail(ctx, &format!("{stage} task: {e}")).await?,
        }
    }
    if let Err(e) = extracted {
        fail(ctx, &e.to_string()).await?;
    }
    Ok(())
}

/// The distributed runtime: pages go to the transform queue, any worker maps and
/// loads them; the driver waits for every page to be loaded (the barrier).
async fn run_distributed(
    ctx: &Arc<JobContext>,
    queue: Arc<dyn crate::queue::Queue>,
) -> Result<(), EngineError> {
    // Looks for workers, aborts and failures until the pages are loaded.
    let (lookout, _looking) = distributed::Lookout::spawn(ctx.clone(), queue.clone());
    let extracted = extract_pages(ctx, Sink::Queue(queue)).await;
    if let Err(e) = extracted {
        fail(ctx, &e.to_string()).await?;
    }
    distributed::wait_until_loaded(ctx, &lookout).await
}

/// Where extracted pages go.
enum Sink {
    /// The embedded runtime's transform task.
    Channel(mpsc::Sender<(u64, Page)>),
    /// The distributed runtime's transform queue.
    Queue(Arc<dyn crate::queue::Queue>),
}

impl Sink {
    /// Hands a page on; false when the embedded transform stage has stopped.
    async fn send(&self, ctx: &JobContext, page_no: u64, page: Page) -> Result<bool, EngineError> {
        match self {
            Sink::Channel(tx) => Ok(tx.send((page_no, page)).await.is_ok()),
            Sink::Queue(q) => {
                distributed::publish_page(q.as_ref(), &ctx.id, page_no, page).await?;
                // Backpressure: no more than a window of pages in flight.
                distributed::wait_for_window(ctx).await?;
                Ok(true)
            }
        }
    }
}

/// Records a failure on the job and stops extraction.
pub async fn fail(ctx: &JobContext, reason: &str) -> Result<(), EngineError> {
    tracing::error!(job = %ctx.id, %reason, "job failing");
    ctx.stop.cancel();
    ctx.engine
        .apply(&ctx.id, JobEvent::Fail(reason.to_owned()))
        .await?;
    Ok(())
}

/// Where extraction starts: the first page not yet loaded (fetched again after a
/// crash), else the checkpoint, else a new source session's first cursor.
async fn start_point(ctx: &JobContext) -> Result<Option<(u64, Cursor)>, EngineError> {
    let store = ctx.store();
    let req = OpenRequest {
        scope: ctx.spec.scope.clone(),
        mode: ctx.spec.mode,
        page_size: ctx.spec.options.page_size,
    };
    // Open the session even on resume: the source may need it (sessions, page size).
    let first = ctx.source.open(&req).await?;
    let checkpoint = store.checkpoint(&ctx.id).await?;
    let Some(cp) = checkpoint else {
        store
            .set_checkpoint(
                &ctx.id,
                &Checkpoint {
                    next_page: 0,
                    next_cursor: Some(first.clone()),
                    extraction_complete: false,
                },
            )
            .await?;
        return Ok(Some((0, first)));
    };
    let pages = store.pages(&ctx.id).await?;
    if let Some(p) = pages.iter().find(|p| !p.loaded) {
        tracing::info!(job = %ctx.id, page = p.page_no, "resuming from the first page not loaded");
        return Ok(Some((p.page_no, p.cursor.clone())));
    }
    if cp.extraction_complete {
        return Ok(None);
    }
    Ok(cp.next_cursor.map(|c| (cp.next_page, c)))
}

async fn extract_pages(ctx: &JobContext, sink: Sink) -> Result<(), EngineError> {
    let result = match start_point(ctx).await {
        Ok(Some((page_no, cursor))) => fetch_pages(ctx, &sink, page_no, cursor).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    // Completed, aborted or failed: the source session ends (seed step 5.1).
    if let Err(e) = ctx.source.close().await {
        tracing::warn!(job = %ctx.id, error = %e, "closing the source session failed");
    }
    result
}

/// Fetches pages from `cursor` on until the last one, an abort, or a failure.
async fn fetch_pages(
    ctx: &JobContext,
    sink: &Sink,
    mut page_no: u64,
    mut cursor: Cursor,
) -> Result<(), EngineError> {
    let progress = &ctx.engine.progress;
    loop {
        if ctx.stop.is_cancelled() {
            break;
        }
        if abort::enter_aborting_if_requested(&ctx.engine, &ctx.id).await? {
            tracing::info!(job = %ctx.id, page = page_no, "abort requested: extraction stops");
            ctx.stop.cancel();
            break;
        }
        let started = std::time::Instant::now();
        let page = ctx.source.fetch(&cursor).await?;
        let records = (page.records.len() + page.bad.len()) as u64;
        let next = Checkpoint {
            next_page: page_no + 1,
            next_cursor: page.next.clone(),
            extraction_complete: page.next.is_none(),
        };
        if let Some(reason) = page.snapshot.as_ref().and_then(|s| s.failure()) {
            // Only this scope failed: extraction goes on, its sweep will not run.
            tracing::warn!(job = %ctx.id, page = page_no, %reason, "scope failed");
        }
        ctx.store()
            .record_page(
                &ctx.id,
                page_no,
                &cursor,
                records,
                page.snapshot.as_ref(),
                &next,
            )
            .await?;
        Progress::time(&progress.extract_ns, started);
        Progress::add(&progress.pages, 1);
        Progress::add(&progress.extracted, records);
        let position = match &page.next {
            Some(next) => ctx.source.position(next),
            None => ctx
                .source
                .position(&cursor)
                .map(|(_, total)| (total, total)),
        };
        if let Some((done, total)) = position {
            Progress::set(&progress.source_total, total);
            Progress::set(&progress.source_done, done);
        }
        let last = page.next.clone();
        if !sink.send(ctx, page_no, page).await? {
            // Transform stopped (it failed): its error is reported by `run`.
            break;
        }
        match last {
            Some(c) => {
                cursor = c;
                page_no += 1;
            }
            None => break,
        }
    }
    Ok(())
}
