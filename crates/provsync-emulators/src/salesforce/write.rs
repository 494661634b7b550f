//! One record write as the org performs it: field names checked against the schema,
//! values checked and coerced by type, parents resolved by external id, required
//! fields, active duplicate rules, unique keys, restricted picklists against their
//! value set, the parent row lock, then the write inside the caller's transaction.
//!
//! Which fields are required, writable, unique or keys comes from the schema (its
//! sources: docs/salesforce-model.md); the error codes and the wording of their
//! messages follow errors.rs's note (codes documented, wording as orgs answer it).
//! Parent row locks: "when you update child records, the system locks the parent and
//! the child records" (Best Practices for Deployments with Large Data Volumes,
//! "Record-Level Locking",
//! https://developer.salesforce.com/docs/atlas.en-us.draes.meta/draes/draes_object_relationships_record_level_locking.htm;
//! the Record Locking Cheatsheet adds that a lookup "may lock the lookup record",
//! https://resources.docs.salesforce.com/rel1/doc/en-us/static/pdf/SF_Record-Locking-Cheatsheet_web.pdf).
//! Locking every referenced Account, and nothing else, is our reading (a guess).

use serde_json::{Map, Value};

use super::errors::{no_such_column, RecordError};
use super::limits::CallScope;
use super::schema::{DuplicateAction, DuplicateRule, Field, FieldType, SObject};
use super::store::{key_text, Org, Record, Tx};

/// What the write does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create a record.
    Insert,
    /// Create or update the record whose key field has this value.
    Upsert {
        /// The key field (canonical name).
        field: String,
        /// Its value.
        value: String,
    },
    /// Update the record with this id.
    Update {
        /// Record id.
        id: String,
    },
}

/// A successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The record's id.
    pub id: String,
    /// Created (true) or updated.
    pub created: bool,
}

/// The current time as Salesforce prints datetimes.
pub fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// Performs one write. `body` holds field values and parent references by external id
/// (`"Account": {"OneKey_Id__c": "X"}`); `attributes` is ignored.
pub fn write(
    org: &mut Org,
    tx: &mut Tx,
    scope: &mut CallScope,
    object: &SObject,
    op: Op,
    body: &Map<String, Value>,
) -> Result<Written, RecordError> {
    let mut values: Vec<(&Field, Value)> = Vec::with_capacity(body.len());
    for (name, raw) in body {
        if name == "attributes" {
            continue;
        }
        if let Some(f) = object.field(name) {
            values.push((f, coerce(org, f, raw)?));
        } else if let (Some(f), Value::Object(by_key)) = (object.relationship(name), raw) {
            values.push((f, Value::String(resolve_parent(org, f, by_key)?)));
        } else {
            return Err(no_such_column(name, &object.name));
        }
    }
    let existing = match &op {
        Op::Insert => None,
        Op::Upsert { field, value } => match org.find_by_key(&object.name, field, value) {
            [] => None,
            [id] => Some(id.clone()),
            many => {
                return Err(RecordError::new(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{field}: more than one record found for external id field: [{}]",
                        many.join(", ")
                    ),
                )
                .on(&[field]))
            }
        },
        Op::Update { id } => match org.find_id(id) {
            Some((o, _)) if o == object.name => Some(id.clone()),
            _ => {
                return Err(RecordError::new(
                    "NOT_FOUND",
                    "The requested resource does not exist",
                ))
            }
        },
    };
    let now = now_text();
    let (mut record, created) = match &existing {
        Some(id) => {
            let r = org.get(&object.name, id).cloned().unwrap_or_default();
            writable(&values, |f| f.updateable)?;
            (r, false)
        }
        None => {
            writable(&values, |f| f.createable)?;
            (defaults(object), true)
        }
    };
    if let Op::Upsert { field, value } = &op {
        record.insert(field.clone(), Value::String(value.clone()));
    }
    for (f, v) in &values {
        record.insert(f.name.clone(), v.clone());
    }
    if object.name == "Account" {
        person_account(&mut record, created);
    }
    if created {
        required(object, &record)?;
    } else {
        for (f, v) in &values {
            if v.is_null() && !f.nillable && f.kind != FieldType::Boolean {
                return Err(missing(&[f.name.as_str()]));
            }
        }
    }
    let id = match &existing {
        Some(id) => id.clone(),
        None => org.new_id(&object.key_prefix),
    };
    duplicates(org, object, &record, &id, scope.allow_save)?;
    unique(org, object, &record, &id)?;
    for parent in account_parents(object, &record) {
        scope.lock_parent(&parent)?;
    }
    record.insert("Id".into(), Value::String(id.clone()));
    if created {
        record.insert("CreatedDate".into(), Value::String(now.clone()));
    }
    // Salesforce stamps every update, whether or not a value changed.
    record.insert("LastModifiedDate".into(), Value::String(now.clone()));
    record.insert("SystemModstamp".into(), Value::String(now));
    org.put(tx, &object.name, record);
    Ok(Written { id, created })
}

