//! Where paths point: a relative path written in a file starts at that file's
//! folder (a job file's `source.path`, `mapping`, secret and key files, SQLite
//! URLs; a service config's `job_file`, `secret_file` and `state`), and the default
//! state store has one per-user place.

use std::path::{Path, PathBuf};

use provsync_core::job::JobSpec;

/// `p` as seen from `base`: a relative path starts at `base`; an absolute one, or
/// any path when there is no base, is kept.
pub fn relative_to(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// The folder a file's relative paths start from, absolute, so that a spec read
/// from it means the same thing to any process, whatever its working directory.
pub fn folder_of(file: &Path) -> PathBuf {
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The file of a `sqlite:` URL and the rest (`?mode=...`), or `None` for an
/// in-memory database or another scheme.
pub(crate) fn sqlite_file(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (file, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    let memory = file.is_empty() || file == ":memory:" || query.contains("mode=memory");
    (!memory).then_some((file, query))
}

/// A `sqlite:` URL whose file is relative, made to start at `base`; other URLs
/// (absolute files, `sqlite::memory:`, PostgreSQL) are kept.
pub fn sqlite_url_relative_to(base: &Path, url: &str) -> String {
    match sqlite_file(url) {
        Some((file, query)) if Path::new(file).is_relative() => {
            // The driver percent-decodes the file: the base's own `%`, `?` and `#`
            // must stay literal.
            let base = base
                .to_string_lossy()
                .replace('%', "%25")
                .replace('?', "%3F")
                .replace('#', "%23");
            format!("sqlite://{}{query}", Path::new(&base).join(file).display())
        }
        _ => url.to_owned(),
    }
}

/// Makes the relative paths of a job (its `mapping` and every file its source and
/// target settings name) start at `base`: the job file's folder, or for a job
/// submitted over the API, the service's.
pub fn resolve_job_paths(spec: &mut JobSpec, base: &Path) {
    if let Some(m) = &mut spec.mapping {
        *m = relative_to(Some(base), Path::new(m))
            .to_string_lossy()
            .into_owned();
    }
    crate::source::resolve_paths(&mut spec.source, base);
    crate::target::resolve_paths(&mut spec.target, base);
}

/// Rewrites the string settings at `keys` (dotted paths into nested tables) with
/// `resolve`; absent or non-string values are left to the connector to refuse.
pub(crate) fn rewrite_settings(
    settings: &mut serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
    resolve: impl Fn(&str) -> String,
) {
    for key in keys {
        if let Some(s) = string_setting(settings, key) {
            *s = resolve(s);
        }
    }
}

/// The string at a dotted path into nested tables (`auth.private_key_file`).
pub(crate) fn setting<'a>(
    settings: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a str> {
    let mut parts = key.split('.');
    let mut at = settings.get(parts.next()?)?;
    for p in parts {
        at = at.get(p)?;
    }
    at.as_str()
}

/// The string at a dotted path into nested tables, if there is one.
fn string_setting<'a>(
    settings: &'a mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a mut String> {
    let mut parts = key.split('.');
    let mut at = settings.get_mut(parts.next()?)?;
    for p in parts {
        at = at.get_mut(p)?;
    }
    match at {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

/// Rewrites relative file settings to start at `base`.
pub(crate) fn rewrite_file_settings(
    settings: &mut serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
    base: &Path,
) {
    rewrite_settings(settings, keys, |p| {
        relative_to(Some(base), Path::new(p))
            .to_string_lossy()
            .into_owned()
    });
}

/// The default state store's file: `$XDG_STATE_HOME/provsync/state.db`, else
/// `$HOME/.local/state/provsync/state.db` (the XDG base directory rules: a
/// relative `XDG_STATE_HOME` is ignored); `None` without either.
pub fn default_state_file() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let dir =
        absolute("XDG_STATE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".local/state")))?;
    Some(dir.join("provsync").join("state.db"))
}

/// The default state store URL (`provsync-state.db` in the working directory only
/// when neither `XDG_STATE_HOME` nor `HOME` is set).
pub fn default_state_url() -> String {
    match default_state_file() {
        Some(f) => format!("sqlite://{}", f.display()),
        None => "sqlite://provsync-state.db".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_with_a_relative_file_start_at_the_base() {
        let base = Path::new("/jobs");
        assert_eq!(
            sqlite_url_relative_to(base, "sqlite://out/t.db"),
            "sqlite:///jobs/out/t.db"
        );
        assert_eq!(
            sqlite_url_relative_to(base, "sqlite:t.db?mode=rwc"),
            "sqlite:///jobs/t.db?mode=rwc"
        );
        for kept in [
            "sqlite:///abs/t.db",
            "sqlite::memory:",
            "sqlite://x?mode=memory",
            "postgres://u@h/db",
        ] {
            assert_eq!(sqlite_url_relative_to(base, kept), kept);
        }
        assert_eq!(
            sqlite_url_relative_to(Path::new("/100%?"), "sqlite://t.db"),
            "sqlite:///100%25%3F/t.db"
        );
    }

    #[test]
    fn nested_settings_are_rewritten_and_absent_ones_ignored() {
        let mut s = serde_json::json!({"auth": {"private_key_file": "k.pem"}, "path": 3})
            .as_object()
            .unwrap()
            .clone();
        rewrite_file_settings(
            &mut s,
            &["auth.private_key_file", "path", "secret_file"],
            Path::new("/b"),
        );
        assert_eq!(s["auth"]["private_key_file"], "/b/k.pem");
        assert_eq!(s["path"], 3);
    }
}
