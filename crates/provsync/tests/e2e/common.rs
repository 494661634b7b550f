//! Helpers: generate worlds, write job files, run the binary, read target databases,
//! and diff two NDJSON snapshots the way a full sync should apply them.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool, Row, SqlitePool};

pub const KINDS: [&str; 4] = ["individual", "workplace", "activity", "relation"];
pub const ENTITY_KINDS: [&str; 2] = ["individual", "workplace"];
pub const LINK_KINDS: [&str; 2] = ["activity", "relation"];

pub fn table(kind: &str) -> &'static str {
    match kind {
        "individual" => "individuals",
        "workplace" => "workplaces",
        "activity" => "activities",
        "relation" => "relations",
        other => panic!("no table for kind {other}"),
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_provsync")
}

// ---------------------------------------------------------------------------------
// Worlds and snapshots

/// Runs `provsync generate` into `dir` and returns the file.
pub fn generate(dir: &Path, individuals: u32, seed: u64, night: u32) -> PathBuf {
    let out = dir.join(format!("world-{individuals}-s{seed}-n{night}.ndjson"));
    let o = Command::new(bin())
        .args(["generate", "--individuals", &individuals.to_string()])
        .args(["--seed", &seed.to_string(), "--night", &night.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("spawn provsync generate");
    assert!(
        o.status.success(),
        "provsync generate failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The records of an NDJSON snapshot by (kind, source_id), `modified_at` removed,
/// plus the `parent` relations the product derives from workplaces' `parent_id`
/// (source id `<child>>parent`, value: the parent id).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub records: BTreeMap<(String, String), Value>,
    /// Lines of the file (records as written, without derived relations).
    pub lines: usize,
}

impl Snapshot {
    pub fn load(path: &Path) -> Snapshot {
        let text = std::fs::read_to_string(path).expect("read snapshot");
        let mut snap = Snapshot::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            snap.lines += 1;
            let mut v: Value = serde_json::from_str(line).expect("generator writes valid JSON");
            v.as_object_mut().unwrap().remove("modified_at");
            let kind = v["kind"].as_str().unwrap().to_string();
            let id = v["source_id"].as_str().unwrap().to_string();
            if kind == "workplace" {
                if let Some(parent) = v.get("parent_id").and_then(Value::as_str) {
                    snap.records.insert(
                        ("relation".into(), format!("{id}>parent")),
                        Value::String(parent.to_string()),
                    );
                }
            }
            snap.records.insert((kind, id), v);
        }
        snap
    }

    pub fn ids(&self, kind: &str) -> BTreeSet<String> {
        self.records
            .keys()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub fn get(&self, kind: &str, id: &str) -> Option<&Value> {
        self.records.get(&(kind.to_string(), id.to_string()))
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.records
            .iter()
            .filter(move |((k, _), _)| k == kind)
            .map(|((_, id), v)| (id.as_str(), v))
    }

    pub fn count(&self, kind: &str) -> u64 {
        self.ids(kind).len() as u64
    }

    /// What the summary's `extracted` should be: lines + derived parent relations.
    pub fn extracted(&self) -> u64 {
        self.lines as u64 + self.count("relation")
    }

    pub fn entities(&self) -> u64 {
        self.count("individual") + self.count("workplace")
    }

    pub fn links(&self) -> u64 {
        self.count("activity") + self.count("relation")
    }
}

/// A record's content as a sync compares it. A workplace's `parent_id` is left out:
/// the product models the hierarchy as the derived `<child>>parent` relation record,
/// so a parent change is a relation change, not a workplace change.
fn content(kind: &str, v: &Value) -> Value {
    let mut v = v.clone();
    if kind == "workplace" {
        v.as_object_mut().unwrap().remove("parent_id");
    }
    v
}

/// How night `b` differs from night `a`, per kind.
#[derive(Debug, Default)]
pub struct Diff {
    pub created: BTreeMap<String, BTreeSet<String>>,
    pub changed: BTreeMap<String, BTreeSet<String>>,
    pub unchanged: BTreeMap<String, BTreeSet<String>>,
    pub gone: BTreeMap<String, BTreeSet<String>>,
    /// Activities whose workplace differs between the nights.
    pub moved_activities: BTreeSet<String>,
}

impl Diff {
    pub fn between(a: &Snapshot, b: &Snapshot) -> Diff {
        let mut d = Diff::default();
        for kind in KINDS {
            d.created.insert(kind.into(), BTreeSet::new());
            d.changed.insert(kind.into(), BTreeSet::new());
            d.unchanged.insert(kind.into(), BTreeSet::new());
            d.gone.insert(kind.into(), BTreeSet::new());
        }
        for ((kind, id), vb) in &b.records {
            let bucket = match a.records.get(&(kind.clone(), id.clone())) {
                None => &mut d.created,
                Some(va) if content(kind, va) != content(kind, vb) => &mut d.changed,
                Some(_) => &mut d.unchanged,
            };
            bucket.get_mut(kind).unwrap().insert(id.clone());
            if kind == "activity" {
                if let Some(va) = a.records.get(&(kind.clone(), id.clone())) {
                    if va["workplace_id"] != vb["workplace_id"] {
                        d.moved_activities.insert(id.clone());
                    }
                }
            }
        }
        for (kind, id) in a.records.keys() {
            if !b.records.contains_key(&(kind.clone(), id.clone())) {
                d.gone.get_mut(kind).unwrap().insert(id.clone());
            }
        }
        d
    }

    fn n(map: &BTreeMap<String, BTreeSet<String>>, kinds: &[&str]) -> u64 {
        kinds.iter().map(|k| map[*k].len() as u64).sum()
    }

    /// The summary counts a full sync of `b` over `a` should report, every kind
    /// alike (links too): created, updated, unchanged, disconnected.
    pub fn expected_counts(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("created", Self::n(&self.created, &KINDS)),
            ("updated", Self::n(&self.changed, &KINDS)),
            ("unchanged", Self::n(&self.unchanged, &KINDS)),
            ("disconnected", Self::n(&self.gone, &KINDS)),
        ])
    }
}

/// A copy of `src` without every `nth`-in-10 individuals (those whose position among
/// individuals modulo 10 is below `tenths`) and without their activities.
/// Returns the new file and the dropped individual ids.
pub fn drop_individuals(src: &Path, dst: &Path, tenths: usize) -> (PathBuf, BTreeSet<String>) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut dropped = BTreeSet::new();
    let mut index = 0usize;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["kind"] == "individual" {
            if index % 10 < tenths {
                dropped.insert(v["source_id"].as_str().unwrap().to_string());
            }
            index += 1;
        }
    }
    let mut out = std::fs::File::create(dst).unwrap();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let drop = match v["kind"].as_str() {
            Some("individual") => dropped.contains(v["source_id"].as_str().unwrap()),
            Some("activity") => dropped.contains(v["individual_id"].as_str().unwrap()),
            _ => false,
        };
        if !drop {
            writeln!(out, "{line}").unwrap();
        }
    }
    (dst.to_path_buf(), dropped)
}

