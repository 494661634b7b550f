//! Bulk API 2.0 ingest: create a job, upload its CSV once, `UploadComplete`, background
//! processing (`InProgress` -> `JobComplete` | `Failed`, or `Aborted` by the client),
//! and the successful / failed / unprocessed result CSVs.
//!
//! Error codes: the Bulk API 2.0 guide's "Errors" list (InvalidJob, InvalidJobState,
//! InvalidBatch...,
//! https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/bulk_api_2_0_errors.htm),
//! spelled upper case as the REST answers carry them. Their messages, and
//! `BULK_API_ERROR`, `INVALIDENTITY`, are the wording orgs answer as users quote it
//! (a guess where not quoted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::errors::{ApiError, RecordError};
use super::rest::{violation, Body, Exec, Reply};
use super::schema::SObject;
use super::store::Tx;
use super::write::{self, Op};
use super::Emu;

/// Raw CSV bytes a job takes: "up to 150MB (after base64 encoding)" (Bulk API 2.0
/// Developer Guide, "Process for Creating Bulk API 2.0 Requests",
/// https://developer.salesforce.com/docs/atlas.en-us.224.0.api_bulk_v2.meta/api_bulk_v2/creating_bulk_requests.htm;
/// "Bulk API and Bulk API 2.0 Limits and Allocations" gives the same 150 MB).
pub const MAX_UPLOAD_BYTES: usize = 150_000_000 / 4 * 3;
/// Rows written per org transaction while processing (other calls interleave). The
/// Bulk API 2.0 guide documents internal batches of 10,000 records; 200 is the chunk
/// each batch is processed in per the Bulk API limits ("Batch processing time": "In
/// API version 21.0 and later, the chunk size is 200 records",
/// https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/asynch_api_concepts_limits.htm),
/// assumed to hold for 2.0 too.
const CHUNK: usize = 200;
/// The integration user's id, as `createdById`.
const USER_ID: &str = "005Em0000000001AAA";

/// One ingest job and everything it keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkJob {
    /// `750...` id.
    pub id: String,
    /// Object.
    pub object: String,
    /// insert, upsert, update or delete.
    pub operation: String,
    /// Upsert key.
    pub external_id_field: Option<String>,
    /// Open, UploadComplete, InProgress, JobComplete, Failed, Aborted.
    pub state: String,
    /// API version of the creating call.
    pub api_version: String,
    /// LF or CRLF.
    pub line_ending: String,
    /// COMMA, TAB, PIPE, SEMICOLON, CARET, BACKQUOTE.
    pub column_delimiter: String,
    /// Created.
    pub created: String,
    /// Last change.
    pub modstamp: String,
    /// The uploaded CSV.
    pub data: Option<String>,
    /// Records processed.
    pub processed: u64,
    /// Records failed.
    pub failed: u64,
    /// Milliseconds spent processing.
    pub processing_ms: u64,
    /// Why the job failed.
    pub error_message: Option<String>,
    /// `successfulResults` CSV.
    pub successful: String,
    /// `failedResults` CSV.
    pub failed_results: String,
    /// `unprocessedrecords` CSV.
    pub unprocessed: String,
}

impl BulkJob {
    fn info(&self) -> Value {
        let mut v = json!({
            "id": self.id, "operation": self.operation, "object": self.object,
            "createdById": USER_ID, "createdDate": self.created, "systemModstamp": self.modstamp,
            "state": self.state, "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": self.api_version.trim_start_matches('v').parse::<f64>().unwrap_or(63.0),
            "jobType": "V2Ingest",
            "contentUrl": format!("services/data/{}/jobs/ingest/{}/batches", self.api_version, self.id),
            "lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter,
            "numberRecordsProcessed": self.processed, "numberRecordsFailed": self.failed,
            "retries": 0, "totalProcessingTime": self.processing_ms,
            "apiActiveProcessingTime": self.processing_ms, "apexProcessingTime": 0,
        });
        if let Some(f) = &self.external_id_field {
            v["externalIdFieldName"] = json!(f);
        }
        if let Some(m) = &self.error_message {
            v["errorMessage"] = json!(m);
        }
        v
    }

