//! The deterministic data generator: a world of US healthcare professionals, their
//! workplaces and activities, and its nightly snapshots.
//!
//! Every record of every night is a pure function of (seed, index, night): each
//! decision (a name, a removal, a move) is drawn from a hand-written SplitMix64
//! generator keyed by those values ([`rng`]), so a snapshot streams in constant memory
//! whatever the world's size, any record can be computed alone (random access), and the
//! same seed yields the same data forever. Night K replays, per record, the decisions
//! of nights 2..=K; nothing is remembered between records.
//!
//! Workplaces copy names, addresses, phones and type codes from the real US facility
//! files ([`ReferenceData`]); specialties are real NUCC codes.

mod names;
mod reference;
mod rng;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use provsync_core::model::{
    Activity, Address, EntityKind, Identifier, Individual, Meta, Record, Scope, SourceId, Status,
    Workplace,
};
use provsync_core::reference::npi_check_digit;

pub use reference::{FacilityRow, LoadError, ReferenceData};
use rng::{Rng, Stream};

/// The largest world [`World::new`] accepts (generated NPIs need room for growth).
pub const MAX_INDIVIDUALS: u64 = 5_000_000;
/// The last night a world can be advanced to; later nights are clamped to it.
pub const MAX_NIGHT: u32 = 366;

/// Per night, in parts per million of the records alive.
const REMOVE_PPM: u64 = 10_000;
const CHANGE_PPM: u64 = 30_000;
const MOVE_PPM: u64 = 10_000;
/// Share of workplaces that want a parent (a few lose it to the depth limit: ~20%).
const PARENT_PPM: u64 = 210_000;
/// Deepest workplace hierarchy: a root, a child and a grandchild.
const MAX_DEPTH: u32 = 3;
/// Activities per individual: 1, 2 or 3 with these weights (mean 1.5).
const ACTIVITY_COUNT_PPM: [u64; 3] = [550_000, 400_000, 50_000];
/// Share of individuals whose primary specialty is a physician one (titled `Dr`).
const PHYSICIAN_PPM: u64 = 850_000;
/// Generated NPIs start with `2` (the shipped facility NPIs all start with `1`, and
/// the reference loader drops any real `2…` NPI): individuals take the first 80 million
/// nine-digit bases, workplaces the last 20 million.
const INDIVIDUAL_NPI_BASE: u64 = 200_000_000;
const WORKPLACE_NPI_BASE: u64 = 280_000_000;
/// Slots per individual in the activity id space (activity index = 3 * individual + slot).
const ACTIVITY_SLOTS: u64 = 3;

/// Role codes of activities, the first the most common.
pub const ROLES: &[&str] = &[
    "PRACTITIONER",
    "ATTENDING",
    "CONSULTANT",
    "RESIDENT",
    "HEAD_OF_DEPARTMENT",
    "MEDICAL_DIRECTOR",
];
/// Reserved example domains (RFC 2606) so generated addresses can never reach anyone.
const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "health.example.org",
    "clinic.example.net",
];
/// Suffixes a renamed workplace takes.
const SITE_NAMES: &[&str] = &[
    "Main Campus",
    "North Campus",
    "South Campus",
    "East Campus",
    "West Campus",
    "Annex",
    "Outpatient Center",
];
const MIDDLE_INITIALS: &[&str] = &[
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "T", "W",
];

/// What world to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    /// Seed of every random decision.
    pub seed: u64,
    /// Individuals of the initial world (night 1).
    pub individuals: u64,
    /// Scope (country) of every record, e.g. `US`; it also names the ids (`WUSM…`).
    pub scope: String,
}

impl WorldSpec {
    /// A US world of `individuals` individuals.
    pub fn us(seed: u64, individuals: u64) -> Self {
        Self {
            seed,
            individuals,
            scope: "US".into(),
        }
    }
}

/// Why a world cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// More individuals than the NPI ranges allow.
    #[error("at most {MAX_INDIVIDUALS} individuals, {0} asked")]
    TooLarge(u64),
    /// The scope is empty.
    #[error("scope is empty")]
    NoScope,
    /// The reference data has no facilities or no specialties.
    #[error("reference data has no {0}")]
    NoReference(&'static str),
}

/// Counts of a generated snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneratedStats {
    /// Workplaces.
    pub workplaces: u64,
    /// Workplaces with a parent.
    pub workplaces_with_parent: u64,
    /// Individuals.
    pub individuals: u64,
    /// Activities.
    pub activities: u64,
    /// Activities flagged primary.
    pub primary_activities: u64,
}

