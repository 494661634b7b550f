//! OAuth 2.0 token requests: client credentials and JWT bearer (RS256).

use std::path::Path;

use serde::Deserialize;

use super::config::AuthConfig;
use super::SfError;

pub use crate::secret::Secret;

/// A session: the bearer token and the host API calls go to.
#[derive(Debug, Clone)]
pub struct Session {
    /// Bearer token.
    pub token: Secret,
    /// API host, without a trailing slash.
    pub instance_url: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Credentials resolved from the environment or files once, at open.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Client credentials flow.
    ClientCredentials {
        /// Consumer key.
        client_id: String,
        /// Consumer secret.
        secret: Secret,
    },
    /// JWT bearer flow.
    Jwt {
        /// Consumer key.
        client_id: String,
        /// Integration user.
        username: String,
        /// `aud` claim.
        audience: String,
        /// RSA private key (PEM).
        key: Secret,
    },
}

impl Credentials {
    /// Reads the secret a config names (environment variable or file).
    pub fn resolve(auth: &AuthConfig, login_url: &str) -> Result<Credentials, SfError> {
        let secret = |name: &str, env: Option<&String>, file: Option<&String>| {
            crate::secret::one_of(name, None, env.map(|s| s.as_str()), file.map(Path::new))
                .map_err(|e| SfError::Config(format!("target.auth.{e}")))?
                .ok_or_else(|| {
                    SfError::Config(format!("target.auth: give {name}_env or {name}_file"))
                })
        };
        Ok(match auth {
            AuthConfig::ClientCredentials {
                client_id,
                client_secret_env,
                client_secret_file,
            } => Credentials::ClientCredentials {
                client_id: client_id.clone(),
                secret: secret(
                    "client_secret",
                    client_secret_env.as_ref(),
                    client_secret_file.as_ref(),
                )?,
            },
            AuthConfig::Jwt {
                client_id,
                username,
                audience,
                private_key_file,
                private_key_env,
            } => {
                let pem = secret(
                    "private_key",
                    private_key_env.as_ref(),
                    private_key_file.as_ref(),
                )?;
                let pem = pem.expose();
                // Refuse a bad key now rather than at the first token request.
                jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    SfError::Config(format!("auth: the private key is not an RSA PEM key: {e}"))
                })?;
                Credentials::Jwt {
                    client_id: client_id.clone(),
                    username: username.clone(),
                    audience: audience
                        .clone()
                        .unwrap_or_else(|| login_url.trim_end_matches('/').to_string()),
                    key: Secret::new(pem),
                }
            }
        })
    }

    /// The form a token request sends.
    fn form(&self) -> Result<Vec<(&'static str, String)>, SfError> {
        Ok(match self {
            Credentials::ClientCredentials { client_id, secret } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", secret.expose().to_string()),
            ],
            Credentials::Jwt {
                client_id,
                username,
                audience,
                key,
            } => vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ),
                ("assertion", assertion(client_id, username, audience, key)?),
            ],
        })
    }

    /// Who the session runs as, for the dispatch name.
    pub fn principal(&self) -> &str {
        match self {
            Credentials::ClientCredentials { client_id, .. } => client_id,
            Credentials::Jwt { username, .. } => username,
        }
    }
}

/// The signed RS256 assertion of the JWT bearer flow (valid three minutes).
fn assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    key: &Secret,
) -> Result<String, SfError> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        sub: &'a str,
        aud: &'a str,
        exp: i64,
    }
    let claims = Claims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp: chrono::Utc::now().timestamp() + 180,
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key.expose().as_bytes())
        .map_err(|e| SfError::Config(format!("auth: private key: {e}")))?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| SfError::Config(format!("auth: cannot sign the assertion: {e}")))
}

/// Requests a token; a refusal is `SfError::Refused` with Salesforce's error code.
pub async fn login(
    http: &reqwest::Client,
    login_url: &str,
    creds: &Credentials,
) -> Result<Session, SfError> {
    let url = format!("{}/services/oauth2/token", login_url.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .form(&creds.form()?)
        .send()
        .await
        .map_err(|e| SfError::Transient(format!("token request: {}", crate::errors::http(&e))))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| SfError::Transient(format!("token response: {}", crate::errors::http(&e))))?;
    if status.is_server_error() {
        return Err(SfError::Transient(format!(
            "token endpoint answered {status}"
        )));
    }
    if !status.is_success() {
        let reason = serde_json::from_slice::<TokenError>(&body)
            .map(|e| format!("{}: {}", e.error, e.error_description))
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(SfError::Refused(format!(
            "token request for {} refused: {reason}",
            creds.principal()
        )));
    }
    let t: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| SfError::Refused(format!("unreadable token response: {e}")))?;
    Ok(Session {
        token: Secret::new(t.access_token),
        instance_url: t.instance_url.trim_end_matches('/').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_debug_print() {
        let c = Credentials::ClientCredentials {
            client_id: "provsync".into(),
            secret: Secret::new("hunter2"),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<redacted>"));
    }

    #[test]
    fn client_credentials_form_has_the_grant() {
        let c = Credentials::ClientCredentials {
            client_id: "provsync".into(),
            secret: Secret::new("s"),
        };
        let f = c.form().unwrap();
        assert_eq!(f[0], ("grant_type", "client_credentials".to_string()));
        assert_eq!(f[1].1, "provsync");
    }
}
