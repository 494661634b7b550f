//! What the SQLite store does differently from the PostgreSQL one; the queries
//! themselves are shared (`store::jobs`, `store::ledger`, `store::records`).
//!
//! SQLite has a single writer: every multi-statement change runs in a
//! `BEGIN IMMEDIATE` transaction that holds the database's write lock from its
//! first statement, so there are no row locks to take.

use provsync_core::store::StoreError;

use super::Conn;

/// The suffix that locks the rows a `SELECT` reads: none, the write lock is held.
pub(super) const FOR_UPDATE: &str = "";

/// Serialises dispatch decisions for a target: the write lock already does.
pub(super) async fn lock_target(_conn: &mut Conn, _target: &str) -> Result<(), StoreError> {
    Ok(())
}

/// The `run_no` column and value of a new job: one more than the largest given
/// (safe under the write lock; SQLite has no sequences).
pub(super) const NEW_RUN_NO: (&str, &str) = (
    ", run_no",
    ", (SELECT COALESCE(MAX(run_no), 0) + 1 FROM jobs)",
);
