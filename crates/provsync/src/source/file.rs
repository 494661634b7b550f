//! The `file` source: NDJSON of canonical records, one record per line, read page by
//! page from a byte offset (the cursor), so memory does not grow with the file.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Record};
use provsync_core::source::{BadRecord, Cursor, OpenRequest, Page, Source, SourceError};
use serde::Deserialize;

/// Settings of the `file` source.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the NDJSON file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Longest line accepted, in bytes (default 4 MiB): a longer line is rejected
    /// with its size and never held in memory whole.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: u64,
}

fn default_max_line_bytes() -> u64 {
    4 * 1024 * 1024
}

/// Reads canonical records from an NDJSON file.
pub struct FileSource {
    path: PathBuf,
    max_line_bytes: u64,
    page_size: AtomicUsize,
}

/// Where a page starts: byte offset and 1-based line number.
fn parse_cursor(c: &Cursor) -> Result<(u64, u64), SourceError> {
    let (off, line) =
        c.0.split_once(':')
            .ok_or_else(|| SourceError::BadCursor(c.0.clone()))?;
    match (off.parse(), line.parse()) {
        (Ok(o), Ok(l)) => Ok((o, l)),
        _ => Err(SourceError::BadCursor(c.0.clone())),
    }
}

impl FileSource {
    /// A source over `config.path`.
    pub fn new(config: FileConfig) -> Self {
        Self {
            path: config.path,
            max_line_bytes: config.max_line_bytes.max(1),
            page_size: AtomicUsize::new(5_000),
        }
    }

    fn read_page(&self, offset: u64, first_line: u64) -> Result<Page, SourceError> {
        let file = std::fs::File::open(&self.path).map_err(|e| {
            SourceError::Unavailable(format!("cannot open {}: {e}", self.path.display()))
        })?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| SourceError::Unavailable(format!("{}: {e}", self.path.display())))?;
        let page_size = self.page_size.load(Ordering::Relaxed);
        let mut page = Page {
            records: Vec::with_capacity(page_size),
            bad: Vec::new(),
            next: None,
            snapshot: None,
        };
        let mut pos = offset;
        let mut line_no = first_line;
        let mut buf = Vec::new();
        let mut taken = 0;
        let io =
            |e: std::io::Error| SourceError::Unavailable(format!("{}: {e}", self.path.display()));
        while taken < page_size {
            let line = read_capped_line(&mut reader, &mut buf, self.max_line_bytes).map_err(io)?;
            if line.consumed == 0 {
                return Ok(page);
            }
            pos += line.consumed;
            match line.overflow {
                Some(size) => {
                    taken += 1;
                    page.bad.push(self.bad_line(
                        line_no,
                        format!(
                            "line of {size} bytes is longer than source.max_line_bytes ({})",
                            self.max_line_bytes
                        ),
                    ));
                }
                None => match std::str::from_utf8(&buf) {
                    Ok(text) if text.trim().is_empty() => {}
                    Ok(text) => {
                        taken += 1;
                        self.parse_line(text.trim(), line_no, &mut page);
                    }
                    Err(e) => {
                        taken += 1;
                        page.bad.push(self.bad_line(
                            line_no,
                            format!(
                                "not UTF-8: byte {} of the line is 0x{:02x}",
                                e.valid_up_to() + 1,
                                buf[e.valid_up_to()]
                            ),
                        ));
                    }
                },
            }
            line_no += 1;
        }
        // Only point past this page if something follows.
        let more = !reader
            .fill_buf()
            .map_err(|e| SourceError::Unavailable(format!("{}: {e}", self.path.display())))?
            .is_empty();
        if more {
            page.next = Some(Cursor(format!("{pos}:{line_no}")));
        }
        Ok(page)
    }

    /// A line that could not be read as text, named by its position.
    fn bad_line(&self, line_no: u64, reason: String) -> BadRecord {
        BadRecord {
            kind: None,
            source_id: None,
            position: format!("{}:{line_no}", self.path.display()),
            reason,
        }
    }

    fn parse_line(&self, line: &str, line_no: u64, page: &mut Page) {
        match serde_json::from_str::<Record>(line) {
            Ok(r) => page.records.push(r),
            Err(e) => {
                let (kind, source_id) = identify_bad_line(line);
                page.bad.push(BadRecord {
                    kind,
                    source_id,
                    position: format!("{}:{line_no}", self.path.display()),
                    reason: format!("not a canonical record: {}", explain(line, e)),
                });
            }
        }
    }
}

