//! Every state-changing request, refusals included, is one `provsync::api::audit`
//! event: the token's name (never the token), the route, the job, the status and
//! the error code.

use reqwest::{Method, StatusCode};

use crate::common::*;

/// The audit line holding every one of `needles`.
fn audit_line<'a>(logs: &'a str, needles: &[&str]) -> &'a str {
    logs.lines()
        .filter(|l| l.contains("provsync::api::audit"))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no audit event with {needles:?}:\n{logs}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_aborts_and_refusals_are_audited_by_token_name_route_job_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    // A schedule to trigger (its job fails on its missing file: no matter here).
    let extra = "[[schedules]]\nname = \"nightly\"\ncron = \"0 0 3 * * *\"\n\
                 [schedules.job.source]\ntype = \"file\"\npath = \"w.ndjson\"\n\
                 [schedules.job.target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n";
    let s = Server::start_configured(dir, &state, extra);
    world_named(s.path(), 6_000);
    let body = named_job();
    let start = || s.call(Method::POST, "/v1/jobs", Some(OPERATE_TOKEN), Some(&body));
    let (st, first) = start().await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    // Same target: the second waits behind the first, so its abort is certain.
    let (_, second) = start().await;
    assert_eq!(second["state"], "queued", "{second}");
    let (first, second) = (
        first["job_id"].as_str().unwrap().to_owned(),
        second["job_id"].as_str().unwrap().to_owned(),
    );
    let abort = |id: &str| format!("/v1/jobs/{id}/abort");

    let (st, v) = s
        .call(Method::POST, &abort(&second), Some(READ_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = s
        .call(Method::POST, &abort(&second), Some(OPERATE_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v) = s
        .call(Method::POST, &abort(&first), Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v) = s
        .call(
            Method::POST,
            "/v1/jobs",
            Some("not-a-token-77f0"),
            Some(&body),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let trigger = "/v1/admin/sync/nightly";
    let (st, v) = s
        .call(Method::POST, trigger, Some(OPERATE_TOKEN), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = s.call(Method::POST, trigger, Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let triggered = v["job_id"].as_str().unwrap().to_owned();
    for id in [&first, &second] {
        assert_eq!(s.wait_terminal(id).await["state"], "aborted");
    }
    // Reads are not audited.
    let (st, _) = s.get(&format!("/v1/jobs/{first}")).await;
    assert_eq!(st, StatusCode::OK);

    let first_job = format!("job={first}");
    let second_job = format!("job={second}");
    let second_path = format!("path=/v1/jobs/{second}/abort");
    let logs = s.logs_with(&["code=unauthorized"]).await;
    for (id, needles) in [
        (
            &first,
            vec![
                "route=/v1/jobs ",
                "token=crm",
                &first_job,
                "status=202",
                "code=-",
            ],
        ),
        (
            &second,
            vec!["route=/v1/jobs ", "token=crm", &second_job, "status=202"],
        ),
        (
            &second,
            vec![
                "route=/v1/jobs/{id}/abort",
                &second_path,
                "token=reporting",
                "job=-",
                "status=403",
                "code=forbidden",
            ],
        ),
        (
            &second,
            vec![
                "route=/v1/jobs/{id}/abort",
                "token=crm",
                &second_job,
                "status=202",
            ],
        ),
        (
            &first,
            vec![
                "route=/v1/jobs/{id}/abort",
                "token=ops",
                &first_job,
                "status=202",
            ],
        ),
    ] {
        let line = audit_line(&logs, &needles);
        assert!(line.contains(id.as_str()), "{line}");
    }
    audit_line(
        &logs,
        &[
            "route=/v1/jobs ",
            "token=-",
            "status=401",
            "code=unauthorized",
        ],
    );
    let route = "route=/v1/admin/sync/{schedule}";
    audit_line(
        &logs,
        &[route, "token=crm", "job=-", "status=403", "code=forbidden"],
    );
    audit_line(
        &logs,
        &[
            route,
            "token=ops",
            &format!("job={triggered}"),
            "status=202",
        ],
    );
    let audits = logs
        .lines()
        .filter(|l| l.contains("provsync::api::audit"))
        .count();
    assert_eq!(audits, 8, "one event per state-changing request:\n{logs}");
    for secret in [READ_TOKEN, OPERATE_TOKEN, ADMIN_TOKEN, "not-a-token-77f0"] {
        for shown in [secret.to_owned(), provsync::config::sha256_hex(secret)] {
            assert!(!logs.contains(&shown), "{shown} reached the log:\n{logs}");
        }
    }
}
