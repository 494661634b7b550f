//! Load (seed step 2.3): skip records whose content hash the target already has,
//! upsert the rest in target-sized batches (links too when both their ends are
//! loaded; the others are staged for the relations stage), and commit the page's
//! effects with its ledger mark in one store transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use provsync_core::job::{Counts, KindCounts, Threshold};
use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::store::{Claim, ErrorEntry, HashUpdate, KnownRecord, PageCommit};
use provsync_core::target::{Applied, Change, Joined, Outcome, Write};
use tokio::sync::{mpsc, Mutex};

use super::extract::fail;
use super::transform::TransformedPage;
use super::{EngineError, JobContext, Progress};

/// Running totals shared by the load workers (for the failure threshold).
struct Totals {
    counts: Counts,
    over_threshold: bool,
}

/// Loads pages until the channel closes, with `options.load_workers` pages in
/// flight; stops the job when the failure threshold is crossed. Pages may commit
/// out of order: the ledger keys every effect by page.
pub async fn run(
    ctx: Arc<JobContext>,
    rx: mpsc::Receiver<TransformedPage>,
) -> Result<(), EngineError> {
    // Seeded from the store so a resumed job counts what it did before.
    let totals = Arc::new(Mutex::new(Totals {
        counts: ctx.store().counts(&ctx.id).await?.total(),
        over_threshold: false,
    }));
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.spec.options.load_workers.max(1) {
        workers.spawn(worker(ctx.clone(), rx.clone(), totals.clone()));
    }
    let mut result = Ok(());
    while let Some(joined) = workers.join_next().await {
        let outcome = joined
            .map_err(|e| EngineError::Task(e.to_string()))
            .and_then(|r| r);
        if let (Err(e), Ok(())) = (outcome, &result) {
            // Stop the other workers' source of pages: the job is failing.
            ctx.stop.cancel();
            rx.lock().await.close();
            result = Err(e);
        }
    }
    result
}

async fn worker(
    ctx: Arc<JobContext>,
    rx: Arc<Mutex<mpsc::Receiver<TransformedPage>>>,
    totals: Arc<Mutex<Totals>>,
) -> Result<(), EngineError> {
    loop {
        let Some(page) = rx.lock().await.recv().await else {
            return Ok(());
        };
        let page_no = page.page_no;
        let started = std::time::Instant::now();
        let loaded = load_page(&ctx, page).await?;
        Progress::time(&ctx.engine.progress.load_ns, started);
        let Some(counts) = loaded else {
            tracing::debug!(job = %ctx.id, page = page_no, "page already loaded: skipped");
            continue;
        };
        Progress::add(&ctx.engine.progress.loaded, counts.total().extracted);
        let crossed = {
            let mut t = totals.lock().await;
            t.counts += counts.total();
            // A count only grows, so crossing it mid-run is final; a ratio over the
            // pages loaded so far says nothing of the whole run (one file of
            // duplicates among clean ones), so ratios are judged at finish.
            let threshold = ctx.spec.options.max_failed_records;
            let crossed = matches!(threshold, Threshold::Count(_))
                && !t.over_threshold
                && threshold.exceeded(t.counts.errors(), t.counts.extracted);
            t.over_threshold |= crossed;
            crossed.then_some((t.counts.errors(), t.counts.extracted))
        };
        if let Some((errors, extracted)) = crossed {
            fail(
                &ctx,
                &format!(
                    "max_failed_records exceeded: {errors} of {extracted} records rejected or failed"
                ),
            )
            .await?;
        }
    }
}

/// Loads one page; `None` if the ledger says it was loaded before (a replay).
/// The same code in both runtimes.
pub async fn load_page(
    ctx: &JobContext,
    page: TransformedPage,
) -> Result<Option<KindCounts>, EngineError> {
    let mut commit = PageCommit {
        counts: page.counts,
        errors: page.errors,
        ..PageCommit::default()
    };
    claim_rejected(ctx, &commit.errors).await?;
    let mut by_kind: BTreeMap<EntityKind, Vec<MappedRecord>> = BTreeMap::new();
    for r in page.records {
        by_kind.entry(r.kind).or_default().push(r);
    }
    for (kind, records) in by_kind {
        let records = claim(ctx, page.page_no, kind, records, &mut commit).await?;
        let (writes, joined) = classify(ctx, kind, records, &mut commit).await?;
        write_batches(ctx, page.page_no, kind, writes, &joined, &mut commit).await?;
    }
    let counts = commit.counts.clone();
    let started = std::time::Instant::now();
    let fresh = ctx
        .store()
        .commit_page(&ctx.id, &ctx.target_name, page.page_no, &commit)
        .await?;
    Progress::time(&ctx.engine.progress.load_commit_ns, started);
    Ok(fresh.then_some(counts))
}