// ---------------------------------------------------------------------------------
// Job files and runs

#[derive(Debug, Clone)]
pub enum Target {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl Target {
    pub fn sqlite(dir: &Path, name: &str) -> Target {
        Target::Sqlite {
            path: dir.join(name),
        }
    }

    fn toml(&self) -> String {
        match self {
            Target::Sqlite { path } => format!(
                "[target]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n",
                path.display()
            ),
            Target::Postgres { url } => {
                format!("[target]\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"provider\"\n")
            }
        }
    }
}

/// A job file under construction.
#[derive(Debug, Clone)]
pub struct Job {
    pub source: PathBuf,
    pub target: Target,
    pub mode: &'static str,
    pub mapping: Option<PathBuf>,
    /// `key = value` lines of `[options]`.
    pub options: Vec<String>,
    /// A `[source]` section that replaces the NDJSON file's.
    pub source_section: Option<String>,
}

impl Job {
    pub fn full(source: &Path, target: &Target) -> Job {
        Job {
            source: source.to_path_buf(),
            target: target.clone(),
            mode: "full",
            mapping: None,
            options: vec!["page_size = 500".into()],
            source_section: None,
        }
    }

    /// A job reading the OneKey-style MDM at `url` (client `provsync`, its secret in
    /// the variable `secret_env`; 2 attempts per call) instead of a file.
    pub fn onekey(url: &str, secret_env: &str, target: &Target) -> Job {
        let mut job = Job::full(Path::new(""), target);
        job.source_section = Some(format!(
            "[source]\ntype = \"onekey\"\nurl = \"{url}\"\nclient_id = \"provsync\"\n\
             client_secret_env = \"{secret_env}\"\nmax_attempts = 2\nbackoff_ms = 20\n"
        ));
        job
    }

    pub fn option(mut self, line: &str) -> Job {
        let key = line.split('=').next().unwrap().trim().to_string();
        self.options
            .retain(|l| l.split('=').next().unwrap().trim() != key);
        self.options.push(line.to_string());
        self
    }

    pub fn mode(mut self, mode: &'static str) -> Job {
        self.mode = mode;
        self
    }

    pub fn toml(&self) -> String {
        let mut s = format!("scope = [\"US\"]\nmode = \"{}\"\n", self.mode);
        if let Some(m) = &self.mapping {
            s += &format!("mapping = \"{}\"\n", m.display());
        }
        match &self.source_section {
            Some(section) => s += section,
            None => {
                s += &format!(
                    "[source]\ntype = \"file\"\npath = \"{}\"\n",
                    self.source.display()
                )
            }
        }
        s += &self.target.toml();
        s += "[options]\n";
        for o in &self.options {
            s += o;
            s.push('\n');
        }
        s
    }

    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.toml()).unwrap();
        path.to_path_buf()
    }
}

/// The state store URL for a file in `dir`.
pub fn state_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

/// One finished `provsync run`.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    /// The JSON summary on stdout (Null when stdout was not JSON).
    pub summary: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(o: Output) -> Run {
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        Run {
            code: o.status.code().unwrap_or(-1),
            summary: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr,
        }
    }

    pub fn job_id(&self) -> String {
        self.summary["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_id in summary: {self}"))
            .to_string()
    }

    /// The job id, from the JSON summary or the text one (`job <id> <state>`).
    pub fn id(&self) -> String {
        if self.summary.is_null() {
            let mut words = self.stdout.split_whitespace();
            match (words.next(), words.next()) {
                (Some("job"), Some(id)) => id.to_string(),
                _ => panic!("no `job <id>` line: {self}"),
            }
        } else {
            self.job_id()
        }
    }

    pub fn count(&self, name: &str) -> u64 {
        self.summary["counts"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counts.{name} in summary: {self}"))
    }

    pub fn kind_count(&self, kind: &str, name: &str) -> u64 {
        self.summary["per_kind"][kind][name].as_u64().unwrap_or(0)
    }

    pub fn state(&self) -> &str {
        self.summary["state"].as_str().unwrap_or("<none>")
    }

    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code: {self}");
        self
    }

    /// extracted = rejected + created + updated + unchanged + failed + links still
    /// pending (deferred to the relations stage and not booked there).
    pub fn assert_reconciled(&self) {
        let sum: u64 = ["rejected", "created", "updated", "unchanged", "failed"]
            .iter()
            .map(|n| self.count(n))
            .sum();
        let pending = self.count("relations_staged")
            - self.count("relations_loaded")
            - self.count("relations_failed");
        assert_eq!(
            self.count("extracted"),
            sum + pending,
            "counts do not reconcile (extracted != rejected+created+updated+unchanged+failed+pending links): {}",
            self.summary["counts"]
        );
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = self.summary.clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("per_kind");
        }
        write!(
            f,
            "exit {} / summary {} / stderr: {}",
            self.code,
            if s.is_null() {
                self.stdout.clone()
            } else {
                s.to_string()
            },
            tail(&self.stderr, 2000)
        )
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn run_command(job: &Path, state: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg(job)
        .args(["--state", state, "--json", "-q"])
        .env("NO_COLOR", "1")
        .env_remove("PROVSYNC_STATE");
    c
}

/// Runs a job file to the end.
pub fn run(job: &Path, state: &str) -> Run {
    Run::from_output(
        run_command(job, state)
            .output()
            .expect("spawn provsync run"),
    )
}

/// Writes `job` as `dir/<name>.toml` and runs it with the state store of `dir`.
pub fn run_job(dir: &Path, name: &str, job: &Job) -> Run {
    let file = job.write(&dir.join(format!("{name}.toml")));
    run(&file, &state_url(dir))
}

