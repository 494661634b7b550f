//! sObject Collections: upsert (`PATCH /composite/sobjects/{Object}/{ExternalIdField}`,
//! at most 200 records of the URL's type, one UpsertResult per record with
//! `statusCode` errors, all-or-none rollback, the same external id twice failing those
//! records), create (`POST /composite/sobjects`) and update by id (`PATCH
//! /composite/sobjects`).

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::errors::{ApiError, RecordError};
use super::rest::{violation, Exec, Reply};
use super::store::key_text;
use super::write::Op;

/// Records per collections request: "The list can contain up to 200 objects" (REST API
/// Developer Guide, "Upsert Records Using sObject Collections",
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_upsert.htm;
/// the create and update pages say the same).
pub const MAX_RECORDS: usize = 200;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

/// Handles a collections upsert.
pub fn upsert(x: &mut Exec<'_>, object: &str, field: &str, version: f64, body: &[u8]) -> Reply {
    let Some(o) = x.object(object, version) else {
        return ApiError::invalid_type(object).into();
    };
    let Some(key) = o.field(field).filter(|f| f.is_key()) else {
        return ApiError::bad(
            "INVALID_FIELD",
            format!(
                "Field name provided, {field} is not an External ID or indexed field for {}",
                o.name
            ),
        )
        .into();
    };
    let req = match request(x, body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    for r in &req.records {
        let kind = r
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        match kind {
            Some(t) if t.eq_ignore_ascii_case(&o.name) => {}
            Some(t) => {
                return violation(
                    x.emu,
                    "collections_one_type",
                    ApiError::bad(
                        "INVALID_TYPE",
                        format!(
                            "Record of type {t} does not match the type {} in the request URI",
                            o.name
                        ),
                    ),
                )
            }
            None => {
                return ApiError::bad("INVALID_TYPE", "Must specify a type in the attributes map")
                    .into();
            }
        }
        // Unknown fields fail the request's deserialization, before any record is written.
        for name in r.keys() {
            if name != "attributes" && o.field(name).is_none() && o.relationship(name).is_none() {
                return ApiError::bad(
                    "INVALID_FIELD",
                    format!("No such column '{name}' on sobject of type {}", o.name),
                )
                .into();
            }
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &req.records {
        if let Some(v) = r.get(&key.name).and_then(key_text) {
            *seen.entry(v).or_default() += 1;
        }
    }
    let mark = x.tx.mark();
    let mut results: Vec<Result<(String, bool), RecordError>> =
        Vec::with_capacity(req.records.len());
    for r in &req.records {
        let value = r.get(&key.name).and_then(key_text);
        let outcome = match value {
            None => Err(RecordError::new(
                "MISSING_ARGUMENT",
                format!("{} not specified", key.name),
            )),
            Some(v) if seen.get(&v).copied().unwrap_or(0) > 1 => Err(RecordError::new(
                "DUPLICATE_VALUE",
                format!("Duplicate external id specified: {v}"),
            )
            .on(&[key.name.as_str()])),
            Some(v) => {
                let mut fields = r.clone();
                fields.remove(&key.name);
                x.write_one(
                    o,
                    Op::Upsert {
                        field: key.name.clone(),
                        value: v,
                    },
                    &fields,
                )
                .map(|w| (w.id, w.created))
            }
        };
        if let Err(e) = &outcome {
            if e.request_level {
                x.org.rollback_to(x.tx, mark);
                return Reply::json(StatusCode::BAD_REQUEST, json!([e.rest_json()]));
            }
        }
        results.push(outcome);
    }
    answer(x, mark, req.all_or_none, Answer::Upsert, results)
}

/// Which result shape a collections call answers with.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// UpsertResult: carries `created`.
    Upsert,
    /// SaveResult (create, update): no `created`.
    Save,
}

/// The per-record answers of a collections call, in request order; with
/// all-or-none, one failure rolls every record back.
fn answer(
    x: &mut Exec<'_>,
    mark: usize,
    all_or_none: bool,
    shape: Answer,
    results: Vec<Result<(String, bool), RecordError>>,
) -> Reply {
    let failed = results.iter().any(Result::is_err);
    if all_or_none && failed {
        x.org.rollback_to(x.tx, mark);
    }
    let out: Vec<Value> = results
        .into_iter()
        .map(|r| {
            let (mut v, created) = match r {
                Ok(_) if all_or_none && failed => (
                    json!({"id": null, "success": false, "errors": [rolled_back()]}),
                    false,
                ),
                Ok((id, created)) => (json!({"id": id, "success": true, "errors": []}), created),
                Err(e) => (
                    json!({"id": null, "success": false, "errors": [e.collection_json()]}),
                    false,
                ),
            };
            if shape == Answer::Upsert {
                v["created"] = json!(created);
            }
            v
        })
        .collect();
    Reply::ok(Value::Array(out))
}

/// The UpsertResult/SaveResult of a record rolled back by `allOrNone` (the guide's
/// "allOrNone Parameters in Composite and Collections Requests" documents the rollback;
/// the code and message are the ones orgs answer, as users quote them: a guess).
fn rolled_back() -> Value {
    json!({"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
           "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
           "fields": []})
}

/// The request body, counted for the stats, within the 200-record limit. Over it,
/// `EXCEEDED_ID_LIMIT` with the message orgs answer as users quote it (the guide
/// names no code: a guess).
fn request(x: &mut Exec<'_>, body: &[u8]) -> Result<Request, Reply> {
    let req: Request = serde_json::from_slice(body).map_err(|e| Reply::from(ApiError::json(e)))?;
    x.records = req.records.len() as u64;
    if req.records.len() > MAX_RECORDS {
        return Err(violation(
            x.emu,
            "collections_records",
            ApiError::bad(
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            ),
        ));
    }
    Ok(req)
}

/// Handles sObject Collections create (`POST /composite/sobjects`) and update by id
/// (`PATCH /composite/sobjects`): at most 200 records, each naming its type, one
/// SaveResult per record, all-or-none rollback.
pub fn save(x: &mut Exec<'_>, version: f64, body: &[u8], update: bool) -> Reply {
    let req = match request(x, body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let mut objects = Vec::with_capacity(req.records.len());
    for r in &req.records {
        let kind = r
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        let Some(kind) = kind else {
            return ApiError::bad("INVALID_TYPE", "Must specify a type in the attributes map")
                .into();
        };
        let Some(o) = x.object(kind, version) else {
            return ApiError::invalid_type(kind).into();
        };
        for name in r.keys() {
            let known = name == "attributes"
                || (update && name.eq_ignore_ascii_case("Id"))
                || o.field(name).is_some()
                || o.relationship(name).is_some();
            if !known {
                return ApiError::bad(
                    "INVALID_FIELD",
                    format!("No such column '{name}' on sobject of type {}", o.name),
                )
                .into();
            }
        }
        objects.push(o);
    }
    let mark = x.tx.mark();
    let mut results: Vec<Result<String, RecordError>> = Vec::with_capacity(req.records.len());
    for (r, o) in req.records.iter().zip(objects) {
        let mut fields = r.clone();
        let id = fields
            .keys()
            .find(|k| k.eq_ignore_ascii_case("Id"))
            .cloned()
            .and_then(|k| fields.remove(&k))
            .and_then(|v| v.as_str().map(str::to_owned));
        let outcome = match (update, id) {
            (true, Some(id)) => x.write_one(o, Op::Update { id }, &fields).map(|w| w.id),
            (true, None) => Err(RecordError::new(
                "MISSING_ARGUMENT",
                "Id not specified in an update call",
            )),
            (false, Some(_)) => Err(RecordError::new(
                "INVALID_FIELD",
                "cannot specify Id in an insert call",
            )
            .on(&["Id"])),
            (false, None) => x.write_one(o, Op::Insert, &fields).map(|w| w.id),
        };
        if let Err(e) = &outcome {
            if e.request_level {
                x.org.rollback_to(x.tx, mark);
                return Reply::json(StatusCode::BAD_REQUEST, json!([e.rest_json()]));
            }
        }
        results.push(outcome);
    }
    let results = results
        .into_iter()
        .map(|r| r.map(|id| (id, false)))
        .collect();
    answer(x, mark, req.all_or_none, Answer::Save, results)
}
