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

#[cfg(test)]
mod tests {
    use super::*;

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
