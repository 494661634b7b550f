//! The `StateStore` trait: everything a job needs to survive a crash, kept outside
//! memory (jobs and transitions, dispatch queue, abort flags, page ledger,
//! checkpoints, id map, content hashes, staged links, errors, leases).
//! Implemented by SQLite (embedded) and PostgreSQL (distributed); one conformance
//! suite runs against both.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobSpec, JobState, KindCounts, Stage};
use crate::mapped::MappedRecord;
use crate::model::{ContentHash, EntityKind, Scope, SourceId};
use crate::source::{Cursor, ScopeSnapshot};

/// A job as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: JobId,
    /// Dispatch key: one active job per target.
    pub target: String,
    /// The request.
    pub spec: JobSpec,
    /// Who or what started it (`cli`, `api:<token name>`, `schedule:<name>`).
    pub requested_by: String,
    /// Lifecycle state.
    pub state: JobState,
    /// Pipeline stage.
    pub stage: Stage,
    /// First failure recorded.
    pub failure: Option<String>,
    /// An abort was requested.
    pub abort_requested: bool,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The run summary written by the finish stage.
    pub summary: Option<serde_json::Value>,
    /// Why the running job waits (parked on a target's spent API budget), kept in
    /// the store so every process sharing it can say so; `None` once it moves on.
    pub note: Option<String>,
    /// What the target keeps of this run across processes (the Salesforce target:
    /// its IntegrationJobRun's Id), as `Target::start_run` returned it.
    pub target_ref: Option<String>,
}

/// One persisted state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: JobState,
    /// State after.
    pub to: JobState,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (event, failure...).
    pub reason: Option<String>,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this target.
    pub target: Option<String>,
    /// Only jobs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// The extraction checkpoint of a job: where the next fetch starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number the next page will get.
    pub next_page: u64,
    /// Cursor of the next page (`None` once extraction is complete).
    pub next_cursor: Option<Cursor>,
    /// Every page has been fetched.
    pub extraction_complete: bool,
}

/// A page in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    /// Page number, from 0.
    pub page_no: u64,
    /// Cursor it was fetched with (to fetch it again after a crash).
    pub cursor: Cursor,
    /// Its effects are committed.
    pub loaded: bool,
    /// Records it held.
    pub records: u64,
    /// What it says of its scope, for sources that deliver a scope per page.
    pub snapshot: Option<ScopeSnapshot>,
    /// Its counts, once loaded.
    pub counts: Option<KindCounts>,
}

/// A rejected or failed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// Page it came from (`None` for finish-stage errors).
    pub page_no: Option<u64>,
    /// Stage that refused it (`transform`, `load`, `relations`, `finish`).
    pub stage: String,
    /// Kind, when known.
    pub kind: Option<EntityKind>,
    /// Source id, when known.
    pub source_id: Option<String>,
    /// Why, naming the field or reference at fault.
    pub reason: String,
}

/// What the store knows of a record in a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRecord {
    /// Content hash last written.
    pub hash: ContentHash,
    /// Whether it is currently connected (not swept).
    pub connected: bool,
    /// The scope it was last written in (a new one means the record moved).
    pub scope: Scope,
    /// What it was last written placed by (`MappedRecord::anchor`; a new one means
    /// the record moved); None when unknown.
    pub anchor: Option<String>,
}

/// Which page of a run delivered a record first (the run keeps that copy), and
/// whether another scope listed it too: a conflict, which moves nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The page that claimed the record first.
    pub page_no: u64,
    /// The scope it claimed it in (empty for a record rejected before mapping).
    pub scope: Scope,
    /// Another scope that listed the record in the same run, if one did.
    pub conflict: Option<Scope>,
}

impl Claim {
    /// Whether a copy of the record in `scope` conflicts with this claim: both
    /// name a scope, and not the same one.
    pub fn conflicts_with(&self, scope: &Scope) -> bool {
        !self.scope.as_str().is_empty() && !scope.as_str().is_empty() && self.scope != *scope
    }
}

/// A record two scopes listed in one run (for the run's summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimConflict {
    /// Kind.
    pub kind: EntityKind,
    /// Source id.
    pub source_id: SourceId,
    /// The scope of the first copy.
    pub scope: Scope,
    /// The other scope.
    pub other: Scope,
}

/// A record written to the target: its new hash and (optional) target id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashUpdate {
    /// Kind.
    pub kind: EntityKind,
    /// Source id.
    pub source_id: SourceId,
    /// Scope (for the sweep).
    pub scope: Scope,
    /// Content hash written.
    pub hash: ContentHash,
    /// Target-side id, when the target has its own.
    pub target_id: Option<String>,
    /// What the record is placed by (`MappedRecord::anchor`).
    pub anchor: Option<String>,
}

