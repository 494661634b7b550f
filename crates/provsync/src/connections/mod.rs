//! Named connections: the sources and targets an administrator configures for the
//! service (`[sources.<name>]`, `[targets.<name>]`), which API requests and
//! schedules name instead of describing a connector themselves. A connection holds
//! its secrets by reference (`*_env`, `*_file`), never by value; it is checked when
//! the service starts and listed, without those references, by
//! `GET /v1/connections`.

pub mod reach;

use std::collections::BTreeMap;
use std::path::Path;

use provsync_core::job::{ConnectorSpec, JobSpec, SpecError};
use serde_json::{json, Value};

/// Which side of a job a connection sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `[sources.<name>]`, a job's `source`.
    Source,
    /// `[targets.<name>]`, a job's `target`.
    Target,
}

impl Side {
    /// The job key: `source` or `target`.
    pub fn key(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }

    /// The configuration table: `sources` or `targets`.
    pub fn table(self) -> &'static str {
        match self {
            Side::Source => "sources",
            Side::Target => "targets",
        }
    }
}

/// The configured connections, each checked and its relative paths resolved.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    sources: BTreeMap<String, ConnectorSpec>,
    targets: BTreeMap<String, ConnectorSpec>,
}

/// Settings shown by `GET /v1/connections`: where a connection points, never how
/// it authenticates (secret references stay in the configuration).
const SHOWN: [&str; 7] = [
    "url",
    "path",
    "login_url",
    "instance_url",
    "schema",
    "scope",
    "api_version",
];

impl Connections {
    /// Checks the `[sources.*]` and `[targets.*]` tables: names, each connector's
    /// settings as a job's would be, and that every secret they reference can be
    /// read now. Relative paths start at `base` (the configuration file's folder).
    /// Errors are `sources.<name>.<key>: message`.
    pub fn configure(
        sources: &BTreeMap<String, ConnectorSpec>,
        targets: &BTreeMap<String, ConnectorSpec>,
        base: Option<&Path>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        for (side, table) in [(Side::Source, sources), (Side::Target, targets)] {
            for (name, spec) in table {
                let resolved = configure_one(side, name, spec, base)?;
                match side {
                    Side::Source => out.sources.insert(name.clone(), resolved),
                    Side::Target => out.targets.insert(name.clone(), resolved),
                };
            }
        }
        Ok(out)
    }

    /// Whether no connection is configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.targets.is_empty()
    }

    /// The connection `name` of `side`.
    pub fn get(&self, side: Side, name: &str) -> Option<&ConnectorSpec> {
        match side {
            Side::Source => self.sources.get(name),
            Side::Target => self.targets.get(name),
        }
    }

    fn names(&self, side: Side) -> Vec<&str> {
        match side {
            Side::Source => self.sources.keys().map(String::as_str).collect(),
            Side::Target => self.targets.keys().map(String::as_str).collect(),
        }
    }

    /// Puts the named connections in place of a job's references (`source =
    /// "onekey-eu"`); a name no connection has is an error naming the key and the
    /// names there are. Sections written out in full are left as they are.
    pub fn resolve(&self, spec: &mut JobSpec) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        for side in [Side::Source, Side::Target] {
            let section = match side {
                Side::Source => &mut spec.source,
                Side::Target => &mut spec.target,
            };
            if section.unresolved().is_none() && section.connection.is_some() {
                // Only the service marks a section as a connection's.
                errs.push(SpecError {
                    field: format!("{}.connection", side.key()),
                    message: format!(
                        "not a setting: name a connection as `{} = \"<name>\"`",
                        side.key()
                    ),
                });
                continue;
            }
            let Some(name) = section.unresolved().map(str::to_owned) else {
                continue;
            };
            match self.get(side, &name) {
                Some(c) => *section = c.clone(),
                None => errs.push(SpecError {
                    field: side.key().into(),
                    message: self.unknown(side, &name),
                }),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    fn unknown(&self, side: Side, name: &str) -> String {
        let other = match side {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        };
        let names = self.names(side);
        let known = if names.is_empty() {
            format!("none is configured ([{}.<name>])", side.table())
        } else {
            format!("the {} are: {}", side.table(), names.join(", "))
        };
        let hint = if self.get(other, name).is_some() {
            format!(" ({name:?} is one of the {})", other.table())
        } else {
            String::new()
        };
        format!(
            "no {} connection is named {name:?}{hint}; {known}",
            side.key()
        )
    }

    /// The listing of `GET /v1/connections`: each connection's name, type, what it
    /// points at and, for a target, the name its jobs queue under; no secret and no
    /// secret reference.
    pub fn listing(&self) -> Value {
        let view = |side: Side, name: &str, spec: &ConnectorSpec| {
            let shown: serde_json::Map<String, Value> = SHOWN
                .iter()
                .filter_map(|k| {
                    let v = spec.settings.get(*k)?;
                    let v = match v.as_str() {
                        Some(s) => Value::String(crate::secret::redact_urls(s)),
                        None => v.clone(),
                    };
                    Some(((*k).to_owned(), v))
                })
                .collect();
            let mut v = json!({"name": name, "type": spec.kind, "settings": shown});
            if side == Side::Target {
                v["queue"] = json!(crate::target::target_name(spec).ok());
            }
            v
        };
        json!({
            "sources": self.sources.iter().map(|(n, s)| view(Side::Source, n, s)).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|(n, s)| view(Side::Target, n, s)).collect::<Vec<_>>(),
        })
    }
}

