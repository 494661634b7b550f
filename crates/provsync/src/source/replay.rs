//! Replay: a source that passes on only the records an earlier run rejected or
//! failed (by source id), so a fixed feed can be re-run for just those.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use provsync_core::model::Record;
use provsync_core::source::{Cursor, OpenRequest, Page, Source, SourceError};

/// Wraps a source, keeping only the given source ids.
pub struct ReplaySource {
    inner: Arc<dyn Source>,
    ids: HashSet<String>,
}

impl ReplaySource {
    /// Keeps the records whose source id is in `ids` (a run's error ledger: small).
    pub fn new(inner: Arc<dyn Source>, ids: HashSet<String>) -> Self {
        Self { inner, ids }
    }

    /// Whether a record is to be replayed; a workplace also comes back when only its
    /// derived parent relation (`<id>>parent`) failed.
    fn wanted(&self, r: &Record) -> bool {
        let id = r.source_id().as_str();
        self.ids.contains(id)
            || (matches!(r, Record::Workplace(_)) && self.ids.contains(&format!("{id}>parent")))
    }
}

#[async_trait]
impl Source for ReplaySource {
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        self.inner.open(req).await
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let mut page = self.inner.fetch(cursor).await?;
        page.records.retain(|r| self.wanted(r));
        page.bad
            .retain(|b| b.source_id.as_ref().is_some_and(|id| self.ids.contains(id)));
        Ok(page)
    }

    async fn close(&self) -> Result<(), SourceError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provsync_core::source::BadRecord;

    struct OnePage(Page);

    #[async_trait]
    impl Source for OnePage {
        async fn open(&self, _: &OpenRequest) -> Result<Cursor, SourceError> {
            Ok(Cursor("0".into()))
        }
        async fn fetch(&self, _: &Cursor) -> Result<Page, SourceError> {
            Ok(self.0.clone())
        }
    }

    fn rec(line: &str) -> Record {
        serde_json::from_str(line).unwrap()
    }

    #[tokio::test]
    async fn keeps_only_replayed_ids_and_workplaces_of_failed_parent_links() {
        let page = Page {
            records: vec![
                rec(
                    r#"{"kind":"individual","source_id":"I1","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
                rec(
                    r#"{"kind":"individual","source_id":"I2","scope":"US","first_name":"A","last_name":"B"}"#,
                ),
                rec(
                    r#"{"kind":"workplace","source_id":"W2","scope":"US","name":"C","parent_id":"W1"}"#,
                ),
            ],
            bad: vec![
                BadRecord {
                    kind: None,
                    source_id: Some("I9".into()),
                    position: "f:3".into(),
                    reason: "bad".into(),
                },
                BadRecord {
                    kind: None,
                    source_id: None,
                    position: "f:4".into(),
                    reason: "bad".into(),
                },
            ],
            next: None,
            snapshot: None,
        };
        let ids = ["I2", "W2>parent", "I9"].map(String::from).into();
        let src = ReplaySource::new(Arc::new(OnePage(page)), ids);
        let p = src.fetch(&Cursor("0".into())).await.unwrap();
        let kept: Vec<_> = p.records.iter().map(|r| r.source_id().0.clone()).collect();
        assert_eq!(kept, ["I2", "W2"]);
        assert_eq!(p.bad.len(), 1);
        assert_eq!(p.bad[0].source_id.as_deref(), Some("I9"));
    }
}
