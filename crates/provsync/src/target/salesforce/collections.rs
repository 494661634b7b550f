//! sObject Collections upsert: up to 200 records of one object per request.

use provsync_core::mapped::MappedRecord;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Body, Client};
use super::graph::{explain, GraphResult};
use super::wire::{self, SaveResult};
use super::SfError;

/// One record of a collection request: the object, its external id and fields.
#[derive(Debug, Clone)]
pub struct FlatRecord<'a> {
    /// Object.
    pub table: &'a str,
    /// External id value.
    pub key: &'a str,
    /// Field values.
    pub fields: &'a [(String, Value)],
    /// The mapped record it comes from (for error messages).
    pub origin: &'a MappedRecord,
    /// Whether it is the origin itself (not one of its children).
    pub root: bool,
}

impl<'a> FlatRecord<'a> {
    /// A mapped record itself (not one of its children).
    pub fn of(r: &'a MappedRecord) -> FlatRecord<'a> {
        FlatRecord {
            table: &r.table,
            key: r.target_key(),
            fields: &r.fields,
            origin: r,
            root: true,
        }
    }
}

/// Upserts records of one object (at most 200) and returns a result per record.
pub async fn upsert(
    client: &Client,
    records: &[FlatRecord<'_>],
) -> Result<Vec<GraphResult>, SfError> {
    let Some(first) = records.first() else {
        return Ok(Vec::new());
    };
    debug_assert!(records.len() <= super::plan::MAX_COLLECTION);
    debug_assert!(records.iter().all(|r| r.table == first.table));
    let ext = &client.config().external_id_field;
    let body: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut b = wire::body(r.fields);
            b.insert("attributes".into(), json!({"type": r.table}));
            b.insert(ext.clone(), json!(r.key));
            Value::Object(b)
        })
        .collect();
    let path = format!(
        "{}/composite/sobjects/{}/{ext}",
        client.data_path(),
        first.table
    );
    let resp = client
        .call(
            Method::PATCH,
            &path,
            &Body::Json(json!({"allOrNone": false, "records": body})),
        )
        .await?;
    let results: Vec<SaveResult> = resp.ok()?.json()?;
    if results.len() != records.len() {
        return Err(SfError::Protocol(format!(
            "{} results for {} records",
            results.len(),
            records.len()
        )));
    }
    Ok(records
        .iter()
        .zip(results)
        .map(|(r, res)| result_of(r, res))
        .collect())
}

fn result_of(r: &FlatRecord<'_>, res: SaveResult) -> GraphResult {
    if res.success {
        return GraphResult::Written(res.id);
    }
    if res.errors.is_empty() || res.errors.iter().all(|e| wire::is_retryable(&e.code)) {
        return GraphResult::Retry(
            res.errors
                .first()
                .map(|e| e.code.clone())
                .unwrap_or_else(|| "no result".into()),
        );
    }
    if res.errors.iter().any(wire::is_missing_reference) {
        return GraphResult::Failed(format!(
            "{}{}",
            UNRESOLVED,
            wire::describe_errors(r.table, r.key, &res.errors)
        ));
    }
    GraphResult::Failed(
        res.errors
            .iter()
            .filter(|e| !wire::is_retryable(&e.code))
            .map(|e| explain(r.table, r.key, e, r.origin, r.root))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Prefix marking a failure as a missing reference (the link's end is not loaded).
pub const UNRESOLVED: &str = "unresolved reference: ";
