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
    /// What an active duplicate rule matched (`DUPLICATES_DETECTED` only).
    #[serde(default, rename = "duplicateResult")]
    pub duplicate_result: Option<DuplicateResult>,
}

/// The `duplicateResult` of a `DUPLICATES_DETECTED` error: the rule and the
/// records it matched (SOAP API Developer Guide, DuplicateResult and MatchResult:
/// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_objects_duplicateresult.htm).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateResult {
    /// Whether the rule lets the record be saved with `allowSave=true` (it alerts
    /// rather than blocks).
    #[serde(default)]
    pub allow_save: bool,
    /// The duplicate rule's developer name.
    #[serde(default)]
    pub duplicate_rule: String,
    /// One result per matching rule.
    #[serde(default)]
    pub match_results: Vec<MatchResult>,
}

/// The records one matching rule found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResult {
    /// Object of the matched records.
    #[serde(default)]
    pub entity_type: String,
    /// The matched records.
    #[serde(default)]
    pub match_records: Vec<MatchRecord>,
}

/// One matched record.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MatchRecord {
    /// The record (its `Id`; every field with `includeRecordDetails`).
    #[serde(default)]
    pub record: serde_json::Map<String, Value>,
}

impl DuplicateResult {
    /// `rule X matched Account 001..., 001...`, and what to do about it.
    fn describe(&self) -> String {
        let mut matched: Vec<String> = Vec::new();
        for m in &self.match_results {
            let ids: Vec<&str> = m
                .match_records
                .iter()
                .filter_map(|r| r.record.get("Id").and_then(Value::as_str))
                .collect();
            if !ids.is_empty() {
                matched.push(format!("{} {}", m.entity_type, ids.join(", ")));
            }
        }
        let matched = match matched.is_empty() {
            true => "records it does not name".to_string(),
            false => matched.join("; "),
        };
        let way_out = if self.allow_save {
            "the target option duplicate_rule_allow_save = true saves it anyway"
        } else {
            "the rule blocks duplicates: merge the records or change the rule"
        };
        format!(
            "duplicate rule {} matched {matched}: {way_out}",
            self.duplicate_rule
        )
    }
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

/// A field value as a Bulk API CSV cell: an empty cell leaves the field as it is,
/// so a cleared value (null, or an empty text, which JSON writes clear too) is
/// `#N/A`; lists become multi-select values.
pub fn csv_cell(v: &Value) -> String {
    match field_value(v) {
        Value::Null => "#N/A".into(),
        Value::String(s) if s.is_empty() => "#N/A".into(),
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A reference cell (`Account.OneKey_Id__c`): empty when there is no parent, as a
/// reference by external id cannot be cleared.
pub fn csv_reference(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Bulk API `sf__Error` cell, `CODE:message:fields --`, as a record error (the
/// message may hold colons: the code ends at the first, the fields start after the
/// last).
pub fn bulk_error(cell: &str) -> RecordError {
    let text = cell.trim().trim_end_matches("--").trim_end();
    let Some((code, rest)) = text.split_once(':') else {
        return RecordError {
            code: text.to_string(),
            message: String::new(),
            fields: Vec::new(),
            duplicate_result: None,
        };
    };
    let (message, fields) = match rest.rsplit_once(':') {
        Some((m, f)) if !f.contains(' ') || f.is_empty() => (m, f),
        _ => (rest, ""),
    };
    RecordError {
        code: code.to_string(),
        message: message.to_string(),
        fields: fields
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        duplicate_result: None,
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
            let mut s = if e.fields.is_empty() {
                format!("{}: {}", e.code, e.message)
            } else {
                format!(
                    "{}: {} (fields: {})",
                    e.code,
                    e.message,
                    e.fields.join(", ")
                )
            };
            match &e.duplicate_result {
                Some(d) => s.push_str(&format!(" [{}]", d.describe())),
                // A Bulk API result row says no more than code and message.
                None if e.code == "DUPLICATES_DETECTED" => s.push_str(
                    " [an active duplicate rule flagged it (Bulk API results do not name the \
                     rule or the match): if the rule alerts, the target option \
                     duplicate_rule_allow_save = true saves it anyway]",
                ),
                None => {}
            }
            s
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
    fn csv_cells_clear_with_na_and_references_stay_empty() {
        assert_eq!(csv_cell(&json!("Ada")), "Ada");
        assert_eq!(csv_cell(&Value::Null), "#N/A");
        assert_eq!(csv_cell(&json!("")), "#N/A");
        assert_eq!(csv_cell(&json!(true)), "true");
        assert_eq!(csv_cell(&json!(["a", "b"])), "a;b");
        assert_eq!(csv_reference(&Value::Null), "");
        assert_eq!(csv_reference(&json!("W1")), "W1");
    }

    #[test]
    fn bulk_error_cells_split_into_code_message_and_fields() {
        let e = bulk_error(
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
        );
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(e.message, "Required fields are missing: [LastName]");
        assert_eq!(e.fields, vec!["LastName"]);
        let e = bulk_error(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:bad value: X:Specialty__pc,Role__c --",
        );
        assert_eq!(e.fields, vec!["Specialty__pc", "Role__c"]);
        assert_eq!(e.message, "bad value: X");
        let e =
            bulk_error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record: --");
        assert_eq!(e.code, "UNABLE_TO_LOCK_ROW");
        assert!(e.fields.is_empty());
        assert_eq!(bulk_error("UNKNOWN_EXCEPTION").code, "UNKNOWN_EXCEPTION");
    }

    #[test]
    fn a_duplicate_names_the_rule_the_matched_record_and_the_way_out() {
        let r: SaveResult = serde_json::from_value(json!({"success": false, "errors": [{
            "statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": [],
            "duplicateResult": {"allowSave": true, "duplicateRule": "Standard_Person_Account_Rule",
                "duplicateRuleEntityType": "Account", "errorMessage": "Use one of these records?",
                "matchResults": [{"entityType": "Account", "errors": [], "matchEngine": "FuzzyMatchEngine",
                    "matchRecords": [{"additionalInformation": [], "fieldDiffs": [], "matchConfidence": 95.0,
                        "record": {"attributes": {"type": "Account"}, "Id": "001000000000001AAA"}}],
                    "rule": "Standard_Person_Account_Match_Rule_v1_0", "size": 1, "success": true}]}
        }]}))
        .unwrap();
        assert!(!is_retryable(&r.errors[0].code));
        assert_eq!(
            describe_errors("Account", "M2", &r.errors),
            "Account M2: DUPLICATES_DETECTED: Use one of these records? [duplicate rule \
             Standard_Person_Account_Rule matched Account 001000000000001AAA: the target option \
             duplicate_rule_allow_save = true saves it anyway]"
        );
        let mut blocked = r.errors[0].clone();
        blocked.duplicate_result.as_mut().unwrap().allow_save = false;
        assert!(describe_errors("Account", "M2", &[blocked]).contains("the rule blocks duplicates"));
        let bulk = bulk_error("DUPLICATES_DETECTED:Use one of these records?: --");
        assert!(
            describe_errors("Account", "M2", &[bulk]).ends_with(
                "if the rule alerts, the target option duplicate_rule_allow_save = true saves it anyway]"
            )
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
