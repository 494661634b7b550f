//! JSON shapes of sObject writes: record bodies, graph nodes, collection records, and
//! the per-record results they answer with.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One error of a record write (`errorCode` in REST, `statusCode` in collections).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordError {
    /// Salesforce's code.
    #[serde(alias = "statusCode", alias = "errorCode", default)]
    pub code: String,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// Fields at fault.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// A record write's result (collections item or graph node body on success).
#[derive(Debug, Clone, Deserialize)]
pub struct SaveResult {
    /// Record id.
    #[serde(default)]
    pub id: Option<String>,
    /// Whether it was written.
    #[serde(default)]
    pub success: bool,
    /// Why not.
    #[serde(default)]
    pub errors: Vec<RecordError>,
    /// Created (true) or updated.
    #[serde(default)]
    pub created: Option<bool>,
}

/// Errors that say "retry me": a lock held by a concurrent write, or a casualty of
/// another record's failure.
pub fn is_retryable(code: &str) -> bool {
    matches!(
        code,
        "UNABLE_TO_LOCK_ROW" | "PROCESSING_HALTED" | "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    )
}

/// A reference to a record the org does not have (yet): the link's end is missing.
pub fn is_missing_reference(e: &RecordError) -> bool {
    e.message.contains("Foreign key external ID")
        || (e.code == "INVALID_FIELD" && e.message.contains("not found"))
}

/// The JSON body of a record: dotted names (`Account.OneKey_Id__c`) become parent
/// references by external id, lists become multi-select values (`a;b`).
pub fn body(fields: &[(String, Value)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in fields {
        match name.split_once('.') {
            Some((rel, ext)) => {
                // A reference by external id cannot be cleared with null: leave it out.
                if value.is_null() || value.as_str() == Some("") {
                    continue;
                }
                let mut r = Map::new();
                r.insert(ext.to_string(), text_value(value));
                out.insert(rel.to_string(), Value::Object(r));
            }
            None => {
                out.insert(name.clone(), field_value(value));
            }
        }
    }
    out
}

fn text_value(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

fn field_value(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .filter(|s| !s.is_empty())
                .collect();
            if parts.is_empty() {
                Value::Null
            } else {
                Value::String(parts.join(";"))
            }
        }
        Value::Object(_) => Value::String(v.to_string()),
        other => other.clone(),
    }
}

/// Percent-encodes an external id for a URL path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A readable failure: object, key, code, message, fields.
pub fn describe_errors(object: &str, key: &str, errors: &[RecordError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .filter(|e| !matches!(e.code.as_str(), "PROCESSING_HALTED"))
        .map(|e| {
            if e.fields.is_empty() {
                format!("{}: {}", e.code, e.message)
            } else {
                format!(
                    "{}: {} (fields: {})",
                    e.code,
                    e.message,
                    e.fields.join(", ")
                )
            }
        })
        .collect();
    format!("{object} {key}: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dotted_fields_become_references_and_lists_multiselects() {
        let b = body(&[
            ("Name".into(), json!("Ada")),
            ("Account.OneKey_Id__c".into(), json!("WUS1")),
            ("Parent.OneKey_Id__c".into(), Value::Null),
            ("Tags__c".into(), json!(["a", "", "b"])),
            ("Phone".into(), Value::Null),
        ]);
        assert_eq!(
            Value::Object(b),
            json!({"Name": "Ada", "Account": {"OneKey_Id__c": "WUS1"}, "Tags__c": "a;b", "Phone": null})
        );
    }

    #[test]
    fn keys_are_encoded_for_paths() {
        assert_eq!(encode_segment("WUS.SP/1 x"), "WUS%2ESP%2F1%20x");
        assert_eq!(encode_segment("I-1_a"), "I-1_a");
    }

    #[test]
    fn both_error_spellings_parse() {
        let r: SaveResult = serde_json::from_value(json!({"success": false, "errors": [
            {"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access", "fields": []}
        ]})).unwrap();
        assert!(is_retryable(&r.errors[0].code));
        let e: RecordError = serde_json::from_value(json!({"errorCode": "INVALID_FIELD",
            "message": "Foreign key external ID: W9 not found for field OneKey_Id__c in entity Account"})).unwrap();
        assert!(is_missing_reference(&e));
        assert_eq!(
            describe_errors("Account", "I1", &[e]),
            "Account I1: INVALID_FIELD: Foreign key external ID: W9 not found for field OneKey_Id__c in entity Account"
        );
    }
}