impl GeneratedStats {
    /// Counts one record.
    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Workplace(w) => {
                self.workplaces += 1;
                self.workplaces_with_parent += u64::from(w.parent_id.is_some());
            }
            Record::Individual(_) => self.individuals += 1,
            Record::Activity(a) => {
                self.activities += 1;
                self.primary_activities += u64::from(a.primary);
            }
            Record::Relation(_) | Record::Code(_) => {}
        }
    }

    /// Records per kind.
    pub fn counts(&self) -> BTreeMap<EntityKind, u64> {
        BTreeMap::from([
            (EntityKind::Workplace, self.workplaces),
            (EntityKind::Individual, self.individuals),
            (EntityKind::Activity, self.activities),
        ])
    }

    /// All records.
    pub fn total(&self) -> u64 {
        self.workplaces + self.individuals + self.activities
    }
}

/// A generated world; cheap to clone (the reference data is shared).
#[derive(Debug, Clone)]
pub struct World {
    spec: WorldSpec,
    reference: Arc<ReferenceData>,
    /// Workplaces of night 1.
    workplaces: u64,
    /// Individuals added each night after the first.
    new_individuals: u64,
    /// Workplaces added each night after the first.
    new_workplaces: u64,
    /// Multiplier coprime with the facility count: spreads consecutive workplaces over
    /// all files instead of taking hospitals first.
    stride: u64,
    /// The generator's epoch: night K's changes are dated `epoch + K days`.
    epoch: DateTime<Utc>,
    /// First birth date (1950-01-01) and the span of birth dates in days.
    birth_start: NaiveDate,
    birth_span: u64,
}

/// The state of an individual while its nights are replayed.
struct IndividualState {
    female: bool,
    first: usize,
    last: usize,
    middle: Option<usize>,
    birth_offset: u64,
    physician: bool,
    /// Indices into the reference specialties, primary first, distinct.
    specialties: Vec<usize>,
    domain: usize,
    email_tag: Option<u64>,
    modified: u32,
}

/// The state of a workplace while its nights are replayed.
struct WorkplaceState {
    row: usize,
    copy: u64,
    site: Option<usize>,
    suite: Option<u64>,
    phone: Option<String>,
    modified: u32,
}

/// The state of one activity slot while its nights are replayed.
#[derive(Clone)]
struct ActivityState {
    workplace: u64,
    role: usize,
    phone: Option<String>,
    modified: u32,
}

impl World {
    /// A world over shared reference data; fails on an empty scope, a world larger than
    /// [`MAX_INDIVIDUALS`] or reference data without facilities or specialties.
    pub fn new(spec: WorldSpec, reference: Arc<ReferenceData>) -> Result<Self, WorldError> {
        if spec.individuals > MAX_INDIVIDUALS {
            return Err(WorldError::TooLarge(spec.individuals));
        }
        if spec.scope.trim().is_empty() {
            return Err(WorldError::NoScope);
        }
        if reference.facilities.is_empty() {
            return Err(WorldError::NoReference("facilities"));
        }
        if reference.specialties.is_empty() {
            return Err(WorldError::NoReference("specialties"));
        }
        let n = spec.individuals;
        let workplaces = n.div_ceil(4);
        let facilities = reference.facilities.len() as u64;
        let stride = [7_919, 104_729, 15_485_863, 1]
            .into_iter()
            .find(|&p| gcd(p, facilities) == 1)
            .unwrap_or(1);
        let birth_start = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap_or_default();
        let birth_end = NaiveDate::from_ymd_opt(1998, 12, 31).unwrap_or_default();
        Ok(Self {
            new_individuals: (n * 2).div_ceil(100),
            new_workplaces: workplaces.div_ceil(200),
            workplaces,
            stride,
            epoch: Utc
                .with_ymd_and_hms(2024, 12, 31, 2, 0, 0)
                .single()
                .unwrap_or_default(),
            birth_start,
            birth_span: (birth_end - birth_start).num_days() as u64 + 1,
            spec,
            reference,
        })
    }

    /// The spec this world was made from.
    pub fn spec(&self) -> &WorldSpec {
        &self.spec
    }

    /// The reference data the world draws from (specialties for code lists).
    pub fn reference(&self) -> &ReferenceData {
        &self.reference
    }

