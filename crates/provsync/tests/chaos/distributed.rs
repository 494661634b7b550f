//! A full sync through RabbitMQ with three workers survives kill -9 of workers and
//! a broker restart with the target equal to the snapshot; a worker that cannot
//! read the job's mapping fails the job at once and its pages are dead-lettered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// One chaos test at a time (they restart the shared broker).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A small deterministic generator for the chaos schedule (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spawn_worker(dir: &Path, state: &str, queue: &str, name: &str, attempts: u32) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(bin())
        .args(["worker", "--state", state, "--queue", queue])
        .args(["--max-attempts", &attempts.to_string()])
        .env("PROVSYNC_LOG", "provsync=info")
        .env_remove("PROVSYNC_STATE")
        .env_remove("PROVSYNC_QUEUE")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn provsync worker")
}

fn spawn_driver(dir: &Path, job: &Path, state: &str, queue: &str) -> (Child, PathBuf) {
    let out = dir.join("driver.stdout");
    let err = std::fs::File::create(dir.join("driver.stderr")).unwrap();
    let child = Command::new(bin())
        .arg("run")
        .arg(job)
        .args(["--state", state, "--queue", queue, "--json", "-q"])
        .env("PROVSYNC_LOG", "provsync=info")
        .env_remove("PROVSYNC_STATE")
        .env_remove("PROVSYNC_QUEUE")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn provsync run");
    (child, out)
}

fn rabbitmqctl(args: &[&str]) {
    let o = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        o.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log" || x == "stderr") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn chaos_seed() -> u64 {
    std::env::var("PROVSYNC_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_killed_at_random_and_a_broker_restart_lose_and_duplicate_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let seed = chaos_seed();
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 100_000, seed, 1);
    let snap = Snapshot::load(&world);
    let job = Job::full(&world, &pg.target())
        .option("page_size = 1000")
        .write(&dir.path().join("job.toml"));
    let prefix = format!("provsync-chaos-{}", std::process::id());
    let queue = format!("{AMQP}?prefix={prefix}");
    let state = pg.url.clone();

    let mut workers: Vec<Child> = (0..3)
        .map(|i| spawn_worker(dir.path(), &state, &queue, &format!("worker{i}"), 5))
        .collect();
    let (mut driver, out) = spawn_driver(dir.path(), &job, &state, &queue);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let started = Instant::now();
    let (mut kills, mut restarted, mut spawned) = (0, false, 3);
    let status = loop {
        if let Some(st) = driver.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the job did not finish in 10 minutes:\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        if driver.try_wait().unwrap().is_some() {
            continue;
        }
        if kills == 2 && !restarted {
            // The broker goes away and comes back while pages are in flight.
            rabbitmqctl(&["stop_app"]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            rabbitmqctl(&["start_app"]);
            restarted = true;
            continue;
        }
        let victim = rng.below(workers.len() as u64) as usize;
        let _ = workers[victim].kill(); // SIGKILL
        let _ = workers[victim].wait();
        kills += 1;
        spawned += 1;
        workers[victim] = spawn_worker(dir.path(), &state, &queue, &format!("worker{spawned}"), 5);
    };
    let elapsed = started.elapsed();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    delete_queues(&prefix);
    let stdout = std::fs::read_to_string(&out).unwrap();
    eprintln!(
        "chaos seed {seed}: {kills} kill -9, broker restart {restarted}, {:.1} s",
        elapsed.as_secs_f64()
    );
    assert!(
        status.success(),
        "driver exit {status:?}\n{stdout}\n{}",
        logs(dir.path())
    );
    assert!(
        kills >= 5,
        "only {kills} workers were killed before the job ended"
    );
    assert!(
        restarted,
        "the broker was not restarted before the job ended"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["state"], "completed", "{summary:#}");
    let counts = &summary["counts"];
    let mut c = Checks::default();
    c.eq(
        "extracted",
        counts["extracted"].as_u64().unwrap(),
        snap.extracted(),
    );
    c.eq(
        "created + updated (links included)",
        counts["created"].as_u64().unwrap() + counts["updated"].as_u64().unwrap(),
        snap.entities() + snap.links(),
    );
    c.eq("rejected", counts["rejected"].as_u64().unwrap(), 0);
    c.eq("failed", counts["failed"].as_u64().unwrap(), 0);
    let db = Db::open(&pg.target()).await;
    check_target_matches(&mut c, &db, &snap, "after chaos").await;
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_jobs_mapping_fails_it_at_once_and_dead_letters_its_pages() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let driver_dir = dir.path().join("driver");
    let worker_dir = dir.path().join("worker");
    std::fs::create_dir_all(&driver_dir).unwrap();
    std::fs::create_dir_all(&worker_dir).unwrap();
    let world = generate(&driver_dir, 500, 3, 1);
    // A mapping the driver can read and the worker cannot (relative paths start at
    // the job file's folder, so the path goes through each process's own working
    // directory instead): the worker fails the job at its first page.
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../mappings/sql-provider.toml"
        ),
        driver_dir.join("local-mapping.toml"),
    )
    .unwrap();
    let mut text = Job::full(&world, &pg.target()).toml();
    text = format!("mapping = \"/proc/self/cwd/local-mapping.toml\"\n{text}");
    let job = driver_dir.join("job.toml");
    std::fs::write(&job, text).unwrap();
    let prefix = format!("provsync-poison-{}", std::process::id());
    let queue = format!("{AMQP}?prefix={prefix}");
    let mut worker = spawn_worker(&worker_dir, &pg.url, &queue, "worker", 2);
    let (mut driver, out) = spawn_driver(&driver_dir, &job, &pg.url, &queue);
    let started = Instant::now();
    let status = loop {
        if let Some(st) = driver.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job did not end:\n{}\n{}",
            logs(&driver_dir),
            logs(&worker_dir)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = worker.kill();
    let _ = worker.wait();
    delete_queues(&prefix);
    let stdout = std::fs::read_to_string(&out).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}), exit {status:?}:\n{}\n{}",
            logs(&driver_dir),
            logs(&worker_dir)
        )
    });
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert_eq!(summary["state"], "failed", "{summary:#}");
    let failure = summary["failure"].as_str().unwrap();
    assert!(
        failure.contains("cannot run the job") && failure.contains("local-mapping.toml"),
        "{failure}"
    );
    let first = &summary["first_errors"][0];
    assert_eq!(first["stage"], "queue", "{summary:#}");
    assert!(first["page_no"].is_u64(), "{summary:#}");
    let reason = first["reason"].as_str().unwrap();
    assert!(
        reason.contains("dead-lettered") && reason.contains("local-mapping.toml"),
        "{summary:#}"
    );
    // At once: no attempt was retried.
    let log = std::fs::read_to_string(worker_dir.join("worker.log")).unwrap();
    assert!(!log.contains("will be retried"), "{log}");
    // The dead pages' records are accounted for, not lost.
    let counts = &summary["counts"];
    assert_eq!(counts["extracted"], counts["rejected"], "{summary:#}");
    assert!(counts["rejected"].as_u64().unwrap() > 0);
}

