//! Reader of the real US facility files (`us-facilities/*.csv`) as canonical workplaces.
//!
//! Two column layouts exist and are told apart by the header:
//! - CMS (`hospitals.csv`, `longterm.csv`, `primary_care_facilities*.csv`,
//!   `urgent_care_facilities.csv`): `provider_num,npi,name,address,city,state,zip,...,
//!   phone,provider_type_code,...`;
//! - legacy (`ihs_centers.csv`, `ihs_facilities.csv` with a leading unnamed index
//!   column, and `va_facilities.csv`): `id,name,address,city,state,zip,...,phone,type,...`.
//!
//! Columns are looked up by name, so column order and extra columns do not matter.
//!
//! Some NPIs repeat within a file (the real data has them, e.g. one organisation NPI
//! for several certified sites), and so do VA station ids. The reader yields such rows
//! as they are, with the same source id; deciding what a duplicate means (report,
//! skip, merge) is the caller's job.

use std::io::Read;

use super::{column, non_empty, npi_is_valid, CsvRows, RowError};
use crate::model::{Address, Identifier, Meta, Scope, SourceId, Status, Workplace};

/// The column layout of a facility file, detected from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacilityLayout {
    /// CMS Provider of Services layout, with `provider_num` and `npi`.
    Cms,
    /// Older IHS/VA layout, with `id` and `type` and no NPI.
    Legacy,
}

impl FacilityLayout {
    /// Detects the layout from lower-cased header names; `None` if neither fits.
    pub fn detect(header: &[String]) -> Option<Self> {
        let has = |name: &str| header.iter().any(|h| h == name);
        if has("npi") && has("provider_num") {
            Some(Self::Cms)
        } else if has("id") && has("name") {
            Some(Self::Legacy)
        } else {
            None
        }
    }
}

/// Column positions of the fields the reader uses.
#[derive(Debug, Clone, Copy)]
struct Columns {
    layout: FacilityLayout,
    /// `provider_num` (CMS) or `id` (legacy).
    id: usize,
    npi: Option<usize>,
    name: usize,
    address: usize,
    city: usize,
    state: usize,
    zip: usize,
    phone: usize,
    type_code: usize,
}

impl Columns {
    fn from_header(header: &[String]) -> Result<Self, RowError> {
        let layout = FacilityLayout::detect(header).ok_or_else(|| RowError {
            line: 1,
            reason:
                "unrecognised facility header: expected `provider_num,npi,...` or `id,name,...`"
                    .into(),
        })?;
        let (id, npi, type_code) = match layout {
            FacilityLayout::Cms => (
                column(header, "provider_num")?,
                Some(column(header, "npi")?),
                column(header, "provider_type_code")?,
            ),
            FacilityLayout::Legacy => (column(header, "id")?, None, column(header, "type")?),
        };
        Ok(Self {
            layout,
            id,
            npi,
            name: column(header, "name")?,
            address: column(header, "address")?,
            city: column(header, "city")?,
            state: column(header, "state")?,
            zip: column(header, "zip")?,
            phone: column(header, "phone")?,
            type_code,
        })
    }
}

/// Streams the workplaces of one facility file; see [`read_facilities`].
pub struct FacilityReader<R: Read> {
    rows: CsvRows<R>,
    columns: Option<Columns>,
    prefix: String,
    scope: Scope,
    /// Set after a bad header: every row is unreadable, so iteration has ended.
    failed: bool,
}

/// Reads a facility CSV as workplaces, one `Result` per row, streaming.
///
/// The source id is `NPI-<npi>` when the row has an NPI, else `<prefix>-<id>` (the
/// caller passes the file kind, e.g. `VA` or the file stem). Identifiers: `NPI` and
/// `CCN` (the CMS certification number, `provider_num`). A row with no name, a wrong
/// column count, an NPI failing its check digit, or no id at all is an error item with
/// its line; a bad header is one error item for line 1, then the end.
pub fn read_facilities<R: Read>(input: R, prefix: &str, scope: &str) -> FacilityReader<R> {
    FacilityReader {
        rows: CsvRows::new(input),
        columns: None,
        prefix: prefix.to_owned(),
        scope: Scope(scope.to_owned()),
        failed: false,
    }
}

impl<R: Read> FacilityReader<R> {
    /// The layout detected from the header (reads the header if not read yet).
    pub fn layout(&mut self) -> Result<FacilityLayout, RowError> {
        self.columns().map(|c| c.layout)
    }

    fn columns(&mut self) -> Result<Columns, RowError> {
        if let Some(c) = self.columns {
            return Ok(c);
        }
        let c = Columns::from_header(self.rows.header()?)?;
        self.columns = Some(c);
        Ok(c)
    }

