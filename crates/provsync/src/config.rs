//! The service configuration: one TOML file, typed, unknown keys refused with their
//! path, then `PROVSYNC_*` environment overrides, then command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! state = "sqlite:///var/lib/provsync/state.db"   # default: the per-user state store
//!
//! [[tokens]]
//! name = "crm"
//! sha256 = "<hex SHA-256 of the token>"
//! role = "operate"        # read < operate < admin
//!
//! [callbacks]
//! secret_file = "/run/secrets/provsync-callbacks"   # HMAC-SHA256 key
//! allowed_hosts = ["crm.example"]  # none listed: every callback is refused
//!
//! [[schedules]]
//! name = "codes-nightly"
//! cron = "0 30 1 * * *"   # sec min hour day month weekday (seconds optional)
//! job_file = "jobs/codes.toml"
//!
//! [tls]                   # serve HTTPS (PEM files; default plain HTTP)
//! cert_file = "tls/server.crt"   # the chain, leaf first
//! key_file = "tls/server.key"
//!
//! [relay]                 # also publish a target's change outbox to RabbitMQ
//! database = "postgres://postgres@127.0.0.1:5432/provsync"
//! schema = "gmc"
//! amqp = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! ```
//!
//! Every key can be overridden from the environment: `PROVSYNC_<KEY>`, with `__`
//! between the levels of a nested key (`PROVSYNC_CALLBACKS__MAX_ATTEMPTS=5`); the
//! value is read as a TOML value (number, boolean, array, inline table) when it is
//! one, else as a string (`PROVSYNC_TOKENS='[{name="ops", sha256="...", role="admin"}]'`).
//!
//! Relative paths in the file (`job_file`, `secret_file`, a `sqlite:` state) start
//! at the file's folder, and so do those inside its jobs (see [`crate::paths`]);
//! a state URL from the environment or `--state` starts at the working directory.
//!
//! Tokens are stored as SHA-256 hashes only, and the callback key is best given as
//! a file: neither is ever printed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use provsync_core::job::{ConnectorSpec, JobSpec};
use serde::Deserialize;

use crate::connections::reach::Bounds;
use crate::connections::Connections;

use crate::schedule::{self, AfterFailure, Schedule};

/// Default listen address of `provsync serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What a token may do. Ordered: `read < operate < admin`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read jobs, status and errors.
    Read,
    /// Also start and abort jobs.
    Operate,
    /// Everything.
    Admin,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// State store URL.
    #[serde(default)]
    pub state: Option<String>,
    /// Stage queue URL (`amqp://...` for the distributed runtime).
    #[serde(default)]
    pub queue: Option<String>,
    /// API tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Callback delivery.
    #[serde(default)]
    pub callbacks: CallbacksEntry,
    /// Scheduled jobs.
    #[serde(default)]
    pub schedules: Vec<ScheduleEntry>,
    /// Named sources that API requests and schedules use (`[sources.<name>]`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, crate::source::SourceConfig>)]
    pub sources: BTreeMap<String, ConnectorSpec>,
    /// Named targets that API requests and schedules use (`[targets.<name>]`).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, crate::target::TargetConfig>)]
    pub targets: BTreeMap<String, ConnectorSpec>,
    /// What callers of the API may choose beyond the named connections.
    #[serde(default)]
    pub api: ApiEntry,
    /// The change relay `serve` runs beside the API (none without the table).
    #[serde(default)]
    pub relay: Option<RelayEntry>,
    /// Connection limits and timeouts of the HTTP server.
    #[serde(default)]
    pub http: HttpEntry,
    /// Serve HTTPS (plain HTTP without the table).
    #[serde(default)]
    pub tls: Option<TlsEntry>,
    /// Folder that relative paths start from (the config file's).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// `state` came from `PROVSYNC_STATE`, not the file (so it starts at the
    /// working directory).
    #[serde(skip)]
    pub state_from_env: bool,
    /// `PROVSYNC_*` variables that name no configuration key (warned about).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// The file's name and text, so that errors found later name the line.
    #[serde(skip)]
    pub origin: Option<(String, String)>,
}

