//! Least privilege: jobs run over the connections the administrator configured. A
//! caller cannot make the server read or write a file of its choosing or reach a
//! host of its choosing: connectors written out in full are refused unless the
//! `[api] free_form_connectors` setting allows them (to admin tokens), and then
//! only within the data folders and hosts configured.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// The request of the issue: the server's password file into a database anywhere.
fn hostile(dir: &std::path::Path) -> Value {
    json!({
        "source": {"type": "file", "path": "/etc/passwd"},
        "target": {"type": "sqlite", "url": format!("sqlite://{}/evil.db", dir.display())},
    })
}

async fn post(s: &Server, token: &str, body: &Value) -> (StatusCode, Value) {
    s.call(Method::POST, "/v1/jobs", Some(token), Some(body))
        .await
}

fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_written_out_in_full_are_refused_by_default_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    // An `[api]` table without the setting: the default.
    let s = Server::start_configured(dir, &state, "[api]\n");
    let elsewhere = tempfile::tempdir().unwrap();
    for token in [OPERATE_TOKEN, ADMIN_TOKEN] {
        let (st, v) = post(&s, token, &hostile(elsewhere.path())).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["code"], "forbidden", "{v}");
        assert_eq!(v["field"], "source", "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains("[api] free_form_connectors"), "{m}");
        assert!(m.contains("GET /v1/connections"), "{m}");
        // Nothing read, nothing written.
        assert!(!m.contains("root"), "{m}");
    }
    let (st, v) = post(
        &s,
        OPERATE_TOKEN,
        &json!({"source": "world", "target": {"type": "sqlite", "url": "sqlite://x.db"}}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["field"], "target", "{v}");
    assert!(!elsewhere.path().join("evil.db").exists());
    assert!(!s.path().join("x.db").exists());
    let (_, jobs) = s.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "no job was created: {jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_setting_on_only_admin_tokens_reach_only_the_data_folders_and_listed_hosts() {
    // The test servers allow full sections to admin tokens, within their own
    // folder and the repository, and hosts 127.0.0.1 only.
    let s = Server::start();
    let elsewhere = tempfile::tempdir().unwrap();

    let (st, v) = post(&s, OPERATE_TOKEN, &hostile(s.path())).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("has role operate") && m.contains("needs role admin"),
        "{m}"
    );

    let (st, v) = post(&s, ADMIN_TOKEN, &hostile(elsewhere.path())).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(fields(&v), ["source.path", "target.url"], "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("outside the data folders"),
        "{v}"
    );
    assert!(!elsewhere.path().join("evil.db").exists());

    // A way out of the folder by `..` or by a link is closed too.
    std::os::unix::fs::symlink("/etc", s.path().join("etc")).unwrap();
    for path in [
        s.path().join("etc/passwd"),
        s.path().join("../../etc/passwd"),
    ] {
        let body = json!({"source": {"type": "file", "path": path},
                          "target": {"type": "sqlite", "url": "sqlite://t.db"}});
        let (st, v) = post(&s, ADMIN_TOKEN, &body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path:?}: {v}");
        assert_eq!(fields(&v), ["source.path"], "{v}");
    }

    // Hosts: the cloud metadata address and a host off the list.
    for (url, shown) in [
        ("http://169.254.169.254/latest", "169.254.169.254:80"),
        ("https://onekey.example/api", "onekey.example:443"),
    ] {
        let body = json!({
            "source": {"type": "onekey", "url": url, "api_key_env": "HOME"},
            "target": "warehouse",
        });
        let (st, v) = post(&s, ADMIN_TOKEN, &body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(fields(&v), ["source.url"], "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains(shown) && m.contains("[api] allowed_hosts"),
            "{m}"
        );
    }

    // Within the bounds, an admin token runs a job written out in full.
    let world = generate(s.path(), 20);
    let (st, v) = s.submit(&job(&world, &s.path().join("inside.db"))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let end = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
    assert_eq!(end["state"], "completed", "{end}");
    assert_eq!(end["connections"], json!({"source": null, "target": null}));
}

/// A job over named connections runs with an operate token; its status names the
/// connections; neither the secret a connection references nor the reference
/// reaches the status, the listing or the log.
async fn a_job_over_named_connections_names_them_and_none_of_their_secrets(state: &str) {
    let Some(db) = TempPgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[targets.reporting-db]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"provider\"\n\
         password_env = \"PG_TEST_SECRET\"\n",
        db.url
    );
    const SECRET: &str = "s3cret-never-shown-7781";
    let s = Server::start_with_env(dir, state, &extra, &[("PG_TEST_SECRET", SECRET)]);
    world_named(s.path(), 50);

    let (st, list) = s.get("/v1/connections").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let names = |side: &str| -> Vec<String> {
        list[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("sources"), ["world"], "{list}");
    assert_eq!(names("targets"), ["reporting-db", "warehouse"], "{list}");
    let pg = &list["targets"][0];
    assert_eq!(pg["type"], "postgres", "{list}");
    assert_eq!(pg["settings"]["schema"], "provider", "{list}");
    assert!(
        pg["queue"].as_str().unwrap().contains("#provider"),
        "{list}"
    );

    let body = json!({"scope": ["US"], "source": "world", "target": "reporting-db"});
    let (st, v) = post(&s, OPERATE_TOKEN, &body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let end = s.wait_terminal(&id).await;
    assert_eq!(end["state"], "completed", "{end}");
    assert_eq!(
        end["connections"],
        json!({"source": "world", "target": "reporting-db"})
    );
    assert_eq!(end["requested_by"], "api:crm", "{end}");
    let (_, jobs) = s.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"][0]["connections"]["target"], "reporting-db");

    // A name nothing has is refused with the names there are.
    let (st, v) = post(
        &s,
        OPERATE_TOKEN,
        &json!({"source": "warehouse", "target": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(fields(&v), ["source", "target"], "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("\"warehouse\" is one of the targets"), "{m}");
    assert!(
        m.contains("the targets are: reporting-db, warehouse"),
        "{m}"
    );

    for shown in [
        list.to_string(),
        end.to_string(),
        jobs.to_string(),
        s.logs(),
    ] {
        assert!(!shown.contains(SECRET), "the secret was shown: {shown}");
        assert!(
            !shown.contains("PG_TEST_SECRET"),
            "the reference was shown: {shown}"
        );
    }
    db.drop_db().await;
}

crate::on_both_stores!(a_job_over_named_connections_names_them_and_none_of_their_secrets);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_names_a_mapping_of_the_configured_folder() {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    std::fs::create_dir(&maps).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../mappings/sql-provider.toml"
        ),
        maps.join("custom.toml"),
    )
    .unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Server::start_configured(dir, &state, "[api]\nmappings = \"maps\"\n");
    world_named(s.path(), 20);

    let mut body = named_job();
    for (bad, says) in [
        ("../../etc/passwd", "not a mapping name"),
        ("/etc/passwd", "not a mapping name"),
        ("nope", "(it has: custom)"),
    ] {
        body["mapping"] = json!(bad);
        let (st, v) = post(&s, OPERATE_TOKEN, &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["field"], "mapping", "{v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{bad}: {v}");
    }
    body["mapping"] = json!("custom");
    let (st, v) = post(&s, OPERATE_TOKEN, &body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let end = s.wait_terminal(v["job_id"].as_str().unwrap()).await;
    assert_eq!(end["state"], "completed", "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_over_named_connections() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let extra = "[[schedules]]\nname = \"nightly\"\ncron = \"0 0 3 * * *\"\n\
                 [schedules.job]\nscope = [\"US\"]\nsource = \"world\"\ntarget = \"warehouse\"\n";
    let s = Server::start_configured(dir, &state, extra);
    world_named(s.path(), 20);
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/admin/sync/nightly",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let end = s
        .wait_for(&id, "the end", Duration::from_secs(120), |v| {
            v["state"] == "completed"
        })
        .await;
    assert_eq!(
        end["connections"],
        json!({"source": "world", "target": "warehouse"})
    );
}

#[test]
fn a_schedule_naming_no_connection_stops_the_start_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provsync.toml");
    std::fs::write(
        &file,
        "[sources.world]\ntype = \"file\"\npath = \"w.ndjson\"\n\n\
         [[schedules]]\nname = \"nightly\"\ncron = \"0 0 3 * * *\"\n\
         [schedules.job]\nsource = \"wrold\"\ntarget = \"warehouse\"\n",
    )
    .unwrap();
    let o = config_check(&file, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("schedules[0].job.source")
            && err.contains("no source connection is named \"wrold\""),
        "{err}"
    );
    assert!(err.contains("the sources are: world"), "{err}");
}
