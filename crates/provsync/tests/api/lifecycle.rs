//! Abort of a running job over HTTP, and graceful shutdown on SIGTERM.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::common::*;

async fn abort_over_http_ends_a_running_job_aborted(state: &str) {
    let s = Server::start_with_state(state);
    let world = generate(s.path(), 20_000);
    let (_, extracted) = world_counts(&world);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["options"] = serde_json::json!({"page_size": 100});
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();

    s.wait_for(&id, "some pages loaded", Duration::from_secs(60), |v| {
        v["counts"]["total"]["created"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/jobs/{id}/abort"),
            Some(OPERATE_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["outcome"], "aborting", "{v}");
    assert_eq!(v["job_id"], id.as_str());
    let asked = Instant::now();

    let job = s.wait_terminal(&id).await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "aborted {took:?} after the request"
    );
    // Relations of what was loaded were processed: every deferred link was loaded
    // or failed, none left behind.
    let total = &job["counts"]["total"];
    assert_eq!(
        n(&total["relations_staged"]),
        n(&total["relations_loaded"]) + n(&total["relations_failed"]),
        "{job:#}"
    );
    assert!(n(&total["created"]) > 0, "{job:#}");
    assert_eq!(job["state"], "aborted", "{job:#}");
    assert!(job["abort_requested"].as_bool().unwrap(), "{job:#}");
    let got = n(&job["counts"]["total"]["extracted"]);
    assert!(
        got < extracted,
        "abort landed mid-run: {got} of {extracted}"
    );
    assert_eq!(n(&job["counts"]["total"]["disconnected"]), 0, "{job:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_promptly_with_exit_0() {
    let mut s = Server::start();
    let (st, _) = s.get("/v1/jobs").await;
    assert_eq!(st, StatusCode::OK);
    let mut child = s.child.take().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("server still running 10 s after SIGTERM:\n{}", s.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}:\n{}", s.logs());
    // It no longer accepts connections.
    assert!(s.req(Method::GET, "/healthz", None).send().await.is_err());
}

/// SIGTERM in the middle of a job: the server stops taking work and exits; the
/// next server on the same state store resumes the job from its ledger to the
/// same end a run without interruption reaches.
async fn a_job_running_at_sigterm_is_resumed_by_the_next_server(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 20_000);
    let (_, extracted) = world_counts(&world);
    let mut body = job(&world, &dir.path().join("provider.db"));
    body["options"] = serde_json::json!({"page_size": 200});
    let mut s = Server::start_configured(
        tempfile::tempdir().unwrap(),
        state,
        &free_form_api(dir.path()),
    );
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    s.wait_for(&id, "some pages loaded", Duration::from_secs(60), |v| {
        v["counts"]["total"]["created"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let mut child = s.child.take().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}:\n{}", s.logs());
    let s = Server::start_configured(
        tempfile::tempdir().unwrap(),
        state,
        &free_form_api(dir.path()),
    );
    // The stopped process's lease has not lapsed yet: the job is as it left it.
    let (_, half) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(half["state"], "running", "{half:#}");
    assert!(
        n(&half["counts"]["total"]["extracted"]) < extracted,
        "{half:#}"
    );
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", s.logs());
    let total = &done["counts"]["total"];
    assert_eq!(n(&total["extracted"]), extracted, "{done:#}");
    assert_eq!(
        n(&total["created"]) + n(&total["updated"]) + n(&total["unchanged"]),
        extracted,
        "every record has exactly one outcome: {done:#}"
    );
    assert_eq!(n(&total["failed"]) + n(&total["rejected"]), 0, "{done:#}");
}

crate::on_both_stores!(
    abort_over_http_ends_a_running_job_aborted,
    a_job_running_at_sigterm_is_resumed_by_the_next_server,
);

/// `serve` with a stage queue (`PROVSYNC_QUEUE`): the in-process one runs the same
/// distributed pipeline (pages through the queue, the barrier) inside the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_queue_runs_jobs_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Server::start_with_env(dir, &state, "", &[("PROVSYNC_QUEUE", "memory://")]);
    let world = generate(s.path(), 2_000);
    let (_, extracted) = world_counts(&world);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["options"] = serde_json::json!({"page_size": 250});
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let done = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", s.logs());
    let total = &done["counts"]["total"];
    assert_eq!(n(&total["extracted"]), extracted, "{done:#}");
    assert_eq!(n(&total["created"]), extracted, "{done:#}");
    assert!(
        !s.logs().contains("names no configuration key"),
        "{}",
        s.logs()
    );
}
