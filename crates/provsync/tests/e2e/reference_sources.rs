//! The reference-data sources over the real files shipped in `data/` (gzip): US facilities
//! (both CSV layouts) as workplaces, the NUCC taxonomy as a code list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data"))
}

fn job(dir: &Path, name: &str, source: &str, db: &Path) -> PathBuf {
    let text = format!(
        "scope = [\"US\"]\n{source}\n[target]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n\
         [options]\nmax_failed_records = \"20%\"\n",
        db.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us_facility_files_of_both_layouts_load_as_workplaces_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provider.db");
    let source = format!(
        "[source]\ntype = \"csv-facilities\"\npath = \"{}\"",
        data_dir().join("us-facilities").display()
    );
    let job = job(dir.path(), "facilities", &source, &db);
    let state = state_url(dir.path());
    let first = run(&job, &state);
    // The files repeat facilities: each repeat is reported, so the run has errors.
    first.expect_code(2);
    first.assert_reconciled();
    let created = first.kind_count("workplace", "created");
    let rejected = first.kind_count("workplace", "rejected");
    assert_eq!(
        created + rejected,
        first.kind_count("workplace", "extracted")
    );
    assert!(created > 50_000, "{first}");
    let reason = first.summary["first_errors"][0]["reason"]
        .as_str()
        .unwrap_or("");
    assert!(
        reason.contains("duplicate facility; first given at"),
        "{reason}"
    );

    let target = Target::sqlite(dir.path(), "provider.db");
    let db_conn = Db::open(&target).await;
    let ids = db_conn.connected_ids("workplace").await;
    assert_eq!(ids.len() as u64, created);
    // Both layouts are there: CMS rows keyed by NPI, IHS/VA rows by their own ids.
    assert!(ids.iter().any(|i| i.starts_with("NPI-")));
    assert!(ids.iter().any(|i| i.starts_with("VA_FACILITIES-")));
    assert!(ids.iter().any(|i| i.starts_with("IHS_CENTERS-")));
    db_conn.close().await;

    // Reading the same files again changes nothing.
    let again = run(&job, &state);
    again.expect_code(2);
    assert_eq!(
        again.kind_count("workplace", "unchanged"),
        created,
        "{again}"
    );
    assert_eq!(
        again.count("created") + again.count("updated"),
        0,
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nucc_taxonomy_loads_as_a_code_list_without_touching_other_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("provider.db");
    let state = state_url(dir.path());
    // Some workplaces first: a code-list snapshot must not sweep them.
    let world = generate(dir.path(), 200, 3, 1);
    let target = Target::sqlite(dir.path(), "provider.db");
    run_job(dir.path(), "world", &Job::full(&world, &target)).expect_code(0);

    let source = format!(
        "[source]\ntype = \"nucc\"\npath = \"{}\"",
        data_dir().join("nucc/nucc_taxonomy_231.csv.gz").display()
    );
    let job = job(dir.path(), "nucc", &source, &db);
    let r = run(&job, &state);
    r.expect_code(0);
    assert_eq!(r.kind_count("code", "created"), 874, "{r}");
    assert_eq!(r.count("disconnected"), 0, "{r}");
    let db_conn = Db::open(&target).await;
    let codes: BTreeSet<String> = db_conn
        .ids("SELECT source_id FROM codes WHERE list = 'nucc'")
        .await;
    assert_eq!(codes.len(), 874);
    assert!(
        codes.contains("nucc.207R00000X"),
        "internal medicine is a NUCC code"
    );
    let label = db_conn
        .rows("SELECT label FROM codes WHERE source_id = 'nucc.207R00000X'")
        .await;
    assert_eq!(label[0][0].as_deref(), Some("Internal Medicine Physician"));
    assert_eq!(db_conn.connected_ids("workplace").await.len(), 50);
    db_conn.close().await;
}

#[test]
fn shipped_reference_data_matches_its_provenance() {
    use sha2::Digest;
    use std::io::Read;
    let dir = data_dir().join("us-facilities");
    let text = std::fs::read_to_string(dir.join("PROVENANCE.json")).unwrap();
    let provenance: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = provenance["files"].as_array().unwrap();
    let mut checked = 0;
    for f in files {
        let name = f["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let path = dir.join(format!("{name}.gz"));
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut content = Vec::new();
        provsync_core::reference::decompressed(&path, file)
            .read_to_end(&mut content)
            .unwrap();
        // The manifest hashes content with LF line endings.
        let mut lf = Vec::with_capacity(content.len());
        for (i, b) in content.iter().enumerate() {
            if !(*b == b'\r' && content.get(i + 1) == Some(&b'\n')) {
                lf.push(*b);
            }
        }
        let hash = format!("{:x}", sha2::Sha256::digest(&lf));
        assert_eq!(hash, f["sha256"].as_str().unwrap(), "{name}");
        checked += 1;
    }
    let shipped = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".csv.gz")
        })
        .count();
    assert_eq!(checked, shipped, "every shipped file is in the manifest");
    assert_eq!(checked, 8);
}