    /// The same world in another scope (country): same seed and size, ids of that scope.
    pub fn for_scope(&self, scope: &str) -> Result<World, WorldError> {
        let spec = WorldSpec {
            scope: scope.to_owned(),
            ..self.spec.clone()
        };
        World::new(spec, self.reference.clone())
    }

    /// When night `night`'s changes are dated: `modified_at` of a record changed that night.
    pub fn night_time(&self, night: u32) -> DateTime<Utc> {
        self.epoch + Days::new(u64::from(clamp_night(night)))
    }

    /// The last night whose changes are dated at or before `at` (0 when before night 1).
    pub fn night_at(&self, at: DateTime<Utc>) -> u32 {
        if at < self.night_time(1) {
            return 0;
        }
        let days = (at - self.epoch).num_days();
        u32::try_from(days).unwrap_or(MAX_NIGHT).min(MAX_NIGHT)
    }

    /// Streams the complete snapshot of a night (1 = the initial world; clamped to
    /// `1..=MAX_NIGHT`): workplaces (parents first), individuals, then activities.
    pub fn records(&self, night: u32) -> Snapshot {
        Snapshot {
            world: self.clone(),
            night: clamp_night(night),
            phase: Phase::Workplaces(0),
            pending: Vec::new().into_iter(),
        }
    }

    /// Counts of a night's snapshot, computed by streaming it.
    pub fn stats(&self, night: u32) -> GeneratedStats {
        let mut stats = GeneratedStats::default();
        for record in self.records(night) {
            stats.observe(&record);
        }
        stats
    }

    /// Records per kind in a night's snapshot, computed by streaming it.
    pub fn expected_counts(&self, night: u32) -> BTreeMap<EntityKind, u64> {
        self.stats(night).counts()
    }

    /// Individual indices that exist by a night (removed ones included).
    pub fn individual_indices(&self, night: u32) -> u64 {
        self.spec.individuals + self.new_individuals * u64::from(clamp_night(night) - 1)
    }

    /// Workplace indices that exist by a night (removed ones included).
    pub fn workplace_indices(&self, night: u32) -> u64 {
        self.workplaces + self.new_workplaces * u64::from(clamp_night(night) - 1)
    }

    /// The stable id of individual `index` (`WUSM` + 10 digits for scope US).
    pub fn individual_id(&self, index: u64) -> SourceId {
        SourceId(format!("W{}M{index:010}", self.spec.scope))
    }

    /// The stable id of workplace `index` (`WUSW` + 10 digits for scope US).
    pub fn workplace_id(&self, index: u64) -> SourceId {
        SourceId(format!("W{}W{index:010}", self.spec.scope))
    }

    /// The stable id of slot `slot` (0..3) of individual `index`'s activities.
    pub fn activity_id(&self, index: u64, slot: u64) -> SourceId {
        SourceId(format!(
            "W{}A{:010}",
            self.spec.scope,
            index * ACTIVITY_SLOTS + slot
        ))
    }

    fn meta(&self, source_id: SourceId, modified: u32) -> Meta {
        Meta {
            source_id,
            scope: Scope(self.spec.scope.clone()),
            modified_at: Some(self.epoch + Days::new(u64::from(modified))),
        }
    }

    fn individual_birth(&self, index: u64) -> u32 {
        birth_night(index, self.spec.individuals, self.new_individuals)
    }

    fn workplace_birth(&self, index: u64) -> u32 {
        birth_night(index, self.workplaces, self.new_workplaces)
    }

    /// Whether workplace `index` is removed on night `night` (given it was alive before).
    fn workplace_removed_on(&self, index: u64, night: u32) -> bool {
        Rng::for_key(self.spec.seed, Stream::WorkplaceRemove, index, night).chance(REMOVE_PPM)
    }

    fn individual_removed_on(&self, index: u64, night: u32) -> bool {
        Rng::for_key(self.spec.seed, Stream::IndividualRemove, index, night).chance(REMOVE_PPM)
    }

    /// Whether workplace `index` is in the snapshot of `night`.
    pub fn workplace_alive(&self, index: u64, night: u32) -> bool {
        let night = clamp_night(night);
        index < self.workplace_indices(night)
            && (self.workplace_birth(index) + 1..=night)
                .all(|n| !self.workplace_removed_on(index, n))
    }

