//! Declarative mappings (TOML) from canonical records to target tables and fields.
//!
//! A mapping file says, per entity kind, which table or object records go to and how
//! each target field is computed:
//!
//! ```toml
//! name = "sql-provider"            # optional
//! version = 1                      # optional; only 1 exists
//!
//! [translations.specialty]         # code translation tables (values: string/number/bool)
//! "207R00000X" = "Internal Medicine"
//!
//! [entities.individual]            # individual | workplace | activity | relation | code
//! table = "individuals"
//! [entities.individual.fields]     # target fields, in output order
//! first_name = "first_name"        # shorthand for { from = "first_name" }
//! full_name = { concat = ["title", "first_name", "last_name"], separator = " " }
//! primary_specialty = { from = "specialties[0]", translate = "specialty", default = "UNKNOWN" }
//! specialties = { from = "specialties", join = ";" }
//! npi = { from = "identifiers[system=NPI].value" }
//! birth_date = { from = "birth_date", date_format = "%d/%m/%Y" }
//! source_system = { constant = "ONEKEY" }
//! status = { from = "status", required = true }
//! ```
//!
//! A record can also become several target records (a Salesforce practitioner is an
//! Account plus a HealthcareProvider, specialties, identifiers): child objects, each
//! keyed by a template and pointing back at its parent, written with the record:
//!
//! ```toml
//! [entities.individual]
//! table = "Account"
//! disconnect = { Active__c = false }   # what a swept record is set to (optional)
//! # key = "{from.id}"                  # the target key when not the source id
//! [[entities.individual.children]]
//! object = "HealthcareProviderSpecialty"
//! parent_field = "AccountId"           # the child's reference to the parent record
//! for_each = "specialties"             # optional: one child per element, read as `item`
//! key = "{source_id}-SP-{item}"        # the child's external id (default "{source_id}")
//! when = "item"                        # optional: no child when this is null/empty/false
//! disconnect = { IsActive = false }    # optional
//! [entities.individual.children.fields]
//! Name = "item"
//! ```
//!
//! Paths address the `serde_json` form of the record: dotted keys (`address.city`),
//! indexes (`address.lines[0]`), selectors (`identifiers[system=NPI].value`), map keys
//! (`labels.en`). Per field, exactly one source (`from`, `concat`, `constant`), then:
//! - `translate = "table"` maps codes (each element of a list); a code the table lacks
//!   follows `on_missing`: `keep` (default: the source code goes through, visible and
//!   fixable), `default` (treated as null, so `default` applies) or `reject`;
//! - `date_format` (chrono strftime) formats dates and datetimes;
//! - `join = "sep"` joins a list into one string (null and empty elements skipped; an
//!   empty list is null); a list without `join` stays a JSON array;
//! - `concat` joins the text of its parts with `separator` (default none), skipping
//!   null and empty parts; all parts empty is null;
//! - `default` replaces a null result; `required = true` then rejects the record if
//!   the result is still null.
//!
//! Every check that can run at load time does: unknown keys and kinds, paths that do
//! not exist on the kind, missing translation tables, invalid date formats, fields with
//! no or two sources, modifiers that do not apply, empty or duplicate names.

#[cfg(test)]
mod children_tests;
mod expr;
mod file;
mod schema;
#[cfg(test)]
mod tests;

use crate::mapped::{MappedChild, MappedRecord};
use crate::model::{EntityKind, Record};
use crate::target::{ChildPlan, KnownValue, TablePlan};

use expr::Input;
pub use file::MappingError;
use file::{ChildMapping, EntityMapping};
use schema::Node;

/// The mapping for the SQL target's schema, shipped as `mappings/sql-provider.toml`.
pub const SQL_PROVIDER: &str = include_str!("../../../../mappings/sql-provider.toml");

/// The mapping for a Life Sciences Cloud org, shipped as `mappings/salesforce-lsc.toml`:
/// the Salesforce target's default.
pub const SALESFORCE_LSC: &str = include_str!("../../../../mappings/salesforce-lsc.toml");

/// A record the mapping cannot map; the record is rejected, the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {reason}")]
pub struct MapError {
    /// Target field at fault (`kind` when the mapping has no entry for the kind).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// A loaded, validated mapping: per entity kind, a table and compiled field expressions.
#[derive(Debug)]
pub struct Mapping {
    name: Option<String>,
    /// Indexed by `slot(kind)`, so `apply` finds its entity without a search.
    entities: [Option<EntityMapping>; 5],
}

fn slot(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Individual => 0,
        EntityKind::Workplace => 1,
        EntityKind::Activity => 2,
        EntityKind::Relation => 3,
        EntityKind::Code => 4,
    }
}