/// A run in the background: stdout and stderr go to files in `dir`.
pub struct Background {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

pub fn spawn(job: &Path, state: &str, dir: &Path, name: &str) -> Background {
    spawn_command(run_command(job, state), dir, name)
}

/// `provsync abort` of a job; it must succeed.
pub fn abort_job(id: &str, state: &str) {
    let out = Command::new(bin())
        .args(["abort", id, "--state", state])
        .env_remove("PROVSYNC_STATE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "provsync abort failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a command in the background, its output in `dir` as `name.stdout|stderr`.
pub fn spawn_command(mut command: Command, dir: &Path, name: &str) -> Background {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let child = command
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .expect("spawn provsync run");
    Background {
        child,
        stdout,
        stderr,
    }
}

impl Background {
    /// The job id from stderr's `job <id> started`.
    pub fn job_id(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if let Some(id) = text.lines().find_map(|l| {
                let rest = l.trim().strip_prefix("job ")?;
                rest.strip_suffix(" started").map(str::to_string)
            }) {
                return id;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("run exited ({status}) before announcing its job: {text}");
            }
            assert!(
                Instant::now() < deadline,
                "no `job <id> started` on stderr: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The job id from stderr's `job <id> queued behind ...` line.
    pub fn job_id_queued(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if let Some(id) = text.lines().find_map(|l| {
                let rest = l.trim().strip_prefix("job ")?;
                rest.strip_suffix(" queued behind the target's active job")
                    .map(str::to_string)
            }) {
                return id;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("run exited ({status}) without being queued: {text}");
            }
            assert!(Instant::now() < deadline, "not queued: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the run to end, at most `bound`; past it the run is killed and
    /// the test fails.
    pub fn wait_within(mut self, bound: Duration) -> Run {
        let deadline = Instant::now() + bound;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let run = self.wait();
                panic!("the run did not end within {bound:?}: {run}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait()
    }

    pub fn wait(mut self) -> Run {
        let status = self.child.wait().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            summary: serde_json::from_str(&std::fs::read_to_string(&self.stdout).unwrap())
                .unwrap_or(Value::Null),
            stdout: std::fs::read_to_string(&self.stdout).unwrap(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap(),
        }
    }

    /// Polls `status --json` until `ready` holds; panics if the run ends first.
    pub fn wait_for_status(
        &mut self,
        id: &str,
        state: &str,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "the run ended ({s}) before {what}; make the world bigger. stdout: {}",
                    std::fs::read_to_string(&self.stdout).unwrap_or_default()
                );
            }
            let st = status(id, state);
            if ready(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {st}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// `provsync status <id> --json`.
pub fn status(id: &str, state: &str) -> Value {
    let o = Command::new(bin())
        .args(["status", id, "--state", state, "--json"])
        .env("NO_COLOR", "1")
        .output()
        .expect("spawn provsync status");
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// The token of the servers [`Serve::on_state`] starts (role operate: reads too).
pub const SERVE_TOKEN: &str = "e2e-operate-token-3b9d51";

/// The samples of metric `name` in a Prometheus text exposition: labels, value.
pub fn metric_samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        out.push((labels, value.parse().unwrap()));
    }
    out
}

/// A `provsync serve` process (its stderr echoed), killed on drop.
pub struct Serve {
    child: Child,
    /// `http://host:port`.
    pub base: String,
}

impl Serve {
    /// Spawns `command` (a `serve` with `--listen 127.0.0.1:0`) and waits for its
    /// `listening on` line.
    pub fn start(mut command: Command) -> Serve {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn provsync serve");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                eprintln!("serve: {line}");
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve did not print `listening on`");
        Serve { child, base }
    }

    /// `provsync serve` on the state store `state` (config in `dir`), on a free
    /// port, with [`SERVE_TOKEN`] and the environment `env` for its jobs. The token
    /// is an admin's, and the server lets it submit job files as they are
    /// (connectors written out in full) within the temporary folder (where the
    /// scenarios keep their worlds and targets) and the repository, to hosts on
    /// 127.0.0.1 (the emulators).
    pub fn on_state(dir: &Path, state: &str, env: &[(&str, &str)]) -> Serve {
        let config = dir.join("serve.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstate = \"{state}\"\n\
                 [[tokens]]\nname = \"e2e\"\nsha256 = \"{}\"\nrole = \"admin\"\n\
                 [api]\nfree_form_connectors = true\ndata_folders = [{:?}, {:?}]\n\
                 allowed_hosts = [\"127.0.0.1\"]\n",
                provsync::config::sha256_hex(SERVE_TOKEN),
                std::env::temp_dir().display().to_string(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("PROVSYNC_STATE")
            .env_remove("PROVSYNC_QUEUE")
            .envs(env.iter().copied());
        Serve::start(cmd)
    }

    /// `POST /v1/jobs` of a job file (its TOML as JSON); returns the job id.
    pub fn submit(&self, job: &Path) -> String {
        let body: Value = toml::from_str(&std::fs::read_to_string(job).unwrap()).unwrap();
        let accepted = self.call(
            SERVE_TOKEN,
            &[
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ],
            "/v1/jobs",
        );
        accepted["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the job was refused: {accepted}"))
            .to_owned()
    }

    /// The text of `GET /metrics`.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "30", "-H"])
            .arg(format!("Authorization: Bearer {SERVE_TOKEN}"))
            .arg(format!("{}/metrics", self.base))
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET /metrics failed");
        String::from_utf8(out.stdout).unwrap()
    }

    /// `provsync_records_total` by (stage, outcome, kind), as this server counts so far.
    pub fn records_metrics(&self) -> BTreeMap<(String, String, String), u64> {
        metric_samples(&self.metrics(), "provsync_records_total")
            .into_iter()
            .map(|(l, v)| {
                (
                    (l["stage"].clone(), l["outcome"].clone(), l["kind"].clone()),
                    v as u64,
                )
            })
            .collect()
    }

    /// Jobs this server drove to their end (`provsync_jobs_finished_total`, all states).
    pub fn jobs_finished(&self) -> u64 {
        metric_samples(&self.metrics(), "provsync_jobs_finished_total")
            .iter()
            .map(|(_, v)| *v as u64)
            .sum()
    }

    /// A JSON answer of `curl ARGS... URL`, `path` after the base URL.
    pub fn call(&self, token: &str, args: &[&str], path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Polls `GET /v1/jobs/{id}` until the job ended.
    pub fn wait_terminal(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let st = self.call(token, &[], &format!("/v1/jobs/{id}"));
            if ["completed", "completed_with_errors", "failed", "aborted"]
                .contains(&st["state"].as_str().unwrap_or_default())
            {
                return st;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {st}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// Target databases

pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Db {
    pub async fn open(target: &Target) -> Db {
        match target {
            Target::Sqlite { path } => {
                let opts = SqliteConnectOptions::new().filename(path).read_only(true);
                Db::Sqlite(
                    SqlitePool::connect_with(opts)
                        .await
                        .expect("open sqlite target"),
                )
            }
            Target::Postgres { url } => {
                let opts = PgConnectOptions::from_str(url)
                    .unwrap()
                    .options([("search_path", "provider")]);
                Db::Pg(
                    PgPool::connect_with(opts)
                        .await
                        .expect("open postgres target"),
                )
            }
        }
    }

    /// Rows of a query whose columns are all text (or NULL).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect(),
            Db::Pg(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect(),
        }
    }

    pub async fn ids(&self, sql: &str) -> BTreeSet<String> {
        self.rows(sql)
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    }

    pub async fn connected_ids(&self, kind: &str) -> BTreeSet<String> {
        self.ids(&format!(
            "SELECT source_id FROM {} WHERE connected = TRUE",
            table(kind)
        ))
        .await
    }

    pub async fn disconnected_ids(&self, kind: &str) -> BTreeSet<String> {
        self.ids(&format!(
            "SELECT source_id FROM {} WHERE connected = FALSE",
            table(kind)
        ))
        .await
    }

    /// source_id -> column value, for connected rows.
    pub async fn column(&self, kind: &str, col: &str) -> BTreeMap<String, Option<String>> {
        self.rows(&format!(
            "SELECT source_id, {col} FROM {} WHERE connected = TRUE",
            table(kind)
        ))
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone()))
        .collect()
    }

    /// Source ids with a change_log row of `change` for `kind` in `run`.
    pub async fn changes(&self, run: &str, kind: &str, change: &str) -> BTreeSet<String> {
        self.ids(&format!(
            "SELECT source_id FROM change_log WHERE run_id = '{run}' AND kind = '{kind}' AND change = '{change}'"
        ))
        .await
    }

    pub async fn change_rows_of_run(&self, run: &str) -> Vec<Vec<Option<String>>> {
        self.rows(&format!(
            "SELECT kind, source_id, change FROM change_log WHERE run_id = '{run}'"
        ))
        .await
    }

    /// Every row of every kind's table as (source_id -> connected, content_hash, the
    /// structural columns): what an interrupted and an uninterrupted run must agree on.
    pub async fn fingerprint(&self) -> BTreeMap<String, BTreeMap<String, Vec<Option<String>>>> {
        let conn = match self {
            Db::Sqlite(_) => "CASE WHEN connected THEN 'y' ELSE 'n' END",
            Db::Pg(_) => "CASE WHEN connected THEN 'y' ELSE 'n' END",
        };
        let mut out = BTreeMap::new();
        for kind in KINDS {
            let extra = match kind {
                "individual" => "first_name, last_name, npi, email",
                "workplace" => "parent_source_id, name, city, phone",
                "activity" => "individual_source_id, workplace_source_id, role",
                _ => "from_source_id, to_source_id, relation_type",
            };
            let rows = self
                .rows(&format!(
                    "SELECT source_id, {conn}, content_hash, {extra} FROM {}",
                    table(kind)
                ))
                .await;
            out.insert(
                kind.to_string(),
                rows.into_iter()
                    .map(|mut r| {
                        let id = r.remove(0).unwrap();
                        (id, r)
                    })
                    .collect(),
            );
        }
        out
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Pg(p) => p.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------
// Checks that collect every mismatch before failing, so one run shows them all.

#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.failures
                .push(format!("{what}: got {actual:?}, expected {expected:?}"));
        }
    }

    /// Two id sets are equal; the message shows a few ids of each difference.
    pub fn same_ids(&mut self, what: &str, actual: &BTreeSet<String>, expected: &BTreeSet<String>) {
        if actual != expected {
            let extra: Vec<_> = actual.difference(expected).take(5).collect();
            let missing: Vec<_> = expected.difference(actual).take(5).collect();
            self.failures.push(format!(
                "{what}: {} ids vs {} expected; unexpected {} (e.g. {extra:?}), missing {} (e.g. {missing:?})",
                actual.len(),
                expected.len(),
                actual.difference(expected).count(),
                expected.difference(actual).count(),
            ));
        }
    }

    /// Every (id -> value) pair of `expected` is in `actual`.
    pub fn same_values(
        &mut self,
        what: &str,
        actual: &BTreeMap<String, Option<String>>,
        expected: &BTreeMap<String, Option<String>>,
    ) {
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(id, v)| actual.get(*id) != Some(v))
            .map(|(id, v)| format!("{id}: got {:?}, expected {v:?}", actual.get(id)))
            .collect();
        if !wrong.is_empty() {
            self.failures.push(format!(
                "{what}: {} of {} differ, e.g. {:?}",
                wrong.len(),
                expected.len(),
                &wrong[..wrong.len().min(5)]
            ));
        }
    }

    pub fn check(&mut self, what: &str, ok: bool) {
        if !ok {
            self.failures.push(what.to_string());
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} check(s) failed:\n  - {}",
            self.failures.len(),
            self.failures.join("\n  - ")
        );
    }
}

fn str_field(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_string)
}

/// The target holds exactly the snapshot: connected ids per table, activity ends,
/// workplace parents, relation ends, and a few mapped fields.
pub async fn check_target_matches(c: &mut Checks, db: &Db, snap: &Snapshot, label: &str) {
    for kind in KINDS {
        c.same_ids(
            &format!("{label}: connected {} ids", table(kind)),
            &db.connected_ids(kind).await,
            &snap.ids(kind),
        );
    }
    let expect =
        |kind: &str, f: &dyn Fn(&Value) -> Option<String>| -> BTreeMap<String, Option<String>> {
            snap.of_kind(kind)
                .map(|(id, v)| (id.to_string(), f(v)))
                .collect()
        };
    c.same_values(
        &format!("{label}: activities.individual_source_id"),
        &db.column("activity", "individual_source_id").await,
        &expect("activity", &|v| str_field(v, "individual_id")),
    );
    c.same_values(
        &format!("{label}: activities.workplace_source_id"),
        &db.column("activity", "workplace_source_id").await,
        &expect("activity", &|v| str_field(v, "workplace_id")),
    );
    c.same_values(
        &format!("{label}: workplaces.parent_source_id"),
        &db.column("workplace", "parent_source_id").await,
        &expect("workplace", &|v| str_field(v, "parent_id")),
    );
    c.same_values(
        &format!("{label}: relations.to_source_id"),
        &db.column("relation", "to_source_id").await,
        &expect("relation", &|v| v.as_str().map(str::to_string)),
    );
    c.same_values(
        &format!("{label}: individuals.last_name"),
        &db.column("individual", "last_name").await,
        &expect("individual", &|v| str_field(v, "last_name")),
    );
    c.same_values(
        &format!("{label}: individuals.first_name"),
        &db.column("individual", "first_name").await,
        &expect("individual", &|v| str_field(v, "first_name")),
    );
    c.same_values(
        &format!("{label}: workplaces.name"),
        &db.column("workplace", "name").await,
        &expect("workplace", &|v| str_field(v, "name")),
    );
    c.same_values(
        &format!("{label}: workplaces.city"),
        &db.column("workplace", "city").await,
        &expect("workplace", &|v| {
            v.get("address").and_then(|a| str_field(a, "city"))
        }),
    );
}

// ---------------------------------------------------------------------------------
// One truth for counts: every surface of a run against what its target recorded.

/// The count fields a surface may show, in the run summary's names.
pub const COUNT_FIELDS: [&str; 12] = [
    "extracted",
    "rejected",
    "created",
    "updated",
    "unchanged",
    "failed",
    "disconnected",
    "connected",
    "moved",
    "relations_staged",
    "relations_loaded",
    "relations_failed",
];

/// The fields `provsync run`'s text summary and the progress display's last frame
/// show.
const SHOWN_FIELDS: [&str; 7] = [
    "extracted",
    "rejected",
    "created",
    "updated",
    "unchanged",
    "failed",
    "disconnected",
];

/// Counts by field name.
pub type Tally = BTreeMap<String, u64>;

/// One surface's reading of a run's counts: its headline and, when it shows them,
/// its counts per kind. It shows `fields` only; a kind it does not list counts 0.
#[derive(Debug, Clone)]
pub struct Reading {
    pub surface: String,
    pub fields: Vec<String>,
    pub headline: Option<Tally>,
    pub per_kind: Option<BTreeMap<String, Tally>>,
}

fn tally_of(v: &Value) -> Tally {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
        .collect()
}

fn per_kind_of(v: &Value) -> BTreeMap<String, Tally> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, t)| (k.clone(), tally_of(t)))
        .collect()
}

/// `name value` pairs of a line (`extracted 12  rejected 0 ...`).
fn pairs(text: &str) -> Tally {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter_map(|w| Some((w[0].to_string(), w[1].parse().ok()?)))
        .collect()
}

/// `value name` pairs of a phrase (`10 created, 2 updated`).
fn numbers_before_words(text: &str) -> Tally {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter_map(|w| Some((w[1].to_string(), w[0].parse().ok()?)))
        .collect()
}

impl Reading {
    /// A JSON surface: a headline object and a per-kind object (`Null` if none).
    pub fn json(surface: &str, headline: &Value, per_kind: &Value) -> Reading {
        Reading {
            surface: surface.to_string(),
            fields: COUNT_FIELDS.iter().map(|f| f.to_string()).collect(),
            headline: (!headline.is_null()).then(|| tally_of(headline)),
            per_kind: (!per_kind.is_null()).then(|| per_kind_of(per_kind)),
        }
    }

    /// `provsync run`'s text summary: the headline line and one line per kind.
    pub fn run_text(stdout: &str) -> Reading {
        let mut headline = None;
        let mut per_kind = BTreeMap::new();
        for line in stdout.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"extracted") {
                // The headline ends with the kinds it counts, in parentheses.
                headline = Some(pairs(line.split('(').next().unwrap()));
            } else if words.get(1) == Some(&"extracted") && KINDS.contains(&words[0]) {
                per_kind.insert(words[0].to_string(), pairs(line));
            }
        }
        Reading {
            surface: "`provsync run` text".into(),
            fields: SHOWN_FIELDS.iter().map(|f| f.to_string()).collect(),
            headline: Some(headline.unwrap_or_else(|| panic!("no headline in: {stdout}"))),
            per_kind: Some(per_kind),
        }
    }

