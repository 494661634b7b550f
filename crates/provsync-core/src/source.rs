//! The `Source` trait: open a scope, fetch pages by cursor, close the session.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::job::Mode;
use crate::model::{EntityKind, Record, Scope};

/// An opaque position in the source (a OneKey packet cursor, a body index, a file offset).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

/// What the job asks the source for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// Partitions; empty means all.
    pub scope: Vec<Scope>,
    /// Full snapshot or delta.
    pub mode: Mode,
    /// Records per page, when the source lets us choose.
    pub page_size: usize,
}

/// A record the source sent that could not be read; becomes a rejected entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The record's kind, when it could be read.
    pub kind: Option<EntityKind>,
    /// The record's id, when it could be read.
    pub source_id: Option<String>,
    /// Where in the page (line, index...).
    pub position: String,
    /// Why it was refused.
    pub reason: String,
}

/// One page of source data (also the body of a distributed transform message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Records read, in source order.
    pub records: Vec<Record>,
    /// Records that could not be read.
    pub bad: Vec<BadRecord>,
    /// Cursor of the next page; `None` on the last page.
    pub next: Option<Cursor>,
    /// Set by sources that deliver each scope whole (a GMC designated body): what
    /// this page says of its scope, so the sweep runs scope by scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<ScopeSnapshot>,
}

/// What a page says of the one scope it holds. A scope comes in one page or several
/// (`Part` pages, then the one that says how it ended); the sweep of a scope runs
/// only after its complete last page and every other page of it are loaded; a
/// failed or refused scope disconnects nothing, and the other scopes' complete
/// pages are loaded and swept all the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ScopeSnapshot {
    /// Some of the scope's records; more pages of it follow, the last one says how
    /// the scope ended. The source had the scope's whole answer before sending it.
    Part {
        /// The scope.
        scope: Scope,
    },
    /// The source answered with success: with the scope's `Part` pages before it,
    /// the page holds every record of the scope.
    Complete {
        /// The scope.
        scope: Scope,
    },
    /// The source could not deliver the scope (access denied, malformed answer,
    /// retries exhausted): the page holds no record of it. (Only a run resumed in
    /// the middle of a scope can have loaded `Part` pages of it before; the scope
    /// is not swept all the same.)
    Failed {
        /// The scope.
        scope: Scope,
        /// Why, naming the scope and the source's answer.
        reason: String,
    },
    /// The source refused the run's credentials on this scope (GMC ReturnCode 99):
    /// the source asks no new scope, delivers those already asked, and the run
    /// ends `failed` with this reason once they are loaded and swept.
    Refused {
        /// The scope.
        scope: Scope,
        /// Why, naming the scope and the source's answer.
        reason: String,
    },
}

impl ScopeSnapshot {
    /// The scope the page is about.
    pub fn scope(&self) -> &Scope {
        match self {
            ScopeSnapshot::Part { scope }
            | ScopeSnapshot::Complete { scope }
            | ScopeSnapshot::Failed { scope, .. }
            | ScopeSnapshot::Refused { scope, .. } => scope,
        }
    }

    /// Whether the page says the scope arrived whole (its last page).
    pub fn complete(&self) -> bool {
        matches!(self, ScopeSnapshot::Complete { .. })
    }

    /// Why the scope failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match self {
            ScopeSnapshot::Part { .. } | ScopeSnapshot::Complete { .. } => None,
            ScopeSnapshot::Failed { reason, .. } | ScopeSnapshot::Refused { reason, .. } => {
                Some(reason)
            }
        }
    }

    /// Why the source refused the run itself, if it did (the run then fails).
    pub fn refusal(&self) -> Option<&str> {
        match self {
            ScopeSnapshot::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// A source failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source's configuration is wrong (never retried).
    #[error("source configuration: {0}")]
    Config(String),
    /// The source refused us (credentials, access): fails the job.
    #[error("source refused access: {0}")]
    Refused(String),
    /// A transient failure that outlived the connector's retries.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The cursor does not point into this source.
    #[error("bad cursor {0:?}")]
    BadCursor(String),
}

/// A provider master data source.
#[async_trait]
pub trait Source: Send + Sync {
    /// Starts a session for a scope; returns the cursor of the first page.
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError>;
    /// Starts a session over the scope's code lists only (a codes-sync job). By default
    /// the whole source is opened and the caller keeps its code records.
    async fn open_codes(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        self.open(req).await
    }
    /// Fetches the page at `cursor`. Fetching the same cursor again returns the same page.
    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError>;
    /// Ends the session (on completion, abort or failure).
    async fn close(&self) -> Result<(), SourceError> {
        Ok(())
    }
    /// How far the page at `next` is through the source, as (done, total) in the
    /// source's own unit (bytes of a file, designated bodies of a GMC night), for a
    /// progress display's share and ETA; `None` when the source cannot tell.
    fn position(&self, next: &Cursor) -> Option<(u64, u64)> {
        let _ = next;
        None
    }
}
