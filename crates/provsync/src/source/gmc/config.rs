//! Settings of the `gmc` source and its credentials (from environment variables or
//! a secret file; the password is never logged or Debug-printed).

use std::fmt;
use std::path::PathBuf;

use provsync_core::source::SourceError;
use serde::Deserialize;

/// Settings of the `gmc` source; the designated bodies are the job's scope.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GmcConfig {
    /// Service URL, e.g. `https://webcache.gmc-uk.org/GMCWebServices/WebService.asmx`.
    pub url: String,
    /// Environment variable holding the user name.
    #[serde(default = "default_username_env")]
    #[schema(default = default_username_env)]
    pub username_env: String,
    /// Environment variable holding the password.
    #[serde(default = "default_password_env")]
    #[schema(default = default_password_env)]
    pub password_env: String,
    /// A file with `username=...` and `password=...` lines (instead of the variables).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub secret_file: Option<PathBuf>,
    /// `InternalUser` sent with every request.
    #[serde(default = "default_internal_user")]
    #[schema(default = default_internal_user)]
    pub internal_user: String,
    /// Seconds one call may take (a whole body comes in one response).
    #[serde(default = "default_timeout")]
    #[schema(default = default_timeout)]
    pub timeout_secs: u64,
    /// Retries of a call after a transport error or ReturnCode 98.
    #[serde(default = "default_retries")]
    #[schema(default = default_retries)]
    pub retries: u32,
    /// First retry delay in milliseconds; doubles on each retry.
    #[serde(default = "default_backoff")]
    #[schema(default = default_backoff)]
    pub backoff_ms: u64,
    /// Designated bodies asked at once: the calls of the next bodies start while
    /// the engine loads the current one (at least 1).
    #[serde(default = "default_concurrency")]
    #[schema(default = default_concurrency)]
    pub concurrency: usize,
    /// Largest answer read for one body, in bytes (default 64 MiB, about three
    /// times the largest body's doctors): a bigger answer fails that body with its
    /// size. Answers are parsed as they arrive and never held whole; a body's
    /// doctors are held until its answer is complete, so memory stays bounded by
    /// `concurrency` x the doctors of this many bytes.
    #[serde(default = "default_max_answer_bytes")]
    #[schema(default = default_max_answer_bytes)]
    pub max_answer_bytes: u64,
}

fn default_username_env() -> String {
    "PROVSYNC_GMC_USERNAME".into()
}
fn default_password_env() -> String {
    "PROVSYNC_GMC_PASSWORD".into()
}
fn default_internal_user() -> String {
    "provsync".into()
}
fn default_timeout() -> u64 {
    120
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> u64 {
    500
}
fn default_concurrency() -> usize {
    4
}
fn default_max_answer_bytes() -> u64 {
    64 * 1024 * 1024
}

/// GMC account credentials; `Debug` hides the password.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (never printed).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl GmcConfig {
    /// Reads the credentials; errors name the variable or file, never a value.
    pub fn credentials(&self) -> Result<Credentials, SourceError> {
        if let Some(path) = &self.secret_file {
            return read_secret_file(path);
        }
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                SourceError::Config(format!(
                    "source gmc: environment variable {name} is not set (or not UTF-8)"
                ))
            })
        };
        Ok(Credentials {
            username: var(&self.username_env)?,
            password: var(&self.password_env)?,
        })
    }
}

fn read_secret_file(path: &std::path::Path) -> Result<Credentials, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SourceError::Config(format!(
            "source gmc: cannot read secret_file {}: {e}",
            path.display()
        ))
    })?;
    let (mut username, mut password) = (None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("username", v)) => username = Some(v.trim().to_owned()),
            Some(("password", v)) => password = Some(v.trim().to_owned()),
            _ => {
                return Err(SourceError::Config(format!(
                    "source gmc: secret_file {} line {}: expected username=... or password=...",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        _ => Err(SourceError::Config(format!(
            "source gmc: secret_file {} must hold both username= and password= lines",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_secret_file_without_a_password_is_refused_by_name_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gmc.secret");
        std::fs::write(&p, "username=abc\n").unwrap();
        let err = read_secret_file(&p).unwrap_err().to_string();
        assert!(err.contains("gmc.secret") && !err.contains("abc"), "{err}");
    }
}
