//! Per-target record state: content hashes, the id map and the sweep stamps.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use provsync_core::job::JobId;
use provsync_core::model::{ContentHash, EntityKind, Scope, SourceId};
use provsync_core::store::{Claim, ClaimConflict, HashUpdate, KnownRecord, StoreError};

use super::{begin, col, db, run_no, uint, CHUNK};
use crate::store::claims::{
    claim_of, claim_order, claim_page, conflict_of, new_conflicts, take_inserted,
    CLAIM_CONFLICT_CLAUSE,
};

/// Upserts the state of written records: new hash, target id (kept when the write
/// did not report one), connected again, seen and updated by `run`.
pub(super) async fn upsert_written(
    conn: &mut PgConnection,
    target: i64,
    written: &[HashUpdate],
    run: &JobId,
) -> Result<(), StoreError> {
    if written.is_empty() {
        return Ok(());
    }
    // One row per record, the last write winning: PostgreSQL refuses an upsert that
    // touches the same row twice in one statement.
    let mut last: HashMap<(EntityKind, &str), usize> = HashMap::with_capacity(written.len());
    for (i, u) in written.iter().enumerate() {
        last.insert((u.kind, u.source_id.as_str()), i);
    }
    let mut rows: Vec<&HashUpdate> = written
        .iter()
        .enumerate()
        .filter(|(i, u)| last[&(u.kind, u.source_id.as_str())] == *i)
        .map(|(_, u)| u)
        .collect();
    // Key order: two pages committed concurrently that share records lock those rows
    // in the same order, so they queue instead of deadlocking.
    rows.sort_unstable_by(|a, b| {
        (a.kind.as_str(), a.source_id.as_str()).cmp(&(b.kind.as_str(), b.source_id.as_str()))
    });
    for chunk in rows.chunks(CHUNK) {
        let kinds: Vec<&str> = chunk.iter().map(|u| u.kind.as_str()).collect();
        let sources: Vec<&str> = chunk.iter().map(|u| u.source_id.as_str()).collect();
        let scopes: Vec<&str> = chunk.iter().map(|u| u.scope.as_str()).collect();
        let hashes: Vec<String> = chunk.iter().map(|u| u.hash.to_string()).collect();
        let target_ids: Vec<Option<&str>> = chunk.iter().map(|u| u.target_id.as_deref()).collect();
        let anchors: Vec<Option<&str>> = chunk.iter().map(|u| u.anchor.as_deref()).collect();
        sqlx::query(
            "INSERT INTO record_state (target, kind, source_id, scope, hash, target_id, \
             anchor, connected, updated_run) \
             SELECT $1, u.kind, u.source_id, u.scope, u.hash, u.target_id, u.anchor, TRUE, $2 \
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
             WITH ORDINALITY AS u(kind, source_id, scope, hash, target_id, anchor, ord) \
             ORDER BY u.ord \
             ON CONFLICT (target, kind, source_id) DO UPDATE SET scope = excluded.scope, \
             hash = excluded.hash, \
             target_id = COALESCE(excluded.target_id, record_state.target_id), \
             anchor = excluded.anchor, connected = TRUE, updated_run = excluded.updated_run, \
             disconnected_run = NULL",
        )
        .bind(target)
        .bind(run.as_str())
        .bind(kinds)
        .bind(sources)
        .bind(scopes)
        .bind(hashes)
        .bind(target_ids)
        .bind(anchors)
        .execute(&mut *conn)
        .await
        .map_err(db("update record state"))?;
    }
    Ok(())
}

/// Pushes ` AND scope = ANY(...)` unless `scopes` is empty (all scopes).
fn push_scopes(qb: &mut QueryBuilder<'_, Postgres>, scopes: &[Scope]) {
    if scopes.is_empty() {
        return;
    }
    let list: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    qb.push(" AND scope = ANY(").push_bind(list).push(")");
}

/// The ids of a chunk as one `text[]` parameter.
fn id_array(ids: &[SourceId]) -> Vec<&str> {
    ids.iter().map(SourceId::as_str).collect()
}

