//! Preflight (before any write): every mapped object and field exists and can be
//! written, the external id field is an external id, references name real
//! relationships, and restricted picklists have values to take, among them every
//! value the mapping itself writes (constants, defaults, translations, disconnect).

use std::collections::BTreeMap;

use provsync_core::target::{KnownValue, TablePlan};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Body, Client};
use super::SfError;

/// The parts of a describe this check reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Describe {
    /// Object name.
    pub name: String,
    /// Fields.
    pub fields: Vec<FieldDescribe>,
}

/// One field of a describe.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// API name.
    pub name: String,
    /// Type (`string`, `reference`, `picklist`...).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Marked External ID.
    #[serde(default)]
    pub external_id: bool,
    /// Restricted picklist.
    #[serde(default)]
    pub restricted_picklist: bool,
    /// Picklist values.
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
    /// Relationship name of a reference (`Account` for `AccountId`).
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// Objects a reference points to.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Can be set on create.
    #[serde(default = "yes")]
    pub createable: bool,
    /// Can be set on update.
    #[serde(default = "yes")]
    pub updateable: bool,
}

/// One picklist value.
#[derive(Debug, Clone, Deserialize)]
pub struct PicklistValue {
    /// API value.
    pub value: String,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Active.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// How one mapping entry uses an object: the fields it writes, and the values it
/// writes to them that are known before loading.
#[derive(Debug, Clone, Default)]
pub struct Use {
    /// Who uses it, for messages (`workplace mapping`, `individual child`).
    pub by: String,
    /// Fields written (and the disconnect fields).
    pub fields: Vec<String>,
    /// Constants, defaults, translation values and disconnect values, per field.
    pub values: Vec<KnownValue>,
}

impl Use {
    fn new(
        by: String,
        fields: &[String],
        values: &[KnownValue],
        disconnect: &[(String, Value)],
    ) -> Use {
        let mut u = Use {
            by,
            fields: fields.to_vec(),
            values: values.to_vec(),
        };
        for (field, v) in disconnect {
            // Usually also mapped (`Active__c`): one field, checked once.
            if !u.fields.contains(field) {
                u.fields.push(field.clone());
            }
            u.values.extend(text_of(v).map(|value| KnownValue {
                field: field.clone(),
                value,
                origin: "disconnect".into(),
            }));
        }
        u
    }
}

/// A JSON scalar as the text a picklist compares (strings bare).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

/// Describes every object the plan writes and returns what is wrong, all of it.
pub async fn check(client: &Client, plan: &[TablePlan]) -> Result<Vec<String>, SfError> {
    let mut objects: BTreeMap<String, Vec<Use>> = BTreeMap::new();
    for p in plan {
        if p.kind == provsync_core::model::EntityKind::Code {
            continue; // codes go to value sets through the Metadata API
        }
        objects.entry(p.table.clone()).or_default().push(Use::new(
            format!("{} mapping", p.kind),
            &p.fields,
            &p.known_values,
            &p.disconnect,
        ));
        for c in &p.children {
            let mut u = Use::new(
                format!("{} child", p.kind),
                &c.fields,
                &c.known_values,
                &c.disconnect,
            );
            u.fields.push(c.parent_field.clone());
            objects.entry(c.table.clone()).or_default().push(u);
        }
    }
    let mut problems = Vec::new();
    // Describes are independent: ask for all at once (the gate caps concurrency).
    let described = futures::future::join_all(objects.keys().map(|o| describe(client, o))).await;
    for ((object, uses), d) in objects.iter().zip(described) {
        let Some(d) = d? else {
            problems.push(format!("object {object} does not exist in the org (or is not visible to the integration user)"));
            continue;
        };
        problems.extend(check_object(&d, &client.config().external_id_field, uses));
    }
    Ok(problems)
}

/// `GET /sobjects/{object}/describe`; `None` when the object is unknown.
pub async fn describe(client: &Client, object: &str) -> Result<Option<Describe>, SfError> {
    let path = format!("{}/sobjects/{object}/describe", client.data_path());
    let resp = client.call(Method::GET, &path, &Body::None).await?;
    if resp.status.as_u16() == 404 {
        return Ok(None);
    }
    resp.ok()?.json().map(Some)
}

/// Why describe may not list a field: describe lists only the fields the
/// integration user can see, so a field hidden by field-level security is absent
/// just like one that does not exist (REST API Developer Guide, "Get Field Values
/// from a Standard Object Record":
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api/dome_get_field_values.htm).
const NOT_DESCRIBED: &str = "is not in describe: it does not exist, or is not visible to this \
                             user: check field-level security";

