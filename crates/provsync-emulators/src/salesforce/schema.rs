//! The org's object schema, read from a describe-style JSON file (`sobjects[]` with
//! `fields[]` as `GET /sobjects/{o}/describe` lists them), and the describe answer.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

/// The schema the emulator starts with (docs/salesforce-model.md).
pub const DEFAULT_SCHEMA: &str = include_str!("default-schema.json");

/// Why a schema file was refused (each text holds its cause, shown once).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Not the JSON expected.
    #[error("schema is not a describe-style document: {0}")]
    Json(serde_json::Error),
    /// Inconsistent content.
    #[error("schema: {0}")]
    Invalid(String),
}

impl From<serde_json::Error> for SchemaError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

/// A field's data type (the describe `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Record id.
    Id,
    /// Text up to `length`.
    String,
    /// Long text up to `length`.
    Textarea,
    /// E-mail address.
    Email,
    /// Phone number.
    Phone,
    /// URL.
    Url,
    /// Picklist (restricted or not).
    Picklist,
    /// true/false.
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// ISO 8601 timestamp.
    Datetime,
    /// Floating-point number.
    Double,
    /// Integer.
    Int,
    /// Lookup to another object's Id.
    Reference,
}

impl FieldType {
    /// The describe name.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Double => "double",
            FieldType::Int => "int",
            FieldType::Reference => "reference",
        }
    }

    /// Whether values are text with a maximum length.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Textarea
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::Picklist
        )
    }
}

/// One picklist value listed inline in the schema.
#[derive(Debug, Clone, Deserialize)]
pub struct InlineValue {
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

/// One field.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    /// API name.
    pub name: String,
    /// Label (defaults to the name).
    #[serde(default)]
    pub label: Option<String>,
    /// Data type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Maximum length of text values (0: the type's default).
    #[serde(default)]
    pub length: usize,
    /// External id (upsert key).
    #[serde(default)]
    pub external_id: bool,
    /// Unique index.
    #[serde(default)]
    pub unique: bool,
    /// Usable as an upsert or relationship key.
    #[serde(default)]
    pub id_lookup: bool,
    /// May be null.
    #[serde(default = "yes")]
    pub nillable: bool,
    /// Writable on create.
    #[serde(default = "yes")]
    pub createable: bool,
    /// Writable on update.
    #[serde(default = "yes")]
    pub updateable: bool,
    /// Given a value by the org when left out at create.
    #[serde(default)]
    pub defaulted_on_create: bool,
    /// Value given at create when left out.
    #[serde(default)]
    pub default_value: Option<Value>,
    /// Custom field (`__c`).
    #[serde(default)]
    pub custom: bool,
    /// Objects a reference points to.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference (`Account` for `AccountId`).
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// Only the active values are accepted.
    #[serde(default)]
    pub restricted_picklist: bool,
    /// Values listed in the schema itself.
    #[serde(default)]
    pub picklist_values: Vec<InlineValue>,
    /// The value set feeding this picklist (emulator extension of describe).
    #[serde(default)]
    pub value_set_name: Option<String>,
    /// `GlobalValueSet` or `StandardValueSet`.
    #[serde(default)]
    pub value_set_type: Option<String>,
}

impl Field {
    fn system(name: &str, kind: FieldType) -> Field {
        Field {
            name: name.to_owned(),
            label: None,
            kind,
            length: if kind == FieldType::Id { 18 } else { 0 },
            external_id: false,
            unique: false,
            id_lookup: kind == FieldType::Id,
            nillable: kind != FieldType::Id,
            createable: false,
            updateable: false,
            defaulted_on_create: true,
            default_value: None,
            custom: false,
            reference_to: Vec::new(),
            relationship_name: None,
            restricted_picklist: false,
            picklist_values: Vec::new(),
            value_set_name: None,
            value_set_type: None,
        }
    }

    /// Maximum length of a text value.
    pub fn max_length(&self) -> usize {
        match (self.length, self.kind) {
            (0, FieldType::Textarea) => 32_768,
            (0, _) => 255,
            (n, _) => n,
        }
    }

    /// Label, or the name when the schema gives none.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Salesforce's notion of a required field: not nillable, createable, no default.
    pub fn required(&self) -> bool {
        !self.nillable
            && self.createable
            && !self.defaulted_on_create
            && self.default_value.is_none()
            && self.kind != FieldType::Boolean
    }

