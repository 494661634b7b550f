//! Bad input: malformed records are rejected with their source id and reason while
//! the rest loads; thresholds fail the run; bad job and mapping files are refused
//! with a precise message.

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
