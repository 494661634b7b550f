//! REST under `/services/data/vNN.0/`: the request executor shared by top-level calls
//! and composite subrequests, the route table, and the sObject resources (describe,
//! create, read, update, delete, upsert by external id), `/limits` and `/sobjects`.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::errors::{ApiError, RecordError};
use super::limits::CallScope;
use super::schema::{self, SObject};
use super::store::{Org, Tx};
use super::write::{self, Op};
use super::{
    bulk, collections, composite, epoch_secs, graph, query, Emu, LATEST_VERSION, OLDEST_VERSION,
};

/// What a handler answers.
#[derive(Debug, Clone)]
pub enum Body {
    /// JSON.
    Json(Value),
    /// CSV text (Bulk results).
    Csv(String),
    /// Nothing (204).
    Empty,
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Body,
    /// Extra headers (`Location`, ...).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: StatusCode, v: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(v),
            headers: Vec::new(),
        }
    }

    /// 200 with JSON.
    pub fn ok(v: Value) -> Reply {
        Reply::json(StatusCode::OK, v)
    }

    /// 204.
    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: Body::Empty,
            headers: Vec::new(),
        }
    }

    /// The JSON body (Null for others).
    pub fn json_body(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            Body::Csv(s) => Value::String(s.clone()),
            Body::Empty => Value::Null,
        }
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json(e.status, e.body())
    }
}

/// One request being executed, with the org locked and its transaction open.
pub struct Exec<'a> {
    /// The emulator.
    pub emu: &'a std::sync::Arc<Emu>,
    /// The org (locked for the whole request).
    pub org: &'a mut Org,
    /// The request's undo log.
    pub tx: &'a mut Tx,
    /// Row locks held.
    pub scope: &'a mut CallScope,
    /// Stats kind of the top-level call (set by the handler).
    pub kind: &'static str,
    /// Records in the request (for the stats' largest request).
    pub records: u64,
    /// Graph nodes in the request.
    pub graph_nodes: u64,
}

/// The REST API's duplicate rule header (API 52.0 and later): "allowSave=true"
/// lets records matching a duplicate rule that alerts be saved
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_duplicaterules.htm).
pub const DUPLICATE_RULE_HEADER: &str = "Sforce-Duplicate-Rule-Header";

/// Whether a duplicate rule header value sets `allowSave=true` (fields are
/// `name=value` pairs separated by `;`; every field defaults to false).
pub fn allows_save(value: &str) -> bool {
    value.split(';').any(|part| {
        part.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("allowSave") && v.trim().eq_ignore_ascii_case("true")
        })
    })
}

/// A parsed API version (`v63.0` -> 63.0), when served.
pub fn parse_version(v: &str) -> Option<f64> {
    let n: f64 = v.strip_prefix('v')?.parse().ok()?;
    (OLDEST_VERSION..=LATEST_VERSION).contains(&n).then_some(n)
}

/// Why a version segment is not served. A retired version (below 31.0) answers 410:
/// "If you request any resource or use an operation from a retired API version, REST
/// API returns the 410:GONE error code" (REST API Developer Guide, "API End-of-Life
/// Policy", https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/api_rest_eol.htm:
/// versions 21.0 to 30.0 are retired since Summer '25). Anything else (a version not
/// released yet, no version) is an unknown resource, 404. The 410 body is a guess:
/// the SOAP API's code for a retired version, `UNSUPPORTED_API_VERSION`.
fn unserved_version(text: &str) -> ApiError {
    let retired = text
        .strip_prefix('v')
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|n| n < OLDEST_VERSION);
    if retired {
        ApiError::new(
            StatusCode::GONE,
            "UNSUPPORTED_API_VERSION",
            format!("API version {text} is retired"),
        )
    } else {
        ApiError::not_found()
    }
}

