//! The PostgreSQL target: the provider store in a schema of a real server.
//! Batches go as one `INSERT ... SELECT FROM unnest(...)` per table: one round trip
//! and one plan per batch, whatever its size.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::target::{Outcome, RunRef, TablePlan, Target, TargetError, TargetLimits, Write};
use sqlx::{Executor, PgPool, Postgres, Row, Transaction};

use super::{
    answer, layouts, mapped_values, now_ms, parent_links, plan_batch, previous_columns,
    structural_values, upsert_resolved, value_text, Layouts, Previous, TableLayout,
};

/// The PostgreSQL provider store.
pub struct PostgresTarget {
    pool: PgPool,
    schema: String,
    layouts: Layouts,
    types: RwLock<HashMap<(String, String), String>>,
}

fn backend(context: &str, e: sqlx::Error) -> TargetError {
    TargetError::Unavailable(format!("postgres target: {context}: {e}"))
}

impl PostgresTarget {
    /// Connects, creates `schema` if needed and migrates the provider schema into it.
    pub async fn connect(url: &str, schema: &str, pool_size: u32) -> Result<Self, TargetError> {
        Self::connect_with(url, schema, pool_size, None).await
    }

    /// [`Self::connect`] with a password that does not come with the URL.
    pub async fn connect_with(
        url: &str,
        schema: &str,
        pool_size: u32,
        password: Option<&crate::secret::Secret>,
    ) -> Result<Self, TargetError> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.is_empty()
        {
            return Err(TargetError::Config(format!(
                "postgres target schema {schema:?} is not a plain identifier"
            )));
        }
        let settings = crate::pg::PoolSettings {
            application_name: "provsync-target",
            max_connections: pool_size,
            search_path: Some(schema),
            password,
            ..crate::pg::PoolSettings::default()
        };
        let pool = crate::pg::connect(url, &settings)
            .await
            .map_err(|e| TargetError::Unavailable(format!("postgres target: {e}")))?;
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await
            .map_err(|e| backend("create schema", e))?;
        sqlx::migrate!("migrations/target-postgres")
            .run(&pool)
            .await
            .map_err(|e| TargetError::Config(format!("postgres target migration: {e}")))?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
            layouts: Layouts::default(),
            types: RwLock::new(HashMap::new()),
        })
    }

    /// The pool, for tests and the bench to read the provider tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn layout(&self, kind: EntityKind) -> Result<TableLayout, TargetError> {
        self.layouts.get(kind)
    }

    /// The SQL cast that turns a text array element into the column's type.
    fn cast(&self, table: &str, column: &str) -> &'static str {
        let types = self.types.read().expect("types lock");
        match types
            .get(&(table.to_owned(), column.to_owned()))
            .map(String::as_str)
        {
            Some("boolean") => "::boolean",
            Some("jsonb") => "::jsonb",
            Some("json") => "::json",
            Some("bigint") => "::bigint",
            Some("integer") => "::integer",
            Some("double precision") => "::double precision",
            Some("numeric") => "::numeric",
            Some("date") => "::date",
            _ => "",
        }
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
            let previous = self.previous_state(&mut tx, &layout, &ws).await?;
            let plan = plan_batch(&layout, &run.job_id, &ws, &previous);
            if !plan.write.is_empty() {
                self.upsert_rows(&mut tx, &layout, run, &plan.write).await?;
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

    /// The rows a batch is about to overwrite, as they are.
    async fn previous_state(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        layout: &TableLayout,
        ws: &[&Write],
    ) -> Result<HashMap<String, Previous>, TargetError> {
        let ids: Vec<&str> = ws.iter().map(|w| w.record.source_id.as_str()).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE source_id = ANY($1)",
            previous_columns(layout.kind, "NULL::text"),
            layout.table
        );
        let rows = sqlx::query(&sql)
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| backend("read previous", e))?;
        Ok(rows.iter().map(Previous::read).collect())
    }

    async fn upsert_rows(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        layout: &TableLayout,
        run: &RunRef,
        ws: &[&Write],
    ) -> Result<(), TargetError> {
        let data: Vec<&str> = layout.data_columns().collect();
        let arrays: Vec<&str> = ["source_id", "scope"]
            .into_iter()
            .chain(data.iter().copied())
            .chain(["content_hash"])
            .collect();
        let n = arrays.len();
        let unnest: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
        let select: Vec<String> = arrays
            .iter()
            .map(|c| format!("u.{c}{}", self.cast(&layout.table, c)))
            .collect();
        let set: Vec<String> = std::iter::once("scope")
            .chain(data.iter().copied())
            .chain(["content_hash", "updated_run", "updated_at"])
            .map(|c| format!("{c}=EXCLUDED.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO {t} ({cols}, connected, connection_run, created_run, updated_run, updated_at) \
             SELECT {select}, TRUE, ${r}, ${r}, ${r}, ${now} FROM unnest({unnest}) AS u({cols}) \
             ON CONFLICT (source_id) DO UPDATE SET {set}, \
             connection_run = CASE WHEN {t}.connected THEN {t}.connection_run ELSE EXCLUDED.connection_run END, \
             connected = TRUE",
            t = layout.table,
            cols = arrays.join(","),
            select = select.join(","),
            unnest = unnest.join(","),
            r = n + 1,
            now = n + 2,
            set = set.join(",")
        );
        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(ws.len()); n];
        for w in ws {
            let r = &w.record;
            let mut i = 0;
            let mut push = |v: Option<String>| {
                columns[i].push(v);
                i += 1;
            };
            push(Some(r.source_id.0.clone()));
            push(Some(r.scope.0.clone()));
            for v in structural_values(r) {
                push(v);
            }
            for v in mapped_values(layout, r) {
                push(v.and_then(value_text));
            }
            push(Some(r.hash.to_string()));
        }
        let mut q = sqlx::query(&sql);
        for col in columns {
            q = q.bind(col);
        }
        q.bind(run.job_id.as_str())
            .bind(now_ms())
            .execute(&mut **tx)
            .await
            .map_err(|e| backend(&format!("upsert into {}", layout.table), e))?;
        Ok(())
    }

    async fn existing(
        &self,
        kind: EntityKind,
        ids: Vec<String>,
    ) -> Result<HashSet<String>, TargetError> {
        let layout = self.layout(kind)?;
        let sql = format!(
            "SELECT source_id FROM {} WHERE source_id = ANY($1)",
            layout.table
        );
        let rows = sqlx::query(&sql)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("lookup", e))?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }
}

