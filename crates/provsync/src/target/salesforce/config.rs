//! Settings of the `salesforce` target (`[target]` of a job file).

use provsync_core::job::SpecError;
use serde::Deserialize;

/// Settings of the `salesforce` target.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// Token endpoint host: `https://login.salesforce.com`, `https://test.salesforce.com`
    /// or the org's My Domain (the only host client credentials work on).
    pub login_url: String,
    /// API host; the token response's `instance_url` when absent.
    #[serde(default)]
    pub instance_url: Option<String>,
    /// REST/SOAP API version (`65.0`: ProviderAffiliation and IntegrationJobRun need it).
    #[serde(default = "default_api_version")]
    #[schema(default = default_api_version)]
    pub api_version: String,
    /// How the connector authenticates.
    pub auth: AuthConfig,
    /// External id field every synced object carries (the MDM id).
    #[serde(default = "default_external_id")]
    #[schema(default = default_external_id)]
    pub external_id_field: String,
    /// Most requests in flight (adaptive below it); Salesforce allows 25 long calls.
    #[serde(default = "default_concurrency")]
    #[schema(default = default_concurrency)]
    pub max_concurrency: usize,
    /// Attempts for a request or record failing with a transient error.
    #[serde(default = "default_retries")]
    #[schema(default = default_retries)]
    pub max_attempts: u32,
    /// First retry delay (ms); doubles per attempt, with full jitter.
    #[serde(default = "default_backoff_ms")]
    #[schema(default = default_backoff_ms)]
    pub backoff_ms: u64,
    /// API calls kept back from the daily budget: when `Sforce-Limit-Info` says no
    /// more than this many remain (counting requests in flight), the job parks
    /// instead of spending them; the reserve pays for the budget checks while parked.
    #[serde(default = "default_reserve")]
    #[schema(default = default_reserve)]
    pub budget_reserve: u64,
    /// Seconds before the first budget check while parked (doubling, up to 32 times).
    #[serde(default = "default_park_poll")]
    #[schema(default = default_park_poll)]
    pub park_poll_secs: u64,
    /// Longest the job stays parked before it fails (hours).
    #[serde(default = "default_park_max_hours")]
    #[schema(default = default_park_max_hours)]
    pub park_max_hours: u64,
    /// A write of at least this many records (children counted) goes through Bulk
    /// API 2.0 ingest jobs instead of graphs and collections; 0 never uses Bulk.
    /// Bulk spends a handful of calls per job whatever its size, but answers in
    /// seconds, not milliseconds: it pays on large pages. Not used while
    /// `duplicate_rule_allow_save` is set.
    #[serde(default = "default_bulk_threshold")]
    #[schema(default = default_bulk_threshold)]
    pub bulk_threshold: usize,
    /// First wait (ms) between Bulk job status checks; grows by half up to 10 s.
    #[serde(default = "default_bulk_poll_ms")]
    #[schema(default = default_bulk_poll_ms)]
    pub bulk_poll_ms: u64,
    /// Save records an active duplicate rule flags (`allowSave=true` in the
    /// `Sforce-Duplicate-Rule-Header`, API 52.0+): without it such records fail
    /// with `DUPLICATES_DETECTED`, naming the rule and the matched record. A rule
    /// set to block refuses them anyway. Bulk API 2.0 does not take the header, so
    /// with this on every write goes through graphs and collections.
    #[serde(default)]
    #[schema(default = false)]
    pub duplicate_rule_allow_save: bool,
    /// Keep the run's IntegrationJobRun in the org: created at start, updated by Id at end.
    #[serde(default = "default_true")]
    #[schema(default = default_true)]
    pub integration_job_run: bool,
    /// Calls made when a job ends (seed step 2.5: start the HCP address batch).
    #[serde(default)]
    pub post_job: Vec<PostJobAction>,
    /// Dispatch name (defaults to the login URL and user or client id).
    #[serde(default)]
    pub name: Option<String>,
}

/// OAuth 2.0 flow and its credentials; secrets only from the environment or a file.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// Client credentials (connected app with a run-as user).
    ClientCredentials {
        /// Consumer key.
        client_id: String,
        /// Environment variable holding the consumer secret.
        #[serde(default)]
        client_secret_env: Option<String>,
        /// File holding the consumer secret.
        #[serde(default)]
        client_secret_file: Option<String>,
    },
    /// JWT bearer (RS256 assertion signed with the connected app's key).
    Jwt {
        /// Consumer key (`iss`).
        client_id: String,
        /// User the integration runs as (`sub`).
        username: String,
        /// `aud`: `https://login.salesforce.com` (default: the login URL).
        #[serde(default)]
        audience: Option<String>,
        /// PEM file of the RSA private key.
        #[serde(default)]
        private_key_file: Option<String>,
        /// Environment variable holding the PEM private key.
        #[serde(default)]
        private_key_env: Option<String>,
    },
}

