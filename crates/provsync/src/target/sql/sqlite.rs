//! The SQLite target: the embedded default provider store (one file).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::target::{Outcome, RunRef, TablePlan, Target, TargetError, TargetLimits, Write};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{
    answer, layouts, mapped_values, now_ms, parent_links, plan_batch, previous_columns,
    structural_values, upsert_resolved, Layouts, Previous, TableLayout,
};

/// Bound variables per statement. SQLite allows 32766, but a statement that large
/// compiles to megabytes; fixed, moderate chunks keep memory flat and let the
/// statement cache reuse one program per table.
const MAX_VARS: usize = 4_000;

/// The SQLite provider store.
pub struct SqliteTarget {
    pool: SqlitePool,
    layouts: Layouts,
}

fn backend(context: &str, e: sqlx::Error) -> TargetError {
    TargetError::Unavailable(format!("sqlite target: {context}: {e}"))
}

impl SqliteTarget {
    /// Opens (creating if needed) the file at `url` and migrates the provider schema.
    pub async fn connect(url: &str) -> Result<Self, TargetError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| TargetError::Config(format!("sqlite target url {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // Batched statements differ by their number of rows; a large cache of
            // them held tens of MB of compiled programs.
            .statement_cache_capacity(24);
        // One connection: SQLite has a single writer, and one connection keeps
        // `sqlite::memory:` one database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| backend("connect", e))?;
        sqlx::migrate!("migrations/target-sqlite")
            .run(&pool)
            .await
            .map_err(|e| TargetError::Config(format!("sqlite target migration: {e}")))?;
        Ok(Self {
            pool,
            layouts: Layouts::default(),
        })
    }

    /// The pool, for tests and the bench to read the provider tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn layout(&self, kind: EntityKind) -> Result<TableLayout, TargetError> {
        self.layouts.get(kind)
    }

    /// Writes a batch in one transaction; each record's answer by source id.
    async fn write(
        &self,
        run: &RunRef,
        writes: &[Write],
    ) -> Result<HashMap<String, Outcome>, TargetError> {
        let mut by_kind: HashMap<EntityKind, Vec<&Write>> = HashMap::new();
        for w in writes {
            by_kind.entry(w.record.kind).or_default().push(w);
        }
        let mut tx = self.pool.begin().await.map_err(|e| backend("begin", e))?;
        let mut outcomes = HashMap::with_capacity(writes.len());
        for (kind, mut ws) in by_kind {
            // One lock order for every writer: concurrent batches never deadlock.
            ws.sort_by(|a, b| a.record.source_id.cmp(&b.record.source_id));
            let layout = self.layout(kind)?;
            let previous = previous_state(&mut tx, &layout, &ws).await?;
            let plan = plan_batch(&layout, &run.job_id, &ws, &previous);
            if !plan.write.is_empty() {
                upsert_rows(&mut tx, &layout, run, &plan.write).await?;
            }
            insert_change_log(&mut tx, run, kind, &plan.log).await?;
            if kind == EntityKind::Relation {
                apply_parent_links(&mut tx, run, &plan.write).await?;
            }
            outcomes.extend(plan.outcomes);
        }
        tx.commit().await.map_err(|e| backend("commit", e))?;
        Ok(outcomes)
    }

    async fn existing(
        &self,
        kind: EntityKind,
        ids: Vec<String>,
    ) -> Result<HashSet<String>, TargetError> {
        let layout = self.layout(kind)?;
        let mut found = HashSet::new();
        for chunk in ids.chunks(MAX_VARS) {
            let sql = format!(
                "SELECT source_id FROM {} WHERE source_id IN ({})",
                layout.table,
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for row in q
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("lookup", e))?
            {
                found.insert(row.get::<String, _>(0));
            }
        }
        Ok(found)
    }
}

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// The rows a batch is about to overwrite, as they are.
async fn previous_state(
    tx: &mut Transaction<'_, Sqlite>,
    layout: &TableLayout,
    ws: &[&Write],
) -> Result<HashMap<String, Previous>, TargetError> {
    let mut out = HashMap::new();
    let columns = previous_columns(layout.kind, "NULL");
    for chunk in ws.chunks(MAX_VARS) {
        let sql = format!(
            "SELECT {columns} FROM {} WHERE source_id IN ({})",
            layout.table,
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for w in chunk {
            q = q.bind(w.record.source_id.as_str());
        }
        for row in q
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| backend("read previous", e))?
        {
            let (id, previous) = Previous::read(&row);
            out.insert(id, previous);
        }
    }
    Ok(out)
}

