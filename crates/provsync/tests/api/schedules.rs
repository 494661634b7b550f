//! Schedules: the manual trigger (auth, 404, 409 with the running job), `after`
//! ordering (a bulk sync held until the codes sync ends, or cancelled when it did
//! not complete), and two servers on one PostgreSQL store firing each tick once.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// `[[schedules]]` TOML from JSON entries.
fn schedules_toml(entries: &[Value]) -> String {
    toml::to_string(&json!({ "schedules": entries })).unwrap()
}

async fn trigger(s: &Server, name: &str, token: Option<&str>) -> (StatusCode, Value) {
    s.call(Method::POST, &format!("/v1/admin/sync/{name}"), token, None)
        .await
}

/// A job that takes a few seconds (20k individuals, small pages) into `db`.
fn slow_job(world: &std::path::Path, db: &std::path::Path) -> Value {
    let mut j = job(world, db);
    j["options"] = json!({"page_size": 100});
    j
}

async fn manual_trigger_starts_the_schedule_job_and_answers_409_while_it_runs(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 20_000);
    let db = dir.path().join("provider.db");
    let extra = schedules_toml(&[json!({
        "name": "nightly",
        "cron": "0 0 3 * * *",
        "job": slow_job(&world, &db),
    })]);
    let s = Server::start_configured(dir, state, &extra);

    // Auth first: no token, then roles below admin.
    let (st, v) = trigger(&s, "nightly", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    for weak in [READ_TOKEN, OPERATE_TOKEN] {
        let (st, v) = trigger(&s, "nightly", Some(weak)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["code"], "forbidden");
    }
    let (st, v) = trigger(&s, "weekly", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "schedule_not_found");
    assert!(v["message"].as_str().unwrap().contains("nightly"), "{v}");

    let (st, v) = trigger(&s, "nightly", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["schedule"], "nightly");
    let id = v["job_id"].as_str().unwrap().to_owned();

    // While it runs, a second trigger names it.
    let (st, v) = trigger(&s, "nightly", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "schedule_running");
    assert_eq!(v["job_id"], id.as_str(), "{v}");

    let (st, v) = s.get("/v1/schedules").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sched = &v["schedules"][0];
    assert_eq!(sched["name"], "nightly");
    assert_eq!(sched["cron"], "0 0 3 * * *");
    assert!(
        sched["next_at"].as_str().unwrap().ends_with("03:00:00Z"),
        "{sched}"
    );
    assert_eq!(sched["runs"][0]["fired_by"], "manual");
    assert_eq!(sched["runs"][0]["job_id"], id.as_str());
    assert_eq!(
        sched["runs"].as_array().unwrap().len(),
        1,
        "a refused trigger leaves no run"
    );

    let (_, job) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["requested_by"], "api:ops (schedule:nightly)", "{job}");

    // Once it has ended, the schedule can be triggered again.
    s.call(
        Method::POST,
        &format!("/v1/jobs/{id}/abort"),
        Some(OPERATE_TOKEN),
        None,
    )
    .await;
    s.wait_terminal(&id).await;
    let (st, v) = trigger(&s, "nightly", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_ne!(v["job_id"], id.as_str());
    let done = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "completed", "{done:#}");
}

