//! Bad input: malformed records are rejected with their source id and reason while
//! the rest loads; thresholds fail the run; bad job and mapping files are refused
//! with a precise message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

const NO_LAST_NAME: &str = "WUSM_E2E_NO_LAST_NAME";

/// A copy of `src` with bad lines inserted after its 50th line: a truncated JSON
/// line, then `extra` individuals without `last_name` (the first one is
/// NO_LAST_NAME, the others NO_LAST_NAME_<n>).
fn with_bad_lines(src: &Path, dst: &Path, missing_last_names: usize) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let individual = lines
        .iter()
        .find(|l| l.contains(r#""kind":"individual""#))
        .unwrap();
    let mut out: Vec<String> = lines[..50].iter().map(|l| l.to_string()).collect();
    out.push(
        r#"{"kind":"individual","source_id":"WUSM_E2E_TRUNCATED","scope":"US","first_"#.into(),
    );
    for n in 0..missing_last_names {
        let mut v: Value = serde_json::from_str(individual).unwrap();
        let id = if n == 0 {
            NO_LAST_NAME.to_string()
        } else {
            format!("{NO_LAST_NAME}_{n}")
        };
        v["source_id"] = Value::String(id);
        v.as_object_mut().unwrap().remove("last_name");
        out.push(v.to_string());
    }
    out.extend(lines[50..].iter().map(|l| l.to_string()));
    std::fs::write(dst, out.join("\n") + "\n").unwrap();
    dst.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_rejected_with_source_id_and_reason_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 300, 13, 1);
    let snap = Snapshot::load(&world);
    let bad = with_bad_lines(&world, &dir.path().join("bad.ndjson"), 1);

    let run = run_job(dir.path(), "bad", &Job::full(&bad, &target));
    run.expect_code(2);
    assert_eq!(run.state(), "completed_with_errors", "{run}");
    run.assert_reconciled();

    let mut c = Checks::default();
    c.eq("rejected", run.count("rejected"), 2);
    c.eq("failed", run.count("failed"), 0);
    c.eq("extracted", run.count("extracted"), snap.extracted() + 2);
    c.eq(
        "created",
        run.count("created"),
        snap.entities() + snap.links(),
    );
    c.eq(
        "errors_total",
        run.summary["errors_total"].as_u64(),
        Some(2),
    );
    let errors = run.summary["first_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    c.check(
        &format!("an error names {NO_LAST_NAME} and the reason `last_name`: {errors:?}"),
        errors.iter().any(|e| {
            e["source_id"].as_str() == Some(NO_LAST_NAME)
                && e["reason"].as_str().unwrap_or("").contains("last_name")
        }),
    );
    c.check(
        &format!("an error reports the invalid JSON line (not for {NO_LAST_NAME}): {errors:?}"),
        errors.iter().any(|e| {
            e["source_id"].as_str() != Some(NO_LAST_NAME)
                && !e["reason"].as_str().unwrap_or("").is_empty()
        }),
    );
    let db = Db::open(&target).await;
    check_target_matches(&mut c, &db, &snap, "after the bad file").await;
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_bad_records_than_max_failed_records_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 300, 13, 1);
    let bad = with_bad_lines(&world, &dir.path().join("bad.ndjson"), 2);
    let job = Job::full(&bad, &target).option("max_failed_records = 1");
    let run = run_job(dir.path(), "bad", &job);
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    assert_eq!(run.count("rejected"), 3, "{run}");
    assert_eq!(run.count("disconnected"), 0, "{run}");
}

#[test]
fn job_file_with_unknown_option_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 50, 1, 1);
    let job = Job::full(&world, &target).option("page_sise = 100");
    let run = run_job(dir.path(), "typo", &job);
    run.expect_code(1);
    assert!(
        run.stderr.contains("page_sise"),
        "stderr does not name the key: {run}"
    );
}

