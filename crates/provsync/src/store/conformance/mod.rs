//! The `StateStore` conformance suite: one plain async fn per behaviour the runtime
//! relies on, run against every backend by [`conformance_tests!`]. A backend is added
//! with one line: `mod postgres { conformance_tests!(super::postgres_fixture()); }`.
//! The checks live by area: `jobs`, `dispatch`, `ledger`, `links`, `claims`,
//! `records`, `schedules`, `callbacks`; `open` and `measure` run on their own.

use std::any::Any;
use std::sync::Arc;

use super::StateStore;

mod callbacks;
mod claims;
mod dispatch;
mod jobs;
mod ledger;
mod links;
mod measure;
mod open;
mod records;
mod schedules;
mod support;

// The checks, by area, where `conformance_tests!` finds them.
pub use callbacks::{
    callback_claims_are_exclusive_and_outcomes_recorded,
    callbacks_are_queued_on_accept_and_on_end_once,
};
pub use claims::{claims_keep_the_first_copy_and_mark_conflicts, known_records_and_claims};
pub use dispatch::{
    concurrent_dispatch_starts_exactly_one, dispatch_is_fifo_per_target,
    leases_take_renew_refuse_expire, orphaned_jobs_after_lease_expiry, targets_are_independent,
};
pub use jobs::{
    a_jobs_target_ref_is_kept_for_whoever_resumes_it,
    a_parked_jobs_note_is_kept_until_it_resumes_or_ends, abort_flag,
    conditional_transition_conflicts, create_and_get_round_trip, illegal_transition_is_refused,
    list_jobs_filters_newest_first, terminal_sets_finished_and_releases_lease,
};
pub use ledger::{
    commit_page_is_atomic, commit_page_is_idempotent, counts_sum_pages_and_link_chunks,
    errors_are_paged_in_order, pages_keep_their_scope_snapshot_and_counts,
    record_page_is_idempotent_and_moves_checkpoint,
};
pub use links::staged_links_round_trip_and_commit_once;
pub use records::{
    a_records_anchor_is_the_last_writes, sweep_queries_and_reconnect, target_ids_map,
};
pub use schedules::{
    a_cron_tick_fires_once_and_creates_its_job, a_manual_trigger_reports_the_active_job,
    a_tick_is_skipped_while_the_previous_job_is_active,
    after_links_the_awaited_schedules_latest_job, concurrent_ticks_fire_exactly_once,
    held_jobs_lists_schedule_jobs_and_stranded_ones,
};

/// A store under test plus whatever must live as long as it (a temp dir, a schema).
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// Dropped after the test: removes the backing files or database.
    pub _keep: Box<dyn Any + Send>,
}

/// What a factory may yield: a fixture, or `None` when the backend's server is not
/// there and the test is skipped (the factory says why).
pub trait IntoFixture {
    /// The fixture, if the test should run.
    fn into_fixture(self) -> Option<Fixture>;
}

impl IntoFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl IntoFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Expands one `#[tokio::test]` per conformance check, each on a fresh store from
/// `$factory` (an expression of type `impl Future<Output = impl IntoFixture>`).
macro_rules! conformance_tests {
    ($factory:expr) => {
        conformance_tests!(@by_ref $factory;
            create_and_get_round_trip,
            dispatch_is_fifo_per_target,
            targets_are_independent,
            illegal_transition_is_refused,
            conditional_transition_conflicts,
            terminal_sets_finished_and_releases_lease,
            a_parked_jobs_note_is_kept_until_it_resumes_or_ends,
            a_jobs_target_ref_is_kept_for_whoever_resumes_it,
            abort_flag,
            leases_take_renew_refuse_expire,
            orphaned_jobs_after_lease_expiry,
            record_page_is_idempotent_and_moves_checkpoint,
            pages_keep_their_scope_snapshot_and_counts,
            commit_page_is_idempotent,
            commit_page_is_atomic,
            known_records_and_claims,
            claims_keep_the_first_copy_and_mark_conflicts,
            a_records_anchor_is_the_last_writes,
            target_ids_map,
            staged_links_round_trip_and_commit_once,
            errors_are_paged_in_order,
            sweep_queries_and_reconnect,
            counts_sum_pages_and_link_chunks,
            list_jobs_filters_newest_first,
            a_cron_tick_fires_once_and_creates_its_job,
            a_tick_is_skipped_while_the_previous_job_is_active,
            a_manual_trigger_reports_the_active_job,
            after_links_the_awaited_schedules_latest_job,
            held_jobs_lists_schedule_jobs_and_stranded_ones,
            callbacks_are_queued_on_accept_and_on_end_once,
            callback_claims_are_exclusive_and_outcomes_recorded,
        );
        conformance_tests!(@by_arc $factory;
            concurrent_dispatch_starts_exactly_one,
            concurrent_ticks_fire_exactly_once,
        );
    };
    (@by_ref $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(fixture) = $crate::store::conformance::IntoFixture::into_fixture($factory.await) else {
                    return;
                };
                $crate::store::conformance::$check(&*fixture.store).await;
            }
        )*
    };
    (@by_arc $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(fixture) = $crate::store::conformance::IntoFixture::into_fixture($factory.await) else {
                    return;
                };
                $crate::store::conformance::$check(fixture.store.clone()).await;
            }
        )*
    };
}

/// A file-backed SQLite store in a fresh temp dir (several connections, WAL).
pub async fn sqlite_file_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = super::open(&url).await.expect("open SQLite store");
    Fixture {
        store,
        _keep: Box::new(dir),
    }
}

/// An in-memory SQLite store (one connection: catches nested pool use).
pub async fn sqlite_memory_fixture() -> Fixture {
    let store = super::open("sqlite::memory:")
        .await
        .expect("open SQLite store");
    Fixture {
        store,
        _keep: Box::new(()),
    }
}

mod sqlite_file {
    conformance_tests!(super::sqlite_file_fixture());
}

mod sqlite_memory {
    conformance_tests!(super::sqlite_memory_fixture());
}

/// A PostgreSQL store in a database of its own, dropped after the test; `None`
/// (skipped) when the server is unreachable, a failure instead with `CI=true`.
pub async fn postgres_fixture() -> Option<Fixture> {
    let db = super::postgres::testdb::TestDb::create().await?;
    let store = super::open(&db.url).await.expect("open PostgreSQL store");
    Some(Fixture {
        store,
        _keep: Box::new(db),
    })
}

mod postgres {
    conformance_tests!(super::postgres_fixture());
}