async fn upsert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    layout: &TableLayout,
    run: &RunRef,
    ws: &[&Write],
) -> Result<(), TargetError> {
    let data: Vec<&str> = layout.data_columns().collect();
    let columns: Vec<&str> = ["source_id", "scope"]
        .into_iter()
        .chain(data.iter().copied())
        .chain(super::BOOKKEEPING)
        .collect();
    let per_row = columns.len() - 1; // `connected` is a literal
    let row_sql = format!("({},1,?,?,?,?)", placeholders(per_row - 4));
    let set: Vec<String> = std::iter::once("scope")
        .chain(data.iter().copied())
        .chain(["content_hash", "updated_run", "updated_at"])
        .map(|c| format!("{c}=excluded.{c}"))
        .collect();
    let now = now_ms();
    for chunk in ws.chunks((MAX_VARS / per_row).max(1)) {
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            layout.table,
            columns.join(",")
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&row_sql);
        }
        sql.push_str(&format!(
            " ON CONFLICT(source_id) DO UPDATE SET {}, \
             connection_run=CASE WHEN {t}.connected THEN {t}.connection_run ELSE excluded.connection_run END, \
             connected=1",
            set.join(","),
            t = layout.table
        ));
        let mut q = sqlx::query(&sql);
        for w in chunk {
            let r = &w.record;
            q = q.bind(r.source_id.as_str()).bind(r.scope.as_str());
            for v in structural_values(r) {
                q = q.bind(v);
            }
            for v in mapped_values(layout, r) {
                q = bind_value(q, v);
            }
            q = q
                .bind(r.hash.to_string())
                .bind(run.job_id.as_str())
                .bind(run.job_id.as_str())
                .bind(run.job_id.as_str())
                .bind(now);
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| backend(&format!("upsert into {}", layout.table), e))?;
    }
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_value<'q>(q: Query<'q>, v: Option<&'q serde_json::Value>) -> Query<'q> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => q.bind(None::<String>),
        Some(Value::Bool(b)) => q.bind(*b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => q.bind(n.as_f64()),
        },
        Some(Value::String(s)) => q.bind(s.as_str()),
        Some(other) => q.bind(other.to_string()),
    }
}

async fn insert_change_log(
    tx: &mut Transaction<'_, Sqlite>,
    run: &RunRef,
    kind: EntityKind,
    rows: &[(&str, &str, Option<String>)],
) -> Result<(), TargetError> {
    let now = now_ms();
    for chunk in rows.chunks(MAX_VARS / 6) {
        let mut sql = String::from(
            "INSERT INTO change_log (run_id, kind, source_id, change, detail, at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?)");
        }
        let mut q = sqlx::query(&sql);
        for (id, change, detail) in chunk {
            q = q
                .bind(run.job_id.as_str())
                .bind(kind.as_str())
                .bind(*id)
                .bind(*change)
                .bind(detail.as_deref())
                .bind(now);
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| backend("change log", e))?;
    }
    Ok(())
}

/// A `parent` relation sets the child workplace's parent column (the hierarchy).
async fn apply_parent_links(
    tx: &mut Transaction<'_, Sqlite>,
    run: &RunRef,
    ws: &[&Write],
) -> Result<(), TargetError> {
    let mut moves = Vec::new();
    for (child, parent) in parent_links(ws) {
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent_source_id FROM workplaces WHERE source_id = ?")
                .bind(child)
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| backend("read parent", e))?;
        let Some(old) = old else { continue };
        if old.as_deref() == Some(parent) {
            continue;
        }
        sqlx::query("UPDATE workplaces SET parent_source_id = ? WHERE source_id = ?")
            .bind(parent)
            .bind(child)
            .execute(&mut **tx)
            .await
            .map_err(|e| backend("set parent", e))?;
        if let Some(old) = old {
            moves.push((
                child,
                "moved",
                Some(format!("parent_source_id: {old} -> {parent}")),
            ));
        }
    }
    insert_change_log(tx, run, EntityKind::Workplace, &moves).await?;
    Ok(())
}