/// Everything one page changed, committed atomically with the page's `loaded` mark.
#[derive(Debug, Clone, Default)]
pub struct PageCommit {
    /// Counts per kind.
    pub counts: KindCounts,
    /// Rejected and failed records.
    pub errors: Vec<ErrorEntry>,
    /// Records written (hash and id map updates).
    pub written: Vec<HashUpdate>,
    /// Records to load in the relations stage, after the barrier: links whose end
    /// was not loaded yet, and records moving to another scope.
    pub staged: Vec<MappedRecord>,
}

/// A staged link read back for the relations stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedLink {
    /// Order key within the job (resume point).
    pub seq: i64,
    /// Page it came from.
    pub page_no: u64,
    /// Created or updated.
    pub created: bool,
    /// The link record.
    pub record: MappedRecord,
}

/// What the relations stage changed for one chunk of staged links.
#[derive(Debug, Clone, Default)]
pub struct LinkCommit {
    /// Highest staged `seq` this chunk covers (its rows are removed).
    pub upto_seq: i64,
    /// Counts per kind.
    pub counts: KindCounts,
    /// Failed links.
    pub errors: Vec<ErrorEntry>,
    /// Links written.
    pub written: Vec<HashUpdate>,
    /// Counts of the scope moves the chunk applied or refused, by the page that
    /// delivered them: added to that page's counts (a move is counted where its
    /// scope's records are, for the per-scope report), not to the chunk's.
    pub pages: BTreeMap<u64, KindCounts>,
}

/// How a schedule run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FiredBy {
    /// A cron tick (claimed once across every process sharing the store).
    Cron,
    /// `POST /v1/admin/sync/{schedule}`.
    Manual,
}

impl FiredBy {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FiredBy::Cron => "cron",
            FiredBy::Manual => "manual",
        }
    }
}

/// A request to start a schedule's job for one tick (or a manual trigger).
#[derive(Debug, Clone)]
pub struct ScheduleFire<'a> {
    /// Schedule name.
    pub schedule: &'a str,
    /// Cron tick or manual trigger.
    pub fired_by: FiredBy,
    /// The tick's time (cron) or the request's time (manual).
    pub tick_at: DateTime<Utc>,
    /// Id for the job, if one is created.
    pub job_id: &'a JobId,
    /// Dispatch key of the job.
    pub target: &'a str,
    /// The job.
    pub spec: &'a JobSpec,
    /// `schedule:<name>` or `api:<token>`.
    pub requested_by: &'a str,
    /// The schedule whose latest run this one waits for (`codes-sync` before bulk).
    pub after: Option<&'a str>,
}

/// What firing a schedule did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired {
    /// A job was created (`accepted`; dispatch is the caller's, or the held-job
    /// loop's once the job it waits for has ended).
    Created {
        /// The new job.
        job: Box<JobRecord>,
        /// The job it waits for, if any.
        after_job: Option<JobId>,
    },
    /// Another process already claimed this cron tick.
    AlreadyFired,
    /// The schedule's previous job is still active: no new job (a cron tick is
    /// recorded as skipped).
    Running(JobId),
}

/// One recorded run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// Schedule name.
    pub schedule: String,
    /// Cron tick or manual trigger.
    pub fired_by: FiredBy,
    /// The tick (or trigger) time.
    pub tick_at: DateTime<Utc>,
    /// The job started, or `None` when the tick was skipped.
    pub job_id: Option<JobId>,
    /// The job it waited for.
    pub after_job: Option<JobId>,
    /// `fired` or `skipped`.
    pub outcome: String,
    /// Why it was skipped.
    pub note: Option<String>,
}

/// An `accepted` job nobody has dispatched yet, with the job it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldJob {
    /// The held job.
    pub id: JobId,
    /// Schedule that created it, if any.
    pub schedule: Option<String>,
    /// The job it waits for, and that job's state.
    pub after: Option<(JobId, JobState)>,
}

/// A callback the delivery loop has claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackDue {
    /// The job it is about.
    pub job_id: JobId,
    /// `accepted` or `finished`.
    pub event: String,
    /// Where to POST it.
    pub url: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// The delivery state of one callback (shown in a job's status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackState {
    /// `accepted` or `finished`.
    pub event: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When delivery was given up.
    pub gave_up_at: Option<DateTime<Utc>>,
    /// The next attempt, while pending.
    pub next_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A 2xx answer.
    Delivered,
    /// Failed; try again at this time.
    Retry {
        /// Why.
        error: String,
        /// Next attempt.
        at: DateTime<Utc>,
    },
    /// Failed for good (permanent answer, or attempts exhausted).
    GiveUp {
        /// Why.
        error: String,
    },
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// The job is not in the state the caller expected (someone else moved it).
    #[error("job {job} is {actual}, expected {expected}")]
    Conflict {
        /// Job id.
        job: String,
        /// State found.
        actual: JobState,
        /// State expected.
        expected: String,
    },
    /// The database failed.
    #[error("state store: {0}")]
    Backend(String),
    /// A persisted value could not be read back.
    #[error("state store holds an unreadable value: {0}")]
    Corrupt(String),
}

