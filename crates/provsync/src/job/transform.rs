//! Transform (seed step 2.2): validate source records, apply the declarative mapping;
//! an invalid record goes to the error ledger with its id and reason, its neighbours
//! go on.

use std::collections::HashSet;
use std::sync::Arc;

use provsync_core::job::KindCounts;
use provsync_core::mapped::MappedRecord;
use provsync_core::mapping::Mapping;
use provsync_core::model::{EntityKind, Record};
use provsync_core::source::{BadRecord, Page};
use provsync_core::store::ErrorEntry;
use tokio::sync::mpsc;

use super::{EngineError, JobContext, Progress};

/// A page after mapping: records ready to load plus what was refused (also the
/// body of a distributed load message).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TransformedPage {
    /// Ledger page number.
    pub page_no: u64,
    /// Extracted and rejected counts per kind.
    pub counts: KindCounts,
    /// Rejected records.
    pub errors: Vec<ErrorEntry>,
    /// Mapped records (entities and links), in source order.
    pub records: Vec<MappedRecord>,
}

/// Receives pages, maps them on the blocking pool (CPU work), passes them to load.
pub async fn run(
    ctx: Arc<JobContext>,
    mut rx: mpsc::Receiver<(u64, Page)>,
    tx: mpsc::Sender<TransformedPage>,
) -> Result<(), EngineError> {
    while let Some((page_no, page)) = rx.recv().await {
        let mapping = ctx.mapping.clone();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || transform_page(&mapping, page_no, page))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?;
        Progress::time(&ctx.engine.progress.transform_ns, started);
        Progress::add(
            &ctx.engine.progress.transformed,
            out.counts.total().extracted,
        );
        if tx.send(out).await.is_err() {
            break; // load stopped; it reports why
        }
    }
    Ok(())
}

fn reject(out: &mut TransformedPage, kind: EntityKind, source_id: Option<String>, reason: String) {
    out.counts.kind_mut(kind).rejected += 1;
    push_error(out, Some(kind), source_id, reason);
}

/// Rejects a source line that could not be read as a record: counted under its kind
/// when that could be read, else as an unreadable line (never under a guessed kind).
fn reject_bad(out: &mut TransformedPage, bad: BadRecord) {
    let counts = match bad.kind {
        Some(kind) => out.counts.kind_mut(kind),
        None => &mut out.counts.unreadable,
    };
    counts.extracted += 1;
    counts.rejected += 1;
    push_error(
        out,
        bad.kind,
        bad.source_id,
        format!("{}: {}", bad.position, bad.reason),
    );
}

/// Records why a record was refused.
fn push_error(
    out: &mut TransformedPage,
    kind: Option<EntityKind>,
    source_id: Option<String>,
    reason: String,
) {
    out.errors.push(ErrorEntry {
        page_no: Some(out.page_no),
        stage: "transform".into(),
        kind,
        // An id holding NUL is shown escaped: no store or report keeps the byte.
        source_id: source_id.map(|id| id.replace('\0', "\\u0000")),
        reason,
    });
}

/// Maps one page. Every record ends as exactly one mapped record or one rejection;
/// a workplace's parent also yields a derived `parent` relation (counted as a
/// relation record).
pub fn transform_page(mapping: &Mapping, page_no: u64, page: Page) -> TransformedPage {
    let mut out = TransformedPage {
        page_no,
        records: Vec::with_capacity(page.records.len()),
        ..TransformedPage::default()
    };
    if let Some(reason) = page.snapshot.as_ref().and_then(|s| s.failure()) {
        // A scope the source could not deliver is an error of the run, committed
        // with the (empty) page so a redelivered page records it once.
        out.errors.push(ErrorEntry {
            page_no: Some(page_no),
            stage: "extract".into(),
            kind: None,
            source_id: None,
            reason: reason.to_owned(),
        });
    }
    for bad in page.bad {
        reject_bad(&mut out, bad);
    }
    let mut seen = HashSet::with_capacity(page.records.len());
    for record in page.records {
        let derived = record.implied_parent_relation().map(Record::Relation);
        for r in std::iter::once(record).chain(derived) {
            map_one(mapping, r, &mut seen, &mut out);
        }
    }
    out
}