    fn delimiter(&self) -> u8 {
        delimiter_byte(&self.column_delimiter).unwrap_or(b',')
    }
}

fn delimiter_byte(name: &str) -> Option<u8> {
    Some(match name {
        "COMMA" => b',',
        "TAB" => b'\t',
        "PIPE" => b'|',
        "SEMICOLON" => b';',
        "CARET" => b'^',
        "BACKQUOTE" => b'`',
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Create {
    object: String,
    operation: String,
    external_id_field_name: Option<String>,
    content_type: Option<String>,
    line_ending: Option<String>,
    column_delimiter: Option<String>,
}

fn state_error(from: &str, to: &str) -> Reply {
    ApiError::bad(
        "INVALIDJOBSTATE",
        format!("Invalid job state transition from {from} to {to}"),
    )
    .into()
}

fn job_not_found(id: &str) -> Reply {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Job with ID {id} not found"),
    )
    .into()
}

/// Routes `/jobs/ingest/...` (segments after `ingest`).
pub fn route(x: &mut Exec<'_>, method: &Method, rest: &[&str], vt: &str, body: &[u8]) -> Reply {
    match (method.clone(), rest) {
        (Method::POST, []) => {
            x.kind = "bulk_create";
            create(x, vt, body)
        }
        (Method::GET, []) => {
            x.kind = "bulk_list";
            let records: Vec<Value> = x.org.jobs.values().map(BulkJob::info).collect();
            Reply::ok(json!({"done": true, "records": records, "nextRecordsUrl": null}))
        }
        (Method::GET, [id]) => {
            x.kind = "bulk_status";
            match x.org.jobs.get(*id) {
                Some(j) => Reply::ok(j.info()),
                None => job_not_found(id),
            }
        }
        (Method::PATCH, [id]) => {
            x.kind = "bulk_state";
            change_state(x, id, body)
        }
        (Method::DELETE, [id]) => {
            x.kind = "bulk_delete";
            match x.org.jobs.get(*id).map(|j| j.state.clone()) {
                None => job_not_found(id),
                Some(s) if s == "Open" || s == "InProgress" => state_error(&s, "Deleted"),
                Some(_) => {
                    x.org.delete_job(id);
                    Reply::no_content()
                }
            }
        }
        (Method::PUT, [id, "batches"]) => {
            x.kind = "bulk_upload";
            upload(x, id, body)
        }
        (
            Method::GET,
            [id, which @ ("successfulResults" | "failedResults" | "unprocessedrecords")],
        ) => {
            x.kind = "bulk_results";
            let Some(j) = x.org.jobs.get(*id) else {
                return job_not_found(id);
            };
            if !matches!(j.state.as_str(), "JobComplete" | "Failed" | "Aborted") {
                return ApiError::bad(
                    "INVALIDJOBSTATE",
                    format!("Job {id} is not finished: {}", j.state),
                )
                .into();
            }
            let csv = match *which {
                "successfulResults" => j.successful.clone(),
                "failedResults" => j.failed_results.clone(),
                _ => j.unprocessed.clone(),
            };
            Reply {
                status: StatusCode::OK,
                body: Body::Csv(csv),
                headers: Vec::new(),
            }
        }
        _ => ApiError::not_found().into(),
    }
}

fn create(x: &mut Exec<'_>, vt: &str, body: &[u8]) -> Reply {
    let c: Create = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => return ApiError::json(e).into(),
    };
    let version = super::rest::parse_version(vt).unwrap_or(super::LATEST_VERSION);
    let Some(o) = x.object(&c.object, version) else {
        return ApiError::bad(
            "INVALIDENTITY",
            format!("Entity '{}' is not supported by the Bulk API.", c.object),
        )
        .into();
    };
    if !matches!(
        c.operation.as_str(),
        "insert" | "upsert" | "update" | "delete"
    ) {
        return ApiError::bad(
            "INVALIDJOB",
            format!("Operation {} is not supported", c.operation),
        )
        .into();
    }
    let key = match (c.operation.as_str(), &c.external_id_field_name) {
        ("upsert", None) => {
            return ApiError::bad("INVALIDJOB", "External ID was blank for upsert operation")
                .into();
        }
        ("upsert", Some(f)) => match o.field(f).filter(|f| f.is_key()) {
            Some(f) => Some(f.name.clone()),
            None => {
                return ApiError::bad(
                    "INVALIDJOB",
                    format!("The field {f} is not an external id field of {}", o.name),
                )
                .into()
            }
        },
        _ => None,
    };
    if c.content_type.as_deref().is_some_and(|t| t != "CSV") {
        return ApiError::bad("INVALIDJOB", "contentType must be CSV").into();
    }
    let line_ending = c.line_ending.unwrap_or_else(|| "LF".into());
    let delimiter = c.column_delimiter.unwrap_or_else(|| "COMMA".into());
    if !matches!(line_ending.as_str(), "LF" | "CRLF") || delimiter_byte(&delimiter).is_none() {
        return ApiError::bad(
            "INVALIDJOB",
            "lineEnding must be LF or CRLF and columnDelimiter a supported one",
        )
        .into();
    }
    let now = write::now_text();
    let job = BulkJob {
        id: x.org.new_id("750"),
        object: o.name.clone(),
        operation: c.operation,
        external_id_field: key,
        state: "Open".into(),
        api_version: vt.to_owned(),
        line_ending,
        column_delimiter: delimiter,
        created: now.clone(),
        modstamp: now,
        data: None,
        processed: 0,
        failed: 0,
        processing_ms: 0,
        error_message: None,
        successful: String::new(),
        failed_results: String::new(),
        unprocessed: String::new(),
    };
    let info = job.info();
    x.org.put_job(job);
    Reply::ok(info)
}

fn upload(x: &mut Exec<'_>, id: &str, body: &[u8]) -> Reply {
    let Some(mut job) = x.org.jobs.get(id).cloned() else {
        return job_not_found(id);
    };
    if body.len() > MAX_UPLOAD_BYTES {
        return violation(
            x.emu,
            "bulk_upload_size",
            ApiError::bad(
                "BULK_API_ERROR",
                "Request body exceeds the 150 MB (after base64 encoding) limit of a job",
            ),
        );
    }
    if job.data.is_some() {
        return ApiError::bad(
            "BULK_API_ERROR",
            format!(
                "Found multiple contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current Job \
                 then create a new Job and make sure you only do 'PUT' once on a given Job."
            ),
        )
        .into();
    }
    if job.state != "Open" {
        return state_error(&job.state, "Open");
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return ApiError::bad("BULK_API_ERROR", "The CSV must be UTF-8").into();
    };
    x.records = text.lines().count().saturating_sub(1) as u64;
    job.data = Some(text);
    job.modstamp = write::now_text();
    x.org.put_job(job);
    Reply {
        status: StatusCode::CREATED,
        body: Body::Empty,
        headers: Vec::new(),
    }
}

fn change_state(x: &mut Exec<'_>, id: &str, body: &[u8]) -> Reply {
    #[derive(Deserialize)]
    struct Patch {
        state: String,
    }
    let p: Patch = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return ApiError::json(e).into(),
    };
    let Some(mut job) = x.org.jobs.get(id).cloned() else {
        return job_not_found(id);
    };
    match (job.state.as_str(), p.state.as_str()) {
        ("Open", "UploadComplete") => {
            job.state = "UploadComplete".into();
            job.modstamp = write::now_text();
            let info = job.info();
            x.org.put_job(job);
            spawn_processing(x.emu.clone(), id.to_owned());
            Reply::ok(info)
        }
        ("Open" | "UploadComplete" | "InProgress", "Aborted") => {
            job.state = "Aborted".into();
            job.modstamp = write::now_text();
            if job.unprocessed.is_empty() {
                job.unprocessed = job.data.clone().unwrap_or_default();
            }
            let info = job.info();
            x.org.put_job(job);
            Reply::ok(info)
        }
        (from, to) => state_error(from, to),
    }
}

