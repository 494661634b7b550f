//! What the SQLite and PostgreSQL targets share: the provider schema's layout, the
//! columns a mapped record fills, and how its values are written as text.

pub mod postgres;
pub mod sqlite;

use std::collections::{HashMap, HashSet};

use provsync_core::mapped::MappedRecord;
use provsync_core::model::EntityKind;
use provsync_core::target::{Applied, Change, Joined, Outcome, TablePlan, TargetError, Write};

/// Columns the target fills itself (never from a mapping).
pub const BOOKKEEPING: [&str; 6] = [
    "content_hash",
    "connected",
    "connection_run",
    "created_run",
    "updated_run",
    "updated_at",
];

/// Columns taken from a record's structure rather than its mapping.
pub fn structural_columns(kind: EntityKind) -> &'static [&'static str] {
    match kind {
        EntityKind::Activity => &["individual_source_id", "workplace_source_id"],
        _ => &[],
    }
}

/// The structural column values of a record, in `structural_columns` order.
pub fn structural_values(record: &MappedRecord) -> Vec<Option<String>> {
    match record.kind {
        EntityKind::Activity => vec![
            record.link("individual").map(|e| e.id.0.clone()),
            record.link("workplace").map(|e| e.id.0.clone()),
        ],
        _ => Vec::new(),
    }
}

/// The column whose change is logged as a `moved` (an activity changing workplace).
pub fn moved_column(kind: EntityKind) -> Option<&'static str> {
    match kind {
        EntityKind::Activity => Some("workplace_source_id"),
        _ => None,
    }
}

/// The SQL layout of one table: the columns an upsert writes, in order.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// Entity kind stored here.
    pub kind: EntityKind,
    /// Table name (validated against the database).
    pub table: String,
    /// Structural columns (link ends).
    pub structural: Vec<&'static str>,
    /// Mapped columns, in mapping order.
    pub mapped: Vec<String>,
}

impl TableLayout {
    /// All data columns after `source_id, scope`.
    pub fn data_columns(&self) -> impl Iterator<Item = &str> {
        self.structural
            .iter()
            .copied()
            .chain(self.mapped.iter().map(String::as_str))
    }
}

/// Checks a mapping plan against the columns the database has, table by table.
pub fn layouts(
    plan: &[TablePlan],
    columns_of: &HashMap<String, Vec<String>>,
) -> Result<HashMap<EntityKind, TableLayout>, TargetError> {
    let mut out = HashMap::new();
    for p in plan {
        // One row per record: a child object has no table of its own here, and
        // silently dropping it would lose data the mapping asked for.
        if let Some(c) = p.children.first() {
            return Err(TargetError::Config(format!(
                "mapping gives {} records child objects ({} ...): SQL targets store one \
                 row per record; map the child's values as columns of {:?} instead",
                p.kind, c.table, p.table
            )));
        }
        if let Some(k) = &p.key {
            return Err(TargetError::Config(format!(
                "mapping keys {} records by {k:?}: SQL targets key rows by source id",
                p.kind
            )));
        }
        if !p.disconnect.is_empty() {
            return Err(TargetError::Config(format!(
                "mapping sets disconnect fields for {}: SQL targets record disconnection \
                 in their own bookkeeping columns",
                p.kind
            )));
        }
        if !is_identifier(&p.table) {
            return Err(TargetError::Config(format!(
                "table name {:?} (for {}) is not a plain SQL identifier",
                p.table, p.kind
            )));
        }
        let cols = columns_of.get(&p.table).ok_or_else(|| {
            TargetError::Config(format!(
                "mapping sends {} to table {:?}, which the provider schema does not have",
                p.kind, p.table
            ))
        })?;
        for f in &p.fields {
            let reserved = f == "source_id"
                || f == "scope"
                || BOOKKEEPING.contains(&f.as_str())
                || structural_columns(p.kind).contains(&f.as_str());
            if reserved {
                return Err(TargetError::Config(format!(
                    "mapping field {}.{f} is filled by the target itself",
                    p.table
                )));
            }
            if !cols.iter().any(|c| c == f) {
                return Err(TargetError::Config(format!(
                    "mapping field {}.{f} has no column in table {} (columns: {})",
                    p.table,
                    p.table,
                    cols.join(", ")
                )));
            }
        }
        out.insert(
            p.kind,
            TableLayout {
                kind: p.kind,
                table: p.table.clone(),
                structural: structural_columns(p.kind).to_vec(),
                mapped: p.fields.clone(),
            },
        );
    }
    Ok(out)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// A mapped value as the text a column stores (`None` for null).
pub fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        other => Some(other.to_string()),
    }
}

