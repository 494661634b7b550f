//! Health needs no token; everything else needs a known bearer token with a
//! strong enough role; tokens never reach the logs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_v1_needs_a_known_token_with_the_right_role() {
    let s = Server::start();

    let (st, v) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Missing token.
    let resp = s.req(Method::GET, "/v1/jobs", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()
            .get("www-authenticate")
            .map(|h| h.to_str().unwrap()),
        Some("Bearer")
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "unauthorized", "{v}");

    // Wrong token, and a wrong scheme.
    let (st, v) = s
        .call(Method::GET, "/v1/jobs", Some("not-a-token"), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "unauthorized");
    let resp = s
        .req(Method::GET, "/v1/jobs", None)
        .header("authorization", format!("Basic {READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A read token may read but not operate.
    let (st, v) = s.get("/v1/jobs").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let body = json!({"source": {"type": "file"}, "target": {"type": "sqlite"}});
    let (st, v) = s
        .call(Method::POST, "/v1/jobs", Some(READ_TOKEN), Some(&body))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "forbidden");
    let (st, v) = s
        .call(Method::POST, "/v1/jobs/x/abort", Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // Admin is above operate: it gets past the role check (to validation here).
    let bad = json!({"source": {"type": ""}, "target": {"type": "sqlite"}});
    let (st, v) = s
        .call(Method::POST, "/v1/jobs", Some(ADMIN_TOKEN), Some(&bad))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Unknown routes and methods answer with the error table too.
    let (st, v) = s.get("/v1/nothing").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "not_found");
    let (st, v) = s
        .call(Method::DELETE, "/v1/jobs", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(v["code"], "method_not_allowed");

    // The request log names tokens, never shows them.
    let logs = s.logs();
    assert!(
        logs.contains("reporting"),
        "request log names the token:\n{logs}"
    );
    for secret in [
        READ_TOKEN,
        OPERATE_TOKEN,
        ADMIN_TOKEN,
        "not-a-token",
        "Bearer",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the log:\n{logs}"
        );
    }
}

#[test]
fn config_check_prints_names_and_roles_but_no_hashes_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, config_text("sqlite://s.db")).unwrap();
    let o = std::process::Command::new(bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("crm (operate)") && out.contains("tokens  3"),
        "{out}"
    );
    assert!(
        !out.contains(&provsync::config::sha256_hex(OPERATE_TOKEN)),
        "{out}"
    );

    std::fs::write(
        &file,
        config_text("sqlite://s.db").replace("role = \"read\"", "role = \"read\"\nroles = 1"),
    )
    .unwrap();
    let o = std::process::Command::new(bin())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("tokens[0]") && err.contains("roles"), "{err}");
}