/// One line read by [`read_capped_line`].
struct Line {
    /// Bytes consumed from the reader, line break included (0: end of file).
    consumed: u64,
    /// The line's size when it exceeded the cap (its bytes were skipped, not kept).
    overflow: Option<u64>,
}

/// Reads one line into `buf` (without its line break), keeping at most `cap` bytes:
/// a longer line is consumed to its end but not held, so one giant line cannot take
/// the memory of the process.
fn read_capped_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    cap: u64,
) -> std::io::Result<Line> {
    buf.clear();
    let mut consumed = 0u64;
    let mut size = 0u64;
    let mut overflow = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = &chunk[..if done { take - 1 } else { take }];
        if !overflow && buf.len() as u64 + content.len() as u64 <= cap {
            buf.extend_from_slice(content);
        } else {
            overflow = true;
            buf.clear();
        }
        consumed += take as u64;
        size += content.len() as u64;
        reader.consume(take);
        if done {
            break;
        }
    }
    Ok(Line {
        consumed,
        overflow: overflow.then_some(size),
    })
}

/// Why a line is not a canonical record, naming the field at fault and its value:
/// `field `birth_date`: input is out of range (value "1990-13-45")`. The record enum
/// is tagged by `kind`, which hides the path, so the line is read again as its
/// kind's own type to find it.
fn explain(line: &str, e: serde_json::Error) -> String {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(line) else {
        return e.to_string();
    };
    let kinds = EntityKind::ALL.map(EntityKind::as_str).join(", ");
    let kind = match fields.remove("kind") {
        None => return format!("field `kind` is missing (one of {kinds})"),
        Some(serde_json::Value::String(k)) => k,
        Some(other) => return format!("field `kind`: {other} is not one of {kinds}"),
    };
    let Some(kind) = EntityKind::parse(&kind) else {
        return format!("field `kind`: {kind:?} is not one of {kinds}");
    };
    let value = serde_json::Value::Object(fields);
    let err = match kind {
        EntityKind::Individual => path_error::<provsync_core::model::Individual>(&value),
        EntityKind::Workplace => path_error::<provsync_core::model::Workplace>(&value),
        EntityKind::Activity => path_error::<provsync_core::model::Activity>(&value),
        EntityKind::Relation => path_error::<provsync_core::model::Relation>(&value),
        EntityKind::Code => path_error::<provsync_core::model::Code>(&value),
    };
    match err {
        Some((path, inner)) if path != "." => {
            match pointer(&value, &path).filter(|v| !v.is_object() && !v.is_array()) {
                Some(v) => format!("field `{path}`: {inner} (value {v})"),
                None => format!("field `{path}`: {inner}"),
            }
        }
        Some((_, inner)) => inner,
        None => e.to_string(),
    }
}

/// Where and why `value` does not deserialize as `T`, if it does not.
fn path_error<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Option<(String, String)> {
    serde_path_to_error::deserialize::<_, T>(value)
        .err()
        .map(|e| (e.path().to_string(), e.inner().to_string()))
}

/// The value at a serde path (`identifiers[0].value`) of a JSON object.
fn pointer<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut at = value;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            at = at.get(key)?;
        }
        if let Some(i) = index {
            at = at.get(i)?;
        }
    }
    Some(at)
}

