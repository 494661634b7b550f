//! The real reference rows the generator draws from, loaded once per process.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use provsync_core::reference::facilities::read_facilities;
use provsync_core::reference::nucc::read_nucc_entries;

/// The NUCC grouping whose codes are physician specialties (the "Dr" pool).
const PHYSICIAN_GROUPING: &str = "Allopathic & Osteopathic Physicians";

/// One real facility, reduced to what generated workplaces copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityRow {
    /// Facility name.
    pub name: String,
    /// Street line.
    pub address: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State (two letters).
    pub state: Option<String>,
    /// Zip code, `12345` or `12345-6789`.
    pub postal_code: Option<String>,
    /// Phone, ten digits.
    pub phone: Option<String>,
    /// CMS provider type code or IHS/VA type.
    pub type_code: Option<String>,
    /// Real NPI, unique among the rows (repeats in the files are dropped).
    pub npi: Option<String>,
    /// CMS certification number.
    pub ccn: Option<String>,
}

/// Reference rows for the generator: real facilities and NUCC individual specialties.
///
/// Its size is bounded by the reference files (a few MB), never by the world's size.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    /// Facilities of every file of `us-facilities/`, files in name order.
    pub facilities: Vec<FacilityRow>,
    /// NUCC specialties `(code, label)` of Section `Individual`, physicians first.
    pub specialties: Vec<(String, String)>,
    /// How many leading entries of `specialties` are physician specialties.
    pub physician_specialties: usize,
    /// Rows of the reference files that could not be read and were skipped.
    pub skipped_rows: u64,
}

/// Why reference data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A required file is missing from the data folder.
    #[error("{0}")]
    Missing(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The `.csv` files of a folder, sorted by name so loading is deterministic.
fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl ReferenceData {
    /// Loads `us-facilities/*.csv` and the newest `nucc/*.csv` from a data folder (the
    /// repository's `shared/data`) with the core readers.
    ///
    /// Facilities whose NPI already appeared are dropped (the files repeat some), so
    /// every kept real NPI is unique; an NPI starting with `2` loses its NPI because
    /// generated NPIs live in that range (the shipped files have none). Specialties are
    /// NUCC codes of Section `Individual` except the organisation-like `Group` grouping.
    pub fn load(data_dir: &Path) -> Result<Self, LoadError> {
        let mut data = Self::default();
        let facilities = csv_files(&data_dir.join("us-facilities"))?;
        if facilities.is_empty() {
            return Err(LoadError::Missing(format!(
                "no facility files in {}",
                data_dir.join("us-facilities").display()
            )));
        }
        let mut npis = HashSet::new();
        for path in &facilities {
            let file = File::open(path).map_err(io_err(path))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase())
                .unwrap_or_default();
            for row in read_facilities(BufReader::new(file), &stem, "US") {
                let Ok(w) = row else {
                    data.skipped_rows += 1;
                    continue;
                };
                let id = |system: &str| {
                    w.identifiers
                        .iter()
                        .find(|i| i.system == system)
                        .map(|i| i.value.clone())
                };
                let npi = id("NPI").filter(|n| !n.starts_with('2'));
                if let Some(npi) = &npi {
                    if !npis.insert(npi.clone()) {
                        continue;
                    }
                }
                let ccn = id("CCN");
                let mut lines = w.address.lines.into_iter();
                data.facilities.push(FacilityRow {
                    name: w.name,
                    address: lines.next(),
                    city: w.address.city,
                    state: w.address.region,
                    postal_code: w.address.postal_code,
                    phone: w.phone.filter(|p| p.len() == 10),
                    type_code: w.type_code,
                    npi,
                    ccn,
                });
            }
        }

        let nucc_dir = data_dir.join("nucc");
        let nucc = csv_files(&nucc_dir)?
            .pop()
            .ok_or_else(|| LoadError::Missing(format!("no file in {}", nucc_dir.display())))?;
        let file = File::open(&nucc).map_err(io_err(&nucc))?;
        let mut others = Vec::new();
        for entry in read_nucc_entries(BufReader::new(file), "US") {
            let Ok(e) = entry else {
                data.skipped_rows += 1;
                continue;
            };
            if e.section != "Individual" || e.grouping == "Group" {
                continue;
            }
            let label = e.code.labels.get("en").cloned().unwrap_or_default();
            if e.grouping == PHYSICIAN_GROUPING {
                data.specialties.push((e.code.code, label));
            } else {
                others.push((e.code.code, label));
            }
        }
        data.physician_specialties = data.specialties.len();
        data.specialties.extend(others);
        Ok(data)
    }
}