/// A swept `parent` relation takes the child workplace out of the hierarchy.
async fn clear_parents(
    tx: &mut Transaction<'_, Sqlite>,
    run: &RunRef,
    relation_ids: &[String],
) -> Result<(), TargetError> {
    let mut moves = Vec::new();
    for chunk in relation_ids.chunks(MAX_VARS) {
        let sql = format!(
            "SELECT w.source_id, w.parent_source_id FROM relations r \
             JOIN workplaces w ON w.source_id = r.from_source_id \
             WHERE r.relation_type = 'parent' AND w.parent_source_id = r.to_source_id \
             AND r.source_id IN ({})",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for row in q
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| backend("read parents", e))?
        {
            moves.push((row.get::<String, _>(0), row.get::<String, _>(1)));
        }
    }
    for (child, _) in &moves {
        sqlx::query(
            "UPDATE workplaces SET parent_source_id = NULL, updated_at = ? WHERE source_id = ?",
        )
        .bind(now_ms())
        .bind(child.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| backend("clear parent", e))?;
    }
    let log: Vec<(&str, &str, Option<String>)> = moves
        .iter()
        .map(|(child, old)| {
            (
                child.as_str(),
                "moved",
                Some(format!("parent_source_id: {old} -> ")),
            )
        })
        .collect();
    insert_change_log(tx, run, EntityKind::Workplace, &log).await
}

#[async_trait]
impl Target for SqliteTarget {
    fn limits(&self) -> TargetLimits {
        TargetLimits {
            max_batch: 5_000,
            max_concurrency: 1,
        }
    }

    async fn prepare(&self, plan: &[TablePlan]) -> Result<(), TargetError> {
        let mut columns_of = HashMap::new();
        for p in plan {
            let rows = sqlx::query("SELECT name FROM pragma_table_info(?)")
                .bind(&p.table)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("describe", e))?;
            if !rows.is_empty() {
                columns_of.insert(
                    p.table.clone(),
                    rows.iter().map(|r| r.get::<String, _>(0)).collect(),
                );
            }
        }
        self.layouts.set(layouts(plan, &columns_of)?);
        Ok(())
    }

    async fn upsert(&self, run: &RunRef, writes: &[Write]) -> Result<Vec<Outcome>, TargetError> {
        let written = self.write(run, writes).await?;
        Ok(writes.iter().map(|w| answer(&written, w)).collect())
    }

    async fn upsert_links(
        &self,
        run: &RunRef,
        writes: &[Write],
    ) -> Result<Vec<Outcome>, TargetError> {
        upsert_resolved(
            writes,
            |kind, ids| self.existing(kind, ids),
            |ok| async move { self.write(run, &ok).await },
        )
        .await
    }

    async fn disconnect(
        &self,
        run: &RunRef,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError> {
        Ok(self.disconnect_in_scope(run, kind, &[], ids).await?.len() as u64)
    }

    async fn disconnect_in_scope(
        &self,
        run: &RunRef,
        kind: EntityKind,
        scope: &[Scope],
        ids: &[SourceId],
    ) -> Result<Vec<SourceId>, TargetError> {
        let layout = self.layout(kind)?;
        let mut tx = self.pool.begin().await.map_err(|e| backend("begin", e))?;
        let mut done = Vec::new();
        let now = now_ms();
        // Bound variables: the run, the time, the start time, the scopes, the ids.
        for chunk in ids.chunks(MAX_VARS.saturating_sub(4 + scope.len()).max(1)) {
            // One conditional statement per chunk, as on PostgreSQL: a row changed
            // since the run started (a manual connection) or now in another scope
            // (a move) is left alone.
            let in_scope = if scope.is_empty() {
                String::new()
            } else {
                format!(" AND scope IN ({})", placeholders(scope.len()))
            };
            let sql = format!(
                "UPDATE {} SET connected=0, connection_run=?, updated_at=? \
                 WHERE connected=1 AND (? IS NULL OR updated_at < ?){in_scope} \
                 AND source_id IN ({}) RETURNING source_id",
                layout.table,
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(run.job_id.as_str())
                .bind(now)
                .bind(run.started_at_ms)
                .bind(run.started_at_ms);
            for s in scope {
                q = q.bind(s.as_str());
            }
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| backend("disconnect", e))?;
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let log: Vec<(&str, &str, Option<String>)> = ids
                .iter()
                .map(|id| (id.as_str(), "disconnected", None))
                .collect();
            insert_change_log(&mut tx, run, kind, &log).await?;
            if kind == EntityKind::Relation {
                clear_parents(&mut tx, run, &ids).await?;
            }
            done.extend(ids.into_iter().map(SourceId));
        }
        tx.commit().await.map_err(|e| backend("commit", e))?;
        if done.len() < ids.len() {
            tracing::info!(
                table = %layout.table,
                kept = ids.len() - done.len(),
                "sweep left rows changed since the run started, or in another scope"
            );
        }
        Ok(done)
    }
}