fn writable(
    values: &[(&Field, Value)],
    allowed: impl Fn(&Field) -> bool,
) -> Result<(), RecordError> {
    let refused: Vec<&str> = values
        .iter()
        .filter(|(f, _)| !allowed(f))
        .map(|(f, _)| f.name.as_str())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(RecordError::new(
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        format!(
            "Unable to create/update fields: {}. Please check the security settings of this \
             field and verify that it is read/write for your profile or permission set.",
            refused.join(", ")
        ),
    )
    .on(&refused))
}

fn defaults(object: &SObject) -> Record {
    let mut r = Record::new();
    for f in &object.fields {
        if let Some(v) = &f.default_value {
            r.insert(f.name.clone(), v.clone());
        } else if f.kind == FieldType::Boolean {
            r.insert(f.name.clone(), Value::Bool(false));
        }
    }
    r
}

/// Person accounts: created with a LastName; their Name is computed from the parts.
fn person_account(record: &mut Record, created: bool) {
    let text = |r: &Record, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    if created {
        let person = text(record, "LastName").is_some();
        record.insert("IsPersonAccount".into(), Value::Bool(person));
    }
    if record.get("IsPersonAccount") == Some(&Value::Bool(true)) {
        let name: Vec<String> = ["FirstName", "MiddleName", "LastName"]
            .iter()
            .filter_map(|k| text(record, k))
            .collect();
        record.insert("Name".into(), Value::String(name.join(" ")));
    }
}

fn missing(fields: &[&str]) -> RecordError {
    RecordError::new(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", fields.join(", ")),
    )
    .on(fields)
}

fn required(object: &SObject, record: &Record) -> Result<(), RecordError> {
    let absent: Vec<&str> = object
        .fields
        .iter()
        .filter(|f| f.required() && record.get(&f.name).is_none_or(Value::is_null))
        .map(|f| f.name.as_str())
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(missing(&absent))
    }
}

