//! Secrets of connectors: a value that never prints, and the one way a secret is
//! read from where a job names it (an environment variable or a file), so job specs
//! carry references and the state store never holds the value.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// A credential: deserializes from a string, never prints it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret from its value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The secret in environment variable `var`; `key` names the job-file key in errors.
pub fn from_env(var: &str, key: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(format!("{key}: environment variable {var} is empty")),
        Err(_) => Err(format!("{key}: environment variable {var} is not set")),
    }
}

/// The secret held in a file (its content without the trailing line break, as
/// container secrets are written); `key` names the job-file key in errors.
pub fn from_file(path: &Path, key: &str) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(format!("{key}: {} is empty", path.display()));
    }
    Ok(Secret(value.to_owned()))
}

/// Writes a secret the way a deployment mounts one: a file only its owner reads, so
/// job specs can name the file instead of holding the value.
pub fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(value.as_bytes())
}

/// The one secret given by an inline value, an environment variable or a file
/// (`name`, `name_env`, `name_file`), or `None` when none is given; two at once is an
/// error naming them.
pub fn one_of(
    name: &str,
    value: Option<&Secret>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    match (value, env, file) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(v.clone())),
        (None, Some(var), None) => from_env(var, &format!("{name}_env")).map(Some),
        (None, None, Some(path)) => from_file(path, &format!("{name}_file")).map(Some),
        _ => Err(format!(
            "give one of {name}, {name}_env and {name}_file, not several"
        )),
    }
}

/// `text` with the password of every URL in it replaced by `***`
/// (`postgres://app:s3cret@db/x` → `postgres://app:***@db/x`): for names, logs and
/// error messages, which may quote a URL anywhere in a line.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(s) = rest.find("://") {
        let (head, tail) = rest.split_at(s + 3);
        out.push_str(head);
        let authority = authority(tail);
        match password_in(authority) {
            Some(pw) => {
                out.push_str(&authority[..pw.start]);
                out.push_str("***");
                out.push_str(&authority[pw.end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority.len()..];
    }
    out.push_str(rest);
    out
}

/// The password of a `scheme://user:password@host/...` URL, if it has one.
pub fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = authority(rest);
    password_in(authority)
        .map(|pw| authority[pw].to_owned())
        .filter(|pw| !pw.is_empty())
}

/// `text` with `secret` replaced by `***`: a password a library may echo (a message
/// that reaches a log must never depend on it not doing so).
pub fn redact(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text,
    }
}

/// The authority at the start of what follows a URL's `://`: it ends where a path,
/// query, fragment, quote or blank begins.
fn authority(after_scheme: &str) -> &str {
    let end = after_scheme
        .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
        .unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

/// Where the password sits in an authority (`user:password@host`): after the
/// user's first `:`, up to the last `@`.
fn password_in(authority: &str) -> Option<std::ops::Range<usize>> {
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some(colon + 1..at)
}

/// Whether a key (the last segment of `field`) holds a secret value inline, so a
/// message quoting its line must not show the value.
pub fn is_secret_key(field: &str) -> bool {
    let key = field.rsplit('.').next().unwrap_or(field);
    ["secret", "password", "api_key", "token", "private_key"]
        .iter()
        .any(|s| key.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_replaced_wherever_the_url_sits() {
        assert_eq!(
            redact_urls("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_urls("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact_urls("url = \"postgres://a:p@ss@h/x\" # and amqp://g:g@q:5672/%2f"),
            "url = \"postgres://a:***@h/x\" # and amqp://g:***@q:5672/%2f"
        );
        assert_eq!(redact_urls("no url: a:b@c"), "no url: a:b@c");
        assert_eq!(redact_urls("http://host:8080/p"), "http://host:8080/p");
    }

    #[test]
    fn a_url_password_is_found_and_a_secret_value_replaced() {
        assert_eq!(url_password("postgres://u:pw@h/db").as_deref(), Some("pw"));
        assert_eq!(
            url_password("postgres://u:p@ss@h/db").as_deref(),
            Some("p@ss")
        );
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(url_password("postgres://u:@h/db"), None);
        assert_eq!(url_password("postgres://h/db?x=a:b@c"), None);
        assert_eq!(url_password("no url"), None);
        assert_eq!(redact("a s3cret b".into(), Some("s3cret")), "a *** b");
        assert_eq!(redact("a b".into(), Some("")), "a b");
        assert_eq!(redact("a b".into(), None), "a b");
    }

    #[test]
    fn secret_keys_are_recognised_by_their_last_segment() {
        assert!(is_secret_key("source.client_secret"));
        assert!(is_secret_key("target.auth.password"));
        assert!(!is_secret_key("source.client_secret_env"));
        assert!(!is_secret_key("target.url"));
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }

    #[test]
    fn a_secret_file_is_read_without_its_line_break_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "hunter2\n").unwrap();
        let s = one_of("client_secret", None, None, Some(&path)).unwrap();
        assert_eq!(s.unwrap().expose(), "hunter2");
        let missing = dir.path().join("none");
        let e = one_of("client_secret", None, None, Some(&missing)).unwrap_err();
        assert!(e.starts_with("client_secret_file: cannot read"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        let e = from_file(&path, "k").unwrap_err();
        assert!(e.ends_with("is empty"), "{e}");
        let e = one_of("api_key", None, Some("PROVSYNC_TEST_UNSET_VAR"), None).unwrap_err();
        assert_eq!(
            e,
            "api_key_env: environment variable PROVSYNC_TEST_UNSET_VAR is not set"
        );
        let e = one_of("api_key", Some(&Secret::new("x")), Some("V"), None).unwrap_err();
        assert!(e.contains("not several"), "{e}");
        assert!(one_of("api_key", None, None, None).unwrap().is_none());
    }
}
