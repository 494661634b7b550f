//! What the PostgreSQL store does differently from the SQLite one; the queries
//! themselves are shared (`store::jobs`, `store::ledger`, `store::records`).
//!
//! Several processes write at once, so what SQLite's single writer decides for
//! free is made explicit with row locks (see the module docs of `postgres`).

use std::collections::HashSet;

use provsync_core::job::JobId;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::store::{ErrorEntry, HashUpdate, StoreError};
use sqlx::QueryBuilder;

use super::{db, db_job, int, now_ms, Conn, Db, CHUNK};
use crate::store::claims::CLAIM_CONFLICT_CLAUSE;
use crate::store::ledger::StagedRow;
use crate::store::records::RECORD_CONFLICT_CLAUSE;

/// The suffix that locks the rows a `SELECT` reads until the transaction ends.
pub(super) const FOR_UPDATE: &str = " FOR UPDATE";

/// Locks a target's dispatch row until the transaction ends, creating it on first
/// use. The upsert's DO UPDATE takes the row lock in the same statement, so two
/// processes dispatching to a new target cannot both pass.
///
/// A row lock rather than `pg_advisory_xact_lock(hashtext(target))`: it is exact
/// (no hash collisions between targets), local to this store's schema (advisory
/// locks are database-wide, so two stores sharing a database would contend), and
/// shows up as an ordinary row lock when someone inspects a stuck dispatch.
pub(super) async fn lock_target(conn: &mut Conn, target: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dispatch_targets (target) VALUES ($1) \
         ON CONFLICT (target) DO UPDATE SET target = excluded.target",
    )
    .bind(target)
    .execute(conn)
    .await
    .map_err(db("lock target"))?;
    Ok(())
}

/// The `run_no` column and value of a new job: none, the column's sequence gives
/// it (see the migration).
pub(super) const NEW_RUN_NO: (&str, &str) = ("", "");

/// Appends errors after the job's last one, one `unnest` statement per chunk.
pub(super) async fn insert_errors(
    conn: &mut Conn,
    id: &JobId,
    errors: &[ErrorEntry],
) -> Result<(), StoreError> {
    let at = now_ms();
    for chunk in errors.chunks(CHUNK) {
        let mut pages = Vec::with_capacity(chunk.len());
        for e in chunk {
            pages.push(e.page_no.map(|p| int(p, "page number")).transpose()?);
        }
        let stages: Vec<&str> = chunk.iter().map(|e| e.stage.as_str()).collect();
        let kinds: Vec<Option<&str>> = chunk.iter().map(|e| e.kind.map(|k| k.as_str())).collect();
        let sources: Vec<Option<&str>> = chunk.iter().map(|e| e.source_id.as_deref()).collect();
        let reasons: Vec<&str> = chunk.iter().map(|e| e.reason.as_str()).collect();
        // seq comes from the column's sequence, drawn row by row in ORDER BY order:
        // the arrival order the error listing returns.
        sqlx::query(
            "INSERT INTO errors (job_id, page_no, stage, kind, source_id, reason, at) \
             SELECT $1, u.page_no, u.stage, u.kind, u.source_id, u.reason, $2 \
             FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
             WITH ORDINALITY AS u(page_no, stage, kind, source_id, reason, ord) ORDER BY u.ord",
        )
        .bind(id.as_str())
        .bind(at)
        .bind(pages)
        .bind(stages)
        .bind(kinds)
        .bind(sources)
        .bind(reasons)
        .execute(&mut *conn)
        .await
        .map_err(db_job("append errors", id))?;
    }
    Ok(())
}

