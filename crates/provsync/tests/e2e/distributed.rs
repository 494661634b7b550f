//! The distributed runtime always stops: a run with no worker says so and ends
//! `aborted` on an abort or Ctrl-C within the README's bound, its pages accounted
//! as not loaded; a worker that lacks the source's secret fails the job at once,
//! naming the variable. Queue messages carry pages, never the job's secrets.
//! Real RabbitMQ and PostgreSQL (required with `CI=true`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicNackOptions};
use serde_json::Value;

use crate::common::*;
use crate::emulators::Emulator;

/// The variable the jobs' OneKey secret is read from.
const SECRET_ENV: &str = "E2E_DISTRIBUTED_ONEKEY_SECRET";
/// The emulator's client secret.
const SECRET: &str = "provsync-secret";
/// README (distributed runtime): with no worker consuming, an abort ends the job
/// within 10 s.
const ABORT_BOUND: Duration = Duration::from_secs(10);
/// "Within seconds": the note that no worker consumes, a worker's failure.
const PROMPTLY: Duration = Duration::from_secs(10);

/// `provsync run` of `job` on the queue, with the source's secret.
fn driver(job: &Path, state: &str, queue: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg(job)
        .args(["--state", state, "--queue", queue, "--json", "-q"])
        .env(SECRET_ENV, SECRET)
        .env("NO_COLOR", "1")
        .env_remove("PROVSYNC_LOG")
        .env_remove("PROVSYNC_STATE")
        .env_remove("PROVSYNC_QUEUE");
    c
}

/// A OneKey job into the PostgreSQL database, 100 records a page.
fn onekey_job(dir: &Path, mdm: &Emulator, pg: &PgDatabase) -> std::path::PathBuf {
    Job::onekey(&mdm.url, SECRET_ENV, &pg.target())
        .option("page_size = 100")
        .write(&dir.join("job.toml"))
}

/// Polls `status` until `ready` holds, at most `bound` from now.
fn status_within(id: &str, state: &str, bound: Duration, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let st = status(id, state);
        if ready(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "not within {bound:?}: {st:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A page waiting in the transform queue carries the job's id and the page, never
/// the job's settings or secrets; it is put back.
async fn assert_a_waiting_message_holds_no_secret(prefix: &str) {
    let conn = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            format!("{prefix}.transform").as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await
        .unwrap()
        .expect("pages wait in the transform queue");
    let d = got.delivery;
    let text = String::from_utf8_lossy(&d.data).into_owned();
    let body: Value = serde_json::from_slice(&d.data).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["job", "page", "page_no"], "{text:.300}");
    assert!(!text.contains(SECRET), "the secret travels in a message");
    assert!(
        !text.contains("client_secret"),
        "settings travel in a message"
    );
    let headers: Vec<String> = d
        .properties
        .headers()
        .as_ref()
        .map(|t| t.inner().keys().map(|k| k.as_str().to_owned()).collect())
        .unwrap_or_default();
    assert!(
        headers
            .iter()
            .all(|h| h.starts_with("x-provsync-") || h == "x-delivery-count"),
        "{headers:?}"
    );
    d.acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .unwrap();
    let _ = conn.close(0, "checked".into()).await;
}

/// Starts a run with no worker and waits until it says so (promptly, in the job's
/// note and on stderr); returns the run and its job id.
async fn run_without_a_worker(
    dir: &Path,
    pg: &PgDatabase,
    mdm: &Emulator,
    queue: &str,
    prefix: &str,
) -> (Background, String) {
    let job = onekey_job(dir, mdm, pg);
    let mut bg = spawn_command(driver(&job, &pg.url, queue), dir, "run");
    let id = bg.job_id();
    let st = status_within(&id, &pg.url, PROMPTLY, |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.contains("no worker consumes"))
    });
    assert_eq!(st["state"], "running", "{st:#}");
    let stderr = std::fs::read_to_string(&bg.stderr).unwrap();
    assert!(stderr.contains("no worker consumes"), "{stderr}");
    assert_a_waiting_message_holds_no_secret(prefix).await;
    (bg, id)
}

/// The run ended `aborted` within the bound, every page it fetched accounted as
/// not loaded, the note gone.
fn assert_aborted_with_pages_not_loaded(bg: Background, id: &str, state: &str) {
    let run = bg.wait_within(ABORT_BOUND);
    run.expect_code(3);
    let s = &run.summary;
    assert_eq!(s["state"], "aborted", "{run}");
    let pages = s["not_loaded"]["pages"].as_u64().unwrap();
    assert!(pages > 0, "{run}");
    assert_eq!(s["not_loaded"]["pages"], s["pages"], "{run}");
    assert!(
        s["not_loaded"]["records"].as_u64().unwrap() >= pages,
        "{run}"
    );
    assert_eq!(
        run.count("extracted"),
        0,
        "no worker loaded anything: {run}"
    );
    assert!(status(id, state)["note"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_run_with_no_worker_says_so_and_abort_ends_it_aborted() {
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mdm = Emulator::onekey(2_000, 1, "US");
    let (queue, prefix) = stage_queue("noworker-abort");
    let (bg, id) = run_without_a_worker(dir.path(), &pg, &mdm, &queue, &prefix).await;
    abort_job(&id, &pg.url);
    assert_aborted_with_pages_not_loaded(bg, &id, &pg.url);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_run_with_no_worker_ends_aborted_on_ctrl_c() {
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mdm = Emulator::onekey(2_000, 1, "US");
    let (queue, prefix) = stage_queue("noworker-int");
    let (bg, id) = run_without_a_worker(dir.path(), &pg, &mdm, &queue, &prefix).await;
    let interrupted = Command::new("kill")
        .args(["-INT", &bg.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert_aborted_with_pages_not_loaded(bg, &id, &pg.url);
    delete_queues(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_without_the_sources_secret_fails_the_job_fast_naming_the_variable() {
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mdm = Emulator::onekey(500, 1, "US");
    let job = onekey_job(dir.path(), &mdm, &pg);
    let worker = Worker::start(dir.path(), &pg.url, "nosecret", &[(SECRET_ENV, None)]);
    let mut bg = spawn_command(driver(&job, &pg.url, &worker.queue), dir.path(), "run");
    let id = bg.job_id();
    let st = status_within(&id, &pg.url, PROMPTLY, |s| s["failure"].is_string());
    let failure = st["failure"].as_str().unwrap();
    assert!(
        failure.contains(&format!("environment variable {SECRET_ENV} is not set")),
        "{failure}"
    );
    let run = bg.wait_within(Duration::from_secs(60));
    let log = worker.stop();
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    assert!(
        run.summary["failure"]
            .as_str()
            .unwrap()
            .contains(SECRET_ENV),
        "{run}"
    );
    // At once, not after every page's retries.
    assert!(!log.contains("will be retried"), "{log}");
    // Its pages are accounted for: rejected with the reason, or not loaded.
    let reason = run.summary["first_errors"][0]["reason"]
        .as_str()
        .unwrap_or("");
    assert!(reason.contains(SECRET_ENV), "{run}");
    assert_eq!(run.count("extracted"), run.count("rejected"), "{run}");
}
