//! The SQLite state store of the embedded runtime: one file, WAL journal, and every
//! change that spans statements in one `BEGIN IMMEDIATE` transaction.
//!
//! `BEGIN IMMEDIATE` (not sqlx's default deferred `BEGIN`) takes the write lock up
//! front: two deferred transactions that both read and then write would deadlock on
//! the lock upgrade and fail with `SQLITE_BUSY` instead of waiting for the busy
//! timeout. The SQL sticks to what PostgreSQL also accepts (`ON CONFLICT`,
//! `RETURNING`, `VALUES` rows named `column1..n`) so the PostgreSQL store can share it.

mod automation {
    automation_queries!();
}
mod dialect;
mod jobs {
    jobs_queries!();
}
mod ledger {
    ledger_queries!();
}
mod records {
    records_queries!();
}

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use provsync_core::job::{JobId, JobSpec, JobState, KindCounts, Stage};
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::source::{Cursor, ScopeSnapshot};
use provsync_core::store::{
    CallbackDue, CallbackState, Checkpoint, Claim, ClaimConflict, Delivery, Dispatch, ErrorEntry,
    Fired, HeldJob, JobFilter, JobRecord, KnownRecord, LinkCommit, PageCommit, PageEntry,
    ScheduleFire, ScheduleRun, StagedLink, StateStore, StoreError, Transition,
};

/// The migrations, embedded in the binary. `sqlx::migrate!` would need sqlx's
/// `macros` feature, which the crate does not enable; `Migration::new` computes the
/// same checksums, so switching to the macro later keeps existing databases valid.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "state",
        include_str!("../../migrations/sqlite/0001_state.sql"),
    ),
    (
        2,
        "schedules callbacks",
        // Portable SQL: the PostgreSQL store's file, not a copy.
        include_str!("../../migrations/postgres/0002_schedules_callbacks.sql"),
    ),
    (
        3,
        "page snapshot",
        include_str!("../../migrations/postgres/0003_page_snapshot.sql"),
    ),
    (
        4,
        "job note",
        include_str!("../../migrations/postgres/0004_job_note.sql"),
    ),
    (
        5,
        "record anchor",
        include_str!("../../migrations/postgres/0005_record_anchor.sql"),
    ),
    (
        6,
        "job target ref",
        include_str!("../../migrations/postgres/0006_job_target_ref.sql"),
    ),
    (
        7,
        "run claims",
        include_str!("../../migrations/postgres/0007_run_claims.sql"),
    ),
];

/// Rows per multi-row statement: well under SQLite's 32766 bound variables (and
/// PostgreSQL's 65535) at up to 10 columns, large enough to amortise the per-call cost.
const CHUNK: usize = 1_000;

/// The SQLite implementation of [`StateStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Target names to their numbers (they never change once given).
    target_keys: std::sync::Arc<std::sync::Mutex<HashMap<String, i64>>>,
}

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, desc, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*desc),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

impl SqliteStore {
    /// Opens (creating it, and its folder, if missing) and migrates the database
    /// at a `sqlite:` URL.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, true).await
    }

    /// Opens and migrates the database at a `sqlite:` URL if it exists; a missing
    /// file is an error naming it, and nothing is created.
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL: {e}")))?;
        if !memory {
            let file = opts.get_filename();
            if create {
                // The default store lives in a per-user folder that may not exist yet.
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Backend(format!("cannot create folder {}: {e}", dir.display()))
                    })?;
                }
            } else if !file.exists() {
                return Err(StoreError::Backend(format!(
                    "no SQLite database at {}: it does not exist (nothing was created)",
                    file.display()
                )));
            }
        }
        let mut opts = opts
            .create_if_missing(create)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Normal)
            // Batched statements differ by their number of rows; a large cache of
            // them held tens of MB of compiled programs.
            .statement_cache_capacity(24);
        if !memory {
            opts = opts.journal_mode(SqliteJournalMode::Wal);
        }
        let pool = if memory {
            // One connection that never closes: the database lives only as long as it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        }
        .connect_with(opts)
        .await
        .map_err(db("open SQLite state store"))?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool, applying the migrations.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|e| StoreError::Backend(format!("load migrations: {e}")))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrate SQLite state store: {e}")))?;
        Ok(Self {
            pool,
            target_keys: Default::default(),
        })
    }

    /// The connection pool (maintenance and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

// --- helpers shared by the submodules ---

/// The sqlx types the shared queries are expanded over.
type Db = Sqlite;
type Pool = SqlitePool;
type Conn = sqlx::SqliteConnection;
type DbRow = SqliteRow;

use super::sql::{db, db_job, int, json, kind, ms_to_dt, now_ms, parse_state, to_json, uint};

/// Reads a column, reporting an undecodable value as `Corrupt`.
fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// Starts a write transaction holding SQLite's write lock from the first statement.
async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db("begin transaction"))
}

forward_state_store!(SqliteStore);
