//! `GET /metrics` (Prometheus text, read token) and `GET /openapi.json` (public
//! OpenAPI 3 document), checked against the live server; the document is also
//! checked by the independent `openapi-spec-validator` that `.ci/run` installs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

/// Sum of the samples of `name` whose labels include every `labels` pair.
fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

/// At the default log level (no `PROVSYNC_LOG`), an operator sees each job
/// accepted and finished and each refused token, never the token itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_jobs_and_refused_tokens_at_the_default_level() {
    let s = Server::start();
    let world = generate(s.path(), 30);
    let request = job(&world, &s.path().join("target.db"));
    let (st, v) = s.submit(&request).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let end = s.wait_terminal(&id).await;
    assert_eq!(end["state"], "completed", "{end}");

    let bad = "not-a-real-token-41d7c2";
    let (st, _) = s.call(Method::GET, "/v1/jobs", Some(bad), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(Method::POST, "/v1/jobs", Some(READ_TOKEN), Some(&request))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let logs = s
        .logs_with(&[
            "job accepted",
            "job finished",
            "unknown token",
            "needs operate",
        ])
        .await;
    let line = |what: &str| {
        logs.lines()
            .find(|l| l.contains(what) && l.contains(&id))
            .unwrap_or_else(|| panic!("no `{what}` line for {id}:\n{logs}"))
    };
    let accepted = line("job accepted");
    assert!(accepted.contains("kind=provider-sync"), "{accepted}");
    assert!(accepted.contains("target="), "{accepted}");
    let finished = line("job finished");
    assert!(finished.contains("state=completed"), "{finished}");
    assert!(
        finished.contains(&format!(
            "extracted={}",
            n(&end["counts"]["total"]["extracted"])
        )),
        "{finished}"
    );
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("token refused"))
        .collect();
    assert!(
        refused
            .iter()
            .any(|l| l.contains("route=/v1/jobs") && l.contains("unknown token")),
        "{logs}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("route=/v1/jobs") && l.contains("needs operate")),
        "{logs}"
    );
    for secret in [bad, &provsync::config::sha256_hex(bad), READ_TOKEN] {
        assert!(!logs.contains(secret), "{secret} is in the log:\n{logs}");
    }
}

