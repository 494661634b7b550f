//! Readers of real reference data files (US facilities, NUCC taxonomy).
//!
//! Pure functions over [`std::io::Read`]: the caller opens the files, so this crate
//! stays free of file I/O. Every reader streams: it yields one `Result` per row and
//! holds one row in memory at a time, so a bad row becomes an error item naming its
//! line instead of aborting the whole file.

pub mod facilities;
pub mod nucc;

use std::io::Read;
use std::path::Path;

/// A row of a reference file that could not be read: its line number and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// What is wrong with the row.
    pub reason: String,
}

impl RowError {
    fn new(line: u64, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

/// Whether a file is a CSV reference file, plain or gzip-compressed (`.csv`, `.csv.gz`).
pub fn is_csv_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    name.is_some_and(|n| n.ends_with(".csv") || n.ends_with(".csv.gz"))
}

/// A CSV file's name without `.csv` or `.csv.gz`, upper-cased: the id prefix of the
/// rows of a facility file (`va_facilities.csv.gz` gives `VA_FACILITIES`).
pub fn csv_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_lowercase();
    let cut = [".csv.gz", ".csv", ".gz"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(name.len(), |ext| name.len() - ext.len());
    name[..cut].to_uppercase()
}

/// `input` as read from a file named `path`: decompressed when the name ends in `.gz`,
/// so users' compressed exports read like plain ones.
pub fn decompressed<'a>(path: &Path, input: impl Read + 'a) -> Box<dyn Read + 'a> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
    {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    }
}

/// The prefix (ISO card issuer id of US health) the NPI check digit is computed with.
pub const NPI_LUHN_PREFIX: &str = "80840";

/// The Luhn check digit of an NPI whose first nine digits are given (computed with the
/// `80840` prefix, as CMS specifies); `None` unless exactly nine ASCII digits.
pub fn npi_check_digit(first_nine: &str) -> Option<u8> {
    let bytes = first_nine.as_bytes();
    if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let payload = NPI_LUHN_PREFIX.bytes().chain(bytes.iter().copied());
    // Luhn doubles every second digit counting from the right of the payload, starting
    // with the rightmost one (the check digit itself will sit to its right).
    let digits: Vec<u32> = payload.map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(pos, &d)| {
            if pos % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    Some(((10 - sum % 10) % 10) as u8)
}

/// Whether `npi` is ten ASCII digits whose last one is the Luhn check digit of the rest.
pub fn npi_is_valid(npi: &str) -> bool {
    npi.len() == 10
        && npi.is_char_boundary(9)
        && npi_check_digit(&npi[..9]).is_some_and(|c| npi.as_bytes()[9] == b'0' + c)
}

/// Decodes a CSV field: UTF-8 when valid, else Windows-1252, because some published
/// reference files (the NUCC taxonomy's `§`) are not UTF-8 and must not be rejected.
pub(crate) fn decode_field(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.trim().to_owned(),
        Err(_) => bytes
            .iter()
            .map(|&b| cp1252(b))
            .collect::<String>()
            .trim()
            .to_owned(),
    }
}