/// A connection name: 1 to 64 letters, digits, `_` or `-` (no `.`: the name is a
/// key of the configuration file and of error paths).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a connection name: 1 to 64 letters, digits, `_` or `-`"
        ))
    }
}

fn configure_one(
    side: Side,
    name: &str,
    spec: &ConnectorSpec,
    base: Option<&Path>,
) -> Result<ConnectorSpec, String> {
    let at = format!("{}.{name}", side.table());
    check_name(name).map_err(|e| format!("{at}: {e}"))?;
    if spec.unresolved().is_some() {
        return Err(format!(
            "{at}: a connection is a table with `type` and its settings"
        ));
    }
    if spec.connection.is_some() {
        return Err(format!(
            "{at}.connection: not a setting: the table's name is the connection's name"
        ));
    }
    let mut spec = spec.clone();
    if let Some(base) = base {
        match side {
            Side::Source => crate::source::resolve_paths(&mut spec, base),
            Side::Target => crate::target::resolve_paths(&mut spec, base),
        }
    }
    // The connector's own checks, its errors re-rooted at the table
    // (`source.url` -> `sources.onekey-eu.url`).
    let parsed = match side {
        Side::Source => crate::source::SourceConfig::parse(&spec).map(drop),
        Side::Target => crate::target::TargetConfig::parse(&spec).map(drop),
    };
    parsed.map_err(|e| {
        let key = e.field.strip_prefix(side.key()).unwrap_or(&e.field);
        format!("{at}{key}: {}", e.message)
    })?;
    check_secret_references(&spec).map_err(|(key, why)| format!("{at}.{key}: {why}"))?;
    spec.connection = Some(name.to_owned());
    Ok(spec)
}

