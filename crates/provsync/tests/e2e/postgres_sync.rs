//! Full syncs into a real PostgreSQL server (schema `provider`), one fresh database
//! per test. Skipped with a message when the server is unreachable, unless CI=true.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_world_lands_in_postgres_exactly_as_the_snapshot() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_world_matches_snapshot(dir.path(), &pg.target()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn night_two_applies_changes_additions_moves_and_disconnections_exactly_in_postgres() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_night_two(dir.path(), &pg.target()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_state_store_against_a_synced_postgres_target_rewrites_nothing() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_fresh_state_store_rewrites_nothing(dir.path(), &pg.target(), Via::Json).await;
}

/// The same through `provsync serve`: a server on a new, empty state store runs the
/// job (`POST /v1/jobs`) and writes nothing to the synced target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_fresh_state_store_against_a_synced_postgres_target_writes_nothing() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_fresh_state_store_rewrites_nothing(dir.path(), &pg.target(), Via::Serve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_same_snapshot_into_postgres_changes_and_logs_nothing() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_unchanged_rerun(dir.path(), &pg.target()).await;
}

/// The PostgreSQL target's password comes from an environment variable or a file,
/// never from the job spec: a URL carrying one is refused before a job exists, and
/// after runs with the others no byte of the state store (database and write-ahead
/// log) holds the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passwords_come_from_the_environment_or_a_file_and_never_reach_the_state_store() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    const SECRET: &str = "S3cretPW-never-stored";
    let dir = tempfile::tempdir().unwrap();
    let world = generate(dir.path(), 200, 4, 1);
    let plain = Job::full(&world, &pg.target()).toml();
    let with = |extra: &str| plain.replacen("[target]\n", &format!("[target]\n{extra}\n"), 1);
    let state = state_url(dir.path());

    // From the environment.
    let file = dir.path().join("env.toml");
    std::fs::write(&file, with("password_env = \"PROVSYNC_TEST_PG_PASSWORD\"")).unwrap();
    let o = std::process::Command::new(bin())
        .arg("run")
        .arg(&file)
        .args(["--state", &state, "--json", "-q"])
        .env("PROVSYNC_TEST_PG_PASSWORD", SECRET)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // From a file, relative to the job file.
    std::fs::write(dir.path().join("pg-password"), format!("{SECRET}\n")).unwrap();
    let file = dir.path().join("file.toml");
    std::fs::write(&file, with("password_file = \"pg-password\"")).unwrap();
    run(&file, &state).expect_code(0);

    // In the URL: refused, naming the way out, before any job exists.
    let inline = plain.replace(
        "postgres://postgres@",
        &format!("postgres://postgres:{SECRET}@"),
    );
    assert_ne!(inline, plain, "the test URL has the expected shape");
    let file = dir.path().join("inline.toml");
    std::fs::write(&file, inline).unwrap();
    let refused = run(&file, &state);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("target.url: carries a password")
            && refused.stderr.contains("password_env"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(SECRET), "{}", refused.stderr);

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("state.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "{name} holds the password"
            );
        }
    }
}
