//! What the SQLite store does differently from the PostgreSQL one; the queries
//! themselves are shared (`store::jobs`, `store::ledger`, `store::records`).
//!
//! SQLite has a single writer: every multi-statement change runs in a
//! `BEGIN IMMEDIATE` transaction that holds the database's write lock from its
//! first statement, so there are no row locks to take.

use std::collections::HashSet;

use provsync_core::job::JobId;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::store::{ErrorEntry, HashUpdate, StoreError};
use sqlx::QueryBuilder;

use super::{db, db_job, int, now_ms, Conn, Db, CHUNK};
use crate::store::claims::CLAIM_CONFLICT_CLAUSE;
use crate::store::ledger::StagedRow;
use crate::store::records::RECORD_CONFLICT_CLAUSE;

/// The suffix that locks the rows a `SELECT` reads: none, the write lock is held.
pub(super) const FOR_UPDATE: &str = "";

/// Serialises dispatch decisions for a target: the write lock already does.
pub(super) async fn lock_target(_conn: &mut Conn, _target: &str) -> Result<(), StoreError> {
    Ok(())
}

/// The `run_no` column and value of a new job: one more than the largest given
/// (safe under the write lock; SQLite has no sequences).
pub(super) const NEW_RUN_NO: (&str, &str) = (
    ", run_no",
    ", (SELECT COALESCE(MAX(run_no), 0) + 1 FROM jobs)",
);

/// Appends errors after the job's last one, in multi-row statements.
pub(super) async fn insert_errors(
    conn: &mut Conn,
    id: &JobId,
    errors: &[ErrorEntry],
) -> Result<(), StoreError> {
    if errors.is_empty() {
        return Ok(());
    }
    // Safe without a sequence: callers hold the write lock (BEGIN IMMEDIATE).
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM errors WHERE job_id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db("read error sequence"))?;
    let at = now_ms();
    let mut seq = last;
    for chunk in errors.chunks(CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        for e in chunk {
            seq += 1;
            let page = e.page_no.map(|p| int(p, "page number")).transpose()?;
            rows.push((seq, page, e));
        }
        let mut qb = QueryBuilder::<Db>::new(
            "INSERT INTO errors (job_id, seq, page_no, stage, kind, source_id, reason, at) ",
        );
        qb.push_values(rows, |mut b, (seq, page, e)| {
            b.push_bind(id.as_str())
                .push_bind(seq)
                .push_bind(page)
                .push_bind(e.stage.as_str())
                .push_bind(e.kind.map(|k| k.as_str()))
                .push_bind(e.source_id.as_deref())
                .push_bind(e.reason.as_str())
                .push_bind(at);
        });
        qb.build()
            .execute(&mut *conn)
            .await
            .map_err(db_job("append errors", id))?;
    }
    Ok(())
}

/// Inserts one chunk of a page's staged links as a multi-row `VALUES` joined to the
/// record state (`created`: the target has never seen the link).
pub(super) async fn insert_staged(
    conn: &mut Conn,
    id: &JobId,
    target: i64,
    page: i64,
    chunk: &[StagedRow<'_>],
) -> Result<(), StoreError> {
    // VALUES columns are named column1..n.
    let mut qb = QueryBuilder::<Db>::new(
        "INSERT INTO staged_links (job_id, seq, page_no, kind, parent_key, created, payload) \
         SELECT ",
    );
    qb.push_bind(id.as_str())
        .push(", v.column1, ")
        .push_bind(page)
        .push(
            ", v.column2, v.column4, CASE WHEN r.source_id IS NULL THEN 1 ELSE 0 END, \
             v.column5 FROM (",
        );
    qb.push_values(chunk, |mut b, (seq, kind, source_id, parent, payload)| {
        b.push_bind(*seq)
            .push_bind(*kind)
            .push_bind(*source_id)
            .push_bind(parent.as_str())
            .push_bind(payload.as_str());
    });
    qb.push(") AS v LEFT JOIN record_state r ON r.target = ")
        .push_bind(target)
        .push(" AND r.kind = v.column2 AND r.source_id = v.column3");
    qb.build()
        .execute(&mut *conn)
        .await
        .map_err(db_job("stage links", id))?;
    Ok(())
}

/// Pushes ` AND column IN (...)`, one bind per value (SQLite has no arrays).
pub(super) fn push_in<'a>(qb: &mut QueryBuilder<'a, Db>, column: &str, values: Vec<&'a str>) {
    qb.push(format!(" AND {column} IN ("));
    let mut sep = qb.separated(", ");
    for v in values {
        sep.push_bind(v);
    }
    sep.push_unseparated(")");
}

/// The collation suffix that sorts text by bytes: none, BINARY is SQLite's default.
pub(super) const BYTE_ORDER: &str = "";

/// The order of the sweep's unseen records. `+source_id`: an expression, so the
/// planner sorts the scope's rows (found by the scope index) instead of walking the
/// whole kind in source_id order to spare the sort — 0.4 s per call at 104,000
/// doctors.
pub(super) const SWEEP_ORDER: &str = "+source_id";

/// Upserts one chunk of record states as a multi-row `VALUES`.
pub(super) async fn upsert_records(
    conn: &mut Conn,
    target: i64,
    run: &JobId,
    chunk: &[&HashUpdate],
) -> Result<(), StoreError> {
    let mut qb = QueryBuilder::<Db>::new(
        "INSERT INTO record_state (target, kind, source_id, scope, hash, target_id, \
         anchor, connected, updated_run) ",
    );
    qb.push_values(chunk, |mut b, u| {
        b.push_bind(target)
            .push_bind(u.kind.as_str())
            .push_bind(u.source_id.as_str())
            .push_bind(u.scope.as_str())
            .push_bind(u.hash.to_string())
            .push_bind(u.target_id.as_deref())
            .push_bind(u.anchor.as_deref())
            .push("TRUE")
            .push_bind(run.as_str());
    });
    qb.push(RECORD_CONFLICT_CLAUSE);
    qb.build()
        .execute(&mut *conn)
        .await
        .map_err(db("update record state"))?;
    Ok(())
}

/// Inserts one chunk of claims as a multi-row `VALUES`; returns the ids it claimed.
pub(super) async fn insert_claims(
    conn: &mut Conn,
    run_no: i64,
    kind: EntityKind,
    page: i64,
    chunk: &[(SourceId, Scope)],
) -> Result<HashSet<String>, StoreError> {
    let mut qb = QueryBuilder::<Db>::new(
        "INSERT INTO run_claims (run_no, kind, source_id, page_no, scope) ",
    );
    qb.push_values(chunk, |mut b, (id, scope)| {
        b.push_bind(run_no)
            .push_bind(kind.as_str())
            .push_bind(id.as_str())
            .push_bind(page)
            .push_bind(scope.as_str());
    });
    qb.push(CLAIM_CONFLICT_CLAUSE).push(" RETURNING source_id");
    Ok(qb
        .build_query_scalar()
        .fetch_all(&mut *conn)
        .await
        .map_err(db("claim records"))?
        .into_iter()
        .collect())
}