/// The org's duplicate rules run on every create and update (after validation,
/// before the save). A record matches another of its object when every field the
/// rule compares is filled in both and equal, ignoring case and surrounding space
/// (guess: real matching rules also offer fuzzy methods, and a blank field matches
/// or not as each MatchingRuleItem's blankValueBehavior says; the emulator takes
/// a blank as no match:
/// https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_matchingrule.htm).
/// A match answers `DUPLICATES_DETECTED` with the rule and the records it matched
/// (DuplicateResult, MatchResult, MatchRecord in the SOAP API Developer Guide:
/// https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_objects_duplicateresult.htm),
/// unless the rule only alerts and the request set `allowSave=true` (the REST API
/// Developer Guide's Duplicate Rule Header:
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_duplicaterules.htm;
/// a blocking rule refuses whatever the header says: DuplicateRule.actionOnInsert
/// in the Metadata API Developer Guide).
fn duplicates(
    org: &Org,
    object: &SObject,
    record: &Record,
    id: &str,
    allow_save: bool,
) -> Result<(), RecordError> {
    for rule in &object.duplicate_rules {
        if rule.action == DuplicateAction::Alert && allow_save {
            continue;
        }
        let Some(mine) = match_key(rule, record) else {
            continue;
        };
        let matched: Vec<&str> = org
            .table(&object.name)
            .rows
            .iter()
            .filter(|(other, r)| *other != id && match_key(rule, r).as_ref() == Some(&mine))
            .map(|(other, _)| other.as_str())
            .collect();
        if matched.is_empty() {
            continue;
        }
        let records: Vec<Value> = matched
            .iter()
            .map(|m| {
                serde_json::json!({
                    "additionalInformation": [],
                    "fieldDiffs": [],
                    "matchConfidence": 100.0,
                    "record": {"attributes": {"type": object.name}, "Id": m},
                })
            })
            .collect();
        // The alert text of Salesforce's standard duplicate rules.
        let message = "Use one of these records?";
        let mut e = RecordError::new("DUPLICATES_DETECTED", message);
        e.duplicate_result = Some(serde_json::json!({
            "allowSave": rule.action == DuplicateAction::Alert,
            "duplicateRule": rule.name,
            "duplicateRuleEntityType": object.name,
            "errorMessage": message,
            "matchResults": [{
                "entityType": object.name,
                "errors": [],
                "matchEngine": "ExactMatchEngine",
                "matchRecords": records,
                "rule": rule.matching_rule(),
                "size": matched.len(),
                "success": true,
            }],
        }));
        return Err(e);
    }
    Ok(())
}

/// The values a rule compares, normalised; `None` when one is blank.
fn match_key(rule: &DuplicateRule, record: &Record) -> Option<Vec<String>> {
    rule.fields
        .iter()
        .map(|f| {
            let v = key_text(record.get(f)?)?;
            let v = v.trim().to_lowercase();
            (!v.is_empty()).then_some(v)
        })
        .collect()
}

fn unique(org: &Org, object: &SObject, record: &Record, id: &str) -> Result<(), RecordError> {
    for f in object.fields.iter().filter(|f| f.unique) {
        let Some(v) = record.get(&f.name).and_then(key_text) else {
            continue;
        };
        if let Some(other) = org
            .find_by_key(&object.name, &f.name, &v)
            .iter()
            .find(|other| *other != id)
        {
            return Err(RecordError::new(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {other}",
                    f.name
                ),
            )
            .on(&[f.name.as_str()]));
        }
    }
    Ok(())
}

/// The Account rows a write locks: every Account a reference field of the record
/// points to (Salesforce locks the parent row while a child is written).
fn account_parents(object: &SObject, record: &Record) -> Vec<String> {
    let mut parents: Vec<String> = object
        .fields
        .iter()
        .filter(|f| f.kind == FieldType::Reference && f.reference_to.iter().any(|t| t == "Account"))
        .filter_map(|f| {
            record
                .get(&f.name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    parents.sort();
    parents.dedup();
    parents
}

fn resolve_parent(
    org: &Org,
    f: &Field,
    by_key: &Map<String, Value>,
) -> Result<String, RecordError> {
    let target_name = f
        .reference_to
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let schema = org.schema.clone();
    let target = schema.object(target_name).ok_or_else(|| {
        no_such_column(
            f.relationship_name.as_deref().unwrap_or(&f.name),
            target_name,
        )
    })?;
    let mut keys = by_key.iter().filter(|(k, _)| *k != "attributes");
    let (Some((key, value)), None) = (keys.next(), keys.next()) else {
        return Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "The relationship {} must name exactly one external id field",
                f.relationship_name.as_deref().unwrap_or_default()
            ),
        ));
    };
    let Some(kf) = target.field(key) else {
        return Err(no_such_column(key, &target.name));
    };
    if !kf.is_key() && kf.kind != FieldType::Id {
        return Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "The value provided for foreign key reference {} is not a nested SObject",
                kf.name
            ),
        ));
    }
    let text = key_text(value).unwrap_or_default();
    if kf.kind == FieldType::Id {
        return match org.find_id(&text) {
            Some((o, _)) if o == target.name => Ok(text),
            _ => Err(RecordError::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
            )),
        };
    }
    match org.find_by_key(&target.name, &kf.name, &text) {
        [id] => Ok(id.clone()),
        [] => Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "Foreign key external ID: {text} not found for field {} in entity {}",
                kf.name, target.name
            ),
        )),
        _ => Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "Foreign key external ID: {text} matches multiple records for field {} in entity {}",
                kf.name, target.name
            ),
        )),
    }
}

