//! The real reference rows the generator draws from, loaded once per process.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use provsync_core::reference::facilities::read_facilities;
use provsync_core::reference::nucc::read_nucc_entries;
use provsync_core::reference::{csv_stem, decompressed, is_csv_file};

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

/// One file of the repository's `data/` folder: its path there and its bytes.
macro_rules! embedded {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/", $path)),
        )
    };
}

/// The reference files compiled into the binary (the repository's `data/`, gzip), so
/// a machine with nothing beside the binary can generate worlds. Name order, as a
/// folder is read.
const EMBEDDED_FACILITIES: [(&str, &[u8]); 8] = [
    embedded!("us-facilities/hospitals.csv.gz"),
    embedded!("us-facilities/ihs_centers.csv.gz"),
    embedded!("us-facilities/ihs_facilities.csv.gz"),
    embedded!("us-facilities/longterm.csv.gz"),
    embedded!("us-facilities/primary_care_facilities.csv.gz"),
    embedded!("us-facilities/primary_care_facilities_children.csv.gz"),
    embedded!("us-facilities/urgent_care_facilities.csv.gz"),
    embedded!("us-facilities/va_facilities.csv.gz"),
];

/// The NUCC taxonomy compiled into the binary.
const EMBEDDED_NUCC: (&str, &[u8]) = embedded!("nucc/nucc_taxonomy_231.csv.gz");

/// A reference file to read: its name (for the id prefix and errors) and its content.
type Input<'a> = (PathBuf, Box<dyn Read + 'a>);

/// The `.csv` and `.csv.gz` files of a folder, sorted by name so loading is
/// deterministic.
fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if is_csv_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Opens a file of a data folder, decompressing `.gz`.
fn open(path: &Path) -> Result<Input<'static>, LoadError> {
    let file = File::open(path).map_err(io_err(path))?;
    Ok((path.to_owned(), decompressed(path, file)))
}

impl ReferenceData {
    /// The reference data shipped inside provsync (US facilities and the NUCC
    /// taxonomy from the repository's `data/`), read once per process.
    pub fn embedded() -> Arc<Self> {
        static DATA: OnceLock<Arc<ReferenceData>> = OnceLock::new();
        DATA.get_or_init(|| {
            let input = |(path, bytes): (&str, &'static [u8])| -> Input<'static> {
                let path = PathBuf::from(path);
                let reader = decompressed(&path, bytes);
                (path, reader)
            };
            let facilities = EMBEDDED_FACILITIES.into_iter().map(input).collect();
            // The shipped files are checked by this crate's tests; a failure here is a
            // broken build, not a user's error.
            let data = Self::read(facilities, input(EMBEDDED_NUCC))
                .unwrap_or_else(|e| panic!("the reference data built into provsync: {e}"));
            Arc::new(data)
        })
        .clone()
    }

    /// Loads `us-facilities/*.csv[.gz]` and the newest `nucc/*.csv[.gz]` from a data
    /// folder laid out like the repository's `data/`.
    pub fn load(data_dir: &Path) -> Result<Self, LoadError> {
        let dir = data_dir.join("us-facilities");
        let facilities = csv_files(&dir)?;
        if facilities.is_empty() {
            return Err(LoadError::Missing(format!(
                "no facility files (.csv or .csv.gz) in {}",
                dir.display()
            )));
        }
        let facilities = facilities
            .iter()
            .map(|p| open(p))
            .collect::<Result<Vec<_>, _>>()?;
        let nucc_dir = data_dir.join("nucc");
        let nucc = csv_files(&nucc_dir)?
            .pop()
            .ok_or_else(|| LoadError::Missing(format!("no file in {}", nucc_dir.display())))?;
        Self::read(facilities, open(&nucc)?)
    }

    /// Reads facility files and a NUCC taxonomy with the core readers.
    ///
    /// Facilities whose NPI already appeared are dropped (the files repeat some), so
    /// every kept real NPI is unique; an NPI starting with `2` loses its NPI because
    /// generated NPIs live in that range (the shipped files have none). Specialties are
    /// NUCC codes of Section `Individual` except the organisation-like `Group` grouping.
    fn read(facilities: Vec<Input<'_>>, nucc: Input<'_>) -> Result<Self, LoadError> {
        let mut data = Self::default();
        let mut npis = HashSet::new();
        for (path, input) in facilities {
            let stem = csv_stem(&path);
            for row in read_facilities(BufReader::new(input), &stem, "US") {
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

        let (nucc_path, nucc) = nucc;
        let mut others = Vec::new();
        let mut read_any = false;
        for entry in read_nucc_entries(BufReader::new(nucc), "US") {
            read_any = true;
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
        if !read_any || data.specialties.is_empty() {
            return Err(LoadError::Missing(format!(
                "{}: no individual specialty could be read",
                nucc_path.display()
            )));
        }
        data.physician_specialties = data.specialties.len();
        data.specialties.extend(others);
        Ok(data)
    }
}
