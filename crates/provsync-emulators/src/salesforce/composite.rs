//! Composite: `POST /composite` with at most 25 subrequests (at most 5 of them
//! collections or queries), `@{ref.field}` references to earlier results, allOrNone;
//! always HTTP 200 with one compositeResponse item per subrequest.

use std::collections::HashMap;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::{processing_halted, ApiError};
use super::rest::{violation, Body, Exec, Reply};

/// Subrequests per composite request, and how many of them may be sObject Collections
/// or query operations: REST API Developer Guide, "Composite"
/// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_composite.htm:
/// "up to 25 subrequests", "up to 5 of these" query or collections operations). The
/// guide names no error code for going over: `LIMIT_EXCEEDED` and its message are a
/// guess.
pub const MAX_SUBREQUESTS: usize = 25;
/// See [`MAX_SUBREQUESTS`].
pub const MAX_COLLECTIONS_OR_QUERIES: usize = 5;

/// One subrequest (also a composite graph node).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sub {
    /// HTTP method.
    pub method: String,
    /// `/services/data/vNN.0/...`.
    pub url: String,
    /// Name later subrequests refer to.
    pub reference_id: String,
    /// JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// Headers of this subrequest alone.
    #[serde(default)]
    pub http_headers: HashMap<String, String>,
}

impl Sub {
    /// The subrequest's own `Sforce-Duplicate-Rule-Header` sets `allowSave=true`.
    /// Subrequests inherit only Accept, Authorization and Content-Type from the
    /// top-level request; any other header goes in their `httpHeaders` (REST API
    /// Developer Guide, Composite Subrequest and Composite Graph's subrequest:
    /// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_graph_composite_subrequest.htm).
    fn allows_save(&self) -> bool {
        self.http_headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(super::rest::DUPLICATE_RULE_HEADER)
                && super::rest::allows_save(v)
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    all_or_none: bool,
    composite_request: Vec<Sub>,
}

/// The reference ids a text refers to with `@{ref.…}`.
pub fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("@{") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else { break };
        let expr = &after[..end];
        let name = expr.split(['.', '[']).next().unwrap_or_default();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        rest = &after[end..];
    }
    out
}

