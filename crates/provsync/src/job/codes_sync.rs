//! Codes sync (seed "Initiate Codes Sync"): source code lists become target code
//! tables or picklists. A codes-sync job runs the same stages as a provider sync,
//! over only the code-list entries of its source; targets with picklists (the
//! Salesforce target) merge them with the values they hold, within their limits.

use std::sync::Arc;

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Record};
use provsync_core::source::{Cursor, OpenRequest, Page, Source, SourceError};

/// Wraps a source for a codes sync: only code-list entries go through.
pub struct CodesOnly {
    inner: Arc<dyn Source>,
}

impl CodesOnly {
    /// Keeps the `Code` records of `inner`.
    pub fn new(inner: Arc<dyn Source>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Source for CodesOnly {
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        self.inner.open_codes(req).await
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let mut page = self.inner.fetch(cursor).await?;
        page.records.retain(|r| matches!(r, Record::Code(_)));
        page.bad
            .retain(|b| b.kind.is_none_or(|k| k == EntityKind::Code));
        Ok(page)
    }

    async fn close(&self) -> Result<(), SourceError> {
        self.inner.close().await
    }
}