    fn workplace(&self, c: Columns, line: u64, f: &[String]) -> Result<Workplace, RowError> {
        let err = |reason: String| RowError { line, reason };
        let name = &f[c.name];
        if name.is_empty() {
            return Err(err("missing name".into()));
        }
        let mut identifiers = Vec::new();
        let npi = c.npi.map(|i| f[i].as_str()).filter(|s| !s.is_empty());
        if let Some(npi) = npi {
            if !npi_is_valid(npi) {
                return Err(err(format!("invalid NPI `{npi}` (check digit)")));
            }
            identifiers.push(Identifier {
                system: "NPI".into(),
                value: npi.to_owned(),
            });
        }
        let id = &f[c.id];
        if c.layout == FacilityLayout::Cms && !id.is_empty() {
            identifiers.push(Identifier {
                system: "CCN".into(),
                value: id.clone(),
            });
        }
        let source_id = match (npi, id.is_empty()) {
            (Some(npi), _) => format!("NPI-{npi}"),
            (None, false) => format!("{}-{id}", self.prefix),
            (None, true) => return Err(err("missing npi and id".into())),
        };
        Ok(Workplace {
            meta: Meta {
                source_id: SourceId(source_id),
                scope: self.scope.clone(),
                modified_at: None,
            },
            name: name.clone(),
            type_code: non_empty(&f[c.type_code]),
            parent_id: None,
            address: Address {
                lines: non_empty(&f[c.address]).into_iter().collect(),
                city: non_empty(&f[c.city]),
                region: non_empty(&f[c.state]),
                postal_code: postal_code(&f[c.zip]),
                country: Some("US".into()),
            },
            phone: phone(&f[c.phone]),
            identifiers,
            status: Status::Active,
        })
    }
}

impl<R: Read> Iterator for FacilityReader<R> {
    type Item = Result<Workplace, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let columns = match self.columns() {
            Ok(c) => c,
            Err(e) => {
                // A bad header makes every row unreadable: one error, then the end.
                self.failed = true;
                self.rows.finish();
                return Some(Err(e));
            }
        };
        let (line, fields) = match self.rows.next_row()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        Some(self.workplace(columns, line, &fields))
    }
}

/// Normalises a US zip: `12345`, `12345-6789` for nine digits, leading zeros restored
/// for 3-4 digit values (a spreadsheet stored them as numbers), `None` when no digits.
pub fn postal_code(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if !raw.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(raw.to_owned());
    }
    Some(match raw.len() {
        9 => format!("{}-{}", &raw[..5], &raw[5..]),
        3 | 4 => format!("{raw:0>5}"),
        _ => raw.to_owned(),
    })
}

