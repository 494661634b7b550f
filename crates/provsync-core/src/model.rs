//! Canonical, source-independent provider records.
//!
//! Every record has a stable `source_id`, a `scope` (country or other partition),
//! the source's modification time and a content hash computed from its content
//! (not from the modification time, so a bumped timestamp alone is not a change).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// The source system's stable identifier of a record (e.g. `WUSM00012345`).
    SourceId
);
string_id!(
    /// A partition of the source data: an ISO 3166-1 alpha-2 country, a GMC designated body...
    Scope
);

/// The kinds of canonical records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A healthcare professional (HCP).
    Individual,
    /// A healthcare organisation or site (HCO).
    Workplace,
    /// An individual's role at a workplace.
    Activity,
    /// A link between two entities (workplace hierarchy, affiliation).
    Relation,
    /// An entry of a code list.
    Code,
}

impl EntityKind {
    /// All kinds, in load order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Code,
        EntityKind::Workplace,
        EntityKind::Individual,
        EntityKind::Activity,
        EntityKind::Relation,
    ];

    /// The snake_case name used in files, stores and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Individual => "individual",
            EntityKind::Workplace => "workplace",
            EntityKind::Activity => "activity",
            EntityKind::Relation => "relation",
            EntityKind::Code => "code",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether records of this kind link other entities and so load after them
    /// (in the relations stage, once both ends exist).
    pub fn is_link(self) -> bool {
        matches!(self, EntityKind::Activity | EntityKind::Relation)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier issued by an authority (NPI, GMC number, CMS certification number...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// The issuing system, e.g. `NPI`, `GMC`, `CCN`.
    pub system: String,
    /// The identifier value.
    pub value: String,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    /// Street lines, joined by the mapping if the target has one field.
    pub lines: Vec<String>,
    /// City or locality.
    pub city: Option<String>,
    /// State, county or region.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
}

/// Whether the source reports the record as active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Active in the source.
    #[default]
    Active,
    /// Known to the source but inactive (retired, closed...).
    Inactive,
}

/// The fields every canonical record carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// Stable id in the source system.
    pub source_id: SourceId,
    /// Partition of the source data the record belongs to.
    pub scope: Scope,
    /// When the source last modified the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<DateTime<Utc>>,
}

