//! Settings of the `onekey` source, and the secret type that keeps credentials out
//! of logs and `Debug` output.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use provsync_core::job::SpecError;
use provsync_core::source::SourceError;
use serde::Deserialize;

pub use crate::secret::Secret;

/// Settings of the `onekey` source (`[source]` of a job file).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneKeySettings {
    /// Base URL of the MDM, e.g. `http://127.0.0.1:8091`.
    pub url: String,
    /// OAuth2 client id (with `client_secret_env`, `client_secret_file` or `client_secret`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Refused when given: a secret written into the job would be stored with it.
    #[serde(default)]
    #[schema(ignore)]
    pub client_secret: Option<Secret>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File holding the client secret (relative to the job file's folder).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret_file: Option<PathBuf>,
    /// Refused when given, as `client_secret`; use `api_key_env` or `api_key_file`.
    #[serde(default)]
    #[schema(ignore)]
    pub api_key: Option<Secret>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub api_key_file: Option<PathBuf>,
    /// Delta mode: the last night already loaded.
    #[serde(default)]
    pub since_night: Option<u32>,
    /// Delta mode: the time already loaded up to (RFC 3339), instead of `since_night`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Index slots per packet (individuals or workplaces); the job's `page_size` when absent.
    #[serde(default)]
    pub packet_size: Option<u32>,
    /// Attempts per call before the source gives up (transient errors, 429).
    #[serde(default = "default_attempts")]
    #[schema(default = default_attempts)]
    pub max_attempts: u32,
    /// First backoff delay, milliseconds (doubles per attempt, with jitter).
    #[serde(default = "default_backoff_ms")]
    #[schema(default = default_backoff_ms)]
    pub backoff_ms: u64,
    /// Longest backoff delay, milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    #[schema(default = default_backoff_max_ms)]
    pub backoff_max_ms: u64,
    /// Timeout of one HTTP request, seconds.
    #[serde(default = "default_timeout")]
    #[schema(default = default_timeout)]
    pub timeout_secs: u64,
}

fn default_attempts() -> u32 {
    8
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    10_000
}
fn default_timeout() -> u64 {
    60
}

/// How the source authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// OAuth2 client credentials.
    OAuth {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: Secret,
    },
    /// `X-API-Key`.
    ApiKey(Secret),
}

impl OneKeySettings {
    /// The credentials the settings give; exactly one way must be configured.
    pub fn credentials(&self) -> Result<Credentials, SourceError> {
        let secret = crate::secret::one_of(
            "client_secret",
            self.client_secret.as_ref(),
            self.client_secret_env.as_deref(),
            self.client_secret_file.as_deref(),
        )
        .map_err(|e| SourceError::Config(format!("source.{e}")))?;
        let key = crate::secret::one_of(
            "api_key",
            self.api_key.as_ref(),
            self.api_key_env.as_deref(),
            self.api_key_file.as_deref(),
        )
        .map_err(|e| SourceError::Config(format!("source.{e}")))?;
        match (&self.client_id, secret, key) {
            (Some(id), Some(secret), None) => Ok(Credentials::OAuth {
                client_id: id.clone(),
                secret,
            }),
            (None, None, Some(key)) => Ok(Credentials::ApiKey(key)),
            (None, Some(_), None) => Err(SourceError::Config(
                "source.client_id is required with a client secret".into(),
            )),
            (Some(_), None, None) => Err(SourceError::Config(
                "source.client_secret_env (or client_secret_file) is required with client_id"
                    .into(),
            )),
            (None, None, None) => Err(SourceError::Config(
                "source: credentials missing: client_id + client_secret_env|_file, or api_key_env|_file"
                    .into(),
            )),
            _ => Err(SourceError::Config(
                "source: give OAuth2 client credentials or an API key, not both".into(),
            )),
        }
    }

    /// Checks what needs neither the network nor the secrets, so a job is refused
    /// before it is stored: a secret written inline (it would be stored with the
    /// job), the URL, the bounds.
    pub fn check(&self) -> Result<(), SpecError> {
        let bad = |field: &str, message: String| {
            Err(SpecError {
                field: format!("source.{field}"),
                message,
            })
        };
        for (key, given) in [
            ("client_secret", self.client_secret.is_some()),
            ("api_key", self.api_key.is_some()),
        ] {
            if given {
                return bad(
                    key,
                    format!(
                        "a secret written into the job would be stored with it (state \
                         store): give {key}_env or {key}_file"
                    ),
                );
            }
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad(
                "url",
                format!("must start with http:// or https://, got {:?}", self.url),
            );
        }
        if self.since_night.is_some() && self.since.is_some() {
            return bad("since", "give since_night or since, not both".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1".into());
        }
        if self.packet_size == Some(0) {
            return bad("packet_size", "must be at least 1".into());
        }
        Ok(())
    }

    /// Checks the settings that need no network, the credentials among them.
    pub fn validate(&self) -> Result<(), SourceError> {
        self.check()
            .map_err(|e| SourceError::Config(e.to_string()))?;
        self.credentials().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Result<OneKeySettings, String> {
        let text = format!("url = \"http://127.0.0.1:1\"\n{extra}");
        toml::from_str(&text).map_err(|e| e.to_string())
    }

    /// A file holding `value`, kept while the test runs.
    fn secret_file(value: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), value).unwrap();
        f
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = settings("client_id = \"me\"\nclient_secret = \"hunter2\"\napi_key_env = \"X\"")
            .unwrap();
        let text = format!("{s:?} {:?}", s.credentials());
        assert!(!text.contains("hunter2"), "{text}");
        let f = secret_file("hunter2");
        let c = settings(&format!(
            "client_id = \"me\"\nclient_secret_file = {:?}",
            f.path()
        ))
        .unwrap()
        .credentials()
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_written_into_the_job_are_refused_naming_the_way_out() {
        let err = |extra: &str| settings(extra).unwrap().validate().unwrap_err().to_string();
        let e = err("client_id = \"a\"\nclient_secret = \"b\"");
        assert!(e.contains("client_secret_env or client_secret_file"), "{e}");
        assert!(!e.contains("\"b\""), "{e}");
        assert!(err("api_key = \"k\"").contains("api_key_env or api_key_file"));
    }

    #[test]
    fn credentials_must_be_one_way_and_complete() {
        let err = |extra: &str| settings(extra).unwrap().validate().unwrap_err().to_string();
        let f = secret_file("k");
        let file = format!("{:?}", f.path());
        assert!(err("").contains("credentials missing"));
        assert!(err("client_id = \"a\"").contains("client_secret"));
        assert!(err(&format!("client_secret_file = {file}")).contains("client_id"));
        assert!(err(&format!(
            "client_id = \"a\"\nclient_secret_file = {file}\napi_key_file = {file}"
        ))
        .contains("not both"));
        assert!(settings(&format!("api_key_file = {file}"))
            .unwrap()
            .validate()
            .is_ok());
    }

    #[test]
    fn unknown_setting_is_refused_by_name() {
        assert!(settings("api_key_env = \"K\"\npacketsize = 3")
            .unwrap_err()
            .contains("packetsize"));
    }
}
