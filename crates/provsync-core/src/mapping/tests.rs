//! Tests of the public mapping API: features, load errors, per-record errors, properties.

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::schema::tests::full_records;
use super::*;
use crate::model::{
    Activity, Address, Code, EntityRef, Identifier, Individual, Meta, Relation, Status, Workplace,
};

fn load(text: &str) -> Mapping {
    Mapping::from_toml(text, "mappings/t.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn individual() -> Record {
    full_records().remove(0)
}

fn with_individual(f: impl FnOnce(&mut Individual)) -> Record {
    let mut r = individual();
    if let Record::Individual(i) = &mut r {
        f(i);
    }
    r
}

/// A mapping with one individual field given as a TOML inline value.
fn one_field(spec: &str) -> Mapping {
    load(&format!(
        "[translations.specialty]\n\"207R00000X\" = \"Internal Medicine\"\n\
         [entities.individual]\ntable = \"people\"\n\
         [entities.individual.fields]\nx = {spec}\n"
    ))
}

fn value_of(m: &Mapping, r: &Record) -> Value {
    m.apply(r).unwrap().field("x").cloned().unwrap()
}

// ---------------------------------------------------------------- features

#[test]
fn copies_paths_and_keeps_file_order() {
    let m = load(
        r#"
[entities.individual]
table = "people"
[entities.individual.fields]
zeta = "last_name"
alpha = { from = "first_name" }
mid = "identifiers[system=NPI].value"
"#,
    );
    let out = m.apply(&individual()).unwrap();
    let names: Vec<_> = out.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
    assert_eq!(out.field("zeta"), Some(&json!("Lovelace")));
    assert_eq!(out.field("alpha"), Some(&json!("Ada")));
    assert_eq!(out.field("mid"), Some(&json!("1234567893")));
    assert_eq!(out.table, "people");
    assert_eq!(out.kind, EntityKind::Individual);
    assert_eq!(out.source_id.as_str(), "I1");
    assert_eq!(out.scope.as_str(), "US");
    assert!(out.links.is_empty());
    assert_eq!(
        out.hash,
        MappedRecord::hash_of(&out.table, &out.scope, &out.fields, &out.links)
    );
}

#[test]
fn translates_codes_with_each_on_missing_policy() {
    let m = one_field(r#"{ from = "specialties[0]", translate = "specialty" }"#);
    assert_eq!(value_of(&m, &individual()), json!("Internal Medicine"));
    let other = with_individual(|i| i.specialties = vec!["XXX".into()]);
    // keep is the default: the source code goes through.
    assert_eq!(value_of(&m, &other), json!("XXX"));

    let m = one_field(
        r#"{ from = "specialties[0]", translate = "specialty", on_missing = "default", default = "UNKNOWN" }"#,
    );
    assert_eq!(value_of(&m, &other), json!("UNKNOWN"));
    let m = one_field(
        r#"{ from = "specialties[0]", translate = "specialty", on_missing = "default" }"#,
    );
    assert_eq!(value_of(&m, &other), Value::Null);

    let m =
        one_field(r#"{ from = "specialties[0]", translate = "specialty", on_missing = "reject" }"#);
    let e = m.apply(&other).unwrap_err();
    assert_eq!(e.field, "x");
    assert_eq!(
        e.to_string(),
        r#"field x: no translation for "XXX" in table "specialty""#
    );
    assert_eq!(value_of(&m, &individual()), json!("Internal Medicine"));
}

#[test]
fn translates_every_element_of_a_list_and_to_non_string_values() {
    let m = load(
        r#"
[translations.specialty]
"207R00000X" = "IM"
"208D00000X" = "GP"
[translations.active]
active = true
inactive = false
[translations.rank]
active = 1
[entities.individual]
table = "people"
[entities.individual.fields]
joined = { from = "specialties", join = "|", translate = "specialty" }
list = { from = "specialties", translate = "specialty" }
flag = { from = "status", translate = "active" }
rank = { from = "status", translate = "rank" }
"#,
    );
    let out = m.apply(&individual()).unwrap();
    assert_eq!(out.field("joined"), Some(&json!("IM|GP")));
    assert_eq!(out.field("list"), Some(&json!(["IM", "GP"])));
    assert_eq!(out.field("flag"), Some(&json!(true)));
    assert_eq!(out.field("rank"), Some(&json!(1)));
}

#[test]
fn constants_may_be_strings_numbers_or_booleans() {
    let m = load(
        r#"
[entities.individual]
table = "people"
[entities.individual.fields]
s = { constant = "ONEKEY" }
i = { constant = 42 }
f = { constant = 1.5 }
b = { constant = false }
h = { constant = 0x10 }
"#,
    );
    let out = m.apply(&individual()).unwrap();
    assert_eq!(out.field("s"), Some(&json!("ONEKEY")));
    assert_eq!(out.field("i"), Some(&json!(42)));
    assert_eq!(out.field("f"), Some(&json!(1.5)));
    assert_eq!(out.field("b"), Some(&json!(false)));
    assert_eq!(out.field("h"), Some(&json!(16)));
}

#[test]
fn defaults_fill_nulls_only() {
    let m = one_field(r#"{ from = "middle_name", default = "-" }"#);
    assert_eq!(value_of(&m, &individual()), json!("King"));
    let none = with_individual(|i| i.middle_name = None);
    assert_eq!(value_of(&m, &none), json!("-"));
    let m = one_field(r#"{ from = "specialties[5]", default = 0 }"#);
    assert_eq!(value_of(&m, &none), json!(0));
}

#[test]
fn formats_dates_and_datetimes() {
    let m = one_field(r#"{ from = "birth_date", date_format = "%d/%m/%Y" }"#);
    assert_eq!(value_of(&m, &individual()), json!("10/12/1815"));
    let none = with_individual(|i| i.birth_date = None);
    assert_eq!(value_of(&m, &none), Value::Null);
    let m = one_field(r#"{ from = "modified_at", date_format = "%Y%m%d %H:%M" }"#);
    assert_eq!(value_of(&m, &individual()), json!("20240506 07:08"));
    // Without a format, dates keep their canonical ISO form.
    let m = one_field(r#""birth_date""#);
    assert_eq!(value_of(&m, &individual()), json!("1815-12-10"));
    let m = one_field(r#""modified_at""#);
    assert_eq!(value_of(&m, &individual()), json!("2024-05-06T07:08:09Z"));
}

#[test]
fn concat_skips_null_and_empty_parts() {
    let m = one_field(
        r#"{ concat = ["title", "first_name", "middle_name", "last_name"], separator = " " }"#,
    );
    assert_eq!(value_of(&m, &individual()), json!("Dr Ada King Lovelace"));
    let r = with_individual(|i| {
        i.title = None;
        i.middle_name = Some(String::new());
    });
    assert_eq!(value_of(&m, &r), json!("Ada Lovelace"));
    let m = one_field(r#"{ concat = ["title", "middle_name"], default = "n/a" }"#);
    let r = with_individual(|i| {
        i.title = None;
        i.middle_name = None;
    });
    assert_eq!(value_of(&m, &r), json!("n/a"));
    // No separator: parts are glued; lists contribute every element; dates their ISO form.
    let m = one_field(r#"{ concat = ["specialties", "birth_date"] }"#);
    assert_eq!(
        value_of(&m, &individual()),
        json!("207R00000X208D00000X1815-12-10")
    );
}

#[test]
fn join_handles_empty_lists_and_lists_pass_as_arrays_without_join() {
    let m = one_field(r#"{ from = "specialties", join = ";" }"#);
    assert_eq!(value_of(&m, &individual()), json!("207R00000X;208D00000X"));
    let empty = with_individual(|i| i.specialties = vec![]);
    assert_eq!(value_of(&m, &empty), Value::Null);
    let blanks = with_individual(|i| i.specialties = vec!["".into(), "A".into()]);
    assert_eq!(value_of(&m, &blanks), json!("A"));
    let m = one_field(r#""identifiers""#);
    assert_eq!(
        value_of(&m, &individual()),
        json!([{"system": "NPI", "value": "1234567893"}, {"system": "DEA", "value": "AB1234563"}])
    );
}

#[test]
fn required_rejects_null_results() {
    let m = one_field(r#"{ from = "email", required = true }"#);
    assert_eq!(value_of(&m, &individual()), json!("ada@example.org"));
    let none = with_individual(|i| i.email = None);
    let e = m.apply(&none).unwrap_err();
    assert_eq!(e.field, "x");
    assert!(
        e.to_string()
            .starts_with("field x: required value is missing (email"),
        "{e}"
    );
    // A default satisfies it.
    let m = one_field(r#"{ from = "email", required = true, default = "none@example.org" }"#);
    assert_eq!(value_of(&m, &none), json!("none@example.org"));
    let m = one_field(r#"{ concat = ["email"], required = true }"#);
    assert!(m.apply(&none).unwrap_err().reason.contains("required"));
}

#[test]
fn unmapped_kinds_are_refused_per_record() {
    let m = one_field(r#""first_name""#);
    assert!(m.handles(EntityKind::Individual));
    assert!(!m.handles(EntityKind::Code));
    let code = full_records().remove(4);
    let e = m.apply(&code).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field kind: the mapping has no entry for code records"
    );
}

#[test]
fn links_come_from_the_record_with_their_roles() {
    let m = Mapping::from_toml(SQL_PROVIDER, "sql-provider.toml").unwrap();
    let records = full_records();
    let a = m.apply(&records[2]).unwrap();
    assert_eq!(a.link("individual").unwrap().id.as_str(), "I1");
    assert_eq!(a.link("workplace").unwrap().id.as_str(), "W1");
    let r = m.apply(&records[3]).unwrap();
    assert_eq!(r.link("from").unwrap().id.as_str(), "W1");
    assert_eq!(r.link("to").unwrap().id.as_str(), "W0");
}

// ---------------------------------------------------------------- shipped mapping

#[test]
fn sql_provider_loads_and_plans_every_kind_with_the_sql_columns() {
    let m = Mapping::from_toml(SQL_PROVIDER, "sql-provider.toml").unwrap();
    assert_eq!(m.name(), Some("sql-provider"));
    let plan = m.plan();
    let by_kind = |k: EntityKind| plan.iter().find(|p| p.kind == k).unwrap();
    let cols = |k: EntityKind| by_kind(k).fields.join(",");
    assert_eq!(plan.len(), 5);
    assert_eq!(
        plan.iter().map(|p| p.kind).collect::<Vec<_>>(),
        EntityKind::ALL
    );
    assert_eq!(by_kind(EntityKind::Individual).table, "individuals");
    assert_eq!(
        cols(EntityKind::Individual),
        "first_name,last_name,middle_name,full_name,title,gender,birth_date,primary_specialty,specialties,npi,email,status"
    );
    assert_eq!(by_kind(EntityKind::Workplace).table, "workplaces");
    assert_eq!(
        cols(EntityKind::Workplace),
        "name,type_code,address_line,city,region,postal_code,country,phone,npi,status"
    );
    assert_eq!(by_kind(EntityKind::Activity).table, "activities");
    assert_eq!(cols(EntityKind::Activity), "role,is_primary,phone,status");
    assert_eq!(by_kind(EntityKind::Relation).table, "relations");
    assert_eq!(
        cols(EntityKind::Relation),
        "relation_type,from_kind,from_source_id,to_kind,to_source_id"
    );
    assert_eq!(by_kind(EntityKind::Code).table, "codes");
    assert_eq!(cols(EntityKind::Code), "list,code,label,labels,active");
}

#[test]
fn sql_provider_maps_sample_records() {
    let m = Mapping::from_toml(SQL_PROVIDER, "sql-provider.toml").unwrap();
    let records = full_records();
    let out: Vec<_> = records.iter().map(|r| m.apply(r).unwrap()).collect();
    let i = &out[0];
    assert_eq!(i.field("full_name"), Some(&json!("Dr Ada Lovelace")));
    assert_eq!(i.field("birth_date"), Some(&json!("1815-12-10")));
    assert_eq!(i.field("primary_specialty"), Some(&json!("207R00000X")));
    assert_eq!(
        i.field("specialties"),
        Some(&json!("207R00000X;208D00000X"))
    );
    assert_eq!(i.field("npi"), Some(&json!("1234567893")));
    assert_eq!(i.field("status"), Some(&json!("active")));
    let w = &out[1];
    assert_eq!(w.field("address_line"), Some(&json!("1 Main St, Suite 2")));
    assert_eq!(w.field("city"), Some(&json!("Springfield")));
    assert_eq!(w.field("npi"), Some(&json!("1234567893")));
    assert_eq!(w.field("status"), Some(&json!("inactive")));
    assert_eq!(out[2].field("is_primary"), Some(&json!(true)));
    let r = &out[3];
    assert_eq!(r.field("from_kind"), Some(&json!("workplace")));
    assert_eq!(r.field("to_source_id"), Some(&json!("W0")));
    let c = &out[4];
    assert_eq!(c.field("label"), Some(&json!("Internal Medicine")));
    assert_eq!(c.field("labels"), Some(&json!({"en": "Internal Medicine"})));
    assert_eq!(c.field("active"), Some(&json!(true)));
}

#[test]
fn sql_provider_maps_a_bare_individual() {
    let m = Mapping::from_toml(SQL_PROVIDER, "sql-provider.toml").unwrap();
    let r = Record::Individual(Individual {
        meta: Meta {
            source_id: "I2".into(),
            scope: "GB".into(),
            modified_at: None,
        },
        first_name: String::new(),
        last_name: "Smith".into(),
        middle_name: None,
        title: None,
        gender: None,
        birth_date: None,
        specialties: vec![],
        identifiers: vec![],
        email: None,
        status: Status::Inactive,
    });
    let out = m.apply(&r).unwrap();
    assert_eq!(out.field("full_name"), Some(&json!("Smith")));
    assert_eq!(out.field("specialties"), Some(&Value::Null));
    assert_eq!(out.field("npi"), Some(&Value::Null));
    assert_eq!(out.field("primary_specialty"), Some(&Value::Null));
}

// ---------------------------------------------------------------- load errors

/// Loads `text`, expects a refusal, and checks file, line and field are named.
fn refused(text: &str, line: usize, field: &str, message: &str) {
    let e = Mapping::from_toml(text, "mappings/x.toml").expect_err("mapping should be refused");
    let shown = e.to_string();
    assert_eq!(e.origin, "mappings/x.toml");
    assert_eq!((e.line, e.field.as_str()), (line, field), "{shown}");
    let head = if field.is_empty() {
        format!("mappings/x.toml:{line}: ")
    } else {
        format!("mappings/x.toml:{line}: {field}: ")
    };
    assert!(shown.starts_with(&head), "{shown}");
    assert!(shown.contains(message), "{shown} lacks {message}");
}

const HEAD: &str = "[entities.individual]\ntable = \"people\"\n[entities.individual.fields]\n";

fn with_fields(lines: &str) -> String {
    format!("{HEAD}{lines}")
}

#[test]
fn refuses_unknown_path_segments_naming_the_known_fields() {
    refused(
        &with_fields("first_name = \"first_name\"\nnpi = { from = \"identifierz[system=NPI].value\" }\n"),
        5,
        "entities.individual.fields.npi",
        "unknown path segment \"identifierz\" (Individual has: kind, source_id, scope, modified_at, first_name, last_name",
    );
    refused(
        "\n[entities.workplace]\ntable = \"w\"\n[entities.workplace.fields]\ncity = \"address.cty\"\n",
        5,
        "entities.workplace.fields.city",
        "unknown path segment \"cty\" (Address has: lines, city, region, postal_code, country)",
    );
    refused(
        &with_fields("x = { concat = [\"first_name\", \"nickname\"] }\n"),
        4,
        "entities.individual.fields.x",
        "unknown path segment \"nickname\"",
    );
}

#[test]
fn refuses_unknown_kinds_and_keys() {
    refused(
        "version = 1\n[entities.doctor]\ntable = \"d\"\n",
        2,
        "entities.doctor",
        "unknown entity kind",
    );
    refused("colour = \"red\"\n[entities]\n", 1, "colour", "unknown key");
    refused(
        "[entities.individual]\ntable = \"p\"\ntabel = \"q\"\n",
        3,
        "entities.individual.tabel",
        "unknown key",
    );
    refused(
        &with_fields("a = \"first_name\"\nb = { fromm = \"last_name\" }\n"),
        5,
        "entities.individual.fields.b",
        "unknown key \"fromm\" (expected one of: from, concat",
    );
}

#[test]
fn refuses_missing_translation_tables() {
    refused(
        &format!(
            "[translations.specialty]\nA = \"B\"\n{HEAD}x = {{ from = \"specialties[0]\", translate = \"specialtys\" }}\n"
        ),
        6,
        "entities.individual.fields.x",
        "translate names a missing table \"specialtys\" (translations has: specialty)",
    );
}

#[test]
fn refuses_invalid_date_formats() {
    refused(
        &with_fields("d = { from = \"birth_date\", date_format = \"%Q/%m\" }\n"),
        4,
        "entities.individual.fields.d",
        "invalid date_format \"%Q/%m\"",
    );
    refused(
        &with_fields("d = { from = \"birth_date\", date_format = \"%Y %H:%M\" }\n"),
        4,
        "entities.individual.fields.d",
        "asks for a time or zone",
    );
    refused(
        &with_fields("d = { from = \"first_name\", date_format = \"%Y\" }\n"),
        4,
        "entities.individual.fields.d",
        "date_format needs a date or datetime",
    );
}

#[test]
fn refuses_fields_with_no_or_two_sources() {
    refused(
        &with_fields("x = { from = \"first_name\", constant = \"A\" }\n"),
        4,
        "entities.individual.fields.x",
        "two sources (from and constant)",
    );
    refused(
        &with_fields("\nx = { default = \"A\" }\n"),
        5,
        "entities.individual.fields.x",
        "no source",
    );
    refused(
        &with_fields("x = 3\n"),
        4,
        "entities.individual.fields.x",
        "expected a path string or a table",
    );
}

#[test]
fn refuses_empty_names_and_duplicate_fields() {
    refused(
        "[entities.individual]\ntable = \" \"\n",
        2,
        "entities.individual.table",
        "table name is empty",
    );
    refused(
        "[entities.individual]\n[entities.individual.fields]\nx = \"first_name\"\n",
        1,
        "entities.individual.table",
        "missing",
    );
    refused(
        &with_fields("npi = \"first_name\"\nNPI = \"last_name\"\n"),
        5,
        "entities.individual.fields.NPI",
        "duplicate target field",
    );
    refused(
        &with_fields("\"\" = \"first_name\"\n"),
        4,
        "entities.individual.fields.",
        "target field name is empty",
    );
    // TOML itself refuses the same key twice.
    refused(
        &with_fields("npi = \"first_name\"\nnpi = \"last_name\"\n"),
        5,
        "",
        "invalid TOML",
    );
}

#[test]
fn refuses_modifiers_that_do_not_apply() {
    let f = "entities.individual.fields.x";
    refused(
        &with_fields("x = { constant = 1, required = true }\n"),
        4,
        f,
        "required does not apply to a constant field",
    );
    refused(
        &with_fields("x = { from = \"first_name\", separator = \" \" }\n"),
        4,
        f,
        "separator does not apply to a from field",
    );
    refused(
        &with_fields("x = { concat = [\"first_name\"], join = \" \" }\n"),
        4,
        f,
        "join does not apply to a concat field",
    );
    refused(
        &with_fields("x = { from = \"first_name\", on_missing = \"reject\" }\n"),
        4,
        f,
        "on_missing needs translate",
    );
    refused(
        &with_fields("x = { from = \"first_name\", join = \";\" }\n"),
        4,
        f,
        "join needs a list",
    );
    refused(
        &with_fields("x = { from = \"identifiers\", join = \";\" }\n"),
        4,
        f,
        "join needs a list",
    );
    refused(
        &format!(
            "[translations.t]\n{HEAD}x = {{ from = \"identifiers[0]\", translate = \"t\" }}\n"
        ),
        5,
        f,
        "translate needs a single value",
    );
    refused(
        &with_fields("x = { concat = [\"identifiers\"] }\n"),
        4,
        f,
        "is an object",
    );
    refused(
        &with_fields("x = { concat = [] }\n"),
        4,
        f,
        "concat has no parts",
    );
    refused(
        &with_fields("x = { from = \"first_name\", translate = \"t\", on_missing = \"drop\" }\n"),
        4,
        f,
        "translate names a missing table",
    );
}

#[test]
fn refuses_bad_values() {
    let f = "entities.individual.fields.x";
    refused(
        &with_fields("x = { from = 1 }\n"),
        4,
        f,
        "from must be a string, not integer",
    );
    refused(
        &with_fields("x = { constant = [1] }\n"),
        4,
        f,
        "constant must be a string, number or boolean",
    );
    refused(
        &with_fields("x = { constant = 1979-05-27 }\n"),
        4,
        f,
        "constant must be a string, number or boolean",
    );
    refused(
        &with_fields("x = { from = \"email\", default = {} }\n"),
        4,
        f,
        "default must be",
    );
    refused(
        &with_fields("x = { from = \"email\", required = \"yes\" }\n"),
        4,
        f,
        "required must be true or false",
    );
    refused(
        &format!("[translations.t]\nA = \"B\"\n{HEAD}x = {{ from = \"email\", translate = \"t\", on_missing = \"drop\" }}\n"),
        6,
        f,
        "on_missing \"drop\" is not one of",
    );
    refused(
        "[translations.t]\nA = [1]\n[entities.code]\ntable = \"c\"\n",
        2,
        "translations.t.A",
        "a translation must be",
    );
    refused(
        "version = 2\n[entities.code]\ntable = \"c\"\n",
        1,
        "version",
        "unsupported version",
    );
    refused("name = 3\n", 1, "name", "name must be a string");
    refused("entities = 3\n", 1, "entities", "expected a table");
    refused("[entities]\n", 1, "entities", "no entity kinds");
    refused("name = \"x\"\n", 1, "entities", "missing");
    refused("name = \"x\"\n\nname = = 1\n", 3, "", "invalid TOML");
}

// ---------------------------------------------------------------- properties

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 ]{0,6}",
        any::<String>(),
        Just(String::new()),
        Just("NPI".to_string()),
        Just("207R00000X".to_string()),
    ]
}

fn arb_meta() -> impl Strategy<Value = Meta> {
    (
        arb_text(),
        arb_text(),
        proptest::option::of(-10_000_000_000i64..10_000_000_000i64),
        0u32..2_000_000_000,
    )
        .prop_map(|(id, scope, secs, nanos)| Meta {
            source_id: id.into(),
            scope: scope.into(),
            modified_at: secs.and_then(|s| {
                Utc.timestamp_opt(s, nanos % 1_000_000_000 * (nanos % 2))
                    .single()
            }),
        })
}

fn arb_ids() -> impl Strategy<Value = Vec<Identifier>> {
    proptest::collection::vec(
        (arb_text(), arb_text()).prop_map(|(system, value)| Identifier { system, value }),
        0..3,
    )
}

fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Active), Just(Status::Inactive)]
}

fn arb_kind() -> impl Strategy<Value = EntityKind> {
    proptest::sample::select(EntityKind::ALL.to_vec())
}

fn arb_opt() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(arb_text())
}

/// Arbitrary records of every kind, with absent, empty and odd values.
pub(crate) fn arb_record() -> BoxedStrategy<Record> {
    let individual = (
        arb_meta(),
        (arb_text(), arb_text(), arb_opt(), arb_opt(), arb_opt()),
        proptest::option::of(-300_000i32..3_000_000),
        proptest::collection::vec(arb_text(), 0..3),
        arb_ids(),
        arb_opt(),
        arb_status(),
    )
        .prop_map(
            |(
                meta,
                (first_name, last_name, middle_name, title, gender),
                days,
                specialties,
                identifiers,
                email,
                status,
            )| {
                Record::Individual(Individual {
                    meta,
                    first_name,
                    last_name,
                    middle_name,
                    title,
                    gender,
                    birth_date: days.and_then(NaiveDate::from_num_days_from_ce_opt),
                    specialties,
                    identifiers,
                    email,
                    status,
                })
            },
        );
    let workplace = (
        arb_meta(),
        (arb_text(), arb_opt(), arb_opt(), arb_opt()),
        (
            proptest::collection::vec(arb_text(), 0..3),
            arb_opt(),
            arb_opt(),
            arb_opt(),
            arb_opt(),
        ),
        arb_ids(),
        arb_status(),
    )
        .prop_map(
            |(
                meta,
                (name, type_code, parent, phone),
                (lines, city, region, postal_code, country),
                identifiers,
                status,
            )| {
                Record::Workplace(Workplace {
                    meta,
                    name,
                    type_code,
                    parent_id: parent.map(Into::into),
                    address: Address {
                        lines,
                        city,
                        region,
                        postal_code,
                        country,
                    },
                    phone,
                    identifiers,
                    status,
                })
            },
        );
    let activity = (
        arb_meta(),
        arb_text(),
        arb_text(),
        arb_opt(),
        any::<bool>(),
        arb_opt(),
        arb_status(),
    )
        .prop_map(|(meta, i, w, role, primary, phone, status)| {
            Record::Activity(Activity {
                meta,
                individual_id: i.into(),
                workplace_id: w.into(),
                role,
                primary,
                phone,
                status,
            })
        });
    let relation = (
        arb_meta(),
        arb_text(),
        arb_kind(),
        arb_text(),
        arb_kind(),
        arb_text(),
    )
        .prop_map(|(meta, relation_type, fk, fi, tk, ti)| {
            Record::Relation(Relation {
                meta,
                relation_type,
                from: EntityRef {
                    kind: fk,
                    id: fi.into(),
                },
                to: EntityRef {
                    kind: tk,
                    id: ti.into(),
                },
            })
        });
    let code = (
        arb_meta(),
        arb_text(),
        arb_text(),
        proptest::collection::btree_map(
            prop_oneof![Just("en".to_string()), arb_text()],
            arb_text(),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(meta, list, code, labels, active)| {
            Record::Code(Code {
                meta,
                list,
                code,
                labels,
                active,
            })
        });
    // Boxed: the unboxed tuple strategies overflow a test thread's stack in debug builds.
    prop_oneof![
        individual.boxed(),
        workplace.boxed(),
        activity.boxed(),
        relation.boxed(),
        code.boxed()
    ]
    .boxed()
}

/// A mapping exercising every feature on every kind.
const EVERYTHING: &str = r#"
[translations.specialty]
"207R00000X" = "Internal Medicine"
[translations.status]
active = "A"
[entities.individual]
table = "people"
[entities.individual.fields]
full = { concat = ["title", "first_name", "middle_name", "last_name", "specialties"], separator = " " }
spec = { from = "specialties[0]", translate = "specialty", default = "UNKNOWN" }
specs = { from = "specialties", join = ";", translate = "specialty" }
npi = "identifiers[system=NPI].value"
born = { from = "birth_date", date_format = "%d/%m/%Y %a %j" }
seen = { from = "modified_at", date_format = "%+ %s" }
status = { from = "status", translate = "status", on_missing = "default" }
src = { constant = "ONEKEY" }
[entities.workplace]
table = "orgs"
[entities.workplace.fields]
address = { from = "address.lines", join = ", " }
city = { from = "address.city", default = "" }
whole = "address"
[entities.activity]
table = "acts"
[entities.activity.fields]
primary = "primary"
[entities.relation]
table = "rels"
[entities.relation.fields]
ends = { concat = ["from.kind", "from.id", "to.kind", "to.id"], separator = ">" }
[entities.code]
table = "codes"
[entities.code.fields]
en = "labels.en"
all = "labels"
"#;

proptest! {
    #[test]
    fn mapping_never_panics_on_arbitrary_records(r in arb_record()) {
        let m = load(EVERYTHING);
        let sql = Mapping::from_toml(SQL_PROVIDER, "sql").unwrap();
        let out = m.apply(&r).unwrap();
        prop_assert_eq!(out.source_id, r.meta().source_id.clone());
        let _ = sql.apply(&r);
    }

    #[test]
    fn loading_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Mapping::from_toml(&text, "fuzz.toml");
    }

    #[test]
    fn loading_never_panics_on_arbitrary_paths(path in "[a-z_\\[\\]=.0-9A-Zé ]{0,24}") {
        let text = with_fields(&format!("x = {{ from = {:?} }}\n", path));
        match Mapping::from_toml(&text, "p.toml") {
            Ok(m) => { let _ = m.apply(&individual()); }
            Err(e) => prop_assert!(e.to_string().starts_with("p.toml:4: entities.individual.fields.x: "), "{}", e),
        }
    }

    #[test]
    fn concat_of_non_null_parts_equals_joining(
        title in arb_opt(), first in arb_text(), middle in arb_opt(), sep in "[ ,;-]{0,2}",
    ) {
        let m = one_field(&format!(
            "{{ concat = [\"title\", \"first_name\", \"middle_name\"], separator = {sep:?} }}"
        ));
        let r = with_individual(|i| {
            i.title = title.clone();
            i.first_name = first.clone();
            i.middle_name = middle.clone();
        });
        let parts: Vec<&str> = [title.as_deref(), Some(first.as_str()), middle.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        let expected = if parts.is_empty() { Value::Null } else { json!(parts.join(&sep)) };
        prop_assert_eq!(value_of(&m, &r), expected);
    }

    #[test]
    fn translate_is_identity_on_misses_with_keep(code in arb_text()) {
        let m = one_field(r#"{ from = "specialties[0]", translate = "specialty", on_missing = "keep" }"#);
        let r = with_individual(|i| i.specialties = vec![code.clone()]);
        let expected = if code == "207R00000X" { json!("Internal Medicine") } else { json!(code) };
        prop_assert_eq!(value_of(&m, &r), expected);
    }

    #[test]
    fn hash_changes_iff_a_mapped_value_changes(a in arb_record(), b in arb_record()) {
        let m = load(EVERYTHING);
        let (ma, mb) = (m.apply(&a).unwrap(), m.apply(&b).unwrap());
        let same = ma.table == mb.table && ma.scope == mb.scope && ma.fields == mb.fields && ma.links == mb.links;
        prop_assert_eq!(ma.hash == mb.hash, same);
        // An unmapped change (here, the modification time) leaves the hash alone.
        let mut a2 = a.clone();
        if let Record::Activity(x) = &mut a2 {
            x.meta.modified_at = None;
            prop_assert_eq!(m.apply(&a2).unwrap().hash, ma.hash);
        }
    }
}

#[test]
fn mapping_is_send_and_sync() {
    // The runtime shares one mapping across transform workers.
    fn check<T: Send + Sync>() {}
    check::<Mapping>();
}

#[test]
fn many_records_map_without_reserializing() {
    // Sanity only (no timing): a realistic loop over the shipped mapping.
    let m = Mapping::from_toml(SQL_PROVIDER, "sql-provider.toml").unwrap();
    let records = full_records();
    let mut n = 0;
    for _ in 0..1000 {
        for r in &records {
            n += m.apply(r).unwrap().fields.len();
        }
    }
    assert_eq!(n, 1000 * (12 + 10 + 4 + 5 + 5));
}
