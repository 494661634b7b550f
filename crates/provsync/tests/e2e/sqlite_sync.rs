//! Full syncs into SQLite, checked against the generator's snapshots.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_world_lands_in_sqlite_exactly_as_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    scenario_world_matches_snapshot(dir.path(), &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn night_two_applies_changes_additions_moves_and_disconnections_exactly_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    scenario_night_two(dir.path(), &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_state_store_against_a_synced_sqlite_target_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    scenario_fresh_state_store_rewrites_nothing(dir.path(), &target, Via::Json).await;
}

/// The same through `provsync serve`: a server on a new, empty state store runs the
/// job (`POST /v1/jobs`) and writes nothing to the synced target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_fresh_state_store_against_a_synced_sqlite_target_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    scenario_fresh_state_store_rewrites_nothing(dir.path(), &target, Via::Serve).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_same_snapshot_into_sqlite_changes_and_logs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::sqlite(dir.path(), "provider.db");
    scenario_unchanged_rerun(dir.path(), &target).await;
}