async fn a_bulk_schedule_after_codes_waits_for_it_and_is_skipped_when_it_fails(state: &str) {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 20_000);
    let small = generate(dir.path(), 50);
    // Different targets, so only `after` (not dispatch FIFO) orders them.
    let extra = schedules_toml(&[
        json!({
            "name": "codes",
            "cron": "@yearly",
            "enabled": false,
            "job": slow_job(&world, &dir.path().join("codes.db")),
        }),
        json!({
            "name": "bulk",
            "cron": "@yearly",
            "enabled": false,
            "after": "codes",
            "job": job(&small, &dir.path().join("bulk.db")),
        }),
    ]);
    let s = Server::start_configured(dir, state, &extra);

    // Round 1: codes completes, then bulk runs.
    let (st, v) = trigger(&s, "codes", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let codes = v["job_id"].as_str().unwrap().to_owned();
    let (st, v) = trigger(&s, "bulk", Some(ADMIN_TOKEN)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "accepted", "held while codes runs: {v}");
    assert_eq!(v["after_job"], codes.as_str());
    let bulk = v["job_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, b) = s.get(&format!("/v1/jobs/{bulk}")).await;
    let (_, c) = s.get(&format!("/v1/jobs/{codes}")).await;
    if c["state"] == "running" {
        assert_eq!(
            b["state"], "accepted",
            "bulk started before codes ended: {b:#}"
        );
    }
    let c = s.wait_terminal(&codes).await;
    assert_eq!(c["state"], "completed", "{c:#}");
    let b = s.wait_terminal(&bulk).await;
    assert_eq!(b["state"], "completed", "{b:#}");
    let codes_end = c["timings"]["finished_at"].as_str().unwrap().to_owned();
    let bulk_start = b["timings"]["started_at"].as_str().unwrap().to_owned();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&bulk_start).unwrap()
            >= chrono::DateTime::parse_from_rfc3339(&codes_end).unwrap(),
        "bulk started {bulk_start}, codes ended {codes_end}"
    );

    // Round 2: codes is aborted, so bulk is cancelled with the reason.
    let (_, v) = trigger(&s, "codes", Some(ADMIN_TOKEN)).await;
    let codes = v["job_id"].as_str().unwrap().to_owned();
    let (_, v) = trigger(&s, "bulk", Some(ADMIN_TOKEN)).await;
    let bulk = v["job_id"].as_str().unwrap().to_owned();
    assert_eq!(v["after_job"], codes.as_str(), "{v}");
    s.call(
        Method::POST,
        &format!("/v1/jobs/{codes}/abort"),
        Some(OPERATE_TOKEN),
        None,
    )
    .await;
    let b = s.wait_terminal(&bulk).await;
    assert_eq!(b["state"], "aborted", "{b:#}");
    let failure = b["failure"].as_str().unwrap();
    assert!(
        failure.contains("skipped") && failure.contains(&codes) && failure.contains("aborted"),
        "{failure}"
    );
    assert!(b["timings"]["started_at"].is_null(), "it never ran: {b:#}");
}

/// The ticks of a `*/2` seconds schedule in [from, to].
fn even_seconds(
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<i64> {
    let first = (from.timestamp() + 1) / 2 * 2;
    (first..=to.timestamp())
        .step_by(2)
        .map(|s| s * 1000)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_store_fire_each_tick_exactly_once() {
    let Some(db) = TempPgDb::create().await else {
        return;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let world = generate(dir_a.path(), 20);
    let target = dir_a.path().join("provider.db");
    let extra = schedules_toml(&[json!({
        "name": "tick2s",
        "cron": "*/2 * * * * *",
        "job": job(&world, &target),
    })]);
    let a = Server::start_configured(dir_a, &db.url, &extra);
    let b = Server::start_configured(tempfile::tempdir().unwrap(), &db.url, &extra);
    // Count only ticks after both were up, and stop 20 s later.
    let from = chrono::Utc::now() + chrono::Duration::milliseconds(1000);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(21)).await;
    let to = chrono::Utc::now() - chrono::Duration::milliseconds(1500);
    assert!(started.elapsed() < Duration::from_secs(40));
    // Stop both before reading, so no tick fires between the two queries.
    let logs = format!("{}\n{}", a.logs(), b.logs());
    drop(a);
    drop(b);

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
        "SELECT tick_at, job_id, outcome FROM provsync_state.schedule_runs \
         WHERE schedule = 'tick2s' AND fired_by = 'cron' ORDER BY tick_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = even_seconds(from, to);
    assert!(expected.len() >= 9, "window too short: {expected:?}");
    for t in &expected {
        let n = rows.iter().filter(|r| r.0 == *t).count();
        assert_eq!(n, 1, "tick {t} recorded {n} times: {rows:?}");
    }
    // Every fired tick has its own job, and no other job was created.
    let fired: Vec<&String> = rows.iter().filter_map(|r| r.1.as_ref()).collect();
    let jobs: Vec<(String, String)> =
        sqlx::query_as("SELECT id, requested_by FROM provsync_state.jobs ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(jobs.len(), fired.len(), "{jobs:?} vs {rows:?}");
    assert!(jobs.iter().all(|(_, by)| by == "schedule:tick2s"));
    let mut ids: Vec<&String> = jobs.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), fired.len());
    let fired_count = rows.iter().filter(|r| r.2 == "fired").count();
    assert!(
        fired_count * 2 >= rows.len(),
        "most ticks should run a job (a 20-record job takes well under 2 s): {rows:?}"
    );
    assert!(logs.contains("schedule fired"), "{logs}");
    pool.close().await;
    db.drop_db().await;
}

crate::on_both_stores!(
    manual_trigger_starts_the_schedule_job_and_answers_409_while_it_runs,
    a_bulk_schedule_after_codes_waits_for_it_and_is_skipped_when_it_fails,
);
