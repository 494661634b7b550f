//! The OneKey-style MDM end to end: the real `provsync emulate onekey` process serves
//! a generated world; the real `provsync run` syncs it into PostgreSQL; the target is
//! compared with the generator's snapshot of the same world, and the emulator's
//! request log shows what was fetched.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::*;

/// A running `provsync emulate onekey`; killed when dropped.
struct Emulator {
    child: Child,
    /// Held open so the emulator's stdout never breaks.
    _stdout: BufReader<std::process::ChildStdout>,
    url: String,
    log: PathBuf,
}

impl Emulator {
    /// Starts the emulator over `individuals` at `night`, with extra flags.
    fn start(dir: &Path, individuals: u32, seed: u64, night: u32, flags: &[&str]) -> Emulator {
        let log = dir.join(format!("requests-night{night}.ndjson"));
        let mut child = Command::new(bin())
            .args(["emulate", "onekey", "--listen", "127.0.0.1:0"])
            .args(["--individuals", &individuals.to_string()])
            .args(["--seed", &seed.to_string(), "--night", &night.to_string()])
            .arg("--request-log")
            .arg(&log)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn provsync emulate onekey");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("onekey emulator listening on ")
            .unwrap_or_else(|| panic!("emulator did not announce its address: {line:?}"))
            .to_string();
        Emulator {
            child,
            _stdout: stdout,
            url,
            log,
        }
    }