/// How a job was dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// It got its target and is running.
    Started,
    /// Another job holds the target; it waits in the FIFO queue.
    Queued,
}

/// The persistent state of every job.
#[async_trait]
pub trait StateStore: Send + Sync {
    // --- jobs, transitions, dispatch ---
    /// Persists a validated request as an `accepted` job.
    async fn create_job(
        &self,
        id: &JobId,
        target: &str,
        spec: &JobSpec,
        requested_by: &str,
    ) -> Result<JobRecord, StoreError>;
    /// Atomically starts the job if its target is free (taking `owner`'s lease), or queues it.
    async fn dispatch(
        &self,
        id: &JobId,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Dispatch, StoreError>;
    /// Pops the oldest queued job of a target if the target is free, starting it for `owner`.
    async fn start_next_queued(
        &self,
        target: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<JobId>, StoreError>;
    /// Persists a transition if the job is still in `from`.
    async fn transition(
        &self,
        id: &JobId,
        from: JobState,
        to: JobState,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Records the first failure of a job (later ones are kept as errors only).
    async fn record_failure(&self, id: &JobId, reason: &str) -> Result<(), StoreError>;
    /// Sets the pipeline stage.
    async fn set_stage(&self, id: &JobId, stage: Stage) -> Result<(), StoreError>;
    /// Sets (or with `None` clears) why the job waits; a terminal transition clears it.
    async fn set_note(&self, id: &JobId, note: Option<&str>) -> Result<(), StoreError>;
    /// Keeps what the target returned when the run started (`JobRecord::target_ref`).
    async fn set_target_ref(&self, id: &JobId, value: &str) -> Result<(), StoreError>;
    /// Writes the run summary.
    async fn set_summary(&self, id: &JobId, summary: &serde_json::Value) -> Result<(), StoreError>;
    /// Reads a job.
    async fn job(&self, id: &JobId) -> Result<JobRecord, StoreError>;
    /// Lists jobs, newest first.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;
    /// A job's transitions, oldest first.
    async fn transitions(&self, id: &JobId) -> Result<Vec<Transition>, StoreError>;

    // --- abort ---
    /// Raises the abort flag.
    async fn request_abort(&self, id: &JobId) -> Result<(), StoreError>;
    /// Reads the abort flag.
    async fn abort_requested(&self, id: &JobId) -> Result<bool, StoreError>;

    // --- leases ---
    /// Takes or renews a named lease; false if another owner holds it unexpired.
    async fn acquire_lease(&self, name: &str, owner: &str, ttl_ms: i64)
        -> Result<bool, StoreError>;
    /// Gives a lease up (only if `owner` holds it).
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;
    /// Active jobs whose lease lapsed: their process died, they must be resumed.
    async fn orphaned_jobs(&self) -> Result<Vec<JobId>, StoreError>;

    // --- page ledger and checkpoints ---
    /// Records a fetched page (with what it says of its scope, if anything) and
    /// moves the checkpoint past it, atomically.
    async fn record_page(
        &self,
        id: &JobId,
        page_no: u64,
        cursor: &Cursor,
        records: u64,
        snapshot: Option<&ScopeSnapshot>,
        next: &Checkpoint,
    ) -> Result<(), StoreError>;
    /// The extraction checkpoint (`None` before the first page).
    async fn checkpoint(&self, id: &JobId) -> Result<Option<Checkpoint>, StoreError>;
    /// Stores the checkpoint (first cursor, or extraction complete).
    async fn set_checkpoint(&self, id: &JobId, cp: &Checkpoint) -> Result<(), StoreError>;
    /// The page ledger, in page order.
    async fn pages(&self, id: &JobId) -> Result<Vec<PageEntry>, StoreError>;
    /// Commits a page's effects and marks it loaded; false (and no effect) if it
    /// already was (a redelivered page changes nothing).
    async fn commit_page(
        &self,
        id: &JobId,
        target: &str,
        page_no: u64,
        commit: &PageCommit,
    ) -> Result<bool, StoreError>;
    /// Counts summed over loaded pages and link chunks, per kind.
    async fn counts(&self, id: &JobId) -> Result<KindCounts, StoreError>;

    // --- content hashes and id map, per target ---
    /// What the target holds of these records.
    async fn known_records(
        &self,
        target: &str,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<HashMap<SourceId, KnownRecord>, StoreError>;
    /// Claims records for page `page_no` of run `id` (with the scope each copy was
    /// listed in) and returns every record's claim: the first page to claim a record
    /// keeps it (a page claiming again, as a replayed page does, keeps its own); a
    /// copy in another scope than the claim's marks the claim conflicted. Claimed
    /// records are the ones the run saw: the sweep spares them. `None` claims
    /// rejected copies: seen, but any page's copy takes such a claim over (page
    /// `u64::MAX` while nobody has), so a rejected copy never beats a good one.
    async fn claim_records(
        &self,
        id: &JobId,
        page_no: Option<u64>,
        kind: EntityKind,
        records: &[(SourceId, Scope)],
    ) -> Result<HashMap<SourceId, Claim>, StoreError>;
    /// Records two scopes listed in run `id` (conflicts), at most `limit`, and how
    /// many there are.
    async fn claim_conflicts(
        &self,
        id: &JobId,
        limit: u32,
    ) -> Result<(u64, Vec<ClaimConflict>), StoreError>;
    /// Target ids of these records (for targets with their own ids).
    async fn target_ids(
        &self,
        target: &str,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<HashMap<SourceId, String>, StoreError>;

    // --- staged links (relations stage) ---
    /// Staged links of a job after `after_seq`, parents grouped together, at most `limit`.
    async fn staged_links(
        &self,
        id: &JobId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StagedLink>, StoreError>;
    /// Commits a chunk of loaded links and removes them from the staging area.
    async fn commit_links(
        &self,
        id: &JobId,
        target: &str,
        commit: &LinkCommit,
    ) -> Result<(), StoreError>;

    // --- errors ---
    /// Appends errors not tied to a page commit (finish stage, source failures).
    async fn add_errors(&self, id: &JobId, errors: &[ErrorEntry]) -> Result<(), StoreError>;
    /// A page of a job's errors, oldest first.
    async fn errors(
        &self,
        id: &JobId,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<ErrorEntry>, StoreError>;
    /// Total errors of a job.
    async fn error_count(&self, id: &JobId) -> Result<u64, StoreError>;

    // --- snapshot sweep ---
    /// Connected records of a target's scope, per kind (the sweep's denominator).
    async fn connected_count(
        &self,
        target: &str,
        kind: EntityKind,
        scopes: &[Scope],
    ) -> Result<u64, StoreError>;
    /// Connected records of the scope that run `id` did not see, at most `limit`.
    async fn unseen_records(
        &self,
        target: &str,
        kind: EntityKind,
        scopes: &[Scope],
        id: &JobId,
        limit: u32,
    ) -> Result<Vec<SourceId>, StoreError>;
    /// How many connected records of the scope run `id` did not see.
    async fn unseen_count(
        &self,
        target: &str,
        kind: EntityKind,
        scopes: &[Scope],
        id: &JobId,
    ) -> Result<u64, StoreError>;
    /// Drops the run's claims once its sweep is done.
    async fn end_run(&self, id: &JobId) -> Result<(), StoreError>;
    /// Marks swept records disconnected by run `id`.
    async fn mark_disconnected(
        &self,
        target: &str,
        kind: EntityKind,
        ids: &[SourceId],
        id: &JobId,
    ) -> Result<(), StoreError>;

    /// Pages recorded in the ledger and how many of them are loaded (the
    /// distributed driver's window and barrier, polled: a count, not the rows).
    async fn page_progress(&self, id: &JobId) -> Result<(u64, u64), StoreError>;

    // --- schedules ---
    /// Atomically claims a cron tick (once across every process) or a manual
    /// trigger, and creates the schedule's job unless its previous one is active.
    async fn fire_schedule(&self, fire: &ScheduleFire<'_>) -> Result<Fired, StoreError>;
    /// A schedule's recorded runs, newest first.
    async fn schedule_runs(
        &self,
        schedule: &str,
        limit: u32,
    ) -> Result<Vec<ScheduleRun>, StoreError>;
    /// `accepted` jobs not yet dispatched: those of schedule runs, and any other
    /// accepted longer than `older_than_ms` ago (their submitter died).
    async fn held_jobs(&self, older_than_ms: i64) -> Result<Vec<HeldJob>, StoreError>;

    // --- callbacks (outbox) ---
    /// Claims up to `limit` due callbacks for `lease_ms` (another process takes
    /// them over if this one dies before reporting).
    async fn claim_callbacks(
        &self,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<CallbackDue>, StoreError>;
    /// Records the outcome of a delivery attempt.
    async fn callback_attempted(
        &self,
        job: &JobId,
        event: &str,
        outcome: &Delivery,
    ) -> Result<(), StoreError>;
    /// A job's callbacks and their delivery state.
    async fn callbacks(&self, job: &JobId) -> Result<Vec<CallbackState>, StoreError>;
}
