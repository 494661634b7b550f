//! Bulk API 2.0 ingest for large writes: per object, an upsert job on the external
//! id, the records as one CSV upload (split when it would pass the upload limit),
//! `UploadComplete`, status polls until the job ends, then the successful, failed
//! and unprocessed result CSVs matched back to the records by external id. Records
//! with children go in two steps: the parents, then each child object referring to
//! its parent by external id (`Account.OneKey_Id__c`).
//!
//! Jobs in flight are kept per run so that aborting the run aborts them in the org
//! (seed step 5); a run that was aborted starts no new Bulk job.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use provsync_core::mapped::MappedRecord;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{Body, Client};
use super::collections::{FlatRecord, UNRESOLVED};
use super::graph::{explain, GraphResult};
use super::wire;
use super::SfError;

/// Raw CSV bytes per upload: Salesforce takes 150 MB after base64 encoding (112.5 MB
/// raw) and recommends no more than 100 MB.
pub const MAX_UPLOAD_BYTES: usize = 100_000_000;
/// Longest wait between two status checks of a job.
const MAX_POLL: Duration = Duration::from_secs(10);

/// The Bulk jobs each run has in flight, and the runs aborted.
#[derive(Debug, Default)]
pub struct InFlight {
    jobs: Mutex<HashMap<String, HashSet<String>>>,
    aborted: Mutex<HashSet<String>>,
}

impl InFlight {
    /// Records a job of a run; false when the run was aborted meanwhile (the caller
    /// aborts the job it just made).
    fn add(&self, run: &str, job: &str) -> bool {
        if self.is_aborted(run) {
            return false;
        }
        self.jobs
            .lock()
            .expect("bulk jobs lock")
            .entry(run.to_string())
            .or_default()
            .insert(job.to_string());
        true
    }

    fn remove(&self, run: &str, job: &str) {
        let mut jobs = self.jobs.lock().expect("bulk jobs lock");
        if let Some(set) = jobs.get_mut(run) {
            set.remove(job);
            if set.is_empty() {
                jobs.remove(run);
            }
        }
    }

    /// Whether the run was aborted (it starts no new Bulk job).
    pub fn is_aborted(&self, run: &str) -> bool {
        self.aborted.lock().expect("aborted lock").contains(run)
    }

    /// Marks the run aborted and returns its jobs in flight.
    fn abort(&self, run: &str) -> Vec<String> {
        self.aborted
            .lock()
            .expect("aborted lock")
            .insert(run.to_string());
        let mut jobs: Vec<String> = self
            .jobs
            .lock()
            .expect("bulk jobs lock")
            .get(run)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        jobs.sort();
        jobs
    }
}

/// Aborts every Bulk job the run has in flight; returns their ids. Jobs that ended
/// meanwhile are left as they are.
pub async fn abort_run(client: &Client, jobs: &InFlight, run: &str) -> Vec<String> {
    let mut aborted = Vec::new();
    for id in jobs.abort(run) {
        match abort_job(client, &id).await {
            Ok(()) => aborted.push(id),
            Err(e) => tracing::warn!(bulk_job = %id, error = %e, "Bulk job not aborted"),
        }
    }
    aborted
}

/// A Bulk job's status as `GET /jobs/ingest/{id}` gives it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    state: String,
    #[serde(default)]
    error_message: Option<String>,
}

/// One CSV upload: its text and the records (indexes into the call's list) in it.
struct Part {
    csv: String,
    rows: Vec<usize>,
}