/// The mapped values of a record in layout order (missing fields are null).
pub fn mapped_values<'a>(
    layout: &TableLayout,
    record: &'a MappedRecord,
) -> Vec<Option<&'a serde_json::Value>> {
    layout
        .mapped
        .iter()
        .map(|c| record.field(c).filter(|v| !v.is_null()))
        .collect()
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Link ends the target does not have, as (kind, id).
pub async fn missing_ends<F, Fut>(
    writes: &[Write],
    existing: F,
) -> Result<HashSet<(EntityKind, String)>, TargetError>
where
    F: Fn(EntityKind, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<HashSet<String>, TargetError>>,
{
    let mut wanted: HashMap<EntityKind, HashSet<&str>> = HashMap::new();
    for w in writes {
        for (_, end) in &w.record.links {
            wanted.entry(end.kind).or_default().insert(end.id.as_str());
        }
    }
    let mut missing = HashSet::new();
    for (kind, ids) in wanted {
        let found = existing(kind, ids.iter().map(|s| s.to_string()).collect()).await?;
        for id in ids {
            if !found.contains(id) {
                missing.insert((kind, id.to_owned()));
            }
        }
    }
    Ok(missing)
}

/// Writes the links whose ends the target has (through `write`, which answers per
/// source id); the others come back `Unresolved`, naming the missing end. Shared by
/// the SQL targets.
pub async fn upsert_resolved<E, EF, W, WF>(
    writes: &[Write],
    existing: E,
    write: W,
) -> Result<Vec<Outcome>, TargetError>
where
    E: Fn(EntityKind, Vec<String>) -> EF,
    EF: std::future::Future<Output = Result<HashSet<String>, TargetError>>,
    W: FnOnce(Vec<Write>) -> WF,
    WF: std::future::Future<Output = Result<HashMap<String, Outcome>, TargetError>>,
{
    let missing = missing_ends(writes, existing).await?;
    let (ok, outcomes) = split_resolved(writes, &missing);
    let written = write(ok.into_iter().cloned().collect()).await?;
    Ok(writes
        .iter()
        .zip(outcomes)
        .map(|(w, o)| o.unwrap_or_else(|| answer(&written, w)))
        .collect())
}

/// The target's answer for one write of a batch it answered per source id.
pub fn answer(written: &HashMap<String, Outcome>, w: &Write) -> Outcome {
    written
        .get(w.record.source_id.as_str())
        .cloned()
        .unwrap_or_else(|| Outcome::Failed {
            reason: format!("{} {}: not written", w.record.kind, w.record.source_id),
        })
}

/// Table layouts per kind, set by `prepare`.
#[derive(Debug, Default)]
pub struct Layouts(std::sync::RwLock<HashMap<EntityKind, TableLayout>>);

impl Layouts {
    /// The layout of a kind's table.
    pub fn get(&self, kind: EntityKind) -> Result<TableLayout, TargetError> {
        self.0
            .read()
            .expect("layout lock")
            .get(&kind)
            .cloned()
            .ok_or_else(|| TargetError::Config(format!("no table prepared for {kind}")))
    }

    /// Replaces the layouts.
    pub fn set(&self, layouts: HashMap<EntityKind, TableLayout>) {
        *self.0.write().expect("layout lock") = layouts;
    }
}

/// Splits links into those whose ends exist (their outcome `None`: the write
/// answers) and the unresolved ones, each naming its missing end.
pub fn split_resolved<'a>(
    writes: &'a [Write],
    missing: &HashSet<(EntityKind, String)>,
) -> (Vec<&'a Write>, Vec<Option<Outcome>>) {
    let mut ok = Vec::with_capacity(writes.len());
    let mut outcomes = Vec::with_capacity(writes.len());
    for w in writes {
        let unresolved: Vec<String> = w
            .record
            .links
            .iter()
            .filter(|(_, e)| missing.contains(&(e.kind, e.id.0.clone())))
            .map(|(role, e)| format!("{role} {} {} not found in target", e.kind, e.id))
            .collect();
        if unresolved.is_empty() {
            ok.push(w);
            outcomes.push(None);
        } else {
            outcomes.push(Some(Outcome::Unresolved {
                reason: unresolved.join("; "),
            }));
        }
    }
    (ok, outcomes)
}

