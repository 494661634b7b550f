//! GMC doctors as canonical records: the designated body is a `Workplace`, each
//! doctor an `Individual` (GMC number as source id) and its connection to the body
//! an `Activity` keyed by the GMC number too (a doctor has one designated body, so a
//! move is that activity changing workplace, which the targets log as `moved`).
//!
//! The canonical model has no free attribute map yet, so GMC's own fields ride in
//! `identifiers` under `gmc.*` systems (dates as yyyy-mm-dd), next to `GMC` itself.

use chrono::NaiveDate;
use provsync_core::model::{
    Activity, Address, EntityKind, Identifier, Individual, Meta, Record, Scope, SourceId, Status,
    Workplace,
};
use provsync_core::source::BadRecord;

use super::response::{Field, RawDoctor};

/// Role code of a designated-body connection.
pub const ROLE: &str = "designated_body_connection";

/// (GMC field, identifier system, whether it is a dd/MM/yyyy date).
const ATTRIBUTES: [(Field, &str, bool); 8] = [
    (Field::SubmissionDate, "gmc.submission_date", true),
    (Field::DateAdded, "gmc.date_added", true),
    (Field::DoctorStatus, "gmc.doctor_status", false),
    (Field::UnderNotice, "gmc.under_notice", false),
    (Field::Sanction, "gmc.sanction", false),
    (Field::Breach, "gmc.breach", false),
    (Field::Investigation, "gmc.investigation", false),
    (
        Field::PreliminaryInvestigation,
        "gmc.preliminary_investigation",
        false,
    ),
];

/// The designated body as a workplace.
pub fn body(code: &str) -> Record {
    Record::Workplace(Workplace {
        meta: Meta {
            source_id: SourceId(code.to_owned()),
            scope: Scope(code.to_owned()),
            modified_at: None,
        },
        name: code.to_owned(),
        type_code: Some("designated_body".into()),
        parent_id: None,
        address: Address::default(),
        phone: None,
        identifiers: vec![Identifier {
            system: "GMC.DBC".into(),
            value: code.to_owned(),
        }],
        status: Status::Active,
    })
}

fn bad(body: &str, d: &RawDoctor, id: Option<&str>, reason: String) -> BadRecord {
    BadRecord {
        kind: Some(EntityKind::Individual),
        source_id: id.map(str::to_owned),
        position: format!("designated body {body}, doctor #{}", d.position),
        reason,
    }
}

/// A doctor of `body` as its individual and its connection, or why it is refused.
pub fn doctor(body: &str, d: &RawDoctor) -> Result<[Record; 2], BadRecord> {
    let gmc = d.get(Field::GmcReferenceNumber).unwrap_or("").trim();
    if gmc.len() != 7 || !gmc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            body,
            d,
            (!gmc.is_empty()).then_some(gmc),
            format!("GMCReferenceNumber {gmc:?} is not 7 digits"),
        ));
    }
    let mut identifiers = vec![Identifier {
        system: "GMC".into(),
        value: gmc.to_owned(),
    }];
    for (field, system, is_date) in ATTRIBUTES {
        let Some(v) = d.get(field).map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = if is_date {
            NaiveDate::parse_from_str(v, "%d/%m/%Y")
                .map_err(|_| {
                    bad(
                        body,
                        d,
                        Some(gmc),
                        format!("{} {v:?} is not dd/MM/yyyy", field.name()),
                    )
                })?
                .to_string()
        } else {
            v.to_owned()
        };
        identifiers.push(Identifier {
            system: system.into(),
            value,
        });
    }
    let meta = Meta {
        source_id: SourceId(gmc.to_owned()),
        scope: Scope(body.to_owned()),
        modified_at: None,
    };
    let individual = Individual {
        meta: meta.clone(),
        first_name: d
            .get(Field::DoctorFirstName)
            .unwrap_or("")
            .trim()
            .to_owned(),
        last_name: d.get(Field::DoctorLastName).unwrap_or("").trim().to_owned(),
        middle_name: None,
        title: Some("Dr".into()),
        gender: None,
        birth_date: None,
        specialties: Vec::new(),
        identifiers,
        email: None,
        status: Status::Active,
    };
    let connection = Activity {
        meta,
        individual_id: SourceId(gmc.to_owned()),
        workplace_id: SourceId(body.to_owned()),
        role: Some(ROLE.into()),
        primary: true,
        phone: None,
        status: Status::Active,
    };
    Ok([Record::Individual(individual), Record::Activity(connection)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: &[(Field, &str)]) -> RawDoctor {
        let mut d = RawDoctor::new(3);
        for (field, value) in fields {
            d.set(*field, value).unwrap();
        }
        d
    }

    #[test]
    fn a_doctor_becomes_an_individual_connected_to_its_body() {
        let [i, a] = doctor(
            "1-AIIDHJ",
            &raw(&[
                (Field::GmcReferenceNumber, "1234567"),
                (Field::DoctorLastName, "Khan"),
                (Field::SubmissionDate, "31/01/2027"),
                (Field::UnderNotice, "On Hold"),
            ]),
        )
        .unwrap();
        let Record::Individual(i) = i else { panic!() };
        assert_eq!(i.meta.scope.as_str(), "1-AIIDHJ");
        assert!(i.identifiers.contains(&Identifier {
            system: "gmc.submission_date".into(),
            value: "2027-01-31".into()
        }));
        let Record::Activity(a) = a else { panic!() };
        assert_eq!(a.workplace_id.as_str(), "1-AIIDHJ");
        assert_eq!(a.meta.source_id.as_str(), "1234567");
    }

    #[test]
    fn a_bad_date_is_refused_naming_field_body_and_position() {
        let e = doctor(
            "1-X",
            &raw(&[
                (Field::GmcReferenceNumber, "1234567"),
                (Field::DateAdded, "2020-01-01"),
            ]),
        )
        .unwrap_err();
        assert!(e.reason.contains("DateAdded"), "{}", e.reason);
        assert_eq!(e.position, "designated body 1-X, doctor #3");
        assert_eq!(e.source_id.as_deref(), Some("1234567"));
    }

    #[test]
    fn a_missing_gmc_number_is_refused() {
        assert!(doctor("1-X", &raw(&[(Field::DoctorLastName, "Hall")])).is_err());
    }
}
