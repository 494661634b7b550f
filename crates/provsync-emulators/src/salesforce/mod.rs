//! The Salesforce org emulator (`provsync emulate salesforce`): OAuth (client
//! credentials, JWT bearer), REST sObjects, collections, composite, composite graph,
//! Bulk API 2.0 ingest, SOQL query, Apex REST, the Metadata API's value sets, every
//! documented limit with Salesforce's error shapes, durable state, faults and stats.
//! The contract with the target connector is `docs/salesforce-model.md`.

pub mod apex;
pub mod auth;
pub mod bulk;
pub mod collections;
pub mod composite;
pub mod errors;
pub mod faults;
pub mod graph;
pub mod ids;
pub mod limits;
pub mod metadata;
pub mod persist;
pub mod query;
pub mod rest;
pub mod schema;
pub mod server;
pub mod soql;
pub mod stats;
pub mod store;
pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use faults::Faults;
pub use schema::Schema;
pub use server::{router, serve};

/// The newest API version served (and the one `/services/data/` lists last).
pub const LATEST_VERSION: f64 = 65.0;
/// The oldest API version served: 21.0 to 30.0 are retired since Summer '25 (REST API
/// Developer Guide, "API End-of-Life Policy",
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/api_rest_eol.htm).
pub const OLDEST_VERSION: f64 = 31.0;

/// Everything `provsync emulate salesforce` configures.
#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// The org's objects.
    pub schema: Schema,
    /// Directory keeping the org across restarts (`None`: in memory).
    pub state_dir: Option<PathBuf>,
    /// Connected app consumer key.
    pub client_id: String,
    /// Connected app consumer secret (client credentials flow).
    pub client_secret: String,
    /// The integration user (`sub` of JWT assertions).
    pub username: String,
    /// Key checking JWT bearer assertions (`None`: the flow is refused).
    pub jwt_key: Option<auth::JwtKey>,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// API calls allowed per window.
    pub api_budget: u64,
    /// The rolling window of the budget.
    pub budget_window: Duration,
    /// Long calls allowed at once.
    pub max_long_calls: usize,
    /// A call running this long counts as long.
    pub long_call: Duration,
    /// Faults at start.
    pub faults: Faults,
    /// Seed of the fault rolls.
    pub seed: u64,
}

impl Default for SalesforceConfig {
    fn default() -> SalesforceConfig {
        SalesforceConfig {
            schema: Schema::default_org(),
            state_dir: None,
            client_id: "provsync".into(),
            client_secret: "provsync-secret".into(),
            username: "integration@provsync.example".into(),
            jwt_key: None,
            token_ttl: Duration::from_secs(7200),
            api_budget: 100_000,
            budget_window: Duration::from_secs(86_400),
            max_long_calls: 25,
            long_call: Duration::from_secs(20),
            faults: Faults::default(),
            seed: 1,
        }
    }
}

/// One Apex REST call as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApexCall {
    /// Path after `/services/apexrest/`.
    pub path: String,
    /// HTTP method.
    pub method: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Body (JSON when it parses, else text).
    pub body: serde_json::Value,
    /// When (RFC 3339).
    pub at: String,
}

/// The running emulator's shared state.
#[derive(Debug)]
pub struct Emu {
    /// The org's objects.
    pub schema: Arc<Schema>,
    /// Durable state.
    pub org: Mutex<store::Org>,
    /// Issued tokens.
    pub tokens: auth::Tokens,
    /// Faults in force.
    pub faults: RwLock<Faults>,
    /// API calls allowed per window.
    pub api_budget: AtomicU64,
    /// Budget window, seconds.
    pub window_secs: u64,
    /// Long calls allowed at once.
    pub max_long_calls: usize,
    /// Threshold of a long call.
    pub long_call: Duration,
    /// Consumer key.
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: String,
    /// Integration user.
    pub username: String,
    /// JWT key.
    pub jwt_key: Option<auth::JwtKey>,
    /// Calls in flight.
    pub inflight: limits::InFlight,
    /// Parent row locks.
    pub locks: Arc<limits::ParentLocks>,
    /// Fault rolls.
    pub rng: Arc<faults::Rng>,
    /// Counters.
    pub stats: Arc<stats::Stats>,
    /// Open query cursors by locator.
    pub cursors: Mutex<HashMap<String, query::Cursor>>,
    /// Apex REST calls recorded.
    pub apex_calls: Mutex<Vec<ApexCall>>,
    req_seq: AtomicU64,
}

impl Emu {
    /// Builds the emulator, restoring `state_dir` when given.
    pub fn new(cfg: SalesforceConfig) -> std::io::Result<Arc<Emu>> {
        cfg.faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let schema = Arc::new(cfg.schema);
        let org = match &cfg.state_dir {
            Some(dir) => store::Org::durable(schema.clone(), dir)?,
            None => store::Org::new(schema.clone()),
        };
        let emu = Arc::new(Emu {
            schema,
            org: Mutex::new(org),
            tokens: auth::Tokens::new(cfg.token_ttl, cfg.seed),
            faults: RwLock::new(cfg.faults),
            api_budget: AtomicU64::new(cfg.api_budget),
            window_secs: cfg.budget_window.as_secs().max(1),
            max_long_calls: cfg.max_long_calls,
            long_call: cfg.long_call,
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            username: cfg.username,
            jwt_key: cfg.jwt_key,
            inflight: limits::InFlight::default(),
            locks: Arc::new(limits::ParentLocks::default()),
            rng: Arc::new(faults::Rng::new(cfg.seed)),
            stats: Arc::new(stats::Stats::default()),
            cursors: Mutex::new(HashMap::new()),
            apex_calls: Mutex::new(Vec::new()),
            req_seq: AtomicU64::new(1),
        });
        bulk::resume_unfinished(&emu);
        Ok(emu)
    }

    /// The org, locked. A handler that panicked leaves the data as its transaction
    /// left it; the emulator keeps serving rather than failing every later call.
    pub fn org_guard(&self) -> std::sync::MutexGuard<'_, store::Org> {
        self.org
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new request number.
    pub fn next_req(&self) -> u64 {
        self.req_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.faults.read().expect("faults lock").clone()
    }

    /// A row-lock scope for a request.
    pub fn scope(&self, req: u64) -> limits::CallScope {
        limits::CallScope::new(
            req,
            self.locks.clone(),
            self.faults().lock_errors,
            self.rng.clone(),
            self.stats.clone(),
        )
    }

    /// API calls used in the window, and the budget.
    pub fn budget(&self) -> (u64, u64) {
        let used = self.org_guard().calls.used(epoch_secs(), self.window_secs);
        (used, self.api_budget.load(Ordering::Relaxed))
    }

    /// Writes a snapshot (clean shutdown).
    pub fn checkpoint(&self) -> std::io::Result<()> {
        self.org_guard().checkpoint()
    }
}

/// Seconds since the Unix epoch.
pub fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