impl Mapping {
    /// Parses and validates a mapping; `origin` is the file name used in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Mapping, MappingError> {
        let loaded = file::load(text, origin)?;
        let mut entities: [Option<EntityMapping>; 5] = Default::default();
        for e in loaded.entities {
            let i = slot(e.kind);
            entities[i] = Some(e);
        }
        Ok(Mapping {
            name: loaded.name,
            entities,
        })
    }

    /// The mapping's `name`, if the file gives one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Maps one record; Err names the field at fault (per-record error -> rejected record).
    pub fn apply(&self, record: &Record) -> Result<MappedRecord, MapError> {
        let kind = record.kind();
        let entity = self.entities[slot(kind)].as_ref().ok_or_else(|| MapError {
            field: "kind".into(),
            reason: format!("the mapping has no entry for {kind} records"),
        })?;
        let mut fields = Vec::with_capacity(entity.fields.len());
        for f in &entity.fields {
            let value = f.eval(record).map_err(|reason| MapError {
                field: f.name.clone(),
                reason,
            })?;
            fields.push((f.name.clone(), value));
        }
        let links = record
            .links()
            .into_iter()
            .map(|(role, r)| (role.to_string(), r))
            .collect();
        let meta = record.meta();
        let key = match &entity.key {
            Some(t) => Some(t.render(record).map_err(|reason| MapError {
                field: "key".into(),
                reason,
            })?),
            None => None,
        };
        let mut children = Vec::new();
        for (i, c) in entity.children.iter().enumerate() {
            map_child(c, i, record, &mut children)?;
        }
        Ok(MappedRecord::new(
            kind,
            meta.source_id.clone(),
            meta.scope.clone(),
            entity.table.clone(),
            fields,
            links,
        )
        .with_key(key)
        .with_children(children))
    }

    /// Whether the mapping handles this kind.
    pub fn handles(&self, kind: EntityKind) -> bool {
        self.entities[slot(kind)].is_some()
    }

    /// Tables and fields per kind, for Target::prepare (in load order, `EntityKind::ALL`).
    pub fn plan(&self) -> Vec<TablePlan> {
        EntityKind::ALL
            .into_iter()
            .filter_map(|k| self.entities[slot(k)].as_ref())
            .map(|e| TablePlan {
                kind: e.kind,
                table: e.table.clone(),
                fields: e.fields.iter().map(|f| f.name.clone()).collect(),
                children: e
                    .children
                    .iter()
                    .map(|c| ChildPlan {
                        table: c.table.clone(),
                        key: c.key.text.clone(),
                        parent_field: c.parent_field.clone(),
                        fields: c.fields.iter().map(|f| f.name.clone()).collect(),
                        disconnect: c.disconnect.clone(),
                        known_values: known_values(&c.fields),
                    })
                    .collect(),
                disconnect: e.disconnect.clone(),
                key: e.key.as_ref().map(|k| k.text.clone()),
                known_values: known_values(&e.fields),
            })
            .collect()
    }
}

/// Every value the fields can take that the mapping itself lists, field by field.
fn known_values(fields: &[expr::FieldExpr]) -> Vec<KnownValue> {
    fields
        .iter()
        .flat_map(|f| {
            f.known_values()
                .into_iter()
                .map(|(value, origin)| KnownValue {
                    field: f.name.clone(),
                    value,
                    origin,
                })
        })
        .collect()
}

/// Whether a `when` value says the child exists.
fn present(node: Node<'_>) -> bool {
    match node {
        Node::Null | Node::Bool(false) => false,
        Node::Str(s) => !s.is_empty(),
        _ => true,
    }
}

/// Maps the children one child mapping makes of `record` (none, one, or one per
/// `for_each` element), appending them to `out`.
fn map_child(
    c: &ChildMapping,
    index: usize,
    record: &Record,
    out: &mut Vec<MappedChild>,
) -> Result<(), MapError> {
    let items: Vec<Node<'_>> = match &c.for_each {
        // Empty elements make no child, as `join` skips them.
        Some(p) => p.eval(record).elements().filter(|n| present(*n)).collect(),
        None => vec![Node::Null],
    };
    let err = |field: String, reason: String| MapError {
        field: format!("children[{index}] ({}) {field}", c.table),
        reason,
    };
    for item in items {
        let input = Input { record, item };
        if let Some(w) = &c.when {
            if !present(w.eval(input)) {
                continue;
            }
        }
        let key = c.key.render(input).map_err(|r| err("key".into(), r))?;
        let mut fields = Vec::with_capacity(c.fields.len());
        for f in &c.fields {
            let value = f.eval(input).map_err(|r| err(f.name.clone(), r))?;
            fields.push((f.name.clone(), value));
        }
        out.push(MappedChild {
            table: c.table.clone(),
            key,
            parent_field: c.parent_field.clone(),
            fields,
        });
    }
    Ok(())
}
