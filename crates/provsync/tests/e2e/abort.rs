//! Abort of a running job: extraction stops, loaded pages' relations are processed,
//! the run ends `aborted` (exit 3) and the sweep disconnects nothing.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_run_ends_aborted_with_loaded_relations_processed_and_nothing_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 40_000, 3, 1);
    let snap = Snapshot::load(&world);
    let state = state_url(dir.path());
    let job = Job::full(&world, &target)
        .option("page_size = 200")
        .write(&dir.path().join("job.toml"));

    let mut bg = spawn(&job, &state, dir.path(), "run");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "some pages are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) > 0
    });
    abort_job(&id, &state);
    let run = bg.wait();
    run.expect_code(3);
    assert_eq!(run.state(), "aborted", "{run}");
    run.assert_reconciled();

    let mut c = Checks::default();
    c.check(
        &format!(
            "extracted {} should be below the world's {} (the abort landed mid-run)",
            run.count("extracted"),
            snap.extracted()
        ),
        run.count("extracted") < snap.extracted(),
    );
    c.check(
        "links of loaded pages are loaded (activities and relations created > 0)",
        run.kind_count("activity", "created") + run.kind_count("relation", "created") > 0,
    );
    c.eq(
        "every deferred link is booked: loaded + failed == deferred",
        run.count("relations_loaded") + run.count("relations_failed"),
        run.count("relations_staged"),
    );
    c.eq("counts.disconnected", run.count("disconnected"), 0);
    c.check(
        &format!("sweep.skipped is set: {}", run.summary["sweep"]),
        run.summary["sweep"]["skipped"].is_string(),
    );
    let st = status(&id, &state);
    c.eq("status.state", st["state"].as_str(), Some("aborted"));

    // The target holds what the run says it loaded, all connected.
    let db = Db::open(&target).await;
    let rows = |kind: &str| {
        let sql = format!("SELECT source_id FROM {}", table(kind));
        let db = &db;
        async move { db.ids(&sql).await.len() as u64 }
    };
    for kind in KINDS {
        c.eq(
            &format!("{} rows == per_kind.{kind}.created", table(kind)),
            rows(kind).await,
            run.kind_count(kind, "created"),
        );
    }
    for kind in KINDS {
        c.eq(
            &format!("disconnected {}", table(kind)),
            db.disconnected_ids(kind).await.len(),
            0,
        );
        let loaded = db.connected_ids(kind).await;
        c.check(
            &format!("every loaded {kind} is in the snapshot"),
            loaded.is_subset(&snap.ids(kind)),
        );
    }
    db.close().await;
    c.finish();
}
