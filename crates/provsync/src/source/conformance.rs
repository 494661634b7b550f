//! The contract every [`Source`] keeps, checked on each implementation with a
//! fixture that holds one malformed record among good ones: fetching a cursor again
//! yields the same page; every record carries its scope and a source id; the
//! malformed record becomes a bad record naming where it is, and its neighbours
//! all come through.
//!
//! Implementations covered: `file` (NDJSON), `nucc` and `csv-facilities` (CSV).
//! OneKey and GMC are still to join (through their emulators).

use std::sync::Arc;

use provsync_core::job::Mode;
use provsync_core::model::Scope;
use provsync_core::source::{Cursor, OpenRequest, Page, Source};

/// A source over a fixture and what the contract expects of it.
struct Fixture {
    source: Arc<dyn Source>,
    request: OpenRequest,
    /// Good records in the fixture.
    good: usize,
    /// Text every bad record's position or reason holds (where the bad one is).
    bad_at: String,
    _dir: tempfile::TempDir,
}

/// Every page of a session, each fetched twice and compared.
async fn pages(source: &dyn Source, request: &OpenRequest) -> Vec<Page> {
    let mut cursor: Option<Cursor> = Some(source.open(request).await.expect("open"));
    let mut out = Vec::new();
    while let Some(c) = cursor {
        let page = source.fetch(&c).await.expect("fetch");
        let again = source.fetch(&c).await.expect("fetch again");
        assert_eq!(page, again, "fetching cursor {c:?} again gave another page");
        cursor = page.next.clone();
        out.push(page);
        assert!(out.len() < 10_000, "the session never ends");
    }
    source.close().await.expect("close");
    out
}

/// Checks the contract on one fixture.
async fn conforms(f: Fixture) {
    let pages = pages(f.source.as_ref(), &f.request).await;
    let records: Vec<_> = pages.iter().flat_map(|p| &p.records).collect();
    let bad: Vec<_> = pages.iter().flat_map(|p| &p.bad).collect();
    assert_eq!(records.len(), f.good, "every good record comes through");
    for r in &records {
        assert!(
            !r.source_id().0.trim().is_empty(),
            "a record without id: {r:?}"
        );
        assert!(
            !r.scope().0.trim().is_empty(),
            "a record without scope: {r:?}"
        );
        if !f.request.scope.is_empty() {
            assert!(
                f.request.scope.contains(r.scope()),
                "a record of scope {:?} outside {:?}",
                r.scope(),
                f.request.scope
            );
        }
    }
    assert_eq!(
        bad.len(),
        1,
        "the malformed record is one bad record: {bad:?}"
    );
    let b = bad[0];
    assert!(!b.reason.trim().is_empty(), "{b:?}");
    assert!(
        b.position.contains(&f.bad_at) || b.reason.contains(&f.bad_at),
        "the bad record does not say where it is ({}): {b:?}",
        f.bad_at
    );
}

fn request(scope: &[&str], page_size: usize) -> OpenRequest {
    OpenRequest {
        scope: scope.iter().map(|s| Scope((*s).into())).collect(),
        mode: Mode::Full,
        page_size,
    }
}

/// An NDJSON feed of 40 workplaces with a truncated line as line 21, read in
/// pages of 7.
fn file_source() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({
                "kind": "workplace", "source_id": format!("W{i:04}"), "scope": "US",
                "name": format!("Clinic {i}"), "status": "active",
            })
            .to_string()
        })
        .collect();
    let good = lines.len();
    lines.insert(20, r#"{"kind":"workplace","source_id":"TRUNC"#.into());
    let path = dir.path().join("world.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let source = super::file::FileSource::new(super::file::FileConfig {
        path,
        max_line_bytes: 1 << 20,
    });
    Fixture {
        source: Arc::new(source),
        request: request(&[], 7),
        good,
        bad_at: ":21".into(),
        _dir: dir,
    }
}

/// A NUCC taxonomy CSV of three codes, the second without a code.
fn nucc_source() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nucc.csv");
    std::fs::write(
        &path,
        "Code,Grouping,Classification,Specialization,Definition,Notes,Display Name,Section\n\
         193200000X,Group,Multi-Specialty,,d,,Multi-Specialty Group,Individual\n\
         ,Group,Single Specialty,,d,,Single Specialty Group,Individual\n\
         207Q00000X,Allopathic,Family Medicine,,d,,Family Medicine Physician,Individual\n",
    )
    .unwrap();
    let source = super::nucc::NuccSource::new(super::nucc::NuccConfig {
        path,
        scope: "US".into(),
    });
    Fixture {
        source: Arc::new(source),
        request: request(&["US"], 100),
        good: 2,
        bad_at: ":3".into(),
        _dir: dir,
    }
}

/// A folder of two VA facility CSVs (a page each); the second holds a row without
/// a name as its line 3.
fn facilities_source() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let header = "id,name,address,city,state,zip,phone,type,ownership,emergency,quality,LAT,LON\n";
    let row = |id: u32, name: &str| {
        format!("{id},{name},1 Road,Manchester,NH,03104,603-624-4366,VA Facility,Government,no,,43.01,-71.43\n")
    };
    let a: String = (0..3)
        .map(|i| row(600 + i, &format!("Center {i}")))
        .collect();
    let b = format!(
        "{}{}{}",
        row(700, "Clinic A"),
        row(701, ""),
        row(702, "Clinic C")
    );
    std::fs::write(dir.path().join("a.csv"), format!("{header}{a}")).unwrap();
    std::fs::write(dir.path().join("b.csv"), format!("{header}{b}")).unwrap();
    let source = super::facilities::FacilitiesSource::new(super::facilities::FacilitiesConfig {
        path: dir.path().to_path_buf(),
        scope: "US".into(),
    });
    Fixture {
        source: Arc::new(source),
        request: request(&["US"], 100),
        good: 5,
        bad_at: "b.csv:3".into(),
        _dir: dir,
    }
}

#[tokio::test]
async fn the_csv_facilities_source_keeps_the_source_contract() {
    conforms(facilities_source()).await;
}

#[tokio::test]
async fn the_file_source_keeps_the_source_contract() {
    conforms(file_source()).await;
}

#[tokio::test]
async fn the_nucc_source_keeps_the_source_contract() {
    conforms(nucc_source()).await;
}