/// The `[api]` table: what a caller of the API may choose besides the named
/// connections.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiEntry {
    /// Folder of the mappings a request names: `"mapping": "lsc-custom"` reads
    /// `<folder>/lsc-custom.toml` (relative to the config file). Without it a request
    /// uses its target's default mapping.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mappings: Option<PathBuf>,
    /// Lets `admin` tokens describe a source or target in full (`{"type": "file",
    /// "path": ...}`) instead of naming a connection; off by default. Even then their
    /// files must lie under `data_folders` and their hosts be in `allowed_hosts`.
    #[serde(default)]
    pub free_form_connectors: bool,
    /// Folders whose files free-form connectors may read and write (relative to the
    /// config file; each must exist).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub data_folders: Vec<PathBuf>,
    /// Hosts free-form connectors may connect to: `host`, `host:port` or an IP
    /// address (`"127.0.0.1:5432"`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// What the API lets callers choose, resolved.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// Folder of the mappings requests name (canonical).
    pub mappings: Option<PathBuf>,
    /// Whether `admin` tokens may describe connectors in full.
    pub free_form_connectors: bool,
    /// Where such connectors may reach.
    pub bounds: Bounds,
}

/// The `[callbacks]` table.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbacksEntry {
    /// The HMAC key itself (prefer `secret_file` or `PROVSYNC_CALLBACKS__SECRET`).
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the HMAC key (trailing newline ignored).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret_file: Option<PathBuf>,
    /// Attempts before a callback is given up (default 8).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Timeout of one attempt in seconds (default 10).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Hosts callbacks may go to (`host`, `host:port`, or an IP address such as
    /// `127.0.0.1:9000`); empty (the default) refuses every callback. A loopback,
    /// link-local, private or other non-global address is reached only when listed
    /// as itself.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Let a listed host name resolve to a private address (10/8, 172.16/12,
    /// 192.168/16, fc00::/7); default false. Loopback and link-local addresses still
    /// need the address itself listed.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

impl fmt::Debug for CallbacksEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbacksEntry")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("secret_file", &self.secret_file)
            .field("max_attempts", &self.max_attempts)
            .field("timeout_secs", &self.timeout_secs)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .finish()
    }
}

/// The `[http]` table: what the server holds every connection to, so that slow or
/// idle clients cannot hold its memory.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpEntry {
    /// Open connections at most; further ones wait until one closes.
    #[serde(default)]
    #[schema(default = 1024, minimum = 1)]
    pub max_connections: Option<usize>,
    /// Seconds a request's headers may take to arrive; an idle keep-alive
    /// connection is closed after as long.
    #[serde(default)]
    #[schema(default = 10, minimum = 1)]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a request's body may take to arrive.
    #[serde(default)]
    #[schema(default = 30, minimum = 1)]
    pub body_timeout_secs: Option<u64>,
    /// Refused tokens one client address may present per minute; once spent,
    /// its requests with a token get 429 until the budget refills (at this rate).
    #[serde(default)]
    #[schema(default = 10, minimum = 1)]
    pub auth_failures_per_minute: Option<u32>,
}

/// The `[tls]` table: `serve` speaks HTTPS with this certificate and key.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsEntry {
    /// PEM file of the certificate chain, leaf first (relative to the config file).
    #[schema(value_type = String)]
    pub cert_file: PathBuf,
    /// PEM file of the private key (PKCS#8, PKCS#1 or SEC1; relative to the config
    /// file).
    #[schema(value_type = String)]
    pub key_file: PathBuf,
}

/// The `[relay]` table: `serve` drains a target database's change outbox to a
/// RabbitMQ topic exchange, as `provsync relay-changes` does.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayEntry {
    /// PostgreSQL URL of the target database holding `change_outbox`.
    pub database: String,
    /// Schema of the outbox (default `gmc`).
    #[serde(default)]
    pub schema: Option<String>,
    /// AMQP URL of the broker (default `amqp://127.0.0.1:5672/%2f`).
    #[serde(default)]
    pub amqp: Option<String>,
    /// Topic exchange (default `provsync.changes`).
    #[serde(default)]
    pub exchange: Option<String>,
    /// Poll interval of an empty outbox in milliseconds (default 500).
    #[serde(default)]
    pub poll_ms: Option<u64>,
}

impl fmt::Debug for RelayEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayEntry")
            .field("database", &crate::secret::redact_urls(&self.database))
            .field("schema", &self.schema)
            .field(
                "amqp",
                &self.amqp.as_deref().map(crate::secret::redact_urls),
            )
            .field("exchange", &self.exchange)
            .field("poll_ms", &self.poll_ms)
            .finish()
    }
}