async fn insert_change_log(
    tx: &mut Transaction<'_, Postgres>,
    run: &RunRef,
    kind: EntityKind,
    rows: &[(&str, &str, Option<String>)],
) -> Result<(), TargetError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let changes: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let details: Vec<Option<&str>> = rows.iter().map(|r| r.2.as_deref()).collect();
    sqlx::query(
        "INSERT INTO change_log (run_id, kind, source_id, change, detail, at) \
         SELECT $1, $2, u.id, u.change, u.detail, $6 \
         FROM unnest($3::text[], $4::text[], $5::text[]) AS u(id, change, detail)",
    )
    .bind(run.job_id.as_str())
    .bind(kind.as_str())
    .bind(&ids)
    .bind(&changes)
    .bind(&details)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(|e| backend("change log", e))?;
    Ok(())
}

/// A `parent` relation sets the child workplace's parent column (the hierarchy).
async fn apply_parent_links(
    tx: &mut Transaction<'_, Postgres>,
    run: &RunRef,
    ws: &[&Write],
) -> Result<(), TargetError> {
    let (children, parents): (Vec<&str>, Vec<&str>) = parent_links(ws).into_iter().unzip();
    if children.is_empty() {
        return Ok(());
    }
    // The old parent comes from a self-join on the row before the update.
    let rows = sqlx::query(
        "UPDATE workplaces w SET parent_source_id = u.parent \
         FROM unnest($1::text[], $2::text[]) AS u(child, parent), workplaces old \
         WHERE w.source_id = u.child AND old.source_id = w.source_id \
         AND w.parent_source_id IS DISTINCT FROM u.parent \
         RETURNING w.source_id, old.parent_source_id, u.parent",
    )
    .bind(&children)
    .bind(&parents)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| backend("set parent", e))?;
    let moves: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            let old: Option<String> = r.get(1);
            old.map(|o| {
                (
                    r.get::<String, _>(0),
                    format!("parent_source_id: {o} -> {}", r.get::<String, _>(2)),
                )
            })
        })
        .collect();
    let log: Vec<(&str, &str, Option<String>)> = moves
        .iter()
        .map(|(c, d)| (c.as_str(), "moved", Some(d.clone())))
        .collect();
    insert_change_log(tx, run, EntityKind::Workplace, &log).await
}

