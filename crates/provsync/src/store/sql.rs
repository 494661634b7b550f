//! What the SQLite and PostgreSQL stores share besides their queries: timestamps,
//! error mapping and value conversions. The queries themselves are written once in
//! `jobs`, `ledger`, `records` and `automation`, each a macro expanded in both
//! backends; each backend's `dialect` module holds only what differs.

use chrono::{DateTime, Utc};

use provsync_core::job::{JobId, JobState};
use provsync_core::model::EntityKind;
use provsync_core::store::StoreError;

/// Current time as epoch milliseconds (the store's timestamp format).
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Epoch milliseconds back to a timestamp.
pub(crate) fn ms_to_dt(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

/// Maps a sqlx error to `Backend`, saying what was being done.
pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

/// Like [`db`], but a foreign key violation means the job does not exist.
pub(crate) fn db_job<'a>(
    context: &'static str,
    id: &'a JobId,
) -> impl Fn(sqlx::Error) -> StoreError + 'a {
    move |e| {
        let fk = e
            .as_database_error()
            .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation));
        if fk {
            StoreError::NotFound(id.0.clone())
        } else {
            StoreError::Backend(format!("{context}: {e}"))
        }
    }
}

/// Decodes a JSON column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Encodes a value as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

/// A `u64` as the `BIGINT` the schema stores.
pub(crate) fn int(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} exceeds i64")))
}

/// A stored `BIGINT` that must not be negative.
pub(crate) fn uint(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is negative")))
}

/// Parses a stored kind name.
pub(crate) fn kind(s: &str) -> Result<EntityKind, StoreError> {
    EntityKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown entity kind {s:?}")))
}

/// Parses a stored job state.
pub(crate) fn parse_state(s: &str) -> Result<JobState, StoreError> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
}