    /// The progress display's last frame: the last `progress:` line on stderr (its
    /// `stage done` line), or None when the run drew none.
    pub fn progress(stderr: &str) -> Option<Reading> {
        let line = stderr.lines().rfind(|l| l.starts_with("progress:"))?;
        let (_, stages) = line
            .split_once("stage done: ")
            .unwrap_or_else(|| panic!("the last progress line is not the run's end: {line}"));
        let mut t = Tally::new();
        for part in stages.split("; ") {
            let (stage, rest) = part.split_once(' ').unwrap_or((part, ""));
            let n = numbers_before_words(rest);
            let mut take = |from: &str, to: &str| {
                if let Some(v) = n.get(from) {
                    t.insert(to.to_string(), *v);
                }
            };
            match stage {
                "extract" => take("records", "extracted"),
                "transform" => take("rejected", "rejected"),
                "load" => {
                    for f in ["created", "updated", "unchanged", "failed"] {
                        take(f, f);
                    }
                }
                "sweep" => take("disconnected", "disconnected"),
                _ => {}
            }
        }
        Some(Reading {
            surface: "the progress display's last frame".into(),
            fields: SHOWN_FIELDS.iter().map(|f| f.to_string()).collect(),
            headline: Some(t),
            per_kind: None,
        })
    }

