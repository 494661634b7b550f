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
    scenario_fresh_state_store_rewrites_nothing(dir.path(), &pg.target()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_same_snapshot_into_postgres_changes_and_logs_nothing() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario_unchanged_rerun(dir.path(), &pg.target()).await;
}