    /// Usable as an upsert key or in a parent reference by external id.
    pub fn is_key(&self) -> bool {
        self.external_id || (self.id_lookup && self.kind != FieldType::Id)
    }
}

/// What a duplicate rule does when a record matches: the Metadata API's
/// `DuplicateRule.actionOnInsert`/`actionOnUpdate`
/// (https://developer.salesforce.com/docs/atlas.en-us.api_meta.meta/api_meta/meta_duplicaterule.htm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateAction {
    /// `Allow` with the `Alert` operation: the API answers `DUPLICATES_DETECTED`
    /// unless the request sets `allowSave` in the duplicate rule header.
    #[default]
    Alert,
    /// `Block`: the API refuses the record whatever the header says.
    Block,
}

/// An active duplicate rule of an object, with the one matching rule it uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateRule {
    /// Developer name (`DuplicateResult.duplicateRule`).
    pub name: String,
    /// Fields the matching rule compares (all must match).
    pub fields: Vec<String>,
    /// What a match does.
    #[serde(default)]
    pub action: DuplicateAction,
}

impl DuplicateRule {
    /// The developer name of its matching rule (`MatchResult.rule`).
    pub fn matching_rule(&self) -> String {
        format!(
            "{}_Matching_Rule",
            self.name.trim_end_matches("_Duplicate_Rule")
        )
    }
}

/// One object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SObject {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// The three-character prefix of its record ids.
    pub key_prefix: String,
    /// The first API version serving it (e.g. 65.0 for ProviderAffiliation).
    #[serde(default)]
    pub min_api_version: Option<f64>,
    /// Fields, in describe order.
    pub fields: Vec<Field>,
    /// Active duplicate rules (none unless the schema file or
    /// `--duplicate-rule` enables one).
    #[serde(default)]
    pub duplicate_rules: Vec<DuplicateRule>,
    #[serde(skip)]
    by_lower: HashMap<String, usize>,
    #[serde(skip)]
    by_relationship: HashMap<String, usize>,
}

