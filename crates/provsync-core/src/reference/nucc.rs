//! Reader of the NUCC Health Care Provider Taxonomy CSV (`nucc_taxonomy_*.csv`) as
//! canonical codes of the list `nucc`.
//!
//! Columns (looked up by name): `Code,Grouping,Classification,Specialization,
//! Definition,Notes,Display Name,Section`. The published file is not all UTF-8 (it has a
//! Windows-1252 `§`); such fields are decoded as Windows-1252 rather than rejected.

use std::collections::BTreeMap;
use std::io::Read;

use super::{column, CsvRows, RowError};
use crate::model::{Code, Meta, Scope, SourceId};

/// The code list name NUCC codes are read into.
pub const NUCC_LIST: &str = "nucc";

/// One taxonomy entry: the canonical code plus the NUCC columns a code has no field for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NuccEntry {
    /// The canonical code (`list` `nucc`, label `en`).
    pub code: Code,
    /// NUCC grouping, e.g. `Allopathic & Osteopathic Physicians`.
    pub grouping: String,
    /// NUCC classification, e.g. `Internal Medicine`.
    pub classification: String,
    /// NUCC specialization, empty for a classification-level code.
    pub specialization: String,
    /// `Individual` or `Non-Individual`: who the code describes.
    pub section: String,
}

#[derive(Debug, Clone, Copy)]
struct Columns {
    code: usize,
    grouping: usize,
    classification: usize,
    specialization: usize,
    display_name: usize,
    section: usize,
}

/// Streams the entries of a NUCC taxonomy file; see [`read_nucc_entries`].
pub struct NuccReader<R: Read> {
    rows: CsvRows<R>,
    columns: Option<Columns>,
    scope: Scope,
    failed: bool,
}

/// Reads a NUCC taxonomy CSV as entries with their grouping and section, streaming.
///
/// A row without a code or without any label is an error item naming its line; a bad
/// header is one error item for line 1, then the end.
pub fn read_nucc_entries<R: Read>(input: R, scope: &str) -> NuccReader<R> {
    NuccReader {
        rows: CsvRows::new(input),
        columns: None,
        scope: Scope(scope.to_owned()),
        failed: false,
    }
}

/// Reads a NUCC taxonomy CSV as canonical codes: list `nucc`, source id `nucc.<Code>`,
/// the caller's scope, label `en` = Display Name (or Classification, Specialization).
pub fn read_nucc<R: Read>(input: R, scope: &str) -> impl Iterator<Item = Result<Code, RowError>> {
    read_nucc_entries(input, scope).map(|r| r.map(|e| e.code))
}

impl<R: Read> NuccReader<R> {
    fn columns(&mut self) -> Result<Columns, RowError> {
        if let Some(c) = self.columns {
            return Ok(c);
        }
        let h = self.rows.header()?;
        let c = Columns {
            code: column(h, "code")?,
            grouping: column(h, "grouping")?,
            classification: column(h, "classification")?,
            specialization: column(h, "specialization")?,
            display_name: column(h, "display name")?,
            section: column(h, "section")?,
        };
        self.columns = Some(c);
        Ok(c)
    }

    fn entry(&self, c: Columns, line: u64, mut f: Vec<String>) -> Result<NuccEntry, RowError> {
        let err = |reason: &str| RowError {
            line,
            reason: reason.to_owned(),
        };
        let code = std::mem::take(&mut f[c.code]);
        if code.is_empty() {
            return Err(err("missing code"));
        }
        let classification = std::mem::take(&mut f[c.classification]);
        let specialization = std::mem::take(&mut f[c.specialization]);
        let label = match (
            f[c.display_name].as_str(),
            classification.as_str(),
            specialization.as_str(),
        ) {
            ("", "", _) => return Err(err("missing display name and classification")),
            ("", cls, "") => cls.to_owned(),
            ("", cls, spec) => format!("{cls}, {spec}"),
            (name, _, _) => name.to_owned(),
        };
        Ok(NuccEntry {
            code: Code {
                meta: Meta {
                    source_id: SourceId(format!("{NUCC_LIST}.{code}")),
                    scope: self.scope.clone(),
                    modified_at: None,
                },
                list: NUCC_LIST.into(),
                code,
                labels: BTreeMap::from([("en".to_owned(), label)]),
                active: true,
            },
            grouping: std::mem::take(&mut f[c.grouping]),
            classification,
            specialization,
            section: std::mem::take(&mut f[c.section]),
        })
    }
}

