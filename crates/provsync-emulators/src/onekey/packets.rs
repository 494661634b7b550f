//! Packets, generated from their cursor alone: a packet is a pure function of
//! (world, cursor), so a world of any size is served without being held in memory,
//! and the same cursor always yields the same bytes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use provsync_core::model::{Activity, Individual, Status, Workplace};

use super::cursor::{PacketCursor, Phase, SyncMode};
use super::wire::{WireActivity, WireAddress, WireIndividual, WireWorkplace, INVALID, VALID};
use crate::generator::{World, ROLES};

/// The worlds served, one per country, and the code translations of each.
#[derive(Debug, Clone)]
pub struct Catalog {
    worlds: BTreeMap<String, World>,
    /// NUCC code -> position in the specialty list (1-based code number).
    specialty_numbers: HashMap<String, usize>,
}

/// A built packet: its JSON arrays (each element serialized) and where it leads.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltPacket {
    /// Serialized workplaces.
    pub workplaces: Vec<String>,
    /// Serialized individuals.
    pub individuals: Vec<String>,
    /// Serialized activities.
    pub activities: Vec<String>,
    /// The next packet's cursor, `None` after the last.
    pub next: Option<PacketCursor>,
}

impl BuiltPacket {
    /// Records in the packet.
    pub fn records(&self) -> usize {
        self.workplaces.len() + self.individuals.len() + self.activities.len()
    }
}

/// `W{CC}.SP.nnn`: the code of the `number`-th specialty of a country.
pub fn specialty_code(country: &str, number: usize) -> String {
    format!("W{country}.SP.{number:03}")
}

/// `W{CC}.ROL.nn`: the code of the `number`-th role of a country.
pub fn role_code(country: &str, number: usize) -> String {
    format!("W{country}.ROL.{number:02}")
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail (string keys, no maps of other keys).
    serde_json::to_string(v).unwrap_or_else(|e| format!("\"unserializable: {e}\""))
}

impl Catalog {
    /// A catalog of `world` copied into each country of `countries`.
    pub fn new(world: &World, countries: &[String]) -> Result<Self, crate::generator::WorldError> {
        let mut worlds = BTreeMap::new();
        for c in countries {
            worlds.insert(c.clone(), world.for_scope(c)?);
        }
        let specialty_numbers = world
            .reference()
            .specialties
            .iter()
            .enumerate()
            .map(|(i, (code, _))| (code.clone(), i + 1))
            .collect();
        Ok(Self {
            worlds,
            specialty_numbers,
        })
    }

