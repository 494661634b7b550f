//! The PostgreSQL state store of the distributed runtime: any number of `serve` and
//! `worker` processes share it, so every decision that SQLite gets for free from its
//! single writer (`BEGIN IMMEDIATE`) is made explicit here with row locks.
//!
//! Its tables live in a schema of their own (`provsync_state` unless the URL says
//! `?schema=NAME`), created if missing and put on every connection's `search_path`:
//! the state store and a PostgreSQL target (schema `provider`) can then share one
//! database without their `_sqlx_migrations` tables colliding.
//!
//! Locking, per operation (all transactions are READ COMMITTED, so each statement
//! after a lock sees what the previous holder committed):
//! - `dispatch` and `start_next_queued` lock the target's `dispatch_targets` row,
//!   then the job's row: deciding "start or queue" is serialised per target.
//! - `transition` locks the job's row only, so it never waits for a target lock
//!   while holding a job lock: no lock-order cycle with dispatch.
//! - `commit_page` locks the page's ledger row, so a page delivered twice commits once.

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

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Executor, PgConnection, Postgres, Row, Transaction};

use provsync_core::job::{JobId, JobSpec, JobState, KindCounts, Stage};
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::source::{Cursor, ScopeSnapshot};
use provsync_core::store::{
    CallbackDue, CallbackState, Checkpoint, Claim, ClaimConflict, Delivery, Dispatch, ErrorEntry,
    Fired, HeldJob, JobFilter, JobRecord, KnownRecord, LinkCommit, PageCommit, PageEntry,
    ScheduleFire, ScheduleRun, StagedLink, StateStore, StoreError, Transition,
};

use crate::secret::redact;

/// The schema the store uses when the URL names none.
pub const DEFAULT_SCHEMA: &str = "provsync_state";

/// Rows per batched statement. Arrays are one bind parameter each, so this bounds
/// statement size and memory per round trip, not a parameter limit.
const CHUNK: usize = 10_000;

/// Connections per process: dispatch and page commits hold one each while they wait
/// for a row lock, and several processes share the server's `max_connections`.
const POOL_SIZE: u32 = 8;

/// How long a query waits for a connection (the server restarting mid-run).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL implementation of [`StateStore`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
    /// Target names to their numbers (they never change once given).
    target_keys: std::sync::Arc<std::sync::Mutex<HashMap<String, i64>>>,
}

/// A `postgres://` URL split into what sqlx connects with and the schema to use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedUrl {
    /// The URL without the `schema` parameter (sqlx would ignore it with a warning).
    connect: String,
    /// The schema named by `schema=`, or [`DEFAULT_SCHEMA`].
    schema: String,
    /// The URL's password, to keep it out of error messages.
    password: Option<String>,
}

fn parse_url(url: &str) -> Result<ParsedUrl, StoreError> {
    let password = crate::secret::url_password(url);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("schema", v)) => schema = Some(v.to_owned()),
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let schema = schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
    // Interpolated into SET/CREATE statements (identifiers cannot be bound), so only
    // plain lower-case identifiers: no quoting rules to get wrong, no case folding.
    let plain = schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(StoreError::Backend(format!(
            "PostgreSQL state store schema {schema:?} is not a plain lower-case identifier"
        )));
    }
    let connect = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(ParsedUrl {
        connect,
        schema,
        password,
    })
}

impl PostgresStore {
    /// Connects to a `postgres://` or `postgresql://` URL (optional `schema=NAME`
    /// parameter), creates the schema if missing and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, crate::pg::PoolSettings::default().patience).await
    }

    /// [`Self::open`], retrying a refused connection for `patience`.
    async fn open_with(url: &str, patience: Duration) -> Result<Self, StoreError> {
        let parsed = parse_url(url)?;
        let pw = parsed.password.as_deref();
        let settings = crate::pg::PoolSettings {
            application_name: "provsync-state",
            max_connections: POOL_SIZE,
            acquire_timeout: ACQUIRE_TIMEOUT,
            search_path: Some(&parsed.schema),
            // Plan each lookup for its own arguments: a prepared statement's generic
            // plan, made while `record_state` was still empty, scanned the whole
            // table on every page once it held hundreds of thousands of rows.
            options: &[("plan_cache_mode", "force_custom_plan")],
            patience,
            password: None,
        };
        let pool = crate::pg::connect(&parsed.connect, &settings)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let schema = parsed.schema;
        // Two processes starting at once would both find the schema missing, and the
        // loser's CREATE SCHEMA IF NOT EXISTS fails on the catalog's unique index: a
        // transaction-scoped advisory lock makes them take turns.
        let mut tx = pool.begin().await.map_err(db("begin transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('provsync_state_schema'))")
            .execute(&mut *tx)
            .await
            .map_err(db("lock schema creation"))?;
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await
            .map_err(db("create schema"))?;
        tx.commit().await.map_err(db("commit schema creation"))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Backend(redact(format!("migrate PostgreSQL state store: {e}"), pw))
            })?;
        Ok(Self {
            pool,
            schema,
            target_keys: Default::default(),
        })
    }

    /// The connection pool (maintenance and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

