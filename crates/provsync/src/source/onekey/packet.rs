//! Reading a OneKey packet: the envelope, then each record on its own, so one bad
//! record becomes a [`BadRecord`] naming the packet and the record id while the rest
//! of the packet loads.

use chrono::{DateTime, NaiveDate, Utc};
use provsync_core::model::{
    Activity, Address, EntityKind, Identifier, Individual, Meta, Record, Scope, SourceId, Status,
    Workplace,
};
use provsync_core::source::{BadRecord, Cursor, Page};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The packet envelope; records stay raw until read one by one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// Packet number in the sync, from 1.
    pub packet_no: u64,
    /// Country of the records.
    pub country: String,
    /// Cursor of the next packet.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Whether this is the last packet.
    pub last_packet: bool,
    /// Workplaces.
    #[serde(borrow, default)]
    pub workplaces: Vec<&'a RawValue>,
    /// Individuals.
    #[serde(borrow, default)]
    pub individuals: Vec<&'a RawValue>,
    /// Activities.
    #[serde(borrow, default)]
    pub activities: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InIndividual {
    individual_eid: String,
    first_name: String,
    last_name: String,
    #[serde(default)]
    middle_name: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    gender_code: Option<String>,
    #[serde(default)]
    birth_date: Option<NaiveDate>,
    #[serde(default)]
    specialty_codes: Vec<String>,
    #[serde(default)]
    npi: Option<String>,
    #[serde(default)]
    email: Option<String>,
    status_code: String,
    #[serde(default)]
    update_date: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InAddress {
    #[serde(default)]
    line1: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InWorkplace {
    workplace_eid: String,
    name: String,
    #[serde(default)]
    type_code: Option<String>,
    #[serde(default)]
    parent_workplace_eid: Option<String>,
    #[serde(default)]
    addresses: Vec<InAddress>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    npi: Option<String>,
    #[serde(default)]
    ccn: Option<String>,
    status_code: String,
    #[serde(default)]
    update_date: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InActivity {
    activity_eid: String,
    individual_eid: String,
    workplace_eid: String,
    #[serde(default)]
    role_code: Option<String>,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    phone: Option<String>,
    status_code: String,
    #[serde(default)]
    update_date: Option<DateTime<Utc>>,
}

fn status(code: &str) -> Result<Status, String> {
    match code {
        "VALID" => Ok(Status::Active),
        "INVALID" => Ok(Status::Inactive),
        other => Err(format!("statusCode {other:?} is not VALID or INVALID")),
    }
}

fn meta(id: String, country: &str, at: Option<DateTime<Utc>>) -> Meta {
    Meta {
        source_id: SourceId(id),
        scope: Scope(country.to_owned()),
        modified_at: at,
    }
}

fn identifiers<const N: usize>(pairs: [(&str, Option<String>); N]) -> Vec<Identifier> {
    pairs
        .into_iter()
        .filter_map(|(system, v)| {
            v.map(|value| Identifier {
                system: system.into(),
                value,
            })
        })
        .collect()
}

fn individual(r: InIndividual, country: &str) -> Result<Record, String> {
    Ok(Record::Individual(Individual {
        status: status(&r.status_code)?,
        meta: meta(r.individual_eid, country, r.update_date),
        first_name: r.first_name,
        last_name: r.last_name,
        middle_name: r.middle_name,
        title: r.title,
        gender: r.gender_code,
        birth_date: r.birth_date,
        specialties: r.specialty_codes,
        identifiers: identifiers([("NPI", r.npi)]),
        email: r.email,
    }))
}

fn workplace(r: InWorkplace, country: &str) -> Result<Record, String> {
    let address = r
        .addresses
        .into_iter()
        .next()
        .map(|a| Address {
            lines: a.line1.into_iter().collect(),
            city: a.city,
            region: a.state,
            postal_code: a.postal_code,
            country: a.country,
        })
        .unwrap_or_default();
    Ok(Record::Workplace(Workplace {
        status: status(&r.status_code)?,
        meta: meta(r.workplace_eid, country, r.update_date),
        name: r.name,
        type_code: r.type_code,
        parent_id: r.parent_workplace_eid.map(SourceId),
        address,
        phone: r.phone,
        identifiers: identifiers([("NPI", r.npi), ("CCN", r.ccn)]),
    }))
}

fn activity(r: InActivity, country: &str) -> Result<Record, String> {
    Ok(Record::Activity(Activity {
        status: status(&r.status_code)?,
        meta: meta(r.activity_eid, country, r.update_date),
        individual_id: SourceId(r.individual_eid),
        workplace_id: SourceId(r.workplace_eid),
        role: r.role_code,
        primary: r.primary,
        phone: r.phone,
    }))
}

/// The id of a record that did not read, if its id field is there in any form.
fn id_of(raw: &RawValue, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    match v.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Reads one array of a packet into `page`.
fn read_all<T: for<'de> Deserialize<'de>>(
    items: &[&RawValue],
    kind: EntityKind,
    array: &str,
    id_field: &str,
    packet_no: u64,
    convert: impl Fn(T) -> Result<Record, String>,
    page: &mut Page,
) {
    for (i, raw) in items.iter().enumerate() {
        let result = serde_json::from_str::<T>(raw.get())
            .map_err(|e| e.to_string())
            .and_then(&convert);
        match result {
            Ok(r) => page.records.push(r),
            Err(reason) => page.bad.push(BadRecord {
                kind: Some(kind),
                source_id: id_of(raw, id_field),
                position: format!("packet {packet_no} {array}[{i}]"),
                reason,
            }),
        }
    }
}

/// Reads a packet body into a page, with its packet number; `Err` when the envelope
/// itself is unreadable.
pub fn read_packet(body: &[u8]) -> Result<(Page, u64), String> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("packet envelope: {e}"))?;
    let no = env.packet_no;
    let c = env.country.as_str();
    let mut page = Page {
        records: Vec::with_capacity(
            env.workplaces.len() + env.individuals.len() + env.activities.len(),
        ),
        bad: Vec::new(),
        next: None,
        snapshot: None,
    };
    read_all(
        &env.workplaces,
        EntityKind::Workplace,
        "workplaces",
        "workplaceEid",
        no,
        |r: InWorkplace| workplace(r, c),
        &mut page,
    );
    read_all(
        &env.individuals,
        EntityKind::Individual,
        "individuals",
        "individualEid",
        no,
        |r: InIndividual| individual(r, c),
        &mut page,
    );
    read_all(
        &env.activities,
        EntityKind::Activity,
        "activities",
        "activityEid",
        no,
        |r: InActivity| activity(r, c),
        &mut page,
    );
    page.next = match (env.last_packet, env.next_cursor) {
        (true, _) => None,
        (false, Some(n)) => Some(Cursor(n)),
        (false, None) => {
            return Err(format!(
                "packet {no} is not marked last but has no nextCursor"
            ))
        }
    };
    Ok((page, no))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_IND: &str = r#"{"individualEid":"WUSM0000000001","firstName":"Ada","lastName":"Lovelace","specialtyCodes":["WUS.SP.001"],"npi":"2000000001","statusCode":"VALID","updateDate":"2025-01-01T02:00:00Z"}"#;

    #[test]
    fn bad_records_name_packet_array_index_and_id_and_the_rest_reads() {
        let body = format!(
            r#"{{"packetNo":3,"country":"US","nextCursor":"ok1.x","lastPacket":false,
            "workplaces":[],"individuals":[{GOOD_IND},{{"individualEid":"WUSM2","firstName":"B","lastName":null,"statusCode":"VALID"}}],
            "activities":[{{"activityEid":"WUSA1","individualEid":12345,"workplaceEid":"WUSW1","statusCode":"VALID"}}]}}"#
        );
        let (page, _) = read_packet(body.as_bytes()).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.next, Some(Cursor("ok1.x".into())));
        assert_eq!(page.bad.len(), 2);
        assert_eq!(page.bad[0].source_id.as_deref(), Some("WUSM2"));
        assert_eq!(page.bad[0].position, "packet 3 individuals[1]");
        assert!(
            page.bad[0].reason.contains("invalid type: null"),
            "{}",
            page.bad[0].reason
        );
        assert_eq!(page.bad[1].source_id.as_deref(), Some("WUSA1"));
        assert_eq!(page.bad[1].kind, Some(EntityKind::Activity));
    }

    #[test]
    fn invalid_status_marks_the_record_inactive_and_npi_becomes_an_identifier() {
        let body = format!(
            r#"{{"packetNo":1,"country":"US","lastPacket":true,"individuals":[{}]}}"#,
            GOOD_IND.replace("\"VALID\"", "\"INVALID\"")
        );
        let (page, _) = read_packet(body.as_bytes()).unwrap();
        let Record::Individual(i) = &page.records[0] else {
            panic!("not an individual")
        };
        assert_eq!(i.status, Status::Inactive);
        assert_eq!(i.identifiers[0].value, "2000000001");
        assert_eq!(i.specialties, ["WUS.SP.001"]);
        assert!(page.next.is_none());
    }

    #[test]
    fn unreadable_envelope_or_missing_next_cursor_is_an_error() {
        assert!(read_packet(b"{\"packetNo\":1,")
            .unwrap_err()
            .contains("envelope"));
        let e = read_packet(br#"{"packetNo":4,"country":"US","lastPacket":false}"#).unwrap_err();
        assert!(e.contains("packet 4"), "{e}");
    }
}