/// Jobs a restart interrupted are processed again (the upserts are idempotent).
pub fn resume_unfinished(emu: &Arc<Emu>) {
    let ids: Vec<String> = emu
        .org_guard()
        .jobs
        .values()
        .filter(|j| matches!(j.state.as_str(), "UploadComplete" | "InProgress"))
        .map(|j| j.id.clone())
        .collect();
    for id in ids {
        spawn_processing(emu.clone(), id);
    }
}

fn spawn_processing(emu: Arc<Emu>, id: String) {
    if tokio::runtime::Handle::try_current().is_err() {
        // Built outside a runtime (unit tests): the job waits for the next start.
        return;
    }
    tokio::spawn(async move {
        process(&emu, &id).await;
    });
}

/// Result CSVs being written, and the counts.
struct Results {
    ok: csv::Writer<Vec<u8>>,
    bad: csv::Writer<Vec<u8>>,
    processed: u64,
    failed: u64,
}

/// Writes one chunk of rows in one org transaction; false when the job was aborted.
#[allow(clippy::too_many_arguments)]
fn process_chunk(
    emu: &Arc<Emu>,
    id: &str,
    job: &BulkJob,
    o: &SObject,
    key: Option<&str>,
    counts: &HashMap<String, usize>,
    chunk: &[Row],
    out: &mut Results,
) -> bool {
    let req = emu.next_req();
    let mut scope = emu.scope(req);
    let mut org = emu.org_guard();
    if org.jobs.get(id).is_none_or(|j| j.state == "Aborted") {
        return false;
    }
    let mut tx = Tx::default();
    for row in chunk {
        let mut fields = row.fields.clone();
        let outcome = match (job.operation.as_str(), key) {
            ("upsert", Some(k)) => match fields.remove(k) {
                Some(Value::String(v)) if counts.get(&v).copied().unwrap_or(0) > 1 => {
                    Err(RecordError::new(
                        "DUPLICATE_VALUE",
                        format!("Duplicate external id specified: {v}"),
                    )
                    .on(&[k]))
                }
                Some(Value::String(v)) => write::write(
                    &mut org,
                    &mut tx,
                    &mut scope,
                    o,
                    Op::Upsert {
                        field: k.to_owned(),
                        value: v,
                    },
                    &fields,
                )
                .map(|w| (w.id, w.created)),
                _ => Err(RecordError::new(
                    "MISSING_ARGUMENT",
                    format!("{k} not specified"),
                )),
            },
            ("delete", _) => match fields.remove("Id") {
                Some(Value::String(rid)) if org.delete(&mut tx, &o.name, &rid) => Ok((rid, false)),
                Some(_) => Err(RecordError::new("ENTITY_IS_DELETED", "entity is deleted")),
                None => Err(RecordError::new("MISSING_ARGUMENT", "Id not specified")),
            },
            ("update", _) => match fields.remove("Id") {
                Some(Value::String(rid)) => write::write(
                    &mut org,
                    &mut tx,
                    &mut scope,
                    o,
                    Op::Update { id: rid },
                    &fields,
                )
                .map(|w| (w.id, w.created)),
                _ => Err(RecordError::new("MISSING_ARGUMENT", "Id not specified")),
            },
            _ => write::write(&mut org, &mut tx, &mut scope, o, Op::Insert, &fields)
                .map(|w| (w.id, w.created)),
        };
        let raw: Vec<&str> = row.raw.iter().map(String::as_str).collect();
        out.processed += 1;
        match outcome {
            Ok((rid, created)) => {
                let flag = if created { "true" } else { "false" };
                csv_line(&mut out.ok, &[&[rid.as_str(), flag][..], &raw].concat());
            }
            Err(e) => {
                out.failed += 1;
                csv_line(
                    &mut out.bad,
                    &[&["", error_text(&e).as_str()][..], &raw].concat(),
                );
            }
        }
    }
    let written = org.commit(tx);
    org.flush();
    drop(org);
    emu.stats.written(&written);
    true
}

