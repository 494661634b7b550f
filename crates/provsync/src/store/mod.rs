//! State store backends, chosen by URL: `sqlite://path` or `sqlite::memory:` (the
//! embedded runtime) and `postgres://` / `postgresql://` (the distributed runtime;
//! `?schema=NAME` picks the schema, default `provsync_state`).

/// The `StateStore` impl of a backend whose modules `jobs`, `ledger` and `records`
/// expose the same functions over its `pool` (and whose `target_key` numbers
/// targets): written once, so the backends differ only in their SQL.
macro_rules! forward_state_store {
    ($store:ty) => {
        impl $store {
            /// The number of a target, given on first use.
            async fn target_key(&self, name: &str) -> Result<i64, StoreError> {
                if let Some(k) = self.target_keys.lock().expect("target keys").get(name) {
                    return Ok(*k);
                }
                // Two statements, not one `INSERT ... RETURNING` + fallback SELECT: when
                // another process inserts the name concurrently, ours waits and does
                // nothing, and only a new statement's snapshot sees the row it committed.
                sqlx::query("INSERT INTO targets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .execute(&self.pool)
                    .await
                    .map_err(db("register target"))?;
                let key: i64 = sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db("read target number"))?;
                self.target_keys
                    .lock()
                    .expect("target keys")
                    .insert(name.to_owned(), key);
                Ok(key)
            }
        }

        #[async_trait::async_trait]
        impl StateStore for $store {
            async fn create_job(
                &self,
                id: &JobId,
                target: &str,
                spec: &JobSpec,
                requested_by: &str,
            ) -> Result<JobRecord, StoreError> {
                jobs::create_job(&self.pool, id, target, spec, requested_by).await
            }

            async fn dispatch(
                &self,
                id: &JobId,
                owner: &str,
                lease_ms: i64,
            ) -> Result<Dispatch, StoreError> {
                jobs::dispatch(&self.pool, id, owner, lease_ms).await
            }

            async fn start_next_queued(
                &self,
                target: &str,
                owner: &str,
                lease_ms: i64,
            ) -> Result<Option<JobId>, StoreError> {
                jobs::start_next_queued(&self.pool, target, owner, lease_ms).await
            }

            async fn transition(
                &self,
                id: &JobId,
                from: JobState,
                to: JobState,
                reason: Option<&str>,
            ) -> Result<(), StoreError> {
                jobs::transition(&self.pool, id, from, to, reason).await
            }

            async fn record_failure(&self, id: &JobId, reason: &str) -> Result<(), StoreError> {
                jobs::record_failure(&self.pool, id, reason).await
            }

            async fn set_stage(&self, id: &JobId, stage: Stage) -> Result<(), StoreError> {
                jobs::set_stage(&self.pool, id, stage).await
            }

            async fn set_note(&self, id: &JobId, note: Option<&str>) -> Result<(), StoreError> {
                jobs::set_note(&self.pool, id, note).await
            }

            async fn set_target_ref(&self, id: &JobId, value: &str) -> Result<(), StoreError> {
                jobs::set_target_ref(&self.pool, id, value).await
            }

            async fn set_summary(
                &self,
                id: &JobId,
                summary: &serde_json::Value,
            ) -> Result<(), StoreError> {
                jobs::set_summary(&self.pool, id, summary).await
            }

            async fn job(&self, id: &JobId) -> Result<JobRecord, StoreError> {
                jobs::job(&self.pool, id).await
            }

            async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
                jobs::list_jobs(&self.pool, filter).await
            }

            async fn transitions(&self, id: &JobId) -> Result<Vec<Transition>, StoreError> {
                jobs::transitions(&self.pool, id).await
            }

            async fn request_abort(&self, id: &JobId) -> Result<(), StoreError> {
                jobs::request_abort(&self.pool, id).await
            }

            async fn abort_requested(&self, id: &JobId) -> Result<bool, StoreError> {
                jobs::abort_requested(&self.pool, id).await
            }

            async fn acquire_lease(
                &self,
                name: &str,
                owner: &str,
                ttl_ms: i64,
            ) -> Result<bool, StoreError> {
                jobs::acquire_lease(&self.pool, name, owner, ttl_ms).await
            }

            async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
                jobs::release_lease(&self.pool, name, owner).await
            }

            async fn orphaned_jobs(&self) -> Result<Vec<JobId>, StoreError> {
                jobs::orphaned_jobs(&self.pool).await
            }

            async fn record_page(
                &self,
                id: &JobId,
                page_no: u64,
                cursor: &Cursor,
                records: u64,
                snapshot: Option<&ScopeSnapshot>,
                next: &Checkpoint,
            ) -> Result<(), StoreError> {
                ledger::record_page(&self.pool, id, page_no, cursor, records, snapshot, next).await
            }

            async fn checkpoint(&self, id: &JobId) -> Result<Option<Checkpoint>, StoreError> {
                ledger::checkpoint(&self.pool, id).await
            }

            async fn set_checkpoint(&self, id: &JobId, cp: &Checkpoint) -> Result<(), StoreError> {
                ledger::set_checkpoint(&self.pool, id, cp).await
            }

            async fn pages(&self, id: &JobId) -> Result<Vec<PageEntry>, StoreError> {
                ledger::pages(&self.pool, id).await
            }

            async fn commit_page(
                &self,
                id: &JobId,
                target: &str,
                page_no: u64,
                commit: &PageCommit,
            ) -> Result<bool, StoreError> {
                ledger::commit_page(
                    &self.pool,
                    id,
                    self.target_key(target).await?,
                    page_no,
                    commit,
                )
                .await
            }

            async fn counts(&self, id: &JobId) -> Result<KindCounts, StoreError> {
                ledger::counts(&self.pool, id).await
            }

            async fn known_records(
                &self,
                target: &str,
                kind: EntityKind,
                ids: &[SourceId],
            ) -> Result<HashMap<SourceId, KnownRecord>, StoreError> {
                records::known_records(&self.pool, self.target_key(target).await?, kind, ids).await
            }

            async fn claim_records(
                &self,
                id: &JobId,
                page_no: Option<u64>,
                kind: EntityKind,
                records: &[(SourceId, Scope)],
            ) -> Result<HashMap<SourceId, Claim>, StoreError> {
                records::claim_records(&self.pool, id, page_no, kind, records).await
            }

            async fn claim_conflicts(
                &self,
                id: &JobId,
                limit: u32,
            ) -> Result<(u64, Vec<ClaimConflict>), StoreError> {
                records::claim_conflicts(&self.pool, id, limit).await
            }

            async fn target_ids(
                &self,
                target: &str,
                kind: EntityKind,
                ids: &[SourceId],
            ) -> Result<HashMap<SourceId, String>, StoreError> {
                records::target_ids(&self.pool, self.target_key(target).await?, kind, ids).await
            }

            async fn staged_links(
                &self,
                id: &JobId,
                after_seq: i64,
                limit: u32,
            ) -> Result<Vec<StagedLink>, StoreError> {
                ledger::staged_links(&self.pool, id, after_seq, limit).await
            }

            async fn commit_links(
                &self,
                id: &JobId,
                target: &str,
                commit: &LinkCommit,
            ) -> Result<(), StoreError> {
                ledger::commit_links(&self.pool, id, self.target_key(target).await?, commit).await
            }

            async fn add_errors(
                &self,
                id: &JobId,
                errors: &[ErrorEntry],
            ) -> Result<(), StoreError> {
                ledger::add_errors(&self.pool, id, errors).await
            }

            async fn errors(
                &self,
                id: &JobId,
                offset: u32,
                limit: u32,
            ) -> Result<Vec<ErrorEntry>, StoreError> {
                ledger::errors(&self.pool, id, offset, limit).await
            }

            async fn error_count(&self, id: &JobId) -> Result<u64, StoreError> {
                ledger::error_count(&self.pool, id).await
            }

            async fn connected_count(
                &self,
                target: &str,
                kind: EntityKind,
                scopes: &[Scope],
            ) -> Result<u64, StoreError> {
                records::connected_count(&self.pool, self.target_key(target).await?, kind, scopes)
                    .await
            }

            async fn unseen_records(
                &self,
                target: &str,
                kind: EntityKind,
                scopes: &[Scope],
                id: &JobId,
                limit: u32,
            ) -> Result<Vec<SourceId>, StoreError> {
                records::unseen_records(
                    &self.pool,
                    self.target_key(target).await?,
                    kind,
                    scopes,
                    id,
                    limit,
                )
                .await
            }

            async fn unseen_count(
                &self,
                target: &str,
                kind: EntityKind,
                scopes: &[Scope],
                id: &JobId,
            ) -> Result<u64, StoreError> {
                records::unseen_count(&self.pool, self.target_key(target).await?, kind, scopes, id)
                    .await
            }

            async fn end_run(&self, id: &JobId) -> Result<(), StoreError> {
                records::end_run(&self.pool, id).await
            }

            async fn mark_disconnected(
                &self,
                target: &str,
                kind: EntityKind,
                ids: &[SourceId],
                id: &JobId,
            ) -> Result<(), StoreError> {
                records::mark_disconnected(
                    &self.pool,
                    self.target_key(target).await?,
                    kind,
                    ids,
                    id,
                )
                .await
            }

            async fn page_progress(&self, id: &JobId) -> Result<(u64, u64), StoreError> {
                automation::page_progress(&self.pool, id).await
            }

            async fn fire_schedule(&self, fire: &ScheduleFire<'_>) -> Result<Fired, StoreError> {
                automation::fire_schedule(&self.pool, fire).await
            }

            async fn schedule_runs(
                &self,
                schedule: &str,
                limit: u32,
            ) -> Result<Vec<ScheduleRun>, StoreError> {
                automation::schedule_runs(&self.pool, schedule, limit).await
            }

            async fn held_jobs(&self, older_than_ms: i64) -> Result<Vec<HeldJob>, StoreError> {
                automation::held_jobs(&self.pool, older_than_ms).await
            }

            async fn claim_callbacks(
                &self,
                limit: u32,
                lease_ms: i64,
            ) -> Result<Vec<CallbackDue>, StoreError> {
                automation::claim_callbacks(&self.pool, limit, lease_ms).await
            }

            async fn callback_attempted(
                &self,
                job: &JobId,
                event: &str,
                outcome: &Delivery,
            ) -> Result<(), StoreError> {
                automation::callback_attempted(&self.pool, job, event, outcome).await
            }

            async fn callbacks(&self, job: &JobId) -> Result<Vec<CallbackState>, StoreError> {
                automation::callbacks(&self.pool, job).await
            }
        }
    };
}

#[macro_use]
mod automation;
mod claims;
#[macro_use]
mod jobs;
#[macro_use]
mod ledger;
#[macro_use]
mod records;
pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

pub use provsync_core::store::*;

/// Opens the state store a URL names if it exists (for commands that look at
/// jobs: `status`, `abort`, `jobs`): a missing SQLite file is an error naming it,
/// and nothing is created.
pub async fn open_existing(url: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    match url.split(':').next().unwrap_or_default() {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::open_existing(url).await?)),
        _ => open(url).await,
    }
}

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
