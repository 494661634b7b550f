//! Sources: where provider master data comes from. Each connector is a module with
//! its typed config; `open` picks one by the job's `source.type`.

#[cfg(test)]
mod conformance;
pub mod facilities;
pub mod file;
pub mod gmc;
pub mod nucc;
pub mod onekey;
pub mod replay;

use std::sync::Arc;

use provsync_core::job::{ConnectorSpec, SpecError};
use provsync_core::model::EntityKind;
use provsync_core::source::{Source, SourceError};

/// A `[source]` section parsed into its connector's settings.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `file`: NDJSON of canonical records.
    File(file::FileConfig),
    /// `csv-facilities`: US facility CSV files.
    CsvFacilities(facilities::FacilitiesConfig),
    /// `nucc`: the NUCC taxonomy code list.
    Nucc(nucc::NuccConfig),
    /// `onekey`: the OneKey MDM API.
    Onekey(onekey::config::OneKeySettings),
    /// `gmc`: the GMC web service.
    Gmc(gmc::GmcConfig),
}

/// The source types, as `type` names them.
pub const TYPES: [&str; 5] = ["file", "csv-facilities", "nucc", "onekey", "gmc"];

impl SourceConfig {
    /// Parses a section by its `type`; unknown keys and bad values are refused with
    /// the key's path (`source.paht`).
    pub fn parse(spec: &ConnectorSpec) -> Result<Self, SpecError> {
        fn p<T: serde::de::DeserializeOwned>(spec: &ConnectorSpec) -> Result<T, SpecError> {
            crate::connector::parse("source", spec)
        }
        Ok(match spec.kind.as_str() {
            "file" => Self::File(p(spec)?),
            "csv-facilities" => Self::CsvFacilities(p(spec)?),
            "nucc" => Self::Nucc(p(spec)?),
            "onekey" => {
                let c: onekey::config::OneKeySettings = p(spec)?;
                c.check()?;
                Self::Onekey(c)
            }
            "gmc" => Self::Gmc(p(spec)?),
            other => return Err(crate::connector::unknown_type("source", other, &TYPES)),
        })
    }

    /// Settings that name network endpoints (the hosts a source reaches).
    pub(crate) fn url_settings(kind: &str) -> &'static [&'static str] {
        match kind {
            "onekey" | "gmc" => &["url"],
            _ => &[],
        }
    }

    /// Settings that name files (dotted paths), which start at the job file's folder.
    pub(crate) fn file_settings(kind: &str) -> &'static [&'static str] {
        match kind {
            "file" | "csv-facilities" | "nucc" => &["path"],
            "gmc" => &["secret_file"],
            "onekey" => &["client_secret_file", "api_key_file"],
            _ => &[],
        }
    }
}

impl utoipa::PartialSchema for SourceConfig {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::connector::tagged_schema(vec![
            ("file", file::FileConfig::schema()),
            ("csv-facilities", facilities::FacilitiesConfig::schema()),
            ("nucc", nucc::NuccConfig::schema()),
            ("onekey", onekey::config::OneKeySettings::schema()),
            ("gmc", gmc::GmcConfig::schema()),
        ])
    }
}

impl utoipa::ToSchema for SourceConfig {
    fn name() -> std::borrow::Cow<'static, str> {
        "Source".into()
    }

    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        file::FileConfig::schemas(out);
        facilities::FacilitiesConfig::schemas(out);
        nucc::NuccConfig::schemas(out);
        onekey::config::OneKeySettings::schemas(out);
        gmc::GmcConfig::schemas(out);
    }
}

/// Makes the relative files a source's settings name start at `base`.
pub fn resolve_paths(spec: &mut ConnectorSpec, base: &std::path::Path) {
    crate::paths::rewrite_file_settings(
        &mut spec.settings,
        SourceConfig::file_settings(&spec.kind),
        base,
    );
}

/// Builds the source a job names.
pub fn open(spec: &ConnectorSpec) -> Result<Arc<dyn Source>, SourceError> {
    let config = SourceConfig::parse(spec).map_err(|e| SourceError::Config(e.to_string()))?;
    Ok(match config {
        SourceConfig::File(c) => Arc::new(file::FileSource::new(c)),
        SourceConfig::CsvFacilities(c) => Arc::new(facilities::FacilitiesSource::new(c)),
        SourceConfig::Nucc(c) => Arc::new(nucc::NuccSource::new(c)),
        SourceConfig::Onekey(c) => Arc::new(onekey::OneKeySource::new(c)?),
        SourceConfig::Gmc(c) => Arc::new(gmc::GmcSource::new(c)),
    })
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