    /// Whether individual `index` is in the snapshot of `night`.
    pub fn individual_alive(&self, index: u64, night: u32) -> bool {
        let night = clamp_night(night);
        index < self.individual_indices(night)
            && (self.individual_birth(index) + 1..=night)
                .all(|n| !self.individual_removed_on(index, n))
    }

    /// The parent a workplace is created with and its depth (1 = root). The depth is
    /// of the creation-time tree; removals only cut links, so it never grows later.
    fn parent_and_depth(&self, index: u64) -> (Option<u64>, u32) {
        if index == 0 {
            return (None, 1);
        }
        let mut rng = Rng::for_key(self.spec.seed, Stream::WorkplaceParent, index, 0);
        if !rng.chance(PARENT_PPM) {
            return (None, 1);
        }
        // A lower index, so parents stream before their children.
        let parent = rng.below(index);
        // Recursion depth is the chain of workplaces wanting a parent: geometric with
        // ratio 0.21, so a handful at most.
        let (_, depth) = self.parent_and_depth(parent);
        if depth >= MAX_DEPTH {
            (None, 1)
        } else {
            (Some(parent), depth + 1)
        }
    }

    /// Workplace `index` as of `night`, or `None` if not in that snapshot.
    pub fn workplace(&self, index: u64, night: u32) -> Option<Workplace> {
        let night = clamp_night(night);
        if index >= self.workplace_indices(night) {
            return None;
        }
        let seed = self.spec.seed;
        let birth = self.workplace_birth(index);
        let rows = self.reference.facilities.len() as u64;
        let mut st = WorkplaceState {
            row: ((index % rows) * self.stride % rows) as usize,
            copy: index / rows,
            site: None,
            suite: None,
            phone: None,
            modified: birth,
        };
        let row = &self.reference.facilities[st.row];
        st.phone = row.phone.clone();
        for n in birth + 1..=night {
            if self.workplace_removed_on(index, n) {
                return None;
            }
            let mut rng = Rng::for_key(seed, Stream::WorkplaceChange, index, n);
            if !rng.chance(CHANGE_PPM) {
                continue;
            }
            st.modified = n;
            match rng.below(4) {
                0 => {
                    st.site = Some(match st.site {
                        Some(s) => rng.other_index(SITE_NAMES.len(), s),
                        None => rng.index(SITE_NAMES.len()),
                    })
                }
                1 => {
                    let suite = 100 + rng.below(900);
                    st.suite = Some(if st.suite == Some(suite) {
                        suite + 1
                    } else {
                        suite
                    });
                }
                _ => {
                    let current = st.phone.as_deref();
                    let area = current.and_then(|p| p.get(..3));
                    st.phone = Some(new_phone(&mut rng, area, current));
                }
            }
        }

        let (parent, _) = self.parent_and_depth(index);
        let parent_id = parent
            .filter(|&p| self.workplace_alive(p, night))
            .map(|p| self.workplace_id(p));
        // Losing the parent is a change of this workplace, dated when it happened.
        if let Some(p) = parent.filter(|_| parent_id.is_none()) {
            let lost = (self.workplace_birth(p) + 1..=night)
                .find(|&n| self.workplace_removed_on(p, n))
                .unwrap_or(birth);
            st.modified = st.modified.max(lost);
        }

        let upper =
            row.name.chars().any(char::is_alphabetic) && !row.name.chars().any(char::is_lowercase);
        let case = |s: String| if upper { s.to_uppercase() } else { s };
        let mut name = row.name.clone();
        if st.copy > 0 {
            name.push_str(&case(format!(" - Site {}", st.copy + 1)));
        }
        if let Some(site) = st.site {
            name.push_str(&case(format!(" - {}", SITE_NAMES[site])));
        }
        let line = row.address.as_ref().map(|a| match st.suite {
            Some(s) => format!("{a}{}", case(format!(", Suite {s}"))),
            None => a.clone(),
        });

        let npi = match (&row.npi, st.copy) {
            (Some(npi), 0) => npi.clone(),
            _ => npi(WORKPLACE_NPI_BASE + index),
        };
        let mut identifiers = vec![Identifier {
            system: "NPI".into(),
            value: npi,
        }];
        if let (Some(ccn), 0) = (&row.ccn, st.copy) {
            identifiers.push(Identifier {
                system: "CCN".into(),
                value: ccn.clone(),
            });
        }
        Some(Workplace {
            meta: self.meta(self.workplace_id(index), st.modified),
            name,
            type_code: row.type_code.clone(),
            parent_id,
            address: Address {
                lines: line.into_iter().collect(),
                city: row.city.clone(),
                region: row.state.clone(),
                postal_code: row.postal_code.clone(),
                country: Some(self.spec.scope.clone()),
            },
            phone: st.phone,
            identifiers,
            status: Status::Active,
        })
    }

