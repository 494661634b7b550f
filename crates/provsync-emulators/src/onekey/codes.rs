//! Code lists per country: specialties (`SP`, from the NUCC taxonomy) and activity
//! roles (`ROL`), with labels per locale.

use std::collections::BTreeMap;

use super::packets::{role_code, specialty_code};
use super::wire::{WireCode, WireCodeList};
use crate::generator::{World, ROLES};

/// Labels of the roles in English and Spanish, in `ROLES` order.
const ROLE_LABELS: &[(&str, &str)] = &[
    ("Practitioner", "Profesional"),
    ("Attending physician", "Médico adjunto"),
    ("Consultant", "Consultor"),
    ("Resident", "Residente"),
    ("Head of department", "Jefe de servicio"),
    ("Medical director", "Director médico"),
];

/// The locales every code has a label in (`SP` labels are English only: NUCC has no
/// translation, so a client must cope with missing locales).
pub const LOCALES: &[&str] = &["en", "es"];

/// The code lists of `country` in `world`.
pub fn code_lists(world: &World, country: &str) -> Vec<WireCodeList> {
    let specialties = world
        .reference()
        .specialties
        .iter()
        .enumerate()
        .map(|(i, (_, label))| WireCode {
            code: specialty_code(country, i + 1),
            labels: BTreeMap::from([("en".to_owned(), label.clone())]),
            active: true,
        })
        .collect();
    let roles = ROLES
        .iter()
        .enumerate()
        .map(|(i, role)| {
            let (en, es) = ROLE_LABELS.get(i).copied().unwrap_or((role, role));
            WireCode {
                code: role_code(country, i + 1),
                labels: BTreeMap::from([
                    ("en".to_owned(), en.into()),
                    ("es".to_owned(), es.into()),
                ]),
                active: true,
            }
        })
        .collect();
    vec![
        WireCodeList {
            list: "SP".into(),
            description: "Specialties of individuals".into(),
            codes: specialties,
        },
        WireCodeList {
            list: "ROL".into(),
            description: "Roles of individuals at workplaces".into(),
            codes: roles,
        },
    ]
}
