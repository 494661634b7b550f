//! The org's state: records per object with their key indexes, value sets, Bulk jobs,
//! the API calls of the budget window; transactions with undo for all-or-none units;
//! every committed change goes to the journal when the org is durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bulk::BulkJob;
use super::ids;
use super::persist::{Entry, Journal, Snapshot};
use super::schema::Schema;

/// One record: field name (as the schema spells it) to value.
pub type Record = serde_json::Map<String, Value>;

/// One picklist value of a value set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickValue {
    /// API name (`fullName` in the Metadata API).
    pub full_name: String,
    /// Label.
    pub label: String,
    /// The default value.
    pub default: bool,
    /// Active (inactive values stay listed and count toward the 1,000 cap).
    pub active: bool,
}

/// A GlobalValueSet or StandardValueSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueSet {
    /// `GlobalValueSet` or `StandardValueSet`.
    pub kind: String,
    /// `fullName`.
    pub full_name: String,
    /// `masterLabel` (global value sets).
    pub master_label: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `sorted`.
    pub sorted: bool,
    /// Values, active and inactive, in order.
    pub values: Vec<PickValue>,
}

impl ValueSet {
    /// Whether the value is listed and active (case-sensitive, as restricted picklists are).
    pub fn accepts(&self, value: &str) -> bool {
        self.values.iter().any(|v| v.active && v.full_name == value)
    }
}

/// Key of a value set in the org: kind and name.
pub fn value_set_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The records of one object and the indexes of its key fields.
#[derive(Debug, Default)]
pub struct Table {
    /// Records by id (ids sort in creation order).
    pub rows: BTreeMap<String, Record>,
    /// Key field -> value -> ids.
    index: HashMap<String, HashMap<String, Vec<String>>>,
}

/// The text of a key value as indexed (strings as they are, other JSON as printed).
pub fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Undo log of a unit of work.
#[derive(Debug, Default)]
pub struct Tx {
    undo: Vec<(String, String, Option<Record>)>,
}

impl Tx {
    /// A savepoint to roll back to.
    pub fn mark(&self) -> usize {
        self.undo.len()
    }
}

/// API calls in the rolling window: (second, count) buckets.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CallLog {
    buckets: VecDeque<(u64, u32)>,
}

impl CallLog {
    /// Calls made in the window ending at `now` (seconds since the epoch).
    pub fn used(&mut self, now: u64, window: u64) -> u64 {
        while self
            .buckets
            .front()
            .is_some_and(|&(at, _)| at + window <= now)
        {
            self.buckets.pop_front();
        }
        self.buckets.iter().map(|&(_, n)| u64::from(n)).sum()
    }

    /// Records one call at `now`.
    pub fn add(&mut self, now: u64, n: u32) {
        match self.buckets.back_mut() {
            Some((at, count)) if *at == now => *count += n,
            _ => self.buckets.push_back((now, n)),
        }
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        self.buckets.clear();
    }

    /// The buckets, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buckets.iter().copied()
    }
}

/// The whole durable state of the org.
#[derive(Debug)]
pub struct Org {
    /// The schema.
    pub schema: Arc<Schema>,
    tables: HashMap<String, Table>,
    /// Value sets by [`value_set_key`].
    pub value_sets: BTreeMap<String, ValueSet>,
    /// Bulk ingest jobs by id.
    pub jobs: BTreeMap<String, BulkJob>,
    /// API calls of the budget window.
    pub calls: CallLog,
    next_id: u64,
    journal: Option<Journal>,
}

impl Org {
    /// An empty org with the starting value sets of docs/salesforce-model.md.
    pub fn new(schema: Arc<Schema>) -> Org {
        let mut org = Org {
            tables: schema
                .objects()
                .iter()
                .map(|o| (o.name.clone(), Table::default()))
                .collect(),
            schema,
            value_sets: BTreeMap::new(),
            jobs: BTreeMap::new(),
            calls: CallLog::default(),
            next_id: 1,
            journal: None,
        };
        for name in ["OneKey_Specialty", "OneKey_Role"] {
            org.put_value_set_raw(ValueSet {
                kind: "GlobalValueSet".into(),
                full_name: name.into(),
                master_label: Some(name.into()),
                description: None,
                sorted: false,
                values: Vec::new(),
            });
        }
        let salutations = ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."];
        org.put_value_set_raw(ValueSet {
            kind: "StandardValueSet".into(),
            full_name: "Salutation".into(),
            master_label: None,
            description: None,
            sorted: false,
            values: salutations
                .iter()
                .map(|s| PickValue {
                    full_name: (*s).into(),
                    label: (*s).into(),
                    default: false,
                    active: true,
                })
                .collect(),
        });
        org
    }