/// One parsed row: the original values and the write it asks for.
struct Row {
    raw: Vec<String>,
    fields: Map<String, Value>,
}

fn parse_csv(job: &BulkJob, o: &SObject, data: &str) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(job.delimiter())
        .has_headers(true)
        .from_reader(data.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("InvalidBatch : {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    enum Col {
        Field(String),
        Parent(String, String),
    }
    let mut cols = Vec::with_capacity(headers.len());
    for h in &headers {
        let col = match h.split_once('.') {
            None => o.field(h).map(|f| Col::Field(f.name.clone())),
            Some((rel, key)) => o.relationship(rel).map(|f| {
                Col::Parent(
                    f.relationship_name.clone().unwrap_or_default(),
                    key.to_owned(),
                )
            }),
        };
        cols.push(col.ok_or_else(|| format!("InvalidBatch : Field name not found : {h}"))?);
    }
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| format!("InvalidBatch : {e}"))?;
        let raw: Vec<String> = rec.iter().map(str::to_owned).collect();
        let mut fields = Map::new();
        for (col, v) in cols.iter().zip(&raw) {
            // An empty cell leaves the field as it is; #N/A clears it.
            if v.is_empty() {
                continue;
            }
            let value = if v == "#N/A" {
                Value::Null
            } else {
                Value::String(v.clone())
            };
            match col {
                Col::Field(f) => {
                    fields.insert(f.clone(), value);
                }
                Col::Parent(rel, key) => {
                    let mut m = Map::new();
                    m.insert(key.clone(), value);
                    fields.insert(rel.clone(), Value::Object(m));
                }
            }
        }
        rows.push(Row { raw, fields });
    }
    Ok((headers, rows))
}