/// One `[[schedules]]` entry.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Name (letters, digits, `.`, `_`, `-`): the manual trigger's path segment.
    pub name: String,
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// `UTC` (default) or a fixed offset such as `+01:00`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// A job file (relative paths start at the config file's folder).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub job_file: Option<PathBuf>,
    /// The job, inline.
    #[serde(default)]
    #[schema(value_type = Option<crate::api::openapi::JobRequest>)]
    pub job: Option<JobSpec>,
    /// Another schedule whose latest run must end before this one's job starts.
    #[serde(default)]
    pub after: Option<String>,
    /// What to do when the awaited run did not complete: `skip` (default) or `run`.
    #[serde(default)]
    pub after_failure: AfterFailure,
    /// Fire the latest tick missed while no process was running.
    #[serde(default)]
    pub catch_up: bool,
    /// A disabled schedule only fires by manual trigger.
    #[serde(default = "yes")]
    #[schema(default = yes)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Resolved callback settings.
#[derive(Clone, Default)]
pub struct CallbackSettings {
    /// HMAC-SHA256 key; `None` refuses jobs that ask for callbacks.
    pub secret: Option<Vec<u8>>,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub timeout: std::time::Duration,
    /// Allowed hosts (empty: none); see [`crate::callback::address`].
    pub allowed_hosts: Vec<String>,
    /// Whether a listed host name may resolve to a private address.
    pub allow_private_addresses: bool,
}

impl fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .finish()
    }
}

/// One `[[tokens]]` entry.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Name shown in logs and in `requested_by` (never the token itself).
    pub name: String,
    /// Lowercase or uppercase hex SHA-256 of the token.
    pub sha256: String,
    /// What it may do.
    pub role: Role,
}

/// A configured token, hash decoded.
#[derive(Clone)]
pub struct Token {
    /// Name.
    pub name: String,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Role.
    pub role: Role,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The resolved service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// State store URL (may carry a password: never print it whole).
    pub state: String,
    /// Stage queue URL; `None` runs the stages in this process.
    pub queue: Option<String>,
    /// API tokens.
    pub tokens: Vec<Token>,
    /// Callback delivery.
    pub callbacks: CallbackSettings,
    /// Schedules, each after the one it waits for.
    pub schedules: Vec<Schedule>,
    /// The change relay to run in the service, if configured.
    pub relay: Option<crate::events::relay::RelayConfig>,
    /// `PROVSYNC_*` variables that name no configuration key.
    pub ignored_env: Vec<String>,
    /// Connection limits and timeouts of the HTTP server.
    pub http: crate::api::server::HttpLimits,
    /// The certificate and key to serve HTTPS with (plain HTTP when `None`).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Where relative paths of jobs submitted over the API start: the config
    /// file's folder, or the working directory when there is no file.
    pub base_dir: PathBuf,
    /// The named sources and targets.
    pub connections: Connections,
    /// What API callers may choose besides them.
    pub api: ApiSettings,
}

/// Overrides from the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--state`.
    pub state: Option<String>,
    /// `--queue`.
    pub queue: Option<String>,
}

impl Config {
    /// What is legal but probably a mistake: `serve` and `config check` print these.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ignored_env
            .iter()
            .map(|var| format!("{var} names no configuration key; ignored"))
            .collect();
        if self.tokens.is_empty() {
            out.push(
                "no [[tokens]] configured: every /v1 route will answer 401 \
                 (`provsync token create --role operate` makes one)"
                    .into(),
            );
        }
        for t in &self.tokens {
            if let Some(weak) = WEAK_TOKENS.iter().find(|w| sha256(w) == t.hash) {
                let what = if weak.is_empty() {
                    "the SHA-256 of an empty token (was the variable unset?)".to_owned()
                } else {
                    format!("the SHA-256 of the well-known token {weak:?}")
                };
                out.push(format!(
                    "tokens: {:?} ({}) is {what}: anyone can use it; replace it with \
                     `provsync token create --role {} --name {}`",
                    t.name, t.role, t.role, t.name
                ));
            }
        }
        out
    }
}

/// Tokens anyone can guess: the examples of the recipes and docs, and the usual
/// placeholders. A configuration that accepts one is warned about.
const WEAK_TOKENS: &[&str] = &[
    "",
    "test",
    "token",
    "changeme",
    "change-me",
    "secret",
    "password",
    "admin",
    "example",
];

/// A configuration problem, naming the file and the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Prefixes of `PROVSYNC_` variables that other commands read (not configuration
/// keys, not warned about).
const NOT_CONFIG: [&str; 9] = [
    "PROVSYNC_CONFIG",
    "PROVSYNC_LOG",
    "PROVSYNC_DATA_DIR",
    "PROVSYNC_BENCH",
    "PROVSYNC_GMC_",
    // `relay-changes` flags; `PROVSYNC_RELAY__DATABASE` is the `[relay]` key.
    "PROVSYNC_RELAY_DATABASE",
    "PROVSYNC_RELAY_AMQP",
    "PROVSYNC_CHAOS_",
    "PROVSYNC_ONEKEY_",
];