/// The `/services/data/` list of versions.
pub fn versions() -> Value {
    let mut v = Vec::new();
    let mut n = OLDEST_VERSION;
    while n <= LATEST_VERSION {
        v.push(json!({"label": "Emulated", "url": format!("/services/data/v{n:.1}"), "version": format!("{n:.1}")}));
        n += 1.0;
    }
    Value::Array(v)
}

/// A limit violation: recorded in stats and answered with the error.
pub fn violation(emu: &Emu, limit: &str, e: ApiError) -> Reply {
    emu.stats.violation(limit, &e.message);
    e.into()
}

impl<'a> Exec<'a> {
    /// Routes one request. `path` is what follows `/services/data/` (`v63.0/...`).
    pub fn dispatch(
        &mut self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let path = path.trim_end_matches('/');
        let mut parts = path.split('/');
        let Some(version_text) = parts.next() else {
            return ApiError::not_found().into();
        };
        let Some(version) = parse_version(version_text) else {
            return unserved_version(version_text).into();
        };
        let segs: Vec<String> = parts.map(percent_decode).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = method.clone();
        match (m, segs.as_slice()) {
            (Method::GET, []) => {
                self.kind = "resources";
                Reply::ok(json!({
                    "sobjects": format!("/services/data/{version_text}/sobjects"),
                    "query": format!("/services/data/{version_text}/query"),
                    "composite": format!("/services/data/{version_text}/composite"),
                    "limits": format!("/services/data/{version_text}/limits"),
                    "jobs": format!("/services/data/{version_text}/jobs"),
                }))
            }
            (Method::GET, ["limits"]) => {
                self.kind = "limits";
                self.limits()
            }
            (Method::GET, ["sobjects"]) => {
                self.kind = "describe_global";
                self.describe_global(version, version_text)
            }
            (_, ["sobjects", object, rest @ ..]) => {
                let Some(o) = self.object(object, version) else {
                    return ApiError::not_found().into();
                };
                self.sobject(method, o, rest, version_text, body)
            }
            (Method::PATCH, ["composite", "sobjects", object, field]) => {
                self.kind = "collections_upsert";
                if version < 46.0 {
                    return ApiError::not_found().into();
                }
                collections::upsert(self, object, field, version, body)
            }
            (m @ (Method::POST | Method::PATCH), ["composite", "sobjects"]) => {
                let update = m == Method::PATCH;
                self.kind = if update {
                    "collections_update"
                } else {
                    "collections_create"
                };
                if version < 42.0 {
                    return ApiError::not_found().into();
                }
                collections::save(self, version, body, update)
            }
            (Method::POST, ["composite", "graph"]) => {
                self.kind = "graph";
                if version < 50.0 {
                    return ApiError::not_found().into();
                }
                graph::handle(self, version_text, body)
            }
            (Method::POST, ["composite"]) => {
                self.kind = "composite";
                composite::handle(self, body)
            }
            (Method::GET, ["query"]) => {
                self.kind = "query";
                query::handle(self, version, version_text, query)
            }
            (Method::GET, ["query", locator]) => {
                self.kind = "query_more";
                query::more(self, locator)
            }
            (_, ["jobs", "ingest", rest @ ..]) => {
                bulk::route(self, method, rest, version_text, body)
            }
            _ => ApiError::not_found().into(),
        }
    }