    /// Countries served, sorted.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.worlds.keys().map(String::as_str)
    }

    /// The world of a country.
    pub fn world(&self, country: &str) -> Option<&World> {
        self.worlds.get(country)
    }

    /// Packets a sync of `countries` at `night` serves: per country, its workplace
    /// slots then its individual slots, `packet_size` per packet, at least one
    /// packet per phase (an empty phase still answers one empty packet), as
    /// [`Catalog::packet`] walks them.
    pub fn packet_count(&self, countries: &[String], night: u32, packet_size: u32) -> u64 {
        let size = u64::from(packet_size.max(1));
        let phase = |slots: u64| slots.div_ceil(size).max(1);
        countries
            .iter()
            .filter_map(|c| self.worlds.get(c))
            .map(|w| phase(w.workplace_indices(night)) + phase(w.individual_indices(night)))
            .sum()
    }

    /// Builds the packet at `cursor`; `None` if the cursor names a country not served.
    pub fn packet(&self, cursor: &PacketCursor) -> Option<BuiltPacket> {
        let country = cursor.country_code();
        let world = self.worlds.get(country)?;
        let night = cursor.night;
        let size = u64::from(cursor.packet_size);
        let mut p = BuiltPacket {
            workplaces: Vec::new(),
            individuals: Vec::new(),
            activities: Vec::new(),
            next: None,
        };
        let (limit, next_phase) = match cursor.phase {
            Phase::Workplaces => (world.workplace_indices(night), Some(Phase::Individuals)),
            Phase::Individuals => (world.individual_indices(night), None),
        };
        let end = cursor.index.saturating_add(size).min(limit);
        for i in cursor.index..end {
            match cursor.phase {
                Phase::Workplaces => self.workplace_at(world, i, cursor.mode, night, &mut p),
                Phase::Individuals => self.individual_at(world, i, cursor.mode, night, &mut p),
            }
        }
        let mut next = cursor.clone();
        next.packet_no += 1;
        p.next = if end < limit {
            next.index = end;
            Some(next)
        } else if let Some(phase) = next_phase {
            next.phase = phase;
            next.index = 0;
            Some(next)
        } else if cursor.country + 1 < cursor.countries.len() {
            next.country += 1;
            next.phase = Phase::Workplaces;
            next.index = 0;
            Some(next)
        } else {
            None
        };
        Some(p)
    }

    fn workplace_at(&self, w: &World, i: u64, mode: SyncMode, night: u32, p: &mut BuiltPacket) {
        let now = w.workplace(i, night);
        match mode {
            SyncMode::Full => {
                if let Some(r) = now {
                    p.workplaces.push(to_json(&self.wire_workplace(&r, VALID)));
                }
            }
            SyncMode::Delta { since } => {
                let before = (since >= 1).then(|| w.workplace(i, since)).flatten();
                if let Some(change) = delta(now, before, |a, b| strip(a) == strip(b)) {
                    let (r, status) = change;
                    p.workplaces.push(to_json(&self.wire_workplace(&r, status)));
                }
            }
        }
    }

    fn individual_at(&self, w: &World, i: u64, mode: SyncMode, night: u32, p: &mut BuiltPacket) {
        let now = w.individual(i, night);
        let acts_now = if now.is_some() {
            w.activities(i, night)
        } else {
            Vec::new()
        };
        match mode {
            SyncMode::Full => {
                if let Some(r) = now {
                    p.individuals
                        .push(to_json(&self.wire_individual(&r, VALID)));
                }
                for a in &acts_now {
                    p.activities.push(to_json(&self.wire_activity(a, VALID)));
                }
            }
            SyncMode::Delta { since } => {
                let before = (since >= 1).then(|| w.individual(i, since)).flatten();
                let acts_before = if since >= 1 && before.is_some() {
                    w.activities(i, since)
                } else {
                    Vec::new()
                };
                if let Some((r, status)) = delta(now, before, |a, b| strip_i(a) == strip_i(b)) {
                    p.individuals
                        .push(to_json(&self.wire_individual(&r, status)));
                }
                let mut before_by_id: BTreeMap<String, Activity> = acts_before
                    .into_iter()
                    .map(|a| (a.meta.source_id.0.clone(), a))
                    .collect();
                for a in acts_now {
                    let b = before_by_id.remove(&a.meta.source_id.0);
                    if let Some((r, status)) = delta(Some(a), b, |x, y| strip_a(x) == strip_a(y)) {
                        p.activities.push(to_json(&self.wire_activity(&r, status)));
                    }
                }
                for (_, gone) in before_by_id {
                    p.activities
                        .push(to_json(&self.wire_activity(&gone, INVALID)));
                }
            }
        }
    }

    fn specialty(&self, country: &str, nucc: &str) -> String {
        match self.specialty_numbers.get(nucc) {
            Some(n) => specialty_code(country, *n),
            None => nucc.to_owned(),
        }
    }

    fn wire_individual(&self, r: &Individual, status: &'static str) -> WireIndividual {
        let country = r.meta.scope.as_str();
        WireIndividual {
            individual_eid: r.meta.source_id.0.clone(),
            first_name: r.first_name.clone(),
            last_name: r.last_name.clone(),
            middle_name: r.middle_name.clone(),
            title: r.title.clone(),
            gender_code: r.gender.clone(),
            birth_date: r.birth_date.map(|d| d.to_string()),
            specialty_codes: r
                .specialties
                .iter()
                .map(|s| self.specialty(country, s))
                .collect(),
            npi: r
                .identifiers
                .iter()
                .find(|i| i.system == "NPI")
                .map(|i| i.value.clone()),
            email: r.email.clone(),
            status_code: status,
            update_date: time(r.meta.modified_at),
        }
    }

    fn wire_workplace(&self, r: &Workplace, status: &'static str) -> WireWorkplace {
        let id = r.meta.source_id.as_str();
        let ident = |system: &str| {
            r.identifiers
                .iter()
                .find(|i| i.system == system)
                .map(|i| i.value.clone())
        };
        WireWorkplace {
            workplace_eid: id.to_owned(),
            name: r.name.clone(),
            type_code: r.type_code.clone(),
            parent_workplace_eid: r.parent_id.as_ref().map(|p| p.0.clone()),
            addresses: vec![WireAddress {
                // WUSW0000000012 -> WUSD0000000012: one main address per workplace.
                address_eid: address_id(id),
                line1: r.address.lines.first().cloned(),
                city: r.address.city.clone(),
                state: r.address.region.clone(),
                postal_code: r.address.postal_code.clone(),
                country: r.address.country.clone(),
            }],
            phone: r.phone.clone(),
            npi: ident("NPI"),
            ccn: ident("CCN"),
            status_code: status,
            update_date: time(r.meta.modified_at),
        }
    }

    fn wire_activity(&self, r: &Activity, status: &'static str) -> WireActivity {
        let country = r.meta.scope.as_str();
        WireActivity {
            activity_eid: r.meta.source_id.0.clone(),
            individual_eid: r.individual_id.0.clone(),
            workplace_eid: r.workplace_id.0.clone(),
            role_code: r
                .role
                .as_ref()
                .map(|role| match ROLES.iter().position(|x| x == role) {
                    Some(n) => role_code(country, n + 1),
                    None => role.clone(),
                }),
            primary: r.primary,
            phone: r.phone.clone(),
            status_code: status,
            update_date: time(r.meta.modified_at),
        }
    }
}