pub(super) async fn known_records(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    ids: &[SourceId],
) -> Result<HashMap<SourceId, KnownRecord>, StoreError> {
    let mut known = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        // `= ANY($3)` keeps one statement text (one cached plan) for every chunk
        // size, and uses the (target, kind, source_id) unique index.
        let rows = sqlx::query(
            "SELECT source_id, hash, connected, scope, anchor FROM record_state \
             WHERE target = $1 AND kind = $2 AND source_id = ANY($3)",
        )
        .bind(target)
        .bind(kind.as_str())
        .bind(id_array(chunk))
        .fetch_all(pool)
        .await
        .map_err(db("read known records"))?;
        for r in &rows {
            let hash: String = col(r, "hash")?;
            let hash = ContentHash::parse(&hash)
                .ok_or_else(|| StoreError::Corrupt(format!("content hash {hash:?}")))?;
            known.insert(
                SourceId(col(r, "source_id")?),
                KnownRecord {
                    hash,
                    connected: col(r, "connected")?,
                    scope: Scope(col(r, "scope")?),
                    anchor: col(r, "anchor")?,
                },
            );
        }
    }
    Ok(known)
}

/// See `StateStore::claim_records`.
pub(super) async fn claim_records(
    pool: &PgPool,
    run: &JobId,
    page_no: Option<u64>,
    kind: EntityKind,
    records: &[(SourceId, Scope)],
) -> Result<HashMap<SourceId, Claim>, StoreError> {
    let records = claim_order(records);
    let (page_no, page) = claim_page(page_no)?;
    let mut tx = begin(pool).await?;
    let run_no = run_no(&mut tx, run).await?;
    let mut claims = HashMap::with_capacity(records.len());
    for chunk in records.chunks(CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        let scopes: Vec<&str> = chunk.iter().map(|(_, s)| s.as_str()).collect();
        let inserted: HashSet<String> = sqlx::query_scalar(&format!(
            "INSERT INTO run_claims (run_no, kind, source_id, page_no, scope) \
             SELECT $1, $2, u.source_id, $3, u.scope \
             FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(source_id, scope, ord) \
             ORDER BY u.ord{CLAIM_CONFLICT_CLAUSE} RETURNING source_id"
        ))
        .bind(run_no)
        .bind(kind.as_str())
        .bind(page)
        .bind(&ids)
        .bind(scopes)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("claim records"))?
        .into_iter()
        .collect();
        let rest: Vec<&str> = take_inserted(page_no, chunk, &inserted, &mut claims)
            .into_iter()
            .map(SourceId::as_str)
            .collect();
        if rest.is_empty() {
            continue;
        }
        let rows = sqlx::query(
            "SELECT source_id, page_no, scope, conflict FROM run_claims \
             WHERE run_no = $1 AND kind = $2 AND source_id = ANY($3)",
        )
        .bind(run_no)
        .bind(kind.as_str())
        .bind(rest)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read claims"))?;
        for r in &rows {
            claims.insert(
                SourceId(col(r, "source_id")?),
                claim_of(col(r, "page_no")?, col(r, "scope")?, col(r, "conflict")?),
            );
        }
    }
    for (id, scope) in new_conflicts(page_no, &records, &mut claims) {
        sqlx::query(
            "UPDATE run_claims SET conflict = $1 WHERE run_no = $2 AND kind = $3 \
             AND source_id = $4 AND conflict IS NULL",
        )
        .bind(scope.as_str())
        .bind(run_no)
        .bind(kind.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("mark a claim conflicted"))?;
    }
    tx.commit().await.map_err(db("commit claims"))?;
    Ok(claims)
}

/// See `StateStore::claim_conflicts`.
pub(super) async fn claim_conflicts(
    pool: &PgPool,
    run: &JobId,
    limit: u32,
) -> Result<(u64, Vec<ClaimConflict>), StoreError> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_claims WHERE conflict IS NOT NULL \
         AND run_no = (SELECT run_no FROM jobs WHERE id = $1)",
    )
    .bind(run.as_str())
    .fetch_one(pool)
    .await
    .map_err(db("count conflicts"))?;
    let rows = sqlx::query(
        "SELECT kind, source_id, scope, conflict FROM run_claims WHERE conflict IS NOT NULL \
         AND run_no = (SELECT run_no FROM jobs WHERE id = $1) \
         ORDER BY kind COLLATE \"C\", source_id COLLATE \"C\" LIMIT $2",
    )
    .bind(run.as_str())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(db("read conflicts"))?;
    let conflicts = rows
        .iter()
        .map(|r| {
            conflict_of(
                col(r, "kind")?,
                col(r, "source_id")?,
                col(r, "scope")?,
                col(r, "conflict")?,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok((uint(total, "conflict count")?, conflicts))
}

/// Drops a run's claims.
pub(super) async fn end_run(pool: &PgPool, run: &JobId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM run_claims WHERE run_no = (SELECT run_no FROM jobs WHERE id = $1)")
        .bind(run.as_str())
        .execute(pool)
        .await
        .map_err(db("drop claims"))?;
    Ok(())
}

pub(super) async fn target_ids(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    ids: &[SourceId],
) -> Result<HashMap<SourceId, String>, StoreError> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows = sqlx::query(
            "SELECT source_id, target_id FROM record_state WHERE target_id IS NOT NULL \
             AND target = $1 AND kind = $2 AND source_id = ANY($3)",
        )
        .bind(target)
        .bind(kind.as_str())
        .bind(id_array(chunk))
        .fetch_all(pool)
        .await
        .map_err(db("read target ids"))?;
        for r in &rows {
            found.insert(SourceId(col(r, "source_id")?), col(r, "target_id")?);
        }
    }
    Ok(found)
}

