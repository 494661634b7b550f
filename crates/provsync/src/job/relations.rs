//! Relations (seed step 2.4): once every entity page is loaded (a barrier, so both
//! ends exist), load the staged links chunk by chunk, grouped by parent (fewer lock
//! conflicts in targets that lock parents). An unresolved end is a per-link error.
//! Records moving to another scope wait here too: after the barrier, a move whose
//! record another scope also listed (a conflict) is refused, so nobody moves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::store::{ErrorEntry, KnownRecord, LinkCommit, StagedLink};
use provsync_core::target::{Change, Write};

use super::extract::fail;
use super::load::{self, book_outcomes, conflict_reason, judged_join, Ledger};
use super::{EngineError, JobContext, Progress};

/// Staged links read per store round trip.
const CHUNK: u32 = 5_000;

/// Loads every staged link of the job. A target failure fails the job and stops
/// the stage; links already committed stay committed.
pub async fn run(ctx: &Arc<JobContext>) -> Result<(), EngineError> {
    let started = std::time::Instant::now();
    let result = load_all(ctx).await;
    Progress::time(&ctx.engine.progress.relations_ns, started);
    result
}

async fn load_all(ctx: &Arc<JobContext>) -> Result<(), EngineError> {
    let mut after = i64::MIN;
    loop {
        let chunk = ctx.store().staged_links(&ctx.id, after, CHUNK).await?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        let upto = last.seq;
        match load_chunk(ctx, chunk, upto).await {
            Ok(commit) => {
                ctx.store()
                    .commit_links(&ctx.id, &ctx.target_name, &commit)
                    .await?
            }
            Err(EngineError::Target(e)) => {
                fail(ctx, &format!("relations: {e}")).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        after = upto;
    }
}

/// Writes deferred links, booked as the relations stage's own (`relations_loaded`,
/// `relations_failed`).
async fn write_links(
    ctx: &JobContext,
    kind: EntityKind,
    links: Vec<(u64, MappedRecord)>,
    known: &HashMap<SourceId, KnownRecord>,
    batch: usize,
    commit: &mut LinkCommit,
) -> Result<(), EngineError> {
    let mut pages = Vec::with_capacity(links.len());
    let mut writes = Vec::with_capacity(links.len());
    let mut joined = Vec::with_capacity(links.len());
    for (page, record) in links {
        let k = known.get(&record.source_id);
        pages.push(page);
        joined.push(judged_join(k, &record));
        writes.push(Write {
            change: change_of(k),
            record,
        });
    }
    for (i, (part, joined)) in writes.chunks(batch).zip(joined.chunks(batch)).enumerate() {
        let outcomes = ctx.target.upsert_links(&ctx.run, part).await?;
        let mut ledger = Ledger {
            counts: &mut commit.counts,
            errors: &mut commit.errors,
            written: &mut commit.written,
            staged: None,
            deferred_links: true,
        };
        book_outcomes(
            kind,
            part,
            joined,
            outcomes,
            |j| pages[i * batch + j],
            &mut ledger,
        );
        Progress::add(&ctx.engine.progress.links, part.len() as u64);
    }
    Ok(())
}

/// Applies the scope moves held at load, page by page, unless another scope listed
/// the record too (a conflict: it stays where it was, and the copy is rejected);
/// their outcomes are counted on the page that delivered them.
async fn apply_moves(
    ctx: &JobContext,
    kind: EntityKind,
    moves: Vec<(u64, MappedRecord)>,
    known: &HashMap<SourceId, KnownRecord>,
    batch: usize,
    commit: &mut LinkCommit,
) -> Result<(), EngineError> {
    let conflicted = conflicted_moves(ctx, kind, &moves).await?;
    let mut by_page: BTreeMap<u64, Vec<MappedRecord>> = BTreeMap::new();
    for (page, record) in moves {
        by_page.entry(page).or_default().push(record);
    }
    for (page, records) in by_page {
        let counts = commit.pages.entry(page).or_default();
        let mut writes = Vec::with_capacity(records.len());
        let mut joined = Vec::with_capacity(records.len());
        for record in records {
            if let Some(reason) = conflicted.get(&(page, record.source_id.clone())) {
                counts.kind_mut(kind).rejected += 1;
                commit.errors.push(ErrorEntry {
                    page_no: Some(page),
                    stage: "relations".into(),
                    kind: Some(kind),
                    source_id: Some(record.source_id.0),
                    reason: reason.clone(),
                });
                continue;
            }
            let k = known.get(&record.source_id);
            joined.push(judged_join(k, &record));
            writes.push(Write {
                change: change_of(k),
                record,
            });
        }
        for (part, joined) in writes.chunks(batch).zip(joined.chunks(batch)) {
            let outcomes = if kind.is_link() {
                ctx.target.upsert_links(&ctx.run, part).await?
            } else {
                ctx.target.upsert(&ctx.run, part).await?
            };
            let mut ledger = Ledger {
                counts,
                errors: &mut commit.errors,
                written: &mut commit.written,
                staged: None,
                deferred_links: false,
            };
            book_outcomes(kind, part, joined, outcomes, |_| page, &mut ledger);
        }
    }
    Ok(())
}

/// Created or updated, as the store knows the record.
fn change_of(known: Option<&KnownRecord>) -> Change {
    if known.is_some() {
        Change::Updated
    } else {
        Change::Created
    }
}

/// The scope moves of a chunk that another scope listed too in this run
/// (their claim is conflicted, or another page holds it), with why they are
/// refused, keyed by (page, source id).
async fn conflicted_moves(
    ctx: &JobContext,
    kind: EntityKind,
    moves: &[(u64, MappedRecord)],
) -> Result<HashMap<(u64, SourceId), String>, EngineError> {
    let mut by_page: BTreeMap<u64, Vec<(SourceId, Scope)>> = BTreeMap::new();
    for (page, r) in moves {
        by_page
            .entry(*page)
            .or_default()
            .push((r.source_id.clone(), r.scope.clone()));
    }
    let mut out = HashMap::new();
    for (page, records) in by_page {
        // Claimed at load: this reads the claims back.
        let claims = ctx
            .store()
            .claim_records(&ctx.id, Some(page), kind, &records)
            .await?;
        for (id, scope) in records {
            let Some(claim) = claims.get(&id) else {
                continue;
            };
            let other = match &claim.conflict {
                _ if claim.page_no != page => &scope,
                Some(other) => other,
                None => continue,
            };
            out.insert((page, id.clone()), conflict_reason(claim, other));
        }
    }
    Ok(out)
}

/// The parent end a link is grouped by: its individual, or its `from` end.
fn parent_key(r: &MappedRecord) -> &str {
    r.link("individual")
        .or_else(|| r.link("from"))
        .map(|e| e.id.as_str())
        .unwrap_or("")
}

async fn load_chunk(
    ctx: &JobContext,
    chunk: Vec<StagedLink>,
    upto: i64,
) -> Result<LinkCommit, EngineError> {
    let mut commit = LinkCommit {
        upto_seq: upto,
        ..LinkCommit::default()
    };
    let mut by_kind: BTreeMap<EntityKind, Vec<(u64, MappedRecord)>> = BTreeMap::new();
    for s in chunk {
        by_kind
            .entry(s.record.kind)
            .or_default()
            .push((s.page_no, s.record));
    }
    let batch = ctx
        .spec
        .options
        .batch_size
        .min(ctx.target.limits().max_batch)
        .max(1);
    for (kind, mut staged) in by_kind {
        staged.sort_by(|a, b| parent_key(&a.1).cmp(parent_key(&b.1)));
        // Whether the target has the record already decides created vs updated; the
        // store knows, and asking it again makes a resumed stage right too.
        let ids: Vec<SourceId> = staged.iter().map(|(_, r)| r.source_id.clone()).collect();
        let known = ctx
            .store()
            .known_records(&ctx.target_name, kind, &ids)
            .await?;
        // Scope moves held at load (see `load::classify`) and deferred links.
        let (moves, links): (Vec<_>, Vec<_>) = staged.into_iter().partition(|(_, r)| {
            known
                .get(&r.source_id)
                .is_some_and(|k| load::moves_scope(k, r))
        });
        write_links(ctx, kind, links, &known, batch, &mut commit).await?;
        apply_moves(ctx, kind, moves, &known, batch, &mut commit).await?;
    }
    Ok(commit)
}
