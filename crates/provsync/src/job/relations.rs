//! Relations (seed step 2.4): once every entity page is loaded (a barrier, so both
//! ends exist), load the staged links chunk by chunk, grouped by parent (fewer lock
//! conflicts in targets that lock parents). An unresolved end is a per-link error.

use std::collections::BTreeMap;
use std::sync::Arc;

use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, SourceId};
use provsync_core::store::{LinkCommit, StagedLink};
use provsync_core::target::{Change, Write};

use super::extract::fail;
use super::load::{book_outcomes, judged_join, Ledger};
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
    for (kind, mut links) in by_kind {
        links.sort_by(|a, b| parent_key(&a.1).cmp(parent_key(&b.1)));
        // Whether the target has the link already decides created vs updated; the
        // store knows, and asking it again makes a resumed stage right too.
        let ids: Vec<SourceId> = links.iter().map(|(_, r)| r.source_id.clone()).collect();
        let known = ctx
            .store()
            .known_records(&ctx.target_name, kind, &ids)
            .await?;
        let mut pages = Vec::with_capacity(links.len());
        let mut writes = Vec::with_capacity(links.len());
        let mut joined = Vec::with_capacity(links.len());
        for (page, record) in links {
            let k = known.get(&record.source_id);
            let change = if k.is_some() {
                Change::Updated
            } else {
                Change::Created
            };
            pages.push(page);
            joined.push(judged_join(k, &record));
            writes.push(Write { record, change });
        }
        for (i, (part, joined)) in writes.chunks(batch).zip(joined.chunks(batch)).enumerate() {
            let outcomes = ctx.target.upsert_links(&ctx.run, part).await?;
            let mut ledger = Ledger {
                counts: &mut commit.counts,
                errors: &mut commit.errors,
                written: &mut commit.written,
                staged: None,
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
    }
    Ok(commit)
}