/// What a row looked like before a batch wrote it.
#[derive(Debug, Clone)]
pub struct Previous {
    /// Connected flag.
    pub connected: bool,
    /// Value of the kind's `moved_column`.
    pub moved: Option<String>,
    /// Scope it was connected in.
    pub scope: String,
    /// Content hash of what the row holds.
    pub hash: String,
    /// Run that created it.
    pub created_run: String,
    /// Run that last wrote it.
    pub updated_run: String,
}

impl Previous {
    /// A row selected with [`previous_columns`]: its source id and what it held.
    pub fn read<R>(row: &R) -> (String, Previous)
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        (
            row.get(0),
            Previous {
                connected: row.get(1),
                moved: row.get(2),
                scope: row.get(3),
                hash: row.get(4),
                created_run: row.get(5),
                updated_run: row.get(6),
            },
        )
    }
}

/// The columns `Previous` is read from, in its field order (`moved` is the kind's
/// `moved_column` or a null of the backend's spelling).
pub fn previous_columns(kind: EntityKind, null: &str) -> String {
    format!(
        "source_id, connected, {}, scope, content_hash, created_run, updated_run",
        moved_column(kind).unwrap_or(null)
    )
}

/// What a batch does, judged against the rows it meets: the records to write, the
/// change-log rows, and each record's answer in the change log's own terms.
pub struct BatchPlan<'a> {
    /// Records to write (a record whose content the row already holds, connected,
    /// is not written).
    pub write: Vec<&'a Write>,
    /// Change-log rows: created, updated, reconnected, moved.
    pub log: Vec<(&'a str, &'static str, Option<String>)>,
    /// Each record's outcome by source id.
    pub outcomes: HashMap<String, Outcome>,
}

/// Plans a batch of one kind. A record this run already wrote (a page replayed after
/// a crash) is written again but logs nothing again, and answers as the first write
/// did (created when this run created it).
pub fn plan_batch<'a>(
    layout: &TableLayout,
    run: &str,
    ws: &[&'a Write],
    previous: &HashMap<String, Previous>,
) -> BatchPlan<'a> {
    let mut plan = BatchPlan {
        write: Vec::with_capacity(ws.len()),
        log: Vec::with_capacity(ws.len()),
        outcomes: HashMap::with_capacity(ws.len()),
    };
    for w in ws {
        let id = w.record.source_id.as_str();
        let written = |change, joined| Outcome::Written {
            target_id: None,
            applied: Some(Applied { change, joined }),
        };
        let Some(p) = previous.get(id) else {
            plan.write.push(w);
            plan.log.push((id, "created", None));
            plan.outcomes
                .insert(id.to_owned(), written(Change::Created, Joined::Connected));
            continue;
        };
        if p.updated_run == run {
            plan.write.push(w);
            let outcome = if p.created_run == run {
                written(Change::Created, Joined::Connected)
            } else {
                // How it joined is not known again: the state store's judgment stands.
                Outcome::Written {
                    target_id: None,
                    applied: None,
                }
            };
            plan.outcomes.insert(id.to_owned(), outcome);
            continue;
        }
        if p.connected && p.hash == w.record.hash.to_string() {
            plan.outcomes.insert(id.to_owned(), Outcome::Unchanged);
            continue;
        }
        plan.write.push(w);
        plan.log.push((id, "updated", None));
        let mut joined = Joined::Stayed;
        if !p.connected {
            plan.log.push((id, "reconnected", None));
            joined = Joined::Connected;
        }
        if let Some(detail) = moved(layout, p, w) {
            plan.log.push((id, "moved", Some(detail)));
            if joined == Joined::Stayed {
                joined = Joined::Moved;
            }
        }
        plan.outcomes
            .insert(id.to_owned(), written(Change::Updated, joined));
    }
    plan
}

