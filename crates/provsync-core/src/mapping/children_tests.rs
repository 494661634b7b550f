//! Tests of child objects: one record becoming several target records.

use proptest::prelude::*;
use serde_json::json;

use super::schema::tests::full_records;
use super::tests::arb_record;
use super::*;
use crate::model::Individual;

const PRACTITIONER: &str = r#"
[entities.individual]
table = "Account"
disconnect = { Active__c = false }
[entities.individual.fields]
LastName = "last_name"

[[entities.individual.children]]
object = "HealthcareProvider"
parent_field = "AccountId"
disconnect = { IsActive = false }
[entities.individual.children.fields]
Name = { concat = ["first_name", "last_name"], separator = " " }

[[entities.individual.children]]
object = "HealthcareProviderSpecialty"
key = "{source_id}-SP-{item}"
parent_field = "PractitionerId"
for_each = "specialties"
[entities.individual.children.fields]
Name = "item"
Owner = "last_name"

[[entities.individual.children]]
object = "HealthcareProviderNpi"
key = "{source_id}-NPI"
parent_field = "PractitionerId"
when = "identifiers[system=NPI].value"
[entities.individual.children.fields]
Npi = "identifiers[system=NPI].value"

[[entities.individual.children]]
object = "Identifier"
key = "{source_id}-{item.system}"
parent_field = "ParentRecordId"
for_each = "identifiers"
when = "item.value"
[entities.individual.children.fields]
IdValue = "item.value"
"#;

fn load(text: &str) -> Mapping {
    Mapping::from_toml(text, "m.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> String {
    Mapping::from_toml(text, "m.toml").unwrap_err().to_string()
}

fn with_individual(f: impl FnOnce(&mut Individual)) -> Record {
    let mut r = full_records().remove(0);
    if let Record::Individual(i) = &mut r {
        f(i);
    }
    r
}

#[test]
fn one_record_becomes_its_children_in_mapping_order() {
    let m = load(PRACTITIONER);
    let out = m.apply(&full_records()[0]).unwrap();
    let keys: Vec<_> = out
        .children
        .iter()
        .map(|c| (c.table.as_str(), c.key.as_str(), c.parent_field.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("HealthcareProvider", "I1", "AccountId"),
            (
                "HealthcareProviderSpecialty",
                "I1-SP-207R00000X",
                "PractitionerId"
            ),
            (
                "HealthcareProviderSpecialty",
                "I1-SP-208D00000X",
                "PractitionerId"
            ),
            ("HealthcareProviderNpi", "I1-NPI", "PractitionerId"),
            ("Identifier", "I1-NPI", "ParentRecordId"),
            ("Identifier", "I1-DEA", "ParentRecordId"),
        ]
    );
    assert_eq!(
        out.children[0].fields,
        [("Name".into(), json!("Ada Lovelace"))]
    );
    assert_eq!(
        out.children[2].fields,
        [
            ("Name".into(), json!("208D00000X")),
            ("Owner".into(), json!("Lovelace"))
        ]
    );
    assert_eq!(
        out.children[5].fields,
        [("IdValue".into(), json!("AB1234563"))]
    );
}

#[test]
fn when_and_empty_lists_make_no_children() {
    let m = load(PRACTITIONER);
    let r = with_individual(|i| {
        i.specialties.clear();
        i.identifiers.clear();
    });
    let out = m.apply(&r).unwrap();
    let tables: Vec<_> = out.children.iter().map(|c| c.table.as_str()).collect();
    assert_eq!(tables, ["HealthcareProvider"]);
}

#[test]
fn a_mapping_without_children_keeps_its_hash() {
    // SQL targets store these hashes: adding the children feature must not make
    // every stored record look changed.
    let m = load(
        "[entities.individual]\ntable = \"t\"\n[entities.individual.fields]\na = \"last_name\"\n",
    );
    let out = m.apply(&full_records()[0]).unwrap();
    assert!(out.children.is_empty());
    assert_eq!(
        out.hash,
        MappedRecord::hash_of(&out.table, &out.scope, &out.fields, &out.links)
    );
    let json = serde_json::to_value(&out).unwrap();
    assert!(json.get("children").is_none());
}

#[test]
fn plan_lists_children_and_disconnect_fields() {
    let plan = load(PRACTITIONER).plan();
    assert_eq!(plan[0].disconnect, [("Active__c".into(), json!(false))]);
    let c = &plan[0].children;
    assert_eq!(c.len(), 4);
    assert_eq!(c[0].key_for("I9").as_deref(), Some("I9"));
    assert_eq!(c[0].disconnect, [("IsActive".into(), json!(false))]);
    assert_eq!(c[1].key_for("I9"), None);
    assert_eq!(c[2].key_for("I9").as_deref(), Some("I9-NPI"));
    assert_eq!(c[1].fields, ["Name", "Owner"]);
}

#[test]
fn refuses_bad_child_mappings_with_the_place() {
    let base = "[entities.individual]\ntable = \"Account\"\n[[entities.individual.children]]\n";
    let e = load_err(&format!("{base}parent_field = \"AccountId\"\n"));
    assert!(e.contains("children[0].object: missing"), "{e}");
    let e = load_err(&format!("{base}object = \"X\"\n"));
    assert!(e.contains("children[0].parent_field: missing"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nfor_each = \"last_name\"\nkey = \"{{item}}\"\n"
    ));
    assert!(e.contains("for_each needs a list"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nfor_each = \"specialties\"\n"
    ));
    assert!(e.contains("needs a key template"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nkey = \"fixed\"\n"
    ));
    assert!(e.contains("has no {path}"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nkey = \"{{source_id\"\n"
    ));
    assert!(e.contains("unclosed"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nkey = \"{{identifiers}}\"\n"
    ));
    assert!(e.contains("must be a single value"), "{e}");
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\nshape = 1\n"
    ));
    assert!(e.contains("children[0].shape: unknown key"), "{e}");
    // `item` only exists inside a for_each.
    let e = load_err(&format!(
        "{base}object = \"X\"\nparent_field = \"P\"\n[entities.individual.children.fields]\nN = \"item\"\n"
    ));
    assert!(e.contains("unknown path segment \"item\""), "{e}");
    let e = load_err("[entities.individual]\ntable = \"Account\"\ndisconnect = { A = [1] }\n");
    assert!(e.contains("disconnect values must be"), "{e}");
}

