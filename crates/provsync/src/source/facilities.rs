//! The `csv-facilities` source: the real US facility files (CMS and the older
//! IHS/VA layout) as workplaces. One page per file; a facility that an earlier row
//! or file already gave (the files repeat NPIs) is reported, not loaded twice, so
//! a rerun does not flip between two versions of one record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Record};
use provsync_core::reference::facilities::read_facilities;
use provsync_core::reference::{csv_stem, decompressed, is_csv_file};
use provsync_core::source::{BadRecord, Cursor, OpenRequest, Page, Source, SourceError};
use serde::Deserialize;

/// Settings of the `csv-facilities` source.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilitiesConfig {
    /// A facility CSV file, or a folder whose `*.csv` files are read in name order.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Scope of the records.
    #[serde(default = "us")]
    #[schema(default = us)]
    pub scope: String,
}

fn us() -> String {
    "US".into()
}

/// Reads US facility CSV files as canonical workplaces.
pub struct FacilitiesSource {
    config: FacilitiesConfig,
}

impl FacilitiesSource {
    /// A source over `config.path`.
    pub fn new(config: FacilitiesConfig) -> Self {
        Self { config }
    }

    fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        let p = &self.config.path;
        if p.is_file() {
            return Ok(vec![p.clone()]);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| SourceError::Config(format!("source.path {}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| is_csv_file(f))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(SourceError::Config(format!(
                "source.path {} holds no .csv or .csv.gz file",
                p.display()
            )));
        }
        Ok(files)
    }

    /// Reads file `index` as one page; ids already given by earlier files or rows
    /// become bad records naming where they first appeared.
    fn read_page(&self, index: usize) -> Result<Page, SourceError> {
        let files = self.files()?;
        let file = files
            .get(index)
            .ok_or_else(|| SourceError::BadCursor(index.to_string()))?;
        let mut first_seen: HashMap<String, String> = HashMap::new();
        for earlier in &files[..index] {
            for (line, item) in self.rows(earlier)?.enumerate() {
                if let Ok(w) = item {
                    first_seen
                        .entry(w.meta.source_id.0)
                        .or_insert_with(|| format!("{}:{}", earlier.display(), line + 2));
                }
            }
        }
        let mut page = Page {
            records: Vec::new(),
            bad: Vec::new(),
            next: (index + 1 < files.len()).then(|| Cursor((index + 1).to_string())),
            snapshot: None,
        };
        for item in self.rows(file)? {
            match item {
                Ok(w) => {
                    let at = format!(
                        "{}:{}",
                        file.display(),
                        page.records.len() + page.bad.len() + 2
                    );
                    match first_seen.get(&w.meta.source_id.0) {
                        Some(first) => page.bad.push(BadRecord {
                            kind: Some(EntityKind::Workplace),
                            source_id: Some(w.meta.source_id.0.clone()),
                            position: at,
                            reason: format!("duplicate facility; first given at {first}"),
                        }),
                        None => {
                            first_seen.insert(w.meta.source_id.0.clone(), at);
                            page.records.push(Record::Workplace(w));
                        }
                    }
                }
                Err(e) => page.bad.push(BadRecord {
                    kind: Some(EntityKind::Workplace),
                    source_id: None,
                    position: format!("{}:{}", file.display(), e.line),
                    reason: e.reason,
                }),
            }
        }
        Ok(page)
    }

    fn rows(
        &self,
        file: &Path,
    ) -> Result<
        impl Iterator<
            Item = Result<provsync_core::model::Workplace, provsync_core::reference::RowError>,
        >,
        SourceError,
    > {
        let f = std::fs::File::open(file).map_err(|e| {
            SourceError::Unavailable(format!("cannot open {}: {e}", file.display()))
        })?;
        Ok(read_facilities(
            std::io::BufReader::new(decompressed(file, f)),
            &csv_stem(file),
            &self.config.scope,
        ))
    }
}

#[async_trait]
impl Source for FacilitiesSource {
    async fn open(&self, _req: &OpenRequest) -> Result<Cursor, SourceError> {
        self.files()?;
        Ok(Cursor("0".into()))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let index: usize = cursor
            .0
            .parse()
            .map_err(|_| SourceError::BadCursor(cursor.0.clone()))?;
        let this = Self::new(self.config.clone());
        tokio::task::spawn_blocking(move || this.read_page(index))
            .await
            .map_err(|e| SourceError::Unavailable(format!("reader task: {e}")))?
    }
}