/// Inserts one chunk of a page's staged links as `unnest`ed arrays (one bind
/// parameter per column) joined to the record state (`created`: the target has
/// never seen the link).
pub(super) async fn insert_staged(
    conn: &mut Conn,
    id: &JobId,
    target: i64,
    page: i64,
    chunk: &[StagedRow<'_>],
) -> Result<(), StoreError> {
    let mut seqs = Vec::with_capacity(chunk.len());
    let mut kinds = Vec::with_capacity(chunk.len());
    let mut sources = Vec::with_capacity(chunk.len());
    let mut parents = Vec::with_capacity(chunk.len());
    let mut payloads = Vec::with_capacity(chunk.len());
    for (seq, kind, source_id, parent, payload) in chunk {
        seqs.push(*seq);
        kinds.push(*kind);
        sources.push(*source_id);
        parents.push(parent.as_str());
        payloads.push(payload.as_str());
    }
    sqlx::query(
        "INSERT INTO staged_links (job_id, seq, page_no, kind, parent_key, created, payload) \
         SELECT $1, v.seq, $2, v.kind, v.parent, r.source_id IS NULL, v.payload \
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
         AS v(seq, kind, source_id, parent, payload) \
         LEFT JOIN record_state r ON r.target = $8 AND r.kind = v.kind \
         AND r.source_id = v.source_id",
    )
    .bind(id.as_str())
    .bind(page)
    .bind(seqs)
    .bind(kinds)
    .bind(sources)
    .bind(parents)
    .bind(payloads)
    .bind(target)
    .execute(&mut *conn)
    .await
    .map_err(db_job("stage links", id))?;
    Ok(())
}

/// Pushes ` AND column = ANY($n)`: one array parameter, so one statement text (one
/// cached plan) for every list length, and the column's index is used.
pub(super) fn push_in<'a>(qb: &mut QueryBuilder<'a, Db>, column: &str, values: Vec<&'a str>) {
    qb.push(format!(" AND {column} = ANY("))
        .push_bind(values)
        .push(")");
}

/// The collation suffix that sorts text by bytes, as SQLite's default BINARY
/// collation does, so both stores list in the same order whatever the locale.
pub(super) const BYTE_ORDER: &str = " COLLATE \"C\"";

/// The order of the sweep's unseen records (byte order, see [`BYTE_ORDER`]).
pub(super) const SWEEP_ORDER: &str = "source_id COLLATE \"C\"";

/// Upserts one chunk of record states as `unnest`ed arrays (one bind parameter per
/// column).
pub(super) async fn upsert_records(
    conn: &mut Conn,
    target: i64,
    run: &JobId,
    chunk: &[&HashUpdate],
) -> Result<(), StoreError> {
    let kinds: Vec<&str> = chunk.iter().map(|u| u.kind.as_str()).collect();
    let sources: Vec<&str> = chunk.iter().map(|u| u.source_id.as_str()).collect();
    let scopes: Vec<&str> = chunk.iter().map(|u| u.scope.as_str()).collect();
    let hashes: Vec<String> = chunk.iter().map(|u| u.hash.to_string()).collect();
    let target_ids: Vec<Option<&str>> = chunk.iter().map(|u| u.target_id.as_deref()).collect();
    let anchors: Vec<Option<&str>> = chunk.iter().map(|u| u.anchor.as_deref()).collect();
    sqlx::query(&format!(
        "INSERT INTO record_state (target, kind, source_id, scope, hash, target_id, \
         anchor, connected, updated_run) \
         SELECT $1, u.kind, u.source_id, u.scope, u.hash, u.target_id, u.anchor, TRUE, $2 \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
         WITH ORDINALITY AS u(kind, source_id, scope, hash, target_id, anchor, ord) \
         ORDER BY u.ord{RECORD_CONFLICT_CLAUSE}"
    ))
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
    Ok(())
}

/// Inserts one chunk of claims as `unnest`ed arrays; returns the ids it claimed.
pub(super) async fn insert_claims(
    conn: &mut Conn,
    run_no: i64,
    kind: EntityKind,
    page: i64,
    chunk: &[(SourceId, Scope)],
) -> Result<HashSet<String>, StoreError> {
    let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
    let scopes: Vec<&str> = chunk.iter().map(|(_, s)| s.as_str()).collect();
    Ok(sqlx::query_scalar(&format!(
        "INSERT INTO run_claims (run_no, kind, source_id, page_no, scope) \
         SELECT $1, $2, u.source_id, $3, u.scope \
         FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(source_id, scope, ord) \
         ORDER BY u.ord{CLAIM_CONFLICT_CLAUSE} RETURNING source_id"
    ))
    .bind(run_no)
    .bind(kind.as_str())
    .bind(page)
    .bind(ids)
    .bind(scopes)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("claim records"))?
    .into_iter()
    .collect())
}