impl SObject {
    /// The field of that name, case-insensitively as Salesforce matches names.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.by_lower
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.fields[i])
    }

    /// The reference field whose relationship name this is.
    pub fn relationship(&self, name: &str) -> Option<&Field> {
        self.by_relationship
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.fields[i])
    }

    /// Fields usable as upsert keys.
    pub fn key_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.is_key())
    }

    /// Fields the store indexes by value: the keys, and unique fields that are no key
    /// (their uniqueness is checked by lookup).
    pub fn indexed_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.is_key() || f.unique)
    }

    /// Served at this API version.
    pub fn available_at(&self, version: f64) -> bool {
        self.min_api_version.is_none_or(|min| version >= min)
    }

    /// Builds the name indexes and checks the duplicate rules' fields.
    fn index(&mut self) -> Result<(), SchemaError> {
        self.by_lower.clear();
        self.by_relationship.clear();
        for (i, f) in self.fields.iter().enumerate() {
            if self
                .by_lower
                .insert(f.name.to_ascii_lowercase(), i)
                .is_some()
            {
                return Err(SchemaError::Invalid(format!(
                    "{}.{} is listed twice",
                    self.name, f.name
                )));
            }
            if f.kind == FieldType::Reference {
                let Some(rel) = &f.relationship_name else {
                    return Err(SchemaError::Invalid(format!(
                        "{}.{} is a reference without relationshipName",
                        self.name, f.name
                    )));
                };
                self.by_relationship.insert(rel.to_ascii_lowercase(), i);
            }
        }
        for rule in &mut self.duplicate_rules {
            if rule.fields.is_empty() {
                return Err(SchemaError::Invalid(format!(
                    "duplicate rule {} of {} matches on no field",
                    rule.name, self.name
                )));
            }
            for f in &mut rule.fields {
                let Some(&i) = self.by_lower.get(&f.to_ascii_lowercase()) else {
                    return Err(SchemaError::Invalid(format!(
                        "duplicate rule {} matches on {}.{f}, which the object lacks (or hides)",
                        rule.name, self.name
                    )));
                };
                f.clone_from(&self.fields[i].name);
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Document {
    sobjects: Vec<SObject>,
}

/// Every object of the org.
#[derive(Debug, Clone)]
pub struct Schema {
    objects: Vec<SObject>,
    by_lower: HashMap<String, usize>,
    by_prefix: HashMap<String, usize>,
}

impl Schema {
    /// Reads a describe-style document, adding the system fields every object has.
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let doc: Document = serde_json::from_str(text)?;
        let mut schema = Schema {
            objects: Vec::new(),
            by_lower: HashMap::new(),
            by_prefix: HashMap::new(),
        };
        for mut o in doc.sobjects {
            if o.key_prefix.len() != 3 || !o.key_prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(SchemaError::Invalid(format!(
                    "{}: keyPrefix must be 3 letters or digits",
                    o.name
                )));
            }
            for (name, kind) in [
                ("Id", FieldType::Id),
                ("CreatedDate", FieldType::Datetime),
                ("LastModifiedDate", FieldType::Datetime),
                ("SystemModstamp", FieldType::Datetime),
            ] {
                if !o.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
                    let at = if name == "Id" { 0 } else { o.fields.len() };
                    o.fields.insert(at, Field::system(name, kind));
                }
            }
            o.index()?;
            let i = schema.objects.len();
            if schema.by_prefix.insert(o.key_prefix.clone(), i).is_some() {
                return Err(SchemaError::Invalid(format!(
                    "key prefix {} is used twice",
                    o.key_prefix
                )));
            }
            schema.by_lower.insert(o.name.to_ascii_lowercase(), i);
            schema.objects.push(o);
        }
        for o in &schema.objects {
            for f in &o.fields {
                for to in &f.reference_to {
                    if schema.object(to).is_none() {
                        return Err(SchemaError::Invalid(format!(
                            "{}.{} refers to {to}, which the schema lacks",
                            o.name, f.name
                        )));
                    }
                }
            }
        }
        Ok(schema)
    }

    /// The default provider-model schema.
    pub fn default_org() -> Schema {
        Schema::parse(DEFAULT_SCHEMA).expect("the built-in schema is valid")
    }

    /// The object of that name (case-insensitive).
    pub fn object(&self, name: &str) -> Option<&SObject> {
        self.by_lower
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.objects[i])
    }

    /// The object whose ids carry this prefix.
    pub fn object_of_id(&self, id: &str) -> Option<&SObject> {
        self.by_prefix.get(id.get(..3)?).map(|&i| &self.objects[i])
    }

    /// All objects.
    pub fn objects(&self) -> &[SObject] {
        &self.objects
    }

    fn object_mut(&mut self, name: &str) -> Result<&mut SObject, SchemaError> {
        match self.by_lower.get(&name.to_ascii_lowercase()) {
            Some(&i) => Ok(&mut self.objects[i]),
            None => Err(SchemaError::Invalid(format!("no object {name}"))),
        }
    }

    /// Activates a duplicate rule on an object (`--duplicate-rule`).
    pub fn add_duplicate_rule(
        &mut self,
        object: &str,
        rule: DuplicateRule,
    ) -> Result<(), SchemaError> {
        let o = self.object_mut(object)?;
        if o.duplicate_rules.iter().any(|r| r.name == rule.name) {
            return Err(SchemaError::Invalid(format!(
                "{} has two duplicate rules named {}",
                o.name, rule.name
            )));
        }
        o.duplicate_rules.push(rule);
        o.index()
    }

    /// Hides a field from the integration user (`--hide-field`), as field-level
    /// security does. The REST API Developer Guide, "Get Field Values from a
    /// Standard Object Record"
    /// (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api/dome_get_field_values.htm):
    /// fields inaccessible by field-level security are not returned, the record's
    /// fields are those describe returns, and naming one answers as naming a field
    /// that does not exist; so describe does not list it and SOQL and writes naming
    /// it get `No such column`. The record values stay in the org, unseen.
    pub fn hide_field(&mut self, object: &str, field: &str) -> Result<(), SchemaError> {
        let o = self.object_mut(object)?;
        let Some(i) = o
            .fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(field))
        else {
            return Err(SchemaError::Invalid(format!("no field {}.{field}", o.name)));
        };
        let f = &o.fields[i];
        // Salesforce keeps Id and universally required fields visible to every
        // profile (field-level security cannot hide them).
        if f.kind == FieldType::Id || f.required() {
            return Err(SchemaError::Invalid(format!(
                "{}.{} is required: field-level security cannot hide it",
                o.name, f.name
            )));
        }
        o.fields.remove(i);
        o.index()
    }
}