// --- helpers shared by the submodules ---

/// The sqlx types the shared queries are expanded over.
type Db = Postgres;
type Pool = PgPool;
type Conn = PgConnection;
type DbRow = PgRow;

use super::sql::{db, db_job, int, json, kind, ms_to_dt, now_ms, parse_state, to_json, uint};

/// Reads a column, reporting an undecodable value as `Corrupt`.
fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// Starts a transaction (READ COMMITTED; callers take the row locks they need).
async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    pool.begin().await.map_err(db("begin transaction"))
}

forward_state_store!(PostgresStore);

/// Throwaway databases on the test server (127.0.0.1:5432, user `postgres`).
#[cfg(test)]
pub(crate) mod testdb {
    use std::str::FromStr;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    /// The test server, without a database.
    pub(crate) const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

    /// A database of its own for one test, dropped (connections and all) with the guard.
    #[derive(Debug)]
    pub(crate) struct TestDb {
        /// Database name.
        pub name: String,
        /// URL to connect to it.
        pub url: String,
    }

    impl TestDb {
        /// Creates a fresh database, or returns `None` after printing why when the
        /// server is unreachable; with `CI=true` an unreachable server is a failure.
        pub(crate) async fn create() -> Option<TestDb> {
            static N: AtomicU32 = AtomicU32::new(0);
            let admin_url = format!("{SERVER}/postgres");
            let admin = tokio::time::timeout(
                Duration::from_secs(10),
                PgConnectOptions::from_str(&admin_url)
                    .expect("admin URL")
                    .connect(),
            )
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
            let mut admin = match admin {
                Ok(c) => c,
                Err(e) => {
                    if std::env::var("CI").as_deref() == Ok("true") {
                        panic!("PostgreSQL at {admin_url} is unreachable and CI=true: {e}");
                    }
                    eprintln!("SKIPPED: PostgreSQL at {admin_url} is unreachable ({e})");
                    return None;
                }
            };
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .subsec_nanos();
            let name = format!(
                "provsync_store_{}_{}_{}",
                std::process::id(),
                nanos,
                N.fetch_add(1, Ordering::SeqCst)
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
            admin.close().await.ok();
            Some(TestDb {
                url: format!("{SERVER}/{name}"),
                name,
            })
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let name = self.name.clone();
            // Drop runs inside the test's runtime, which cannot be blocked on: a thread
            // with a runtime of its own does the work.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let admin = PgConnectOptions::from_str(&format!("{SERVER}/postgres"))
                        .expect("admin URL")
                        .connect()
                        .await;
                    if let Ok(mut admin) = admin {
                        // FORCE: the store's pool may still hold connections.
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut admin)
                                .await;
                        let _ = admin.close().await;
                    }
                })
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdb::TestDb;
    use super::*;

