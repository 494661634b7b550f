//! The `nucc` source: the NUCC Health Care Provider Taxonomy as a code list (one page).

use std::path::PathBuf;

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Record};
use provsync_core::reference::decompressed;
use provsync_core::reference::nucc::read_nucc;
use provsync_core::source::{BadRecord, Cursor, OpenRequest, Page, Source, SourceError};
use serde::Deserialize;

/// Settings of the `nucc` source.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NuccConfig {
    /// The NUCC taxonomy CSV file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Country the code list applies to.
    #[serde(default = "us")]
    #[schema(default = us)]
    pub scope: String,
}

fn us() -> String {
    "US".into()
}

/// Reads the NUCC taxonomy as `Code` records of list `nucc`.
pub struct NuccSource {
    config: NuccConfig,
}

impl NuccSource {
    /// A source over `config.path`.
    pub fn new(config: NuccConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Source for NuccSource {
    async fn open(&self, _req: &OpenRequest) -> Result<Cursor, SourceError> {
        if !self.config.path.is_file() {
            return Err(SourceError::Config(format!(
                "source.path {} is not a readable file",
                self.config.path.display()
            )));
        }
        Ok(Cursor("0".into()))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        if cursor.0 != "0" {
            return Err(SourceError::BadCursor(cursor.0.clone()));
        }
        let path = &self.config.path;
        let f = std::fs::File::open(path).map_err(|e| {
            SourceError::Unavailable(format!("cannot open {}: {e}", path.display()))
        })?;
        let mut page = Page {
            records: Vec::new(),
            bad: Vec::new(),
            next: None,
            snapshot: None,
        };
        for item in read_nucc(
            std::io::BufReader::new(decompressed(path, f)),
            &self.config.scope,
        ) {
            match item {
                Ok(code) => page.records.push(Record::Code(code)),
                Err(e) => page.bad.push(BadRecord {
                    kind: Some(EntityKind::Code),
                    source_id: None,
                    position: format!("{}:{}", path.display(), e.line),
                    reason: e.reason,
                }),
            }
        }
        Ok(page)
    }
}