fn map_one(
    mapping: &Mapping,
    record: Record,
    seen: &mut HashSet<(EntityKind, String)>,
    out: &mut TransformedPage,
) {
    let kind = record.kind();
    let id = record.source_id().0.clone();
    out.counts.kind_mut(kind).extracted += 1;
    if let Err(reason) = record.validate() {
        return reject(out, kind, Some(id), reason);
    }
    if !seen.insert((kind, id.clone())) {
        return reject(
            out,
            kind,
            Some(id),
            "duplicate source_id in the page; the first occurrence was kept".into(),
        );
    }
    if !mapping.handles(kind) {
        return reject(
            out,
            kind,
            Some(id),
            format!("the mapping has no entry for {kind}"),
        );
    }
    match mapping.apply(&record) {
        Ok(mapped) => match mapped.field_with_nul() {
            Some(field) => reject(
                out,
                kind,
                Some(id),
                format!(
                    "field `{field}` contains a NUL character (U+0000), which no target stores"
                ),
            ),
            None => out.records.push(mapped),
        },
        Err(e) => reject(out, kind, Some(id), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping::from_toml(provsync_core::mapping::SQL_PROVIDER, "sql-provider.toml").unwrap()
    }

    fn record(line: &str) -> Record {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn every_record_ends_mapped_or_rejected() {
        let page = Page {
            records: vec![
                record(
                    r#"{"kind":"individual","source_id":"I1","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
                record(
                    r#"{"kind":"individual","source_id":"I1","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
                record(
                    r#"{"kind":"individual","source_id":"I2","scope":"US","first_name":"A","last_name":" "}"#,
                ),
                record(
                    r#"{"kind":"workplace","source_id":"W2","scope":"US","name":"Clinic","parent_id":"W1"}"#,
                ),
            ],
            bad: vec![BadRecord {
                kind: None,
                source_id: None,
                position: "f.ndjson:9".into(),
                reason: "not JSON".into(),
            }],
            next: None,
            snapshot: None,
        };
        let out = transform_page(&mapping(), 3, page);
        let total = out.counts.total();
        assert_eq!(total.extracted, 6, "5 records + 1 derived parent relation");
        assert_eq!(total.rejected, 3);
        assert_eq!(out.records.len(), 3);
        let reasons: Vec<_> = out.errors.iter().map(|e| e.reason.as_str()).collect();
        assert!(reasons[0].starts_with("f.ndjson:9"));
        assert_eq!(
            out.errors[0].kind, None,
            "an unreadable kind is not labelled"
        );
        assert_eq!(out.counts.unreadable.extracted, 1, "nor counted as a kind");
        assert_eq!(out.counts.unreadable.rejected, 1);
        assert_eq!(out.counts.of(EntityKind::Individual).extracted, 3);
        assert!(reasons[1].contains("duplicate"));
        assert_eq!(reasons[2], "last_name is empty");
        assert!(out.errors.iter().all(|e| e.page_no == Some(3)));
        assert!(out
            .records
            .iter()
            .any(|r| r.kind == EntityKind::Relation && r.source_id.as_str() == "W2>parent"));
    }

    #[test]
    fn a_value_with_a_nul_is_rejected_naming_its_field_and_its_neighbours_map() {
        let page = Page {
            records: vec![
                record(
                    r#"{"kind":"individual","source_id":"I1","scope":"US","first_name":"A\u0000b","last_name":"B"}"#,
                ),
                record(
                    r#"{"kind":"individual","source_id":"I2","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
                record(
                    r#"{"kind":"individual","source_id":"I\u00003","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
            ],
            bad: vec![],
            next: None,
            snapshot: None,
        };
        let out = transform_page(&mapping(), 1, page);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].source_id.as_str(), "I2");
        let reasons: Vec<_> = out.errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "field `individuals.first_name` contains a NUL character (U+0000), which no target stores",
                "source_id or scope contains a NUL character (U+0000)",
            ]
        );
        assert_eq!(out.errors[1].source_id.as_deref(), Some("I\\u00003"));
    }
}