    /// Individual `index` as of `night`, or `None` if not in that snapshot.
    pub fn individual(&self, index: u64, night: u32) -> Option<Individual> {
        let night = clamp_night(night);
        if index >= self.individual_indices(night) {
            return None;
        }
        let seed = self.spec.seed;
        let birth = self.individual_birth(index);
        let mut st = self.initial_individual(index, birth);
        for n in birth + 1..=night {
            if self.individual_removed_on(index, n) {
                return None;
            }
            let mut rng = Rng::for_key(seed, Stream::IndividualChange, index, n);
            if rng.chance(CHANGE_PPM) {
                st.modified = n;
                self.change_individual(&mut st, &mut rng);
            }
        }
        Some(self.materialise_individual(index, st))
    }

    fn initial_individual(&self, index: u64, birth: u32) -> IndividualState {
        let mut rng = Rng::for_key(self.spec.seed, Stream::IndividualBase, index, 0);
        let female = rng.chance(500_000);
        let given = if female {
            names::FEMALE_GIVEN_NAMES.len()
        } else {
            names::MALE_GIVEN_NAMES.len()
        };
        let first = rng.index(given);
        let last = rng.index(names::SURNAMES.len());
        let middle = rng
            .chance(300_000)
            .then(|| rng.index(MIDDLE_INITIALS.len()));
        let birth_offset = rng.below(self.birth_span);
        let physicians = self.reference.physician_specialties;
        let physician = physicians > 0 && rng.chance(PHYSICIAN_PPM);
        let count = match rng.below(10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let mut specialties = Vec::with_capacity(count);
        for _ in 0..count {
            if let Some(s) = self.new_specialty(&mut rng, physician, &specialties) {
                specialties.push(s);
            }
        }
        IndividualState {
            female,
            first,
            last,
            middle,
            birth_offset,
            physician,
            specialties,
            domain: rng.index(EMAIL_DOMAINS.len()),
            email_tag: rng.chance(400_000).then(|| rng.below(100)),
            modified: birth,
        }
    }

    /// A specialty index not yet in `taken`, from the physician pool or the whole list.
    fn new_specialty(&self, rng: &mut Rng, physician: bool, taken: &[usize]) -> Option<usize> {
        let pool = if physician {
            self.reference.physician_specialties
        } else {
            self.reference.specialties.len()
        };
        if taken.len() >= pool {
            return None;
        }
        let start = rng.index(pool);
        // A linear probe from a random start: always terminates, stays uniform enough.
        (0..pool)
            .map(|k| (start + k) % pool)
            .find(|s| !taken.contains(s))
    }

    /// One content change; each kind always yields a value different from the current.
    fn change_individual(&self, st: &mut IndividualState, rng: &mut Rng) {
        match rng.below(10) {
            // Marriage, divorce, a corrected spelling.
            0..=1 => st.last = rng.other_index(names::SURNAMES.len(), st.last),
            2..=4 => {
                st.domain = rng.other_index(EMAIL_DOMAINS.len(), st.domain);
            }
            5..=8 => {
                let replace =
                    st.specialties.len() >= 3 || (st.specialties.len() == 2 && rng.chance(500_000));
                let taken = st.specialties.clone();
                if let Some(s) = self.new_specialty(rng, st.physician, &taken) {
                    if replace {
                        // Never the primary: it keeps the title consistent.
                        let at = 1 + rng.index(st.specialties.len() - 1);
                        st.specialties[at] = s;
                    } else {
                        st.specialties.push(s);
                    }
                } else {
                    st.domain = rng.other_index(EMAIL_DOMAINS.len(), st.domain);
                }
            }
            _ => {
                st.middle = Some(match st.middle {
                    Some(m) => rng.other_index(MIDDLE_INITIALS.len(), m),
                    None => rng.index(MIDDLE_INITIALS.len()),
                })
            }
        }
    }

    fn materialise_individual(&self, index: u64, st: IndividualState) -> Individual {
        let first = if st.female {
            names::FEMALE_GIVEN_NAMES[st.first]
        } else {
            names::MALE_GIVEN_NAMES[st.first]
        };
        let last = names::SURNAMES[st.last];
        let local = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        let email = format!(
            "{}.{}{}@{}",
            local(first),
            local(last),
            st.email_tag.map(|t| t.to_string()).unwrap_or_default(),
            EMAIL_DOMAINS[st.domain]
        );
        let title = if st.physician {
            "Dr"
        } else if st.female {
            "Ms"
        } else {
            "Mr"
        };
        Individual {
            meta: self.meta(self.individual_id(index), st.modified),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            middle_name: st.middle.map(|m| MIDDLE_INITIALS[m].to_owned()),
            title: Some(title.to_owned()),
            gender: Some(if st.female { "F" } else { "M" }.to_owned()),
            birth_date: self
                .birth_start
                .checked_add_days(Days::new(st.birth_offset)),
            specialties: st
                .specialties
                .iter()
                .map(|&s| self.reference.specialties[s].0.clone())
                .collect(),
            identifiers: vec![Identifier {
                system: "NPI".into(),
                value: npi(INDIVIDUAL_NPI_BASE + index),
            }],
            email: Some(email),
            status: Status::Active,
        }
    }

    /// A workplace alive on `night` among those born by then, not in `taken`.
    fn pick_workplace(&self, rng: &mut Rng, night: u32, taken: &[u64]) -> Option<u64> {
        let pool = self.workplace_indices(night);
        // Bounded tries: a tiny world may have fewer live workplaces than slots.
        (0..32)
            .map(|_| rng.below(pool))
            .find(|w| !taken.contains(w) && self.workplace_alive(*w, night))
    }

    /// The area code of a workplace's reference phone, for phones at that workplace.
    fn area_code(&self, workplace: u64) -> Option<&str> {
        let rows = self.reference.facilities.len() as u64;
        let row = ((workplace % rows) * self.stride % rows) as usize;
        self.reference.facilities[row]
            .phone
            .as_deref()
            .and_then(|p| p.get(..3))
    }

    fn activity_phone(&self, rng: &mut Rng, workplace: u64) -> Option<String> {
        // 40% have a direct line, in the workplace's area code.
        rng.chance(400_000)
            .then(|| new_phone(rng, self.area_code(workplace), None))
    }

    /// The activities of individual `index` as of `night` (empty if it is not in that
    /// snapshot); every one is at a distinct workplace alive that night, and the first
    /// is primary.
    pub fn activities(&self, index: u64, night: u32) -> Vec<Activity> {
        let night = clamp_night(night);
        if !self.individual_alive(index, night) {
            return Vec::new();
        }
        let seed = self.spec.seed;
        let birth = self.individual_birth(index);
        let mut rng = Rng::for_key(seed, Stream::ActivityBase, index, 0);
        let roll = rng.below(1_000_000);
        let count = if roll < ACTIVITY_COUNT_PPM[0] {
            1
        } else if roll < ACTIVITY_COUNT_PPM[0] + ACTIVITY_COUNT_PPM[1] {
            2
        } else {
            3
        };
        let mut slots: [Option<ActivityState>; 3] = [None, None, None];
        // Night each slot left (its workplace closed), to date the primary hand-over.
        let mut left = [0u32; 3];
        let mut taken = Vec::with_capacity(3);
        for slot in slots.iter_mut().take(count) {
            let Some(w) = self.pick_workplace(&mut rng, birth, &taken) else {
                break;
            };
            taken.push(w);
            let role = if rng.chance(500_000) {
                0
            } else {
                rng.index(ROLES.len())
            };
            *slot = Some(ActivityState {
                workplace: w,
                role,
                phone: self.activity_phone(&mut rng, w),
                modified: birth,
            });
        }

        for n in birth + 1..=night {
            for (s, slot) in slots.iter_mut().enumerate() {
                if slot
                    .as_ref()
                    .is_some_and(|a| self.workplace_removed_on(a.workplace, n))
                {
                    *slot = None;
                    left[s] = n;
                }
            }
            for s in 0..slots.len() {
                if slots[s].is_none() {
                    continue;
                };
                let act = index * ACTIVITY_SLOTS + s as u64;
                let mut rng = Rng::for_key(seed, Stream::ActivityMove, act, n);
                if rng.chance(MOVE_PPM) {
                    let taken: Vec<u64> = slots.iter().flatten().map(|a| a.workplace).collect();
                    if let Some(w) = self.pick_workplace(&mut rng, n, &taken) {
                        let phone = self.activity_phone(&mut rng, w);
                        if let Some(a) = slots[s].as_mut() {
                            a.workplace = w;
                            a.phone = phone;
                            a.modified = n;
                        }
                    }
                }
                let mut rng = Rng::for_key(seed, Stream::ActivityChange, act, n);
                if rng.chance(CHANGE_PPM) {
                    if let Some(a) = slots[s].as_mut() {
                        a.modified = n;
                        if rng.chance(500_000) {
                            a.role = rng.other_index(ROLES.len(), a.role);
                        } else {
                            let area = self.area_code(a.workplace);
                            a.phone = Some(new_phone(&mut rng, area, a.phone.as_deref()));
                        }
                    }
                }
            }
        }

        let mut out = Vec::with_capacity(count);
        let mut primary_taken = false;
        for (s, slot) in slots.into_iter().enumerate() {
            let Some(a) = slot else { continue };
            let primary = !primary_taken;
            primary_taken = true;
            // Becoming primary when earlier slots left is a change of this activity.
            let handed_over = if primary {
                left[..s].iter().max().copied()
            } else {
                None
            };
            let modified = a.modified.max(handed_over.unwrap_or(0));
            out.push(Activity {
                meta: self.meta(self.activity_id(index, s as u64), modified),
                individual_id: self.individual_id(index),
                workplace_id: self.workplace_id(a.workplace),
                role: Some(ROLES[a.role].to_owned()),
                primary,
                phone: a.phone,
                status: Status::Active,
            });
        }
        out
    }
}

fn clamp_night(night: u32) -> u32 {
    night.clamp(1, MAX_NIGHT)
}

/// The night a record index appears: 1 for the initial ones, then `per_night` a night.
fn birth_night(index: u64, initial: u64, per_night: u64) -> u32 {
    if index < initial || per_night == 0 {
        1
    } else {
        let n = 2 + (index - initial) / per_night;
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The NPI with nine-digit base `base` and its Luhn check digit.
fn npi(base: u64) -> String {
    let base = format!("{base:09}");
    let check = npi_check_digit(&base).unwrap_or(0);
    format!("{base}{check}")
}

/// A ten-digit US phone in `area` (or a random area code) other than `current`, so a
/// phone change is always a change.
fn new_phone(rng: &mut Rng, area: Option<&str>, current: Option<&str>) -> String {
    let area = match area {
        Some(a) if a.len() == 3 => a.to_owned(),
        _ => format!("{}", 201 + rng.below(788)),
    };
    loop {
        // Exchange and line: the exchange never starts with 0 or 1 (NANP).
        let phone = format!("{area}{}{:06}", 2 + rng.below(8), rng.below(1_000_000));
        if current != Some(phone.as_str()) {
            return phone;
        }
    }
}

/// A night's snapshot, streamed; see [`World::records`].
pub struct Snapshot {
    world: World,
    night: u32,
    phase: Phase,
    pending: std::vec::IntoIter<Activity>,
}

enum Phase {
    Workplaces(u64),
    Individuals(u64),
    Activities(u64),
    Done,
}

impl Snapshot {
    /// The night this snapshot is of.
    pub fn night(&self) -> u32 {
        self.night
    }
}

impl Iterator for Snapshot {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let w = &self.world;
        loop {
            match self.phase {
                Phase::Workplaces(i) => {
                    if i >= w.workplace_indices(self.night) {
                        self.phase = Phase::Individuals(0);
                        continue;
                    }
                    self.phase = Phase::Workplaces(i + 1);
                    if let Some(r) = w.workplace(i, self.night) {
                        return Some(Record::Workplace(r));
                    }
                }
                Phase::Individuals(i) => {
                    if i >= w.individual_indices(self.night) {
                        self.phase = Phase::Activities(0);
                        continue;
                    }
                    self.phase = Phase::Individuals(i + 1);
                    if let Some(r) = w.individual(i, self.night) {
                        return Some(Record::Individual(r));
                    }
                }
                Phase::Activities(i) => {
                    if let Some(a) = self.pending.next() {
                        return Some(Record::Activity(a));
                    }
                    if i >= w.individual_indices(self.night) {
                        self.phase = Phase::Done;
                        continue;
                    }
                    self.phase = Phase::Activities(i + 1);
                    self.pending = w.activities(i, self.night).into_iter();
                }
                Phase::Done => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
