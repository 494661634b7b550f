//! A run killed with SIGKILL resumes when the same job file is run again, and ends
//! with the same target contents as an uninterrupted run.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_and_ends_identical_to_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 40_000, 4, 1);
    let snap = Snapshot::load(&world);

    // The interrupted run.
    let target = Target::sqlite(dir.path(), "provider.db");
    let state = state_url(dir.path());
    let job = Job::full(&world, &target)
        .option("page_size = 200")
        .write(&dir.path().join("job.toml"));
    let mut bg = spawn(&job, &state, dir.path(), "killed");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "a few pages are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) >= 1000
    });
    bg.child.kill().unwrap(); // SIGKILL
    bg.child.wait().unwrap();
    let at_kill = status(&id, &state);
    assert_eq!(
        at_kill["state"].as_str(),
        Some("running"),
        "a killed job stays running until its lease lapses: {at_kill}"
    );

    let resumed = run(&job, &state);
    resumed.expect_code(0);
    assert_eq!(resumed.state(), "completed", "{resumed}");
    assert_eq!(resumed.job_id(), id, "the rerun resumes the killed job");
    resumed.assert_reconciled();

    // The same world, uninterrupted, into a fresh target with a fresh state store.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean_target = Target::sqlite(clean_dir.path(), "provider.db");
    let clean = run_job(
        clean_dir.path(),
        "clean",
        &Job::full(&world, &clean_target).option("page_size = 200"),
    );
    clean.expect_code(0);

    let mut c = Checks::default();
    c.eq(
        "resumed run: extracted",
        resumed.count("extracted"),
        snap.extracted(),
    );
    for kind in ENTITY_KINDS {
        c.eq(
            &format!("resumed run: {kind} created + updated + unchanged"),
            resumed.kind_count(kind, "created")
                + resumed.kind_count(kind, "updated")
                + resumed.kind_count(kind, "unchanged"),
            snap.count(kind),
        );
    }
    c.eq(
        "resumed run: every deferred link booked (loaded + failed == deferred)",
        resumed.count("relations_loaded") + resumed.count("relations_failed"),
        resumed.count("relations_staged"),
    );
    c.eq("resumed run: rejected", resumed.count("rejected"), 0);
    c.eq("resumed run: failed", resumed.count("failed"), 0);
    c.eq(
        "resumed run: disconnected",
        resumed.count("disconnected"),
        0,
    );

    let db = Db::open(&target).await;
    let clean_db = Db::open(&clean_target).await;
    check_target_matches(&mut c, &db, &snap, "resumed target").await;
    let (a, b) = (db.fingerprint().await, clean_db.fingerprint().await);
    for kind in KINDS {
        let (ra, rb) = (&a[kind], &b[kind]);
        let differing: Vec<_> = rb
            .iter()
            .filter(|(id, v)| ra.get(*id) != Some(v))
            .map(|(id, _)| id.clone())
            .chain(ra.keys().filter(|id| !rb.contains_key(*id)).cloned())
            .collect();
        c.check(
            &format!(
                "{}: {} rows differ from the uninterrupted run (connected, content_hash, columns), e.g. {:?}",
                table(kind),
                differing.len(),
                &differing[..differing.len().min(5)]
            ),
            differing.is_empty(),
        );
    }
    // Regression: the page in flight at the kill is written again on resume; its
    // change-log rows must not be logged twice.
    let dup = db
        .ids(
            "SELECT source_id FROM change_log WHERE change = 'created' \
             GROUP BY source_id HAVING count(*) > 1",
        )
        .await;
    assert!(
        dup.is_empty(),
        "{} source ids have more than one `created` change_log row after the resume, e.g. {:?}",
        dup.len(),
        dup.iter().take(5).collect::<Vec<_>>()
    );
    db.close().await;
    clean_db.close().await;
    c.finish();
}