/// The problems of one object's fields, as the mapping uses them.
pub fn check_object(d: &Describe, ext: &str, uses: &[Use]) -> Vec<String> {
    let o = &d.name;
    let find = |n: &str| d.fields.iter().find(|f| f.name.eq_ignore_ascii_case(n));
    let mut problems = Vec::new();
    match find(ext) {
        None => problems.push(format!(
            "{o}.{ext} {NOT_DESCRIBED}: every synced object needs the external id field"
        )),
        Some(f) if !f.external_id => problems.push(format!(
            "{o}.{ext} is not marked External ID: upserts by it are refused"
        )),
        Some(_) => {}
    }
    for Use { by, fields, values } in uses {
        for name in fields {
            if let Some((rel, _)) = name.split_once('.') {
                let known = d.fields.iter().any(|f| {
                    f.relationship_name
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                });
                if !known {
                    problems.push(format!("{o}.{name} ({by}): {o} has no relationship {rel}"));
                }
                continue;
            }
            let Some(f) = find(name) else {
                problems.push(format!("{o}.{name} ({by}) {NOT_DESCRIBED}"));
                continue;
            };
            if !f.createable && !f.updateable {
                problems.push(format!("{o}.{name} ({by}) is read only"));
            }
            if f.restricted_picklist {
                let mine = values.iter().filter(|v| v.field.eq_ignore_ascii_case(name));
                problems.extend(restricted_problems(o, f, by, mine));
            }
        }
    }
    problems
}

/// What a restricted picklist cannot take: anything at all (no active values), or
/// each value the mapping itself writes that is not one of its active values.
fn restricted_problems<'a>(
    o: &str,
    f: &FieldDescribe,
    by: &str,
    values: impl Iterator<Item = &'a KnownValue>,
) -> Vec<String> {
    let name = &f.name;
    if !f.picklist_values.iter().any(|v| v.active) {
        return vec![format!(
            "{o}.{name} ({by}) is a restricted picklist with no active values: run the codes sync first"
        )];
    }
    let mut out = Vec::new();
    for v in values {
        // Exact comparison: the org refuses a value that differs only in case.
        let listed = f.picklist_values.iter().find(|p| p.value == v.value);
        let state = match listed {
            Some(p) if p.active => continue,
            Some(_) => "is inactive in",
            None => "is not in",
        };
        out.push(format!(
            "{o}.{name} ({by}): value {:?} from the mapping's {} {state} the restricted picklist: \
             the org would refuse every record carrying it; add or activate the value, or change \
             the mapping",
            v.value, v.origin
        ));
    }
    out
}