/// A picklist value as describe lists it.
#[derive(Debug, Clone)]
pub struct DescribedValue {
    /// API value.
    pub value: String,
    /// Label.
    pub label: String,
    /// Default.
    pub default: bool,
}

/// The `describe` answer of one object; `values` gives the active values of a
/// value-set-bound picklist.
pub fn describe(
    o: &SObject,
    version: &str,
    values: impl Fn(&Field) -> Vec<DescribedValue>,
) -> Value {
    let fields: Vec<Value> = o
        .fields
        .iter()
        .map(|f| {
            let picklist: Vec<Value> = if f.kind == FieldType::Picklist {
                values(f)
                    .into_iter()
                    .map(|v| {
                        json!({"active": true, "defaultValue": v.default, "label": v.label,
                               "validFor": null, "value": v.value})
                    })
                    .collect()
            } else {
                Vec::new()
            };
            json!({
                "name": f.name,
                "label": f.label(),
                "type": f.kind.name(),
                "length": if f.kind.is_text() || f.kind == FieldType::Id { f.max_length() } else { 0 },
                "externalId": f.external_id,
                "unique": f.unique,
                "idLookup": f.id_lookup,
                "nillable": f.nillable,
                "createable": f.createable,
                "updateable": f.updateable,
                "defaultedOnCreate": f.defaulted_on_create || f.default_value.is_some(),
                "defaultValue": f.default_value,
                "custom": f.custom,
                "referenceTo": f.reference_to,
                "relationshipName": f.relationship_name,
                "restrictedPicklist": f.restricted_picklist,
                "picklistValues": picklist,
                "calculated": false,
                "filterable": true,
                "sortable": true,
            })
        })
        .collect();
    json!({
        "name": o.name,
        "label": o.label.as_deref().unwrap_or(&o.name),
        "keyPrefix": o.key_prefix,
        "custom": o.name.ends_with("__c"),
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "fields": fields,
        "urls": {
            "sobject": format!("/services/data/{version}/sobjects/{}", o.name),
            "describe": format!("/services/data/{version}/sobjects/{}/describe", o.name),
            "rowTemplate": format!("/services/data/{version}/sobjects/{}/{{ID}}", o.name),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schema_has_the_provider_model_with_external_ids() {
        let s = Schema::default_org();
        for name in [
            "Account",
            "HealthcareProvider",
            "HealthcarePractitionerFacility",
            "ProviderAffiliation",
            "CareSpecialty",
            "HealthcareProviderSpecialty",
            "ContactPointAddress",
            "HealthcareProviderNpi",
            "Identifier",
        ] {
            let o = s.object(name).unwrap_or_else(|| panic!("{name} missing"));
            let key = o.field("onekey_id__c").expect("external id");
            assert!(key.external_id && key.unique, "{name}");
            assert!(o.field("Id").is_some() && o.field("LastModifiedDate").is_some());
        }
        assert_eq!(s.object("account").unwrap().key_prefix, "001");
        assert!(s.object_of_id("001000000000001AAA").is_some());
        let hcp = s.object("HealthcareProvider").unwrap();
        assert_eq!(hcp.relationship("account").unwrap().name, "AccountId");
        assert!(hcp.field("Name").unwrap().required());
        assert!(!hcp.field("IsActive").unwrap().required());
    }

    /// The Life Sciences Cloud Developer Guide's IntegrationJobRun: JobIdentifier and
    /// JobName are strings with Create, Filter, Group, Sort, Update (not Nillable,
    /// not External ID, not idLookup), JobAdditionalInfo a string (255 in the
    /// Salesforce Field Reference), JobExectionSummary a textarea.
    #[test]
    fn integration_job_run_is_as_the_object_reference_lists_it() {
        let s = Schema::default_org();
        let o = s.object("IntegrationJobRun").unwrap();
        let id = o.field("JobIdentifier").unwrap();
        assert!(!id.is_key() && !id.nillable && id.required(), "{id:?}");
        assert!(o.field("JobName").unwrap().required());
        assert_eq!(
            o.key_fields().count(),
            0,
            "IntegrationJobRun has no external id"
        );
        let info = o.field("JobAdditionalInfo").unwrap();
        assert_eq!((info.kind, info.max_length()), (FieldType::String, 255));
        for f in [
            "StartDateTime",
            "EndDateTime",
            "Status",
            "JobExectionSummary",
        ] {
            assert!(o.field(f).is_some(), "{f}");
        }
    }

    /// One row of [`KEYS`]: object, then its fields marked External ID, idLookup and
    /// unique.
    type KeyRow = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );

    const ONEKEY: &str = "OneKey_Id__c";

    /// Per object, the fields (Id aside) marked External ID, idLookup and unique, as
    /// docs/salesforce-model.md cites them from Salesforce's object references.
    /// `OneKey_Id__c` is our custom key. Written out, not read from the schema file:
    /// a change to the file that moves a key must change this table too.
    const KEYS: &[KeyRow] = &[
        ("Account", &[ONEKEY], &[ONEKEY], &[ONEKEY]),
        ("Contact", &[], &[], &[]),
        // SourceSystemIdentifier is "unique within your organization" and not
        // idLookup (Life Sciences Cloud and Health Cloud guides).
        (
            "HealthcareProvider",
            &[ONEKEY],
            &[ONEKEY],
            &[ONEKEY, "SourceSystemIdentifier"],
        ),
        (
            "HealthcarePractitionerFacility",
            &[ONEKEY],
            &[ONEKEY, "Name"],
            &[ONEKEY],
        ),
        // SourceSystemIdentifier: not documented (our guess).
        (
            "ProviderAffiliation",
            &[ONEKEY],
            &[ONEKEY, "SourceSystemIdentifier"],
            &[ONEKEY],
        ),
        (
            "CareSpecialty",
            &[ONEKEY],
            &[ONEKEY, "Name", "SpecialtyCode"],
            &[ONEKEY],
        ),
        (
            "HealthcareProviderSpecialty",
            &[ONEKEY],
            &[ONEKEY, "Name"],
            &[ONEKEY],
        ),
        (
            "ContactPointAddress",
            &[ONEKEY],
            &[ONEKEY, "Name"],
            &[ONEKEY],
        ),
        ("HealthcareProviderNpi", &[ONEKEY], &[ONEKEY], &[ONEKEY]),
        ("Identifier", &[ONEKEY], &[ONEKEY, "Name"], &[ONEKEY]),
        // JobIdentifier is neither: upserts by it are refused.
        ("IntegrationJobRun", &[], &[], &[]),
    ];

    #[test]
    fn default_schema_keys_match_the_object_references() {
        fn names(o: &SObject, pick: fn(&Field) -> bool) -> Vec<&str> {
            let mut v: Vec<&str> = o
                .fields
                .iter()
                .filter(|f| f.kind != FieldType::Id && pick(f))
                .map(|f| f.name.as_str())
                .collect();
            v.sort_unstable();
            v
        }
        fn sorted(list: &[&'static str]) -> Vec<&'static str> {
            let mut v = list.to_vec();
            v.sort_unstable();
            v
        }
        let s = Schema::default_org();
        for (object, external, lookup, unique) in KEYS {
            let o = s
                .object(object)
                .unwrap_or_else(|| panic!("{object} missing"));
            assert_eq!(
                names(o, |f| f.external_id),
                sorted(external),
                "{object} externalId"
            );
            assert_eq!(
                names(o, |f| f.id_lookup),
                sorted(lookup),
                "{object} idLookup"
            );
            assert_eq!(names(o, |f| f.unique), sorted(unique), "{object} unique");
        }
        let mut listed: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
        let mut served: Vec<&str> = s.objects().iter().map(|o| o.name.as_str()).collect();
        listed.sort_unstable();
        served.sort_unstable();
        assert_eq!(served, listed, "every object of the schema is in the table");
    }

    const TEXT: FieldType = FieldType::String;
    const AREA: FieldType = FieldType::Textarea;
    const PICK: FieldType = FieldType::Picklist;
    const BOOL: FieldType = FieldType::Boolean;
    const REQ: bool = true;
    const OPT: bool = false;

    /// The fields the salesforce mappings (mappings/salesforce-*.toml) and the run's
    /// IntegrationJobRun write, with the type and longest text (0: not text) the
    /// object references give them (docs/salesforce-model.md), and whether the org
    /// requires them at create. Custom fields (`__c`, `__pc`) are ours.
    const WRITTEN: &[(&str, &str, FieldType, usize, bool)] = &[
        ("Account", "Name", TEXT, 255, REQ),
        ("Account", "FirstName", TEXT, 40, OPT),
        ("Account", "MiddleName", TEXT, 40, OPT),
        ("Account", "LastName", TEXT, 80, OPT),
        ("Account", "Salutation", PICK, 40, OPT),
        ("Account", "PersonTitle", TEXT, 80, OPT),
        ("Account", "PersonBirthdate", FieldType::Date, 0, OPT),
        ("Account", "PersonEmail", FieldType::Email, 80, OPT),
        ("Account", "Phone", FieldType::Phone, 40, OPT),
        ("Account", "Type", PICK, 255, OPT),
        ("Account", "BillingStreet", AREA, 255, OPT),
        ("Account", "BillingCity", TEXT, 40, OPT),
        ("Account", "BillingState", TEXT, 80, OPT),
        ("Account", "BillingPostalCode", TEXT, 20, OPT),
        ("Account", "BillingCountry", TEXT, 80, OPT),
        ("Account", "Gender__pc", TEXT, 40, OPT),
        ("Account", "Specialty__pc", PICK, 255, OPT),
        ("Account", "Active__c", BOOL, 0, OPT),
        ("HealthcareProvider", "Name", TEXT, 255, REQ),
        ("HealthcareProvider", "ProviderType", PICK, 40, OPT),
        // Picklists in the Life Sciences Cloud guide; their length is not
        // documented (our guess: the default 255).
        ("HealthcareProvider", "ProfessionalTitle", PICK, 255, OPT),
        ("HealthcareProvider", "OperatingCountryCode", PICK, 255, OPT),
        (
            "HealthcareProvider",
            "SourceSystemIdentifier",
            TEXT,
            255,
            OPT,
        ),
        ("HealthcareProvider", "IsActive", BOOL, 0, OPT),
        ("HealthcareProviderSpecialty", "Name", TEXT, 255, REQ),
        ("HealthcareProviderSpecialty", "IsActive", BOOL, 0, OPT),
        ("HealthcareProviderNpi", "Name", TEXT, 255, REQ),
        ("HealthcareProviderNpi", "Npi", TEXT, 15, OPT),
        ("HealthcareProviderNpi", "NpiType", PICK, 40, OPT),
        ("HealthcareProviderNpi", "IsActive", BOOL, 0, OPT),
        ("ContactPointAddress", "Name", TEXT, 255, REQ),
        ("ContactPointAddress", "Street", AREA, 255, OPT),
        ("ContactPointAddress", "City", TEXT, 40, OPT),
        ("ContactPointAddress", "State", TEXT, 80, OPT),
        ("ContactPointAddress", "PostalCode", TEXT, 20, OPT),
        ("ContactPointAddress", "Country", TEXT, 80, OPT),
        ("ContactPointAddress", "AddressType", PICK, 40, OPT),
        ("ContactPointAddress", "IsPrimary", BOOL, 0, OPT),
        ("ContactPointAddress", "Active__c", BOOL, 0, OPT),
        ("Identifier", "IdValue", TEXT, 255, OPT),
        ("Identifier", "IdUsageType", PICK, 40, OPT),
        ("HealthcarePractitionerFacility", "Name", TEXT, 255, REQ),
        ("HealthcarePractitionerFacility", "Role__c", PICK, 255, OPT),
        (
            "HealthcarePractitionerFacility",
            "IsPrimaryFacility",
            BOOL,
            0,
            OPT,
        ),
        ("HealthcarePractitionerFacility", "IsActive", BOOL, 0, OPT),
        // Name and SourceSystemIdentifier: not documented (our guess).
        ("ProviderAffiliation", "Name", TEXT, 255, OPT),
        ("ProviderAffiliation", "Role__c", PICK, 255, OPT),
        ("ProviderAffiliation", "IsPrimary", BOOL, 0, OPT),
        (
            "ProviderAffiliation",
            "SourceSystemIdentifier",
            TEXT,
            255,
            OPT,
        ),
        ("ProviderAffiliation", "IsActive", BOOL, 0, OPT),
        ("IntegrationJobRun", "JobName", TEXT, 255, REQ),
        ("IntegrationJobRun", "JobIdentifier", TEXT, 255, REQ),
        (
            "IntegrationJobRun",
            "StartDateTime",
            FieldType::Datetime,
            0,
            REQ,
        ),
        (
            "IntegrationJobRun",
            "EndDateTime",
            FieldType::Datetime,
            0,
            OPT,
        ),
        ("IntegrationJobRun", "Status", PICK, 40, OPT),
        ("IntegrationJobRun", "JobAdditionalInfo", TEXT, 255, OPT),
        (
            "IntegrationJobRun",
            "JobExectionSummary",
            AREA,
            131_072,
            OPT,
        ),
    ];

    /// The references the mappings write: object, field, relationship name, the
    /// object it points to, required at create.
    const REFERENCES: &[(&str, &str, &str, &str, bool)] = &[
        ("Account", "ParentId", "Parent", "Account", OPT),
        ("HealthcareProvider", "AccountId", "Account", "Account", OPT),
        (
            "HealthcareProviderSpecialty",
            "AccountId",
            "Account",
            "Account",
            OPT,
        ),
        (
            "HealthcareProviderNpi",
            "AccountId",
            "Account",
            "Account",
            OPT,
        ),
        ("ContactPointAddress", "ParentId", "Parent", "Account", OPT),
        // Master-detail: required (the org also takes Contact and more).
        (
            "Identifier",
            "ParentRecordId",
            "ParentRecord",
            "Account",
            REQ,
        ),
        (
            "HealthcarePractitionerFacility",
            "AccountId",
            "Account",
            "Account",
            OPT,
        ),
        (
            "HealthcarePractitionerFacility",
            "HealthcareProviderId",
            "HealthcareProvider",
            "HealthcareProvider",
            OPT,
        ),
        (
            "ProviderAffiliation",
            "AccountId",
            "Account",
            "Account",
            REQ,
        ),
        (
            "ProviderAffiliation",
            "RelatedAccountId",
            "RelatedAccount",
            "Account",
            OPT,
        ),
    ];

    #[test]
    fn default_schema_fields_the_mappings_write_match_the_object_references() {
        let s = Schema::default_org();
        let field = |object: &str, name: &str| {
            s.object(object)
                .and_then(|o| o.field(name))
                .unwrap_or_else(|| panic!("{object}.{name} missing"))
                .clone()
        };
        for &(object, name, kind, length, required) in WRITTEN {
            let f = field(object, name);
            assert_eq!(f.kind, kind, "{object}.{name} type");
            if kind.is_text() {
                assert_eq!(f.max_length(), length, "{object}.{name} length");
            }
            assert_eq!(f.required(), required, "{object}.{name} required");
            assert!(f.createable && f.updateable, "{object}.{name} writable");
            assert_eq!(f.custom, name.ends_with("__c") || name.ends_with("__pc"));
        }
        for &(object, name, relationship, to, required) in REFERENCES {
            let f = field(object, name);
            assert_eq!(f.kind, FieldType::Reference, "{object}.{name}");
            assert_eq!(f.relationship_name.as_deref(), Some(relationship));
            assert_eq!(f.reference_to, [to], "{object}.{name} refers to");
            assert_eq!(f.required(), required, "{object}.{name} required");
        }
        // PractitionerId refers to a Contact on every provider object, not to the
        // person Account: the mappings reach the practitioner another way.
        for object in [
            "HealthcarePractitionerFacility",
            "HealthcareProviderSpecialty",
            "HealthcareProviderNpi",
        ] {
            assert_eq!(field(object, "PractitionerId").reference_to, ["Contact"]);
        }
        // Read only: the org computes them.
        for (object, name) in [("Account", "IsPersonAccount"), ("Identifier", "Name")] {
            let f = field(object, name);
            assert!(!f.createable && !f.updateable, "{object}.{name}");
        }
        let affiliation = field("ProviderAffiliation", "AffiliationType");
        assert!(affiliation.restricted_picklist);
        let values: Vec<&str> = affiliation
            .picklist_values
            .iter()
            .map(|v| v.value.as_str())
            .collect();
        assert_eq!(values, ["Hard", "Soft"]);
    }

    #[test]
    fn a_reference_to_a_missing_object_is_refused() {
        let doc = r#"{"sobjects":[{"name":"A","keyPrefix":"a01","fields":[
            {"name":"BId","type":"reference","referenceTo":["B"],"relationshipName":"B"}]}]}"#;
        let err = Schema::parse(doc).unwrap_err().to_string();
        assert!(err.contains("refers to B"), "{err}");
    }
}