/// Every secret a connection names by reference (`*_env`, a `*_file` holding a
/// secret or key, at any depth) can be read now: a service that starts is a
/// service whose connections can authenticate.
fn check_secret_references(spec: &ConnectorSpec) -> Result<(), (String, String)> {
    fn walk(prefix: &str, map: &serde_json::Map<String, Value>) -> Result<(), (String, String)> {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) => walk(&key, inner)?,
                Value::String(s) if k.ends_with("_env") => {
                    crate::secret::from_env(s, &key).map_err(|e| (key.clone(), e))?;
                }
                Value::String(s) if k.ends_with("_file") && is_secret_key(k) => {
                    crate::secret::from_file(Path::new(s), &key).map_err(|e| (key.clone(), e))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk("", &spec.settings).map_err(|(key, message)| {
        // The helpers name the key themselves: keep the message only once.
        let message = message
            .strip_prefix(&format!("{key}: "))
            .unwrap_or(&message)
            .to_owned();
        (key, message)
    })
}

/// Whether a `*_file` key holds a secret (a password, a client secret, a private
/// key) rather than data.
fn is_secret_key(key: &str) -> bool {
    ["secret", "password", "key", "token"]
        .iter()
        .any(|w| key.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> ConnectorSpec {
        serde_json::from_value(v).unwrap()
    }

    fn configured() -> Connections {
        let sources = BTreeMap::from([(
            "world".to_owned(),
            spec(json!({"type": "file", "path": "data/world.ndjson"})),
        )]);
        let targets = BTreeMap::from([(
            "warehouse".to_owned(),
            spec(json!({"type": "sqlite", "url": "sqlite://out/provider.db"})),
        )]);
        Connections::configure(&sources, &targets, Some(Path::new("/srv/provsync"))).unwrap()
    }

    #[test]
    fn named_connections_take_the_place_of_references_with_their_paths_resolved() {
        let c = configured();
        let mut job: JobSpec =
            toml::from_str("source = \"world\"\ntarget = \"warehouse\"\n").unwrap();
        c.resolve(&mut job).unwrap();
        assert_eq!(job.source.kind, "file");
        assert_eq!(job.source.connection.as_deref(), Some("world"));
        assert_eq!(
            job.source.settings["path"],
            "/srv/provsync/data/world.ndjson"
        );
        assert_eq!(
            job.target.settings["url"],
            "sqlite:///srv/provsync/out/provider.db"
        );
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_names_there_are() {
        let c = configured();
        let mut job: JobSpec =
            toml::from_str("source = \"warehouse\"\ntarget = \"nope\"\n").unwrap();
        let errs = c.resolve(&mut job).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "source");
        assert!(
            errs[0].message.contains("is one of the targets"),
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("the sources are: world"),
            "{errs:?}"
        );
        assert_eq!(errs[1].field, "target");
        assert!(errs[1].message.contains("warehouse"), "{errs:?}");
    }

    #[test]
    fn a_full_section_cannot_claim_to_be_a_connection() {
        let c = configured();
        let mut job: JobSpec = serde_json::from_value(json!({
            "source": {"type": "file", "path": "/etc/passwd", "connection": "world"},
            "target": "warehouse",
        }))
        .unwrap();
        let errs = c.resolve(&mut job).unwrap_err();
        assert_eq!(errs[0].field, "source.connection");
    }

    #[test]
    fn a_connection_is_checked_by_its_connector_and_named_at_its_table() {
        let bad = BTreeMap::from([("eu".to_owned(), spec(json!({"type": "file", "paht": "x"})))]);
        let e = Connections::configure(&bad, &BTreeMap::new(), None).unwrap_err();
        assert!(e.starts_with("sources.eu.paht: unknown field"), "{e}");
        let bad = BTreeMap::from([("a.b".to_owned(), spec(json!({"type": "file", "path": "x"})))]);
        let e = Connections::configure(&bad, &BTreeMap::new(), None).unwrap_err();
        assert!(e.contains("not a connection name"), "{e}");
    }

    #[test]
    fn a_secret_reference_that_cannot_be_read_stops_the_start() {
        let targets = BTreeMap::from([(
            "pg".to_owned(),
            spec(
                json!({"type": "postgres", "url": "postgres://u@h/db", "schema": "p",
                        "password_env": "PROVSYNC_TEST_UNSET_PASSWORD_VARIABLE"}),
            ),
        )]);
        let e = Connections::configure(&BTreeMap::new(), &targets, None).unwrap_err();
        assert_eq!(
            e,
            "targets.pg.password_env: environment variable \
             PROVSYNC_TEST_UNSET_PASSWORD_VARIABLE is not set"
        );
    }

    #[test]
    fn the_listing_shows_where_a_connection_points_and_no_secret_reference() {
        let sources = BTreeMap::from([(
            "ok".to_owned(),
            spec(
                json!({"type": "onekey", "url": "https://onekey.example/api",
                        "api_key_env": "PATH"}),
            ),
        )]);
        let c = Connections::configure(&sources, &BTreeMap::new(), None).unwrap();
        let v = c.listing();
        assert_eq!(v["sources"][0]["name"], "ok");
        assert_eq!(v["sources"][0]["type"], "onekey");
        assert_eq!(
            v["sources"][0]["settings"]["url"],
            "https://onekey.example/api"
        );
        assert!(!v.to_string().contains("PATH"), "{v}");
    }
}
