//! Health needs no token; everything else needs a known bearer token with a
//! strong enough role; tokens never reach the logs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

async fn health_is_open_and_v1_needs_a_known_token_with_the_right_role(state: &str) {
    let s = Server::start_with_state(state);

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

    // The request log names tokens, never shows them (stderr is read by another
    // thread: wait for the line rather than race it).
    let logs = s.logs_with(&["reporting"]).await;
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
    let o = config_check(&file, &[]);
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
    let o = config_check(&file, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("tokens[0]") && err.contains("roles"), "{err}");
}

#[test]
fn environment_overrides_reach_every_key_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n").unwrap();
    let tokens = format!(
        "[{{name = \"ops\", sha256 = \"{}\", role = \"admin\"}}]",
        provsync::config::sha256_hex(ADMIN_TOKEN)
    );
    let o = config_check(
        &file,
        &[
            ("PROVSYNC_TOKENS", &tokens),
            ("PROVSYNC_CALLBACKS__SECRET", "an-env-secret-0123456789"),
            ("PROVSYNC_CALLBACKS__MAX_ATTEMPTS", "3"),
            ("PROVSYNC_STATE", "sqlite://from-env.db"),
            ("PROVSYNC_LISTN", "oops"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("ops (admin)"), "{out}");
    assert!(out.contains("sqlite://from-env.db"), "{out}");
    assert!(out.contains("signed (max 3 attempts"), "{out}");
    assert!(!out.contains("an-env-secret"), "{out}");
    assert!(
        err.contains("PROVSYNC_LISTN") && err.contains("ignored"),
        "{err}"
    );

    let o = config_check(&file, &[("PROVSYNC_CALLBACKS__MAX_ATTEMPTS", "lots")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("PROVSYNC_CALLBACKS__MAX_ATTEMPTS") && err.contains("callbacks.max_attempts"),
        "{err}"
    );
}

#[test]
fn config_check_lists_schedules_and_refuses_bad_ones_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let job = dir.path().join("nightly.toml");
    std::fs::write(
        &job,
        "[source]\ntype = \"file\"\npath = \"w.ndjson\"\n[target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n",
    )
    .unwrap();
    let good = "[[schedules]]\nname = \"codes\"\ncron = \"0 30 1 * * *\"\njob_file = \"nightly.toml\"\n\
                [[schedules]]\nname = \"bulk\"\ncron = \"0 30 1 * * *\"\njob_file = \"nightly.toml\"\nafter = \"codes\"\n";
    std::fs::write(&file, good).unwrap();
    let o = config_check(&file, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("schedules  2"), "{out}");
    assert!(
        out.contains("bulk `0 30 1 * * *`") && out.contains("after codes"),
        "{out}"
    );

    for (bad, expect) in [
        (
            good.replace(
                "0 30 1 * * *\"\njob_file = \"nightly.toml\"\nafter",
                "99 * * * *\"\njob_file = \"nightly.toml\"\nafter",
            ),
            "schedules[1].cron",
        ),
        (
            good.replace("after = \"codes\"", "after = \"nope\""),
            "schedules[1].after",
        ),
        (
            good.replace("after = \"codes\"", "after = \"codes\"\ncolour = 1"),
            "colour",
        ),
        (
            good.replace(
                "job_file = \"nightly.toml\"\nafter",
                "job_file = \"missing.toml\"\nafter",
            ),
            "schedules[1].job_file",
        ),
        (
            good.replace("name = \"bulk\"", "name = \"codes\""),
            "duplicate",
        ),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let o = config_check(&file, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad}");
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

crate::on_both_stores!(health_is_open_and_v1_needs_a_known_token_with_the_right_role);

/// `provsync token create`: (token, the `[[tokens]]` entry).
fn token_create(args: &[&str]) -> (String, String) {
    let o = std::process::Command::new(bin())
        .args(["token", "create"])
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (token, entry) = out.split_once('\n').unwrap();
    (token.to_owned(), entry.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_token_passes_config_check_and_serve_accepts_it() {
    let (token, entry) = token_create(&["--role", "operate", "--name", "crm-new"]);
    assert!(token.len() >= 64, "{token}");
    assert!(
        entry.contains(&provsync::config::sha256_hex(&token)) && !entry.contains(&token),
        "{entry}"
    );
    let (other, _) = token_create(&["--role", "operate"]);
    assert_ne!(token, other, "two tokens are the same");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, format!("listen = \"127.0.0.1:0\"\n{entry}")).unwrap();
    let o = config_check(&file, &[]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("crm-new (operate)"), "{out}");
    assert!(!err.contains("warning"), "{err}");

    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Server::start_configured(dir, &state, &entry);
    world_named(s.path(), 20);
    let request = named_job();
    let (st, v) = s
        .call(Method::POST, "/v1/jobs", Some(&token), Some(&request))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let end = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
    assert_eq!(end["requested_by"], "api:crm-new", "{end}");
}

#[test]
fn config_check_warns_on_no_tokens_and_on_well_known_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let o = config_check(&file, &[]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        err
    };

    let err = check("listen = \"127.0.0.1:0\"\n");
    assert!(
        err.contains("warning: no [[tokens]]") && err.contains("401"),
        "{err}"
    );

    for weak in ["test", "changeme", ""] {
        let entry = format!(
            "[[tokens]]\nname = \"weak\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
            provsync::config::sha256_hex(weak)
        );
        let err = check(&format!("{}{entry}", config_text("sqlite://s.db")));
        assert!(
            err.contains("warning: tokens: \"weak\" (admin)") && err.contains("anyone"),
            "{weak:?}: {err}"
        );
        assert!(
            !err.contains("\"crm\"") && !err.contains("\"reporting\""),
            "{err}"
        );
    }

    // The recipe's token is the well-known one its comment says to replace.
    let recipe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../recipes/gmc-nightly.toml"
    );
    let o = config_check(std::path::Path::new(recipe), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("well-known token \"test\""), "{err}");
}