/// A swept `parent` relation takes the child workplace out of the hierarchy.
async fn clear_parents(
    tx: &mut Transaction<'_, Postgres>,
    run: &RunRef,
    relation_ids: &[String],
) -> Result<(), TargetError> {
    let rows = sqlx::query(
        "UPDATE workplaces w SET parent_source_id = NULL, updated_at = $2 \
         FROM relations r, workplaces old \
         WHERE r.source_id = ANY($1) AND r.relation_type = 'parent' \
         AND w.source_id = r.from_source_id AND w.parent_source_id = r.to_source_id \
         AND old.source_id = w.source_id \
         RETURNING w.source_id, old.parent_source_id",
    )
    .bind(relation_ids)
    .bind(now_ms())
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| backend("clear parents", e))?;
    let moves: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                format!("parent_source_id: {} -> ", r.get::<String, _>(1)),
            )
        })
        .collect();
    let log: Vec<(&str, &str, Option<String>)> = moves
        .iter()
        .map(|(c, d)| (c.as_str(), "moved", Some(d.clone())))
        .collect();
    insert_change_log(tx, run, EntityKind::Workplace, &log).await
}

#[async_trait]
impl Target for PostgresTarget {
    fn limits(&self) -> TargetLimits {
        TargetLimits {
            max_batch: 5_000,
            max_concurrency: 2,
        }
    }

    async fn prepare(&self, plan: &[TablePlan]) -> Result<(), TargetError> {
        let rows = sqlx::query(
            "SELECT table_name::text, column_name::text, data_type::text \
             FROM information_schema.columns WHERE table_schema = $1",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("describe", e))?;
        let mut columns_of: HashMap<String, Vec<String>> = HashMap::new();
        let mut types = HashMap::new();
        for r in rows {
            let (t, c, ty): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            columns_of.entry(t.clone()).or_default().push(c.clone());
            types.insert((t, c), ty);
        }
        self.layouts.set(layouts(plan, &columns_of)?);
        *self.types.write().expect("types lock") = types;
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
        let ids: Vec<&str> = ids.iter().map(SourceId::as_str).collect();
        let scopes: Vec<&str> = scope.iter().map(Scope::as_str).collect();
        let mut tx = self.pool.begin().await.map_err(|e| backend("begin", e))?;
        // One conditional statement: a row changed since the run started (a manual
        // connection) or now in another scope (a move) is left alone.
        let sql = format!(
            "UPDATE {} SET connected = FALSE, connection_run = $1, updated_at = $2 \
             WHERE connected AND source_id = ANY($3) \
             AND (cardinality($4::text[]) = 0 OR scope = ANY($4)) \
             AND ($5::bigint IS NULL OR updated_at < $5) RETURNING source_id",
            layout.table
        );
        let rows = sqlx::query(&sql)
            .bind(run.job_id.as_str())
            .bind(now_ms())
            .bind(&ids)
            .bind(&scopes)
            .bind(run.started_at_ms)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("disconnect", e))?;
        let done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if done.len() < ids.len() {
            tracing::info!(
                table = %layout.table,
                kept = ids.len() - done.len(),
                "sweep left rows changed since the run started, or in another scope"
            );
        }
        let log: Vec<(&str, &str, Option<String>)> = done
            .iter()
            .map(|id| (id.as_str(), "disconnected", None))
            .collect();
        insert_change_log(&mut tx, run, kind, &log).await?;
        if kind == EntityKind::Relation {
            clear_parents(&mut tx, run, &done).await?;
        }
        tx.commit().await.map_err(|e| backend("commit", e))?;
        Ok(done.into_iter().map(SourceId).collect())
    }
}
