//! Bad input gets 400s with stable codes and the field at fault; never a 500.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn job_requests_and_filters_are_validated_with_codes_and_fields(state: &str) {
    let s = Server::start_with_state(state);
    let world = s.path().join("w.ndjson");
    let target = s.path().join("t.db");

    // Empty source type, and a bad option value: every field listed.
    let mut body = job(&world, &target);
    body["source"]["type"] = json!("");
    body["options"] = json!({"page_size": 0, "max_disconnect_share": 2.0});
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_job", "{v}");
    let f = fields(&v);
    for want in [
        "source.type",
        "options.page_size",
        "options.max_disconnect_share",
    ] {
        assert!(f.contains(&want.to_owned()), "{want} missing in {v}");
    }
    assert!(v["errors"][0]["code"].is_string() && v["errors"][0]["message"].is_string());

    // A value of the wrong type names its path.
    let mut body = job(&world, &target);
    body["options"] = json!({"max_failed_records": "lots"});
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_value", "{v}");
    assert_eq!(v["field"], "options.max_failed_records", "{v}");

    // Unknown fields, nested and top-level.
    let mut body = job(&world, &target);
    body["options"] = json!({"max_fail": 3});
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "unknown_field", "{v}");
    assert_eq!(v["field"], "options.max_fail", "{v}");
    let mut body = job(&world, &target);
    body["priority"] = json!("high");
    let (_, v) = s.submit(&body).await;
    assert_eq!(v["code"], "unknown_field", "{v}");
    assert_eq!(v["field"], "priority", "{v}");

    // A typo inside a connector section is refused before a job exists: 400
    // naming the key, with the connector's valid keys; nothing is stored.
    let (_, before) = s.get("/v1/jobs").await;
    let mut body = job(&world, &target);
    body["source"]["paht"] = body["source"]["path"].take();
    body["source"].as_object_mut().unwrap().remove("path");
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_job", "{v}");
    assert_eq!(v["field"], "source.paht", "{v}");
    assert_eq!(v["errors"][0]["code"], "unknown_field", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`path`"),
        "{v}"
    );
    let mut body = job(&world, &target);
    body["target"]["pool"] = json!(3);
    body["source"]["path"] = json!(7);
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["source.path", "target.pool"], "{v}");
    let (_, after) = s.get("/v1/jobs").await;
    assert_eq!(
        before["jobs"], after["jobs"],
        "a refused request created a job"
    );

    // Missing target.
    let (st, v) = s
        .submit(&json!({"source": {"type": "file", "path": "x"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "target", "{v}");

    // Malformed JSON: line and column.
    let resp = s
        .req(Method::POST, "/v1/jobs", Some(OPERATE_TOKEN))
        .header("content-type", "application/json")
        .body("{\n  \"source\": {\"type\": \"file\",\n}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "invalid_json", "{v}");
    assert!(v["message"].as_str().unwrap().contains("line 3"), "{v}");

    // List filters name the parameter at fault.
    for (q, param) in [
        ("state=bogus", "state"),
        ("since=yesterday", "since"),
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("colour=red", "colour"),
    ] {
        let (st, v) = s.get(&format!("/v1/jobs?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert_eq!(v["code"], "invalid_parameter", "{q}: {v}");
        assert_eq!(v["field"], param, "{q}: {v}");
    }
    let (st, v) = s.get("/v1/jobs?since=2020-01-01T00:00:00Z&limit=500").await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Unknown jobs.
    // A segment that does not decode gets the JSON error shape, naming it.
    for path in ["/v1/jobs/%ff", "/v1/jobs/%ff/errors"] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["code"], "invalid_parameter", "{path}: {v}");
        assert_eq!(v["field"], "path", "{path}: {v}");
    }
    for path in ["/v1/jobs/nope", "/v1/jobs/nope/errors"] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["code"], "job_not_found", "{v}");
    }
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/jobs/nope/abort",
            Some(OPERATE_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "job_not_found", "{v}");
}

crate::on_both_stores!(job_requests_and_filters_are_validated_with_codes_and_fields);