    /// What `provsync_records_total` gained over a run, per kind.
    pub fn metrics(delta: &BTreeMap<(String, String, String), u64>) -> Reading {
        let mut per_kind: BTreeMap<String, Tally> = BTreeMap::new();
        for ((stage, outcome, kind), n) in delta {
            let field = match (stage.as_str(), outcome.as_str()) {
                ("load", "staged") => "relations_staged",
                ("relations", "loaded") => "relations_loaded",
                // Failed links are counted by the relations stage, and in `failed`.
                ("relations", "failed") => {
                    *per_kind
                        .entry(kind.clone())
                        .or_default()
                        .entry("relations_failed".into())
                        .or_default() += n;
                    "failed"
                }
                (_, outcome) => outcome,
            };
            *per_kind
                .entry(kind.clone())
                .or_default()
                .entry(field.to_string())
                .or_default() += n;
        }
        let mut fields: Vec<String> = SHOWN_FIELDS.iter().map(|f| f.to_string()).collect();
        fields
            .extend(["relations_staged", "relations_loaded", "relations_failed"].map(String::from));
        Reading {
            surface: "/metrics provsync_records_total".into(),
            fields,
            headline: None,
            per_kind: Some(per_kind),
        }
    }

    /// The readings of `provsync run`'s output: its JSON or text summary on stdout
    /// and, unless it ran quiet, its progress display's last frame on stderr.
    pub fn of_run(run: &Run) -> Vec<Reading> {
        let mut out = vec![if run.summary.is_null() {
            Reading::run_text(&run.stdout)
        } else {
            Reading::json(
                "`provsync run --json`",
                &run.summary["counts"],
                &run.summary["per_kind"],
            )
        }];
        out.extend(Reading::progress(&run.stderr));
        out
    }
}

/// What a target recorded of one run, per kind: how many records each change
/// touched. Only `changes` are known; others are not compared.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Where the numbers come from ("the change log", "the org").
    pub by: &'static str,
    pub changes: Vec<&'static str>,
    /// (kind, change) -> records.
    pub counts: BTreeMap<(String, String), u64>,
}

