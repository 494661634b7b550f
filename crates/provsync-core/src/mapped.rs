//! A canonical record after mapping: the target table/object and its field values.

use serde::{Deserialize, Serialize};

use crate::model::{ContentHash, EntityKind, EntityRef, Scope, SourceId};

/// One record ready for a target: where it goes, what it holds, what it links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedRecord {
    /// Canonical kind of the record.
    pub kind: EntityKind,
    /// Stable source id (the target's external id).
    pub source_id: SourceId,
    /// Partition the record belongs to (used by the snapshot sweep).
    pub scope: Scope,
    /// Target table or object.
    pub table: String,
    /// Field values in mapping order.
    pub fields: Vec<(String, serde_json::Value)>,
    /// Entities this record links, as (role, reference); loaded after both ends exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(String, EntityRef)>,
    /// Hash of table, fields and links: equal hashes mean nothing to write.
    pub hash: ContentHash,
}

impl MappedRecord {
    /// Builds a record and computes its content hash from what the target will see.
    pub fn new(
        kind: EntityKind,
        source_id: SourceId,
        scope: Scope,
        table: String,
        fields: Vec<(String, serde_json::Value)>,
        links: Vec<(String, EntityRef)>,
    ) -> Self {
        let hash = Self::hash_of(&table, &scope, &fields, &links);
        Self {
            kind,
            source_id,
            scope,
            table,
            fields,
            links,
            hash,
        }
    }

    /// The content hash of what a target would store.
    pub fn hash_of(
        table: &str,
        scope: &Scope,
        fields: &[(String, serde_json::Value)],
        links: &[(String, EntityRef)],
    ) -> ContentHash {
        // serde_json writes these deterministically (Vec order, no maps with random order).
        let bytes = serde_json::to_vec(&(table, scope, fields, links))
            .expect("mapped values always serialize");
        ContentHash::of_bytes(&bytes)
    }

    /// The value of a field, if mapped.
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The source id of the linked entity in `role`, if any.
    pub fn link(&self, role: &str) -> Option<&EntityRef> {
        self.links.iter().find(|(r, _)| r == role).map(|(_, e)| e)
    }
}
