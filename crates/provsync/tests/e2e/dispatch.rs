//! Dispatch: one job runs per target; the others wait in FIFO order and start when
//! it ends; a waiting job can be cancelled.

use crate::common::*;

fn time(st: &serde_json::Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(st[field].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{field} of {st}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_for_a_busy_target_wait_in_fifo_order_and_a_waiting_one_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let world = generate(dir.path(), 30_000, 5, 1);
    let state = state_url(dir.path());
    // Same data, different requests: B and C are new jobs, not resumptions of A.
    let job_a = Job::full(&world, &target)
        .option("page_size = 200")
        .write(&dir.path().join("a.toml"));
    let job_b = Job::full(&world, &target)
        .option("batch_size = 999")
        .write(&dir.path().join("b.toml"));
    let job_c = Job::full(&world, &target)
        .option("batch_size = 998")
        .write(&dir.path().join("c.toml"));

    let mut a = spawn(&job_a, &state, dir.path(), "a");
    let id_a = a.job_id();
    a.wait_for_status(&id_a, &state, "A has loaded pages", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) > 0
    });
    let mut b = spawn(&job_b, &state, dir.path(), "b");
    let id_b = b.job_id_queued();
    let mut c = spawn(&job_c, &state, dir.path(), "c");
    let id_c = c.job_id_queued();
    assert_eq!(status(&id_b, &state)["state"], "queued");
    assert_eq!(status(&id_c, &state)["state"], "queued");

    // Cancel C while it waits: it ends at once, B is unaffected.
    abort_job(&id_c, &state);
    let run_c = c.wait();
    run_c.expect_code(3);
    assert_eq!(status(&id_c, &state)["state"], "aborted");

    let run_a = a.wait();
    run_a.expect_code(0);
    let run_b = b.wait();
    run_b.expect_code(0);
    let (st_a, st_b) = (status(&id_a, &state), status(&id_b, &state));
    assert!(
        time(&st_b, "started_at") >= time(&st_a, "finished_at"),
        "B started before A finished: A {st_a} / B {st_b}"
    );
    let path: Vec<String> = st_b["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}->{}",
                t["from"].as_str().unwrap(),
                t["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        path[..2],
        [
            "accepted->queued".to_string(),
            "queued->running".to_string()
        ],
        "{path:?}"
    );
    // B saw A's data unchanged: nothing written, nothing swept.
    assert_eq!(
        run_b.count("created") + run_b.count("updated"),
        0,
        "{run_b}"
    );
    assert_eq!(run_b.count("disconnected"), 0, "{run_b}");
}