/// Claims the records this page rejected by id: the source still has them (only
/// this copy was refused), so the sweep must not disconnect them. They name no
/// scope, so they make no conflict, and a good copy on any page (loaded before or
/// after this one) takes their claim over.
async fn claim_rejected(ctx: &JobContext, errors: &[ErrorEntry]) -> Result<(), EngineError> {
    let mut by_kind: BTreeMap<EntityKind, Vec<(SourceId, Scope)>> = BTreeMap::new();
    for e in errors {
        if let (Some(kind), Some(id)) = (e.kind, &e.source_id) {
            by_kind
                .entry(kind)
                .or_default()
                .push((SourceId(id.clone()), Scope(String::new())));
        }
    }
    for (kind, ids) in by_kind {
        ctx.store().claim_records(&ctx.id, None, kind, &ids).await?;
    }
    Ok(())
}

/// Claims the page's records for the run and rejects the copies another page
/// claimed first: a duplicate when it listed them in the same scope (the first copy
/// is kept, whatever the page size), a conflict when another scope listed them (the
/// record is moved by neither: `classify` holds scope moves until the barrier).
async fn claim(
    ctx: &JobContext,
    page_no: u64,
    kind: EntityKind,
    records: Vec<MappedRecord>,
    commit: &mut PageCommit,
) -> Result<Vec<MappedRecord>, EngineError> {
    let keys: Vec<(SourceId, Scope)> = records
        .iter()
        .map(|r| (r.source_id.clone(), r.scope.clone()))
        .collect();
    let claims = ctx
        .store()
        .claim_records(&ctx.id, Some(page_no), kind, &keys)
        .await?;
    let mut kept = Vec::with_capacity(records.len());
    for record in records {
        match claims.get(&record.source_id) {
            Some(c) if c.page_no != page_no => {
                let reason = if c.conflicts_with(&record.scope) {
                    conflict_reason(c, &record.scope)
                } else {
                    format!(
                        "duplicate source_id in this run: page {} delivered it first, and that copy was kept",
                        c.page_no
                    )
                };
                commit.counts.kind_mut(kind).rejected += 1;
                commit.errors.push(ErrorEntry {
                    page_no: Some(page_no),
                    stage: "load".into(),
                    kind: Some(kind),
                    source_id: Some(record.source_id.0),
                    reason,
                });
            }
            _ => kept.push(record),
        }
    }
    Ok(kept)
}

/// Why a copy listed in `scope` is refused when `claim` holds the record.
pub(super) fn conflict_reason(claim: &Claim, scope: &Scope) -> String {
    format!(
        "conflict: listed in two scopes in this run, `{}` (page {}) and `{}`; the record is moved by neither",
        claim.scope, claim.page_no, scope
    )
}

/// How writing `record` joins its scope, judged from what the state store knows
/// (the target's own answer, when it gives one, wins): a move is a new scope or,
/// as the SQL targets' change logs count it, a new anchor (an activity's workplace).
pub(super) fn judged_join(known: Option<&KnownRecord>, record: &MappedRecord) -> Joined {
    match known {
        None => Joined::Connected,
        Some(k) if !k.connected => Joined::Connected,
        Some(k) if k.scope != record.scope => Joined::Moved,
        Some(k) if k.anchor.is_some() && k.anchor.as_deref() != record.anchor() => Joined::Moved,
        Some(_) => Joined::Stayed,
    }
}

/// Whether writing `record` moves a connected record to another scope.
pub(super) fn moves_scope(known: &KnownRecord, record: &MappedRecord) -> bool {
    known.connected && known.scope != record.scope
}

/// Splits records into unchanged (counted, not written), scope moves (deferred to
/// the relations stage) and writes (created or updated), with how each write joins
/// its scope.
async fn classify(
    ctx: &JobContext,
    kind: EntityKind,
    records: Vec<MappedRecord>,
    commit: &mut PageCommit,
) -> Result<(Vec<Write>, Vec<Joined>), EngineError> {
    let ids: Vec<SourceId> = records.iter().map(|r| r.source_id.clone()).collect();
    let started = std::time::Instant::now();
    let known = ctx
        .store()
        .known_records(&ctx.target_name, kind, &ids)
        .await?;
    Progress::time(&ctx.engine.progress.load_known_ns, started);
    let mut writes = Vec::with_capacity(records.len());
    let mut joined = Vec::with_capacity(records.len());
    let counts = commit.counts.kind_mut(kind);
    for record in records {
        let k = known.get(&record.source_id);
        let change = match k {
            Some(k) if k.hash == record.hash && k.connected => {
                counts.unchanged += 1;
                continue;
            }
            // A move to another scope waits for the barrier: only then is it known
            // that no other scope listed the record too (a conflict moves nobody).
            // Its outcome is counted on this page then (`LinkCommit::pages`).
            Some(k) if moves_scope(k, &record) => {
                commit.staged.push(record);
                continue;
            }
            Some(_) => Change::Updated,
            None => Change::Created,
        };
        joined.push(judged_join(k, &record));
        writes.push(Write { record, change });
    }
    Ok((writes, joined))
}