/// A healthcare professional.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Individual {
    /// Id, scope and modification time.
    #[serde(flatten)]
    pub meta: Meta,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Middle name(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Title or prefix code (e.g. `Dr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Gender code as the source gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// Specialty codes, the primary one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specialties: Vec<String>,
    /// Identifiers (NPI, GMC number...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Active or inactive in the source.
    #[serde(default)]
    pub status: Status,
}

/// A healthcare organisation or site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workplace {
    /// Id, scope and modification time.
    #[serde(flatten)]
    pub meta: Meta,
    /// Name of the organisation.
    pub name: String,
    /// Type code (hospital, practice, department...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_code: Option<String>,
    /// Parent workplace in the hierarchy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<SourceId>,
    /// Postal address.
    #[serde(default)]
    pub address: Address,
    /// Telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Identifiers (NPI, CCN...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// Active or inactive in the source.
    #[serde(default)]
    pub status: Status,
}

/// An individual's role at a workplace (a GMC connection to a designated body is one too).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Activity {
    /// Id, scope and modification time.
    #[serde(flatten)]
    pub meta: Meta,
    /// The individual.
    pub individual_id: SourceId,
    /// The workplace.
    pub workplace_id: SourceId,
    /// Role code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether this is the individual's main activity.
    #[serde(default)]
    pub primary: bool,
    /// Telephone at this workplace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Active or inactive in the source.
    #[serde(default)]
    pub status: Status,
}

/// A link between two entities other than an activity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Relation {
    /// Id, scope and modification time.
    #[serde(flatten)]
    pub meta: Meta,
    /// What the link means, e.g. `parent` (workplace hierarchy) or `affiliation`.
    pub relation_type: String,
    /// The entity the link starts from (the child, for `parent`).
    pub from: EntityRef,
    /// The entity the link points to (the parent, for `parent`).
    pub to: EntityRef,
}

/// A reference to another canonical record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// Kind of the referenced record.
    pub kind: EntityKind,
    /// Its source id.
    pub id: SourceId,
}

/// One entry of a code list (specialty, type, title, role...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    /// Id, scope (country) and modification time. The id is `LIST.CODE` unless the
    /// source has its own.
    #[serde(flatten)]
    pub meta: Meta,
    /// The code list, e.g. `SP` (specialties) or `nucc`.
    pub list: String,
    /// The code within its list.
    pub code: String,
    /// Labels by locale (`en`, `fr`...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether the code is still in use.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Any canonical record, tagged by `kind` in files and messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A healthcare professional.
    Individual(Individual),
    /// A healthcare organisation.
    Workplace(Workplace),
    /// An individual at a workplace.
    Activity(Activity),
    /// A link between entities.
    Relation(Relation),
    /// A code list entry.
    Code(Code),
}

impl Record {
    /// The kind of this record.
    pub fn kind(&self) -> EntityKind {
        match self {
            Record::Individual(_) => EntityKind::Individual,
            Record::Workplace(_) => EntityKind::Workplace,
            Record::Activity(_) => EntityKind::Activity,
            Record::Relation(_) => EntityKind::Relation,
            Record::Code(_) => EntityKind::Code,
        }
    }

    /// Id, scope and modification time.
    pub fn meta(&self) -> &Meta {
        match self {
            Record::Individual(r) => &r.meta,
            Record::Workplace(r) => &r.meta,
            Record::Activity(r) => &r.meta,
            Record::Relation(r) => &r.meta,
            Record::Code(r) => &r.meta,
        }
    }

    /// The stable source id.
    pub fn source_id(&self) -> &SourceId {
        &self.meta().source_id
    }

    /// The scope (partition).
    pub fn scope(&self) -> &Scope {
        &self.meta().scope
    }

    /// The entities this record links, as (role, reference); empty for plain entities.
    pub fn links(&self) -> Vec<(&'static str, EntityRef)> {
        match self {
            Record::Activity(a) => vec![
                (
                    "individual",
                    EntityRef {
                        kind: EntityKind::Individual,
                        id: a.individual_id.clone(),
                    },
                ),
                (
                    "workplace",
                    EntityRef {
                        kind: EntityKind::Workplace,
                        id: a.workplace_id.clone(),
                    },
                ),
            ],
            Record::Relation(r) => vec![("from", r.from.clone()), ("to", r.to.clone())],
            _ => Vec::new(),
        }
    }

    /// Checks the invariants a source cannot be trusted with; the reason names the field.
    pub fn validate(&self) -> Result<(), String> {
        let meta = self.meta();
        if meta.source_id.0.trim().is_empty() {
            return Err("source_id is empty".into());
        }
        if meta.scope.0.trim().is_empty() {
            return Err("scope is empty".into());
        }
        // Ids become keys in every target and the state store; none stores a NUL.
        if meta.source_id.0.contains('\0') || meta.scope.0.contains('\0') {
            return Err("source_id or scope contains a NUL character (U+0000)".into());
        }
        match self {
            Record::Individual(i) => {
                if i.last_name.trim().is_empty() {
                    return Err("last_name is empty".into());
                }
            }
            Record::Workplace(w) => {
                if w.name.trim().is_empty() {
                    return Err("name is empty".into());
                }
                if w.parent_id.as_ref() == Some(&w.meta.source_id) {
                    return Err("parent_id points to the workplace itself".into());
                }
            }
            Record::Activity(a) => {
                if a.individual_id.0.is_empty() {
                    return Err("individual_id is empty".into());
                }
                if a.workplace_id.0.is_empty() {
                    return Err("workplace_id is empty".into());
                }
            }
            Record::Relation(r) => {
                if r.relation_type.is_empty() {
                    return Err("relation_type is empty".into());
                }
                if r.from == r.to {
                    return Err("relation links an entity to itself".into());
                }
            }
            Record::Code(c) => {
                if c.list.is_empty() || c.code.is_empty() {
                    return Err("list or code is empty".into());
                }
            }
        }
        Ok(())
    }

    /// The hierarchy link a workplace's `parent_id` implies, as a relation record.
    pub fn implied_parent_relation(&self) -> Option<Relation> {
        let Record::Workplace(w) = self else {
            return None;
        };
        let parent = w.parent_id.clone()?;
        Some(Relation {
            meta: Meta {
                source_id: SourceId(format!("{}>parent", w.meta.source_id)),
                scope: w.meta.scope.clone(),
                modified_at: w.meta.modified_at,
            },
            relation_type: "parent".into(),
            from: EntityRef {
                kind: EntityKind::Workplace,
                id: w.meta.source_id.clone(),
            },
            to: EntityRef {
                kind: EntityKind::Workplace,
                id: parent,
            },
        })
    }
}

/// A 128-bit content hash, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub u128);

impl ContentHash {
    /// Hashes bytes with XXH3-128 (stable across platforms and releases).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(xxhash_rust::xxh3::xxh3_128(bytes))
    }

    /// Parses 32 hex digits.
    pub fn parse(hex: &str) -> Option<Self> {
        u128::from_str_radix(hex, 16).ok().map(Self)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("expected 32 hex digits"))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn individual(id: &str) -> Record {
        Record::Individual(Individual {
            meta: Meta {
                source_id: id.into(),
                scope: "US".into(),
                modified_at: None,
            },
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            middle_name: None,
            title: None,
            gender: None,
            birth_date: None,
            specialties: vec!["207R00000X".into()],
            identifiers: vec![],
            email: None,
            status: Status::Active,
        })
    }

    #[test]
    fn record_round_trips_through_ndjson_with_kind_tag() {
        let r = individual("WUSM1");
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.starts_with(r#"{"kind":"individual","source_id":"WUSM1""#),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn validate_names_the_field_at_fault() {
        let mut r = individual("WUSM1");
        if let Record::Individual(i) = &mut r {
            i.last_name = " ".into();
        }
        assert_eq!(r.validate().unwrap_err(), "last_name is empty");
    }

    #[test]
    fn content_hash_prints_and_parses_32_hex_digits() {
        let h = ContentHash::of_bytes(b"abc");
        let s = h.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(ContentHash::parse(&s), Some(h));
    }

    #[test]
    fn workplace_parent_becomes_a_parent_relation() {
        let w = Record::Workplace(Workplace {
            meta: Meta {
                source_id: "W2".into(),
                scope: "US".into(),
                modified_at: None,
            },
            name: "Clinic".into(),
            type_code: None,
            parent_id: Some("W1".into()),
            address: Address::default(),
            phone: None,
            identifiers: vec![],
            status: Status::Active,
        });
        let rel = w.implied_parent_relation().unwrap();
        assert_eq!(rel.from.id.as_str(), "W2");
        assert_eq!(rel.to.id.as_str(), "W1");
        assert_eq!(rel.relation_type, "parent");
    }
}
