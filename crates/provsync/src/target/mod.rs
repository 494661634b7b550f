//! Targets: where provider data is loaded. Each connector is a module with its
//! typed config; `open` picks one by the job's `target.type`.

pub mod instrumented;
pub mod salesforce;
pub mod sql;

use std::sync::Arc;

use provsync_core::job::{ConnectorSpec, SpecError};
use provsync_core::target::{Target, TargetError};
use serde::Deserialize;

pub use sql::postgres::PostgresTarget;
pub use sql::sqlite::SqliteTarget;

/// Settings of the `sqlite` target.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db`.
    pub url: String,
    /// Dispatch name (defaults to the URL).
    #[serde(default)]
    pub name: Option<String>,
}

/// Settings of the `postgres` target.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Schema holding the provider tables.
    #[serde(default = "default_schema")]
    #[schema(default = default_schema)]
    pub schema: String,
    /// Connections in the pool.
    #[serde(default = "default_pool")]
    #[schema(default = default_pool)]
    pub pool_size: u32,
    /// Environment variable holding the password (the URL must not carry one: job
    /// specs are kept in the state store).
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub password_file: Option<std::path::PathBuf>,
    /// Dispatch name (defaults to the URL and schema).
    #[serde(default)]
    pub name: Option<String>,
}

impl PostgresConfig {
    /// Refuses a password written into the URL: the job spec holding it would be
    /// stored (state store tables and their write-ahead log) and shown.
    fn check(&self) -> Result<(), SpecError> {
        if crate::secret::url_password(&self.url).is_some() {
            return Err(SpecError {
                field: "target.url".into(),
                message: "carries a password, and job specs are stored: give it with \
                          target.password_env or target.password_file (or PGPASSWORD / \
                          ~/.pgpass)"
                    .into(),
            });
        }
        Ok(())
    }

    /// The password from `password_env` or `password_file`, if one is named.
    fn password(&self) -> Result<Option<crate::secret::Secret>, TargetError> {
        crate::secret::one_of(
            "password",
            None,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
        .map_err(|e| TargetError::Config(format!("target.{e}")))
    }
}

fn default_schema() -> String {
    "provider".into()
}

fn default_pool() -> u32 {
    4
}

/// A `[target]` section parsed into its connector's settings.
#[derive(Debug, Clone)]
pub enum TargetConfig {
    /// `sqlite`: a SQLite database file.
    Sqlite(SqliteConfig),
    /// `postgres`: a PostgreSQL schema.
    Postgres(PostgresConfig),
    /// `salesforce`: a Salesforce org.
    Salesforce(salesforce::SalesforceConfig),
}

/// The target types, as `type` names them.
pub const TYPES: [&str; 3] = ["sqlite", "postgres", "salesforce"];

impl TargetConfig {
    /// Parses a section by its `type`; unknown keys and bad values are refused with
    /// the key's path (`target.auth.client_id`).
    pub fn parse(spec: &ConnectorSpec) -> Result<Self, SpecError> {
        fn p<T: serde::de::DeserializeOwned>(spec: &ConnectorSpec) -> Result<T, SpecError> {
            crate::connector::parse("target", spec)
        }
        Ok(match spec.kind.as_str() {
            "sqlite" => Self::Sqlite(p(spec)?),
            "postgres" => {
                let c: PostgresConfig = p(spec)?;
                c.check()?;
                Self::Postgres(c)
            }
            "salesforce" => {
                let c: salesforce::SalesforceConfig = p(spec)?;
                c.validate()?;
                Self::Salesforce(c)
            }
            other => return Err(crate::connector::unknown_type("target", other, &TYPES)),
        })
    }

    /// The dispatch key: jobs with the same key never run at once.
    pub fn name(&self) -> String {
        match self {
            Self::Sqlite(c) => c.name.clone().unwrap_or_else(|| c.url.clone()),
            Self::Postgres(c) => c
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{}", crate::secret::redact_urls(&c.url), c.schema)),
            Self::Salesforce(c) => c.name.clone().unwrap_or_else(|| {
                let who = match &c.auth {
                    salesforce::config::AuthConfig::ClientCredentials { client_id, .. } => {
                        client_id
                    }
                    salesforce::config::AuthConfig::Jwt { username, .. } => username,
                };
                format!(
                    "salesforce:{}#{who}",
                    c.instance_url.as_deref().unwrap_or(&c.login_url)
                )
            }),
        }
    }
}

impl utoipa::PartialSchema for TargetConfig {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::connector::tagged_schema(vec![
            ("sqlite", SqliteConfig::schema()),
            ("postgres", PostgresConfig::schema()),
            ("salesforce", salesforce::SalesforceConfig::schema()),
        ])
    }
}

impl utoipa::ToSchema for TargetConfig {
    fn name() -> std::borrow::Cow<'static, str> {
        "Target".into()
    }

    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        SqliteConfig::schemas(out);
        PostgresConfig::schemas(out);
        salesforce::SalesforceConfig::schemas(out);
    }
}

/// The dispatch key of a target: jobs with the same key never run at once.
pub fn target_name(spec: &ConnectorSpec) -> Result<String, SpecError> {
    Ok(TargetConfig::parse(spec)?.name())
}

/// Settings of a target that name files (dotted paths); a `sqlite` target's
/// database is its `url` ([`sqlite_url_setting`]).
pub(crate) fn file_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "postgres" => &["password_file"],
        "salesforce" => &["auth.private_key_file", "auth.client_secret_file"],
        _ => &[],
    }
}

/// Settings of a target that name network endpoints (the hosts it reaches).
pub(crate) fn url_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "postgres" => &["url"],
        "salesforce" => &["login_url", "instance_url"],
        _ => &[],
    }
}

/// The setting holding a `sqlite:` URL, whose file is a path like the others.
pub(crate) fn sqlite_url_setting(kind: &str) -> Option<&'static str> {
    (kind == "sqlite").then_some("url")
}

/// Makes the relative files a target's settings name start at `base`: a `sqlite`
/// target's database, a `postgres` password file, a Salesforce key or secret file.
pub fn resolve_paths(spec: &mut ConnectorSpec, base: &std::path::Path) {
    if let Some(key) = sqlite_url_setting(&spec.kind) {
        crate::paths::rewrite_settings(&mut spec.settings, &[key], |url| {
            crate::paths::sqlite_url_relative_to(base, url)
        });
    }
    crate::paths::rewrite_file_settings(&mut spec.settings, file_settings(&spec.kind), base);
}

/// Opens the target a job names, its calls counted and timed.
pub async fn open(spec: &ConnectorSpec) -> Result<Arc<dyn Target>, TargetError> {
    Ok(instrumented::Instrumented::wrap(
        open_raw(spec).await?,
        &spec.kind,
    ))
}

async fn open_raw(spec: &ConnectorSpec) -> Result<Arc<dyn Target>, TargetError> {
    let config = TargetConfig::parse(spec).map_err(|e| TargetError::Config(e.to_string()))?;
    Ok(match config {
        TargetConfig::Sqlite(c) => Arc::new(SqliteTarget::connect(&c.url).await?),
        TargetConfig::Postgres(c) => Arc::new(
            PostgresTarget::connect_with(&c.url, &c.schema, c.pool_size, c.password()?.as_ref())
                .await?,
        ),
        TargetConfig::Salesforce(c) => Arc::new(salesforce::SalesforceTarget::open(c)?),
    })
}
