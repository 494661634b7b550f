//! The service configuration: one TOML file, typed, unknown keys refused with their
//! path, then `PROVSYNC_*` environment overrides, then command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! state = "sqlite://provsync-state.db"
//!
//! [[tokens]]
//! name = "crm"
//! sha256 = "<hex SHA-256 of the token>"
//! role = "operate"        # read < operate < admin
//! ```
//!
//! Tokens are stored as SHA-256 hashes only: the configuration never holds a secret.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Default listen address of `provsync serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default state store of the service.
pub const DEFAULT_STATE: &str = "sqlite://provsync-state.db";

/// What a token may do. Ordered: `read < operate < admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// State store URL.
    #[serde(default)]
    pub state: Option<String>,
    /// API tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// One `[[tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
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
    /// API tokens.
    pub tokens: Vec<Token>,
}

/// Overrides from the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--state`.
    pub state: Option<String>,
}

/// A configuration problem, naming the file and the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Parses a configuration file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError(format!("{origin}: {e}")))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().to_owned();
        if path == "." || path.is_empty() {
            ConfigError(format!("{origin}: {msg}"))
        } else {
            ConfigError(format!("{origin}: at `{path}`: {msg}"))
        }
    })
}

/// Reads and parses a configuration file.
pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    parse(&text, &path.display().to_string())
}

/// Resolves defaults <- file <- environment (`PROVSYNC_LISTEN`, `PROVSYNC_STATE`)
/// <- command-line overrides, and validates the result.
pub fn resolve(
    file: Option<ConfigFile>,
    env: impl Fn(&str) -> Option<String>,
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    let file = file.unwrap_or_default();
    let listen = flags
        .listen
        .clone()
        .or_else(|| env("PROVSYNC_LISTEN"))
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let state = flags
        .state
        .clone()
        .or_else(|| env("PROVSYNC_STATE"))
        .or(file.state)
        .unwrap_or_else(|| DEFAULT_STATE.to_owned());
    let listen: SocketAddr = listen.parse().map_err(|_| {
        ConfigError(format!(
            "listen: expected an address like 127.0.0.1:8080, got {listen:?}"
        ))
    })?;
    if state.trim().is_empty() {
        return Err(ConfigError("state: must not be empty".into()));
    }
    let tokens = tokens(&file.tokens)?;
    Ok(Config {
        listen,
        state,
        tokens,
    })
}

/// Reads the process environment, ignoring empty values.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
                "tokens[{i}].sha256: expected 64 hex digits (the SHA-256 of the token, \
                 e.g. `printf %s TOKEN | sha256sum`)"
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

/// Hex SHA-256 of a token (what goes in the config file).
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The state URL with any password replaced (for display).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

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
        let c = resolve(Some(f), |_| None, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.tokens[0].role, Role::Operate);
        assert_eq!(sha256_hex("test"), H);
        assert_eq!(decode_sha256(H).unwrap(), c.tokens[0].hash);
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
        let f = parse("listen = \"127.0.0.1:1\"\nstate = \"sqlite://f.db\"\n", "c").unwrap();
        let env = |k: &str| (k == "PROVSYNC_LISTEN").then(|| "127.0.0.1:2".to_owned());
        let c = resolve(Some(f.clone()), env, &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.state, "sqlite://f.db");
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            state: None,
        };
        assert_eq!(resolve(Some(f), env, &flags).unwrap().listen.port(), 3);
    }

    #[test]
    fn bad_hash_and_duplicates_are_refused() {
        let f = parse(
            "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\nrole = \"read\"\n",
            "c",
        )
        .unwrap();
        let e = resolve(Some(f), |_| None, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("tokens[0].sha256"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