/// Replaces every `@{ref.path}` with the value at that path of the named earlier
/// result; `Err` names the first expression that has no value.
pub fn substitute(text: &str, results: &HashMap<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("@{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(after.to_owned());
        };
        let expr = &after[..end];
        let value = lookup(expr, results).ok_or_else(|| expr.to_owned())?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(expr: &str, results: &HashMap<String, Value>) -> Option<String> {
    let mut parts = expr.split('.');
    let mut v = results.get(parts.next()?)?;
    for part in parts {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, Some(i.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        if !name.is_empty() {
            v = v.get(name)?;
        }
        if let Some(i) = index {
            v = v.get(i)?;
        }
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The message of a subrequest whose reference has no value.
pub fn bad_reference(expr: &str) -> String {
    let name = expr.split(['.', '[']).next().unwrap_or_default();
    format!(
        "Invalid reference specified. No value for {expr} found in {name}. Provided referenceId \
         ('{name}') must be the referenceId of a previous successful subrequest"
    )
}

/// Runs one subrequest inside the caller's transaction; `Err` when a reference fails.
pub fn run_sub(x: &mut Exec<'_>, sub: &Sub, results: &HashMap<String, Value>) -> Reply {
    let url = match substitute(&sub.url, results) {
        Ok(u) => u,
        Err(expr) => {
            return Reply::json(
                axum::http::StatusCode::BAD_REQUEST,
                processing_halted(&bad_reference(&expr)),
            )
        }
    };
    let body = match &sub.body {
        Some(b) => match substitute(&b.to_string(), results) {
            Ok(t) => t.into_bytes(),
            Err(expr) => {
                return Reply::json(
                    axum::http::StatusCode::BAD_REQUEST,
                    processing_halted(&bad_reference(&expr)),
                )
            }
        },
        None => Vec::new(),
    };
    let Some(path) = url.strip_prefix("/services/data/") else {
        return ApiError::not_found().into();
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let Ok(method) = Method::from_bytes(sub.method.to_ascii_uppercase().as_bytes()) else {
        return ApiError::bad(
            "INVALID_INPUT",
            format!("Unsupported method {}", sub.method),
        )
        .into();
    };
    let (kind, allow_save) = (x.kind, x.scope.allow_save);
    x.scope.allow_save = sub.allows_save();
    let reply = x.dispatch(&method, path, query, &body);
    (x.kind, x.scope.allow_save) = (kind, allow_save);
    reply
}

/// One compositeResponse item.
pub fn item(reply: &Reply, reference_id: &str) -> Value {
    let headers: serde_json::Map<String, Value> = reply
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    let body = match &reply.body {
        Body::Empty => Value::Null,
        _ => reply.json_body(),
    };
    json!({"body": body, "httpHeaders": headers, "httpStatusCode": reply.status.as_u16(), "referenceId": reference_id})
}

/// The body of a result as later references see it.
pub fn result_body(reply: &Reply) -> Value {
    reply.json_body()
}

/// Handles `POST /composite`.
pub fn handle(x: &mut Exec<'_>, body: &[u8]) -> Reply {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return ApiError::json(e).into(),
    };
    x.records = req.composite_request.len() as u64;
    if req.composite_request.len() > MAX_SUBREQUESTS {
        return violation(
            x.emu,
            "composite_subrequests",
            ApiError::bad(
                "LIMIT_EXCEEDED",
                format!("Limit Exceeded: a composite request takes at most {MAX_SUBREQUESTS} subrequests"),
            ),
        );
    }
    let heavy = req
        .composite_request
        .iter()
        .filter(|s| s.url.contains("/composite/sobjects") || s.url.contains("/query"))
        .count();
    if heavy > MAX_COLLECTIONS_OR_QUERIES {
        return violation(
            x.emu,
            "composite_collections_or_queries",
            ApiError::bad(
                "LIMIT_EXCEEDED",
                format!(
                    "Limit Exceeded: a composite request takes at most {MAX_COLLECTIONS_OR_QUERIES} \
                     sObject Collections or query subrequests"
                ),
            ),
        );
    }
    // The guide lists the resources a subrequest may use (not composite itself); the
    // code for one it lacks is a guess.
    for s in &req.composite_request {
        if s.url.contains("/composite/graph") || s.url.trim_end_matches('/').ends_with("/composite")
        {
            return ApiError::bad(
                "INVALID_INPUT",
                "A composite subrequest cannot be a composite request",
            )
            .into();
        }
    }
    let mark = x.tx.mark();
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut items: Vec<Value> = Vec::with_capacity(req.composite_request.len());
    let mut failed_at: Option<usize> = None;
    for (i, sub) in req.composite_request.iter().enumerate() {
        if failed_at.is_some() && req.all_or_none {
            break;
        }
        let reply = run_sub(x, sub, &results);
        if reply.is_success() {
            results.insert(sub.reference_id.clone(), result_body(&reply));
        } else if failed_at.is_none() {
            failed_at = Some(i);
        }
        items.push(item(&reply, &sub.reference_id));
    }
    if let (Some(at), true) = (failed_at, req.all_or_none) {
        x.org.rollback_to(x.tx, mark);
        let halted = "The transaction was rolled back since another operation in the same transaction failed.";
        items = req
            .composite_request
            .iter()
            .enumerate()
            .map(|(i, sub)| {
                if i == at {
                    items[i].clone()
                } else {
                    json!({"body": processing_halted(halted), "httpHeaders": {}, "httpStatusCode": 400,
                           "referenceId": sub.reference_id})
                }
            })
            .collect();
    }
    Reply::ok(json!({"compositeResponse": items}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_substituted() {
        let text = r#"{"AccountId":"@{acc.id}","X":"@{q.records[0].Id}"}"#;
        assert_eq!(references(text), ["acc", "q"]);
        let results = HashMap::from([
            ("acc".to_owned(), json!({"id": "001A"})),
            ("q".to_owned(), json!({"records": [{"Id": "0cmB"}]})),
        ]);
        assert_eq!(
            substitute(text, &results).unwrap(),
            r#"{"AccountId":"001A","X":"0cmB"}"#
        );
        assert_eq!(substitute("@{nope.id}", &results).unwrap_err(), "nope.id");
    }
}