/// The job id a `provsync run` printed on stderr (`job <id> started`).
fn job_id_from(stderr: &Path) -> Option<String> {
    let text = std::fs::read_to_string(stderr).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("job ")?.strip_suffix(" started"))
        .map(str::to_owned)
}

fn status_of(id: &str, state: &str) -> serde_json::Value {
    let o = Command::new(bin())
        .args(["status", id, "--json", "--state", state])
        .env_remove("PROVSYNC_STATE")
        .output()
        .expect("provsync status");
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_job_ends_with_the_job_resumed_and_nothing_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 30_000, 5, 1);
    let snap = Snapshot::load(&world);
    let job = Job::full(&world, &pg.target())
        .option("page_size = 500")
        .write(&dir.path().join("job.toml"));
    let prefix = format!("provsync-pgrestart-{}", std::process::id());
    let queue = format!("{AMQP}?prefix={prefix}");
    let mut workers: Vec<Child> = (0..2)
        .map(|i| spawn_worker(dir.path(), &pg.url, &queue, &format!("worker{i}"), 5))
        .collect();
    let (mut driver, _) = spawn_driver(dir.path(), &job, &pg.url, &queue);
    let stderr = dir.path().join("driver.stderr");
    let started = Instant::now();
    let id = loop {
        if let Some(id) = job_id_from(&stderr) {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Some pages in, then the server restarts under every process.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cluster = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a PostgreSQL cluster under /etc/postgresql");
    let o = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &cluster, "main", "restart"])
        .output()
        .expect("pg_ctlcluster");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The driver may ride it out or die; either way the job ends (a worker takes
    // over a dead driver's job once its lease lapses).
    let deadline = Instant::now() + Duration::from_secs(180);
    let end = loop {
        let _ = driver.try_wait();
        let s = status_of(&id, &pg.url);
        if matches!(
            s["state"].as_str(),
            Some("completed" | "completed_with_errors" | "failed" | "aborted")
        ) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end after the restart: {s:#}\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = driver.kill();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    delete_queues(&prefix);
    eprintln!(
        "after the PostgreSQL restart the job ended {}",
        end["state"]
    );
    let counts = &end["counts"];
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    // Nothing lost: every extracted record has exactly one outcome.
    assert_eq!(
        n("extracted"),
        n("rejected")
            + n("created")
            + n("updated")
            + n("unchanged")
            + n("failed")
            + (n("relations_staged") - n("relations_loaded") - n("relations_failed")),
        "counts reconcile: {end:#}"
    );
    assert!(n("extracted") > 0, "{end:#}");
    if end["state"] == "completed" {
        let mut c = Checks::default();
        c.eq("extracted", n("extracted"), snap.extracted());
        let db = Db::open(&pg.target()).await;
        check_target_matches(&mut c, &db, &snap, "after the PostgreSQL restart").await;
        db.close().await;
        c.finish();
    } else {
        assert_eq!(end["state"], "failed", "{end:#}");
        assert!(
            end["failure"].is_string(),
            "a failure names its cause: {end:#}"
        );
    }
}