    /// Restores a snapshot and journal, then keeps journaling to it.
    pub fn durable(schema: Arc<Schema>, dir: &std::path::Path) -> std::io::Result<Org> {
        let mut org = Org::new(schema);
        let (snapshot, entries) = Journal::load(dir)?;
        if let Some(s) = snapshot {
            org.restore(s);
        }
        for e in entries {
            org.apply(e);
        }
        org.journal = Some(Journal::compact(dir, &org.snapshot())?);
        Ok(org)
    }

    fn restore(&mut self, s: Snapshot) {
        for (o, rows) in s.tables {
            for (_, r) in rows {
                self.put_raw(&o, r);
            }
        }
        for vs in s.value_sets {
            self.put_value_set_raw(vs);
        }
        for j in s.jobs {
            self.jobs.insert(j.id.clone(), j);
        }
        self.calls = s.calls;
        self.next_id = self.next_id.max(s.next_id);
    }

    fn apply(&mut self, e: Entry) {
        match e {
            Entry::Put { o, r } => {
                self.put_raw(&o, r);
            }
            Entry::Del { o, id } => {
                self.remove_raw(&o, &id);
            }
            Entry::ValueSet(vs) => self.put_value_set_raw(vs),
            Entry::Job(j) => {
                if let Some(n) = ids::counter_of(&j.id) {
                    self.next_id = self.next_id.max(n + 1);
                }
                self.jobs.insert(j.id.clone(), *j);
            }
            Entry::DelJob { id } => {
                self.jobs.remove(&id);
            }
            Entry::Calls { at, n } => self.calls.add(at, n),
            Entry::ResetCalls => self.calls.clear(),
        }
    }