#[test]
fn a_typo_inside_the_source_section_is_refused_at_its_line_before_a_job_exists() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 50, 1, 1);
    let text = Job::full(&world, &target)
        .toml()
        .replace("\npath = ", "\npaht = ");
    let line = text.lines().position(|l| l.starts_with("paht")).unwrap() + 1;
    let job = dir.path().join("typo.toml");
    std::fs::write(&job, &text).unwrap();
    let state = state_url(dir.path());
    let run = run(&job, &state);
    run.expect_code(1);
    let want = format!("typo.toml:{line}:1: source.paht: unknown field `paht`, expected `path`");
    assert!(run.stderr.contains(&want), "wanted {want:?} in: {run}");
    assert_eq!(
        run.stderr.matches("unknown field").count(),
        1,
        "the error is told once: {run}"
    );
    assert!(
        !dir.path().join("state.db").exists(),
        "a refused job file opened a state store"
    );
}

#[test]
fn mapping_with_a_bad_path_is_refused_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 50, 1, 1);
    let mapping = dir.path().join("bad-mapping.toml");
    std::fs::write(
        &mapping,
        r#"name = "e2e-bad"
version = 1

[entities.individual]
table = "individuals"

[entities.individual.fields]
last_name = { from = "last_name", required = true }

[entities.workplace]
table = "workplaces"

[entities.workplace.fields]
name = { from = "name", required = true }
city = "address.cty"
"#,
    )
    .unwrap();
    let mut job = Job::full(&world, &target);
    job.mapping = Some(mapping.clone());
    let run = run_job(dir.path(), "badmap", &job);
    run.expect_code(1);
    let text = format!("{}\n{}", run.stdout, run.stderr);
    let at = format!("{}:15", mapping.display());
    assert!(text.contains(&at), "the error does not name {at}: {run}");
    assert!(
        text.contains("entities.workplace.fields.city"),
        "the error does not name the field: {run}"
    );
    assert!(
        text.contains("cty"),
        "the error does not name the bad segment: {run}"
    );
    assert_eq!(run.state(), "failed", "{run}");
}

/// Each case of `tests/corpus/bad-input`, with what its error must say.
const CORPUS: [(&str, &[&str]); 11] = [
    ("invalid-utf8", &["not UTF-8", "0xe9"]),
    ("nul-in-a-value", &["individuals.first_name", "NUL"]),
    ("nul-in-a-source-id", &["source_id", "NUL"]),
    ("impossible-date", &["field `birth_date`", "1990-13-45"]),
    ("truncated-json", &["not a canonical record"]),
    ("unknown-kind", &["field `kind`", "pharmacy"]),
    ("missing-required-field", &["missing field `last_name`"]),
    ("blank-last-name", &["last_name is empty"]),
    ("wrong-type", &["field `first_name`"]),
    (
        "line-over-the-size-cap",
        &["longer than source.max_line_bytes (4096)"],
    ),
    ("not-json-at-all", &["not a canonical record"]),
];

/// `src` with the corpus case's line inserted after its 50th line (so it is line 51).
fn with_case(src: &Path, case: &str, dst: &Path) -> PathBuf {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad-input");
    let bad = std::fs::read(corpus.join(format!("{case}.ndjson"))).unwrap();
    let text = std::fs::read(src).unwrap();
    let cut = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(49)
        .map(|(i, _)| i + 1)
        .unwrap();
    let mut out = text[..cut].to_vec();
    out.extend_from_slice(&bad);
    out.extend_from_slice(&text[cut..]);
    std::fs::write(dst, out).unwrap();
    dst.to_path_buf()
}

