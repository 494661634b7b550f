//! Apex REST: `/services/apexrest/{path}` with any method is recorded (path, method,
//! query, body, time) and answered 200 `{}`; `GET /_emulator/apex-calls` lists them.

use serde_json::{json, Value};

use super::rest::Reply;
use super::{ApexCall, Emu};

/// Calls kept (older ones are dropped): the emulator's own bound, not a Salesforce one.
const KEPT: usize = 10_000;

/// Records one call.
pub fn record(emu: &Emu, method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Reply {
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    let mut calls = emu.apex_calls.lock().expect("apex lock");
    if calls.len() == KEPT {
        calls.remove(0);
    }
    calls.push(ApexCall {
        path: path.to_owned(),
        method: method.to_owned(),
        query: query.map(str::to_owned),
        body,
        at: chrono::Utc::now().to_rfc3339(),
    });
    Reply::ok(json!({}))
}

/// The calls recorded, oldest first.
pub fn list(emu: &Emu) -> Value {
    json!(*emu.apex_calls.lock().expect("apex lock"))
}