fn csv_line(out: &mut csv::Writer<Vec<u8>>, cells: &[&str]) {
    // Writing to a Vec cannot fail.
    let _ = out.write_record(cells);
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn error_text(e: &RecordError) -> String {
    format!("{}:{}:{} --", e.code, e.message, e.fields.join(","))
}

async fn process(emu: &Arc<Emu>, id: &str) {
    let started = Instant::now();
    let (job, o) = {
        let mut org = emu.org_guard();
        let Some(mut job) = org.jobs.get(id).cloned() else {
            return;
        };
        if job.state != "UploadComplete" && job.state != "InProgress" {
            return;
        }
        job.state = "InProgress".into();
        job.modstamp = write::now_text();
        org.put_job(job.clone());
        org.flush();
        let Some(o) = emu.schema.object(&job.object) else {
            return;
        };
        (job, o)
    };
    let data = job.data.clone().unwrap_or_default();
    let (headers, rows) = match parse_csv(&job, o, &data) {
        Ok(p) => p,
        Err(why) => {
            let mut org = emu.org_guard();
            if let Some(mut j) = org.jobs.get(id).cloned() {
                j.state = "Failed".into();
                j.error_message = Some(why);
                j.unprocessed = data.clone();
                j.modstamp = write::now_text();
                org.put_job(j);
                org.flush();
            }
            return;
        }
    };
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut ok = writer();
    let mut bad = writer();
    let mut rest = writer();
    csv_line(
        &mut ok,
        &[&["sf__Id", "sf__Created"][..], &header_refs].concat(),
    );
    csv_line(
        &mut bad,
        &[&["sf__Id", "sf__Error"][..], &header_refs].concat(),
    );
    csv_line(&mut rest, &header_refs);
    let key = job.external_id_field.clone();
    let mut counts: HashMap<String, usize> = HashMap::new();
    if let Some(k) = &key {
        for r in &rows {
            if let Some(Value::String(v)) = r.fields.get(k) {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
    }
    let mut out = Results {
        ok,
        bad,
        processed: 0,
        failed: 0,
    };
    let mut aborted_at = None;
    for (chunk_no, chunk) in rows.chunks(CHUNK).enumerate() {
        let pace = emu.faults().bulk_chunk_ms;
        if pace > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(pace)).await;
        }
        if !process_chunk(emu, id, &job, o, key.as_deref(), &counts, chunk, &mut out) {
            aborted_at = Some(chunk_no * CHUNK);
            break;
        }
        tokio::task::yield_now().await;
    }
    let Results {
        ok,
        bad,
        processed,
        failed,
    } = out;
    if let Some(from) = aborted_at {
        for row in &rows[from..] {
            let raw: Vec<&str> = row.raw.iter().map(String::as_str).collect();
            csv_line(&mut rest, &raw);
        }
    }
    let mut org = emu.org_guard();
    let Some(mut j) = org.jobs.get(id).cloned() else {
        return;
    };
    j.processed = processed;
    j.failed = failed;
    j.processing_ms = started.elapsed().as_millis() as u64;
    j.successful = finish(ok);
    j.failed_results = finish(bad);
    j.unprocessed = finish(rest);
    if j.state != "Aborted" {
        j.state = "JobComplete".into();
    }
    j.modstamp = write::now_text();
    org.put_job(j);
    org.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::Schema;

    fn job(delimiter: &str) -> BulkJob {
        BulkJob {
            id: "750".into(),
            object: "HealthcareProvider".into(),
            operation: "upsert".into(),
            external_id_field: Some("OneKey_Id__c".into()),
            state: "InProgress".into(),
            api_version: "v63.0".into(),
            line_ending: "LF".into(),
            column_delimiter: delimiter.into(),
            created: String::new(),
            modstamp: String::new(),
            data: None,
            processed: 0,
            failed: 0,
            processing_ms: 0,
            error_message: None,
            successful: String::new(),
            failed_results: String::new(),
            unprocessed: String::new(),
        }
    }

    #[test]
    fn csv_rows_become_fields_and_parent_references() {
        let schema = Schema::default_org();
        let o = schema.object("HealthcareProvider").unwrap();
        let data = "onekey_id__c,Name,IsActive,ProfessionalTitle,Account.OneKey_Id__c\n\
                    H1,\"Lee, Ann \"\"Dr\"\"\",true,,W1\nH2,Bo,false,#N/A,W2\n";
        let (headers, rows) = parse_csv(&job("COMMA"), o, data).unwrap();
        assert_eq!(headers[0], "onekey_id__c");
        assert_eq!(rows.len(), 2);
        let r = &rows[0].fields;
        assert_eq!(r["OneKey_Id__c"], "H1");
        assert_eq!(r["Name"], "Lee, Ann \"Dr\"");
        assert!(
            !r.contains_key("ProfessionalTitle"),
            "an empty cell leaves the field alone"
        );
        assert_eq!(r["Account"], json!({"OneKey_Id__c": "W1"}));
        assert_eq!(
            rows[1].fields["ProfessionalTitle"],
            Value::Null,
            "#N/A clears"
        );
        assert_eq!(rows[0].raw[1], "Lee, Ann \"Dr\"");
    }

    #[test]
    fn other_delimiters_and_unknown_headers() {
        let schema = Schema::default_org();
        let o = schema.object("Account").unwrap();
        let (_, rows) = parse_csv(&job("PIPE"), o, "OneKey_Id__c|Name\nA|B, C\n").unwrap();
        assert_eq!(rows[0].fields["Name"], "B, C");
        let err = parse_csv(&job("COMMA"), o, "OneKey_Id__c,Bogus\nA,B\n")
            .err()
            .unwrap();
        assert_eq!(err, "InvalidBatch : Field name not found : Bogus");
        let err = parse_csv(&job("COMMA"), o, "OneKey_Id__c,Nope.OneKey_Id__c\nA,B\n")
            .err()
            .unwrap();
        assert!(err.ends_with("Nope.OneKey_Id__c"));
    }

    #[test]
    fn result_csv_quotes_every_cell() {
        let mut w = writer();
        csv_line(&mut w, &["sf__Id", "sf__Created", "a,b"]);
        assert_eq!(finish(w), "\"sf__Id\",\"sf__Created\",\"a,b\"\n");
        let e = RecordError::new(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
        )
        .on(&["Name"]);
        assert_eq!(
            error_text(&e),
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
        );
    }
}