fn parser_error(f: &Field, kind: &str, raw: &Value) -> RecordError {
    RecordError::new(
        "JSON_PARSER_ERROR",
        format!(
            "Cannot deserialize instance of {kind} from {} value {} or request may be missing a \
             required field",
            match raw {
                Value::String(_) => "VALUE_STRING",
                Value::Bool(_) => "VALUE_TRUE",
                Value::Number(_) => "VALUE_NUMBER_INT",
                Value::Array(_) => "START_ARRAY",
                Value::Object(_) => "START_OBJECT",
                Value::Null => "VALUE_NULL",
            },
            raw
        ),
    )
    .on(&[f.name.as_str()])
    .whole_request()
}

/// Checks a value against the field and returns what the org stores.
fn coerce(org: &Org, f: &Field, raw: &Value) -> Result<Value, RecordError> {
    if raw.is_null() || raw.as_str() == Some("") {
        return Ok(Value::Null);
    }
    match f.kind {
        k if k.is_text() => {
            let s = match raw {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(parser_error(f, "string", raw)),
            };
            if s.chars().count() > f.max_length() {
                return Err(RecordError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {s} (max length={})",
                        f.label(),
                        f.max_length()
                    ),
                )
                .on(&[f.name.as_str()]));
            }
            if k == FieldType::Email && !valid_email(&s) {
                return Err(RecordError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {s}", f.label()),
                )
                .on(&[f.name.as_str()]));
            }
            if k == FieldType::Picklist && f.restricted_picklist && !picklist_accepts(org, f, &s) {
                return Err(RecordError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {s}",
                        f.label()
                    ),
                )
                .on(&[f.name.as_str()]));
            }
            Ok(Value::String(s))
        }
        FieldType::Boolean => match raw {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(parser_error(f, "boolean", raw)),
        },
        FieldType::Date => match raw
            .as_str()
            .map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        {
            Some(Ok(d)) => Ok(Value::String(d.format("%Y-%m-%d").to_string())),
            _ => Err(parser_error(f, "date", raw)),
        },
        FieldType::Datetime => match raw.as_str().and_then(parse_datetime) {
            Some(t) => Ok(Value::String(
                t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
            )),
            None => Err(parser_error(f, "datetime", raw)),
        },
        FieldType::Double => match raw {
            Value::Number(_) => Ok(raw.clone()),
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| parser_error(f, "double", raw)),
            _ => Err(parser_error(f, "double", raw)),
        },
        FieldType::Int => match raw {
            Value::Number(n) if n.is_i64() => Ok(raw.clone()),
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| parser_error(f, "int", raw)),
            _ => Err(parser_error(f, "int", raw)),
        },
        FieldType::Reference | FieldType::Id => {
            let Some(id) = raw.as_str() else {
                return Err(parser_error(f, "reference", raw));
            };
            match org.find_id(id) {
                Some((o, r)) if f.reference_to.iter().any(|t| t == o) => Ok(r
                    .get("Id")
                    .cloned()
                    .unwrap_or_else(|| Value::String(id.to_owned()))),
                _ => Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    format!("{}: id value of incorrect type: {id}", f.label()),
                )
                .on(&[f.name.as_str()])),
            }
        }
        _ => Err(parser_error(f, f.kind.name(), raw)),
    }
}

fn valid_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !s.contains(' ')
        }
        None => false,
    }
}