    #[test]
    fn url_schema_parameter_is_stripped_and_checked() {
        let p = parse_url("postgres://u:pw@h:5432/db").unwrap();
        assert_eq!(p.connect, "postgres://u:pw@h:5432/db");
        assert_eq!(p.schema, DEFAULT_SCHEMA);
        assert_eq!(p.password.as_deref(), Some("pw"));

        let p = parse_url("postgresql://h/db?sslmode=disable&schema=state_2&application_name=x")
            .unwrap();
        assert_eq!(
            p.connect,
            "postgresql://h/db?sslmode=disable&application_name=x"
        );
        assert_eq!(p.schema, "state_2");
        assert_eq!(p.password, None);

        let p = parse_url("postgres://u@h/db?schema=s").unwrap();
        assert_eq!(p.connect, "postgres://u@h/db");
        assert_eq!(p.password, None);

        for bad in ["Upper", "a-b", "1x", "x;drop", ""] {
            let e = parse_url(&format!("postgres://u:s3cret@h/db?schema={bad}")).unwrap_err();
            assert!(e.to_string().contains("schema"), "{e}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }

    #[tokio::test]
    async fn errors_never_echo_the_password() {
        // Nothing listens on port 1: the connection is refused.
        let e = PostgresStore::open_with(
            "postgres://sync:s3cret@127.0.0.1:1/provsync",
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, StoreError::Backend(_)));
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = PostgresStore::open("postgres://sync:s3cret@h:notaport/x")
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert_eq!(redact("a s3cret b".into(), Some("s3cret")), "a *** b");
    }

    /// Two state stores and a PostgreSQL target share one database, each in its own
    /// schema with its own `_sqlx_migrations`; reopening applies nothing twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schemas_keep_stores_and_target_apart() {
        let Some(db) = TestDb::create().await else {
            return;
        };
        let a = PostgresStore::open(&format!("{}?schema=state_a", db.url))
            .await
            .unwrap();
        let b = PostgresStore::open(&db.url).await.unwrap();
        assert_eq!(b.schema(), DEFAULT_SCHEMA);
        let target = crate::target::sql::postgres::PostgresTarget::connect(&db.url, "provider", 2)
            .await
            .unwrap();

        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "scope": ["US"],
            "source": {"type": "file", "path": "world.ndjson"},
            "target": {"type": "sqlite", "url": "sqlite://t.db"},
        }))
        .unwrap();
        let id = JobId::new();
        a.create_job(&id, "t", &spec, "test").await.unwrap();
        assert!(matches!(b.job(&id).await, Err(StoreError::NotFound(_))));

        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT table_schema::text FROM information_schema.tables \
             WHERE table_name = '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(a.pool())
        .await
        .unwrap();
        assert_eq!(schemas, ["provider", "provsync_state", "state_a"]);

        a.pool().close().await;
        let again = PostgresStore::open(&format!("{}?schema=state_a", db.url))
            .await
            .unwrap();
        assert_eq!(again.job(&id).await.unwrap().state, JobState::Accepted);
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(again.pool())
            .await
            .unwrap();
        assert_eq!(applied, 7, "each migration once");
        again.pool().close().await;
        b.pool().close().await;
        target.pool().close().await;
    }

    /// Times a 100k-record page commit, a 100k-id `known_records` and 100k claims
    /// (run by hand: `cargo test --release -p provsync --lib store::postgres::tests::measure
    /// -- --ignored --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement, not a check"]
    async fn measure_100k_commit_and_known_records() {
        use provsync_core::model::ContentHash;
        use provsync_core::store::HashUpdate;
        let Some(db) = TestDb::create().await else {
            return;
        };
        let s = PostgresStore::open(&db.url).await.unwrap();
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "scope": ["US"],
            "source": {"type": "file", "path": "world.ndjson"},
            "target": {"type": "sqlite", "url": "sqlite://t.db"},
        }))
        .unwrap();
        let j = JobId::new();
        s.create_job(&j, "t", &spec, "test").await.unwrap();
        s.dispatch(&j, "w", 60_000).await.unwrap();
        let cp = Checkpoint {
            next_page: 2,
            next_cursor: None,
            extraction_complete: true,
        };
        for p in 0..2 {
            s.record_page(&j, p, &Cursor(format!("c{p}")), 1, None, &cp)
                .await
                .unwrap();
        }
        let n = 100_000u32;
        let written: Vec<_> = (0..n)
            .map(|i| HashUpdate {
                kind: EntityKind::Individual,
                source_id: SourceId(format!("WUSM{i:08}")),
                scope: Scope::from("US"),
                hash: ContentHash(u128::from(i)),
                target_id: Some("001".into()),
                anchor: None,
            })
            .collect();
        let commit = PageCommit {
            written,
            ..PageCommit::default()
        };
        let t = std::time::Instant::now();
        s.commit_page(&j, "t", 0, &commit).await.unwrap();
        println!("commit_page, 100k hash updates: {:?}", t.elapsed());
        let ids: Vec<_> = (0..n).map(|i| SourceId(format!("WUSM{i:08}"))).collect();
        let t = std::time::Instant::now();
        let known = s
            .known_records("t", EntityKind::Individual, &ids)
            .await
            .unwrap();
        println!("known_records, 100k ids: {:?}", t.elapsed());
        assert_eq!(known.len(), n as usize);
        let claims: Vec<(SourceId, Scope)> =
            ids.into_iter().map(|id| (id, Scope::from("US"))).collect();
        let t = std::time::Instant::now();
        s.claim_records(&j, Some(1), EntityKind::Individual, &claims)
            .await
            .unwrap();
        println!("claim_records, 100k records: {:?}", t.elapsed());
        s.pool().close().await;
    }
}