/// The address id of a workplace id (`W{CC}W…` -> `W{CC}D…`).
pub fn address_id(workplace_id: &str) -> String {
    match workplace_id.len().checked_sub(11) {
        Some(at) if workplace_id.is_char_boundary(at) && workplace_id.len() > 11 => {
            format!("{}D{}", &workplace_id[..at], &workplace_id[at + 1..])
        }
        _ => format!("{workplace_id}-ADDR"),
    }
}

/// What a delta sends for a record: the current version when it is new or changed,
/// the earlier version marked `INVALID` when it was removed, nothing otherwise.
fn delta<T>(
    now: Option<T>,
    before: Option<T>,
    same: impl Fn(&T, &T) -> bool,
) -> Option<(T, &'static str)> {
    match (now, before) {
        (Some(n), None) => Some((n, VALID)),
        (Some(n), Some(b)) => (!same(&n, &b)).then_some((n, VALID)),
        (None, Some(b)) => Some((b, INVALID)),
        (None, None) => None,
    }
}

fn strip(w: &Workplace) -> Workplace {
    let mut w = w.clone();
    w.meta.modified_at = None;
    w.status = Status::Active;
    w
}

fn strip_i(r: &Individual) -> Individual {
    let mut r = r.clone();
    r.meta.modified_at = None;
    r
}

