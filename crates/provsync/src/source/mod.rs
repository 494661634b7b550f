//! Sources: where provider master data comes from. Each connector is a module with
//! its typed config; `open` picks one by the job's `source.type`.

pub mod facilities;
pub mod file;
pub mod gmc;
pub mod nucc;
pub mod onekey;
pub mod replay;

use std::sync::Arc;

use provsync_core::job::ConnectorSpec;
use provsync_core::model::EntityKind;
use provsync_core::source::{Source, SourceError};

fn settings<T: serde::de::DeserializeOwned>(spec: &ConnectorSpec) -> Result<T, SourceError> {
    serde_json::from_value(serde_json::Value::Object(spec.settings.clone()))
        .map_err(|e| SourceError::Config(format!("source ({}): {e}", spec.kind)))
}

/// Settings of each source type that name files (dotted paths).
fn file_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" | "csv-facilities" | "nucc" => &["path"],
        "gmc" => &["secret_file"],
        "onekey" => &["client_secret_file", "api_key_file"],
        _ => &[],
    }
}

/// Makes the relative files a source's settings name start at `base`.
pub fn resolve_paths(spec: &mut ConnectorSpec, base: &std::path::Path) {
    crate::paths::rewrite_file_settings(&mut spec.settings, file_settings(&spec.kind), base);
}

/// Builds the source a job names.
pub fn open(spec: &ConnectorSpec) -> Result<Arc<dyn Source>, SourceError> {
    match spec.kind.as_str() {
        "file" => Ok(Arc::new(file::FileSource::new(settings(spec)?))),
        "csv-facilities" => Ok(Arc::new(facilities::FacilitiesSource::new(settings(spec)?))),
        "nucc" => Ok(Arc::new(nucc::NuccSource::new(settings(spec)?))),
        "onekey" => Ok(Arc::new(onekey::OneKeySource::new(settings(spec)?)?)),
        "gmc" => Ok(Arc::new(gmc::GmcSource::new(settings(spec)?))),
        other => Err(SourceError::Config(format!(
            "source.type {other:?} is not one of: file, csv-facilities, nucc, onekey, gmc"
        ))),
    }
}

/// Kinds a source type builds from another record rather than reads as records of
/// their own (GMC: a doctor's connection and designated body come with the doctor).
/// A run's headline counts the other kinds only, so each source record counts once;
/// per-kind counts keep every kind.
pub fn derived_kinds(source_type: &str) -> &'static [EntityKind] {
    match source_type {
        "gmc" => &gmc::DERIVED_KINDS,
        _ => &[],
    }
}