/// The CSV of records of one object: the external id first, then every field any
/// record has (an empty cell leaves a field as it is); split so no part passes
/// `max_bytes`.
fn csv_parts(ext: &str, records: &[FlatRecord<'_>], max_bytes: usize) -> Vec<Part> {
    let mut columns: Vec<&str> = vec![ext];
    let mut seen: HashSet<&str> = HashSet::from([ext]);
    for r in records {
        for (name, _) in r.fields {
            if seen.insert(name.as_str()) {
                columns.push(name.as_str());
            }
        }
    }
    let header = line(&columns);
    let mut parts = Vec::new();
    let mut cur = Part {
        csv: header.clone(),
        rows: Vec::new(),
    };
    for (i, r) in records.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .map(|&c| {
                if c == ext {
                    return r.key.to_string();
                }
                match r.fields.iter().find(|(n, _)| n == c) {
                    None => String::new(),
                    Some((n, v)) if n.contains('.') => wire::csv_reference(v),
                    Some((_, v)) => wire::csv_cell(v),
                }
            })
            .collect();
        let row = line(&cells);
        if !cur.rows.is_empty() && cur.csv.len() + row.len() > max_bytes {
            parts.push(std::mem::replace(
                &mut cur,
                Part {
                    csv: header.clone(),
                    rows: Vec::new(),
                },
            ));
        }
        cur.csv.push_str(&row);
        cur.rows.push(i);
    }
    if !cur.rows.is_empty() {
        parts.push(cur);
    }
    parts
}

/// One CSV line (LF), every cell quoted when it needs to be.
fn line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = w.write_record(cells.iter().map(|c| c.as_ref()));
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Upserts records of one object through Bulk jobs; a result per record, in order.
pub async fn upsert(
    client: &Client,
    jobs: &InFlight,
    run: &str,
    records: &[FlatRecord<'_>],
) -> Result<Vec<GraphResult>, SfError> {
    let Some(first) = records.first() else {
        return Ok(Vec::new());
    };
    debug_assert!(records.iter().all(|r| r.table == first.table));
    let ext = client.config().external_id_field.clone();
    let mut out: Vec<Option<GraphResult>> = vec![None; records.len()];
    for part in csv_parts(&ext, records, MAX_UPLOAD_BYTES) {
        let rows: Vec<FlatRecord<'_>> = part.rows.iter().map(|&i| records[i].clone()).collect();
        let results = one_job(client, jobs, run, first.table, &ext, part.csv, &rows).await?;
        for (i, r) in part.rows.into_iter().zip(results) {
            out[i] = Some(r);
        }
    }
    Ok(out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| GraphResult::Retry("no Bulk result".into())))
        .collect())
}

