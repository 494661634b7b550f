//! Replay: after fixing the feed, a run's rejected records are re-run as a new
//! delta job that touches only them.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

async fn replay_reruns_only_the_failed_records_once_the_feed_is_fixed(state: &str) {
    let s = Server::start_with_state(state);
    let world = generate(s.path(), 300);
    let text = std::fs::read_to_string(&world).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let individual = lines
        .iter()
        .find(|l| l.contains(r#""kind":"individual""#))
        .unwrap();
    let mut broken: Value = serde_json::from_str(individual).unwrap();
    broken["source_id"] = Value::String("API_REPLAYED".into());
    broken.as_object_mut().unwrap().remove("last_name");
    let feed = s.path().join("feed.ndjson");
    std::fs::write(&feed, format!("{text}{broken}\n")).unwrap();
    let db = s.path().join("provider.db");

    let (st, v) = s.submit(&job(&feed, &db)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let first = v["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_terminal(&first).await;
    assert_eq!(done["state"], "completed_with_errors", "{done:#}");
    assert_eq!(n(&done["counts"]["total"]["rejected"]), 1, "{done:#}");

    // The MDM fixes the record; the feed is read again, only that record goes in.
    let mut fixed = broken.clone();
    fixed["last_name"] = Value::String("Fixed".into());
    std::fs::write(&feed, format!("{text}{fixed}\n")).unwrap();
    let path = format!("/v1/jobs/{first}/replay");
    let (st, v) = s.call(Method::POST, &path, Some(READ_TOKEN), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a read token cannot replay: {v}");
    // The run wrote its connectors out in full: replaying it needs what
    // submitting it did.
    let (st, v) = s.call(Method::POST, &path, Some(OPERATE_TOKEN), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("needs role admin"),
        "{v}"
    );
    let (st, v) = s.call(Method::POST, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["replay_of"], first.as_str(), "{v}");
    let replay = v["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_terminal(&replay).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let total = &done["counts"]["total"];
    assert_eq!(n(&total["extracted"]), 1, "{done:#}");
    assert_eq!(n(&total["created"]), 1, "{done:#}");
    assert_eq!(n(&total["unchanged"]), 0, "{done:#}");
    assert_eq!(
        n(&total["disconnected"]),
        0,
        "a replay never sweeps: {done:#}"
    );

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let (last, connected): (String, i64) = sqlx::query_as(
        "SELECT last_name, connected FROM individuals WHERE source_id = 'API_REPLAYED'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((last.as_str(), connected), ("Fixed", 1));
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM individuals WHERE connected = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(all, 301, "the first run's records are untouched");
    pool.close().await;

    // Nothing left to replay, and unknown jobs are named.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/jobs/{replay}/replay"),
            Some(OPERATE_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "nothing_to_replay", "{v}");
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/jobs/nope/replay",
            Some(OPERATE_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "job_not_found", "{v}");
}

crate::on_both_stores!(replay_reruns_only_the_failed_records_once_the_feed_is_fixed);