/// Pushes the condition "not written nor claimed by run `id`".
fn push_unseen<'a>(qb: &mut QueryBuilder<'a, Postgres>, id: &'a JobId) {
    qb.push(" AND (updated_run IS NULL OR updated_run <> ")
        .push_bind(id.as_str())
        .push(
            ") AND NOT EXISTS (SELECT 1 FROM run_claims c WHERE c.kind = record_state.kind \
             AND c.source_id = record_state.source_id \
             AND c.run_no = (SELECT run_no FROM jobs WHERE id = ",
        )
        .push_bind(id.as_str())
        .push("))");
}

/// Starts `SELECT <what> FROM record_state` over the connected records of a scope.
fn connected_in<'a>(
    what: &str,
    target: i64,
    kind: EntityKind,
    scopes: &[Scope],
) -> QueryBuilder<'a, Postgres> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {what} FROM record_state WHERE connected AND target = "
    ));
    qb.push_bind(target)
        .push(" AND kind = ")
        .push_bind(kind.as_str());
    push_scopes(&mut qb, scopes);
    qb
}

pub(super) async fn connected_count(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    scopes: &[Scope],
) -> Result<u64, StoreError> {
    let mut qb = connected_in("COUNT(*)", target, kind, scopes);
    let n: i64 = qb
        .build_query_scalar()
        .fetch_one(pool)
        .await
        .map_err(db("count connected records"))?;
    uint(n, "record count")
}

pub(super) async fn unseen_records(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    scopes: &[Scope],
    id: &JobId,
    limit: u32,
) -> Result<Vec<SourceId>, StoreError> {
    let mut qb = connected_in("source_id", target, kind, scopes);
    push_unseen(&mut qb, id);
    // COLLATE "C": byte order, as SQLite's default BINARY collation sorts, so both
    // stores sweep in the same order whatever the database's locale.
    qb.push(" ORDER BY source_id COLLATE \"C\" LIMIT ")
        .push_bind(i64::from(limit));
    let ids: Vec<String> = qb
        .build_query_scalar()
        .fetch_all(pool)
        .await
        .map_err(db("read unseen records"))?;
    Ok(ids.into_iter().map(SourceId).collect())
}

pub(super) async fn unseen_count(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    scopes: &[Scope],
    id: &JobId,
) -> Result<u64, StoreError> {
    let mut qb = connected_in("COUNT(*)", target, kind, scopes);
    push_unseen(&mut qb, id);
    let n: i64 = qb
        .build_query_scalar()
        .fetch_one(pool)
        .await
        .map_err(db("count unseen records"))?;
    uint(n, "record count")
}

pub(super) async fn mark_disconnected(
    pool: &PgPool,
    target: i64,
    kind: EntityKind,
    ids: &[SourceId],
    run: &JobId,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = begin(pool).await?;
    for chunk in ids.chunks(CHUNK) {
        sqlx::query(
            "UPDATE record_state SET connected = FALSE, disconnected_run = $1 \
             WHERE target = $2 AND kind = $3 AND source_id = ANY($4)",
        )
        .bind(run.as_str())
        .bind(target)
        .bind(kind.as_str())
        .bind(id_array(chunk))
        .execute(&mut *tx)
        .await
        .map_err(db("mark records disconnected"))?;
    }
    tx.commit().await.map_err(db("commit disconnect"))
}
