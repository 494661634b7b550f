//! Per-target record state (content hashes, the id map, the sweep stamps) and a
//! run's claims, written once for both backends ([`records_queries!`], expanded
//! like `jobs_queries!`). The backends' `dialect` modules hold the bulk upserts,
//! the id-list filter (`IN (...)` or `= ANY($n)`) and the sort orders.

/// The clause ending a record state upsert: new hash, target id (kept when the
/// write did not report one), connected again, updated by the run.
pub(crate) const RECORD_CONFLICT_CLAUSE: &str = " ON CONFLICT (target, kind, source_id) DO UPDATE \
     SET scope = excluded.scope, hash = excluded.hash, \
     target_id = COALESCE(excluded.target_id, record_state.target_id), \
     anchor = excluded.anchor, connected = TRUE, updated_run = excluded.updated_run, \
     disconnected_run = NULL";

/// Expands the record state and claim queries inside a backend module.
macro_rules! records_queries {
    () => {
        use std::collections::HashMap;

        use provsync_core::job::JobId;
        use provsync_core::model::{ContentHash, EntityKind, Scope, SourceId};
        use provsync_core::store::{Claim, ClaimConflict, HashUpdate, KnownRecord, StoreError};
        use sqlx::QueryBuilder;

        use super::{begin, col, db, dialect, uint, CHUNK};
        use super::{Conn, Db, Pool};
        use crate::store::claims::{
            claim_of, claim_order, claim_page, conflict_of, new_conflicts, take_inserted,
        };

        /// Upserts the state of written records: new hash, target id (kept when the write
        /// did not report one), connected again, seen and updated by `run`.
        pub(super) async fn upsert_written(
            conn: &mut Conn,
            target: i64,
            written: &[HashUpdate],
            run: &JobId,
        ) -> Result<(), StoreError> {
            if written.is_empty() {
                return Ok(());
            }
            // One row per record, the last write winning: an upsert may not touch the same
            // row twice in one statement.
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
                dialect::upsert_records(conn, target, run, chunk).await?;
            }
            Ok(())
        }

        /// Pushes ` AND scope` in `scopes` unless `scopes` is empty (all scopes).
        fn push_scopes<'a>(qb: &mut QueryBuilder<'a, Db>, scopes: &'a [Scope]) {
            if scopes.is_empty() {
                return;
            }
            dialect::push_in(qb, "scope", scopes.iter().map(Scope::as_str).collect());
        }

        /// The ids of a chunk, for `dialect::push_in`.
        fn id_list(ids: &[SourceId]) -> Vec<&str> {
            ids.iter().map(SourceId::as_str).collect()
        }

        /// The run number of a job (its claims are keyed by it).
        async fn run_no(conn: &mut Conn, id: &JobId) -> Result<i64, StoreError> {
            sqlx::query_scalar("SELECT run_no FROM jobs WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(conn)
                .await
                .map_err(db("read run number"))?
                .ok_or_else(|| StoreError::NotFound(id.0.clone()))
        }

        pub(super) async fn known_records(
            pool: &Pool,
            target: i64,
            kind: EntityKind,
            ids: &[SourceId],
        ) -> Result<HashMap<SourceId, KnownRecord>, StoreError> {
            let mut known = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT source_id, hash, connected, scope, anchor FROM record_state WHERE target = ",
                );
                qb.push_bind(target)
                    .push(" AND kind = ")
                    .push_bind(kind.as_str());
                dialect::push_in(&mut qb, "source_id", id_list(chunk));
                let rows = qb
                    .build()
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
            pool: &Pool,
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
                let inserted = dialect::insert_claims(&mut tx, run_no, kind, page, chunk).await?;
                let rest: Vec<&str> = take_inserted(page_no, chunk, &inserted, &mut claims)
                    .into_iter()
                    .map(SourceId::as_str)
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT source_id, page_no, scope, conflict FROM run_claims WHERE run_no = ",
                );
                qb.push_bind(run_no)
                    .push(" AND kind = ")
                    .push_bind(kind.as_str());
                dialect::push_in(&mut qb, "source_id", rest);
                let rows = qb
                    .build()
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
            pool: &Pool,
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
            let rows = sqlx::query(&format!(
                "SELECT kind, source_id, scope, conflict FROM run_claims WHERE conflict IS NOT NULL \
                 AND run_no = (SELECT run_no FROM jobs WHERE id = $1) \
                 ORDER BY kind{c}, source_id{c} LIMIT $2",
                c = dialect::BYTE_ORDER
            ))
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
        pub(super) async fn end_run(pool: &Pool, run: &JobId) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM run_claims WHERE run_no = (SELECT run_no FROM jobs WHERE id = $1)")
                .bind(run.as_str())
                .execute(pool)
                .await
                .map_err(db("drop claims"))?;
            Ok(())
        }

        pub(super) async fn target_ids(
            pool: &Pool,
            target: i64,
            kind: EntityKind,
            ids: &[SourceId],
        ) -> Result<HashMap<SourceId, String>, StoreError> {
            let mut found = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                let mut qb = QueryBuilder::<Db>::new(
                    "SELECT source_id, target_id FROM record_state WHERE target_id IS NOT NULL \
                     AND target = ",
                );
                qb.push_bind(target)
                    .push(" AND kind = ")
                    .push_bind(kind.as_str());
                dialect::push_in(&mut qb, "source_id", id_list(chunk));
                let rows = qb
                    .build()
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
        fn push_unseen<'a>(qb: &mut QueryBuilder<'a, Db>, id: &'a JobId) {
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
            scopes: &'a [Scope],
        ) -> QueryBuilder<'a, Db> {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "SELECT {what} FROM record_state WHERE connected AND target = "
            ));
            qb.push_bind(target)
                .push(" AND kind = ")
                .push_bind(kind.as_str());
            push_scopes(&mut qb, scopes);
            qb
        }

        pub(super) async fn connected_count(
            pool: &Pool,
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
            pool: &Pool,
            target: i64,
            kind: EntityKind,
            scopes: &[Scope],
            id: &JobId,
            limit: u32,
        ) -> Result<Vec<SourceId>, StoreError> {
            let mut qb = connected_in("source_id", target, kind, scopes);
            push_unseen(&mut qb, id);
            qb.push(" ORDER BY ")
                .push(dialect::SWEEP_ORDER)
                .push(" LIMIT ")
                .push_bind(i64::from(limit));
            let ids: Vec<String> = qb
                .build_query_scalar()
                .fetch_all(pool)
                .await
                .map_err(db("read unseen records"))?;
            Ok(ids.into_iter().map(SourceId).collect())
        }

        pub(super) async fn unseen_count(
            pool: &Pool,
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
            pool: &Pool,
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
                let mut qb =
                    QueryBuilder::<Db>::new("UPDATE record_state SET connected = FALSE, disconnected_run = ");
                qb.push_bind(run.as_str())
                    .push(" WHERE target = ")
                    .push_bind(target)
                    .push(" AND kind = ")
                    .push_bind(kind.as_str());
                dialect::push_in(&mut qb, "source_id", id_list(chunk));
                qb.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db("mark records disconnected"))?;
            }
            tx.commit().await.map_err(db("commit disconnect"))
        }
    };
}