/// Runs every corpus case into a fresh target: one rejected record named by its line
/// (or its id) and field, its neighbours loaded, exit 2; the rerun ends the same.
async fn corpus_against(c: &mut Checks, dir: &Path, target_for: impl Fn(&str) -> Target) {
    let world = generate(dir, 100, 21, 1);
    let snap = Snapshot::load(&world);
    for (case, wanted) in CORPUS {
        let target = target_for(case);
        let file = with_case(&world, case, &dir.join(format!("{case}.ndjson")));
        let mut job = Job::full(&file, &target);
        job.source_section = Some(format!(
            "[source]\ntype = \"file\"\npath = \"{}\"\nmax_line_bytes = 4096\n",
            file.display()
        ));
        for night in ["first", "rerun"] {
            let run = run_job(dir, &format!("{case}-{night}"), &job);
            let what = format!("{case} ({night} run)");
            c.eq(&format!("{what}: exit code"), run.code, 2);
            c.eq(
                &format!("{what}: state"),
                run.state(),
                "completed_with_errors",
            );
            c.eq(&format!("{what}: rejected"), run.count("rejected"), 1);
            c.eq(&format!("{what}: failed"), run.count("failed"), 0);
            let expected_created = if night == "first" {
                snap.entities() + snap.links()
            } else {
                0
            };
            c.eq(
                &format!("{what}: created"),
                run.count("created"),
                expected_created,
            );
            let error = run.summary["first_errors"][0].clone();
            let reason = error["reason"].as_str().unwrap_or("");
            let named = reason.contains(&format!("{case}.ndjson:51"))
                || error["source_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("BAD"));
            c.check(
                &format!("{what}: the error names the line or the record: {error}"),
                named,
            );
            for w in wanted {
                c.check(
                    &format!("{what}: the error says {w:?}: {error}"),
                    reason.contains(w),
                );
            }
        }
        let db = Db::open(&target).await;
        check_target_matches(c, &db, &snap, case).await;
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_of_the_bad_input_corpus_is_one_rejected_record_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Checks::default();
    let base = dir.path().to_path_buf();
    corpus_against(&mut c, dir.path(), |case| {
        Target::sqlite(&base, &format!("{case}.db"))
    })
    .await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_of_the_bad_input_corpus_is_one_rejected_record_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut databases = Vec::new();
    for _ in CORPUS {
        match PgDatabase::create().await {
            Some(db) => databases.push(db),
            None => return,
        }
    }
    let targets: std::collections::HashMap<&str, Target> = CORPUS
        .iter()
        .zip(&databases)
        .map(|((case, _), db)| (*case, db.target()))
        .collect();
    let mut c = Checks::default();
    corpus_against(&mut c, dir.path(), |case| targets[case].clone()).await;
    c.finish();
}

/// A full night 2 in which a tenth of the individuals lost their `last_name`
/// (rejected, over the default 5%) and others left the source: the run fails on the
/// threshold before the sweep, so nobody is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_threshold_fails_a_full_run_before_the_sweep_and_nothing_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 300, 13, 1);
    run_job(dir.path(), "night1", &Job::full(&world, &target)).expect_code(0);
    let (fewer, gone) = drop_individuals(&world, &dir.path().join("fewer.ndjson"), 1);
    assert!(!gone.is_empty());
    let (bad, _) = blank_last_names(&fewer, &dir.path().join("night2.ndjson"), 2);
    // The guard on disconnections is opened wide: only the threshold may stop the sweep.
    let job = Job::full(&bad, &target)
        .option("max_failed_records = \"5%\"")
        .option("max_disconnect_share = 1.0");
    let run = run_job(dir.path(), "night2", &job);
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    assert!(
        run.summary["failure"]
            .as_str()
            .is_some_and(|f| f.contains("max_failed_records exceeded")),
        "{run}"
    );
    assert_eq!(run.count("disconnected"), 0, "{run}");
    let db = Db::open(&target).await;
    assert!(db.disconnected_ids("individual").await.is_empty());
    assert!(db.disconnected_ids("activity").await.is_empty());
    db.close().await;
}

/// A known individual whose new version is rejected is still in the source: a full
/// run under the threshold sweeps the ones that left, never the rejected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_record_rejected_in_a_full_run_is_never_swept() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 300, 13, 1);
    run_job(dir.path(), "night1", &Job::full(&world, &target)).expect_code(0);
    let (fewer, gone) = drop_individuals(&world, &dir.path().join("fewer.ndjson"), 1);
    let (bad, rejected) = blank_last_names(&fewer, &dir.path().join("night2.ndjson"), 50);
    assert!(!rejected.is_empty());
    let job = Job::full(&bad, &target)
        .option("max_failed_records = \"50%\"")
        .option("max_disconnect_share = 0.5");
    let run = run_job(dir.path(), "night2", &job);
    run.expect_code(2);
    assert_eq!(run.count("rejected") as usize, rejected.len(), "{run}");
    let db = Db::open(&target).await;
    let disconnected = db.disconnected_ids("individual").await;
    assert_eq!(
        disconnected, gone,
        "only the individuals that left are disconnected"
    );
    assert!(disconnected.is_disjoint(&rejected));
    db.close().await;
}

