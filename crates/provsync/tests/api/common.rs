//! Helpers: start the server, talk to it, generate worlds.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

pub const READ_TOKEN: &str = "read-token-5f1c0a";
pub const OPERATE_TOKEN: &str = "operate-token-9b7e22";
pub const ADMIN_TOKEN: &str = "admin-token-c3d4e5";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_provsync")
}

/// A running `provsync serve`, killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
    /// The state store URL it was started with.
    pub state: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn config_text(state: &str) -> String {
    let mut s = format!("listen = \"127.0.0.1:0\"\nstate = \"{state}\"\n");
    for (name, token, role) in [
        ("reporting", READ_TOKEN, "read"),
        ("crm", OPERATE_TOKEN, "operate"),
        ("ops", ADMIN_TOKEN, "admin"),
    ] {
        s.push_str(&format!(
            "\n[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
            provsync::config::sha256_hex(token)
        ));
    }
    s
}

/// The connections every test server has: `world` reads `world.ndjson` of the
/// server's folder (see [`world_named`]), `warehouse` writes its `provider.db`.
pub const NAMED_CONNECTIONS: &str = r#"
[sources.world]
type = "file"
path = "world.ndjson"

[targets.warehouse]
type = "sqlite"
url = "sqlite://provider.db"
"#;

/// A job over the named connections `world` and `warehouse`.
pub fn named_job() -> Value {
    serde_json::json!({"scope": ["US"], "source": "world", "target": "warehouse"})
}

/// Generates a world into `dir/world.ndjson`, the file of the `world` connection.
pub fn world_named(dir: &Path, individuals: u32) -> PathBuf {
    let generated = generate(dir, individuals);
    let named = dir.join("world.ndjson");
    std::fs::rename(&generated, &named).unwrap();
    named
}

/// The `[api]` table of the test servers: admin tokens may write connectors out in
/// full (most tests describe their own files), within the server's folder and the
/// repository's fixtures, and reach loopback hosts only.
pub fn free_form_api(dir: &Path) -> String {
    format!(
        "[api]\nfree_form_connectors = true\ndata_folders = [{:?}, {:?}]\n\
         allowed_hosts = [\"127.0.0.1\"]\n",
        dir.display().to_string(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
    )
}

impl Server {
    /// Starts the server with a SQLite state store and waits for `listening on`.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let state = format!("sqlite://{}", dir.path().join("state.db").display());
        Self::start_in(dir, &state)
    }

    /// Starts the server with the given state store URL.
    pub fn start_with_state(state: &str) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), state)
    }

    fn start_in(dir: tempfile::TempDir, state: &str) -> Server {
        Self::start_configured(dir, state, "")
    }

    /// Starts the server in `dir` with the standard config plus `extra` TOML
    /// (schedules, callbacks), on the given state store.
    pub fn start_configured(dir: tempfile::TempDir, state: &str, extra: &str) -> Server {
        Self::start_with_env(dir, state, extra, &[])
    }

    /// Like [`Server::start_configured`], with extra environment variables.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        state: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let config = dir.path().join("provsync.toml");
        let api = if extra.contains("[api]") {
            String::new()
        } else {
            free_form_api(dir.path())
        };
        std::fs::write(
            &config,
            format!(
                "{}\n{extra}\n{NAMED_CONNECTIONS}\n{api}",
                config_text(state)
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--config").arg(&config);
        for (k, _) in std::env::vars() {
            if k.starts_with("PROVSYNC_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // No PROVSYNC_LOG: the tests see what an operator sees by default.
        let mut child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn provsync serve");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // `listening on http://...`, or `https://...` with `[tls]`.
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
                keep.lock().unwrap().push(line);
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not print `listening on`: {}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child: Some(child),
            base,
            dir,
            stderr: lines,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            state: state.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_url(&self) -> String {
        self.state.clone()
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The log once every `needle` is in it (stderr is read by another thread).
    pub async fn logs_with(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            if needles.iter().all(|n| logs.contains(n)) {
                return logs;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the log never had all of {needles:?}:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and returns (status, JSON body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {text}"));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(READ_TOKEN), None).await
    }

    /// `POST /v1/jobs` with the admin token (test jobs write their connectors out
    /// in full, which only admin tokens may).
    pub async fn submit(&self, job: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/jobs", Some(ADMIN_TOKEN), Some(job))
            .await
    }

    /// Polls a job's status until `pred` holds.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; last status: {v:#}\nserver log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for(id, "a terminal state", Duration::from_secs(120), |v| {
            matches!(
                v["state"].as_str(),
                Some("completed" | "completed_with_errors" | "failed" | "aborted")
            )
        })
        .await
    }
}

/// Runs `provsync config check <file>` with only `env` of the `PROVSYNC_*` variables.
pub fn config_check(file: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(["config", "check"]).arg(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("PROVSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// Runs `provsync generate` into `dir`.
pub fn generate(dir: &Path, individuals: u32) -> PathBuf {
    let out = dir.join(format!("world-{individuals}.ndjson"));
    let o = Command::new(bin())
        .args(["generate", "--individuals", &individuals.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("spawn provsync generate");
    assert!(
        o.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// (lines, extracted records the run should count) of a world file:
/// every line plus the derived `parent` relation of each workplace with a parent.
pub fn world_counts(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut lines, mut parents) = (0, 0);
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let kind = v["kind"].as_str().unwrap_or("");
        if kind == "workplace" && v.get("parent_id").is_some_and(|p| p.is_string()) {
            parents += 1;
        }
    }
    (lines, lines + parents)
}

/// A file-to-SQLite job request.
pub fn job(world: &Path, target_db: &Path) -> Value {
    serde_json::json!({
        "kind": "provider-sync",
        "mode": "full",
        "scope": ["US"],
        "source": {"type": "file", "path": world.display().to_string()},
        "target": {"type": "sqlite", "url": format!("sqlite://{}", target_db.display())},
    })
}

pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A PostgreSQL database made for one test (dropped by `drop_db`).
pub struct TempPgDb {
    pub name: String,
    pub url: String,
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl TempPgDb {
    /// A fresh database; `None` (test skipped) when the server is down, unless
    /// `CI=true`, where a missing server fails the test.
    pub async fn create() -> Option<TempPgDb> {
        let admin = match sqlx::PgPool::connect(PG_ADMIN).await {
            Ok(p) => p,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL on 127.0.0.1:5432 is required in CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL on 127.0.0.1:5432 unreachable: {e}");
                return None;
            }
        };
        let name = format!("provsync_api_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(TempPgDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        })
    }

    /// Drops the database (after the server using it has stopped).
    pub async fn drop_db(self) {
        let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    }
}

/// Runs each scenario (`async fn(state: &str)`, which starts its server on that
/// state store) as two tests: `sqlite_state::<name>` on a SQLite file and
/// `postgres_state::<name>` on a fresh PostgreSQL database (required in CI).
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite_state {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let dir = tempfile::tempdir().unwrap();
                    let state = format!("sqlite://{}", dir.path().join("state.db").display());
                    super::$scenario(&state).await;
                }
            )*
        }
        mod postgres_state {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(db) = $crate::common::TempPgDb::create().await else {
                        return;
                    };
                    super::$scenario(&db.url).await;
                    db.drop_db().await;
                }
            )*
        }
    };
}