/// How a written record moved, as the change log's detail: its kind's
/// `moved_column` changed (an activity to another workplace), or else its scope (a
/// doctor to another designated body); `None` when it stayed.
fn moved(layout: &TableLayout, p: &Previous, w: &Write) -> Option<String> {
    if let Some(col) = moved_column(layout.kind) {
        let new = layout
            .structural
            .iter()
            .zip(structural_values(&w.record))
            .find(|(c, _)| **c == col)
            .and_then(|(_, v)| v);
        if p.moved.is_some() && new != p.moved {
            return Some(format!(
                "{col}: {} -> {}",
                p.moved.as_deref().unwrap_or(""),
                new.as_deref().unwrap_or("")
            ));
        }
        return None;
    }
    let scope = w.record.scope.as_str();
    (!p.scope.is_empty() && p.scope != scope).then(|| format!("scope: {} -> {scope}", p.scope))
}

/// (child, parent) workplace pairs of `parent` relations: the hierarchy column's values.
pub fn parent_links<'a>(ws: &[&'a Write]) -> Vec<(&'a str, &'a str)> {
    ws.iter()
        .filter_map(|w| {
            let (from, to) = (w.record.link("from")?, w.record.link("to")?);
            let is_parent =
                w.record.field("relation_type").and_then(|v| v.as_str()) == Some("parent");
            (is_parent && from.kind == EntityKind::Workplace && to.kind == EntityKind::Workplace)
                .then(|| (from.id.as_str(), to.id.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_column_is_refused_with_table_and_field() {
        let plan = vec![TablePlan {
            kind: EntityKind::Individual,
            table: "individuals".into(),
            fields: vec!["first_name".into(), "shoe_size".into()],
            children: vec![],
            disconnect: vec![],
            key: None,
            known_values: vec![],
        }];
        let cols = HashMap::from([(
            "individuals".to_string(),
            vec!["source_id".to_string(), "first_name".to_string()],
        )]);
        let err = layouts(&plan, &cols).unwrap_err().to_string();
        assert!(err.contains("individuals.shoe_size"), "{err}");
    }

    #[test]
    fn bookkeeping_columns_cannot_be_mapped() {
        let plan = vec![TablePlan {
            kind: EntityKind::Individual,
            table: "individuals".into(),
            fields: vec!["content_hash".into()],
            children: vec![],
            disconnect: vec![],
            key: None,
            known_values: vec![],
        }];
        let cols = HashMap::from([("individuals".to_string(), vec!["content_hash".to_string()])]);
        assert!(layouts(&plan, &cols).is_err());
    }

    #[test]
    fn child_objects_are_refused_clearly() {
        let plan = vec![TablePlan {
            kind: EntityKind::Individual,
            table: "individuals".into(),
            fields: vec!["first_name".into()],
            children: vec![provsync_core::target::ChildPlan {
                table: "HealthcareProvider".into(),
                key: "{source_id}".into(),
                parent_field: "AccountId".into(),
                fields: vec![],
                disconnect: vec![],
                known_values: vec![],
            }],
            disconnect: vec![],
            key: None,
            known_values: vec![],
        }];
        let cols = HashMap::from([("individuals".to_string(), vec!["first_name".to_string()])]);
        let err = layouts(&plan, &cols).unwrap_err().to_string();
        assert!(err.contains("child objects (HealthcareProvider"), "{err}");
    }
}