    /// The whole state as a snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            tables: self
                .tables
                .iter()
                .map(|(o, t)| (o.clone(), t.rows.clone()))
                .collect(),
            value_sets: self.value_sets.values().cloned().collect(),
            jobs: self.jobs.values().cloned().collect(),
            calls: self.calls.clone(),
            next_id: self.next_id,
        }
    }

    /// Writes a snapshot and empties the journal (clean shutdown).
    pub fn checkpoint(&mut self) -> std::io::Result<()> {
        let snapshot = self.snapshot();
        if let Some(j) = &mut self.journal {
            j.checkpoint(&snapshot)?;
        }
        Ok(())
    }

    fn log(&mut self, e: &Entry) {
        if let Some(j) = &mut self.journal {
            if let Err(err) = j.append(e) {
                tracing::error!(%err, "salesforce emulator: journal write failed");
            }
        }
    }

    /// Makes the journaled changes reach the file (end of a request).
    pub fn flush(&mut self) {
        if let Some(j) = &mut self.journal {
            if let Err(err) = j.flush() {
                tracing::error!(%err, "salesforce emulator: journal flush failed");
            }
        }
    }

    /// A fresh id with the object's key prefix.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        ids::make_id(prefix, n)
    }

    /// The table of an object (canonical name).
    pub fn table(&self, object: &str) -> &Table {
        self.tables.get(object).expect("a table per schema object")
    }

    /// One record.
    pub fn get(&self, object: &str, id: &str) -> Option<&Record> {
        self.tables.get(object)?.rows.get(id)
    }

    /// The ids whose key field has this value.
    pub fn find_by_key(&self, object: &str, field: &str, value: &str) -> &[String] {
        self.tables
            .get(object)
            .and_then(|t| t.index.get(field))
            .and_then(|m| m.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// The object holding this id, with the record.
    pub fn find_id(&self, id: &str) -> Option<(&str, &Record)> {
        let o = self.schema.object_of_id(id)?;
        let id18 = if id.len() == 15 {
            format!("{id}{}", ids::case_suffix(id))
        } else {
            id.to_owned()
        };
        self.get(&o.name, &id18).map(|r| (o.name.as_str(), r))
    }

    fn put_raw(&mut self, object: &str, record: Record) -> Option<Record> {
        let schema = self.schema.clone();
        let o = schema.object(object)?;
        let id = record
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(n) = ids::counter_of(&id) {
            self.next_id = self.next_id.max(n + 1);
        }
        let before = self.remove_raw(&o.name, &id);
        let table = self.tables.entry(o.name.clone()).or_default();
        for f in o.indexed_fields() {
            if let Some(v) = record.get(&f.name).and_then(key_text) {
                table
                    .index
                    .entry(f.name.clone())
                    .or_default()
                    .entry(v)
                    .or_default()
                    .push(id.clone());
            }
        }
        table.rows.insert(id, record);
        before
    }

    fn remove_raw(&mut self, object: &str, id: &str) -> Option<Record> {
        let schema = self.schema.clone();
        let o = schema.object(object)?;
        let table = self.tables.get_mut(&o.name)?;
        let before = table.rows.remove(id)?;
        for f in o.indexed_fields() {
            if let Some(v) = before.get(&f.name).and_then(key_text) {
                if let Some(ids) = table.index.get_mut(&f.name).and_then(|m| m.get_mut(&v)) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        table.index.get_mut(&f.name).map(|m| m.remove(&v));
                    }
                }
            }
        }
        Some(before)
    }

    /// Writes a record inside a transaction (not journaled until commit).
    pub fn put(&mut self, tx: &mut Tx, object: &str, record: Record) {
        let id = record
            .get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let before = self.put_raw(object, record);
        tx.undo.push((object.to_owned(), id, before));
    }

    /// Deletes a record inside a transaction.
    pub fn delete(&mut self, tx: &mut Tx, object: &str, id: &str) -> bool {
        match self.remove_raw(object, id) {
            Some(before) => {
                tx.undo
                    .push((object.to_owned(), id.to_owned(), Some(before)));
                true
            }
            None => false,
        }
    }

    /// Undoes the transaction's writes after `mark`.
    pub fn rollback_to(&mut self, tx: &mut Tx, mark: usize) {
        while tx.undo.len() > mark {
            let (o, id, before) = tx.undo.pop().expect("len > mark");
            match before {
                Some(r) => {
                    self.put_raw(&o, r);
                }
                None => {
                    self.remove_raw(&o, &id);
                }
            }
        }
    }

    /// Makes the transaction's writes final: journals each touched record's last state
    /// and returns the number of records written per object.
    pub fn commit(&mut self, tx: Tx) -> BTreeMap<String, u64> {
        let mut seen = std::collections::HashSet::new();
        let mut written: BTreeMap<String, u64> = BTreeMap::new();
        for (o, id, _) in tx.undo.into_iter().rev() {
            if !seen.insert((o.clone(), id.clone())) {
                continue;
            }
            *written.entry(o.clone()).or_default() += 1;
            let entry = match self.get(&o, &id) {
                Some(r) => Entry::Put { o, r: r.clone() },
                None => Entry::Del { o, id },
            };
            self.log(&entry);
        }
        written
    }

    /// The value set of that kind and name.
    pub fn value_set(&self, kind: &str, name: &str) -> Option<&ValueSet> {
        self.value_sets.get(&value_set_key(kind, name))
    }

    fn put_value_set_raw(&mut self, vs: ValueSet) {
        self.value_sets
            .insert(value_set_key(&vs.kind, &vs.full_name), vs);
    }

    /// Stores a value set and journals it.
    pub fn put_value_set(&mut self, vs: ValueSet) {
        self.log(&Entry::ValueSet(vs.clone()));
        self.put_value_set_raw(vs);
    }

    /// Stores a Bulk job's state and journals it.
    pub fn put_job(&mut self, job: BulkJob) {
        self.log(&Entry::Job(Box::new(job.clone())));
        self.jobs.insert(job.id.clone(), job);
    }

    /// Deletes a Bulk job.
    pub fn delete_job(&mut self, id: &str) -> Option<BulkJob> {
        let job = self.jobs.remove(id)?;
        self.log(&Entry::DelJob { id: id.to_owned() });
        Some(job)
    }

    /// Counts one API call at `now` (seconds since the epoch).
    pub fn count_call(&mut self, now: u64) {
        self.calls.add(now, 1);
        self.log(&Entry::Calls { at: now, n: 1 });
    }

    /// Forgets the calls of the window.
    pub fn reset_calls(&mut self) {
        self.calls.clear();
        self.log(&Entry::ResetCalls);
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, key: &str) -> Record {
        let mut r = Record::new();
        r.insert("Id".into(), id.into());
        r.insert("OneKey_Id__c".into(), key.into());
        r
    }

    #[test]
    fn rollback_restores_records_and_key_index() {
        let mut org = Org::new(Arc::new(Schema::default_org()));
        let mut tx = Tx::default();
        let a = org.new_id("001");
        org.put(&mut tx, "Account", record(&a, "K1"));
        org.commit(tx);
        let mut tx = Tx::default();
        let mark = tx.mark();
        org.put(&mut tx, "Account", record(&a, "K2"));
        let b = org.new_id("001");
        org.put(&mut tx, "Account", record(&b, "K3"));
        assert_eq!(
            org.find_by_key("Account", "OneKey_Id__c", "K2"),
            std::slice::from_ref(&a)
        );
        org.rollback_to(&mut tx, mark);
        assert_eq!(
            org.find_by_key("Account", "OneKey_Id__c", "K1"),
            std::slice::from_ref(&a)
        );
        assert!(org.find_by_key("Account", "OneKey_Id__c", "K2").is_empty());
        assert!(org.get("Account", &b).is_none());
    }

    #[test]
    fn call_log_forgets_calls_older_than_the_window() {
        let mut log = CallLog::default();
        log.add(100, 1);
        log.add(100, 1);
        log.add(150, 1);
        assert_eq!(log.used(150, 60), 3);
        assert_eq!(log.used(160, 60), 1);
        assert_eq!(log.used(300, 60), 0);
    }
}
