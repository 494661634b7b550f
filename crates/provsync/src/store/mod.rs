//! State store backends, chosen by URL: `sqlite://path` or `sqlite::memory:` (the
//! embedded runtime) and `postgres://` / `postgresql://` (the distributed runtime;
//! `?schema=NAME` picks the schema, default `provsync_state`).

pub mod postgres;
pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

pub use provsync_core::store::*;

/// Opens the state store a URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    // Only the scheme goes into errors: a PostgreSQL URL may carry a password.
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::open(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
        _ => Err(StoreError::Backend(format!(
            "unsupported state store URL scheme {scheme:?}: expected sqlite://PATH, \
             sqlite::memory: or postgres://..."
        ))),
    }
}