/// Top-level keys of the file, for telling overrides from unrelated variables.
const KEYS: [&str; 12] = [
    "api",
    "sources",
    "targets",
    "http",
    "tls",
    "listen",
    "state",
    "queue",
    "tokens",
    "callbacks",
    "schedules",
    "relay",
];

/// Parses a configuration file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    parse_with_env(text, origin, std::iter::empty())
}

/// Parses a configuration file's text with `PROVSYNC_*` overrides applied; errors
/// name the file, or the variable, and the key at fault.
pub fn parse_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<ConfigFile, ConfigError> {
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError(crate::secret::redact_urls(&format!("{origin}: {e}"))))?;
    let mut from_env: HashMap<String, String> = HashMap::new();
    let mut ignored = Vec::new();
    let mut vars: Vec<(String, String)> = env.into_iter().collect();
    vars.sort();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("PROVSYNC_") else {
            continue;
        };
        if NOT_CONFIG.iter().any(|p| name.starts_with(p)) || raw.trim().is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if !KEYS.contains(&path[0].as_str()) || path.iter().any(String::is_empty) {
            ignored.push(name);
            continue;
        }
        set_path(&mut table, &path, env_value(&raw))
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        from_env.insert(path[0].clone(), name);
    }
    let mut file: ConfigFile = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let root = path.split(['.', '[']).next().unwrap_or_default();
            let source = match from_env.get(root) {
                Some(var) => format!("{origin} with {var}"),
                None => origin.to_owned(),
            };
            let (field, _) = crate::connector::field_of(&path, &msg);
            if field.is_empty() {
                ConfigError(format!("{source}: {msg}"))
            } else if from_env.contains_key(root) {
                ConfigError(format!("{source}: {field}: {msg}"))
            } else {
                ConfigError(crate::toml_place::describe(&source, text, &field, &msg))
            }
        })?;
    file.ignored_env = ignored;
    file.state_from_env = from_env.contains_key("state");
    file.origin = Some((origin.to_owned(), text.to_owned()));
    Ok(file)
}

/// An environment value as TOML when it reads as one (numbers, booleans, arrays,
/// inline tables, quoted strings), else as the plain string.
fn env_value(raw: &str) -> toml::Value {
    let looks_typed = raw.starts_with(['[', '{', '"', '\'', '-', '+'])
        || raw.chars().next().is_some_and(|c| c.is_ascii_digit())
        || raw == "true"
        || raw == "false";
    if looks_typed {
        if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    toml::Value::String(raw.to_owned())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = table;
    for p in parents {
        let entry = at
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table, so it has no keys to set"))?;
    }
    at.insert(last.clone(), value);
    Ok(())
}

/// Reads and parses a configuration file, with the process's `PROVSYNC_*`
/// variables applied.
pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let mut file = parse_with_env(&text, &path.display().to_string(), std::env::vars())?;
    file.base_dir = Some(crate::paths::folder_of(path));

    Ok(file)
}

/// The configuration from the environment alone (no file).
pub fn from_env() -> Result<ConfigFile, ConfigError> {
    parse_with_env("", "environment", std::env::vars())
}

/// Resolves defaults <- file (with its `PROVSYNC_*` overrides, applied by
/// [`parse_with_env`]) <- command-line overrides, and validates the result.
pub fn resolve(file: Option<ConfigFile>, flags: &Overrides) -> Result<Config, ConfigError> {
    let mut file = file.unwrap_or_default();
    let origin = file.origin.take();
    resolve_file(file, flags).map_err(|e| placed(origin.as_ref(), e))
}

/// An error whose message starts with a key path (`schedules[0].cron: ...`), named
/// at the file, line and column of that key.
fn placed(origin: Option<&(String, String)>, e: ConfigError) -> ConfigError {
    let Some((name, text)) = origin else {
        return e;
    };
    let is_key_path = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'))
    };
    match e.0.split_once(": ") {
        Some((field, message)) if is_key_path(field) => {
            ConfigError(crate::toml_place::describe(name, text, field, message))
        }
        _ => ConfigError(format!("{name}: {}", e.0)),
    }
}

