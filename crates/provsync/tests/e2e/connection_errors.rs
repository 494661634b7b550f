//! Errors name the cause: a PostgreSQL, RabbitMQ or OneKey endpoint that refuses is
//! reported promptly with its host:port and the OS's reason, each cause once, and
//! never with the URL's password.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

const PASSWORD: &str = "S3cretPW";

/// A local port nothing listens on: bound, then let go.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `provsync run` of a job with extra arguments; its output and how long it took.
fn run_with(job: &std::path::Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(bin())
        .arg("run")
        .arg(job)
        .args(["--json", "-q"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("E2E_UNREACHABLE_SECRET", "provsync-secret")
        .env("E2E_PG_PASSWORD", PASSWORD)
        .env_remove("PROVSYNC_STATE")
        .env_remove("PROVSYNC_QUEUE")
        .output()
        .expect("spawn provsync run");
    (out, started.elapsed())
}

/// The cause is there once, the password never.
fn assert_named_once(text: &str, expected: &str) {
    assert!(text.contains(expected), "{expected:?} not in: {text}");
    assert_eq!(
        text.matches("Connection refused").count(),
        1,
        "the cause repeats: {text}"
    );
    assert!(!text.contains(PASSWORD), "the password shows: {text}");
}

#[test]
fn closed_postgres_port_is_reported_with_host_port_and_os_cause_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 20, 1, 1);
    let port = closed_port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/provsync");
    let expected = format!(
        "cannot connect to PostgreSQL at 127.0.0.1:{port}: Connection refused (os error 111)"
    );

    // As the state store: the run cannot start.
    let job = Job::full(&world, &Target::sqlite(dir.path(), "provider.db"))
        .write(&dir.path().join("state.toml"));
    let (out, took) = run_with(&job, &["--state", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_named_once(&stderr, &expected);
    assert!(took < Duration::from_secs(20), "took {took:?}: {stderr}");

    // As the target (its password comes from the environment: a target URL
    // carrying one is refused, since job specs are stored): the job fails saying so.
    let url = format!("postgres://postgres@127.0.0.1:{port}/provsync");
    let text = Job::full(&world, &Target::Postgres { url })
        .toml()
        .replacen(
            "[target]\n",
            "[target]\npassword_env = \"E2E_PG_PASSWORD\"\n",
            1,
        );
    let job = dir.path().join("target.toml");
    std::fs::write(&job, text).unwrap();
    let (out, took) = run_with(&job, &["--state", &state_url(dir.path())]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(summary["state"], "failed", "{summary:#}");
    assert!(summary["failure"].as_str().unwrap().contains(&expected));
    assert_named_once(&String::from_utf8_lossy(&out.stdout), &expected);
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn closed_rabbitmq_port_is_reported_with_host_port_and_os_cause() {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 20, 1, 1);
    let port = closed_port();
    let job = Job::full(&world, &Target::sqlite(dir.path(), "provider.db"))
        .write(&dir.path().join("job.toml"));
    let queue = format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f");
    let (out, _) = run_with(
        &job,
        &["--state", &state_url(dir.path()), "--queue", &queue],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_named_once(
        &stderr,
        &format!("cannot connect to RabbitMQ at 127.0.0.1:{port}: "),
    );
}

#[test]
fn unreachable_onekey_names_the_os_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let job = Job::onekey(
        &format!("http://127.0.0.1:{port}"),
        "E2E_UNREACHABLE_SECRET",
        &Target::sqlite(dir.path(), "provider.db"),
    )
    .write(&dir.path().join("job.toml"));
    let (out, _) = run_with(&job, &["--state", &state_url(dir.path())]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(summary["state"], "failed", "{summary:#}");
    let failure = summary["failure"].as_str().unwrap();
    assert!(failure.contains(&format!("127.0.0.1:{port}")), "{failure}");
    assert!(
        failure.contains("Connection refused (os error 111)"),
        "{failure}"
    );
    // Said once in the whole summary (the sweep's reason does not repeat it).
    assert_named_once(&String::from_utf8_lossy(&out.stdout), "Connection refused");
}
