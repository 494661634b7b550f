//! What a connector written out in full may reach when the service runs it for a
//! caller: files only under the configured data folders, hosts only on the
//! configured list. The connector kinds say which of their settings are files and
//! which are endpoints (`file_settings`, `url_settings`), the same lists that make
//! relative paths start at the right folder.

use std::path::{Component, Path, PathBuf};

use provsync_core::job::{ConnectorSpec, SpecError};
use reqwest::Url;

use super::Side;

/// Where free-form connectors may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds {
    /// Folders (canonical) whose files they may read and write.
    pub data_folders: Vec<PathBuf>,
    /// Hosts they may connect to (`host`, `host:port`, IP literals).
    pub allowed_hosts: Vec<String>,
}

impl Bounds {
    /// Every file and endpoint `spec` names, checked; each problem names its key
    /// (`source.path`, `target.login_url`).
    pub fn check(&self, side: Side, spec: &ConnectorSpec) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let mut bad = |key: &str, message: String| {
            errs.push(SpecError {
                field: format!("{}.{key}", side.key()),
                message,
            })
        };
        let (files, urls, sqlite) = match side {
            Side::Source => (
                crate::source::SourceConfig::file_settings(&spec.kind),
                crate::source::SourceConfig::url_settings(&spec.kind),
                None,
            ),
            Side::Target => (
                crate::target::file_settings(&spec.kind),
                crate::target::url_settings(&spec.kind),
                crate::target::sqlite_url_setting(&spec.kind),
            ),
        };
        for key in files {
            if let Some(p) = crate::paths::setting(&spec.settings, key) {
                if let Err(why) = self.check_file(Path::new(p)) {
                    bad(key, why);
                }
            }
        }
        if let Some(key) = sqlite {
            if let Some(url) = crate::paths::setting(&spec.settings, key) {
                // An in-memory database touches no file.
                if let Some((file, _)) = crate::paths::sqlite_file(url) {
                    if let Err(why) = self.check_file(Path::new(file)) {
                        bad(key, why);
                    }
                }
            }
        }
        for key in urls {
            if let Some(url) = crate::paths::setting(&spec.settings, key) {
                if let Err(why) = self.check_url(url) {
                    bad(key, why);
                }
            }
        }
        errs
    }

    /// A file lies under one of the data folders, after symbolic links are
    /// followed as far as the path exists (a file still to be created is judged by
    /// its folder).
    pub fn check_file(&self, path: &Path) -> Result<(), String> {
        let outside = || {
            format!(
                "{} is outside the data folders this server lets requests use \
                 ([api] data_folders: {})",
                path.display(),
                if self.data_folders.is_empty() {
                    "none".to_owned()
                } else {
                    self.data_folders
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        };
        if !path.is_absolute() {
            return Err(outside());
        }
        // `..` is resolved by the OS where the path exists; below that it has no
        // folder to go up from, and is refused.
        let real = real_path(path).map_err(|e| format!("{}: {e}", outside()))?;
        if self.data_folders.iter().any(|d| real.starts_with(d)) {
            Ok(())
        } else {
            Err(outside())
        }
    }

    /// An endpoint's host (and port) is on the allowed list.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let shown = crate::secret::redact_urls(url);
        let parsed = Url::parse(url).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return Err(format!("{shown:?} names no host"));
        };
        // A PostgreSQL URL may move its host to the query (libpq's `host=`).
        if parsed
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("hostaddr"))
        {
            return Err(format!(
                "{shown:?}: the host must be the URL's own, not a `host=` parameter"
            ));
        }
        let port = parsed.port_or_known_default().or(match parsed.scheme() {
            "postgres" | "postgresql" => Some(5432),
            _ => None,
        });
        let Some(port) = port else {
            return Err(format!("{shown:?} names no port"));
        };
        if crate::callback::address::listed(&self.allowed_hosts, host, port) {
            Ok(())
        } else {
            Err(format!(
                "host {host}:{port} is not on the list this server lets requests reach \
                 ([api] allowed_hosts)"
            ))
        }
    }
}

/// `path` with symbolic links and `..` resolved in the part that exists; the rest
/// (a file or folders still to be created) is appended as written, and may hold no
/// `..`.
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                return Ok(rest.iter().rev().fold(real, |p, c| p.join(c)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let last = existing.components().next_back();
                let (Some(parent), Some(Component::Normal(name))) = (existing.parent(), last)
                else {
                    return Err(e);
                };
                rest.push(name.to_owned());
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> ConnectorSpec {
        serde_json::from_value(v).unwrap()
    }

    fn bounds(dir: &Path) -> Bounds {
        Bounds {
            data_folders: vec![dir.canonicalize().unwrap()],
            allowed_hosts: vec!["onekey.example".into(), "127.0.0.1:5432".into()],
        }
    }

    #[test]
    fn files_must_lie_under_a_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let b = bounds(dir.path());
        let inside = dir.path().join("world.ndjson");
        assert_eq!(b.check_file(&inside), Ok(()));
        assert_eq!(b.check_file(&dir.path().join("new/sub/t.db")), Ok(()));
        // `..` where the path exists is the OS's to resolve.
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(b.check_file(&dir.path().join("sub/../t.db")), Ok(()));
        for outside in [
            PathBuf::from("/etc/passwd"),
            dir.path().join("../escape.db"),
            dir.path().join("sub/../../escape.db"),
            dir.path().join("new/../t.db"),
            PathBuf::from("relative.db"),
        ] {
            let e = b.check_file(&outside).unwrap_err();
            assert!(e.contains("outside the data folders"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_a_data_folder_is_followed_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let e = bounds(dir.path())
            .check_file(&dir.path().join("etc/passwd"))
            .unwrap_err();
        assert!(e.contains("outside the data folders"), "{e}");
    }

    #[test]
    fn every_file_and_host_a_connector_names_is_checked_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let b = bounds(dir.path());
        let errs = b.check(
            Side::Source,
            &spec(json!({"type": "file", "path": "/etc/passwd"})),
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "source.path");
        let errs = b.check(
            Side::Target,
            &spec(json!({"type": "sqlite", "url": "sqlite:///any/folder/evil.db"})),
        );
        assert_eq!(errs[0].field, "target.url");
        assert!(b
            .check(
                Side::Target,
                &spec(json!({"type": "sqlite", "url": "sqlite::memory:"}))
            )
            .is_empty());
        let errs = b.check(
            Side::Target,
            &spec(
                json!({"type": "salesforce", "login_url": "http://169.254.169.254",
                         "instance_url": "https://onekey.example",
                         "auth": {"private_key_file": "/etc/ssl/private/k.pem"}}),
            ),
        );
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["target.auth.private_key_file", "target.login_url"]);
        assert!(errs[1].message.contains("169.254.169.254:80"), "{errs:?}");
    }

    #[test]
    fn hosts_match_the_list_with_their_port() {
        let b = bounds(Path::new("/"));
        assert_eq!(b.check_url("https://onekey.example/api"), Ok(()));
        assert_eq!(b.check_url("postgres://u@127.0.0.1/db"), Ok(()));
        assert!(b.check_url("postgres://u@127.0.0.1:6543/db").is_err());
        assert!(b.check_url("postgres://u@127.0.0.1/db?host=/tmp").is_err());
        assert!(b.check_url("https://evil.example/").is_err());
        assert!(b.check_url("not a url").is_err());
    }
}