async fn scrape(s: &Server, token: Option<&str>) -> (StatusCode, String) {
    let resp = s
        .req(Method::GET, "/metrics", token)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_and_count_a_finished_job() {
    let s = Server::start();
    let (st, body) = scrape(&s, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, body) = scrape(&s, Some("not-a-token")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, _) = scrape(&s, Some(READ_TOKEN)).await;
    assert_eq!(st, StatusCode::OK);

    let world = generate(s.path(), 200);
    let (_, extracted) = world_counts(&world);
    let (st, v) = s.submit(&job(&world, &s.path().join("provider.db"))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["state"], "completed", "{done:#}");

    // The runner records the job just after its final state is stored.
    let start = Instant::now();
    let text = loop {
        let (st, text) = scrape(&s, Some(READ_TOKEN)).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        if text
            .lines()
            .any(|l| l == r#"provsync_jobs_finished_total{state="completed"} 1"#)
        {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no finished job in the metrics:\n{text}\nserver log:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sum = |name: &str, labels: &[(&str, &str)]| {
        sample_sum(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}:\n{text}"))
    };
    let records = "provsync_records_total";
    assert_eq!(
        sum(records, &[("stage", "extract"), ("outcome", "extracted")]),
        extracted as f64
    );
    assert_eq!(
        sum(records, &[("stage", "load"), ("outcome", "created")]),
        extracted as f64
    );
    assert_eq!(
        sum(
            records,
            &[
                ("stage", "extract"),
                ("outcome", "extracted"),
                ("kind", "individual")
            ]
        ),
        200.0
    );
    assert_eq!(
        sum(records, &[("stage", "load"), ("outcome", "failed")]),
        0.0
    );
    assert_eq!(sum("provsync_record_errors_total", &[]), 0.0);
    assert_eq!(sum("provsync_job_duration_seconds_count", &[]), 1.0);
    assert!(sum("provsync_pages_total", &[]) >= 1.0, "{text}");
    assert_eq!(sum("provsync_jobs_running", &[]), 0.0);
    // The queue-depth gauge appears once a target ever had a queued job; none here.
    assert!(sample_sum(&text, "provsync_queue_depth", &[]).unwrap_or(0.0) == 0.0);
    // HTTP requests by route template and status.
    assert_eq!(
        sum(
            "provsync_http_requests_total",
            &[("method", "POST"), ("route", "/v1/jobs"), ("status", "202")]
        ),
        1.0
    );
    assert!(
        sum(
            "provsync_http_requests_total",
            &[("route", "/v1/jobs/{id}"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        sum(
            "provsync_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ) >= 2.0
    );
    assert!(
        sum(
            "provsync_http_request_duration_seconds_count",
            &[("route", "/v1/jobs/{id}")]
        ) >= 1.0
    );
    assert!(
        text.contains("# TYPE provsync_http_request_duration_seconds histogram"),
        "{text}"
    );
    // Target calls, by connector type and operation, with their latency.
    let upserts = sum(
        "provsync_target_calls_total",
        &[("target", "sqlite"), ("op", "upsert"), ("outcome", "ok")],
    );
    assert!(upserts >= 1.0, "{text}");
    assert_eq!(
        sum(
            "provsync_target_call_seconds_count",
            &[("target", "sqlite"), ("op", "upsert")]
        ),
        upserts
    );
    assert_eq!(
        sample_sum(
            &text,
            "provsync_target_calls_total",
            &[("outcome", "error")]
        ),
        None,
        "no call failed: {text}"
    );
}

/// Every route of the router, with its method, and whether it needs a token.
const ROUTES: [(&str, &str, bool); 14] = [
    ("/healthz", "get", false),
    ("/readyz", "get", false),
    ("/metrics", "get", true),
    ("/openapi.json", "get", false),
    ("/v1/jobs", "post", true),
    ("/v1/jobs", "get", true),
    ("/v1/jobs/{id}", "get", true),
    ("/v1/jobs/{id}/abort", "post", true),
    ("/v1/jobs/{id}/replay", "post", true),
    ("/v1/codes-sync", "post", true),
    ("/v1/jobs/{id}/errors", "get", true),
    ("/v1/schedules", "get", true),
    ("/v1/admin/sync/{schedule}", "post", true),
    ("/v1/connections", "get", true),
];

async fn fetch_document(s: &Server) -> (Value, String) {
    let resp = s
        .req(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).expect("the document is JSON");
    (v, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_public_and_documents_every_route() {
    let s = Server::start();
    let (doc, _) = fetch_document(&s).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(bearer["scheme"], "bearer", "{bearer}");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, method, secured) in ROUTES {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"))[method];
        assert!(op.is_object(), "{method} {path} is not documented");
        documented += 1;
        assert_eq!(
            op.get("security").is_some(),
            secured,
            "{method} {path}: security {op:#}"
        );
        if secured {
            assert_eq!(op["security"][0]["bearer"], serde_json::json!([]), "{path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path}");
        }
        if path.contains("{id}") {
            assert_eq!(op["parameters"][0]["name"], "id", "{path}");
            assert_eq!(op["parameters"][0]["in"], "path", "{path}");
        }
    }
    let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        ops, documented,
        "documented routes the router lacks: {paths:#?}"
    );
    // The request body and the error body.
    let post = &paths["/v1/jobs"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobRequest"
    );
    for status in ["400", "401", "403", "413", "500"] {
        assert_eq!(
            post["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ApiError",
            "{status}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let err = &schemas["ApiError"];
    for f in ["code", "message", "field", "errors"] {
        assert!(err["properties"][f].is_object(), "{f}: {err:#}");
    }
    let codes = schemas["ErrorCode"]["enum"].as_array().unwrap();
    assert!(codes.contains(&Value::from("invalid_job")), "{codes:?}");
    let req = &schemas["JobRequest"];
    let required: Vec<&str> = req["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["source", "target"], "{req:#}");

    // Every documented operation exists on the live server: no route-level 404/405.
    for (path, method, _) in ROUTES {
        let url = path
            .replace("{id}", "no-such-job")
            .replace("{schedule}", "no-such-schedule");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = s
            .req(m, &url, Some(ADMIN_TOKEN))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {url}: {body}"
        );
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .map(|v| v["code"].clone());
        assert_ne!(
            code,
            Some(Value::from("not_found")),
            "{method} {url}: {body}"
        );
    }
}

/// The workspace's `.ci/.venv/bin/openapi-spec-validator`.
fn validator() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/.venv/bin/openapi-spec-validator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_passes_openapi_spec_validator() {
    let tool = validator();
    if !tool.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must install {} (see .ci/run)",
            tool.display()
        );
        eprintln!(
            "skipped: {} not installed (`.ci/run` installs it)",
            tool.display()
        );
        return;
    }
    let s = Server::start();
    let (_, text) = fetch_document(&s).await;
    let file = s.path().join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(&tool)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The workspace's `.ci/.venv/bin/schemathesis`.
fn schemathesis() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/.venv/bin/schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_on_any_route() {
    let tool = schemathesis();
    if !tool.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must install {} (see .ci/run)",
            tool.display()
        );
        eprintln!(
            "skipped: {} not installed (`.ci/run` installs it)",
            tool.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    // A schedule, so the manual trigger has one to start.
    let extra = "[[schedules]]\nname = \"nightly\"\ncron = \"0 0 3 * * *\"\n\
                 [schedules.job.source]\ntype = \"file\"\npath = \"w.ndjson\"\n\
                 [schedules.job.target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n";
    let s = Server::start_configured(dir, &state, extra);
    let out = tokio::process::Command::new(&tool)
        .arg("run")
        .arg(format!("{}/openapi.json", s.base))
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "30", "--seed", "1", "--no-color"])
        .args(["--generation-database", "none", "--request-timeout", "20"])
        .arg("--report-dir")
        .arg(s.path().join("schemathesis"))
        .current_dir(s.path())
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.logs()
    );
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(
        !s.logs().contains(ADMIN_TOKEN),
        "the token leaked into the log"
    );
}