impl<R: Read> Iterator for NuccReader<R> {
    type Item = Result<NuccEntry, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let columns = match self.columns() {
            Ok(c) => c,
            Err(e) => {
                // Without the header's columns no row can be read: one error, the end.
                self.failed = true;
                self.rows.finish();
                return Some(Err(e));
            }
        };
        let (line, fields) = match self.rows.next_row()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        Some(self.entry(columns, line, fields))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::reference::{data_dir, decompressed};

    const SAMPLE: &str = "Code,Grouping,Classification,Specialization,Definition,Notes,Display Name,Section
207RC0000X,Allopathic & Osteopathic Physicians,Internal Medicine,Cardiovascular Disease,\"A definition, with a comma.\",[7/1/2003: new],Cardiovascular Disease Physician,Individual
261QM1300X,Ambulatory Health Care Facilities,Clinic/Center,Multi-Specialty,Def,,,Non-Individual
,Group,Single Specialty,,Def,,Single Specialty Group,Individual
207X00000X,Allopathic & Osteopathic Physicians,Orthopaedic Surgery,,Def,,
";

    #[test]
    fn rows_become_nucc_codes_with_labels() {
        let items: Vec<_> = read_nucc_entries(SAMPLE.as_bytes(), "US").collect();
        assert_eq!(items.len(), 4);
        let e = items[0].as_ref().unwrap();
        assert_eq!(e.code.meta.source_id.as_str(), "nucc.207RC0000X");
        assert_eq!(e.code.meta.scope.as_str(), "US");
        assert_eq!(e.code.list, "nucc");
        assert_eq!(e.code.code, "207RC0000X");
        assert_eq!(e.code.labels["en"], "Cardiovascular Disease Physician");
        assert!(e.code.active);
        assert_eq!(e.section, "Individual");
        assert_eq!(e.grouping, "Allopathic & Osteopathic Physicians");
        // No display name: classification and specialization.
        let e = items[1].as_ref().unwrap();
        assert_eq!(e.code.labels["en"], "Clinic/Center, Multi-Specialty");
        assert_eq!(e.section, "Non-Individual");
        let missing = items[2].as_ref().unwrap_err();
        assert_eq!((missing.line, missing.reason.as_str()), (4, "missing code"));
        let short = items[3].as_ref().unwrap_err();
        assert_eq!(short.line, 5);
        assert_eq!(short.reason, "expected 8 columns, found 7");
    }

    #[test]
    fn a_header_without_the_nucc_columns_is_one_error() {
        let mut it = read_nucc("Code,Name\nA,B\n".as_bytes(), "US");
        let e = it.next().unwrap().unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("grouping"), "{e}");
        assert!(it.next().is_none());
    }

    #[test]
    fn real_taxonomy_has_874_codes() {
        let path = data_dir().join("nucc/nucc_taxonomy_231.csv.gz");
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = decompressed(&path, file);
        let mut codes = HashSet::new();
        let mut individual = 0;
        for entry in read_nucc_entries(std::io::BufReader::new(file), "US") {
            let e = entry.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.code.code.len(), 10, "{}", e.code.code);
            assert!(!e.code.labels["en"].is_empty());
            if e.section == "Individual" {
                individual += 1;
            } else {
                assert_eq!(e.section, "Non-Individual");
            }
            assert!(codes.insert(e.code.code));
        }
        assert_eq!(codes.len(), 874);
        assert_eq!(individual, 689);
        assert!(codes.contains("207RC0000X"));
    }
}
