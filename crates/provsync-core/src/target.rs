//! The `Target` trait: upsert mapped records, load links, disconnect swept records.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::mapped::MappedRecord;
use crate::model::{EntityKind, Scope, SourceId};

/// How a target wants to be fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    /// Most records in one write.
    pub max_batch: usize,
    /// Most writes in flight at once.
    pub max_concurrency: usize,
}

/// Where the mapping sends one entity kind: table or object, and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    /// Entity kind.
    pub kind: EntityKind,
    /// Target table or object.
    pub table: String,
    /// Mapped fields.
    pub fields: Vec<String>,
    /// Child objects written with each record (empty for one-table mappings).
    pub children: Vec<ChildPlan>,
    /// Field values that mark a swept record disconnected (empty: the target's own way).
    pub disconnect: Vec<(String, serde_json::Value)>,
    /// The key template when records are not keyed by their source id.
    pub key: Option<String>,
    /// Values the mapping itself writes to fields (not read from records).
    pub known_values: Vec<KnownValue>,
}

/// A child object of a mapped kind: written with its parent, keyed by a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlan {
    /// Target table or object.
    pub table: String,
    /// The key template as written (`"{source_id}"`, `"{source_id}-SP-{item}"`).
    pub key: String,
    /// The child's field referring to the parent record.
    pub parent_field: String,
    /// Mapped fields.
    pub fields: Vec<String>,
    /// Field values that mark the child disconnected when its parent is swept.
    pub disconnect: Vec<(String, serde_json::Value)>,
    /// Values the mapping itself writes to the child's fields.
    pub known_values: Vec<KnownValue>,
}

/// A value a mapped field can take that is known before any record is read: a
/// constant, a default, or a translation table's value (a target checks them, e.g.
/// against restricted picklists, before loading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownValue {
    /// Target field.
    pub field: String,
    /// The value as text, as the target compares it.
    pub value: String,
    /// Where the mapping says it: `constant`, `default` or `translations.<table>`.
    pub origin: String,
}

impl ChildPlan {
    /// The child's key for a parent's source id, when the template depends on nothing
    /// else (a one-per-parent child such as a practitioner's HealthcareProvider).
    pub fn key_for(&self, source_id: &str) -> Option<String> {
        let rest = self.key.replace("{source_id}", "");
        (!rest.contains('{')).then(|| self.key.replace("{source_id}", source_id))
    }
}

/// Whether a record is new to the target or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The target has never had it.
    Created,
    /// The target has it with other content.
    Updated,
}

/// One record to write and what kind of change it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// The record.
    pub record: MappedRecord,
    /// Created or updated.
    pub change: Change,
}

/// How a written record joins its scope, for the `connected` and `moved` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Joined {
    /// It was connected in this scope already.
    Stayed,
    /// New to the target, or back after a sweep disconnected it.
    Connected,
    /// Connected in another scope before (a doctor changing designated body).
    Moved,
}

/// What a target did with a written record, in the words of its own change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Created (the target had no such record) or updated.
    pub change: Change,
    /// How the record joined its scope.
    pub joined: Joined,
}

/// The target's answer for one record, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Written; the target's id when it has its own.
    Written {
        /// Target-side id (Salesforce record id...); `None` when the source id is the key.
        target_id: Option<String>,
        /// What the target did, when it can tell (SQL targets read the row first);
        /// `None`: the change the write asked for, judged from the state store.
        #[serde(default)]
        applied: Option<Applied>,
    },
    /// The target already held this very content, connected: nothing was written
    /// (a new state store meeting a synced target rewrites nothing).
    Unchanged,
    /// Refused; the reason names the field or reference at fault.
    Failed {
        /// Why.
        reason: String,
    },
    /// A link whose end the target does not have (yet): retried after the
    /// relations barrier, an error only then.
    Unresolved {
        /// Which end is missing.
        reason: String,
    },
}

/// The run a write belongs to, for the target's change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    /// Job id.
    pub job_id: String,
    /// When the run started (epoch ms): a sweep leaves rows changed since alone.
    pub started_at_ms: Option<i64>,
}