fn strip_a(r: &Activity) -> Activity {
    let mut r = r.clone();
    r.meta.modified_at = None;
    r
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use proptest::prelude::*;
    use provsync_core::model::Record;

    use super::*;
    use crate::generator::{FacilityRow, ReferenceData, WorldSpec};

    fn reference() -> Arc<ReferenceData> {
        let row = |i: usize| FacilityRow {
            name: format!("HOSPITAL {i}"),
            address: Some(format!("{i} MAIN ST")),
            city: Some("SPRINGFIELD".into()),
            state: Some("IL".into()),
            postal_code: Some("62701".into()),
            phone: Some(format!("217555{i:04}")),
            type_code: Some("00-09".into()),
            npi: None,
            ccn: None,
        };
        Arc::new(ReferenceData {
            facilities: (0..7).map(row).collect(),
            specialties: vec![
                ("207R00000X".into(), "Internal Medicine Physician".into()),
                ("207Q00000X".into(), "Family Medicine Physician".into()),
                ("163W00000X".into(), "Registered Nurse".into()),
            ],
            physician_specialties: 2,
            skipped_rows: 0,
        })
    }

    fn catalog(seed: u64, n: u64) -> Catalog {
        let world = World::new(WorldSpec::us(seed, n), reference()).unwrap();
        Catalog::new(&world, &["US".to_owned()]).unwrap()
    }

    /// Every packet of a sync, in order.
    fn all_packets(c: &Catalog, mode: SyncMode, night: u32, size: u32) -> Vec<BuiltPacket> {
        let mut cursor = Some(PacketCursor::first(vec!["US".into()], mode, night, size));
        let mut out = Vec::new();
        while let Some(c0) = cursor {
            let p = c.packet(&c0).unwrap();
            cursor = p.next.clone();
            out.push(p);
        }
        out
    }

    /// (array, id, status) of every record of some packets.
    fn ids(packets: &[BuiltPacket]) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        for p in packets {
            for (array, items, field) in [
                ("workplace", &p.workplaces, "workplaceEid"),
                ("individual", &p.individuals, "individualEid"),
                ("activity", &p.activities, "activityEid"),
            ] {
                for item in items {
                    let v: serde_json::Value = serde_json::from_str(item).unwrap();
                    out.insert((
                        array.to_owned(),
                        v[field].as_str().unwrap().to_owned(),
                        v["statusCode"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        out
    }

    fn snapshot(seed: u64, n: u64, night: u32) -> BTreeMap<(String, String), Record> {
        let world = World::new(WorldSpec::us(seed, n), reference()).unwrap();
        world
            .records(night)
            .map(|r| {
                let mut key = r.clone();
                match &mut key {
                    Record::Individual(x) => x.meta.modified_at = None,
                    Record::Workplace(x) => x.meta.modified_at = None,
                    Record::Activity(x) => x.meta.modified_at = None,
                    _ => {}
                }
                ((r.kind().as_str().to_owned(), r.source_id().0.clone()), key)
            })
            .collect()
    }

    #[test]
    fn full_packets_cover_the_snapshot_exactly_once() {
        let c = catalog(3, 120);
        let packets = all_packets(&c, SyncMode::Full, 2, 17);
        let got = ids(&packets);
        let expected: BTreeSet<_> = snapshot(3, 120, 2)
            .into_keys()
            .map(|(k, id)| (k, id, "VALID".to_owned()))
            .collect();
        assert_eq!(got, expected);
        let total: usize = packets.iter().map(BuiltPacket::records).sum();
        assert_eq!(total, expected.len(), "no record is sent twice");
        assert_eq!(packets.last().unwrap().next, None);
        for (i, pair) in packets.windows(2).enumerate() {
            assert_eq!(pair[0].next.as_ref().unwrap().packet_no, i as u64 + 2);
        }
    }

    #[test]
    fn the_packet_count_a_session_announces_is_the_packets_it_serves() {
        let c = catalog(5, 90);
        for (mode, night, size) in [
            (SyncMode::Full, 1, 17),
            (SyncMode::Full, 3, 1000),
            (SyncMode::Delta { since: 1 }, 2, 7),
        ] {
            let served = all_packets(&c, mode, night, size).len() as u64;
            assert_eq!(c.packet_count(&["US".into()], night, size), served);
        }
    }

    #[test]
    fn delta_packets_hold_exactly_what_changed_between_the_nights() {
        let (seed, n) = (11, 300);
        let c = catalog(seed, n);
        let got = ids(&all_packets(&c, SyncMode::Delta { since: 1 }, 3, 50));
        let (before, after) = (snapshot(seed, n, 1), snapshot(seed, n, 3));
        let mut expected = BTreeSet::new();
        for (key, rec) in &after {
            if before.get(key) != Some(rec) {
                expected.insert((key.0.clone(), key.1.clone(), "VALID".to_owned()));
            }
        }
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            expected.insert((key.0.clone(), key.1.clone(), "INVALID".to_owned()));
        }
        assert!(
            expected.iter().any(|e| e.2 == "INVALID"),
            "the nights remove something"
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn codes_replace_nucc_specialties_and_roles() {
        let c = catalog(1, 40);
        let p = all_packets(&c, SyncMode::Full, 1, 100);
        let ind: serde_json::Value = serde_json::from_str(&p[1].individuals[0]).unwrap();
        assert!(ind["specialtyCodes"][0]
            .as_str()
            .unwrap()
            .starts_with("WUS.SP.00"));
        let act: serde_json::Value = serde_json::from_str(&p[1].activities[0]).unwrap();
        assert!(act["roleCode"].as_str().unwrap().starts_with("WUS.ROL.0"));
        assert_eq!(address_id("WUSW0000000012"), "WUSD0000000012");
    }

    #[test]
    fn delta_since_a_time_maps_to_the_last_night_dated_before_it() {
        let world = World::new(WorldSpec::us(1, 10), reference()).unwrap();
        let third = world.night_time(3);
        assert_eq!(world.night_at(third), 3);
        assert_eq!(world.night_at(third - chrono::Duration::seconds(1)), 2);
        assert_eq!(
            world.night_at(world.night_time(1) - chrono::Duration::days(30)),
            0
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The same cursor yields the same bytes, from this catalog or a fresh one.
        #[test]
        fn same_cursor_same_packet_bytes(
            seed in 0u64..1000,
            n in 1u64..200,
            night in 1u32..5,
            size in 1u32..60,
            individuals in any::<bool>(),
            index in 0u64..250,
            since in proptest::option::of(0u32..5),
        ) {
            let mode = match since {
                Some(s) if s <= night => SyncMode::Delta { since: s },
                _ => SyncMode::Full,
            };
            let mut cursor = PacketCursor::first(vec!["US".into()], mode, night, size);
            cursor.phase = if individuals { Phase::Individuals } else { Phase::Workplaces };
            cursor.index = index;
            let a = catalog(seed, n).packet(&cursor);
            let b = catalog(seed, n).packet(&cursor);
            // A catalog that built another packet first: no hidden state.
            let c = catalog(seed, n);
            let _ = c.packet(&PacketCursor::first(vec!["US".into()], mode, night, size));
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&a, &c.packet(&cursor));
        }
    }
}