/// Writes entities, and links whose ends the target already has (most of them:
/// sources send entities before the activities that join them). A link with an
/// end not loaded yet is staged for the relations stage, after the barrier.
async fn write_batches(
    ctx: &JobContext,
    page_no: u64,
    kind: EntityKind,
    writes: Vec<Write>,
    joined: &[Joined],
    commit: &mut PageCommit,
) -> Result<(), EngineError> {
    let batch = ctx
        .spec
        .options
        .batch_size
        .min(ctx.target.limits().max_batch)
        .max(1);
    for (chunk, joined) in writes.chunks(batch).zip(joined.chunks(batch)) {
        let started = std::time::Instant::now();
        let outcomes = if kind.is_link() {
            ctx.target.upsert_links(&ctx.run, chunk).await?
        } else {
            ctx.target.upsert(&ctx.run, chunk).await?
        };
        Progress::time(&ctx.engine.progress.load_target_ns, started);
        let mut ledger = Ledger {
            counts: &mut commit.counts,
            errors: &mut commit.errors,
            written: &mut commit.written,
            staged: Some(&mut commit.staged),
            deferred_links: false,
        };
        book_outcomes(kind, chunk, joined, outcomes, |_| page_no, &mut ledger);
    }
    Ok(())
}

/// Where a batch's outcomes are booked: a page commit (load) or a link chunk
/// (relations stage, after the barrier, where a missing end is final).
pub(super) struct Ledger<'a> {
    /// Counts per kind.
    pub counts: &'a mut KindCounts,
    /// Failed records.
    pub errors: &'a mut Vec<ErrorEntry>,
    /// Written records' hashes.
    pub written: &'a mut Vec<HashUpdate>,
    /// Links to retry after the barrier (`None`: this is the relations stage).
    pub staged: Option<&'a mut Vec<MappedRecord>>,
    /// Whether the records are links deferred at load (their outcomes are counted
    /// as relations loaded or failed too); false at load, and for scope moves.
    pub deferred_links: bool,
}

/// Books the target's per-record answers in the target's own terms: created,
/// updated or unchanged as it says (links as entities), how each record joined its
/// scope, hashes of what it holds now, deferred links, failures; `page_of(i)` is the
/// page of the batch's i-th record.
pub(super) fn book_outcomes(
    kind: EntityKind,
    chunk: &[Write],
    joined: &[Joined],
    outcomes: Vec<Outcome>,
    page_of: impl Fn(usize) -> u64,
    ledger: &mut Ledger<'_>,
) {
    let relations_stage = ledger.staged.is_none();
    let stage = if relations_stage { "relations" } else { "load" };
    let counts = ledger.counts.kind_mut(kind);
    for (i, (w, outcome)) in chunk.iter().zip(outcomes).enumerate() {
        let target_id = match outcome {
            Outcome::Written { target_id, applied } => {
                let judged = Applied {
                    change: w.change,
                    joined: joined.get(i).copied().unwrap_or(Joined::Stayed),
                };
                let applied = applied.unwrap_or(judged);
                match applied.change {
                    Change::Created => counts.created += 1,
                    Change::Updated => counts.updated += 1,
                }
                match applied.joined {
                    Joined::Connected => counts.connected += 1,
                    Joined::Moved => counts.moved += 1,
                    Joined::Stayed => {}
                }
                target_id
            }
            // The store learns the target's hash, so the next run skips it.
            Outcome::Unchanged => {
                counts.unchanged += 1;
                None
            }
            Outcome::Unresolved { reason } => match ledger.staged.as_mut() {
                Some(staged) => {
                    counts.relations_staged += 1;
                    staged.push(w.record.clone());
                    continue;
                }
                None => {
                    let deferred = ledger.deferred_links;
                    book_failure(
                        counts,
                        ledger.errors,
                        w,
                        page_of(i),
                        stage,
                        reason,
                        deferred,
                    );
                    continue;
                }
            },
            Outcome::Failed { reason } => {
                book_failure(
                    counts,
                    ledger.errors,
                    w,
                    page_of(i),
                    stage,
                    reason,
                    ledger.deferred_links,
                );
                continue;
            }
        };
        if ledger.deferred_links {
            counts.relations_loaded += 1;
        }
        ledger.written.push(HashUpdate {
            kind,
            source_id: w.record.source_id.clone(),
            scope: w.record.scope.clone(),
            hash: w.record.hash,
            target_id,
            anchor: w.record.anchor().map(str::to_owned),
        });
    }
}

/// A record the target refused (or a link whose end is missing after the barrier).
fn book_failure(
    counts: &mut Counts,
    errors: &mut Vec<ErrorEntry>,
    w: &Write,
    page_no: u64,
    stage: &str,
    reason: String,
    deferred_link: bool,
) {
    counts.failed += 1;
    if deferred_link {
        counts.relations_failed += 1;
    }
    errors.push(ErrorEntry {
        page_no: Some(page_no),
        stage: stage.into(),
        kind: Some(w.record.kind),
        source_id: Some(w.record.source_id.0.clone()),
        reason,
    });
}