impl Recorded {
    pub fn get(&self, kind: &str, change: &str) -> u64 {
        self.counts
            .get(&(kind.to_string(), change.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The change log's rows of the run whose summary this is: created, updated,
    /// moved, disconnected, and connected = created + reconnected. A workplace's
    /// hierarchy change is logged against the workplace as an effect of its `parent`
    /// relation's write (counted as that relation's change), so those rows are left
    /// out of the workplace's own moves. After a full run that swept, the target
    /// also tells `unchanged`: its connected rows the run did not write.
    pub async fn change_log(db: &Db, summary: &Value) -> Recorded {
        let id = summary["job_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job_id in {summary}"));
        let rows = db
            .rows(&format!(
                "SELECT kind, change, CAST(count(*) AS TEXT) FROM change_log WHERE run_id = '{id}' \
                 AND (detail IS NULL OR detail NOT LIKE 'parent_source_id:%') GROUP BY kind, change"
            ))
            .await;
        let logged = |kind: &str, change: &str| -> u64 {
            rows.iter()
                .find(|r| r[0].as_deref() == Some(kind) && r[1].as_deref() == Some(change))
                .map_or(0, |r| r[2].as_deref().unwrap().parse().unwrap())
        };
        let mut r = Recorded {
            by: "the change log",
            changes: vec!["created", "updated", "moved", "disconnected", "connected"],
            counts: BTreeMap::new(),
        };
        for kind in KINDS {
            for change in ["created", "updated", "moved", "disconnected"] {
                r.counts
                    .insert((kind.into(), change.into()), logged(kind, change));
            }
            r.counts.insert(
                (kind.into(), "connected".into()),
                logged(kind, "created") + logged(kind, "reconnected"),
            );
        }
        if summary["mode"] == "full" && summary["sweep"]["skipped"].is_null() {
            r.changes.push("unchanged");
            for kind in KINDS {
                let n = db
                    .rows(&format!(
                        "SELECT CAST(count(*) AS TEXT) FROM {} WHERE connected = TRUE \
                         AND updated_run <> '{id}'",
                        table(kind)
                    ))
                    .await;
                r.counts.insert(
                    (kind.into(), "unchanged".into()),
                    n[0][0].as_deref().unwrap().parse().unwrap(),
                );
            }
        }
        r
    }
}

/// One truth for counts: the run summary's counts per kind equal what the target
/// recorded, its headline is their sum over the kinds it counts (`counted`), its
/// counts reconcile, and every surface's reading shows the summary's numbers.
/// `label` names the run in the messages.
pub fn check_one_truth(
    c: &mut Checks,
    label: &str,
    summary: &Value,
    recorded: &Recorded,
    readings: &[Reading],
) {
    let per_kind = per_kind_of(&summary["per_kind"]);
    let kind_count = |kind: &str, field: &str| -> u64 {
        per_kind
            .get(kind)
            .and_then(|t| t.get(field))
            .copied()
            .unwrap_or(0)
    };
    let counted: Vec<String> = match summary["counted"].as_array() {
        Some(kinds) => kinds
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect(),
        None => KINDS.iter().map(|k| k.to_string()).collect(),
    };
    c.eq(
        &format!("{label}: the summary reconciles"),
        summary["reconciled"].as_bool(),
        Some(true),
    );
    for change in &recorded.changes {
        let mut headline = 0;
        for kind in KINDS {
            c.eq(
                &format!(
                    "{label}: summary per_kind.{kind}.{change} vs {}",
                    recorded.by
                ),
                kind_count(kind, change),
                recorded.get(kind, change),
            );
            if counted.iter().any(|k| k == kind) {
                headline += recorded.get(kind, change);
            }
        }
        c.eq(
            &format!(
                "{label}: summary counts.{change} (headline over {counted:?}) vs {}",
                recorded.by
            ),
            summary["counts"][*change].as_u64().unwrap_or(0),
            headline,
        );
    }
    for field in COUNT_FIELDS {
        let sum: u64 = counted.iter().map(|k| kind_count(k, field)).sum();
        c.eq(
            &format!("{label}: summary counts.{field} vs its per_kind over {counted:?}"),
            summary["counts"][field].as_u64().unwrap_or(0),
            sum,
        );
    }
    for r in readings {
        for field in &r.fields {
            if let Some(h) = &r.headline {
                c.eq(
                    &format!("{label}: {} headline {field} vs the summary", r.surface),
                    h.get(field).copied(),
                    Some(summary["counts"][field].as_u64().unwrap_or(0)),
                );
            }
            let Some(kinds) = &r.per_kind else { continue };
            for kind in KINDS {
                c.eq(
                    &format!("{label}: {} {kind}.{field} vs the summary", r.surface),
                    kinds
                        .get(kind)
                        .map_or(0, |t| t.get(field).copied().unwrap_or(0)),
                    kind_count(kind, field),
                );
            }
        }
    }
}

/// One truth for counts of a `provsync run`: its summary (`--json`) against the
/// target's change log (see [`check_one_truth`], [`Recorded::change_log`]).
pub async fn check_counts_match_change_log(c: &mut Checks, db: &Db, run: &Run) {
    let recorded = Recorded::change_log(db, &run.summary).await;
    check_one_truth(c, "the run", &run.summary, &recorded, &[]);
}

/// How a run of a count test is started, and so which surfaces it has besides
/// `status --json`: `provsync run` (text summary, progress), `provsync run --json`
/// (JSON summary, progress), or `POST /v1/jobs` to a `provsync serve` (the API,
/// `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Text,
    Json,
    Serve,
}

/// Runs `job` on the state store `state` the way `via` says (`env` set for the
/// CLI; the server has its own) and returns its id and the readings of its own
/// output: `run`'s stdout and progress, or `/metrics`' gain over the run.
pub fn run_via(
    via: Via,
    job: &Path,
    state: &str,
    serve: &Serve,
    env: &[(&str, &str)],
) -> (String, Vec<Reading>) {
    match via {
        Via::Serve => run_served(serve, job),
        Via::Text | Via::Json => {
            let (run, readings) = run_cli(job, state, via == Via::Json, env);
            (run.id(), readings)
        }
    }
}

/// `provsync run` of `job` with its progress on stderr (off a terminal: lines),
/// its summary as text or JSON; the run and the readings of its output.
pub fn run_cli(job: &Path, state: &str, json: bool, env: &[(&str, &str)]) -> (Run, Vec<Reading>) {
    let mut cmd = Command::new(bin());
    cmd.arg("run").arg(job).args(["--state", state]);
    if json {
        cmd.arg("--json");
    }
    cmd.env("NO_COLOR", "1")
        .env_remove("PROVSYNC_STATE")
        .envs(env.iter().copied());
    let run = Run::from_output(cmd.output().expect("spawn provsync run"));
    assert!(matches!(run.code, 0 | 2), "the run did not complete: {run}");
    let readings = Reading::of_run(&run);
    assert!(
        readings.len() == 2,
        "`provsync run` drew no progress off a terminal: {run}"
    );
    (run, readings)
}

/// `POST /v1/jobs` of `job` to `serve`, waited for; its id and what
/// `provsync_records_total` gained over it.
pub fn run_served(serve: &Serve, job: &Path) -> (String, Vec<Reading>) {
    let before = serve.records_metrics();
    let finished = serve.jobs_finished();
    let id = serve.submit(job);
    let end = serve.wait_terminal(SERVE_TOKEN, &id);
    assert!(
        matches!(
            end["state"].as_str(),
            Some("completed" | "completed_with_errors")
        ),
        "{end}"
    );
    // The runner records a job in the metrics just after its final state.
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.jobs_finished() == finished {
        assert!(Instant::now() < deadline, "job {id} never reached /metrics");
        std::thread::sleep(Duration::from_millis(100));
    }
    let delta = serve
        .records_metrics()
        .into_iter()
        .map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, n - was)
        })
        .collect();
    (id, vec![Reading::metrics(&delta)])
}