fn cp1252(b: u8) -> char {
    // 0x80..=0x9F differ from Latin-1 in Windows-1252; unassigned ones map to U+FFFD.
    const HIGH: [char; 32] = [
        '€', '\u{FFFD}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{FFFD}', 'Ž',
        '\u{FFFD}', '\u{FFFD}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ',
        '\u{FFFD}', 'ž', 'Ÿ',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// A streaming CSV reader shared by the reference readers: a header row, then rows
/// checked for the header's column count, each with its line number.
pub(crate) struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    record: csv::ByteRecord,
    /// The header row, or why it could not be read (kept so asking again repeats it).
    header: Option<Result<Vec<String>, RowError>>,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    pub(crate) fn new(input: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            // Column counts are checked here so a short row is an error item for that
            // row, with a clear reason, instead of a reader error.
            .flexible(true)
            .from_reader(input);
        Self {
            reader,
            record: csv::ByteRecord::new(),
            header: None,
            done: false,
        }
    }

    /// Reads the header row (names trimmed and lower-cased, BOM removed).
    pub(crate) fn header(&mut self) -> Result<&[String], RowError> {
        let (reader, record) = (&mut self.reader, &mut self.record);
        let header = self
            .header
            .get_or_insert_with(|| match reader.read_byte_record(record) {
                Ok(true) => Ok(record
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let f = if i == 0 {
                            f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                        } else {
                            f
                        };
                        decode_field(f).to_lowercase()
                    })
                    .collect()),
                Ok(false) => Err(RowError::new(1, "empty file: no header row")),
                Err(e) => Err(RowError::new(1, format!("unreadable header: {e}"))),
            });
        match header {
            Ok(h) => Ok(h),
            Err(e) => {
                self.done = true;
                Err(e.clone())
            }
        }
    }

    /// Marks the reader finished (after a fatal error) so iteration stops.
    pub(crate) fn finish(&mut self) {
        self.done = true;
    }

    /// The next data row as decoded fields with its line, or `None` at the end.
    pub(crate) fn next_row(&mut self) -> Option<Result<(u64, Vec<String>), RowError>> {
        if self.done {
            return None;
        }
        let width = match self.header() {
            Ok(h) => h.len(),
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                if self.record.len() != width {
                    return Some(Err(RowError::new(
                        line,
                        format!("expected {width} columns, found {}", self.record.len()),
                    )));
                }
                Some(Ok((line, self.record.iter().map(decode_field).collect())))
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                // An I/O error would repeat forever: report it once and stop.
                self.done = true;
                let line = e.position().map_or(0, |p| p.line());
                Some(Err(RowError::new(line, format!("unreadable row: {e}"))))
            }
        }
    }
}

/// Index of a (lower-case) column in a header, or an error naming it.
pub(crate) fn column(header: &[String], name: &str) -> Result<usize, RowError> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| RowError::new(1, format!("missing column `{name}` in header")))
}

/// `None` for an empty field.
pub(crate) fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The repository's shipped reference data folder, for tests in this crate.
#[cfg(test)]
pub(crate) fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_check_digit_matches_real_npis() {
        // Real NPIs from the CMS facility file.
        assert!(npi_is_valid("1588664007"));
        assert!(npi_is_valid("1518967280"));
        // The CMS example: 123456789 has check digit 3.
        assert_eq!(npi_check_digit("123456789"), Some(3));
        assert!(!npi_is_valid("1588664008"));
        assert!(!npi_is_valid("158866400"));
        assert!(!npi_is_valid("15886640x7"));
        assert_eq!(npi_check_digit("12345678"), None);
    }

    #[test]
    fn csv_files_plain_or_gzip_are_recognised_and_named_without_extensions() {
        assert!(is_csv_file(Path::new("a/hospitals.csv")));
        assert!(is_csv_file(Path::new("a/HOSPITALS.CSV.GZ")));
        assert!(!is_csv_file(Path::new("a/PROVENANCE.json")));
        assert!(!is_csv_file(Path::new("a/notes.gz")));
        assert_eq!(
            csv_stem(Path::new("x/va_facilities.csv.gz")),
            "VA_FACILITIES"
        );
        assert_eq!(csv_stem(Path::new("x/va_facilities.csv")), "VA_FACILITIES");
    }

    #[test]
    fn gzip_input_reads_as_its_plain_content() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"code,label\n1,x\n").unwrap();
        let bytes = gz.finish().unwrap();
        let mut out = String::new();
        decompressed(Path::new("f.csv.gz"), bytes.as_slice())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "code,label\n1,x\n");
        let mut plain = String::new();
        decompressed(Path::new("f.csv"), &b"a"[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "a");
    }

    #[test]
    fn fields_that_are_not_utf8_decode_as_windows_1252() {
        assert_eq!(decode_field(b"42 CFR \xa7 400"), "42 CFR § 400");
        assert_eq!(decode_field(b"\x93quoted\x94"), "“quoted”");
        assert_eq!(decode_field(" caf\u{e9} ".as_bytes()), "café");
    }

    #[test]
    fn short_rows_are_errors_naming_the_line_and_reading_goes_on() {
        let mut rows = CsvRows::new("a,b\n1,2\n3\n4,5\n".as_bytes());
        assert_eq!(
            rows.next_row().unwrap().unwrap(),
            (2, vec!["1".into(), "2".into()])
        );
        let err = rows.next_row().unwrap().unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.reason, "expected 2 columns, found 1");
        assert_eq!(rows.next_row().unwrap().unwrap().0, 4);
        assert!(rows.next_row().is_none());
    }
}
