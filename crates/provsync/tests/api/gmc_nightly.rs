//! The nightly GMC sync as shipped (`recipes/gmc-nightly.toml` with
//! `recipes/gmc-to-postgres.toml`): `provsync serve` against the GMC emulator
//! process, a PostgreSQL doctors store and RabbitMQ. The manual trigger starts the
//! schedule's run (202 with its id), a second trigger while it runs answers 409
//! with that id, the run ends with each body's outcome, and the in-process relay
//! puts every connection event on a queue bound to `provsync.changes`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const BODIES: u32 = 3;
const PER_BODY: u32 = 200;

/// `provsync emulate gmc`, killed on drop.
struct Emulator {
    child: Child,
    url: String,
}

impl Emulator {
    /// Slow answers (`delay_ms` per call) keep the run going for the 409 check.
    fn start(delay_ms: u32) -> Emulator {
        let mut child = Command::new(bin())
            .args(["emulate", "gmc", "--listen", "127.0.0.1:0", "--seed", "5"])
            .args(["--bodies", &BODIES.to_string()])
            .args(["--doctors-per-body", &PER_BODY.to_string()])
            .args(["--delay-ms", &delay_ms.to_string()])
            .args(["--username", "nightly"])
            .env("PROVSYNC_GMC_EMULATOR_PASSWORD", "nightly-pw")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn provsync emulate gmc");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("gmc emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the emulator: {line:?}"))
            .to_owned();
        Emulator { child, url }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn recipe(name: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../recipes")
        .join(name);
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The shipped job recipe pointed at the emulator and the test database.
fn job_file(dir: &Path, emu: &Emulator, target_url: &str) -> PathBuf {
    let secret = dir.join("gmc.secret");
    std::fs::write(&secret, "username=nightly\npassword=nightly-pw\n").unwrap();
    let mut job = recipe("gmc-to-postgres.toml");
    let bodies: Vec<toml::Value> = provsync_emulators::gmc::RegisterSpec {
        bodies: BODIES,
        doctors_per_body: PER_BODY,
        seed: 5,
        night: 0,
    }
    .body_codes()
    .into_iter()
    .map(toml::Value::String)
    .collect();
    job.insert("scope".into(), bodies.into());
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/gmc-doctors.toml");
    job.insert("mapping".into(), mapping.display().to_string().into());
    let source = job["source"].as_table().unwrap().clone();
    let mut source = source;
    source.insert("url".into(), emu.url.clone().into());
    source.insert("secret_file".into(), secret.display().to_string().into());
    job.insert("source".into(), source.into());
    let mut target = job["target"].as_table().unwrap().clone();
    target.insert("url".into(), target_url.into());
    job.insert("target".into(), target.into());
    let path = dir.join("gmc-to-postgres.toml");
    std::fs::write(&path, toml::to_string(&job).unwrap()).unwrap();
    path
}

/// The shipped service config's schedule and relay, pointed at the test's job,
/// database and broker.
fn service_config(job: &Path, target_url: &str) -> (String, String) {
    let shipped = recipe("gmc-nightly.toml");
    let mut schedule = shipped["schedules"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(schedule["cron"].as_str(), Some("0 2 * * *"));
    assert_eq!(schedule["job_file"].as_str(), Some("gmc-to-postgres.toml"));
    let name = schedule["name"].as_str().unwrap().to_owned();
    schedule.insert("job_file".into(), job.display().to_string().into());
    let mut relay = shipped["relay"].as_table().unwrap().clone();
    relay.insert("database".into(), target_url.into());
    relay.insert("amqp".into(), AMQP.into());
    relay.insert("poll_ms".into(), 100.into());
    let mut extra = toml::Table::new();
    extra.insert(
        "schedules".into(),
        vec![toml::Value::Table(schedule)].into(),
    );
    extra.insert("relay".into(), relay.into());
    (name, toml::to_string(&extra).unwrap())
}

/// A queue bound to `provsync.changes` for GMC doctor events; `None` when the
/// broker is unreachable (a failure under CI=true).
async fn bound_queue(name: &str) -> Option<(lapin::Connection, lapin::Channel)> {
    let conn = match lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await
    {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("RabbitMQ on 127.0.0.1:5672 is required in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: RabbitMQ on 127.0.0.1:5672 unreachable: {e}");
            return None;
        }
    };
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "provsync.changes".into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Durable, but gone a minute after the test stops using it.
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.queue_bind(
        name.into(),
        "provsync.changes".into(),
        "gmc.doctor.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    Some((conn, ch))
}

/// Events of run `run` taken off the queue until `want` arrived or 30 s passed.
async fn events_of(ch: &lapin::Channel, queue: &str, run: &str, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want && Instant::now() < deadline {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let v: Value = serde_json::from_slice(&m.delivery.data).unwrap();
                if v["run_id"] == run {
                    got.push(v);
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_gmc_schedule_triggered_runs_once_reports_each_body_and_relays_its_events() {
    let Some(db) = TempPgDb::create().await else {
        return;
    };
    let queue = format!("test.gmc-nightly.{}", uuid::Uuid::now_v7().simple());
    let Some((_conn, ch)) = bound_queue(&queue).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(1_000);
    let job = job_file(dir.path(), &emu, &db.url);
    let (name, extra) = service_config(&job, &db.url);
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Server::start_configured(dir, &state, &extra);
    let path = format!("/v1/admin/sync/{name}");

    let (st, v) = s.call(Method::POST, &path, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, v) = s.call(Method::POST, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let (st, v) = s.call(Method::POST, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "schedule_running");
    assert_eq!(
        v["job_id"],
        id.as_str(),
        "the 409 names the running job: {v}"
    );

    let end = s.wait_terminal(&id).await;
    assert_eq!(end["state"], "completed", "{end}\n{}", s.logs());
    let scopes = end["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), BODIES as usize, "{end}");
    for sc in scopes {
        assert_eq!(sc["outcome"], "swept", "{sc}");
        let doctors = &sc["per_kind"]["individual"];
        assert_eq!(doctors["returned"], PER_BODY, "{sc}");
        assert_eq!(
            doctors["connected"], PER_BODY,
            "a first night connects all: {sc}"
        );
        assert_eq!(doctors["moved"], 0, "{sc}");
        assert_eq!(doctors["disconnected"], 0, "{sc}");
    }

    // The relay inside `serve` publishes every connection of the run.
    let want = (BODIES * PER_BODY) as usize;
    let events = events_of(&ch, &queue, &id, want).await;
    assert_eq!(events.len(), want, "connection events on the queue");
    assert!(events.iter().all(|e| e["event"] == "connected"));
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    drop(s);
    db.drop_db().await;
}
