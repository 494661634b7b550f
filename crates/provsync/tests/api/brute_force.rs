//! Wrong tokens from one address spend its budget (`[http]
//! auth_failures_per_minute`); then every request of it that carries a token gets
//! 429 with `Retry-After`, a valid token included, until the budget refills. Other
//! addresses and requests without a token are unaffected; the log gives reasons,
//! never a token or its hash.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::common::*;

/// 12 a minute: a budget of 12, one unit back every 5 s (room for a slow machine
/// to send 12 requests before a unit refills).
const BUDGET: u32 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_lock_out_their_address_even_for_a_valid_token_until_the_budget_refills() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let extra = format!("[http]\nauth_failures_per_minute = {BUDGET}\n");
    let s = Server::start_configured(dir, &state, &extra);
    let wrong: Vec<String> = (0..BUDGET).map(|i| format!("guess-{i}-a8f3c1")).collect();

    for w in &wrong {
        let (st, v) = s.call(Method::GET, "/v1/jobs", Some(w), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    // The budget is spent: a correct token is not even checked.
    let resp = s
        .req(Method::GET, "/v1/jobs", Some(READ_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "Retry-After: {retry}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "too_many_requests", "{v}");
    let (st, v) = s
        .call(Method::POST, "/v1/jobs/x/abort", Some(OPERATE_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");

    // Without a token: the usual answers.
    let (st, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.call(Method::GET, "/v1/jobs", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");

    // Another address (all of 127/8 is loopback) keeps its own budget.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/v1/jobs", s.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Once Retry-After has passed, the valid token works again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (st, v) = s.get("/v1/jobs").await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let logs = s
        .logs_with(&["unknown token", "too many refused tokens", "127.0.0.1"])
        .await;
    let mut secrets: Vec<String> = wrong.clone();
    secrets.extend([READ_TOKEN.to_owned(), OPERATE_TOKEN.to_owned()]);
    for secret in secrets {
        for shown in [secret.clone(), provsync::config::sha256_hex(&secret)] {
            assert!(!logs.contains(&shown), "{shown} reached the log:\n{logs}");
        }
    }
}
