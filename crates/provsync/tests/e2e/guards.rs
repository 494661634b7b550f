//! The snapshot sweep's guards: mass disconnection is refused unless allowed; delta
//! runs and failed runs disconnect nothing.

use crate::common::*;

/// Night 1 loaded, then a copy of it without 30% of the individuals.
struct Setup {
    dir: tempfile::TempDir,
    target: Target,
    night1: Snapshot,
    thinned: std::path::PathBuf,
    dropped: std::collections::BTreeSet<String>,
}

async fn night_one_then_thinned_copy() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 1000, 21, 1);
    let night1 = Snapshot::load(&world);
    run_job(dir.path(), "night1", &Job::full(&world, &target)).expect_code(0);
    let (thinned, dropped) = drop_individuals(&world, &dir.path().join("thinned.ndjson"), 3);
    assert_eq!(dropped.len(), 300);
    Setup {
        dir,
        target,
        night1,
        thinned,
        dropped,
    }
}

/// Every record of `snap` is still connected, and nothing was disconnected.
async fn assert_nothing_disconnected(target: &Target, snap: &Snapshot, run: &Run) {
    let mut c = Checks::default();
    c.eq("counts.disconnected", run.count("disconnected"), 0);
    let db = Db::open(target).await;
    for kind in KINDS {
        c.same_ids(
            &format!("connected {}", table(kind)),
            &db.connected_ids(kind).await,
            &snap.ids(kind),
        );
        c.same_ids(
            &format!("disconnected {}", table(kind)),
            &db.disconnected_ids(kind).await,
            &Default::default(),
        );
    }
    c.eq(
        "`disconnected` change_log rows",
        db.ids("SELECT source_id FROM change_log WHERE change = 'disconnected'")
            .await,
        Default::default(),
    );
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_missing_30_percent_of_individuals_is_refused_and_disconnects_nothing() {
    let s = night_one_then_thinned_copy().await;
    let run = run_job(s.dir.path(), "thinned", &Job::full(&s.thinned, &s.target));
    run.expect_code(2);
    assert_eq!(run.state(), "completed_with_errors", "{run}");
    let refused = run.summary["sweep"]["refused"]
        .as_array()
        .unwrap_or_else(|| panic!("no sweep.refused: {run}"));
    assert!(!refused.is_empty(), "sweep.refused is empty: {run}");
    assert!(
        refused
            .iter()
            .any(|r| r.as_str().unwrap_or("").contains("US")),
        "sweep.refused does not name the scope US: {refused:?}"
    );
    assert_nothing_disconnected(&s.target, &s.night1, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_mass_disconnect_disconnects_the_missing_30_percent() {
    let s = night_one_then_thinned_copy().await;
    let job = Job::full(&s.thinned, &s.target).option("allow_mass_disconnect = true");
    let run = run_job(s.dir.path(), "thinned", &job);
    run.expect_code(0);
    run.assert_reconciled();
    let thinned = Snapshot::load(&s.thinned);
    let diff = Diff::between(&s.night1, &thinned);
    assert_eq!(diff.gone["individual"], s.dropped);

    let mut c = Checks::default();
    c.eq(
        "counts.disconnected",
        run.count("disconnected"),
        diff.expected_counts()["disconnected"],
    );
    c.check(
        &format!(
            "sweep.refused should be absent or empty: {}",
            run.summary["sweep"]
        ),
        run.summary["sweep"]["refused"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
    );
    let db = Db::open(&s.target).await;
    check_target_matches(&mut c, &db, &thinned, "after the allowed sweep").await;
    for kind in KINDS {
        c.same_ids(
            &format!("disconnected {}", table(kind)),
            &db.disconnected_ids(kind).await,
            &diff.gone[kind],
        );
        c.same_ids(
            &format!("`disconnected` change_log rows for {kind}"),
            &db.changes(&run.job_id(), kind, "disconnected").await,
            &diff.gone[kind],
        );
    }
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_run_disconnects_nothing() {
    let s = night_one_then_thinned_copy().await;
    let job = Job::full(&s.thinned, &s.target)
        .mode("delta")
        .option("allow_mass_disconnect = true");
    let run = run_job(s.dir.path(), "delta", &job);
    run.expect_code(0);
    run.assert_reconciled();
    assert_nothing_disconnected(&s.target, &s.night1, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_missing_source_file_fails_and_disconnects_nothing() {
    let s = night_one_then_thinned_copy().await;
    let missing = s.dir.path().join("no-such-file.ndjson");
    let job = Job::full(&missing, &s.target).option("allow_mass_disconnect = true");
    let run = run_job(s.dir.path(), "missing", &job);
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    assert!(
        run.summary["failure"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-file.ndjson"),
        "failure does not name the file: {run}"
    );
    assert_nothing_disconnected(&s.target, &s.night1, &run).await;
}
