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
    /// Records written with this one in other tables or objects (a Salesforce
    /// practitioner's HealthcareProvider, specialties, addresses...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<MappedChild>,
    /// The target's external id when the mapping gives a `key` template (a relation
    /// written onto the child workplace's row); the source id otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Hash of table, fields, links and children: equal hashes mean nothing to write.
    pub hash: ContentHash,
}

/// A record that belongs to its parent record: written with it, keyed by its own
/// external id, pointing back at the parent through `parent_field`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappedChild {
    /// Target table or object.
    pub table: String,
    /// The child's own external id (unique within its table).
    pub key: String,
    /// The child's field that refers to the parent record.
    pub parent_field: String,
    /// Field values in mapping order.
    pub fields: Vec<(String, serde_json::Value)>,
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
            children: Vec::new(),
            key: None,
            hash,
        }
    }

    /// The external id the target upserts by.
    pub fn target_key(&self) -> &str {
        self.key.as_deref().unwrap_or(self.source_id.as_str())
    }

    /// Sets the target key and folds it into the content hash.
    pub fn with_key(mut self, key: Option<String>) -> Self {
        if let Some(k) = key {
            let bytes = serde_json::to_vec(&(self.hash.to_string(), "key", &k))
                .expect("mapped values always serialize");
            self.hash = ContentHash::of_bytes(&bytes);
            self.key = Some(k);
        }
        self
    }

    /// Adds child records and folds them into the content hash. Without children the
    /// hash is the one `new` computes, so mappings without children (the SQL
    /// targets') keep the hashes stored by earlier runs.
    pub fn with_children(mut self, children: Vec<MappedChild>) -> Self {
        if !children.is_empty() {
            let bytes = serde_json::to_vec(&(self.hash.to_string(), &children))
                .expect("mapped values always serialize");
            self.hash = ContentHash::of_bytes(&bytes);
            self.children = children;
        }
        self
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

    /// The first field (`table.field`) holding a NUL character, which no target
    /// stores (PostgreSQL text refuses it; Salesforce strips it): such a record is
    /// rejected before the write, naming the field, so its neighbours load.
    pub fn field_with_nul(&self) -> Option<String> {
        fn has_nul(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::String(s) => s.contains('\0'),
                serde_json::Value::Array(a) => a.iter().any(has_nul),
                serde_json::Value::Object(o) => {
                    o.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
                }
                _ => false,
            }
        }
        let own = self.fields.iter().map(|f| (&self.table, f));
        let children = self
            .children
            .iter()
            .flat_map(|c| c.fields.iter().map(move |f| (&c.table, f)));
        own.chain(children)
            .find(|(_, (_, v))| has_nul(v))
            .map(|(table, (name, _))| format!("{table}.{name}"))
    }

    /// The value of a field, if mapped.
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The source id of the linked entity in `role`, if any.
    pub fn link(&self, role: &str) -> Option<&EntityRef> {
        self.links.iter().find(|(r, _)| r == role).map(|(_, e)| e)
    }

    /// What the record is placed by, if a change of it is a move: an activity's
    /// workplace (the SQL targets' `moved_column`).
    pub fn anchor(&self) -> Option<&str> {
        match self.kind {
            EntityKind::Activity => self.link("workplace").map(|e| e.id.as_str()),
            _ => None,
        }
    }
}