/// A copy of `src` in which every `nth` individual has a blank `last_name`, and
/// their ids.
fn blank_last_names(src: &Path, dst: &Path, nth: usize) -> (PathBuf, BTreeSet<String>) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut index = 0usize;
    let mut blanked = BTreeSet::new();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v["kind"] == "individual" {
                index += 1;
                if index.is_multiple_of(nth) {
                    blanked.insert(v["source_id"].as_str().unwrap().to_string());
                    v["last_name"] = Value::String(String::new());
                    return v.to_string();
                }
            }
            line.to_string()
        })
        .collect();
    std::fs::write(dst, lines.join("\n") + "\n").unwrap();
    (dst.to_path_buf(), blanked)
}

/// An empty snapshot file completes (nothing is wrong with the run) but every
/// surface says the source returned nothing, and nothing is swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_full_snapshot_completes_with_a_warning_on_every_surface() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 50, 3, 1);
    run_job(dir.path(), "night1", &Job::full(&world, &target)).expect_code(0);
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let run = run_job(dir.path(), "empty", &Job::full(&empty, &target));
    run.expect_code(0);
    assert_eq!(run.state(), "completed", "{run}");
    assert_eq!(run.count("disconnected"), 0, "{run}");
    let warning = "the source returned no records";
    let in_summary = run.summary["warnings"][0].as_str().unwrap_or("");
    assert!(in_summary.contains(warning), "{run}");
    let status = status(&run.job_id(), &state_url(dir.path()));
    assert!(
        status["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains(warning)),
        "{status}"
    );
    let text = std::process::Command::new(bin())
        .args(["status", &run.job_id(), "--state", &state_url(dir.path())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("WARNING  {warning}")), "{text}");
}

/// `src` with a second copy of its `nth` individual (first name changed) appended
/// at the end, and that individual's id and first name.
fn with_a_second_copy(src: &Path, dst: &Path, nth: usize) -> (PathBuf, String, String) {
    let text = std::fs::read_to_string(src).unwrap();
    let line = text
        .lines()
        .filter(|l| l.contains("\"kind\":\"individual\""))
        .nth(nth)
        .unwrap();
    let mut v: Value = serde_json::from_str(line).unwrap();
    let id = v["source_id"].as_str().unwrap().to_string();
    let first = v["first_name"].as_str().unwrap().to_string();
    v["first_name"] = Value::String("Second-Copy".into());
    std::fs::write(dst, format!("{text}{v}\n")).unwrap();
    (dst.to_path_buf(), id, first)
}

/// A source id delivered twice in one snapshot: the second copy is rejected (its
/// error names the page of the first), the first is kept, whatever the page size
/// (the copies on one page or on pages far apart, loaded concurrently), and the
/// rerun ends the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_id_delivered_twice_in_one_run_keeps_the_first_copy_whatever_the_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 300, 17, 1);
    let (file, id, first) = with_a_second_copy(&world, &dir.path().join("twice.ndjson"), 5);
    let mut c = Checks::default();
    for page_size in [5000, 100] {
        let target = Target::sqlite(dir.path(), &format!("p{page_size}.db"));
        let job = Job::full(&file, &target)
            .option(&format!("page_size = {page_size}"))
            .option("load_workers = 4");
        for night in ["first", "rerun"] {
            let what = format!("page_size {page_size}, {night} run");
            let run = run_job(dir.path(), &format!("p{page_size}-{night}"), &job);
            c.eq(&format!("{what}: exit code"), run.code, 2);
            c.eq(&format!("{what}: rejected"), run.count("rejected"), 1);
            c.eq(&format!("{what}: failed"), run.count("failed"), 0);
            let error = &run.summary["first_errors"][0];
            c.eq(
                &format!("{what}: the rejected copy"),
                error["source_id"].as_str(),
                Some(id.as_str()),
            );
            let reason = error["reason"].as_str().unwrap_or("");
            c.check(
                &format!("{what}: the error says it is a duplicate: {reason}"),
                reason.contains("duplicate source_id"),
            );
        }
        let db = Db::open(&target).await;
        let names = db.column("individual", "first_name").await;
        c.eq(
            &format!("page_size {page_size}: the first copy is kept"),
            names.get(&id).cloned().flatten(),
            Some(first.clone()),
        );
        c.check(
            &format!("page_size {page_size}: the record is connected"),
            db.connected_ids("individual").await.contains(&id),
        );
        db.close().await;
    }
    c.finish();
}
