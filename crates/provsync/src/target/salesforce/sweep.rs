//! The sweep: records the source no longer has get the mapping's disconnect fields.

use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::target::{Outcome, TablePlan, TargetError};

use super::SalesforceTarget;

impl SalesforceTarget {
    /// Sets the disconnect fields of swept records (and of their one-per-parent
    /// children) by upsert on the external id; counts the records changed.
    pub(super) async fn sweep(
        &self,
        run: &str,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError> {
        let Some(p) = self.plan_of(kind) else {
            return Err(TargetError::Config(format!(
                "no mapping prepared for {kind} records: nothing to disconnect with"
            )));
        };
        if p.disconnect.is_empty() || p.key.is_some() {
            // Nothing to mark, or no way to find the rows from source ids: said in
            // the log; the sweep reports zero disconnected for the kind.
            tracing::warn!(%kind, table = %p.table, swept = ids.len(),
                "Salesforce: the mapping gives no disconnect fields (or keys records by a template): swept records left as they are");
            return Ok(0);
        }
        let mut changed = 0;
        // Stand-in records carry the disconnect fields to the collection writer;
        // `roots[i]` says whether record i is a swept record (not a child).
        let mut mapped = Vec::new();
        let mut roots = Vec::new();
        let stand_in = |table: &str, fields: &[(String, serde_json::Value)], key: &str| {
            MappedRecord::new(
                kind,
                SourceId::from(key),
                Scope::from(""),
                table.to_string(),
                fields.to_vec(),
                Vec::new(),
            )
        };
        for id in ids {
            mapped.push(stand_in(&p.table, &p.disconnect, id.as_str()));
            roots.push(true);
            for c in p.children.iter().filter(|c| !c.disconnect.is_empty()) {
                if let Some(key) = c.key_for(id.as_str()) {
                    mapped.push(stand_in(&c.table, &c.disconnect, &key));
                    roots.push(false);
                }
            }
        }
        let refs: Vec<&MappedRecord> = mapped.iter().collect();
        let outcomes = self.write(run, &refs).await?;
        for ((r, root), o) in mapped.iter().zip(&roots).zip(outcomes) {
            let key = r.source_id.as_str();
            match o {
                Outcome::Written { .. } | Outcome::Unchanged if *root => changed += 1,
                Outcome::Written { .. } | Outcome::Unchanged => {}
                Outcome::Failed { reason } | Outcome::Unresolved { reason } => {
                    tracing::warn!(%key, %reason, "Salesforce: disconnect not written");
                }
            }
        }
        Ok(changed)
    }

    /// The prepared mapping's plan for one kind of record.
    fn plan_of(&self, kind: EntityKind) -> Option<TablePlan> {
        self.plan
            .lock()
            .expect("plan lock")
            .iter()
            .find(|p| p.kind == kind)
            .cloned()
    }
}