proptest! {
    #[test]
    fn children_follow_the_record_lists(r in arb_record()) {
        let m = load(PRACTITIONER);
        let Record::Individual(i) = &r else { return Ok(()); };
        // A key needs every part: an empty id or identifier system rejects the record.
        let keyless = i.meta.source_id.as_str().is_empty()
            || i.identifiers.iter().any(|x| !x.value.is_empty() && x.system.is_empty());
        let out = match m.apply(&r) {
            Err(e) => {
                prop_assert!(keyless, "unexpected error {}", e);
                prop_assert!(e.reason.contains("is empty"), "{}", e);
                return Ok(());
            }
            Ok(out) => out,
        };
        prop_assert!(!keyless);
        let count = |t: &str| out.children.iter().filter(|c| c.table == t).count();
        prop_assert_eq!(count("HealthcareProvider"), 1);
        prop_assert_eq!(count("HealthcareProviderSpecialty"),
            i.specialties.iter().filter(|s| !s.is_empty()).count());
        let with_value = i.identifiers.iter().filter(|x| !x.value.is_empty()).count();
        prop_assert_eq!(count("Identifier"), with_value);
        for c in &out.children {
            prop_assert!(c.key.starts_with(i.meta.source_id.as_str()));
        }
    }

    #[test]
    fn hash_covers_children(r in arb_record(), extra in "[A-Z0-9]{1,8}") {
        let m = load(PRACTITIONER);
        let Record::Individual(_) = &r else { return Ok(()); };
        let Ok(before) = m.apply(&r) else { return Ok(()); };
        let mut r2 = r.clone();
        if let Record::Individual(i) = &mut r2 {
            i.specialties.push(format!("X{extra}"));
        }
        let after = m.apply(&r2).unwrap();
        prop_assert_ne!(before.hash, after.hash);
        prop_assert_eq!(before.fields, after.fields);
    }
}

#[test]
fn an_entity_key_template_keys_the_record_and_enters_the_hash() {
    let m = load(
        "[entities.relation]\ntable = \"Account\"\nkey = \"{from.id}\"\n\
         [entities.relation.fields]\n\"Parent.OneKey_Id__c\" = \"to.id\"\n",
    );
    let r = &full_records()[3];
    let out = m.apply(r).unwrap();
    assert_eq!(out.target_key(), "W1");
    assert_eq!(out.source_id.as_str(), "R1");
    assert_ne!(
        out.hash,
        MappedRecord::hash_of(&out.table, &out.scope, &out.fields, &out.links)
    );
    assert_eq!(m.plan()[0].key.as_deref(), Some("{from.id}"));
}

#[test]
fn shipped_salesforce_mappings_load_and_map_every_kind() {
    for (name, text) in [
        (
            "salesforce-lsc.toml",
            include_str!("../../../../mappings/salesforce-lsc.toml"),
        ),
        (
            "salesforce-health-cloud.toml",
            include_str!("../../../../mappings/salesforce-health-cloud.toml"),
        ),
    ] {
        let m = Mapping::from_toml(text, name).unwrap_or_else(|e| panic!("{e}"));
        for r in full_records() {
            let out = m.apply(&r).unwrap_or_else(|e| panic!("{name}: {e}"));
            if r.kind() == EntityKind::Individual {
                let tables: Vec<_> = out.children.iter().map(|c| c.table.as_str()).collect();
                assert_eq!(
                    tables,
                    [
                        "HealthcareProvider",
                        "HealthcareProviderSpecialty",
                        "HealthcareProviderSpecialty",
                        "HealthcareProviderNpi"
                    ],
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn plan_lists_the_values_the_mapping_itself_writes() {
    let text = include_str!("../../../../mappings/salesforce-lsc.toml");
    let plan = Mapping::from_toml(text, "salesforce-lsc.toml")
        .unwrap()
        .plan();
    let values = |known: &[crate::target::KnownValue], field: &str| -> Vec<(String, String)> {
        known
            .iter()
            .filter(|k| k.field == field)
            .map(|k| (k.value.clone(), k.origin.clone()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(v, o)| (v.to_string(), o.to_string()))
            .collect()
    };
    let workplace = plan
        .iter()
        .find(|p| p.kind == EntityKind::Workplace)
        .unwrap();
    assert_eq!(
        values(&workplace.known_values, "Type"),
        pairs(&[
            ("Clinic", "translations.account_type"),
            ("Hospital", "translations.account_type"),
            ("Pharmacy", "translations.account_type"),
            ("Practice", "translations.account_type"),
            ("Other", "default"),
        ])
    );
    // Values read from records are not known before loading.
    assert_eq!(values(&workplace.known_values, "Name"), []);
    let individual = plan
        .iter()
        .find(|p| p.kind == EntityKind::Individual)
        .unwrap();
    assert_eq!(values(&individual.known_values, "Specialty__pc"), []);
    assert_eq!(
        values(&individual.children[0].known_values, "ProviderType"),
        pairs(&[("Practitioner", "constant")])
    );
    assert_eq!(
        values(&individual.children[1].known_values, "IsActive"),
        pairs(&[("true", "constant")])
    );
}