/// One call made at job end.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostJobAction {
    /// Name in logs and the run summary.
    pub name: String,
    /// HTTP method (POST by default).
    #[serde(default = "default_post")]
    #[schema(default = default_post)]
    pub method: String,
    /// Path on the instance, e.g. `/services/apexrest/provsync/hcpAddressBatch`.
    pub path: String,
    /// JSON body; `{job_id}` and `{state}` in strings are replaced.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Run only when the job completed (with or without errors).
    #[serde(default = "default_true")]
    #[schema(default = default_true)]
    pub only_on_success: bool,
}

fn default_api_version() -> String {
    "65.0".into()
}
fn default_external_id() -> String {
    "OneKey_Id__c".into()
}
fn default_concurrency() -> usize {
    25
}
fn default_retries() -> u32 {
    8
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_reserve() -> u64 {
    50
}
fn default_bulk_threshold() -> usize {
    5_000
}
fn default_bulk_poll_ms() -> u64 {
    500
}
fn default_park_poll() -> u64 {
    60
}
fn default_park_max_hours() -> u64 {
    26
}
fn default_true() -> bool {
    true
}
fn default_post() -> String {
    "POST".into()
}

impl SalesforceConfig {
    /// Checks what serde cannot: numbers in range, the version format, one key source.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |field: &str, message: String| {
            Err(SpecError {
                field: format!("target.{field}"),
                message,
            })
        };
        let v = self.api_version.split('.').collect::<Vec<_>>();
        let major = v.first().and_then(|m| m.parse::<u32>().ok());
        if v.len() != 2 || v[1] != "0" || major.is_none() {
            return bad(
                "api_version",
                format!("{:?} is not like \"65.0\"", self.api_version),
            );
        }
        if major < Some(50) {
            return bad(
                "api_version",
                "must be 50.0 or later (composite graph)".into(),
            );
        }
        if self.duplicate_rule_allow_save && major < Some(52) {
            return bad(
                "duplicate_rule_allow_save",
                "needs api_version 52.0 or later (the duplicate rule header's first)".into(),
            );
        }
        if !(1..=25).contains(&self.max_concurrency) {
            return bad(
                "max_concurrency",
                "must be 1..=25 (Salesforce's concurrent call cap)".into(),
            );
        }
        if self.bulk_poll_ms == 0 {
            return bad("bulk_poll_ms", "must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1".into());
        }
        if let AuthConfig::Jwt {
            private_key_file,
            private_key_env,
            ..
        } = &self.auth
        {
            if private_key_file.is_some() == private_key_env.is_some() {
                return bad(
                    "auth",
                    "give exactly one of private_key_file, private_key_env".into(),
                );
            }
        }
        Ok(())
    }

    /// The major API version number.
    pub fn major_version(&self) -> u32 {
        self.api_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<SalesforceConfig, String> {
        let c: SalesforceConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_and_flows_parse() {
        let c = parse(serde_json::json!({
            "login_url": "http://127.0.0.1:8093",
            "auth": {"flow": "client_credentials", "client_id": "provsync", "client_secret_env": "SF_SECRET"}
        }))
        .unwrap();
        assert_eq!(c.api_version, "65.0");
        assert_eq!(c.external_id_field, "OneKey_Id__c");
        assert_eq!(c.max_concurrency, 25);
        let c = parse(serde_json::json!({
            "login_url": "https://login.salesforce.com",
            "api_version": "64.0",
            "auth": {"flow": "jwt", "client_id": "k", "username": "u@x", "private_key_env": "SF_KEY"}
        }))
        .unwrap();
        assert_eq!(c.major_version(), 64);
    }

    #[test]
    fn secrets_in_the_file_and_bad_values_are_refused() {
        let e = parse(serde_json::json!({
            "login_url": "x",
            "auth": {"flow": "client_credentials", "client_id": "p", "client_secret": "s"}
        }))
        .unwrap_err();
        assert!(e.contains("unknown field `client_secret`"), "{e}");
        let e = parse(serde_json::json!({
            "login_url": "x", "max_concurrency": 40,
            "auth": {"flow": "client_credentials", "client_id": "p", "client_secret_env": "S"}
        }))
        .unwrap_err();
        assert!(e.contains("max_concurrency"), "{e}");
        let e = parse(serde_json::json!({
            "login_url": "x", "api_version": "v65",
            "auth": {"flow": "client_credentials", "client_id": "p", "client_secret_env": "S"}
        }))
        .unwrap_err();
        assert!(e.contains("api_version"), "{e}");
        let e = parse(serde_json::json!({
            "login_url": "x",
            "auth": {"flow": "jwt", "client_id": "k", "username": "u"}
        }))
        .unwrap_err();
        assert!(e.contains("exactly one of private_key_file"), "{e}");
        let e = parse(serde_json::json!({
            "login_url": "x", "api_version": "51.0", "duplicate_rule_allow_save": true,
            "auth": {"flow": "client_credentials", "client_id": "p", "client_secret_env": "S"}
        }))
        .unwrap_err();
        assert!(e.contains("duplicate_rule_allow_save"), "{e}");
    }
}
