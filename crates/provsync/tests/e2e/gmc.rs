//! The GMC nightly sync end to end: the `provsync emulate gmc` process, the `gmc`
//! source, the doctors store in a real PostgreSQL database, per-body reconciliation.
//! Expected membership comes from the emulator's register (`RegisterSpec`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use provsync_emulators::gmc::RegisterSpec;

use crate::common::*;

const SEED: u64 = 11;

/// A running `provsync emulate gmc` process (killed on drop).
struct Emulator {
    child: Child,
    url: String,
    spec: RegisterSpec,
}

impl Emulator {
    fn start(bodies: u32, per_body: u32, night: u32, faults: &[&str]) -> Emulator {
        let mut child = Command::new(bin())
            .args(["emulate", "gmc", "--listen", "127.0.0.1:0"])
            .args(["--bodies", &bodies.to_string()])
            .args(["--doctors-per-body", &per_body.to_string()])
            .args(["--seed", &SEED.to_string(), "--night", &night.to_string()])
            .args(["--username", "provsync-test"])
            .env("PROVSYNC_GMC_EMULATOR_PASSWORD", "s3cret-test")
            .args(faults)
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
            .to_string();
        Emulator {
            child,
            url,
            spec: RegisterSpec {
                bodies,
                doctors_per_body: per_body,
                seed: SEED,
                night,
            },
        }
    }

    /// GMC number -> body code, as this night's register has it.
    fn membership(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for b in 0..self.spec.bodies {
            for d in self.spec.doctors_of(b) {
                m.insert(d.gmc_reference_number, self.spec.body_code(b));
            }
        }
        m
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a GMC job (credentials in a secret file) and returns its path.
fn gmc_job(dir: &Path, name: &str, emu: &Emulator, pg: &PgDatabase, password: &str) -> PathBuf {
    let secret = dir.join(format!("{name}.secret"));
    std::fs::write(
        &secret,
        format!("username=provsync-test\npassword={password}\n"),
    )
    .unwrap();
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/gmc-doctors.toml");
    let scope: Vec<String> = emu
        .spec
        .body_codes()
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect();
    let job = format!(
        "mode = \"full\"\nscope = [{}]\nmapping = \"{}\"\n\
         [source]\ntype = \"gmc\"\nurl = \"{}\"\nsecret_file = \"{}\"\ntimeout_secs = 20\nretries = 2\nbackoff_ms = 50\n\
         [target]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"gmc\"\n\
         [options]\nmax_failed_records = 0\n",
        scope.join(", "),
        mapping.display(),
        emu.url,
        secret.display(),
        pg.url
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, job).unwrap();
    path
}

async fn pool(pg: &PgDatabase) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|c, _| {
            Box::pin(async move {
                sqlx::Executor::execute(c, "SET search_path TO gmc").await?;
                Ok(())
            })
        })
        .connect(&pg.url)
        .await
        .expect("connect to the test database")
}

/// Connected doctors: GMC number -> designated body.
async fn connected(db: &sqlx::PgPool) -> BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT gmc_number, designated_body FROM doctors WHERE connected",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn changes(db: &sqlx::PgPool, run: &str, kind: &str, change: &str) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT source_id FROM change_log WHERE run_id = $1 AND kind = $2 AND change = $3",
    )
    .bind(run)
    .bind(kind)
    .bind(change)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Loads night 0 and checks the store equals the register.
async fn load_night_zero(dir: &Path, pg: &PgDatabase, bodies: u32, per_body: u32) -> Run {
    let emu = Emulator::start(bodies, per_body, 0, &[]);
    let job = gmc_job(dir, "night0", &emu, pg, "s3cret-test");
    let run = run(&job, &state_url(dir));
    run.expect_code(0);
    let db = pool(pg).await;
    assert_eq!(connected(&db).await, emu.membership(), "night 0 store");
    run
}

/// Night 0 loaded (3 bodies of 150 doctors), then the emulator serving night 1:
/// the register before, the emulator, the register after.
async fn night_one(
    dir: &Path,
    pg: &PgDatabase,
) -> (BTreeMap<String, String>, Emulator, BTreeMap<String, String>) {
    load_night_zero(dir, pg, 3, 150).await;
    let before = Emulator::start(3, 150, 0, &[]).membership();
    let emu = Emulator::start(3, 150, 1, &[]);
    let after = emu.membership();
    (before, emu, after)
}