/// One Bulk job: create, upload, close, wait, read the results.
async fn one_job(
    client: &Client,
    jobs: &InFlight,
    run: &str,
    object: &str,
    ext: &str,
    csv: String,
    records: &[FlatRecord<'_>],
) -> Result<Vec<GraphResult>, SfError> {
    let base = format!("{}/jobs/ingest", client.data_path());
    let created = client
        .call(
            Method::POST,
            &base,
            &Body::Json(json!({
                "object": object,
                "externalIdFieldName": ext,
                "contentType": "CSV",
                "operation": "upsert",
                "lineEnding": "LF",
                "columnDelimiter": "COMMA",
            })),
        )
        .await?;
    let info: JobInfo = created.ok()?.json()?;
    let id = info.id;
    if !jobs.add(run, &id) {
        // The run was aborted while the job was being made: it takes no data.
        let _ = abort_job(client, &id).await;
        return Ok(not_sent(
            records,
            &format!("Bulk job {id} aborted with the run"),
        ));
    }
    let result = async {
        let uploaded = client
            .call(Method::PUT, &format!("{base}/{id}/batches"), &Body::Csv(csv))
            .await?;
        uploaded.ok()?;
        set_state(client, &id, "UploadComplete").await?;
        let end = wait(client, &id).await?;
        tracing::debug!(bulk_job = %id, object, state = %end.state, records = records.len(), "Bulk job ended");
        collect(client, &id, &end, ext, records).await
    }
    .await;
    jobs.remove(run, &id);
    if result.is_err() {
        // A job left open would hold its data forever; an ended one is unaffected.
        let _ = abort_job(client, &id).await;
    }
    result
}

/// Every record failed with `why` (nothing was sent).
fn not_sent(records: &[FlatRecord<'_>], why: &str) -> Vec<GraphResult> {
    records
        .iter()
        .map(|r| GraphResult::Failed(format!("{} {}: not written: {why}", r.table, r.key)))
        .collect()
}

/// Aborts a job, spending the budget's reserve if need be.
async fn abort_job(client: &Client, id: &str) -> Result<(), SfError> {
    set_state(client, id, "Aborted").await
}

/// Moves a job to `state`; aborting never waits for a spent budget.
async fn set_state(client: &Client, id: &str, state: &str) -> Result<(), SfError> {
    let path = format!("{}/jobs/ingest/{id}", client.data_path());
    let body = Body::Json(json!({ "state": state }));
    let resp = if state == "Aborted" {
        client.call_urgent(Method::PATCH, &path, &body).await?
    } else {
        client.call(Method::PATCH, &path, &body).await?
    };
    resp.ok().map(|_| ())
}

/// Polls the job until it is `JobComplete`, `Failed` or `Aborted`.
async fn wait(client: &Client, id: &str) -> Result<JobInfo, SfError> {
    let path = format!("{}/jobs/ingest/{id}", client.data_path());
    let mut pause = Duration::from_millis(client.config().bulk_poll_ms);
    loop {
        tokio::time::sleep(pause).await;
        let info: JobInfo = client
            .call(Method::GET, &path, &Body::None)
            .await?
            .ok()?
            .json()?;
        if matches!(info.state.as_str(), "JobComplete" | "Failed" | "Aborted") {
            return Ok(info);
        }
        pause = (pause * 3 / 2).min(MAX_POLL);
    }
}

/// Reads the result CSVs and matches their rows to the records by external id.
async fn collect(
    client: &Client,
    id: &str,
    end: &JobInfo,
    ext: &str,
    records: &[FlatRecord<'_>],
) -> Result<Vec<GraphResult>, SfError> {
    let mut by_key: HashMap<&str, VecDeque<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_key.entry(r.key).or_default().push_back(i);
    }
    let mut out: Vec<Option<GraphResult>> = vec![None; records.len()];
    let path = format!("{}/jobs/ingest/{id}", client.data_path());
    for which in ["successfulResults", "failedResults"] {
        let resp = client
            .call(Method::GET, &format!("{path}/{which}/"), &Body::None)
            .await?
            .ok()?;
        for (key, first, second) in result_rows(&resp.body, ext)? {
            let Some(i) = by_key.get_mut(key.as_str()).and_then(VecDeque::pop_front) else {
                continue;
            };
            out[i] = Some(if which == "successfulResults" {
                GraphResult::Written((!first.is_empty()).then_some(first))
            } else {
                failure(&records[i], &wire::bulk_error(&second))
            });
        }
    }
    let why = match end.state.as_str() {
        "Aborted" => format!("Bulk job {id} aborted with the run before it processed it"),
        "Failed" => format!(
            "Bulk job {id} failed: {}",
            end.error_message.as_deref().unwrap_or("no reason given")
        ),
        // Complete, yet a record has no result row: sending it again is safe.
        _ => {
            return Ok(out
                .into_iter()
                .map(|r| r.unwrap_or_else(|| GraphResult::Retry("no Bulk result".into())))
                .collect())
        }
    };
    Ok(out
        .into_iter()
        .zip(records)
        .map(|(r, rec)| {
            r.unwrap_or_else(|| {
                GraphResult::Failed(format!("{} {}: not written: {why}", rec.table, rec.key))
            })
        })
        .collect())
}

/// A failed row as the run's error ledger shows it.
fn failure(r: &FlatRecord<'_>, e: &wire::RecordError) -> GraphResult {
    if wire::is_retryable(&e.code) {
        return GraphResult::Retry(e.code.clone());
    }
    if wire::is_missing_reference(e) {
        return GraphResult::Failed(format!(
            "{UNRESOLVED}{}",
            wire::describe_errors(r.table, r.key, std::slice::from_ref(e))
        ));
    }
    GraphResult::Failed(explain(r.table, r.key, e, r.origin, r.root))
}

/// The rows of a result CSV as (external id, first cell, second cell): `sf__Id` and
/// `sf__Created` of successful rows, `sf__Id` and `sf__Error` of failed ones.
fn result_rows(body: &[u8], ext: &str) -> Result<Vec<(String, String, String)>, SfError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| SfError::Protocol(format!("Bulk result CSV: {e}")))?
        .clone();
    if headers.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key_col) = headers.iter().position(|h| h.eq_ignore_ascii_case(ext)) else {
        return Err(SfError::Protocol(format!(
            "Bulk result CSV has no {ext} column: {:?}",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| SfError::Protocol(format!("Bulk result CSV: {e}")))?;
        let cell = |i: usize| rec.get(i).unwrap_or("").to_string();
        rows.push((cell(key_col), cell(0), cell(1)));
    }
    Ok(rows)
}

/// The relationship name of a lookup field, by Salesforce's naming rule: `AccountId`
/// -> `Account`, `Practitioner__c` -> `Practitioner__r`.
pub fn relationship_of(field: &str) -> String {
    if let Some(base) = field.strip_suffix("__c") {
        format!("{base}__r")
    } else if let Some(base) = field.strip_suffix("Id").filter(|b| !b.is_empty()) {
        base.to_string()
    } else {
        field.to_string()
    }
}

/// Upserts records with their children: the records first, then each child object
/// (children of records that failed are not sent). A record is written when it and
/// all its children are; a child failure fails it with the child's reason, a child
/// lock error has the whole record sent again (upserts are idempotent).
pub async fn upsert_tree(
    client: &Client,
    jobs: &InFlight,
    run: &str,
    batch: &[&MappedRecord],
    ids: &[usize],
) -> Result<Vec<GraphResult>, SfError> {
    let ext = client.config().external_id_field.clone();
    let mut out: Vec<GraphResult> = Vec::with_capacity(ids.len());
    // The records, per object.
    let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (slot, &i) in ids.iter().enumerate() {
        by_table
            .entry(batch[i].table.as_str())
            .or_default()
            .push(slot);
        out.push(GraphResult::Retry("not sent".into()));
    }
    for slots in by_table.values() {
        let flat: Vec<FlatRecord<'_>> = slots
            .iter()
            .map(|&s| FlatRecord::of(batch[ids[s]]))
            .collect();
        let results = upsert(client, jobs, run, &flat).await?;
        for (&s, r) in slots.iter().zip(results) {
            out[s] = r;
        }
    }
    // The children of written records, per object, with the parent by external id.
    let mut children: BTreeMap<&str, Vec<(usize, &provsync_core::mapped::MappedChild)>> =
        BTreeMap::new();
    for (slot, &i) in ids.iter().enumerate() {
        if matches!(out[slot], GraphResult::Written(_)) {
            for c in &batch[i].children {
                children
                    .entry(c.table.as_str())
                    .or_default()
                    .push((slot, c));
            }
        }
    }
    let mut child_fields: BTreeMap<&str, Vec<Vec<(String, Value)>>> = BTreeMap::new();
    for (table, list) in &children {
        let fields = list
            .iter()
            .map(|(slot, c)| {
                let mut f = c.fields.clone();
                let parent = format!("{}.{ext}", relationship_of(&c.parent_field));
                f.push((parent, json!(batch[ids[*slot]].target_key())));
                f
            })
            .collect();
        child_fields.insert(table, fields);
    }
    let sends = children.iter().map(|(table, list)| {
        let fields = &child_fields[table];
        let flat: Vec<FlatRecord<'_>> = list
            .iter()
            .zip(fields)
            .map(|((slot, c), f)| FlatRecord {
                table: &c.table,
                key: &c.key,
                fields: f,
                origin: batch[ids[*slot]],
                root: false,
            })
            .collect();
        async move {
            let r = upsert(client, jobs, run, &flat).await;
            (list, r)
        }
    });
    for (list, results) in futures::future::join_all(sends).await {
        for ((slot, _), r) in list.iter().zip(results?) {
            let record = std::mem::replace(&mut out[*slot], GraphResult::Retry(String::new()));
            out[*slot] = with_child(record, r);
        }
    }
    Ok(out)
}

/// A record's result once one of its children answered: a failure wins (both
/// reasons kept), then a retry; a written child leaves the record as it was.
fn with_child(record: GraphResult, child: GraphResult) -> GraphResult {
    match (record, child) {
        (GraphResult::Failed(a), GraphResult::Failed(b)) => {
            GraphResult::Failed(format!("{a}; {b}"))
        }
        (f @ GraphResult::Failed(_), _) | (_, f @ GraphResult::Failed(_)) => f,
        (GraphResult::Retry(w), _) | (_, GraphResult::Retry(w)) => GraphResult::Retry(w),
        (GraphResult::Halted, _) | (_, GraphResult::Halted) => GraphResult::Halted,
        (record, GraphResult::Written(_)) => record,
    }
}

#[cfg(test)]
mod tests {
    use provsync_core::model::EntityKind;

    use super::*;

    fn record(id: &str, fields: Vec<(String, Value)>) -> MappedRecord {
        MappedRecord::new(
            EntityKind::Individual,
            id.into(),
            "US".into(),
            "Account".into(),
            fields,
            vec![],
        )
    }

    #[test]
    fn csv_has_the_key_first_and_every_field_any_record_has() {
        let a = record(
            "W1",
            vec![
                ("Name".into(), json!("Clinic, \"North\"")),
                ("Phone".into(), Value::Null),
            ],
        );
        let b = record(
            "W2",
            vec![
                ("Name".into(), json!("South")),
                ("Parent.OneKey_Id__c".into(), json!("W1")),
            ],
        );
        let flat = [FlatRecord::of(&a), FlatRecord::of(&b)];
        let parts = csv_parts("OneKey_Id__c", &flat, MAX_UPLOAD_BYTES);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].csv,
            "OneKey_Id__c,Name,Phone,Parent.OneKey_Id__c\n\
             W1,\"Clinic, \"\"North\"\"\",#N/A,\n\
             W2,South,,W1\n"
        );
        // A small cap splits the upload; every part repeats the header.
        let parts = csv_parts("OneKey_Id__c", &flat, 60);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].csv.starts_with("OneKey_Id__c,Name,Phone"));
        assert_eq!(parts[1].rows, vec![1]);
    }

    #[test]
    fn result_rows_are_matched_by_external_id() {
        let ok = b"\"sf__Id\",\"sf__Created\",\"OneKey_Id__c\",\"Name\"\n\"001A\",\"true\",\"W2\",\"South\"\n";
        let rows = result_rows(ok, "OneKey_Id__c").unwrap();
        assert_eq!(rows, vec![("W2".into(), "001A".into(), "true".into())]);
        let bad =
            b"sf__Id,sf__Error,OneKey_Id__c\n,REQUIRED_FIELD_MISSING:missing: [Name]:Name --,W1\n";
        let rows = result_rows(bad, "OneKey_Id__c").unwrap();
        assert_eq!(rows[0].0, "W1");
        assert_eq!(wire::bulk_error(&rows[0].2).code, "REQUIRED_FIELD_MISSING");
        assert!(result_rows(b"", "OneKey_Id__c").unwrap().is_empty());
        assert!(result_rows(b"a,b\n1,2\n", "OneKey_Id__c").is_err());
    }

    #[test]
    fn relationship_names_follow_salesforce_naming() {
        assert_eq!(relationship_of("AccountId"), "Account");
        assert_eq!(relationship_of("ParentRecordId"), "ParentRecord");
        assert_eq!(relationship_of("Practitioner__c"), "Practitioner__r");
        assert_eq!(relationship_of("Id"), "Id");
    }

    #[test]
    fn an_aborted_run_takes_no_new_job_and_gives_back_its_jobs() {
        let jobs = InFlight::default();
        assert!(jobs.add("job-1", "750A"));
        assert!(jobs.add("job-1", "750B"));
        jobs.remove("job-1", "750A");
        assert_eq!(jobs.abort("job-1"), vec!["750B".to_string()]);
        assert!(jobs.is_aborted("job-1"));
        assert!(!jobs.add("job-1", "750C"));
        assert!(jobs.add("job-2", "750D"));
    }
}