    /// The object by name, if the org has it at this version.
    pub fn object(&self, name: &str, version: f64) -> Option<&'a SObject> {
        let emu: &'a Emu = self.emu;
        emu.schema.object(name).filter(|o| o.available_at(version))
    }

    fn limits(&mut self) -> Reply {
        let (used, max) = (
            self.org.calls.used(epoch_secs(), self.emu.window_secs),
            self.emu
                .api_budget
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let long = self.emu.max_long_calls as u64;
        Reply::ok(json!({
            "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "ConcurrentPerOrgLongTxn": {"Max": long, "Remaining": long},
        }))
    }

    fn describe_global(&self, version: f64, version_text: &str) -> Reply {
        let objects: Vec<Value> = self
            .emu
            .schema
            .objects()
            .iter()
            .filter(|o| o.available_at(version))
            .map(|o| {
                json!({"name": o.name, "label": o.label.as_deref().unwrap_or(&o.name),
                       "keyPrefix": o.key_prefix, "custom": o.name.ends_with("__c"),
                       "queryable": true, "createable": true, "updateable": true,
                       "urls": {"sobject": format!("/services/data/{version_text}/sobjects/{}", o.name),
                                "describe": format!("/services/data/{version_text}/sobjects/{}/describe", o.name)}})
            })
            .collect();
        Reply::ok(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects}))
    }

    /// The describe answer of an object.
    pub fn describe(&self, o: &SObject, version_text: &str) -> Value {
        let org = &*self.org;
        schema::describe(o, version_text, |f| match &f.value_set_name {
            Some(name) => org
                .value_set(
                    f.value_set_type.as_deref().unwrap_or("GlobalValueSet"),
                    name,
                )
                .map(|vs| {
                    vs.values
                        .iter()
                        .filter(|v| v.active)
                        .map(|v| schema::DescribedValue {
                            value: v.full_name.clone(),
                            label: v.label.clone(),
                            default: v.default,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => f
                .picklist_values
                .iter()
                .filter(|v| v.active)
                .map(|v| schema::DescribedValue {
                    value: v.value.clone(),
                    label: v.label.clone().unwrap_or_else(|| v.value.clone()),
                    default: false,
                })
                .collect(),
        })
    }

    fn sobject(
        &mut self,
        method: &Method,
        o: &'a SObject,
        rest: &[&str],
        vt: &str,
        body: &[u8],
    ) -> Reply {
        match (method.clone(), rest) {
            (Method::GET, ["describe"]) => {
                self.kind = "describe";
                Reply::ok(self.describe(o, vt))
            }
            (Method::GET, []) => {
                self.kind = "describe";
                Reply::ok(
                    json!({"objectDescribe": {"name": o.name, "keyPrefix": o.key_prefix}, "recentItems": []}),
                )
            }
            (Method::POST, []) => {
                self.kind = "sobject_create";
                let Ok(fields) = parse_object(body) else {
                    return ApiError::json("Unexpected body: a JSON object is required").into();
                };
                self.records = 1;
                match self.write_one(o, Op::Insert, &fields) {
                    Ok(w) => Reply::json(
                        StatusCode::CREATED,
                        json!({"id": w.id, "success": true, "errors": []}),
                    ),
                    Err(e) => single_error(&e),
                }
            }
            (m, [id]) => {
                self.kind = match m {
                    Method::GET => "sobject_read",
                    Method::DELETE => "sobject_delete",
                    _ => "sobject_update",
                };
                self.by_id(&m, o, id, vt, body)
            }
            (m, [field, value]) => self.by_key(&m, o, field, value, vt, body),
            _ => ApiError::not_found().into(),
        }
    }

    fn by_id(&mut self, m: &Method, o: &'a SObject, id: &str, vt: &str, body: &[u8]) -> Reply {
        let id18 = match self.org.find_id(id) {
            Some((obj, r)) if obj == o.name => {
                r.get("Id").and_then(Value::as_str).unwrap_or(id).to_owned()
            }
            _ => return ApiError::not_found().into(),
        };
        match *m {
            Method::GET => Reply::ok(self.record_json(o, &id18, vt)),
            Method::DELETE => {
                self.org.delete(self.tx, &o.name, &id18);
                Reply::no_content()
            }
            Method::PATCH => {
                let Ok(fields) = parse_object(body) else {
                    return ApiError::json("Unexpected body: a JSON object is required").into();
                };
                self.records = 1;
                match self.write_one(o, Op::Update { id: id18 }, &fields) {
                    Ok(_) => Reply::no_content(),
                    Err(e) => single_error(&e),
                }
            }
            _ => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "HTTP Method not allowed",
            )
            .into(),
        }
    }

    fn by_key(
        &mut self,
        m: &Method,
        o: &'a SObject,
        field: &str,
        value: &str,
        vt: &str,
        body: &[u8],
    ) -> Reply {
        let Some(f) = o.field(field).filter(|f| f.is_key()) else {
            self.kind = "sobject_upsert";
            return ApiError::not_an_external_id(field).into();
        };
        let found: Vec<String> = self.org.find_by_key(&o.name, &f.name, value).to_vec();
        match *m {
            Method::GET => {
                self.kind = "sobject_read";
                match found.as_slice() {
                    [id] => Reply::ok(self.record_json(o, id, vt)),
                    [] => ApiError::not_found().into(),
                    many => multiple_choices(o, many, vt),
                }
            }
            Method::DELETE => {
                self.kind = "sobject_delete";
                match found.as_slice() {
                    [id] => {
                        self.org.delete(self.tx, &o.name, id);
                        Reply::no_content()
                    }
                    [] => ApiError::not_found().into(),
                    many => multiple_choices(o, many, vt),
                }
            }
            // Composite graph lists POST on this resource as an upsert as well.
            Method::PATCH | Method::POST => {
                self.kind = "sobject_upsert";
                let Ok(fields) = parse_object(body) else {
                    return ApiError::json("Unexpected body: a JSON object is required").into();
                };
                if found.len() > 1 {
                    return multiple_choices(o, &found, vt);
                }
                // The key is the URL's: the body may repeat it, not contradict it.
                let conflicting = fields.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("Id")
                        || (k.eq_ignore_ascii_case(&f.name) && v.as_str() != Some(value))
                });
                if conflicting {
                    return ApiError::bad(
                        "INVALID_FIELD",
                        format!(
                            "The body of an upsert by {} must not set Id or another {} value",
                            f.name, f.name
                        ),
                    )
                    .into();
                }
                self.records = 1;
                let op = Op::Upsert {
                    field: f.name.clone(),
                    value: value.to_owned(),
                };
                match self.write_one(o, op, &fields) {
                    Ok(w) => Reply::json(
                        if w.created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        },
                        json!({"id": w.id, "success": true, "errors": [], "created": w.created}),
                    ),
                    Err(e) => single_error(&e),
                }
            }
            _ => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "HTTP Method not allowed",
            )
            .into(),
        }
    }

    /// One record write in this request's transaction.
    pub fn write_one(
        &mut self,
        o: &SObject,
        op: Op,
        fields: &Map<String, Value>,
    ) -> Result<write::Written, RecordError> {
        write::write(self.org, self.tx, self.scope, o, op, fields)
    }

    /// A record as the REST API returns it (with `attributes`).
    pub fn record_json(&self, o: &SObject, id: &str, vt: &str) -> Value {
        let mut out = Map::new();
        out.insert("attributes".into(), attributes(o, id, vt));
        let r = self.org.get(&o.name, id);
        for f in &o.fields {
            out.insert(
                f.name.clone(),
                r.and_then(|r| r.get(&f.name))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    }
}

/// `attributes` of a record.
pub fn attributes(o: &SObject, id: &str, vt: &str) -> Value {
    json!({"type": o.name, "url": format!("/services/data/{vt}/sobjects/{}/{id}", o.name)})
}

fn multiple_choices(o: &SObject, ids: &[String], vt: &str) -> Reply {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("/services/data/{vt}/sobjects/{}/{id}", o.name))
        .collect();
    Reply::json(StatusCode::MULTIPLE_CHOICES, json!(urls))
}

fn single_error(e: &RecordError) -> Reply {
    Reply::json(e.http_status(), json!([e.rest_json()]))
}

/// A JSON object body.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Decodes `%XX` escapes of a path segment.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_api_version_answers_gone() {
        assert_eq!(unserved_version("v30.0").status, StatusCode::GONE);
        assert_eq!(unserved_version("v66.0").status, StatusCode::NOT_FOUND);
        assert_eq!(unserved_version("latest").status, StatusCode::NOT_FOUND);
        assert_eq!(parse_version("v31.0"), Some(31.0));
    }
}
