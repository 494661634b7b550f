//! The binary in a pipeline: a reader that goes away, stderr that is not a
//! terminal, JSON logs.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;

/// `provsync` with no `PROVSYNC_*` or `NO_COLOR` from the test's environment.
fn provsync() -> Command {
    let mut c = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("PROVSYNC_") || k == "NO_COLOR" {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `provsync args` with stdout a pipe whose reader is already gone (the
/// worst case of `| head -c 1`: not even one write succeeds).
fn into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    provsync()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_success(what: &str, o: &Output) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{what}: {}\n{stderr}", o.status);
    assert!(stderr.trim().is_empty(), "{what} wrote on stderr: {stderr}");
}

/// A finished small job: (job id, state store URL).
fn a_finished_job(dir: &std::path::Path) -> (String, String) {
    let world = generate(dir, 30, 1, 1);
    let run = run_job(
        dir,
        "job",
        &Job::full(&world, &Target::sqlite(dir, "provider.db")),
    );
    run.expect_code(0);
    (run.job_id(), state_url(dir))
}

#[test]
fn status_json_into_a_closed_pipe_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (id, state) = a_finished_job(dir.path());
    for json in [true, false] {
        let mut args = vec!["status", &id, "--state", &state];
        if json {
            args.push("--json");
        }
        assert_quiet_success(&args.join(" "), &into_a_closed_pipe(&args));
    }
}

#[test]
fn generate_into_a_closed_pipe_exits_cleanly() {
    let o = into_a_closed_pipe(&["generate", "--individuals", "200"]);
    assert_quiet_success("generate", &o);
}

#[test]
fn logs_on_a_piped_stderr_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 30, 1, 1);
    let job = Job::full(&world, &Target::sqlite(dir.path(), "provider.db"))
        .write(&dir.path().join("job.toml"));
    let o = provsync()
        .arg("run")
        .arg(&job)
        .args(["--state", &state_url(dir.path()), "-q"])
        .env("PROVSYNC_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("job accepted"), "no log line: {stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes on a pipe: {stderr:?}"
    );
}

/// Every stderr line of `o` is a JSON object; returns them.
fn json_lines(what: &str, o: &Output) -> Vec<Value> {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("{what}: a stderr line is not JSON: {l:?}\n{stderr}"))
        })
        .collect();
    assert!(!lines.is_empty(), "{what}: nothing on stderr");
    lines
}

fn messages(lines: &[Value]) -> String {
    lines
        .iter()
        .map(|l| l["fields"]["message"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn json_logs_make_every_stderr_line_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_url(dir.path());

    // A job that starts and fails: notices and the engine's own events.
    let job = Job::full(
        &dir.path().join("missing.ndjson"),
        &Target::sqlite(dir.path(), "provider.db"),
    )
    .write(&dir.path().join("job.toml"));
    let job = job.to_str().unwrap();
    let o = provsync()
        .args(["--log-format", "json", "run", job, "--state", &state])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let lines = json_lines("a failing job", &o);
    assert!(messages(&lines).contains("started"), "{lines:?}");

    // A command that fails: its final error.
    let missing = dir.path().join("no-such-job.toml");
    let missing = missing.to_str().unwrap();
    for (how, mut cmd) in [
        ("--log-format json", provsync()),
        ("PROVSYNC_LOG_FORMAT=json", provsync()),
    ] {
        if how.starts_with("--") {
            cmd.args(["--log-format", "json"]);
        } else {
            cmd.env("PROVSYNC_LOG_FORMAT", "json");
        }
        let o = cmd
            .args(["run", missing, "--state", &state])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{how}: {o:?}");
        let lines = json_lines(how, &o);
        let last = lines.last().unwrap();
        assert_eq!(last["level"], "ERROR", "{how}: {last}");
        assert!(
            messages(&lines).contains("cannot read job file"),
            "{how}: {lines:?}"
        );
    }

    // A usage error.
    let o = provsync()
        .args(["--log-format", "json", "run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let lines = json_lines("a usage error", &o);
    assert!(messages(&lines).contains("required"), "{lines:?}");
}