/// Normalises a phone to its digits, keeping only the first number of the field
/// (`"603-624-4366 Or 603-624-4366"`, `"... Ext 16"`) and dropping a leading US `1`
/// of an 11-digit number; `None` when there are no digits (`N/A`, empty).
pub fn phone(raw: &str) -> Option<String> {
    let first = raw
        .split(|c: char| c.is_alphabetic() || matches!(c, ',' | ';' | '/'))
        .next()
        .unwrap_or_default();
    let digits: String = first.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        0 => None,
        11 if digits.starts_with('1') => Some(digits[1..].to_owned()),
        _ => Some(digits),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::reference::{data_dir, decompressed, npi_is_valid};

    const CMS: &str = "provider_num,npi,name,address,city,state,zip,fips_county,lat,lon,phone,provider_type_code,category,emergency,upin,pin,region_code,bed_count,clia_lab_number
\"112011\",\"1588664007\",\"SELECT SPECIALTY HOSPITAL - SAVANNAH, INC\",\"5353 REYNOLDS STREET 4 SOUTH\",\"SAVANNAH\",GA,\"314056015\",\"051\",32.05,-81.09,\"9128197986\",\"00-09\",\"01-02\",false,,,\"04\",40,
,\"1053346718\",\"FLORIDA PEDIATRIC ASSOCIATES, LLC\",\"1033 DR MARTIN LUTHER KING JR ST N\",\"WESLEY CHAPEL\",FL,\"03544\",,28.18,-82.36,\"7274563288\",\"12-70\",,,,,,,
\"112012\",\"1588664007\",,\"1 MAIN ST\",\"SAVANNAH\",GA,\"31405\",\"051\",32.05,-81.09,\"9128197986\",\"00-09\",\"01-02\",false,,,\"04\",40,
\"112013\",\"1588664007\",\"SHORT ROW\"
\"112014\",\"1588664008\",\"BAD NPI\",\"1 MAIN ST\",\"SAVANNAH\",GA,\"31405\",\"051\",32.05,-81.09,\"9128197986\",\"00-09\",\"01-02\",false,,,\"04\",40,
";

    const IHS: &str = ",id,name,address,city,state,zip,county,phone,type,ownership,emergency,quality,LAT,LON
0,20000,Cherry Creek Health Station,317 Main,Eagle Butte,SD,57625,,605-964-8917,IHS Facility,,No,,44.99,-101.23
1,20001,Some Center,1 Road,Brunswick,ME,4468,,406-268-1587 Ext 16,IHS Facility,,No,,44.99,-101.23
2,20002,No Phone Station,N/A,Nowhere,AZ,N/A,,N/A,IHS Facility,,No,,44.99,-101.23
";

    const VA: &str = "id,name,address,city,state,zip,phone,type,ownership,emergency,quality,LAT,LON
608,\"Manchester VA Medical Center\",\"718 Smyth Road\",Manchester,NH,03104,\"603-624-4366 Or 603-624-4366\",\"VA Facility\",Government,no,\"Not Available\",43.01,-71.43
";

    #[test]
    fn cms_rows_become_workplaces_with_npi_and_ccn() {
        let mut reader = read_facilities(CMS.as_bytes(), "HOSPITALS", "US");
        assert_eq!(reader.layout(), Ok(FacilityLayout::Cms));
        let items: Vec<_> = reader.collect();
        assert_eq!(items.len(), 5);
        let w = items[0].as_ref().unwrap();
        assert_eq!(w.meta.source_id.as_str(), "NPI-1588664007");
        assert_eq!(w.meta.scope.as_str(), "US");
        assert_eq!(w.name, "SELECT SPECIALTY HOSPITAL - SAVANNAH, INC");
        assert_eq!(w.type_code.as_deref(), Some("00-09"));
        assert_eq!(
            w.address.lines,
            vec!["5353 REYNOLDS STREET 4 SOUTH".to_owned()]
        );
        assert_eq!(w.address.city.as_deref(), Some("SAVANNAH"));
        assert_eq!(w.address.region.as_deref(), Some("GA"));
        assert_eq!(w.address.postal_code.as_deref(), Some("31405-6015"));
        assert_eq!(w.address.country.as_deref(), Some("US"));
        assert_eq!(w.phone.as_deref(), Some("9128197986"));
        let ids: Vec<_> = w
            .identifiers
            .iter()
            .map(|i| (i.system.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(ids, [("NPI", "1588664007"), ("CCN", "112011")]);

        // No provider_num: NPI only; the leading zero of the zip survives.
        let w = items[1].as_ref().unwrap();
        assert_eq!(w.identifiers.len(), 1);
        assert_eq!(w.address.postal_code.as_deref(), Some("03544"));

        let errors: Vec<_> = items[2..].iter().map(|r| r.clone().unwrap_err()).collect();
        assert_eq!(errors[0].line, 4);
        assert_eq!(errors[0].reason, "missing name");
        assert_eq!(errors[1].line, 5);
        assert_eq!(errors[1].reason, "expected 19 columns, found 3");
        assert_eq!(errors[2].line, 6);
        assert!(errors[2].reason.contains("invalid NPI"), "{}", errors[2]);
    }

    #[test]
    fn legacy_rows_use_the_prefix_and_clean_zip_and_phone() {
        let mut reader = read_facilities(IHS.as_bytes(), "IHS_CENTERS", "US");
        assert_eq!(reader.layout(), Ok(FacilityLayout::Legacy));
        let items: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].meta.source_id.as_str(), "IHS_CENTERS-20000");
        assert!(items[0].identifiers.is_empty());
        assert_eq!(items[0].type_code.as_deref(), Some("IHS Facility"));
        assert_eq!(items[0].phone.as_deref(), Some("6059648917"));
        assert_eq!(items[1].address.postal_code.as_deref(), Some("04468"));
        assert_eq!(items[1].phone.as_deref(), Some("4062681587"));
        assert_eq!(items[2].address.postal_code, None);
        assert_eq!(items[2].phone, None);

        let va: Vec<_> = read_facilities(VA.as_bytes(), "VA", "US")
            .map(Result::unwrap)
            .collect();
        assert_eq!(va[0].meta.source_id.as_str(), "VA-608");
        assert_eq!(va[0].name, "Manchester VA Medical Center");
        assert_eq!(va[0].phone.as_deref(), Some("6036244366"));
        assert_eq!(va[0].address.postal_code.as_deref(), Some("03104"));
    }

    #[test]
    fn an_unknown_header_is_one_error_then_the_end() {
        let mut reader = read_facilities("foo,bar\n1,2\n".as_bytes(), "X", "US");
        let first = reader.next().unwrap().unwrap_err();
        assert_eq!(first.line, 1);
        assert!(first.reason.contains("unrecognised"), "{first}");
        assert!(reader.next().is_none());
        assert!(read_facilities("".as_bytes(), "X", "US")
            .next()
            .unwrap()
            .is_err());
    }

    #[test]
    fn phones_and_zips_normalise() {
        assert_eq!(phone("1-800-555-0100").as_deref(), Some("8005550100"));
        assert_eq!(phone("(603) 624-4366").as_deref(), Some("6036244366"));
        assert_eq!(phone(""), None);
        assert_eq!(postal_code("123456789").as_deref(), Some("12345-6789"));
        assert_eq!(postal_code("12345-6789").as_deref(), Some("12345-6789"));
        assert_eq!(postal_code("612").as_deref(), Some("00612"));
        assert_eq!(postal_code("N/A"), None);
    }

    #[test]
    fn real_facility_files_read_without_errors_and_npis_are_valid() {
        let dir = data_dir().join("us-facilities");
        let expected = [
            ("hospitals", 10_678, FacilityLayout::Cms),
            ("ihs_centers", 438, FacilityLayout::Legacy),
            ("ihs_facilities", 44, FacilityLayout::Legacy),
            ("longterm", 387, FacilityLayout::Cms),
            ("primary_care_facilities", 39_143, FacilityLayout::Cms),
            ("primary_care_facilities_children", 740, FacilityLayout::Cms),
            ("urgent_care_facilities", 1_943, FacilityLayout::Cms),
            ("va_facilities", 1_481, FacilityLayout::Legacy),
        ];
        let mut cms_total = 0;
        for (stem, count, layout) in expected {
            let path = dir.join(format!("{stem}.csv.gz"));
            let file =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let input = std::io::BufReader::new(decompressed(&path, file));
            let mut reader = read_facilities(input, stem, "US");
            assert_eq!(reader.layout(), Ok(layout), "{stem}");
            let mut seen = 0;
            let mut by_id: HashMap<String, u32> = HashMap::new();
            for item in reader {
                let w = item.unwrap_or_else(|e| panic!("{stem}: {e}"));
                seen += 1;
                for id in w.identifiers.iter().filter(|i| i.system == "NPI") {
                    assert!(npi_is_valid(&id.value), "{stem}: {}", id.value);
                }
                if layout == FacilityLayout::Cms {
                    assert!(w.meta.source_id.as_str().starts_with("NPI-"));
                    assert!(!w.identifiers.is_empty());
                }
                assert!(w
                    .address
                    .postal_code
                    .as_deref()
                    .is_none_or(|z| z.len() == 5 || z.len() == 10));
                assert!(!w.name.is_empty());
                *by_id.entry(w.meta.source_id.0).or_default() += 1;
            }
            assert_eq!(seen, count, "{stem}");
            if layout == FacilityLayout::Cms {
                cms_total += seen;
            } else if stem.starts_with("ihs") {
                // IHS ids are unique within their file; VA station ids are not (a
                // station number is shared by a system's sites), like repeated NPIs.
                assert_eq!(by_id.len(), count, "{stem}");
            }
        }
        // The data README counts the CMS-layout files: 52,891 facilities.
        assert_eq!(cms_total, 52_891);
    }

    proptest::proptest! {
        /// Whatever the rows hold, the reader never panics and yields exactly one
        /// item (a workplace or an error naming its line) per data row.
        #[test]
        fn every_data_row_yields_one_item(
            rows in proptest::collection::vec(
                proptest::collection::vec("[A-Za-z0-9 ,.\"-]{0,12}", 0..22),
                0..20,
            )
        ) {
            let header = CMS.lines().next().unwrap();
            let mut text = format!("{header}\n");
            let mut expected = 0;
            for cells in &rows {
                let line: Vec<String> = cells
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect();
                text.push_str(&line.join(","));
                text.push('\n');
                expected += 1;
            }
            let items: Vec<_> = read_facilities(text.as_bytes(), "T", "US").collect();
            // A row of zero cells is an empty line, which CSV readers skip.
            let blank = rows.iter().filter(|r| r.is_empty()).count();
            proptest::prop_assert_eq!(items.len(), expected - blank);
            for item in items.iter().filter_map(|i| i.as_ref().err()) {
                proptest::prop_assert!(item.line >= 2, "{}", item);
            }
        }
    }
}