/// The kind and `source_id` of a line that did not parse as a record, if it is JSON
/// with them (so the error names the record).
fn identify_bad_line(line: &str) -> (Option<EntityKind>, Option<String>) {
    #[derive(Deserialize)]
    struct Ident {
        kind: Option<String>,
        source_id: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Ident>(line) {
        Ok(i) => (
            i.kind.as_deref().and_then(EntityKind::parse),
            i.source_id.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        ),
        Err(_) => (None, None),
    }
}

#[async_trait]
impl Source for FileSource {
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        if !self.path.is_file() {
            return Err(SourceError::Config(format!(
                "source.path {} is not a readable file",
                self.path.display()
            )));
        }
        self.page_size
            .store(req.page_size.max(1), Ordering::Relaxed);
        Ok(Cursor("0:1".into()))
    }

    /// Bytes read of the file's size.
    fn position(&self, next: &Cursor) -> Option<(u64, u64)> {
        let size = std::fs::metadata(&self.path).ok()?.len();
        let (offset, _) = parse_cursor(next).ok()?;
        Some((offset.min(size), size))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let (offset, line) = parse_cursor(cursor)?;
        let this = FileSource {
            path: self.path.clone(),
            max_line_bytes: self.max_line_bytes,
            page_size: AtomicUsize::new(self.page_size.load(Ordering::Relaxed)),
        };
        tokio::task::spawn_blocking(move || this.read_page(offset, line))
            .await
            .map_err(|e| SourceError::Unavailable(format!("reader task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provsync_core::job::Mode;
    use std::io::Write;

    async fn pages_of(text: &str, page_size: usize) -> Vec<Page> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        pages_of_file(f.path(), page_size).await
    }

    async fn pages_of_file(path: &std::path::Path, page_size: usize) -> Vec<Page> {
        let src = FileSource::new(FileConfig {
            path: path.to_owned(),
            max_line_bytes: 200,
        });
        let mut cursor = src
            .open(&OpenRequest {
                scope: vec![],
                mode: Mode::Full,
                page_size,
            })
            .await
            .unwrap();
        let mut pages = Vec::new();
        loop {
            let p = src.fetch(&cursor).await.unwrap();
            let next = p.next.clone();
            pages.push(p);
            match next {
                Some(c) => cursor = c,
                None => return pages,
            }
        }
    }

    const IND: &str =
        r#"{"kind":"individual","source_id":"I1","scope":"US","first_name":"A","last_name":"B"}"#;

    #[tokio::test]
    async fn pages_cover_every_line_once() {
        let text = format!("{IND}\n{IND}\n\n{IND}\n");
        let pages = pages_of(&text, 2).await;
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].records.len() + pages[1].records.len(), 3);
        assert!(pages[1].next.is_none());
    }

    #[tokio::test]
    async fn malformed_line_is_reported_with_line_and_id_and_neighbours_read() {
        let bad = r#"{"kind":"individual","source_id":"I2","scope":"US"}"#;
        let text = format!("{IND}\n{bad}\nnot json\n{IND}\n");
        let pages = pages_of(&text, 10).await;
        let p = &pages[0];
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.bad.len(), 2);
        assert_eq!(p.bad[0].source_id.as_deref(), Some("I2"));
        assert!(p.bad[0].position.ends_with(":2"), "{}", p.bad[0].position);
        assert!(
            p.bad[0].reason.contains("missing field `first_name`"),
            "{}",
            p.bad[0].reason
        );
        assert!(p.bad[1].position.ends_with(":3"));
    }

    #[tokio::test]
    async fn a_bad_value_is_named_by_its_field_and_an_unknown_kind_by_its_name() {
        let date = r#"{"kind":"individual","source_id":"I3","scope":"US","first_name":"A","last_name":"B","birth_date":"1990-13-45"}"#;
        let kind = r#"{"kind":"pharmacy","source_id":"P1","scope":"US"}"#;
        let pages = pages_of(&format!("{date}\n{kind}\n"), 10).await;
        let bad = &pages[0].bad;
        assert_eq!(bad.len(), 2);
        assert!(
            bad[0].reason.contains("field `birth_date`")
                && bad[0].reason.contains("(value \"1990-13-45\")"),
            "{}",
            bad[0].reason
        );
        assert_eq!(bad[0].kind, Some(EntityKind::Individual));
        assert!(
            bad[1]
                .reason
                .contains("field `kind`: \"pharmacy\" is not one of"),
            "{}",
            bad[1].reason
        );
        assert_eq!(
            bad[1].kind, None,
            "an unknown kind is not labelled as another"
        );
    }

    #[tokio::test]
    async fn a_line_of_invalid_utf8_is_rejected_with_its_number_and_its_neighbours_read() {
        let mut bytes = format!("{IND}\n").into_bytes();
        bytes.extend_from_slice(b"{\"kind\":\"individual\",\"source_id\":\"I\xff\"}\n");
        bytes.extend_from_slice(format!("{IND}\n").as_bytes());
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        let pages = pages_of_file(f.path(), 10).await;
        assert_eq!(pages[0].records.len(), 2);
        assert_eq!(pages[0].bad.len(), 1);
        let bad = &pages[0].bad[0];
        assert!(bad.position.ends_with(":2"), "{}", bad.position);
        assert_eq!(bad.reason, "not UTF-8: byte 36 of the line is 0xff");
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_rejected_with_its_size_and_the_next_line_is_read() {
        let long = format!(
            "{{\"kind\":\"individual\",\"pad\":\"{}\"}}",
            "x".repeat(500)
        );
        let pages = pages_of(&format!("{IND}\n{long}\n{IND}\n"), 10).await;
        assert_eq!(pages[0].records.len(), 2);
        let bad = &pages[0].bad[0];
        assert!(bad.position.ends_with(":2"), "{}", bad.position);
        assert_eq!(
            bad.reason,
            format!(
                "line of {} bytes is longer than source.max_line_bytes (200)",
                long.len()
            )
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Whatever the page size and the mix of good, bad and blank lines, paging
        /// reads every non-blank line exactly once, in order.
        #[test]
        fn paging_reads_every_line_once(
            lines in proptest::collection::vec(0u8..3, 0..60),
            page_size in 1usize..8,
        ) {
            let text: String = lines
                .iter()
                .enumerate()
                .map(|(i, k)| match k {
                    0 => format!(r#"{{"kind":"individual","source_id":"I{i}","scope":"US","first_name":"A","last_name":"B"}}"#) + "\n",
                    1 => format!("garbage {i}\n"),
                    _ => "\n".to_string(),
                })
                .collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let pages = rt.block_on(pages_of(&text, page_size));
            let good: Vec<String> = pages
                .iter()
                .flat_map(|p| p.records.iter().map(|r| r.source_id().0.clone()))
                .collect();
            let expected: Vec<String> = lines
                .iter()
                .enumerate()
                .filter(|(_, k)| **k == 0)
                .map(|(i, _)| format!("I{i}"))
                .collect();
            proptest::prop_assert_eq!(good, expected);
            let bad: usize = pages.iter().map(|p| p.bad.len()).sum();
            proptest::prop_assert_eq!(bad, lines.iter().filter(|k| **k == 1).count());
            for p in &pages {
                proptest::prop_assert!(p.records.len() + p.bad.len() <= page_size);
            }
        }
    }

    #[tokio::test]
    async fn same_cursor_gives_same_page() {
        let text = format!("{IND}\n{IND}\n{IND}\n");
        let pages = pages_of(&text, 1).await;
        assert_eq!(pages.len(), 3);
        assert_eq!(
            pages[1].next.as_ref().unwrap().0.split(':').nth(1),
            Some("3")
        );
    }
}