/// The relationship name of a reference field (`AccountId` -> `Account`).
pub fn relationship_of(d: &Describe, field: &str) -> Option<String> {
    d.fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(field))
        .and_then(|f| f.relationship_name.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn account() -> Describe {
        serde_json::from_value(json!({"name": "Account", "fields": [
            {"name": "Id", "type": "id", "createable": false, "updateable": false},
            {"name": "OneKey_Id__c", "type": "string", "externalId": true},
            {"name": "LastName", "type": "string"},
            {"name": "IsPersonAccount", "type": "boolean", "createable": false, "updateable": false},
            {"name": "ParentId", "type": "reference", "relationshipName": "Parent", "referenceTo": ["Account"]},
            {"name": "Specialty__pc", "type": "picklist", "restrictedPicklist": true, "picklistValues": []},
            {"name": "Type", "type": "picklist", "restrictedPicklist": true, "picklistValues": [
                {"value": "Hospital"}, {"value": "Clinic"}, {"value": "Other", "active": false}
            ]},
            {"name": "Status__c", "type": "picklist", "restrictedPicklist": false, "picklistValues": []}
        ]}))
        .unwrap()
    }

    #[test]
    fn lists_every_problem_of_an_object() {
        let uses = vec![Use {
            by: "individual mapping".to_string(),
            fields: vec![
                "LastName".to_string(),
                "ShoeSize__c".to_string(),
                "IsPersonAccount".to_string(),
                "Parent.OneKey_Id__c".to_string(),
                "Owner.OneKey_Id__c".to_string(),
                "Specialty__pc".to_string(),
            ],
            values: vec![],
        }];
        let p = check_object(&account(), "OneKey_Id__c", &uses);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert_eq!(
            p[0],
            "Account.ShoeSize__c (individual mapping) is not in describe: it does not exist, \
             or is not visible to this user: check field-level security"
        );
        assert!(p[1].contains("IsPersonAccount (individual mapping) is read only"));
        assert!(p[2].contains("has no relationship Owner"));
        assert!(p[3].contains("restricted picklist with no active values"));
        let p = check_object(&account(), "Other_Id__c", &[]);
        assert!(p[0].starts_with("Account.Other_Id__c is not in describe"));
    }

    #[test]
    fn a_plain_field_as_external_id_is_refused() {
        let p = check_object(&account(), "LastName", &[]);
        assert_eq!(
            p,
            ["Account.LastName is not marked External ID: upserts by it are refused"]
        );
        assert_eq!(
            relationship_of(&account(), "parentid").as_deref(),
            Some("Parent")
        );
    }

    fn known(field: &str, value: &str, origin: &str) -> KnownValue {
        KnownValue {
            field: field.into(),
            value: value.into(),
            origin: origin.into(),
        }
    }

    #[test]
    fn each_mapped_value_a_restricted_picklist_lacks_is_named_with_its_origin() {
        let plan = TablePlan {
            kind: provsync_core::model::EntityKind::Workplace,
            table: "Account".into(),
            fields: vec!["Type".into(), "Status__c".into()],
            children: vec![],
            disconnect: vec![("Type".into(), json!("Closed"))],
            key: None,
            known_values: vec![
                known("Type", "Hospital", "translations.account_type"),
                known("Type", "Pharmacy", "translations.account_type"),
                known("Type", "clinic", "constant"),
                known("Type", "Other", "default"),
                // Not restricted: takes anything.
                known("Status__c", "Whatever", "constant"),
            ],
        };
        let uses = [Use::new(
            "workplace mapping".into(),
            &plan.fields,
            &plan.known_values,
            &plan.disconnect,
        )];
        let p = check_object(&account(), "OneKey_Id__c", &uses);
        let tail = "the org would refuse every record carrying it; add or activate the value, \
                    or change the mapping";
        assert_eq!(
            p,
            [
                format!("Account.Type (workplace mapping): value \"Pharmacy\" from the mapping's translations.account_type is not in the restricted picklist: {tail}"),
                format!("Account.Type (workplace mapping): value \"clinic\" from the mapping's constant is not in the restricted picklist: {tail}"),
                format!("Account.Type (workplace mapping): value \"Other\" from the mapping's default is inactive in the restricted picklist: {tail}"),
                format!("Account.Type (workplace mapping): value \"Closed\" from the mapping's disconnect is not in the restricted picklist: {tail}"),
            ]
        );
    }

    #[test]
    fn a_restricted_picklist_with_no_values_is_reported_once_not_per_value() {
        let uses = [Use {
            by: "individual mapping".into(),
            fields: vec!["Specialty__pc".into()],
            values: vec![
                known("Specialty__pc", "A", "constant"),
                known("Specialty__pc", "B", "default"),
            ],
        }];
        let p = check_object(&account(), "OneKey_Id__c", &uses);
        assert_eq!(
            p,
            ["Account.Specialty__pc (individual mapping) is a restricted picklist with no active values: run the codes sync first"]
        );
    }
}