/// The run summary's scopes: body code -> its report.
fn scopes(run: &Run) -> BTreeMap<String, serde_json::Value> {
    run.summary["sweep"]["scopes"]
        .as_array()
        .unwrap_or_else(|| panic!("no sweep.scopes in the summary: {run}"))
        .iter()
        .map(|s| (s["scope"].as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

/// Doctors of each body in a membership map.
fn per_body(m: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (d, b) in m {
        out.entry(b.clone()).or_default().insert(d.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_doctor_not_returned_is_disconnected_and_one_that_moved_is_not() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (before, emu, after) = night_one(dir.path(), &pg).await;
    let removed: BTreeSet<String> = before
        .keys()
        .filter(|d| !after.contains_key(*d))
        .cloned()
        .collect();
    let moved: BTreeSet<String> = before
        .iter()
        .filter(|(d, b)| after.get(*d).is_some_and(|nb| nb != *b))
        .map(|(d, _)| d.clone())
        .collect();
    assert!(
        !removed.is_empty() && !moved.is_empty(),
        "night 1 must remove and move doctors"
    );

    let job = gmc_job(dir.path(), "night1", &emu, &pg, "s3cret-test");
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(0);
    run.assert_reconciled();
    let db = pool(&pg).await;
    assert_eq!(
        connected(&db).await,
        after,
        "connected doctors and their bodies"
    );
    let id = run.job_id();
    assert_eq!(
        changes(&db, &id, "individual", "disconnected").await,
        removed
    );
    assert_eq!(changes(&db, &id, "activity", "moved").await, moved);
    assert!(moved.is_disjoint(&changes(&db, &id, "activity", "disconnected").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_run_reports_each_body_outcome_with_doctors_returned_connected_moved_disconnected() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (before, emu, after) = night_one(dir.path(), &pg).await;
    let job = gmc_job(dir.path(), "night1", &emu, &pg, "s3cret-test");
    let state = state_url(dir.path());
    let run = run(&job, &state);
    run.expect_code(0);
    let reported = scopes(&run);
    // The same report through `provsync status --json`.
    let status = status(&run.job_id(), &state);
    assert_eq!(status["scopes"], run.summary["sweep"]["scopes"], "{status}");
    let (old, new) = (per_body(&before), per_body(&after));
    assert_eq!(reported.len(), 3);
    for (body, doctors) in &new {
        let r = &reported[body];
        assert_eq!(r["outcome"], "swept", "{r}");
        let d = &r["per_kind"]["individual"];
        let was = old.get(body).cloned().unwrap_or_default();
        let joined: BTreeSet<&String> = doctors.difference(&was).collect();
        let moved_in = joined.iter().filter(|x| before.contains_key(**x)).count();
        let disconnected = was.iter().filter(|x| !after.contains_key(*x)).count();
        assert_eq!(d["returned"], doctors.len() as u64, "{body}: {r}");
        assert_eq!(d["moved"], moved_in as u64, "{body}: {r}");
        assert_eq!(
            d["connected"],
            (joined.len() - moved_in) as u64,
            "{body}: {r}"
        );
        assert_eq!(d["disconnected"], disconnected as u64, "{body}: {r}");
    }
    let moved: u64 = reported
        .values()
        .map(|r| r["per_kind"]["individual"]["moved"].as_u64().unwrap())
        .sum();
    assert!(moved > 0, "night 1 moves doctors: {run}");
}

/// Bodies of 35 doctors with `page_size = 10`: each body loads in 4 pages (its
/// snapshot on the last), and is reconciled once, as one scope, over all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_body_larger_than_a_page_loads_in_pages_and_is_swept_once_as_one_scope() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = state_url(dir.path());
    let db = pool(&pg).await;
    let night = |n: u32| {
        let emu = Emulator::start(2, 35, n, &[]);
        let job = gmc_job(dir.path(), &format!("night{n}"), &emu, &pg, "s3cret-test");
        let text = std::fs::read_to_string(&job).unwrap() + "page_size = 10\n";
        std::fs::write(&job, text).unwrap();
        (emu, job)
    };
    let (emu0, job0) = night(0);
    let before = emu0.membership();
    let run0 = run(&job0, &state);
    run0.expect_code(0);
    assert_eq!(run0.summary["pages"], 8, "two bodies of 4 pages: {run0}");
    assert_eq!(connected(&db).await, before);

    let (emu1, job1) = night(1);
    let after = emu1.membership();
    let removed: BTreeSet<String> = before
        .keys()
        .filter(|d| !after.contains_key(*d))
        .cloned()
        .collect();
    assert!(!removed.is_empty(), "night 1 removes doctors");
    let run1 = run(&job1, &state);
    run1.expect_code(0);
    run1.assert_reconciled();
    assert_eq!(run1.summary["pages"], 8, "{run1}");
    assert_eq!(connected(&db).await, after);
    let reported = scopes(&run1);
    assert_eq!(reported.len(), 2, "one report a body: {run1}");
    let new = per_body(&after);
    for (body, doctors) in &new {
        let r = &reported[body];
        assert_eq!(r["outcome"], "swept", "{r}");
        let returned = &r["per_kind"]["individual"]["returned"];
        assert_eq!(returned, doctors.len() as u64, "summed over its pages: {r}");
    }
    let id = run1.job_id();
    assert_eq!(
        changes(&db, &id, "individual", "disconnected").await,
        removed
    );
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM change_log WHERE run_id = $1 AND kind = 'individual' AND change = 'disconnected'",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(logged as usize, removed.len(), "each swept once");
}

/// A run killed in the middle of a body resumes there: it asks GMC for the body
/// again, goes on from the offset of the first page not loaded (the answer is the
/// same list), and ends with the register's doctors, the body swept once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_run_killed_in_the_middle_of_a_body_resumes_from_the_page_it_was_at() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = state_url(dir.path());
    let emu = Emulator::start(1, 50_000, 0, &[]);
    let job = gmc_job(dir.path(), "killed", &emu, &pg, "s3cret-test");
    let text = std::fs::read_to_string(&job).unwrap() + "page_size = 100\n";
    std::fs::write(&job, text).unwrap();
    let mut bg = spawn(&job, &state, dir.path(), "killed");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "some pages of the body are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) >= 1000
    });
    bg.child.kill().unwrap(); // SIGKILL
    bg.child.wait().unwrap();

    let resumed = run(&job, &state);
    resumed.expect_code(0);
    assert_eq!(resumed.job_id(), id, "the rerun resumes the killed job");
    resumed.assert_reconciled();
    assert_eq!(connected(&pool(&pg).await).await, emu.membership());
    let reported = scopes(&resumed);
    assert_eq!(reported.len(), 1, "{resumed}");
    let r = reported.values().next().unwrap();
    assert_eq!(r["outcome"], "swept", "{r}");
    assert_eq!(r["per_kind"]["individual"]["returned"], 50_000, "{r}");
}

/// A doctors store under test: PostgreSQL with the recipe's mapping, or an SQLite
/// file with the default provider mapping (doctors in `individuals`).
enum Store {
    Pg(PgDatabase),
    Sqlite(PathBuf),
}

impl Store {
    fn job(&self, dir: &Path, name: &str, emu: &Emulator) -> PathBuf {
        match self {
            Store::Pg(pg) => gmc_job(dir, name, emu, pg, "s3cret-test"),
            Store::Sqlite(file) => {
                let secret = dir.join(format!("{name}.secret"));
                std::fs::write(&secret, "username=provsync-test\npassword=s3cret-test\n").unwrap();
                let scope: Vec<String> = emu
                    .spec
                    .body_codes()
                    .iter()
                    .map(|b| format!("\"{b}\""))
                    .collect();
                let job = format!(
                    "mode = \"full\"\nscope = [{}]\n\
                     [source]\ntype = \"gmc\"\nurl = \"{}\"\nsecret_file = \"{}\"\ntimeout_secs = 20\nretries = 2\nbackoff_ms = 50\n\
                     [target]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n\
                     [options]\nmax_failed_records = 0\n",
                    scope.join(", "),
                    emu.url,
                    secret.display(),
                    file.display()
                );
                let path = dir.join(format!("{name}.toml"));
                std::fs::write(&path, job).unwrap();
                path
            }
        }
    }

    fn sqlite(&self) -> Option<sqlx::SqlitePool> {
        let Store::Sqlite(file) = self else {
            return None;
        };
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .busy_timeout(std::time::Duration::from_secs(30));
        Some(sqlx::SqlitePool::connect_lazy_with(opts))
    }

    /// Connected doctors: GMC number -> designated body.
    async fn connected(&self) -> BTreeMap<String, String> {
        match self {
            Store::Pg(pg) => connected(&pool(pg).await).await,
            Store::Sqlite(_) => {
                let db = self.sqlite().unwrap();
                let rows = sqlx::query_as::<_, (String, String)>(
                    "SELECT source_id, scope FROM individuals WHERE connected = 1",
                )
                .fetch_all(&db)
                .await
                .unwrap();
                db.close().await;
                rows.into_iter().collect()
            }
        }
    }

    /// What a user does by hand: connects the doctor to `body` now.
    async fn connect_manually(&self, doctor: &str, body: &str) {
        let n = match self {
            Store::Pg(pg) => sqlx::query(
                "UPDATE doctors SET connected = TRUE, designated_body = $2, admin = 'manual', \
                 updated_at = (extract(epoch from clock_timestamp()) * 1000)::bigint WHERE source_id = $1",
            )
            .bind(doctor)
            .bind(body)
            .execute(&pool(pg).await)
            .await
            .unwrap()
            .rows_affected(),
            Store::Sqlite(_) => {
                let db = self.sqlite().unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let n = sqlx::query(
                    "UPDATE individuals SET connected = 1, scope = ?, updated_at = ? WHERE source_id = ?",
                )
                .bind(body)
                .bind(now)
                .bind(doctor)
                .execute(&db)
                .await
                .unwrap()
                .rows_affected();
                db.close().await;
                n
            }
        };
        assert_eq!(n, 1, "doctor {doctor} is in the store");
    }
}

/// Night 0, then night 1 with a doctor GMC dropped connected again by hand while
/// the run goes.
struct ManualChange {
    store: Store,
    before: BTreeMap<String, String>,
    emu: Emulator,
    manual: String,
    body: String,
    others: Vec<String>,
    state: String,
    run: Run,
}

async fn manual_change_during_a_run(dir: &Path, store: Store) -> ManualChange {
    let night0 = Emulator::start(3, 150, 0, &[]);
    let before = night0.membership();
    let state = state_url(dir);
    run(&store.job(dir, "night0", &night0), &state).expect_code(0);
    assert_eq!(store.connected().await, before, "night 0 store");
    // Slow answers leave time for a manual change while the run is going.
    let emu = Emulator::start(3, 150, 1, &["--delay-ms", "1500"]);
    let after = emu.membership();
    let removed: Vec<String> = before
        .keys()
        .filter(|d| !after.contains_key(*d))
        .cloned()
        .collect();
    assert!(
        removed.len() >= 2,
        "night 1 must remove at least two doctors"
    );
    let manual = removed[0].clone();
    let body = before[&manual].clone();
    let job = store.job(dir, "night1", &emu);
    let mut bg = spawn(&job, &state, dir, "night1");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "the run to start", |s| s["state"] == "running");
    std::thread::sleep(std::time::Duration::from_millis(50));
    store.connect_manually(&manual, &body).await;
    let run = bg.wait();
    run.expect_code(0);
    ManualChange {
        store,
        before,
        emu,
        manual,
        body,
        others: removed[1..].to_vec(),
        state,
        run,
    }
}

async fn assert_manual_change_wins(m: &ManualChange) {
    let now = m.store.connected().await;
    assert_eq!(
        now.get(&m.manual),
        Some(&m.body),
        "the manual connection survives the sweep"
    );
    for d in &m.others {
        assert!(
            !now.contains_key(d),
            "doctor {d} left GMC and must be disconnected"
        );
    }
    // The summary counts what the target did, not what the sweep asked for.
    let gone = m.others.iter().filter(|d| m.before[*d] == m.body).count();
    let reported = &scopes(&m.run)[&m.body]["per_kind"]["individual"]["disconnected"];
    assert_eq!(reported.as_u64(), Some(gone as u64), "{}", m.run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_doctor_connected_manually_after_the_run_started_is_not_disconnected() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = manual_change_during_a_run(dir.path(), Store::Pg(pg)).await;
    assert_manual_change_wins(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_into_sqlite_a_doctor_connected_manually_after_the_run_started_is_not_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(dir.path().join("doctors.db"));
    let m = manual_change_during_a_run(dir.path(), store).await;
    assert_manual_change_wins(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_doctor_kept_by_a_manual_change_is_disconnected_by_the_next_run_that_still_lacks_him() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let m = manual_change_during_a_run(dir.path(), Store::Pg(pg)).await;
    // The state store must not believe the sweep disconnected him: the next night
    // GMC still does not list him, and this time nobody touched him meanwhile.
    let again = run(&m.store.job(dir.path(), "night1-again", &m.emu), &m.state);
    again.expect_code(0);
    let now = m.store.connected().await;
    assert!(
        !now.contains_key(&m.manual),
        "doctor {} is disconnected by the next run: {again}",
        m.manual
    );
    assert_eq!(now, m.emu.membership());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_empty_response_for_a_body_disconnects_nobody() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 3, 100).await;
    let db = pool(&pg).await;
    let before = connected(&db).await;
    let spec = Emulator::start(3, 100, 0, &[]).spec;
    let empty = spec.body_code(1);
    let emu = Emulator::start(3, 100, 0, &["--empty-body", &empty]);
    let job = gmc_job(dir.path(), "empty", &emu, &pg, "s3cret-test");
    let run = run(&job, &state_url(dir.path()));
    assert_ne!(run.code, 0, "a refused sweep is reported: {run}");
    assert!(
        run.stdout.contains(&empty),
        "the report names the body: {run}"
    );
    assert_eq!(connected(&db).await, before, "nobody is disconnected");
    assert!(changes(&db, &run.job_id(), "individual", "disconnected")
        .await
        .is_empty());
    let reported = scopes(&run);
    assert_eq!(reported[&empty]["outcome"], "empty_no_sweep", "{run}");
    let returned = &reported[&empty]["per_kind"]["individual"]["returned"];
    assert_eq!(returned.as_u64().unwrap_or(0), 0, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_return_code_99_fails_the_run_and_disconnects_nobody() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 2, 100).await;
    let db = pool(&pg).await;
    let before = connected(&db).await;
    let emu = Emulator::start(2, 100, 1, &[]);
    let job = gmc_job(dir.path(), "wrong-password", &emu, &pg, "not-the-password");
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    let text = format!("{run}");
    assert!(
        text.contains("ReturnCode 99") && text.contains(&emu.spec.body_code(0)),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password"),
        "the password leaked: {text}"
    );
    assert_eq!(connected(&db).await, before, "nobody is disconnected");
    // Both bodies were asked at once: each was refused and says so.
    for (body, r) in scopes(&run) {
        assert_eq!(r["outcome"], "failed", "{body}: {run}");
        let why = r["reason"].as_str().unwrap_or("");
        assert!(why.contains("ReturnCode 99"), "{body}: {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_two_bodies_loaded_in_parallel_with_doctors_moving_between_them_end_right() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 2, 300).await;
    let db = pool(&pg).await;
    // Night 2 from night 0: two nights of moves, both ways, in one run.
    let emu = Emulator::start(2, 300, 2, &[]);
    let job = gmc_job(dir.path(), "night2", &emu, &pg, "s3cret-test");
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(0);
    let after = emu.membership();
    assert_eq!(connected(&db).await, after);
    let moved = changes(&db, &run.job_id(), "activity", "moved").await;
    let bodies: BTreeSet<&String> = moved.iter().map(|d| &after[d]).collect();
    assert_eq!(bodies.len(), 2, "doctors moved into both bodies");
}

/// Runs night 0 of four slow bodies (2.5 s per answer) asking `concurrency` at
/// once; returns the run's duration in seconds.
async fn four_slow_bodies(concurrency: u32) -> Option<f64> {
    let pg = PgDatabase::create().await?;
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(4, 5, 0, &["--delay-ms", "2500"]);
    let job = gmc_job(dir.path(), "slow", &emu, &pg, "s3cret-test");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "backoff_ms = 50\n",
        &format!("backoff_ms = 50\nconcurrency = {concurrency}\n"),
    );
    std::fs::write(&job, text).unwrap();
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(0);
    assert_eq!(connected(&pool(&pg).await).await, emu.membership());
    Some(run.summary["duration_ms"].as_f64().unwrap() / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_bodies_are_asked_concurrently_up_to_the_configured_bound() {
    // Four bodies one after the other would take 10 s; all at once, one answer's time.
    let Some(all) = four_slow_bodies(4).await else {
        return;
    };
    assert!(all < 7.5, "four bodies at once took {all:.1} s");
    // Two at a time: at least two rounds of answers.
    let two = four_slow_bodies(2).await.unwrap();
    assert!(two >= 5.0, "two at a time took only {two:.1} s");
}

#[test]
fn gmc_emulator_answers_an_independent_soap_client_zeep() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/.venv/bin/python");
    let has_zeep = python.exists()
        && Command::new(&python)
            .args(["-c", "import zeep"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_zeep {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "zeep is missing from .ci/.venv and CI=true"
        );
        eprintln!("SKIPPED: zeep is not installed in .ci/.venv (see .ci/run)");
        return;
    }
    let emu = Emulator::start(2, 40, 0, &[]);
    let script = r#"
import sys, zeep
url, body = sys.argv[1], sys.argv[2]
client = zeep.Client(url + "?WSDL")
r = client.service.GetDoctorsForDB(
    request={"DesignatedBodyCode": body, "ClientRequestID": "zeep-1", "InternalUser": "ci"},
    Username="provsync-test", Password="s3cret-test")
print(r.ReturnCode, len(r.Doctors.GetDoctorsForDBResponse_Doctor), r.ClientRequestID)
bad = client.service.GetDoctorsForDB(
    request={"DesignatedBodyCode": body}, Username="provsync-test", Password="wrong")
print(bad.ReturnCode)
"#;
    let out = Command::new(&python)
        .args(["-c", script, &emu.url, &emu.spec.body_code(1)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zeep failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "0 40 zeep-1\n99");
}

/// Messages on a queue: (routing key, payload), until it is empty.
async fn drain(channel: &lapin::Channel, queue: &str) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    while let Some(m) = channel
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic_get")
    {
        let payload = serde_json::from_slice(&m.delivery.data).expect("JSON payload");
        out.push((m.delivery.routing_key.to_string(), payload));
    }
    out
}

fn relay(pg: &PgDatabase) -> Run {
    let o = Command::new(bin())
        .args(["relay-changes", "--database", &pg.url, "--schema", "gmc"])
        .args([
            "--amqp",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "--until-empty",
        ])
        .output()
        .expect("spawn provsync relay-changes");
    let run = Run {
        code: o.status.code().unwrap_or(-1),
        summary: serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    run.expect_code(0);
    run
}

/// A queue bound to `provsync.changes` for every GMC connection event, or None when
/// RabbitMQ is unreachable (a failure under CI=true).
async fn bound_queue(name: &str) -> Option<(lapin::Connection, lapin::Channel)> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = match lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "RabbitMQ is unreachable and CI=true: {e}"
            );
            eprintln!("SKIPPED: RabbitMQ at 127.0.0.1:5672 is unreachable ({e})");
            return None;
        }
    };
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "provsync.changes".into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Durable (it must outlive a broker restart) and expiring a minute after its
    // last use, so a failed test leaves no queue behind.
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), lapin::types::AMQPValue::LongInt(60_000));
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
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

/// Connection events of a run as (routing key, GMC number, previous, new body).
type Event = (String, String, Option<String>, Option<String>);

async fn logged_events(db: &sqlx::PgPool, run: &str) -> BTreeSet<Event> {
    sqlx::query_as::<_, (String, String, Option<String>, Option<String>)>(
        "SELECT 'gmc.doctor.' || event, gmc_number, previous_body, new_body \
         FROM connection_log WHERE run_id = $1",
    )
    .bind(run)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn received_events(msgs: &[(String, serde_json::Value)], run: &str) -> BTreeSet<Event> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    msgs.iter()
        .filter(|(_, p)| p["run_id"] == run)
        .map(|(k, p)| {
            (
                k.clone(),
                s(&p["gmc_number"]).unwrap(),
                s(&p["previous_body"]),
                s(&p["new_body"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_every_connection_change_is_logged_and_arrives_on_a_queue_bound_to_provsync_changes() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let queue = format!("provsync-e2e-{}", pg.name);
    let _broker = BROKER.lock().await;
    let Some((_conn, ch)) = bound_queue(&queue).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let night0 = load_night_zero(dir.path(), &pg, 2, 100).await;
    let before = Emulator::start(2, 100, 0, &[]).membership();
    let emu = Emulator::start(2, 100, 1, &[]);
    let after = emu.membership();
    let job = gmc_job(dir.path(), "night1", &emu, &pg, "s3cret-test");
    let night1 = run(&job, &state_url(dir.path()));
    night1.expect_code(0);
    let relayed = relay(&pg);
    let msgs = drain(&ch, &queue).await;
    let db = pool(&pg).await;

    // Night 0: every doctor connected to its body.
    let connects: BTreeSet<Event> = before
        .iter()
        .map(|(d, b)| {
            (
                "gmc.doctor.connected".into(),
                d.clone(),
                None,
                Some(b.clone()),
            )
        })
        .collect();
    let id0 = night0.job_id();
    assert_eq!(logged_events(&db, &id0).await, connects);
    assert_eq!(received_events(&msgs, &id0), connects);

    // Night 1: moves with both bodies, disconnects with the last one, new connections.
    let mut expected = BTreeSet::new();
    for (d, b) in &before {
        match after.get(d) {
            None => expected.insert((
                "gmc.doctor.disconnected".into(),
                d.clone(),
                Some(b.clone()),
                None,
            )),
            Some(nb) if nb != b => expected.insert((
                "gmc.doctor.moved".into(),
                d.clone(),
                Some(b.clone()),
                Some(nb.clone()),
            )),
            Some(_) => false,
        };
    }
    for (d, b) in &after {
        if !before.contains_key(d) {
            expected.insert((
                "gmc.doctor.connected".into(),
                d.clone(),
                None,
                Some(b.clone()),
            ));
        }
    }
    let id1 = night1.job_id();
    assert!(expected.iter().any(|e| e.0 == "gmc.doctor.moved"));
    assert!(expected.iter().any(|e| e.0 == "gmc.doctor.disconnected"));
    assert_eq!(logged_events(&db, &id1).await, expected);
    assert_eq!(received_events(&msgs, &id1), expected);
    let ours = msgs
        .iter()
        .filter(|(_, p)| p["run_id"] == id0.as_str() || p["run_id"] == id1.as_str())
        .count();
    assert_eq!(
        ours as u64,
        relayed.summary["published"].as_u64().unwrap(),
        "one message per outbox row, none twice"
    );
    delete_queue(&ch, &queue).await;
}

async fn delete_queue(ch: &lapin::Channel, queue: &str) {
    ch.queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .expect("delete the test queue");
}

/// Held by the tests that use RabbitMQ: the outage test must not cut another off.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stops the RabbitMQ application; starts it again when dropped (also on panic).
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> BrokerOutage {
        rabbitmqctl("stop_app");
        BrokerOutage
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        rabbitmqctl("start_app");
    }
}

fn rabbitmqctl(action: &str) {
    let o = Command::new("rabbitmqctl")
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl {action}: {e}"));
    assert!(
        o.status.success(),
        "rabbitmqctl {action}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_changes_made_while_rabbitmq_is_down_arrive_once_it_is_back() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let queue = format!("provsync-e2e-{}", pg.name);
    let _broker = BROKER.lock().await;
    let Some((conn, _ch)) = bound_queue(&queue).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The relay runs throughout: connected first, then cut off, then back.
    let mut relay = Command::new(bin())
        .args(["relay-changes", "--database", &pg.url, "--schema", "gmc"])
        .args([
            "--amqp",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "--poll-ms",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn provsync relay-changes");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let night0 = {
        let _outage = BrokerOutage::begin();
        drop(conn);
        // The sync does not wait for the broker: it only writes the outbox.
        let emu = Emulator::start(2, 60, 0, &[]);
        let job = gmc_job(dir.path(), "night0", &emu, &pg, "s3cret-test");
        let started = std::time::Instant::now();
        let run = run(&job, &state_url(dir.path()));
        run.expect_code(0);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_secs(1));
        run
    };
    let (_conn, ch) = bound_queue(&queue).await.expect("RabbitMQ is back");
    let db = pool(&pg).await;
    let id = night0.job_id();
    let expected = logged_events(&db, &id).await;
    assert_eq!(expected.len(), 120, "one connection event per doctor");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut msgs = Vec::new();
    while received_events(&msgs, &id).len() < expected.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {} events arrived after the broker came back",
            received_events(&msgs, &id).len(),
            expected.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        msgs.extend(drain(&ch, &queue).await);
    }
    let _ = relay.kill();
    let _ = relay.wait();
    assert_eq!(received_events(&msgs, &id), expected);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM change_outbox WHERE published_at IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(pending, 0, "the outbox is drained");
    delete_queue(&ch, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_return_code_98_is_retried_until_the_body_answers() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(3, 50, 0, &["--error-98-share", "0.5"]);
    let job = gmc_job(dir.path(), "flaky", &emu, &pg, "s3cret-test");
    // Retries raised so a run of 98s cannot outlast them.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("retries = 2", "retries = 8");
    std::fs::write(&job, text).unwrap();
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(0);
    assert!(
        run.stderr.contains("ReturnCode 98"),
        "98s were met and retried: {run}"
    );
    assert_eq!(connected(&pool(&pg).await).await, emu.membership());
}

/// Night 0, then night 1 with one body failing (`fault` names it): that body keeps
/// its doctors, the others are reconciled, and the run ends with errors naming it.
async fn one_body_fails(fault: &str, why: &str) {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 3, 150).await;
    let before = Emulator::start(3, 150, 0, &[]).membership();
    let bad = RegisterSpec {
        bodies: 3,
        doctors_per_body: 150,
        seed: SEED,
        night: 1,
    }
    .body_code(1);
    let emu = Emulator::start(3, 150, 1, &[fault, &bad]);
    let after = emu.membership();
    let job = gmc_job(dir.path(), "one-body-fails", &emu, &pg, "s3cret-test");
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(2);
    assert_eq!(run.state(), "completed_with_errors", "{run}");
    let errors = run.summary["first_errors"].to_string();
    assert!(
        errors.contains(&format!("designated body {bad}")) && errors.contains(why),
        "the errors name the body and why: {run}"
    );
    let reported = scopes(&run);
    assert_eq!(reported[&bad]["outcome"], "failed", "{run}");
    assert!(reported[&bad]["reason"].as_str().unwrap().contains(why));
    for b in [emu.spec.body_code(0), emu.spec.body_code(2)] {
        assert_eq!(reported[&b]["outcome"], "swept", "{run}");
    }
    // The failed body's doctors stay as they were; the others follow GMC (a doctor
    // who left a good body for the failed one is disconnected from the good one).
    let mut expected: BTreeMap<String, String> = after
        .iter()
        .filter(|(_, b)| **b != bad)
        .map(|(d, b)| (d.clone(), b.clone()))
        .collect();
    for (d, b) in &before {
        if *b == bad && !expected.contains_key(d) {
            expected.insert(d.clone(), b.clone());
        }
    }
    assert_eq!(connected(&pool(&pg).await).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_every_body_failing_fails_the_run_and_disconnects_nobody() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 2, 100).await;
    let db = pool(&pg).await;
    let before = connected(&db).await;
    let spec = Emulator::start(2, 100, 1, &[]).spec;
    let (a, b) = (spec.body_code(0), spec.body_code(1));
    let emu = Emulator::start(2, 100, 1, &["--deny-body", &a, "--malformed-body", &b]);
    let job = gmc_job(dir.path(), "all-fail", &emu, &pg, "s3cret-test");
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(1);
    assert_eq!(run.state(), "failed", "{run}");
    assert!(
        run.summary["failure"]
            .as_str()
            .unwrap()
            .contains("every scope failed"),
        "{run}"
    );
    for (body, r) in scopes(&run) {
        assert_eq!(r["outcome"], "failed", "{body}: {run}");
    }
    assert_eq!(connected(&db).await, before, "nobody is disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_malformed_response_fails_that_body_only_and_the_others_are_reconciled() {
    one_body_fails("--malformed-body", "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_return_code_81_fails_that_body_only_and_the_others_are_reconciled() {
    one_body_fails("--deny-body", "ReturnCode 81").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_body_shrinking_more_than_the_allowed_share_is_refused_and_reported() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 2, 200).await;
    let db = pool(&pg).await;
    let before = connected(&db).await;
    // Five nights of departures (about 10% of each body) against a 1% allowance.
    let emu = Emulator::start(2, 200, 5, &[]);
    let after = emu.membership();
    let gone: Vec<&String> = before.keys().filter(|d| !after.contains_key(*d)).collect();
    assert!(
        gone.len() > 8,
        "the register must lose doctors: {}",
        gone.len()
    );
    let job = gmc_job(dir.path(), "shrink", &emu, &pg, "s3cret-test");
    let text = std::fs::read_to_string(&job).unwrap() + "max_disconnect_share = 0.01\n";
    std::fs::write(&job, text).unwrap();
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(2);
    let report = run.stdout.clone();
    assert!(
        report.contains(&emu.spec.body_code(0)) && report.contains("above the allowed"),
        "{run}"
    );
    let now = connected(&db).await;
    for d in gone {
        assert!(now.contains_key(d), "doctor {d} must stay connected");
    }
    assert_eq!(
        scopes(&run)[&emu.spec.body_code(0)]["outcome"],
        "refused_by_guard",
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_emulator_answers_soap_12_in_soap_12() {
    let emu = Emulator::start(1, 5, 0, &[]);
    let envelope = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope">
  <soap12:Body>
    <GetDoctorsForDB xmlns="https://webcache.gmc-uk.org/GMCWebServices/">
      <request><DesignatedBodyCode>{}</DesignatedBodyCode><ClientRequestID>c12</ClientRequestID></request>
      <Username>provsync-test</Username><Password>s3cret-test</Password>
    </GetDoctorsForDB>
  </soap12:Body>
</soap12:Envelope>"#,
        emu.spec.body_code(0)
    );
    let resp = reqwest::Client::new()
        .post(&emu.url)
        .header(
            "Content-Type",
            "application/soap+xml; charset=utf-8; action=\"https://webcache.gmc-uk.org/GMCWebServices/GetDoctorsForDB\"",
        )
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/soap+xml"));
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("http://www.w3.org/2003/05/soap-envelope"),
        "{body}"
    );
    assert_eq!(body.matches("<GMCReferenceNumber>").count(), 5, "{body}");
    assert!(body.contains("<ReturnCode>0</ReturnCode>") && body.contains("c12"));
}

/// One truth for counts on a GMC night with joins, moves and leavers: the headline
/// counts doctors once (not a doctor plus its connection), the per-kind counts equal
/// the doctors store's change log, and `--json`, `provsync status --json` and the
/// progress display's last frame show the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_night_counts_each_doctor_once_and_agree_with_the_change_log_on_every_surface() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (before, emu, after) = night_one(dir.path(), &pg).await;
    let removed = before.keys().filter(|d| !after.contains_key(*d)).count() as u64;
    let joined = after.keys().filter(|d| !before.contains_key(*d)).count() as u64;
    let moved = before
        .iter()
        .filter(|(d, b)| after.get(*d).is_some_and(|nb| nb != *b))
        .count() as u64;
    assert!(
        removed > 0 && joined > 0 && moved > 0,
        "night 1 has every change"
    );

    let job = gmc_job(dir.path(), "night1", &emu, &pg, "s3cret-test");
    let state = state_url(dir.path());
    let (run, own) = run_cli(&job, &state, true, &[]);
    run.expect_code(0);
    run.assert_reconciled();
    // The headline, in doctors.
    assert_eq!(
        run.summary["counted"],
        serde_json::json!(["individual"]),
        "{run}"
    );
    assert_eq!(run.count("extracted"), after.len() as u64, "{run}");
    assert_eq!(run.count("disconnected"), removed, "{run}");
    assert_eq!(run.count("moved"), moved, "{run}");
    assert_eq!(run.count("created"), joined, "{run}");
    assert_eq!(run.count("connected"), joined, "{run}");

    // Per kind, exactly what the doctors store logged; every surface alike.
    let db = pool(&pg).await;
    let id = run.job_id();
    let mut recorded = Recorded {
        by: "the doctors store's change log",
        changes: vec!["created", "updated", "moved", "disconnected"],
        counts: BTreeMap::new(),
    };
    for kind in ["individual", "activity", "workplace"] {
        for change in ["created", "updated", "moved", "disconnected"] {
            let n = changes(&db, &id, kind, change).await.len() as u64;
            recorded.counts.insert((kind.into(), change.into()), n);
        }
    }
    let (summary, mut readings) = read_surfaces(&id, &state, None);
    readings.extend(own);
    let mut c = Checks::default();
    check_one_truth(&mut c, "GMC night 1", &summary, &recorded, &readings);
    c.finish();
}

/// The bodies of the mixed-failure nights (the emulator's first three codes).
const A: &str = "1-AIIDHJ";
const B: &str = "1-AIIDMQ";
const C: &str = "1-AIIDWA";

/// What each body answers on each night: `=GMC,...` lists exactly those doctors,
/// a number is the ReturnCode it answers on every call.
const NIGHTS: [[(&str, &str); 3]; 5] = [
    [
        (A, "=1000001,1000002,1000003"),
        (B, "=1000011,1000012,1000013"),
        (C, "=1000021,1000022,1000023"),
    ],
    // B fails (no access) while its doctor 1000011 moves to A; 1000003 leaves A;
    // 1000024 joins C.
    [
        (A, "=1000001,1000002,1000011"),
        (B, "81"),
        (C, "=1000021,1000022,1000023,1000024"),
    ],
    // The night of issue 16: A fails (98 on every retry), B's credentials are
    // refused (99), C answers: 1000012 moves B -> C, 1000025 joins C, 1000022 leaves C.
    [
        (A, "98"),
        (B, "99"),
        (C, "=1000021,1000023,1000024,1000012,1000025"),
    ],
    // B answers without 1000012, who is in C since night 2; C fails (no access).
    [(A, "=1000001,1000002,1000011"), (B, "=1000013"), (C, "81")],
    // A fails alone (98 on every retry); 1000014 joins B.
    [
        (A, "98"),
        (B, "=1000013,1000014"),
        (C, "=1000021,1000023,1000024,1000012,1000025"),
    ],
];

/// Where each doctor is connected after each night ("-": nowhere), written out:
/// a failed body changes none of its doctors, a body that answered completely is
/// applied and swept whatever the others did, the run failing included.
const MEMBERSHIP: [(&str, [&str; 5]); 12] = [
    //  doctor      n0   n1   n2   n3   n4
    ("1000001", [A, A, A, A, A]),
    ("1000002", [A, A, A, A, A]),
    ("1000003", [A, "-", "-", "-", "-"]),
    ("1000011", [B, A, A, A, A]),
    ("1000012", [B, B, C, C, C]),
    ("1000013", [B, B, B, B, B]),
    ("1000014", ["-", "-", "-", "-", B]),
    ("1000021", [C, C, C, C, C]),
    ("1000022", [C, C, "-", "-", "-"]),
    ("1000023", [C, C, C, C, C]),
    ("1000024", ["-", C, C, C, C]),
    ("1000025", ["-", "-", C, C, C]),
];

/// A body's outcome in a run, and words its reason contains.
type BodyOutcome = (&'static str, &'static str, &'static str);

/// Each night's run: its state, and each body's outcome with a word of its reason.
const OUTCOMES: [(&str, [BodyOutcome; 3]); 5] = [
    (
        "completed",
        [(A, "swept", ""), (B, "swept", ""), (C, "swept", "")],
    ),
    (
        "completed_with_errors",
        [
            (A, "swept", ""),
            (B, "failed", "ReturnCode 81"),
            (C, "swept", ""),
        ],
    ),
    (
        "failed",
        [
            (A, "failed", "ReturnCode 98"),
            (B, "failed", "ReturnCode 99"),
            (C, "swept", ""),
        ],
    ),
    (
        "completed_with_errors",
        [
            (A, "swept", ""),
            (B, "swept", ""),
            (C, "failed", "ReturnCode 81"),
        ],
    ),
    (
        "completed_with_errors",
        [
            (A, "failed", "ReturnCode 98"),
            (B, "swept", ""),
            (C, "swept", ""),
        ],
    ),
];

/// Runs night `night` of bodies A, B and C answering `answers` (`=GMC,...` lists
/// exactly those doctors, a number is the ReturnCode answered on every call),
/// asking `concurrency` bodies at once, B last, `page_size` doctors a page.
fn scripted_night(
    dir: &Path,
    pg: &PgDatabase,
    night: usize,
    answers: &[(&str, &str); 3],
    concurrency: u32,
    page_size: u32,
) -> Run {
    let mut faults = Vec::new();
    for (body, answer) in answers {
        match answer.strip_prefix('=') {
            Some(list) => faults.extend(["--body-list".into(), format!("{body}={list}")]),
            None => faults.extend(["--body-code".into(), format!("{body}={answer}")]),
        }
    }
    let faults: Vec<&str> = faults.iter().map(String::as_str).collect();
    let emu = Emulator::start(3, 1, night as u32, &faults);
    let name = format!("night{night}");
    let job = gmc_job(dir, &name, &emu, pg, "s3cret-test");
    // B comes last: with one body asked at a time a body after a refusal is
    // not asked, with four at once it is in flight; the tables hold for both.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace(
            &format!("scope = [\"{A}\", \"{B}\", \"{C}\"]"),
            &format!("scope = [\"{A}\", \"{C}\", \"{B}\"]"),
        )
        .replace(
            "backoff_ms = 50\n",
            &format!("backoff_ms = 50\nconcurrency = {concurrency}\n"),
        )
        // Three doctors a body: one leaving is a third of it; a conflict is a
        // rejected record, reported, not a failed night.
        .replace("max_failed_records = 0\n", "max_failed_records = \"50%\"\n")
        + &format!("max_disconnect_share = 0.5\npage_size = {page_size}\n");
    assert!(text.contains(&format!("\"{C}\", \"{B}\"]")), "{text}");
    std::fs::write(&job, text).unwrap();
    run(&job, &state_url(dir))
}

/// Runs the five nights asking `concurrency` bodies at once, `page_size` doctors a
/// page, and checks, after each, every doctor's body against `MEMBERSHIP` and every
/// body's outcome.
async fn mixed_failure_nights(concurrency: u32, page_size: u32) {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = pool(&pg).await;
    for (night, answers) in NIGHTS.iter().enumerate() {
        let run = scripted_night(dir.path(), &pg, night, answers, concurrency, page_size);

        let (state_expected, outcomes) = OUTCOMES[night];
        assert_eq!(run.state(), state_expected, "night {night}: {run}");
        let reported = scopes(&run);
        for (body, outcome, why) in outcomes {
            let r = &reported[body];
            assert_eq!(r["outcome"], outcome, "night {night}, body {body}: {run}");
            let reason = r["reason"].as_str().unwrap_or("");
            assert!(reason.contains(why), "night {night}, body {body}: {r}");
        }
        let now = connected(&db).await;
        for (doctor, bodies) in MEMBERSHIP {
            let expected = Some(bodies[night]).filter(|b| *b != "-");
            assert_eq!(
                now.get(doctor).map(String::as_str),
                expected,
                "night {night}, concurrency {concurrency}: doctor {doctor}"
            );
        }
        let unknown: Vec<&String> = now
            .keys()
            .filter(|d| !MEMBERSHIP.iter().any(|(m, _)| m == d))
            .collect();
        assert!(unknown.is_empty(), "night {night}: {unknown:?}");
        if night == 2 {
            let failure = run.summary["failure"].as_str().unwrap_or("");
            assert!(
                failure.contains("ReturnCode 99") && failure.contains(B),
                "the run fails naming the refusal: {run}"
            );
            assert_eq!(run.count("extracted"), 5, "C's five doctors: {run}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_each_complete_body_is_applied_and_swept_whatever_the_others_answer_one_at_a_time() {
    mixed_failure_nights(1, 2_500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_each_complete_body_is_applied_and_swept_whatever_the_others_answer_four_at_once() {
    mixed_failure_nights(4, 2_500).await;
}

/// The same nights with every doctor on a page of its own: a body is swept once
/// all its pages are loaded, and a failed body changes none of its doctors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_each_complete_body_is_applied_and_swept_whatever_the_others_answer_a_doctor_a_page() {
    mixed_failure_nights(4, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_after_a_credentials_refusal_no_new_body_is_asked_and_each_keeps_its_doctors() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    load_night_zero(dir.path(), &pg, 3, 20).await;
    let db = pool(&pg).await;
    let before = connected(&db).await;
    // One body at a time: B is refused before C is asked; C's register changed
    // (night 3), but C is never asked, so it changes nobody.
    let emu = Emulator::start(3, 20, 3, &["--body-code", &format!("{B}=99")]);
    let job = gmc_job(dir.path(), "refused", &emu, &pg, "s3cret-test");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("backoff_ms = 50\n", "backoff_ms = 50\nconcurrency = 1\n")
        + "max_disconnect_share = 0.5\n";
    std::fs::write(&job, text).unwrap();
    let run = run(&job, &state_url(dir.path()));
    run.expect_code(1);
    let reported = scopes(&run);
    assert_eq!(reported[A]["outcome"], "swept", "{run}");
    assert_eq!(reported[B]["outcome"], "failed", "{run}");
    assert_eq!(reported[C]["outcome"], "failed", "{run}");
    let why = reported[C]["reason"].as_str().unwrap();
    assert!(
        why.contains("not asked") && why.contains("ReturnCode 99"),
        "{why}"
    );
    // A follows its answer; B and C keep every doctor they had.
    let after = emu.membership();
    let now = connected(&db).await;
    let doctors: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for doctor in doctors {
        let expected = match (before.get(doctor), after.get(doctor)) {
            (_, Some(now_in)) if now_in == A => Some(now_in),
            (Some(was_in), _) if was_in == A => None,
            (was_in, _) => was_in,
        };
        assert_eq!(now.get(doctor), expected, "doctor {doctor}");
    }
}

/// Nights where one GMC number is listed by two bodies: 1000011 (in B) is listed
/// by A too, then 1000031 (new) by B and C. Written out: where each doctor is
/// after each night ("B|C": one of them, the first body to deliver a new doctor).
const TWO_BODIES: [[(&str, &str); 3]; 5] = [
    [
        (A, "=1000001,1000002"),
        (B, "=1000011,1000012"),
        (C, "=1000021"),
    ],
    [
        (A, "=1000001,1000002,1000011"),
        (B, "=1000011,1000012"),
        (C, "=1000021"),
    ],
    [
        (A, "=1000001,1000002,1000011"),
        (B, "=1000011,1000012"),
        (C, "=1000021"),
    ],
    [
        (A, "=1000001,1000002"),
        (B, "=1000011,1000012,1000031"),
        (C, "=1000021,1000031"),
    ],
    [
        (A, "=1000001,1000002"),
        (B, "=1000011,1000012,1000031"),
        (C, "=1000021,1000031"),
    ],
];

/// Where each doctor is after each night of `TWO_BODIES`.
const TWO_BODIES_MEMBERSHIP: [(&str, [&str; 5]); 5] = [
    //  doctor      n0   n1   n2   n3   n4
    ("1000001", [A, A, A, A, A]),
    ("1000002", [A, A, A, A, A]),
    ("1000011", [B, B, B, B, B]),
    ("1000012", [B, B, B, B, B]),
    ("1000031", ["-", "-", "-", "B|C", "B|C"]),
];

/// The doctor each night reports in a conflict ("": none).
const TWO_BODIES_CONFLICT: [&str; 5] = ["", "1000011", "1000011", "1000031", "1000031"];

async fn doctor_in_two_bodies(concurrency: u32) {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = pool(&pg).await;
    let mut placed: Option<String> = None;
    for (night, answers) in TWO_BODIES.iter().enumerate() {
        let run = scripted_night(dir.path(), &pg, night, answers, concurrency, 2500);
        let what = format!("night {night}, concurrency {concurrency}");
        let conflict = TWO_BODIES_CONFLICT[night];
        let id = run.job_id();
        if conflict.is_empty() {
            assert_eq!(run.state(), "completed", "{what}: {run}");
        } else {
            // Each copy the run refused is a rejected record naming both bodies.
            assert_eq!(run.state(), "completed_with_errors", "{what}: {run}");
            let errors = run.summary["first_errors"].as_array().unwrap();
            assert!(!errors.is_empty(), "{what}: {run}");
            for e in errors {
                assert_eq!(e["source_id"], conflict, "{what}: {e}");
                let reason = e["reason"].as_str().unwrap();
                assert!(
                    reason.starts_with("conflict: listed in two scopes"),
                    "{what}: {e}"
                );
            }
            let warnings = run.summary["warnings"].to_string();
            assert!(
                warnings.contains("listed in two scopes") && warnings.contains(conflict),
                "{what}: the summary lists the conflict for an operator: {run}"
            );
            // Nobody moved, and the rerun of a night changes nothing at all.
            assert!(
                changes(&db, &id, "activity", "moved").await.is_empty(),
                "{what}"
            );
            assert!(
                changes(&db, &id, "individual", "moved").await.is_empty(),
                "{what}"
            );
            if night == 2 || night == 4 {
                let rows: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM change_log WHERE run_id = $1")
                        .bind(&id)
                        .fetch_one(&db)
                        .await
                        .unwrap();
                assert_eq!(rows, 0, "{what}: a rerun logs no change, so sends no event");
            }
        }
        let now = connected(&db).await;
        for (doctor, bodies) in TWO_BODIES_MEMBERSHIP {
            let got = now.get(doctor).map(String::as_str);
            match bodies[night] {
                "-" => assert_eq!(got, None, "{what}: doctor {doctor}"),
                "B|C" => {
                    let body = got.unwrap_or_else(|| panic!("{what}: {doctor} connected"));
                    assert!(body == B || body == C, "{what}: doctor {doctor} in {body}");
                    // Placed once, then never moved.
                    let first = placed.get_or_insert_with(|| body.to_owned());
                    assert_eq!(body, first, "{what}: doctor {doctor} stays put");
                }
                body => assert_eq!(got, Some(body), "{what}: doctor {doctor}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_a_doctor_listed_by_two_bodies_moves_nowhere_and_is_reported_one_at_a_time() {
    doctor_in_two_bodies(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmc_a_doctor_listed_by_two_bodies_moves_nowhere_and_is_reported_four_at_once() {
    doctor_in_two_bodies(4).await;
}