fn resolve_file(file: ConfigFile, flags: &Overrides) -> Result<Config, ConfigError> {
    let listen = flags
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let state = match (&flags.state, file.state, &file.base_dir) {
        (Some(flag), _, _) => flag.clone(),
        (None, Some(s), Some(base)) if !file.state_from_env => {
            crate::paths::sqlite_url_relative_to(base, &s)
        }
        (None, Some(s), _) => s,
        (None, None, _) => crate::paths::default_state_url(),
    };
    let listen: SocketAddr = listen.parse().map_err(|_| {
        ConfigError(format!(
            "listen: expected an address like 127.0.0.1:8080, got {listen:?}"
        ))
    })?;
    if state.trim().is_empty() {
        return Err(ConfigError("state: must not be empty".into()));
    }
    let queue = flags.queue.clone().or(file.queue);
    if let Some(q) = &queue {
        if !(q.starts_with("amqp://") || q.starts_with("memory://")) {
            return Err(ConfigError(format!(
                "queue: expected amqp://... or memory://, got {:?}",
                crate::secret::redact_urls(q)
            )));
        }
    }
    let tokens = tokens(&file.tokens)?;
    let callbacks = callbacks(&file.callbacks, file.base_dir.as_deref())?;
    let connections =
        Connections::configure(&file.sources, &file.targets, file.base_dir.as_deref())
            .map_err(ConfigError)?;
    let api = api_settings(&file.api, file.base_dir.as_deref())?;
    let schedules = schedules(&file.schedules, file.base_dir.as_deref(), &connections)?;
    let relay = file.relay.as_ref().map(relay).transpose()?;
    let http = http_limits(&file.http)?;
    let tls = file
        .tls
        .as_ref()
        .map(|t| tls(t, file.base_dir.as_deref()))
        .transpose()?;
    let base_dir = match file.base_dir {
        Some(b) => b,
        None => std::env::current_dir()
            .map_err(|e| ConfigError(format!("cannot read the working directory: {e}")))?,
    };
    Ok(Config {
        listen,
        state,
        queue,
        tokens,
        callbacks,
        schedules,
        relay,
        ignored_env: file.ignored_env,
        http,
        tls,
        base_dir,
        connections,
        api,
    })
}

fn api_settings(a: &ApiEntry, base: Option<&Path>) -> Result<ApiSettings, ConfigError> {
    let folder = |key: &str, p: &Path| {
        let path = crate::paths::relative_to(base, p);
        match path.canonicalize() {
            Ok(real) if real.is_dir() => Ok(real),
            Ok(_) => Err(ConfigError(format!(
                "api.{key}: {} is not a folder",
                path.display()
            ))),
            Err(e) => Err(ConfigError(format!("api.{key}: {}: {e}", path.display()))),
        }
    };
    let mappings = a
        .mappings
        .as_deref()
        .map(|m| folder("mappings", m))
        .transpose()?;
    let data_folders = a
        .data_folders
        .iter()
        .map(|d| folder("data_folders", d))
        .collect::<Result<Vec<_>, _>>()?;
    crate::callback::address::check_host_entries("api.allowed_hosts", &a.allowed_hosts)
        .map_err(ConfigError)?;
    Ok(ApiSettings {
        mappings,
        free_form_connectors: a.free_form_connectors,
        bounds: Bounds {
            data_folders,
            allowed_hosts: a.allowed_hosts.clone(),
        },
    })
}

fn tls(
    t: &TlsEntry,
    base: Option<&Path>,
) -> Result<std::sync::Arc<rustls::ServerConfig>, ConfigError> {
    let cert = crate::paths::relative_to(base, &t.cert_file);
    let key = crate::paths::relative_to(base, &t.key_file);
    crate::api::tls::server_config(&cert, &key)
        .map_err(|e| ConfigError(format!("tls.{}: {e}", e.config_key())))
}