/// Parses Salesforce's datetime forms: RFC 3339, or `+0000`-style offsets.
pub fn parse_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn picklist_accepts(org: &Org, f: &Field, value: &str) -> bool {
    match (&f.value_set_name, &f.value_set_type) {
        (Some(name), kind) => org
            .value_set(kind.as_deref().unwrap_or("GlobalValueSet"), name)
            .is_some_and(|vs| vs.accepts(value)),
        (None, _) => f
            .picklist_values
            .iter()
            .any(|v| v.active && v.value == value),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::salesforce::faults::Rng;
    use crate::salesforce::limits::ParentLocks;
    use crate::salesforce::stats::Stats;
    use crate::salesforce::store::{PickValue, ValueSet};
    use crate::salesforce::Schema;

    struct Fixture {
        org: Org,
        schema: Arc<Schema>,
        locks: Arc<ParentLocks>,
        allow_save: bool,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture::with(Schema::default_org())
        }

        fn with(schema: Schema) -> Fixture {
            let schema = Arc::new(schema);
            Fixture {
                org: Org::new(schema.clone()),
                schema,
                locks: Arc::new(ParentLocks::default()),
                allow_save: false,
            }
        }

        fn upsert(
            &mut self,
            req: u64,
            object: &str,
            key: &str,
            body: Value,
        ) -> Result<Written, RecordError> {
            let op = Op::Upsert {
                field: "OneKey_Id__c".into(),
                value: key.into(),
            };
            self.write(req, object, op, body)
        }

        fn write(
            &mut self,
            req: u64,
            object: &str,
            op: Op,
            body: Value,
        ) -> Result<Written, RecordError> {
            let mut scope = CallScope::new(
                req,
                self.locks.clone(),
                0.0,
                Arc::new(Rng::new(1)),
                Arc::new(Stats::default()),
            );
            scope.allow_save = self.allow_save;
            let mut tx = Tx::default();
            let o = self.schema.object(object).unwrap();
            let body = body.as_object().unwrap().clone();
            let out = write(&mut self.org, &mut tx, &mut scope, o, op, &body);
            self.org.commit(tx);
            out
        }
    }

    #[test]
    fn person_accounts_get_a_computed_name_business_accounts_need_one() {
        let mut f = Fixture::new();
        let w = f
            .upsert(
                1,
                "Account",
                "M1",
                json!({"FirstName": "Ada", "LastName": "Byron"}),
            )
            .unwrap();
        let r = f.org.get("Account", &w.id).unwrap();
        assert_eq!(
            (r["Name"].clone(), r["IsPersonAccount"].clone()),
            (json!("Ada Byron"), json!(true))
        );
        assert_eq!(r["Active__c"], true, "the schema's default value");
        f.upsert(1, "Account", "M1", json!({"FirstName": "Augusta"}))
            .unwrap();
        assert_eq!(
            f.org.get("Account", &w.id).unwrap()["Name"],
            "Augusta Byron"
        );
        let err = f
            .upsert(1, "Account", "W1", json!({"Type": "Hospital"}))
            .unwrap_err();
        assert_eq!(err.message, "Required fields are missing: [Name]");
    }

    #[test]
    fn duplicate_rules_alert_unless_allow_save_and_a_blocking_rule_refuses_always() {
        use crate::salesforce::schema::{DuplicateAction, DuplicateRule};
        let mut schema = Schema::default_org();
        let rule = |name: &str, fields: &[&str], action| DuplicateRule {
            name: name.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            action,
        };
        let names = rule(
            "Person_Duplicate_Rule",
            &["firstname", "LastName"],
            DuplicateAction::Alert,
        );
        schema.add_duplicate_rule("Account", names).unwrap();
        let phone = rule("Phone_Rule", &["Phone"], DuplicateAction::Block);
        schema.add_duplicate_rule("Account", phone).unwrap();
        let mut f = Fixture::with(schema);
        let ada = json!({"FirstName": "Ada", "LastName": "Byron"});
        let first = f.upsert(1, "Account", "M1", ada).unwrap().id;
        // Case and surrounding space do not tell records apart.
        let twin = json!({"FirstName": " ada", "LastName": "BYRON"});
        let err = f.upsert(1, "Account", "M2", twin.clone()).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("DUPLICATES_DETECTED", "Use one of these records?")
        );
        let shown = err.collection_json();
        let d = &shown["duplicateResult"];
        assert_eq!(shown["statusCode"], "DUPLICATES_DETECTED");
        assert_eq!(d["duplicateRule"], "Person_Duplicate_Rule");
        assert_eq!(d["allowSave"], true);
        assert_eq!(d["matchResults"][0]["rule"], "Person_Matching_Rule");
        assert_eq!(
            d["matchResults"][0]["matchRecords"][0]["record"]["Id"],
            json!(first)
        );
        assert_eq!(err.rest_json()["duplicateResult"], *d);
        assert!(f
            .org
            .find_by_key("Account", "OneKey_Id__c", "M2")
            .is_empty());
        // A blank compared field never matches.
        f.upsert(1, "Account", "M3", json!({"LastName": "Byron"}))
            .unwrap();
        f.allow_save = true;
        f.upsert(1, "Account", "M2", twin).unwrap();
        // Rules run on updates too: M1 now matches M2.
        f.allow_save = false;
        let err = f
            .upsert(1, "Account", "M1", json!({"MiddleName": "A"}))
            .unwrap_err();
        assert_eq!(err.code, "DUPLICATES_DETECTED");
        // A blocking rule refuses whatever the header says.
        f.allow_save = true;
        f.upsert(1, "Account", "W1", json!({"Name": "W", "Phone": "555"}))
            .unwrap();
        let err = f
            .upsert(1, "Account", "W2", json!({"Name": "V", "Phone": "555"}))
            .unwrap_err();
        assert_eq!(err.duplicate_result.unwrap()["allowSave"], false);
    }

    #[test]
    fn a_hidden_field_is_absent_from_describe_and_writes_naming_it_fail() {
        let mut schema = Schema::default_org();
        schema.hide_field("Account", "personemail").unwrap();
        let o = schema.object("Account").unwrap();
        assert!(o.field("PersonEmail").is_none());
        let d = crate::salesforce::schema::describe(o, "v65.0", |_| Vec::new());
        assert!(!d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "PersonEmail"));
        let mut f = Fixture::with(schema.clone());
        let err = f
            .upsert(
                1,
                "Account",
                "M1",
                json!({"LastName": "B", "PersonEmail": "a@b.c"}),
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            "No such column 'PersonEmail' on sobject of type Account"
        );
        let e = schema.hide_field("HealthcareProvider", "Name").unwrap_err();
        assert!(e.to_string().contains("required"), "{e}");
        let rule = crate::salesforce::schema::DuplicateRule {
            name: "R".into(),
            fields: vec!["PersonEmail".into()],
            action: Default::default(),
        };
        let e = schema.add_duplicate_rule("Account", rule).unwrap_err();
        assert!(e.to_string().contains("lacks (or hides)"), "{e}");
    }

    #[test]
    fn restricted_picklists_follow_their_value_set() {
        let mut f = Fixture::new();
        let body = json!({"Name": "F", "Role__c": "Chief"});
        let err = f
            .upsert(1, "HealthcarePractitionerFacility", "F1", body.clone())
            .unwrap_err();
        assert_eq!(err.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
        assert_eq!(err.fields, ["Role__c"]);
        let mut vs = f
            .org
            .value_set("GlobalValueSet", "OneKey_Role")
            .unwrap()
            .clone();
        vs.values.push(PickValue {
            full_name: "Chief".into(),
            label: "Chief".into(),
            default: false,
            active: true,
        });
        f.org.put_value_set(vs.clone());
        f.upsert(1, "HealthcarePractitionerFacility", "F1", body.clone())
            .unwrap();
        let inactive = ValueSet {
            values: vec![PickValue {
                active: false,
                ..vs.values[0].clone()
            }],
            ..vs
        };
        f.org.put_value_set(inactive);
        assert!(f
            .upsert(1, "HealthcarePractitionerFacility", "F2", body)
            .is_err());
        // An unrestricted picklist takes any value.
        f.upsert(1, "Account", "W1", json!({"Name": "W", "Type": "Anything"}))
            .unwrap();
    }

    #[test]
    fn a_parent_held_by_another_request_fails_the_child_only() {
        let mut f = Fixture::new();
        let parent = f
            .upsert(1, "Account", "W1", json!({"Name": "W"}))
            .unwrap()
            .id;
        assert!(f.locks.try_hold(&parent, 99));
        let child = json!({"Name": "H", "Account": {"OneKey_Id__c": "W1"}});
        let err = f
            .upsert(2, "HealthcareProvider", "H1", child.clone())
            .unwrap_err();
        assert_eq!(err.code, "UNABLE_TO_LOCK_ROW");
        assert!(f
            .org
            .find_by_key("HealthcareProvider", "OneKey_Id__c", "H1")
            .is_empty());
        f.locks.release(99, std::slice::from_ref(&parent));
        let w = f.upsert(2, "HealthcareProvider", "H1", child).unwrap();
        assert_eq!(
            f.org.get("HealthcareProvider", &w.id).unwrap()["AccountId"],
            json!(parent)
        );
    }

    /// HealthcareProvider.SourceSystemIdentifier is unique but no key: the org still
    /// refuses its value on a second record (a unique field once went unchecked
    /// because only keys were indexed).
    #[test]
    fn a_unique_field_that_is_no_key_refuses_its_value_on_a_second_record() {
        let mut f = Fixture::new();
        let hcp = |name: &str| json!({"Name": name, "SourceSystemIdentifier": "S1"});
        f.upsert(1, "HealthcareProvider", "H1", hcp("A")).unwrap();
        let err = f
            .upsert(1, "HealthcareProvider", "H2", hcp("B"))
            .unwrap_err();
        assert_eq!(err.code, "DUPLICATE_VALUE");
        assert_eq!(err.fields, ["SourceSystemIdentifier"]);
        f.upsert(1, "HealthcareProvider", "H1", hcp("A again"))
            .unwrap();
    }

    #[test]
    fn values_are_checked_by_type() {
        let mut f = Fixture::new();
        let err = f
            .upsert(
                1,
                "Account",
                "W1",
                json!({"Name": "W", "PersonEmail": "not-an-email"}),
            )
            .unwrap_err();
        assert_eq!(err.code, "INVALID_EMAIL_ADDRESS");
        let err = f
            .upsert(
                1,
                "Account",
                "W1",
                json!({"Name": "W", "PersonBirthdate": "1990-13-01"}),
            )
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.request_level),
            ("JSON_PARSER_ERROR", true)
        );
        let err = f
            .upsert(
                1,
                "Account",
                "W1",
                json!({"Name": "W", "ParentId": "001000000000000AAA"}),
            )
            .unwrap_err();
        assert_eq!(err.code, "INVALID_CROSS_REFERENCE_KEY");
        let w = f
            .write(
                1,
                "IntegrationJobRun",
                Op::Insert,
                json!({"JobName": "j", "JobIdentifier": "J1", "StartDateTime": "2026-01-02T03:00:00Z",
                       "EndDateTime": "2026-01-02T03:04:05Z"}),
            )
            .unwrap();
        assert_eq!(
            f.org.get("IntegrationJobRun", &w.id).unwrap()["EndDateTime"],
            "2026-01-02T03:04:05.000+0000"
        );
        let err = f
            .upsert(
                1,
                "Account",
                "W1",
                json!({"Name": "W", "BillingState": "é".repeat(81)}),
            )
            .unwrap_err();
        assert_eq!(err.code, "STRING_TOO_LONG", "length counts characters");
        f.upsert(
            1,
            "Account",
            "W1",
            json!({"Name": "W", "BillingState": "é".repeat(80)}),
        )
        .unwrap();
    }
}