/// The surfaces anyone can read of a finished job: `provsync status --json` and,
/// given a server, `GET /v1/jobs/{id}` and its line in `GET /v1/jobs`; with the run
/// summary they read (the one `--json` prints).
pub fn read_surfaces(id: &str, state: &str, serve: Option<&Serve>) -> (Value, Vec<Reading>) {
    let st = status(id, state);
    let summary = st["summary"].clone();
    assert!(summary.is_object(), "no summary for {id}: {st}");
    let mut readings = vec![Reading::json(
        "`provsync status --json`",
        &st["counts"],
        &st["per_kind"],
    )];
    if let Some(s) = serve {
        let v = s.call(SERVE_TOKEN, &[], &format!("/v1/jobs/{id}"));
        readings.push(Reading::json(
            "GET /v1/jobs/{id}",
            &v["counts"]["total"],
            &v["counts"]["per_kind"],
        ));
        let list = s.call(SERVE_TOKEN, &[], "/v1/jobs?limit=100");
        let item = list["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["job_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in GET /v1/jobs: {list}"));
        readings.push(Reading::json("GET /v1/jobs", &item["counts"], &Value::Null));
    }
    (summary, readings)
}

/// Reads every surface of a finished job on an SQL target and checks them against
/// the change log (see [`check_one_truth`]); `own` are the readings of the run's
/// own output ([`run_via`]). Returns the run summary.
pub async fn check_sql_run_on_every_surface(
    c: &mut Checks,
    label: &str,
    target: &Target,
    (id, own): (String, Vec<Reading>),
    state: &str,
    serve: Option<&Serve>,
) -> Value {
    let (summary, mut readings) = read_surfaces(&id, state, serve);
    readings.extend(own);
    let db = Db::open(target).await;
    let recorded = Recorded::change_log(&db, &summary).await;
    db.close().await;
    check_one_truth(c, label, &summary, &recorded, &readings);
    summary
}

// ---------------------------------------------------------------------------------
// Scenarios shared by the SQLite and PostgreSQL tests

/// A generated world loads into an empty target exactly.
pub async fn scenario_world_matches_snapshot(dir: &Path, target: &Target) {
    let world = generate(dir, 3000, 42, 1);
    let snap = Snapshot::load(&world);
    let run = run_job(dir, "night1", &Job::full(&world, target));
    run.expect_code(0);
    assert_eq!(run.state(), "completed", "{run}");
    run.assert_reconciled();

    let mut c = Checks::default();
    c.eq("extracted", run.count("extracted"), snap.extracted());
    c.eq(
        "created",
        run.count("created"),
        snap.entities() + snap.links(),
    );
    c.eq("updated", run.count("updated"), 0);
    c.eq("unchanged", run.count("unchanged"), 0);
    c.eq("rejected", run.count("rejected"), 0);
    c.eq("failed", run.count("failed"), 0);
    c.eq("relations_failed", run.count("relations_failed"), 0);
    c.eq("disconnected", run.count("disconnected"), 0);
    for kind in KINDS {
        c.eq(
            &format!("per_kind.{kind}.created"),
            run.kind_count(kind, "created"),
            snap.count(kind),
        );
    }
    let db = Db::open(target).await;
    check_counts_match_change_log(&mut c, &db, &run).await;
    check_target_matches(&mut c, &db, &snap, "night 1").await;
    let run_id = run.job_id();
    for kind in KINDS {
        c.same_ids(
            &format!("`created` change_log rows for {kind}"),
            &db.changes(&run_id, kind, "created").await,
            &snap.ids(kind),
        );
    }
    db.close().await;
    c.finish();
}

/// Night 2 over night 1: changes, additions, moves and disconnections, exactly.
pub async fn scenario_night_two(dir: &Path, target: &Target) {
    // Seed 11's night 2 also detaches workplaces from their parents.
    let n1 = generate(dir, 3000, 11, 1);
    let n2 = generate(dir, 3000, 11, 2);
    let (s1, s2) = (Snapshot::load(&n1), Snapshot::load(&n2));
    let diff = Diff::between(&s1, &s2);
    // Night 2 of the generator has every kind of change; make sure of it so the
    // test cannot pass vacuously.
    for kind in KINDS {
        assert!(!diff.gone[kind].is_empty(), "night 2 removes no {kind}");
    }
    for kind in ["individual", "workplace", "activity"] {
        assert!(!diff.created[kind].is_empty(), "night 2 adds no {kind}");
        assert!(!diff.changed[kind].is_empty(), "night 2 changes no {kind}");
    }
    assert!(
        !diff.moved_activities.is_empty(),
        "night 2 moves no activity"
    );

    // Ordinary nightly churn is a few percent; keep the guard out of the way.
    let opts = |j: Job| j.option("max_disconnect_share = 0.25");
    let r1 = run_job(dir, "night1", &opts(Job::full(&n1, target)));
    r1.expect_code(0);
    let r2 = run_job(dir, "night2", &opts(Job::full(&n2, target)));
    r2.expect_code(0);
    assert_eq!(r2.state(), "completed", "{r2}");
    r2.assert_reconciled();
    let run2 = r2.job_id();

    let mut c = Checks::default();
    c.eq("night 2 extracted", r2.count("extracted"), s2.extracted());
    for (name, expected) in diff.expected_counts() {
        c.eq(&format!("night 2 counts.{name}"), r2.count(name), expected);
    }
    for kind in KINDS {
        c.eq(
            &format!("night 2 sweep.disconnected.{kind}"),
            r2.summary["sweep"]["disconnected"][kind]
                .as_u64()
                .unwrap_or(0),
            diff.gone[kind].len() as u64,
        );
    }
    for kind in ENTITY_KINDS {
        c.eq(
            &format!("night 2 per_kind.{kind}.updated"),
            r2.kind_count(kind, "updated"),
            diff.changed[kind].len() as u64,
        );
        c.eq(
            &format!("night 2 per_kind.{kind}.created"),
            r2.kind_count(kind, "created"),
            diff.created[kind].len() as u64,
        );
    }

    let db = Db::open(target).await;
    check_counts_match_change_log(&mut c, &db, &r2).await;
    check_target_matches(&mut c, &db, &s2, "after night 2").await;
    for kind in KINDS {
        c.same_ids(
            &format!("{} disconnected rows", table(kind)),
            &db.disconnected_ids(kind).await,
            &diff.gone[kind],
        );
        c.same_ids(
            &format!("`disconnected` change_log rows of night 2 for {kind}"),
            &db.changes(&run2, kind, "disconnected").await,
            &diff.gone[kind],
        );
        c.same_ids(
            &format!("`created` change_log rows of night 2 for {kind}"),
            &db.changes(&run2, kind, "created").await,
            &diff.created[kind],
        );
    }
    for kind in ["individual", "workplace", "activity"] {
        c.same_ids(
            &format!("`updated` change_log rows of night 2 for {kind}"),
            &db.changes(&run2, kind, "updated").await,
            &diff.changed[kind],
        );
    }
    c.same_ids(
        "`moved` change_log rows of night 2 for activities",
        &db.changes(&run2, "activity", "moved").await,
        &diff.moved_activities,
    );
    db.close().await;
    c.finish();
}

/// A new, empty state store meeting an already synced target: the target says
/// what it holds, so nothing is rewritten or logged, and every record counts
/// unchanged (before, every record counted `created` and was rewritten). The
/// second run goes `via` the CLI or a `provsync serve` on the new store; every
/// surface it has says so, and the target's rows are as they were.
pub async fn scenario_fresh_state_store_rewrites_nothing(dir: &Path, target: &Target, via: Via) {
    let world = generate(dir, 1500, 5, 1);
    let snap = Snapshot::load(&world);
    let job = Job::full(&world, target);
    run_job(dir, "first", &job).expect_code(0);
    let db = Db::open(target).await;
    let before = db.fingerprint().await;
    db.close().await;

    let fresh = tempfile::tempdir().unwrap();
    let state = state_url(fresh.path());
    let file = job.write(&dir.join("again.toml"));
    let serve = Serve::on_state(fresh.path(), &state, &[]);
    let second = run_via(via, &file, &state, &serve, &[]);
    let id = second.0.clone();
    let mut c = Checks::default();
    let summary =
        check_sql_run_on_every_surface(&mut c, "fresh store", target, second, &state, Some(&serve))
            .await;
    drop(serve);
    c.eq("state", summary["state"].as_str(), Some("completed"));
    c.eq("created", summary["counts"]["created"].as_u64(), Some(0));
    c.eq("updated", summary["counts"]["updated"].as_u64(), Some(0));
    c.eq(
        "unchanged",
        summary["counts"]["unchanged"].as_u64(),
        Some(snap.entities() + snap.links()),
    );
    let db = Db::open(target).await;
    c.eq(
        "change_log rows of the run with a fresh state store",
        db.change_rows_of_run(&id).await,
        vec![],
    );
    let rewritten = db
        .rows(&format!(
            "SELECT source_id FROM individuals WHERE updated_run = '{id}'"
        ))
        .await;
    c.eq("individual rows the second run rewrote", rewritten.len(), 0);
    let after = db.fingerprint().await;
    let changed: Vec<(&String, &String)> = before
        .iter()
        .flat_map(|(kind, rows)| {
            rows.iter()
                .filter(|(id, row)| after[kind].get(*id) != Some(row))
                .map(move |(id, _)| (kind, id))
        })
        .collect();
    c.eq(
        "rows (content hash, connection, ends) the fresh-store run changed",
        &changed[..changed.len().min(5)],
        &[],
    );
    for kind in KINDS {
        c.eq(
            &format!("{} rows after the fresh-store run", table(kind)),
            after[kind].len(),
            before[kind].len(),
        );
    }
    check_target_matches(&mut c, &db, &snap, "after the fresh-store run").await;
    db.close().await;
    // The store learned the target's state: a third run skips every record at once.
    let third = run(&file, &state);
    third.expect_code(0);
    c.eq(
        "third run unchanged",
        third.count("unchanged"),
        snap.entities() + snap.links(),
    );
    c.finish();
}

/// The same snapshot twice: the second run changes nothing and logs nothing.
pub async fn scenario_unchanged_rerun(dir: &Path, target: &Target) {
    let world = generate(dir, 1500, 9, 1);
    let snap = Snapshot::load(&world);
    let job = Job::full(&world, target);
    run_job(dir, "first", &job).expect_code(0);
    let second = run_job(dir, "second", &job);
    second.expect_code(0);
    second.assert_reconciled();
    let mut c = Checks::default();
    c.eq("extracted", second.count("extracted"), snap.extracted());
    c.eq("created", second.count("created"), 0);
    c.eq("updated", second.count("updated"), 0);
    c.eq(
        "unchanged",
        second.count("unchanged"),
        snap.entities() + snap.links(),
    );
    c.eq("disconnected", second.count("disconnected"), 0);
    let db = Db::open(target).await;
    c.eq(
        "change_log rows of the second run",
        db.change_rows_of_run(&second.job_id()).await,
        vec![],
    );
    check_target_matches(&mut c, &db, &snap, "after the rerun").await;
    db.close().await;
    c.finish();
}

// ---------------------------------------------------------------------------------
// PostgreSQL: one database per test, dropped when the guard goes.

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates a fresh database, or returns None (after printing why) when the
    /// server is unreachable and CI is not set; with CI=true that is a failure.
    pub async fn create() -> Option<PgDatabase> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = format!("{PG_SERVER}/postgres");
        let admin = tokio::time::timeout(
            Duration::from_secs(10),
            PgConnectOptions::from_str(&admin_url).unwrap().connect(),
        )
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        let mut admin = match admin {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL at {admin_url} is unreachable and CI=true: {e}");
                }
                eprintln!("SKIPPED: PostgreSQL at {admin_url} is unreachable ({e})");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "provsync_e2e_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::SeqCst)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        Some(PgDatabase {
            url: format!("{PG_SERVER}/{name}"),
            name,
        })
    }

    pub fn target(&self) -> Target {
        Target::Postgres {
            url: self.url.clone(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside a tokio test runtime: do the blocking work on a thread of
        // its own with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnectOptions::from_str(&format!("{PG_SERVER}/postgres"))
                    .unwrap()
                    .connect()
                    .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            })
        })
        .join();
    }
}