fn http_limits(h: &HttpEntry) -> Result<crate::api::server::HttpLimits, ConfigError> {
    let d = crate::api::server::HttpLimits::default();
    let at_least_one = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(ConfigError(format!("http.{key}: must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(crate::api::server::HttpLimits {
        max_connections: at_least_one(
            "max_connections",
            h.max_connections.map(|n| n as u64),
            d.max_connections as u64,
        )? as usize,
        header_read_timeout: std::time::Duration::from_secs(at_least_one(
            "header_read_timeout_secs",
            h.header_read_timeout_secs,
            d.header_read_timeout.as_secs(),
        )?),
        body_timeout: std::time::Duration::from_secs(at_least_one(
            "body_timeout_secs",
            h.body_timeout_secs,
            d.body_timeout.as_secs(),
        )?),
        auth_failures_per_minute: match h.auth_failures_per_minute {
            None => d.auth_failures_per_minute,
            Some(n) => std::num::NonZeroU32::new(n).ok_or_else(|| {
                ConfigError("http.auth_failures_per_minute: must be at least 1".into())
            })?,
        },
    })
}

fn relay(r: &RelayEntry) -> Result<crate::events::relay::RelayConfig, ConfigError> {
    if !(r.database.starts_with("postgres://") || r.database.starts_with("postgresql://")) {
        return Err(ConfigError(format!(
            "relay.database: expected postgres://..., got {:?}",
            crate::secret::redact_urls(&r.database)
        )));
    }
    let amqp = r
        .amqp
        .clone()
        .unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".to_owned());
    if !amqp.starts_with("amqp://") {
        return Err(ConfigError(format!(
            "relay.amqp: expected amqp://..., got {:?}",
            crate::secret::redact_urls(&amqp)
        )));
    }
    let schema = r.schema.clone().unwrap_or_else(|| "gmc".to_owned());
    if schema.is_empty()
        || !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ConfigError(format!(
            "relay.schema: {schema:?} is not a plain identifier"
        )));
    }
    Ok(crate::events::relay::RelayConfig {
        database_url: r.database.clone(),
        schema,
        amqp_url: amqp,
        exchange: r
            .exchange
            .clone()
            .unwrap_or_else(|| "provsync.changes".to_owned()),
        batch: 500,
        poll: std::time::Duration::from_millis(r.poll_ms.unwrap_or(500).max(10)),
        until_empty: false,
    })
}

fn callbacks(c: &CallbacksEntry, base: Option<&Path>) -> Result<CallbackSettings, ConfigError> {
    let secret = match (&c.secret, &c.secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "callbacks: set secret or secret_file, not both".into(),
            ))
        }
        (Some(s), None) => Some(s.as_bytes().to_vec()),
        (None, Some(f)) => {
            let path = crate::paths::relative_to(base, f);
            let text = std::fs::read(&path).map_err(|e| {
                ConfigError(format!(
                    "callbacks.secret_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let trimmed = text.trim_ascii_end().to_vec();
            Some(trimmed)
        }
        (None, None) => None,
    };
    if let Some(s) = &secret {
        if s.len() < 16 {
            return Err(ConfigError(
                "callbacks.secret: at least 16 bytes, so signatures cannot be guessed".into(),
            ));
        }
    }
    let max_attempts = c.max_attempts.unwrap_or(8);
    if !(1..=50).contains(&max_attempts) {
        return Err(ConfigError(format!(
            "callbacks.max_attempts: must be 1..=50, got {max_attempts}"
        )));
    }
    let timeout_secs = c.timeout_secs.unwrap_or(10);
    if !(1..=300).contains(&timeout_secs) {
        return Err(ConfigError(format!(
            "callbacks.timeout_secs: must be 1..=300, got {timeout_secs}"
        )));
    }
    crate::callback::address::check_allowed_hosts(&c.allowed_hosts).map_err(ConfigError)?;
    Ok(CallbackSettings {
        secret,
        max_attempts,
        timeout: std::time::Duration::from_secs(timeout_secs),
        allowed_hosts: c.allowed_hosts.clone(),
        allow_private_addresses: c.allow_private_addresses,
    })
}

fn schedules(
    entries: &[ScheduleEntry],
    base: Option<&Path>,
    connections: &Connections,
) -> Result<Vec<Schedule>, ConfigError> {
    let mut by_name: BTreeMap<String, Schedule> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let at = |field: &str| format!("schedules[{i}].{field}");
        if e.name.is_empty()
            || e.name.len() > 64
            || !e
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError(format!(
                "{}: 1 to 64 letters, digits, `.`, `_` or `-`, got {:?}",
                at("name"),
                e.name
            )));
        }
        if by_name.contains_key(&e.name) {
            return Err(ConfigError(format!(
                "{}: duplicate schedule name {:?}",
                at("name"),
                e.name
            )));
        }
        let spec = match (&e.job, &e.job_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(format!(
                    "schedules[{i}]: set job or job_file, not both"
                )))
            }
            (None, None) => {
                return Err(ConfigError(format!(
                    "schedules[{i}]: needs a job ([schedules.job] table) or a job_file"
                )))
            }
            (Some(spec), None) => {
                let mut spec = spec.clone();
                if let Some(base) = base {
                    crate::paths::resolve_job_paths(&mut spec, base);
                }
                connections.resolve(&mut spec).map_err(|errs| {
                    let e = &errs[0];
                    ConfigError(format!("{}.{}: {}", at("job"), e.field, e.message))
                })?;
                spec
            }
            (None, Some(f)) => {
                let path = crate::paths::relative_to(base, f);
                crate::job::file::read_with(&path, connections)
                    .map_err(|e| ConfigError(format!("{}: {e}", at("job_file"))))?
            }
        };
        let sched = schedule::Schedule::new(e, spec)
            .map_err(|(field, msg)| ConfigError(format!("{}: {msg}", at(&field))))?;
        by_name.insert(e.name.clone(), sched);
    }
    for (i, e) in entries.iter().enumerate() {
        if let Some(after) = &e.after {
            if after == &e.name || !by_name.contains_key(after) {
                return Err(ConfigError(format!(
                    "schedules[{i}].after: {after:?} names no other schedule"
                )));
            }
        }
    }
    schedule::dependency_order(by_name).map_err(ConfigError)
}

