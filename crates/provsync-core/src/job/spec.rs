//! The job request: kind, mode, scope, source, target, mapping and options.
//! The same structure is read from a job file (`provsync run job.toml`) and from
//! the HTTP API.

use serde::{Deserialize, Serialize};

use crate::model::Scope;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Entities, then their relations.
    ProviderSync,
    /// Code lists into target picklists.
    CodesSync,
}

impl JobKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ProviderSync => "provider-sync",
            JobKind::CodesSync => "codes-sync",
        }
    }
}

/// Whether the source sends a complete snapshot or only changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A complete snapshot of the scope: what is absent is swept.
    #[default]
    Full,
    /// Changes since a watermark: nothing is swept.
    Delta,
}

/// A source or target: its `type` plus connector-specific settings, which the
/// connector validates with its own typed, `deny_unknown_fields` config. Written
/// either out in full (a table with `type`) or as the name of a connection the
/// service configuration holds (`source = "onekey-eu"`): such a reference has an
/// empty `kind` until the service puts the connection in its place.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    /// Connector type, e.g. `file`, `csv-facilities`, `sqlite`, `postgres`; empty
    /// for a reference not yet resolved.
    pub kind: String,
    /// The named connection of the service configuration this section came from
    /// (`None` for a section written out in full, as a job file does).
    pub connection: Option<String>,
    /// Connector settings.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl ConnectorSpec {
    /// A reference to the connection `name`, to be resolved by the service.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            kind: String::new(),
            connection: Some(name.into()),
            settings: serde_json::Map::new(),
        }
    }

    /// The connection name of a reference not yet resolved.
    pub fn unresolved(&self) -> Option<&str> {
        match &self.connection {
            Some(name) if self.kind.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// A section as written out: `type`, the connection it came from, the settings.
#[derive(Serialize, Deserialize)]
struct Section {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection: Option<String>,
    #[serde(flatten)]
    settings: serde_json::Map<String, serde_json::Value>,
}

impl Serialize for ConnectorSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(name) = self.unresolved() {
            return s.serialize_str(name);
        }
        Section {
            kind: self.kind.clone(),
            connection: self.connection.clone(),
            settings: self.settings.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConnectorSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ConnectorSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a connection's name or a table with `type` and its settings")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                if name.trim().is_empty() {
                    return Err(E::custom("a connection name must not be empty"));
                }
                Ok(ConnectorSpec::named(name))
            }

            // Delegated, so that a missing `type` or a bad key keeps serde's message.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let s = Section::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if s.kind.is_empty() && s.connection.is_some() {
                    return Err(serde::de::Error::custom(
                        "`connection` is not a setting: name a connection as a string",
                    ));
                }
                Ok(ConnectorSpec {
                    kind: s.kind,
                    connection: s.connection,
                    settings: s.settings,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A failure threshold: a count of records, or a share of the extracted ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// At most this many rejected or failed records.
    Count(u64),
    /// At most this share (0..=1) of the extracted records.
    Ratio(f64),
}

impl Threshold {
    /// Whether `errors` out of `extracted` crosses the threshold.
    pub fn exceeded(self, errors: u64, extracted: u64) -> bool {
        match self {
            Threshold::Count(n) => errors > n,
            Threshold::Ratio(r) => extracted > 0 && (errors as f64) > r * extracted as f64,
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Count(n) => s.serialize_u64(*n),
            Threshold::Ratio(r) => s.serialize_str(&format!("{}%", r * 100.0)),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Threshold::Count(n)),
            Raw::Text(t) => {
                let pct = t
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "expected a record count or a percentage like \"5%\", got {t:?}"
                        ))
                    })?;
                Ok(Threshold::Ratio(pct / 100.0))
            }
        }
    }
}

/// Tuning and safety options of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Above this many rejected or failed records the run ends `failed`.
    pub max_failed_records: Threshold,
    /// A full snapshot may disconnect at most this share (0..=1) of a scope's records.
    pub max_disconnect_share: f64,
    /// Lifts the guards against an empty scope and a mass disconnect.
    pub allow_mass_disconnect: bool,
    /// Records per page the source is asked for (when it lets us choose).
    pub page_size: usize,
    /// Records per target write.
    pub batch_size: usize,
    /// Pages loaded at once: overlaps target writes with ledger commits.
    pub load_workers: usize,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            max_failed_records: Threshold::Ratio(0.05),
            max_disconnect_share: 0.10,
            allow_mass_disconnect: false,
            page_size: 2_500,
            batch_size: 1_000,
            load_workers: 2,
        }
    }
}

/// A validated request to run a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Provider sync or codes sync.
    #[serde(default = "provider_sync")]
    pub kind: JobKind,
    /// Full snapshot or delta.
    #[serde(default)]
    pub mode: Mode,
    /// Partitions asked for (countries, designated bodies); empty means all the source has.
    #[serde(default)]
    pub scope: Vec<Scope>,
    /// Where the data comes from.
    pub source: ConnectorSpec,
    /// Where it goes.
    pub target: ConnectorSpec,
    /// Path of the mapping file; when absent, the target's default built into provsync
    /// (`mappings/sql-provider.toml` for SQL targets, `mappings/salesforce-lsc.toml`
    /// for Salesforce).
    #[serde(default)]
    pub mapping: Option<String>,
    /// Tuning and safety options.
    #[serde(default)]
    pub options: JobOptions,
    /// Re-runs only the records that this earlier run rejected or failed (a delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<super::JobId>,
    /// Where to POST the signed `job.accepted` and `job.finished` notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