    /// The request log: one JSON object per request.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Packet requests of a log: (cursor, status).
fn packet_requests(log: &[Value]) -> Vec<(String, u64)> {
    log.iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/packets")))
        .map(|r| {
            (
                r["cursor"].as_str().unwrap_or("").to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn count(log: &[Value], method: &str, path_end: &str, status: u64) -> usize {
    log.iter()
        .filter(|r| {
            r["method"] == method
                && r["path"].as_str().is_some_and(|p| p.ends_with(path_end))
                && r["status"] == status
        })
        .count()
}

/// A OneKey job: kind, mode, extra `[source]` lines, extra `[options]` lines.
struct OneKeyJob<'a> {
    kind: &'a str,
    mode: &'a str,
    source: &'a str,
    options: &'a str,
}

impl<'a> OneKeyJob<'a> {
    fn full() -> Self {
        OneKeyJob {
            kind: "provider-sync",
            mode: "full",
            source: "",
            options: "",
        }
    }

    /// Writes the job file: OAuth2 credentials, the secret from the environment.
    fn write(&self, dir: &Path, name: &str, emu: &Emulator, target: &Target) -> PathBuf {
        let target = match target {
            Target::Postgres { url } => {
                format!("[target]\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"provider\"\n")
            }
            Target::Sqlite { path } => format!(
                "[target]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n",
                path.display()
            ),
        };
        let text = format!(
            "kind = \"{}\"\nmode = \"{}\"\nscope = [\"US\"]\n\
             [source]\ntype = \"onekey\"\nurl = \"{}\"\n\
             client_id = \"provsync\"\nclient_secret_env = \"E2E_ONEKEY_SECRET\"\n\
             backoff_ms = 20\nbackoff_max_ms = 500\nmax_attempts = 12\n{}\n\
             {target}[options]\nmax_disconnect_share = 0.25\n{}\n",
            self.kind,
            self.mode,
            emu.url,
            self.source,
            if self.options.contains("page_size") {
                self.options.to_string()
            } else {
                format!("page_size = 500\n{}", self.options)
            }
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn run_onekey(job: &Path, dir: &Path) -> Run {
    std::env::set_var("E2E_ONEKEY_SECRET", "provsync-secret");
    std::env::set_var("E2E_ONEKEY_API_KEY", "provsync-api-key");
    run(job, &state_url(dir))
}

/// The checks of a full sync of `snap` into an empty target.
async fn check_full_sync(run: &Run, target: &Target, snap: &Snapshot, label: &str) {
    let mut c = Checks::default();
    c.eq(
        &format!("{label}: extracted"),
        run.count("extracted"),
        snap.extracted(),
    );
    c.eq(
        &format!("{label}: created"),
        run.count("created"),
        snap.entities() + snap.links(),
    );
    c.eq(&format!("{label}: rejected"), run.count("rejected"), 0);
    c.eq(&format!("{label}: failed"), run.count("failed"), 0);
    let db = Db::open(target).await;
    check_target_matches(&mut c, &db, snap, label).await;
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_codes_then_full_sync_matches_the_generated_snapshot() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    let emu = Emulator::start(dir.path(), 3000, 42, 1, &[]);

    // Codes first (seed: codes sync before the bulk sync), with the API key.
    let codes = OneKeyJob {
        kind: "codes-sync",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "codes", &emu, &target);
    let text = std::fs::read_to_string(&codes).unwrap().replace(
        "client_id = \"provsync\"\nclient_secret_env = \"E2E_ONEKEY_SECRET\"\n",
        "api_key_env = \"E2E_ONEKEY_API_KEY\"\n",
    );
    std::fs::write(&codes, text).unwrap();
    let r = run_onekey(&codes, dir.path());
    r.expect_code(0);
    let lists: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/countries/US/code-lists", emu.url))
        .header("x-api-key", "provsync-api-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served: u64 = lists["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["codes"].as_array().unwrap().len() as u64)
        .sum();
    assert!(
        served > 600,
        "the MDM serves the NUCC specialties and roles: {served}"
    );
    assert_eq!(r.kind_count("code", "created"), served, "{r}");

    let job = OneKeyJob::full().write(dir.path(), "full", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    assert_eq!(r.state(), "completed", "{r}");
    r.assert_reconciled();
    let snap = Snapshot::load(&generate(dir.path(), 3000, 42, 1));
    check_full_sync(&r, &target, &snap, "full sync").await;

    // Specialties and roles arrive as OneKey codes, all of them in the synced code lists.
    let db = Db::open(&target).await;
    let missing = db
        .ids(
            "SELECT i.source_id FROM individuals i LEFT JOIN codes c \
             ON c.source_id = i.primary_specialty WHERE c.source_id IS NULL",
        )
        .await;
    assert!(
        missing.is_empty(),
        "specialties without a code: {:?}",
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let roles = db
        .ids("SELECT DISTINCT a.role FROM activities a JOIN codes c ON c.source_id = a.role WHERE c.list = 'ROL'")
        .await;
    assert!(
        roles.iter().all(|r| r.starts_with("WUS.ROL.")) && !roles.is_empty(),
        "{roles:?}"
    );
    db.close().await;

    // One session, each packet fetched once, the session deleted at the end.
    let log = emu.requests();
    assert_eq!(count(&log, "POST", "/api/v1/sync-sessions", 201), 1);
    assert_eq!(
        count(&log, "DELETE", "", 204),
        1,
        "the session is deleted at the end"
    );
    let packets = packet_requests(&log);
    let unique: BTreeSet<_> = packets.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(unique.len(), packets.len(), "a packet was fetched twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_delta_night_applies_exactly_the_nights_changes() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    let (s1, s2) = (
        Snapshot::load(&generate(dir.path(), 3000, 11, 1)),
        Snapshot::load(&generate(dir.path(), 3000, 11, 2)),
    );
    let diff = Diff::between(&s1, &s2);
    {
        let emu = Emulator::start(dir.path(), 3000, 11, 1, &[]);
        let job = OneKeyJob::full().write(dir.path(), "night1", &emu, &target);
        run_onekey(&job, dir.path()).expect_code(0);
    }
    let emu = Emulator::start(dir.path(), 3000, 11, 2, &[]);
    let job = OneKeyJob {
        mode: "delta",
        source: "since_night = 1",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "night2", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    r.assert_reconciled();

    let mut c = Checks::default();
    let n = |m: &std::collections::BTreeMap<String, BTreeSet<String>>, k: &str| m[k].len() as u64;
    for kind in ENTITY_KINDS {
        c.eq(
            &format!("{kind} created"),
            r.kind_count(kind, "created"),
            n(&diff.created, kind),
        );
        // Changed records, and removed ones (now inactive).
        c.eq(
            &format!("{kind} updated"),
            r.kind_count(kind, "updated"),
            n(&diff.changed, kind) + n(&diff.gone, kind),
        );
    }
    c.eq(
        "disconnected (a delta sweeps nothing)",
        r.count("disconnected"),
        0,
    );
    // Only the night's records travel: far fewer than the snapshot.
    c.check(
        &format!(
            "delta extracted {} of a {}-record snapshot",
            r.count("extracted"),
            s2.extracted()
        ),
        r.count("extracted") < s2.extracted() / 4,
    );
    let db = Db::open(&target).await;
    for kind in ["individual", "workplace", "activity"] {
        let active = db
            .ids(&format!(
                "SELECT source_id FROM {} WHERE connected AND status = 'active'",
                table(kind)
            ))
            .await;
        c.same_ids(
            &format!("active {kind} ids after the delta"),
            &active,
            &s2.ids(kind),
        );
        let inactive = db
            .ids(&format!(
                "SELECT source_id FROM {} WHERE status = 'inactive'",
                table(kind)
            ))
            .await;
        c.same_ids(
            &format!("inactive {kind} ids after the delta"),
            &inactive,
            &diff.gone[kind],
        );
        c.same_ids(
            &format!("`updated` change_log rows of the delta for {kind}"),
            &db.changes(&r.job_id(), kind, "updated").await,
            &diff.changed[kind]
                .union(&diff.gone[kind])
                .cloned()
                .collect(),
        );
    }
    c.same_ids(
        "`moved` change_log rows of the delta",
        &db.changes(&r.job_id(), "activity", "moved").await,
        &diff.moved_activities,
    );
    c.same_values(
        "individuals.last_name after the delta",
        &db.column("individual", "last_name")
            .await
            .into_iter()
            .filter(|(id, _)| s2.get("individual", id).is_some())
            .collect(),
        &s2.of_kind("individual")
            .map(|(id, v)| (id.to_string(), v["last_name"].as_str().map(str::to_string)))
            .collect(),
    );
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_storm_of_5xx_and_429_completes_with_every_record() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    let emu = Emulator::start(
        dir.path(),
        2000,
        5,
        1,
        &[
            "--fail-5xx-share",
            "0.1",
            "--fail-429-share",
            "0.1",
            "--retry-after",
            "1",
        ],
    );
    let job = OneKeyJob {
        options: "page_size = 200",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "storm", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    r.assert_reconciled();
    let snap = Snapshot::load(&generate(dir.path(), 2000, 5, 1));
    check_full_sync(&r, &target, &snap, "after the storm").await;
    let log = emu.requests();
    let faults = |f: &str| log.iter().filter(|r| r["fault"] == f).count();
    assert!(
        faults("5xx") > 0 && faults("429") > 0,
        "the storm injected faults: {} 5xx, {} 429",
        faults("5xx"),
        faults("429")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_session_expiring_mid_run_is_reactivated_and_the_run_completes() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    let emu = Emulator::start(dir.path(), 2000, 6, 1, &["--expire-session-after", "3"]);
    let job = OneKeyJob {
        options: "page_size = 200",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "expiry", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    let snap = Snapshot::load(&generate(dir.path(), 2000, 6, 1));
    check_full_sync(&r, &target, &snap, "after session expiries").await;
    let log = emu.requests();
    let expired = count(&log, "GET", "/packets", 410);
    assert!(expired >= 3, "sessions expired {expired} times");
    assert_eq!(
        count(&log, "POST", "/api/v1/sync-sessions", 201),
        expired + 1
    );
    // The new session continued from the cursor: no packet was served twice.
    let served: Vec<_> = packet_requests(&log)
        .into_iter()
        .filter(|(_, s)| *s == 200)
        .map(|(c, _)| c)
        .collect();
    let unique: BTreeSet<_> = served.iter().cloned().collect();
    assert_eq!(unique.len(), served.len(), "a packet was served twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_malformed_packet_is_reported_by_packet_and_id_and_the_rest_loads() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    // 2000 individuals: 500 workplaces are packet 1, individuals 0..500 packet 2.
    let emu = Emulator::start(dir.path(), 2000, 8, 1, &["--malformed-packet", "2"]);
    let job = OneKeyJob::full().write(dir.path(), "malformed", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(2);
    assert_eq!(r.state(), "completed_with_errors", "{r}");
    r.assert_reconciled();
    assert_eq!(r.count("rejected"), 2, "{r}");
    let errors = r.summary["first_errors"].to_string();
    assert!(errors.contains("packet 2 individuals[0]"), "{errors}");
    assert!(errors.contains("packet 2 activities[0]"), "{errors}");
    assert!(
        errors.contains("WUSM0000000000"),
        "the bad individual is named: {errors}"
    );

    let snap = Snapshot::load(&generate(dir.path(), 2000, 8, 1));
    let db = Db::open(&target).await;
    let mut c = Checks::default();
    let mut individuals = snap.ids("individual");
    individuals.remove("WUSM0000000000");
    c.same_ids(
        "individuals loaded",
        &db.connected_ids("individual").await,
        &individuals,
    );
    c.same_ids(
        "workplaces loaded",
        &db.connected_ids("workplace").await,
        &snap.ids("workplace"),
    );
    // Activities: all but the malformed one and those of the refused individual.
    let expected: BTreeSet<String> = snap
        .of_kind("activity")
        .filter(|(id, v)| *id != "WUSA0000000000" && v["individual_id"] != "WUSM0000000000")
        .map(|(id, _)| id.to_string())
        .collect();
    c.same_ids(
        "activities loaded",
        &db.connected_ids("activity").await,
        &expected,
    );
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_killed_run_resumes_without_fetching_loaded_packets_again() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = pg.target();
    let emu = Emulator::start(dir.path(), 4000, 4, 1, &["--latency-ms", "60"]);
    let job = OneKeyJob {
        options: "page_size = 100",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "killed", &emu, &target);
    let state = state_url(dir.path());
    std::env::set_var("E2E_ONEKEY_SECRET", "provsync-secret");
    let mut bg = spawn(&job, &state, dir.path(), "killed");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "some individual packets are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) >= 1800
    });
    bg.child.kill().unwrap(); // SIGKILL
    bg.child.wait().unwrap();
    let seen_at_kill = emu.requests().len();

    // Packets the ledger holds as loaded: the resume must not fetch them again.
    let state_db = Db::open(&Target::Sqlite {
        path: dir.path().join("state.db"),
    })
    .await;
    let loaded = state_db
        .ids(&format!(
            "SELECT cursor FROM pages WHERE job_id = '{id}' AND loaded = 1"
        ))
        .await;
    state_db.close().await;
    assert!(
        loaded.len() >= 5,
        "only {} packets loaded before the kill",
        loaded.len()
    );

    let resumed = run_onekey(&job, dir.path());
    resumed.expect_code(0);
    assert_eq!(resumed.job_id(), id, "the rerun resumes the killed job");
    let after: BTreeSet<String> = packet_requests(&emu.requests()[seen_at_kill..])
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let again: Vec<_> = loaded.intersection(&after).collect();
    assert!(
        again.is_empty(),
        "{} loaded packets fetched again after the resume",
        again.len()
    );
    assert!(
        !after.is_empty(),
        "the resume fetched the remaining packets"
    );

    let snap = Snapshot::load(&generate(dir.path(), 4000, 4, 1));
    let db = Db::open(&target).await;
    let mut c = Checks::default();
    check_target_matches(&mut c, &db, &snap, "after the resume").await;
    db.close().await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_refused_credentials_and_unknown_country_fail_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let emu = Emulator::start(dir.path(), 200, 1, 1, &["--client-secret", "another"]);
    let job = OneKeyJob::full().write(dir.path(), "refused", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(1);
    let failure = r.summary["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("refused") && failure.contains("INVALID_CLIENT"),
        "{r}"
    );
    assert!(
        !r.stdout.contains("provsync-secret") && !r.stderr.contains("provsync-secret"),
        "the secret leaked: {r}"
    );

    let job = OneKeyJob {
        source: "api_key_env = \"E2E_ONEKEY_API_KEY\"",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "unknown-country", &emu, &target);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("[\"US\"]", "[\"FR\"]")
        .replace(
            "client_id = \"provsync\"\nclient_secret_env = \"E2E_ONEKEY_SECRET\"\n",
            "",
        );
    std::fs::write(&job, text).unwrap();
    let r = run_onekey(&job, dir.path());
    r.expect_code(1);
    let failure = r.summary["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("UNKNOWN_COUNTRY") && failure.contains("\"FR\""),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_expiring_tokens_are_renewed_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let emu = Emulator::start(
        dir.path(),
        1000,
        2,
        1,
        &["--token-ttl", "1", "--latency-ms", "150"],
    );
    let job = OneKeyJob {
        options: "page_size = 100",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "tokens", &emu, &target);
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    let log = emu.requests();
    let tokens = count(&log, "POST", "/oauth2/token", 200);
    assert!(
        tokens >= 2,
        "only {tokens} token(s) for a run longer than the token's life"
    );
    let snap = Snapshot::load(&generate(dir.path(), 1000, 2, 1));
    check_full_sync(&r, &target, &snap, "with short-lived tokens").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_abort_mid_run_deletes_the_mdm_session() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let emu = Emulator::start(dir.path(), 3000, 3, 1, &["--latency-ms", "80"]);
    let job = OneKeyJob {
        options: "page_size = 100",
        ..OneKeyJob::full()
    }
    .write(dir.path(), "aborted", &emu, &target);
    let state = state_url(dir.path());
    std::env::set_var("E2E_ONEKEY_SECRET", "provsync-secret");
    let mut bg = spawn(&job, &state, dir.path(), "aborted");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "some packets are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) >= 300
    });
    abort_job(&id, &state);
    let r = bg.wait();
    r.expect_code(3);
    let log = emu.requests();
    assert_eq!(
        count(&log, "DELETE", "", 204),
        1,
        "the aborted job deleted its session (seed step 5.1)"
    );
    let served = count(&log, "GET", "/packets", 200);
    assert!(served < 38, "extraction stopped early: {served} packets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_openapi_document_passes_openapi_spec_validator() {
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.ci/.venv/bin/openapi-spec-validator");
    if !tool.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must install {} (see .ci/run)",
            tool.display()
        );
        eprintln!("skipped: {} not installed", tool.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path(), 10, 1, 1, &[]);
    let doc = reqwest::get(format!("{}/openapi.json", emu.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = dir.path().join("onekey-openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let o = Command::new(&tool).arg(&file).output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_two_countries_sync_in_one_session_each_with_its_ids_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    let emu = Emulator::start(dir.path(), 500, 7, 1, &["--countries", "US,CA"]);
    let job = OneKeyJob::full().write(dir.path(), "two", &emu, &target);
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("scope = [\"US\"]", "scope = [\"US\", \"CA\"]");
    std::fs::write(&job, text).unwrap();
    let r = run_onekey(&job, dir.path());
    r.expect_code(0);
    let snap = Snapshot::load(&generate(dir.path(), 500, 7, 1));
    assert_eq!(r.count("extracted"), 2 * snap.extracted(), "{r}");
    let db = Db::open(&target).await;
    let ca: BTreeSet<String> = snap
        .ids("individual")
        .iter()
        .map(|id| id.replacen("WUS", "WCA", 1))
        .collect();
    let loaded = db
        .ids("SELECT source_id FROM individuals WHERE source_id LIKE 'WCAM%'")
        .await;
    assert_eq!(loaded, ca);
    let codes = db
        .ids("SELECT DISTINCT substr(primary_specialty, 1, 7) FROM individuals")
        .await;
    assert_eq!(
        codes,
        BTreeSet::from(["WCA.SP.".to_string(), "WUS.SP.".to_string()])
    );
    db.close().await;
    assert_eq!(
        count(&emu.requests(), "POST", "/api/v1/sync-sessions", 201),
        1
    );
}

/// The emulator's answers to wrong requests: each a JSON body with the contract's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_emulator_answers_wrong_requests_with_the_contracts_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(dir.path(), 50, 1, 2, &["--token-ttl", "1"]);
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", emu.url);
    let key = ("x-api-key", "provsync-api-key");
    async fn code(r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (
            status,
            body["code"].as_str().unwrap_or("<none>").to_string(),
        )
    }
    let activate = |body: Value| {
        http.post(api("/sync-sessions"))
            .header(key.0, key.1)
            .json(&body)
            .send()
    };

    // Authentication.
    let r = http.get(api("/countries")).send().await.unwrap();
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
    let r = http
        .get(api("/countries"))
        .header(key.0, "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (401, "INVALID_API_KEY".into()));
    let token: Value = http
        .post(format!("{}/oauth2/token", emu.url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "provsync"),
            ("client_secret", "provsync-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = http
        .get(api("/countries"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (401, "TOKEN_EXPIRED".into()));

    // Activation.
    let r = activate(serde_json::json!({"mode": "delta"}))
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "INVALID_REQUEST".into()));
    let r = activate(serde_json::json!({"mode": "full", "countries": ["DE"]}))
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "UNKNOWN_COUNTRY".into()));
    let r = activate(serde_json::json!({"mode": "delta", "sinceNight": 3}))
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (400, "INVALID_REQUEST".into()),
        "since after the served night"
    );

    // Packets.
    let full: Value = activate(serde_json::json!({"mode": "full", "packetSize": 10}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delta: Value =
        activate(serde_json::json!({"mode": "delta", "sinceNight": 1, "packetSize": 10}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let packet = |session: &Value, cursor: &str| {
        http.get(api(&format!(
            "/sync-sessions/{}/packets",
            session["sessionId"].as_str().unwrap()
        )))
        .header(key.0, key.1)
        .query(&[("cursor", cursor)])
        .send()
    };
    let first = full["firstCursor"].as_str().unwrap();
    let r = packet(&full, "ok1.garbage").await.unwrap();
    assert_eq!(code(r).await, (400, "INVALID_CURSOR".into()));
    let r = packet(&delta, first).await.unwrap();
    assert_eq!(code(r).await, (409, "CURSOR_MISMATCH".into()));
    let a = packet(&full, first).await.unwrap().text().await.unwrap();
    let b = packet(&full, first).await.unwrap().text().await.unwrap();
    assert_eq!(a, b, "the same cursor gives the same packet");
    let r = http
        .delete(api(&format!(
            "/sync-sessions/{}",
            full["sessionId"].as_str().unwrap()
        )))
        .header(key.0, key.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = packet(&full, first).await.unwrap();
    assert_eq!(code(r).await, (404, "SESSION_NOT_FOUND".into()));

    // A cursor of night 2 in an emulator now serving night 3: stale.
    let night3 = Emulator::start(dir.path(), 50, 1, 3, &[]);
    let s3: Value = http
        .post(format!("{}/api/v1/sync-sessions", night3.url))
        .header(key.0, key.1)
        .json(&serde_json::json!({"mode": "full", "packetSize": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .get(format!(
            "{}/api/v1/sync-sessions/{}/packets",
            night3.url,
            s3["sessionId"].as_str().unwrap()
        ))
        .header(key.0, key.1)
        .query(&[("cursor", first)])
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (409, "CURSOR_STALE".into()));
}

/// One truth for counts over a OneKey week into `target`: night 1 in full, night
/// 2 as a delta, then night 2 in full (its sweep disconnects what the night
/// dropped). Each run goes the way `vias` says; every surface of each run
/// (summary, `status --json`, `GET /v1/jobs/{id}` and `GET /v1/jobs`, and those of
/// its own output: `run`'s text or JSON and progress, or `/metrics`) shows, per kind
/// and per change, what the target's change log recorded for that run.
async fn onekey_nights_agree_on_every_surface(target: &Target, vias: [Via; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let state = state_url(dir);
    let env = [("E2E_ONEKEY_SECRET", "provsync-secret")];
    // One server reads every run (and runs those sent to it).
    let serve = Serve::on_state(dir, &state, &env);
    let (s1, s2) = (
        Snapshot::load(&generate(dir, 3000, 11, 1)),
        Snapshot::load(&generate(dir, 3000, 11, 2)),
    );
    let diff = Diff::between(&s1, &s2);
    let mut c = Checks::default();
    let n = |s: &Value, kind: &str, field: &str| s["per_kind"][kind][field].as_u64().unwrap_or(0);

    let night1 = Emulator::start(dir, 3000, 11, 1, &[]);
    let job = OneKeyJob::full().write(dir, "night1-full", &night1, target);
    let run = run_via(vias[0], &job, &state, &serve, &env);
    let label = format!("night 1 full ({:?})", vias[0]);
    let s = check_sql_run_on_every_surface(&mut c, &label, target, run, &state, Some(&serve)).await;
    // Not vacuous: every kind was created.
    for kind in KINDS {
        c.eq(
            &format!("{label}: {kind} created"),
            n(&s, kind, "created"),
            s1.count(kind),
        );
    }
    drop(night1);

    let night2 = Emulator::start(dir, 3000, 11, 2, &[]);
    let job = OneKeyJob {
        mode: "delta",
        source: "since_night = 1",
        ..OneKeyJob::full()
    }
    .write(dir, "night2-delta", &night2, target);
    let run = run_via(vias[1], &job, &state, &serve, &env);
    let label = format!("night 2 delta ({:?})", vias[1]);
    let s = check_sql_run_on_every_surface(&mut c, &label, target, run, &state, Some(&serve)).await;
    for kind in ENTITY_KINDS {
        c.eq(
            &format!("{label}: {kind} created"),
            n(&s, kind, "created"),
            diff.created[kind].len() as u64,
        );
        // Changed records, and removed ones (now inactive).
        c.eq(
            &format!("{label}: {kind} updated"),
            n(&s, kind, "updated"),
            (diff.changed[kind].len() + diff.gone[kind].len()) as u64,
        );
    }
    c.eq(
        &format!("{label}: activities moved"),
        n(&s, "activity", "moved"),
        diff.moved_activities.len() as u64,
    );
    c.check(
        &format!("{label}: the night moves activities"),
        !diff.moved_activities.is_empty(),
    );

    let job = OneKeyJob::full().write(dir, "night2-full", &night2, target);
    let run = run_via(vias[2], &job, &state, &serve, &env);
    let label = format!("night 2 full ({:?})", vias[2]);
    let s = check_sql_run_on_every_surface(&mut c, &label, target, run, &state, Some(&serve)).await;
    for kind in KINDS {
        c.eq(
            &format!("{label}: {kind} disconnected by the sweep"),
            n(&s, kind, "disconnected"),
            diff.gone[kind].len() as u64,
        );
        c.check(
            &format!("{label}: the night drops {kind} records"),
            !diff.gone[kind].is_empty(),
        );
    }
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_nights_agree_on_every_surface_with_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    onekey_nights_agree_on_every_surface(&target, [Via::Text, Via::Json, Via::Serve]).await;
}

/// The same week into PostgreSQL, each night through another surface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onekey_nights_into_postgres_agree_on_every_surface_with_the_change_log() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    onekey_nights_agree_on_every_surface(&pg.target(), [Via::Serve, Via::Text, Via::Json]).await;
}
