//! Jobs: what a run is asked to do (spec), where it is (state machine), what it did (counts).

pub mod counts;
pub mod spec;
pub mod state;

pub use counts::{Counts, KindCounts};
pub use spec::{ConnectorSpec, JobKind, JobOptions, JobSpec, Mode, SpecError, Threshold};
pub use state::{IllegalTransition, JobEvent, JobMachine, JobState};

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's identifier (a UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The pipeline stage a job is in (for status and audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not started.
    Pending,
    /// Fetching, transforming and loading pages.
    Extract,
    /// Loading staged relations after every entity page is loaded.
    Relations,
    /// Waiting for the target to take writes again (a spent daily API budget); the
    /// job resumes its stage by itself.
    Parked,
    /// Reconciling, sweeping, summarising.
    Finish,
    /// Nothing left to do.
    Done,
}

impl Stage {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Extract => "extract",
            Stage::Relations => "relations",
            Stage::Parked => "parked",
            Stage::Finish => "finish",
            Stage::Done => "done",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Stage::Pending,
            Stage::Extract,
            Stage::Relations,
            Stage::Parked,
            Stage::Finish,
            Stage::Done,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}