/// Whether RabbitMQ answers; a failure with `CI=true` when it does not.
pub fn broker_up() -> bool {
    match std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(3),
    ) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("RabbitMQ on 127.0.0.1:5672 is required in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: RabbitMQ on 127.0.0.1:5672 unreachable: {e}");
            false
        }
    }
}

// ---------------------------------------------------------------------------------
// The distributed runtime: stage queues of their own, worker processes.

/// A queue URL with a prefix of its own (`provsync-<name>-<pid>`), and the prefix.
pub fn stage_queue(name: &str) -> (String, String) {
    let prefix = format!("provsync-{name}-{}", std::process::id());
    let url = format!("amqp://guest:guest@127.0.0.1:5672/%2f?prefix={prefix}");
    (url, prefix)
}

/// Deletes a prefix's stage queues.
pub fn delete_queues(prefix: &str) {
    for q in ["transform", "load", "dead"] {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_queue", &format!("{prefix}.{q}")])
            .output();
    }
}

/// A `provsync worker` process on its own queue prefix.
pub struct Worker {
    pub child: Child,
    pub prefix: String,
    /// The queue URL drivers of this worker's jobs use.
    pub queue: String,
    pub log: PathBuf,
}

impl Worker {
    /// Starts a worker with `env` set (`None` removes the variable, so the worker
    /// lacks it whatever this process holds).
    pub fn start(dir: &Path, state: &str, name: &str, env: &[(&str, Option<&str>)]) -> Worker {
        let (queue, prefix) = stage_queue(name);
        let log = dir.join(format!("{name}-worker.log"));
        let mut c = Command::new(bin());
        c.args(["worker", "--state", state, "--queue", &queue])
            .env("PROVSYNC_LOG", "provsync=info")
            .env_remove("PROVSYNC_STATE")
            .env_remove("PROVSYNC_QUEUE");
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn provsync worker");
        Worker {
            child,
            prefix,
            queue,
            log,
        }
    }

    /// Kills the worker, deletes its queues, and returns its log.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        delete_queues(&self.prefix);
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
