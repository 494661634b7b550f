//! Dispatch under load, on both state stores: 50 concurrent submissions for one
//! target; exactly one runs at a time, the others wait and run in arrival order.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

fn ms(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("timestamp {v}: {e}"))
}

/// When a job entered the queue (its accepted -> queued transition), if it did.
fn queued_at(job: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    job["transitions"]
        .as_array()?
        .iter()
        .find(|t| t["to"] == "queued")
        .map(|t| ms(&t["at"]))
}

async fn fifty_concurrent_submissions(s: &Server) {
    let world = generate(s.path(), 100);
    let body = job(&world, &s.path().join("provider.db"));
    let submits = (0..50).map(|_| s.submit(&body));
    let answers = futures::future::join_all(submits).await;
    let mut ids = Vec::new();
    let mut running = 0;
    for (st, v) in &answers {
        assert_eq!(*st, StatusCode::ACCEPTED, "{v}");
        match v["state"].as_str() {
            Some("running") => running += 1,
            Some("queued") => {}
            other => panic!("unexpected state {other:?}: {v}"),
        }
        ids.push(v["job_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(running, 1, "exactly one of 50 runs at once: {answers:?}");

    let mut jobs = Vec::new();
    for id in &ids {
        let j = s.wait_terminal(id).await;
        assert_eq!(j["state"], "completed", "{j:#}");
        jobs.push(j);
    }
    // One at a time: sorted by start, each starts after the previous finished.
    jobs.sort_by_key(|j| ms(&j["timings"]["started_at"]));
    for pair in jobs.windows(2) {
        assert!(
            ms(&pair[1]["timings"]["started_at"]) >= ms(&pair[0]["timings"]["finished_at"]),
            "overlapping runs: {:#} / {:#}",
            pair[0]["timings"],
            pair[1]["timings"]
        );
    }
    // Arrival order: the queued jobs start in the order they were queued.
    let queued: Vec<_> = jobs.iter().filter_map(queued_at).collect();
    assert_eq!(queued.len(), 49);
    assert!(
        queued.windows(2).all(|w| w[0] <= w[1]),
        "queued jobs did not start in arrival order: {queued:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submissions_run_one_at_a_time_in_arrival_order_on_sqlite() {
    let s = Server::start();
    fifty_concurrent_submissions(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submissions_run_one_at_a_time_in_arrival_order_on_postgres() {
    let Some(db) = TempPgDb::create().await else {
        return;
    };
    let s = Server::start_with_state(&db.url);
    fifty_concurrent_submissions(&s).await;
    drop(s);
    db.drop_db().await;
    let _ = Duration::from_secs(0);
}

/// Fifty aborts fired at once at a queued job, and at the running one it waits
/// behind: every answer is 202 or 409 with the job's state, never a 500, and both
/// jobs end `aborted`.
async fn fifty_racing_aborts_answer_202_or_409_never_500(state: &str) {
    let s = Server::start_with_state(state);
    let world = generate(s.path(), 6_000);
    let body = job(&world, &s.path().join("provider.db"));
    let (_, first) = s.submit(&body).await;
    let (_, second) = s.submit(&body).await;
    assert_eq!(second["state"], "queued", "{second}");
    for v in [&second, &first] {
        let id = v["job_id"].as_str().unwrap();
        let path = format!("/v1/jobs/{id}/abort");
        let aborts =
            (0..50).map(|_| s.call(reqwest::Method::POST, &path, Some(OPERATE_TOKEN), None));
        let answers = futures::future::join_all(aborts).await;
        let accepted = answers
            .iter()
            .filter(|(st, _)| *st == StatusCode::ACCEPTED)
            .count();
        for (st, v) in &answers {
            assert!(
                *st == StatusCode::ACCEPTED || *st == StatusCode::CONFLICT,
                "{st}: {v}"
            );
            if *st == StatusCode::CONFLICT {
                assert_eq!(v["code"], "job_finished", "{v}");
            }
        }
        assert!(accepted >= 1, "no abort was accepted: {answers:?}");
        let end = s.wait_terminal(id).await;
        assert_eq!(end["state"], "aborted", "{end:#}");
    }
}

crate::on_both_stores!(fifty_racing_aborts_answer_202_or_409_never_500);