fn provider_sync() -> JobKind {
    JobKind::ProviderSync
}

/// A job request that does not hold together; names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Dotted path of the field at fault.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl JobSpec {
    /// Checks what serde cannot; returns every problem found, not just the first.
    /// The source and target sections are the runtime's to check: it knows the
    /// connectors.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, message: String| {
            errs.push(SpecError {
                field: field.into(),
                message,
            })
        };
        let o = &self.options;
        if !(0.0..=1.0).contains(&o.max_disconnect_share) {
            bad(
                "options.max_disconnect_share",
                format!("must be between 0 and 1, got {}", o.max_disconnect_share),
            );
        }
        if o.page_size == 0 || o.page_size > 100_000 {
            bad(
                "options.page_size",
                format!("must be 1..=100000, got {}", o.page_size),
            );
        }
        if o.batch_size == 0 || o.batch_size > 10_000 {
            bad(
                "options.batch_size",
                format!("must be 1..=10000, got {}", o.batch_size),
            );
        }
        if o.load_workers == 0 || o.load_workers > 16 {
            bad(
                "options.load_workers",
                format!("must be 1..=16, got {}", o.load_workers),
            );
        }
        if self.replay_of.is_some() && self.mode != Mode::Delta {
            bad(
                "mode",
                "a replay covers part of a snapshot, so it must be a delta run".into(),
            );
        }
        for (i, s) in self.scope.iter().enumerate() {
            if s.0.trim().is_empty() {
                bad(&format!("scope[{i}]"), "must not be empty".into());
            }
        }
        if let Some(url) = &self.callback_url {
            if let Err(why) = check_callback_url(url) {
                bad("callback_url", why);
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Checks that a callback URL is an absolute `http(s)://host...` URL without
/// credentials (they would be stored with the job and shown in its status).
pub fn check_callback_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {url:?}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains('@') {
        return Err("the URL must not carry credentials (the payload is signed instead)".into());
    }
    if url.len() > 2048 {
        return Err(format!("longer than 2048 characters ({})", url.len()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL contains whitespace or control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_are_checked() {
        assert_eq!(
            check_callback_url("https://crm.example/hooks/provsync?x=1"),
            Ok(())
        );
        assert_eq!(check_callback_url("http://127.0.0.1:9000/cb"), Ok(()));
        for bad in [
            "ftp://x/",
            "https://",
            "https://u:p@h/",
            "crm/hook",
            "http://a b/",
        ] {
            assert!(check_callback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_file_parses_with_defaults() {
        let spec: JobSpec = toml::from_str(
            r#"
            scope = ["US"]
            [source]
            type = "file"
            path = "world.ndjson"
            [target]
            type = "sqlite"
            url = "sqlite://t.db"
            [options]
            max_failed_records = "2.5%"
            "#,
        )
        .unwrap();
        assert_eq!(spec.kind, JobKind::ProviderSync);
        assert_eq!(spec.options.max_failed_records, Threshold::Ratio(0.025));
        assert_eq!(spec.source.settings["path"], "world.ndjson");
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn unknown_option_is_refused_with_its_name() {
        let err = toml::from_str::<JobSpec>(
            "[source]\ntype='file'\n[target]\ntype='sqlite'\n[options]\nmax_fail=3\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_fail"), "{err}");
    }

    #[test]
    fn validate_reports_every_field_at_fault() {
        let mut spec: JobSpec =
            toml::from_str("scope=['']\n[source]\ntype='file'\n[target]\ntype='sqlite'\n").unwrap();
        spec.options.page_size = 0;
        let errs = spec.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["options.page_size", "scope[0]"]);
    }

    #[test]
    fn a_section_is_a_table_or_a_connection_name() {
        let spec: JobSpec = toml::from_str(
            "source = \"onekey-eu\"\n[target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n",
        )
        .unwrap();
        assert_eq!(spec.source.unresolved(), Some("onekey-eu"));
        assert_eq!(spec.target.unresolved(), None);
        assert_eq!(spec.target.kind, "sqlite");
        // Both forms come back as they were written.
        let again: JobSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
        let resolved = ConnectorSpec {
            connection: Some("crm".into()),
            ..spec.target.clone()
        };
        let v = serde_json::to_value(&resolved).unwrap();
        assert_eq!(v["connection"], "crm");
        assert_eq!(
            serde_json::from_value::<ConnectorSpec>(v).unwrap(),
            resolved
        );
    }

    #[test]
    fn a_section_without_type_is_refused_naming_it() {
        let e = toml::from_str::<JobSpec>("source = \"x\"\n[target]\nurl = \"u\"\n").unwrap_err();
        assert!(e.to_string().contains("missing field `type`"), "{e}");
        let e =
            toml::from_str::<JobSpec>("source = \"\"\n[target]\ntype = \"sqlite\"\n").unwrap_err();
        assert!(e.to_string().contains("must not be empty"), "{e}");
        let e = serde_json::from_value::<JobSpec>(serde_json::json!({
            "source": {"type": "", "connection": "x"}, "target": "y"
        }))
        .unwrap_err();
        assert!(e.to_string().contains("not a setting"), "{e}");
    }

    #[test]
    fn threshold_ratio_and_count() {
        assert!(Threshold::Count(2).exceeded(3, 100));
        assert!(!Threshold::Count(3).exceeded(3, 100));
        assert!(Threshold::Ratio(0.01).exceeded(2, 100));
        assert!(!Threshold::Ratio(0.01).exceeded(1, 100));
        assert!(toml::from_str::<JobOptions>("max_failed_records = '120%'").is_err());
    }
}