fn tokens(entries: &[TokenEntry]) -> Result<Vec<Token>, ConfigError> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, t) in entries.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(ConfigError(format!("tokens[{i}].name: must not be empty")));
        }
        if !names.insert(t.name.clone()) {
            return Err(ConfigError(format!(
                "tokens[{i}].name: duplicate token name {:?}",
                t.name
            )));
        }
        let hash = decode_sha256(&t.sha256).ok_or_else(|| {
            ConfigError(format!(
                "tokens[{i}].sha256: expected 64 hex digits (the SHA-256 of the token; \
                 `provsync token create` prints the entry)"
            ))
        })?;
        if !hashes.insert(hash) {
            return Err(ConfigError(format!(
                "tokens[{i}].sha256: the same token is configured twice"
            )));
        }
        out.push(Token {
            name: t.name.clone(),
            hash,
            role: t.role,
        });
    }
    Ok(out)
}

/// Decodes 64 hex digits.
pub fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// SHA-256 of a token (what the service keeps and compares).
pub fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Hex SHA-256 of a token (what goes in the config file).
pub fn sha256_hex(token: &str) -> String {
    hex(&sha256(token))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Marks the tokens [`new_token`] makes, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "pvs_";

/// A new API token: 256 bits from the operating system's CSPRNG, in hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_typo_in_a_scheduled_job_is_named_at_its_line_in_the_config_file() {
        let text = "[[schedules]]\nname = \"nightly\"\ncron = \"0 2 * * *\"\n\
                    [schedules.job.source]\ntype = \"file\"\npath = \"w.ndjson\"\n\
                    [schedules.job.target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\npool = 2\n";
        let f = parse(text, "provsync.toml").unwrap();
        let e = resolve(Some(f), &Overrides::default()).unwrap_err().0;
        assert!(
            e.starts_with("provsync.toml:10:1: schedules[0].job.target.pool: unknown field `pool`"),
            "{e}"
        );
        let e = parse("listen = \"x\"\n[callbacks]\nsecrte = \"x\"\n", "c.toml")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("c.toml:3:1: callbacks.secrte: unknown field `secrte`"),
            "{e}"
        );
    }

    #[test]
    fn full_file_parses_and_resolves() {
        let f = parse(
            &format!(
                "listen = \"127.0.0.1:9000\"\nstate = \"sqlite://s.db\"\n\
                 [[tokens]]\nname = \"crm\"\nsha256 = \"{H}\"\nrole = \"operate\"\n"
            ),
            "c.toml",
        )
        .unwrap();
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert!(c.schedules.is_empty() && c.callbacks.secret.is_none());
        assert_eq!(c.tokens[0].role, Role::Operate);
        assert_eq!(sha256_hex("test"), H);
        assert_eq!(decode_sha256(H).unwrap(), c.tokens[0].hash);
    }

    #[test]
    fn relay_table_and_its_env_overrides_resolve_without_showing_the_password() {
        let f = parse_with_env(
            "[relay]\ndatabase = \"postgres://u:pw@db/provsync\"\n",
            "c.toml",
            [
                (
                    "PROVSYNC_RELAY__AMQP".to_owned(),
                    "amqp://mq:5672/%2f".to_owned(),
                ),
                ("PROVSYNC_RELAY_DATABASE".to_owned(), "ignored".to_owned()),
            ],
        )
        .unwrap();
        assert!(f.ignored_env.is_empty(), "{:?}", f.ignored_env);
        assert!(!format!("{:?}", f.relay).contains("pw"));
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        let r = c.relay.unwrap();
        assert_eq!(r.amqp_url, "amqp://mq:5672/%2f");
        assert_eq!(
            (r.schema.as_str(), r.exchange.as_str()),
            ("gmc", "provsync.changes")
        );
        let bad = parse("[relay]\ndatabase = \"mysql://x\"\n", "c.toml").unwrap();
        let e = resolve(Some(bad), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("relay.database"), "{e}");
    }

    #[test]
    fn the_shipped_nightly_gmc_service_config_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/gmc-nightly.toml");
        let f = parse(&std::fs::read_to_string(&path).unwrap(), "gmc-nightly.toml").unwrap();
        let f = ConfigFile {
            base_dir: path.parent().map(Path::to_path_buf),
            ..f
        };
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        let s = &c.schedules[0];
        assert_eq!(
            (s.name.as_str(), s.pattern.as_str()),
            ("gmc-nightly", "0 2 * * *")
        );
        assert_eq!(s.spec.source.kind, "gmc");
        assert_eq!(c.relay.unwrap().exchange, "provsync.changes");
        // The job file's own relative paths start at its folder.
        let mapping = Path::new(s.spec.mapping.as_deref().unwrap());
        assert!(mapping.is_absolute() && mapping.is_file(), "{mapping:?}");
    }

    #[test]
    fn a_relative_sqlite_state_starts_at_the_config_folder_unless_it_came_from_the_environment() {
        let base = Some(PathBuf::from("/etc/provsync"));
        let f = ConfigFile {
            base_dir: base.clone(),
            ..parse("state = \"sqlite://s.db\"\n", "c.toml").unwrap()
        };
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        assert_eq!(c.state, "sqlite:///etc/provsync/s.db");
        assert_eq!(c.base_dir, Path::new("/etc/provsync"));
        let f = ConfigFile {
            base_dir: base,
            ..parse_with_env("", "c.toml", env(&[("PROVSYNC_STATE", "sqlite://s.db")])).unwrap()
        };
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        assert_eq!(c.state, "sqlite://s.db");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = parse(
            &format!("[[tokens]]\nname = \"a\"\nsha256 = \"{H}\"\nrole = \"read\"\nrol = 1\n"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tokens[0]") && e.contains("rol"), "{e}");
        let e = parse("lisen = \"x\"\n", "c.toml").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = parse(
            &format!("[[tokens]]\nname = \"a\"\nsha256 = \"{H}\"\nrole = \"root\"\n"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tokens[0].role"), "{e}");
    }

    #[test]
    fn precedence_is_flags_then_env_then_file() {
        let f = parse_with_env(
            "listen = \"127.0.0.1:1\"\nstate = \"sqlite://f.db\"\n",
            "c",
            [("PROVSYNC_LISTEN".to_owned(), "127.0.0.1:2".to_owned())],
        )
        .unwrap();
        let c = resolve(Some(f.clone()), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.state, "sqlite://f.db");
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        assert_eq!(resolve(Some(f), &flags).unwrap().listen.port(), 3);
    }

    #[test]
    fn bad_hash_and_duplicates_are_refused() {
        let f = parse(
            "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\nrole = \"read\"\n",
            "c",
        )
        .unwrap();
        let e = resolve(Some(f), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("tokens[0].sha256"), "{e}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        let f = parse_with_env(
            "listen = \"127.0.0.1:1\"\n",
            "c.toml",
            env(&[
                ("PROVSYNC_STATE", "postgres://u@h/db"),
                ("PROVSYNC_CALLBACKS__SECRET", "0123456789abcdef0123"),
                ("PROVSYNC_CALLBACKS__MAX_ATTEMPTS", "3"),
                ("PROVSYNC_CALLBACKS__ALLOWED_HOSTS", "[\"crm.example\"]"),
                (
                    "PROVSYNC_TOKENS",
                    &format!("[{{name = \"ops\", sha256 = \"{H}\", role = \"admin\"}}]"),
                ),
                ("PROVSYNC_LOG", "debug"),
                ("PROVSYNC_LISTN", "x"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(f.state.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(f.callbacks.max_attempts, Some(3));
        assert_eq!(f.callbacks.allowed_hosts, ["crm.example"]);
        assert_eq!(f.tokens[0].role, Role::Admin);
        assert_eq!(f.ignored_env, ["PROVSYNC_LISTN"]);
        let c = resolve(Some(f), &Overrides::default()).unwrap();
        assert_eq!(
            c.callbacks.secret.as_deref(),
            Some(&b"0123456789abcdef0123"[..])
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "{c:?}");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable_and_key() {
        let e = parse_with_env(
            "",
            "c.toml",
            env(&[("PROVSYNC_CALLBACKS__MAX_ATTEMPTS", "many")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PROVSYNC_CALLBACKS__MAX_ATTEMPTS") && e.contains("callbacks.max_attempts"),
            "{e}"
        );
        let e = parse_with_env("", "c.toml", env(&[("PROVSYNC_CALLBACKS__COLOUR", "red")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
