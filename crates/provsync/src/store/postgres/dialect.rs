//! What the PostgreSQL store does differently from the SQLite one; the queries
//! themselves are shared (`store::jobs`, `store::ledger`, `store::records`).
//!
//! Several processes write at once, so what SQLite's single writer decides for
//! free is made explicit with row locks (see the module docs of `postgres`).

use provsync_core::store::StoreError;

use super::{db, Conn};

/// The suffix that locks the rows a `SELECT` reads until the transaction ends.
pub(super) const FOR_UPDATE: &str = " FOR UPDATE";

/// Locks a target's dispatch row until the transaction ends, creating it on first
/// use. The upsert's DO UPDATE takes the row lock in the same statement, so two
/// processes dispatching to a new target cannot both pass.
///
/// A row lock rather than `pg_advisory_xact_lock(hashtext(target))`: it is exact
/// (no hash collisions between targets), local to this store's schema (advisory
/// locks are database-wide, so two stores sharing a database would contend), and
/// shows up as an ordinary row lock when someone inspects a stuck dispatch.
pub(super) async fn lock_target(conn: &mut Conn, target: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dispatch_targets (target) VALUES ($1) \
         ON CONFLICT (target) DO UPDATE SET target = excluded.target",
    )
    .bind(target)
    .execute(conn)
    .await
    .map_err(db("lock target"))?;
    Ok(())
}

/// The `run_no` column and value of a new job: none, the column's sequence gives
/// it (see the migration).
pub(super) const NEW_RUN_NO: (&str, &str) = ("", "");