/// A target failure that concerns the whole batch (not one record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target's own record of the run (Salesforce: its IntegrationJobRun) could
    /// not be written; the data loaded stays.
    #[error("{0}")]
    Audit(String),
    /// Configuration or schema mismatch (never retried).
    #[error("target configuration: {0}")]
    Config(String),
    /// The target refused us (auth): fails the job.
    #[error("target refused access: {0}")]
    Refused(String),
    /// A transient failure that outlived the connector's retries.
    #[error("target unavailable: {0}")]
    Unavailable(String),
}

/// A system provider data is loaded into.
#[async_trait]
pub trait Target: Send + Sync {
    /// Batch size and concurrency the loader plans to.
    fn limits(&self) -> TargetLimits;
    /// Checks the target can take these tables and fields (before any page is fetched).
    async fn prepare(&self, plan: &[TablePlan]) -> Result<(), TargetError>;
    /// Upserts entities (no links); one outcome per write, in order.
    async fn upsert(&self, run: &RunRef, writes: &[Write]) -> Result<Vec<Outcome>, TargetError>;
    /// Upserts links (activities, relations) whose ends were loaded; an unresolved end
    /// is a per-record failure naming it.
    async fn upsert_links(
        &self,
        run: &RunRef,
        writes: &[Write],
    ) -> Result<Vec<Outcome>, TargetError>;
    /// Soft-disconnects records swept from a complete snapshot; returns how many changed.
    async fn disconnect(
        &self,
        run: &RunRef,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError>;
    /// Called by the process driving the run each time it starts or resumes it,
    /// before any page: the Salesforce target creates the run's IntegrationJobRun
    /// (seed step 1.10). `info` names the run as its summary will (`job_id`, `kind`,
    /// `mode`, `target`, `requested_by`, `scope`, `started_at`); `kept` is what an
    /// earlier call returned for this job (`None` the first time, or if it was
    /// lost). Returns a value for the state store to keep for the job. A failure is
    /// logged and the run goes on: `write_audit` tries again.
    async fn start_run(
        &self,
        run: &RunRef,
        info: &serde_json::Value,
        kept: Option<&str>,
    ) -> Result<Option<String>, TargetError> {
        let _ = (run, info, kept);
        Ok(None)
    }

    /// Called once with the final summary, before `end_run`: completes the target's
    /// own record of the run (Salesforce: updates the IntegrationJobRun by its Id).
    /// `Ok(None)`: the target keeps no such record. An error means the record is
    /// missing or stale: the run then ends no better than `completed_with_errors`.
    async fn write_audit(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        let _ = (run, summary);
        Ok(None)
    }

    /// Called once when the run has its final summary (the Salesforce target runs
    /// post-job actions); returns what it did, for the summary (with what
    /// `write_audit` wrote). Failures here are reported, never change the run's outcome.
    async fn end_run(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        let _ = (run, summary);
        Ok(None)
    }

    /// Called once when the run's abort is requested: stops the target-side work the
    /// run has in flight (Salesforce: its Bulk API jobs, seed step 5) and starts no
    /// more of it. Returns what it stopped, for the log. Writes already answered stay.
    async fn abort(&self, _run: &RunRef) -> Result<Vec<String>, TargetError> {
        Ok(Vec::new())
    }
    /// Why the target is waiting instead of writing (a spent API budget), if it is.
    fn parked(&self) -> Option<String> {
        None
    }

    /// Disconnects swept records of one scope with one conditional, atomic update:
    /// only rows still connected in that scope and not changed since the run started
    /// (a manual change made meanwhile wins). Returns the ids it did disconnect, so
    /// the state store records exactly those. Targets that cannot check this fall
    /// back to `disconnect` and report every id.
    async fn disconnect_in_scope(
        &self,
        run: &RunRef,
        kind: EntityKind,
        scope: &[Scope],
        ids: &[SourceId],
    ) -> Result<Vec<SourceId>, TargetError> {
        let _ = scope;
        self.disconnect(run, kind, ids).await?;
        Ok(ids.to_vec())
    }
}
