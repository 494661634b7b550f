//! `POST /v1/codes-sync`: a codes-sync job over a code-list source, and its
//! validation.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

fn nucc() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/nucc/nucc_taxonomy_231.csv.gz"
    )
    .to_string()
}

async fn codes_sync_loads_the_code_list_and_refuses_another_kind(state: &str) {
    let s = Server::start_with_state(state);
    let db = s.path().join("provider.db");
    let body = json!({
        "scope": ["US"],
        "source": {"type": "nucc", "path": nucc()},
        "target": {"type": "sqlite", "url": format!("sqlite://{}", db.display())},
    });
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/codes-sync",
            Some(ADMIN_TOKEN),
            Some(&body),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["kind"], "codes-sync", "{job:#}");
    assert_eq!(
        n(&job["counts"]["per_kind"]["code"]["created"]),
        874,
        "{job:#}"
    );

    let mut wrong = body.clone();
    wrong["kind"] = json!("provider-sync");
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/codes-sync",
            Some(ADMIN_TOKEN),
            Some(&wrong),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "kind", "{v}");
    let (st, _) = s
        .call(
            Method::POST,
            "/v1/codes-sync",
            Some(READ_TOKEN),
            Some(&body),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

crate::on_both_stores!(codes_sync_loads_the_code_list_and_refuses_another_kind);
