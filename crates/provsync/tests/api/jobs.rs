//! Jobs submitted over HTTP run in the background to their end; status, list and
//! errors routes report them.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

/// A copy of `src` with a truncated line and an individual without `last_name`
/// inserted after its 50th line: two rejected records.
fn with_bad_lines(src: &Path, dst: &Path) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let individual = lines
        .iter()
        .find(|l| l.contains(r#""kind":"individual""#))
        .unwrap();
    let mut out: Vec<String> = lines[..50].iter().map(|l| l.to_string()).collect();
    out.push(r#"{"kind":"individual","source_id":"API_TRUNCATED","scope":"US","first_"#.into());
    let mut v: Value = serde_json::from_str(individual).unwrap();
    v["source_id"] = Value::String("API_NO_LAST_NAME".into());
    v.as_object_mut().unwrap().remove("last_name");
    out.push(v.to_string());
    out.extend(lines[50..].iter().map(|l| l.to_string()));
    std::fs::write(dst, out.join("\n") + "\n").unwrap();
    dst.to_path_buf()
}

async fn a_job_submitted_over_http_completes_and_is_reported(state: &str) {
    let s = Server::start_with_state(state);
    let world = world_named(s.path(), 300);
    let (_, extracted) = world_counts(&world);

    // Over the configured connections: an operate token names them.
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/jobs",
            Some(OPERATE_TOKEN),
            Some(&named_job()),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();

    let job = s.wait_terminal(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    let total = &job["counts"]["total"];
    assert_eq!(n(&total["extracted"]), extracted, "{job:#}");
    // Every record (links too) is new to the empty target.
    assert_eq!(n(&total["created"]), extracted, "{job:#}");
    assert_eq!(n(&total["rejected"]) + n(&total["failed"]), 0, "{job:#}");
    assert_eq!(n(&total["disconnected"]), 0, "{job:#}");
    // Per-kind counts add up to the total.
    let per_kind = job["counts"]["per_kind"].as_object().unwrap();
    let sum: u64 = per_kind.values().map(|c| n(&c["extracted"])).sum();
    assert_eq!(sum, extracted, "{job:#}");
    assert_eq!(n(&job["errors"]["total"]), 0);
    assert_eq!(job["requested_by"], "api:crm");
    assert_eq!(
        job["connections"],
        serde_json::json!({"source": "world", "target": "warehouse"}),
        "{job:#}"
    );
    assert_eq!(job["stage"], "done", "{job:#}");
    for t in ["created_at", "started_at", "finished_at"] {
        assert!(job["timings"][t].is_string(), "{t}: {job:#}");
    }
    let trans = job["transitions"].as_array().unwrap();
    assert!(trans.iter().all(|t| t["at"].is_string()), "{job:#}");
    assert_eq!(trans.last().unwrap()["to"], "completed", "{job:#}");

    // The CLI sees the same run.
    let o = std::process::Command::new(bin())
        .args(["status", &id, "--json", "--state", &s.state_url()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(&cli["counts"], total);

    // Listing with filters.
    let (st, v) = s.get("/v1/jobs?state=completed&limit=10").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["jobs"][0]["job_id"], id.as_str());
    assert_eq!(&v["jobs"][0]["counts"], total, "{v}");
    assert!(v["jobs"][0]["duration_ms"].is_i64(), "{v}");
    // `provsync jobs --json` answers the same page.
    let o = std::process::Command::new(bin())
        .args(["jobs", "--json", "--state", &s.state_url()])
        .args(["--state-filter", "completed", "--limit", "10"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap(), v);
    let target = v["jobs"][0]["target"].as_str().unwrap().to_owned();
    let (_, v) = s
        .get(&format!("/v1/jobs?target={}", urlencode(&target)))
        .await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = s.get("/v1/jobs?state=running").await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = s.get("/v1/jobs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = s.get("/v1/jobs?offset=1").await;
    assert_eq!(v["jobs"].as_array().unwrap().len(), 0, "{v}");

    // Errors: none, in both formats.
    let (st, v) = s.get(&format!("/v1/jobs/{id}/errors")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 0);

    // A finished job cannot be aborted.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/v1/jobs/{id}/abort"),
            Some(OPERATE_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "job_finished", "{v}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn rejected_records_are_listed_as_json_and_csv(state: &str) {
    let s = Server::start_with_state(state);
    let world = generate(s.path(), 300);
    let bad = with_bad_lines(&world, &s.path().join("bad.ndjson"));
    let (st, v) = s.submit(&job(&bad, &s.path().join("provider.db"))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["state"], "completed_with_errors", "{job:#}");
    assert_eq!(n(&job["counts"]["total"]["rejected"]), 2, "{job:#}");
    assert_eq!(n(&job["errors"]["total"]), 2, "{job:#}");
    assert_eq!(job["errors"]["first"].as_array().unwrap().len(), 2);

    let (st, v) = s.get(&format!("/v1/jobs/{id}/errors")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2);
    assert!(
        errs.iter()
            .any(|e| e["source_id"] == "API_NO_LAST_NAME" && e["reason"].is_string()),
        "{v}"
    );
    let (_, v) = s
        .get(&format!("/v1/jobs/{id}/errors?offset=1&limit=1"))
        .await;
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    let (st, v) = s.get(&format!("/v1/jobs/{id}/errors?limit=5000")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "limit");

    let resp = s
        .req(
            Method::GET,
            &format!("/v1/jobs/{id}/errors"),
            Some(READ_TOKEN),
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rows.headers().unwrap(),
        vec!["page_no", "stage", "kind", "source_id", "reason"]
    );
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 2, "{text}");
    assert!(
        records.iter().any(|r| &r[3] == "API_NO_LAST_NAME"),
        "{text}"
    );
}

async fn a_job_queued_behind_another_of_the_same_target_is_picked_up_by_the_runner(state: &str) {
    let s = Server::start_with_state(state);
    let world = generate(s.path(), 2_000);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["options"] = serde_json::json!({"page_size": 200});
    let (st, first) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    let (st, second) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{second}");
    assert!(
        matches!(second["state"].as_str(), Some("queued" | "running")),
        "{second}"
    );
    for v in [&first, &second] {
        let job = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "completed", "{job:#}");
    }
}

crate::on_both_stores!(
    a_job_submitted_over_http_completes_and_is_reported,
    rejected_records_are_listed_as_json_and_csv,
    a_job_queued_behind_another_of_the_same_target_is_picked_up_by_the_runner
);
