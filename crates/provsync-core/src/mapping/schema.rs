//! The serde shape of the canonical records, as a hand-kept table of fields with typed
//! getters.
//!
//! Mapping paths address the `serde_json` form of a record. Serializing every record
//! to find three fields would dominate a run of millions of records, so paths are
//! checked against this table at load time and evaluated through its getters at apply
//! time, borrowing from the record. Tests pin the table to the serde form (same keys,
//! same rendered values, including fields serde skips when empty).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use crate::model::{Address, EntityKind, EntityRef, Identifier, Record, Status};

/// A borrowed view of one value inside a record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    /// Absent (a `None`, a skipped empty list, a missing index or key).
    Null,
    Str(&'a str),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Record(&'a Record),
    Strs(&'a [String]),
    Identifiers(&'a [Identifier]),
    Identifier(&'a Identifier),
    Address(&'a Address),
    Labels(&'a BTreeMap<String, String>),
    Ref(&'a EntityRef),
}

impl<'a> Node<'a> {
    /// Whether the value is a list (rendered as a JSON array).
    pub(crate) fn is_list(self) -> bool {
        matches!(self, Node::Strs(_) | Node::Identifiers(_))
    }

    /// Element `i` of a list; `Null` when out of range or not a list.
    pub(crate) fn index(self, i: usize) -> Node<'a> {
        match self {
            Node::Strs(v) => v.get(i).map_or(Node::Null, |s| Node::Str(s)),
            Node::Identifiers(v) => v.get(i).map_or(Node::Null, Node::Identifier),
            _ => Node::Null,
        }
    }

    /// The elements of a list (none for other values).
    pub(crate) fn elements(self) -> impl Iterator<Item = Node<'a>> {
        let len = match self {
            Node::Strs(v) => v.len(),
            Node::Identifiers(v) => v.len(),
            _ => 0,
        };
        (0..len).map(move |i| self.index(i))
    }

    /// The value under `key` of a map (labels by locale).
    pub(crate) fn key(self, key: &str) -> Node<'a> {
        match self {
            Node::Labels(m) => m.get(key).map_or(Node::Null, |s| Node::Str(s)),
            _ => Node::Null,
        }
    }

    /// The scalar as text, as its JSON string (or `true`/`false`); `None` for null and
    /// for lists and objects.
    pub(crate) fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Node::Str(s) => Some(Cow::Borrowed(s)),
            Node::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Node::Date(d) => Some(Cow::Owned(date_text(d))),
            Node::DateTime(t) => Some(Cow::Owned(datetime_text(t))),
            _ => None,
        }
    }

    /// The value exactly as `serde_json::to_value(record)` has it at this place.
    pub(crate) fn to_json(self) -> Value {
        fn json<T: serde::Serialize>(v: T) -> Value {
            // Canonical model types only hold strings, bools and dates: never fails.
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match self {
            Node::Null => Value::Null,
            Node::Str(s) => Value::String(s.to_owned()),
            Node::Bool(b) => Value::Bool(b),
            Node::Date(d) => Value::String(date_text(d)),
            Node::DateTime(t) => Value::String(datetime_text(t)),
            Node::Record(r) => json(r),
            Node::Strs(v) => json(v),
            Node::Identifiers(v) => json(v),
            Node::Identifier(v) => json(v),
            Node::Address(v) => json(v),
            Node::Labels(v) => json(v),
            Node::Ref(v) => json(v),
        }
    }
}

/// A date as serde writes it (`yyyy-mm-dd`).
fn date_text(d: NaiveDate) -> String {
    // NaiveDate serializes through its Debug form; use the same to stay identical.
    format!("{d:?}")
}

/// A datetime as serde writes it (RFC 3339, `Z`, fractional seconds only when present).
fn datetime_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Reads one field of the value it is given (`Null` when the value has no such field).
pub(crate) type Getter = for<'a> fn(Node<'a>) -> Node<'a>;

/// The kind of a scalar, for load-time checks (dates take `date_format`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Text,
    Bool,
    Date,
    DateTime,
}

/// The shape of a value in the serde form of a record.
#[derive(Debug)]
pub(crate) enum Shape {
    Scalar(Scalar),
    /// A struct: its type name (for messages) and fields.
    Object(&'static str, &'static [FieldDef]),
    List(&'static Shape),
    /// A map with free keys (labels by locale) and values of one shape.
    Map(&'static Shape),
}

impl Shape {
    /// Whether this is a scalar or a list of scalars (what text operations accept).
    pub(crate) fn is_textual(&self) -> bool {
        match self {
            Shape::Scalar(_) => true,
            Shape::List(e) => matches!(e, Shape::Scalar(_)),
            _ => false,
        }
    }

    /// Whether this is a list of scalars (what `join` accepts).
    pub(crate) fn is_scalar_list(&self) -> bool {
        matches!(self, Shape::List(Shape::Scalar(_)))
    }

    /// The scalar kind, looking through one list level.
    pub(crate) fn scalar(&self) -> Option<Scalar> {
        match self {
            Shape::Scalar(s) => Some(*s),
            Shape::List(Shape::Scalar(s)) => Some(*s),
            _ => None,
        }
    }
}

/// One field of a struct in serde form.
pub(crate) struct FieldDef {
    /// Serde name.
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
    pub(crate) get: Getter,
}

impl fmt::Debug for FieldDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The root shape (an object) of records of `kind`.
pub(crate) fn root(kind: EntityKind) -> &'static Shape {
    match kind {
        EntityKind::Individual => &INDIVIDUAL,
        EntityKind::Workplace => &WORKPLACE,
        EntityKind::Activity => &ACTIVITY,
        EntityKind::Relation => &RELATION,
        EntityKind::Code => &CODE,
    }
}

/// The names of an object's fields, for "X has: ..." messages.
pub(crate) fn field_names(fields: &[FieldDef]) -> String {
    fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

/// A getter matching one pattern, `Null` otherwise.
macro_rules! get {
    ($p:pat => $e:expr) => {
        |n| match n {
            $p => $e,
            _ => Node::Null,
        }
    };
}

fn opt(o: &Option<String>) -> Node<'_> {
    o.as_deref().map_or(Node::Null, Node::Str)
}

/// A list serde skips when empty (`skip_serializing_if = "Vec::is_empty"`).
fn skipped_if_empty(v: &[String]) -> Node<'_> {
    if v.is_empty() {
        Node::Null
    } else {
        Node::Strs(v)
    }
}

fn ids(v: &[Identifier]) -> Node<'_> {
    if v.is_empty() {
        Node::Null
    } else {
        Node::Identifiers(v)
    }
}

fn status(s: Status) -> Node<'static> {
    Node::Str(match s {
        Status::Active => "active",
        Status::Inactive => "inactive",
    })
}

const fn field(name: &'static str, shape: Shape, get: Getter) -> FieldDef {
    FieldDef { name, shape, get }
}

const TEXT: Shape = Shape::Scalar(Scalar::Text);
const BOOL: Shape = Shape::Scalar(Scalar::Bool);

// The fields every record has (the `kind` tag and the flattened `Meta`).
const KIND: FieldDef = field(
    "kind",
    TEXT,
    get!(Node::Record(r) => Node::Str(r.kind().as_str())),
);
const SOURCE_ID: FieldDef = field(
    "source_id",
    TEXT,
    get!(Node::Record(r) => Node::Str(r.source_id().as_str())),
);
const SCOPE: FieldDef = field(
    "scope",
    TEXT,
    get!(Node::Record(r) => Node::Str(r.scope().as_str())),
);
const MODIFIED_AT: FieldDef = field(
    "modified_at",
    Shape::Scalar(Scalar::DateTime),
    get!(Node::Record(r) => r.meta().modified_at.map_or(Node::Null, Node::DateTime)),
);
const STATUS_ANY: FieldDef = field(
    "status",
    TEXT,
    get!(Node::Record(r) => match r {
        Record::Individual(i) => status(i.status),
        Record::Workplace(w) => status(w.status),
        Record::Activity(a) => status(a.status),
        _ => Node::Null,
    }),
);

static IDENTIFIER: Shape = Shape::Object(
    "Identifier",
    &[
        field(
            "system",
            TEXT,
            get!(Node::Identifier(i) => Node::Str(&i.system)),
        ),
        field(
            "value",
            TEXT,
            get!(Node::Identifier(i) => Node::Str(&i.value)),
        ),
    ],
);

const ADDRESS: &[FieldDef] = &[
    field(
        "lines",
        Shape::List(&TEXT),
        get!(Node::Address(a) => Node::Strs(&a.lines)),
    ),
    field("city", TEXT, get!(Node::Address(a) => opt(&a.city))),
    field("region", TEXT, get!(Node::Address(a) => opt(&a.region))),
    field(
        "postal_code",
        TEXT,
        get!(Node::Address(a) => opt(&a.postal_code)),
    ),
    field("country", TEXT, get!(Node::Address(a) => opt(&a.country))),
];

const ENTITY_REF: &[FieldDef] = &[
    field(
        "kind",
        TEXT,
        get!(Node::Ref(e) => Node::Str(e.kind.as_str())),
    ),
    field("id", TEXT, get!(Node::Ref(e) => Node::Str(e.id.as_str()))),
];

static INDIVIDUAL: Shape = Shape::Object(
    "Individual",
    &[
        KIND,
        SOURCE_ID,
        SCOPE,
        MODIFIED_AT,
        field(
            "first_name",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => Node::Str(&i.first_name)),
        ),
        field(
            "last_name",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => Node::Str(&i.last_name)),
        ),
        field(
            "middle_name",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => opt(&i.middle_name)),
        ),
        field(
            "title",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => opt(&i.title)),
        ),
        field(
            "gender",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => opt(&i.gender)),
        ),
        field(
            "birth_date",
            Shape::Scalar(Scalar::Date),
            get!(Node::Record(Record::Individual(i)) => i.birth_date.map_or(Node::Null, Node::Date)),
        ),
        field(
            "specialties",
            Shape::List(&TEXT),
            get!(Node::Record(Record::Individual(i)) => skipped_if_empty(&i.specialties)),
        ),
        field(
            "identifiers",
            Shape::List(&IDENTIFIER),
            get!(Node::Record(Record::Individual(i)) => ids(&i.identifiers)),
        ),
        field(
            "email",
            TEXT,
            get!(Node::Record(Record::Individual(i)) => opt(&i.email)),
        ),
        STATUS_ANY,
    ],
);

static WORKPLACE: Shape = Shape::Object(
    "Workplace",
    &[
        KIND,
        SOURCE_ID,
        SCOPE,
        MODIFIED_AT,
        field(
            "name",
            TEXT,
            get!(Node::Record(Record::Workplace(w)) => Node::Str(&w.name)),
        ),
        field(
            "type_code",
            TEXT,
            get!(Node::Record(Record::Workplace(w)) => opt(&w.type_code)),
        ),
        field(
            "parent_id",
            TEXT,
            get!(Node::Record(Record::Workplace(w)) => w.parent_id.as_ref().map_or(Node::Null, |p| Node::Str(p.as_str()))),
        ),
        field(
            "address",
            Shape::Object("Address", ADDRESS),
            get!(Node::Record(Record::Workplace(w)) => Node::Address(&w.address)),
        ),
        field(
            "phone",
            TEXT,
            get!(Node::Record(Record::Workplace(w)) => opt(&w.phone)),
        ),
        field(
            "identifiers",
            Shape::List(&IDENTIFIER),
            get!(Node::Record(Record::Workplace(w)) => ids(&w.identifiers)),
        ),
        STATUS_ANY,
    ],
);

static ACTIVITY: Shape = Shape::Object(
    "Activity",
    &[
        KIND,
        SOURCE_ID,
        SCOPE,
        MODIFIED_AT,
        field(
            "individual_id",
            TEXT,
            get!(Node::Record(Record::Activity(a)) => Node::Str(a.individual_id.as_str())),
        ),
        field(
            "workplace_id",
            TEXT,
            get!(Node::Record(Record::Activity(a)) => Node::Str(a.workplace_id.as_str())),
        ),
        field(
            "role",
            TEXT,
            get!(Node::Record(Record::Activity(a)) => opt(&a.role)),
        ),
        field(
            "primary",
            BOOL,
            get!(Node::Record(Record::Activity(a)) => Node::Bool(a.primary)),
        ),
        field(
            "phone",
            TEXT,
            get!(Node::Record(Record::Activity(a)) => opt(&a.phone)),
        ),
        STATUS_ANY,
    ],
);

static RELATION: Shape = Shape::Object(
    "Relation",
    &[
        KIND,
        SOURCE_ID,
        SCOPE,
        MODIFIED_AT,
        field(
            "relation_type",
            TEXT,
            get!(Node::Record(Record::Relation(r)) => Node::Str(&r.relation_type)),
        ),
        field(
            "from",
            Shape::Object("EntityRef", ENTITY_REF),
            get!(Node::Record(Record::Relation(r)) => Node::Ref(&r.from)),
        ),
        field(
            "to",
            Shape::Object("EntityRef", ENTITY_REF),
            get!(Node::Record(Record::Relation(r)) => Node::Ref(&r.to)),
        ),
    ],
);

static CODE: Shape = Shape::Object(
    "Code",
    &[
        KIND,
        SOURCE_ID,
        SCOPE,
        MODIFIED_AT,
        field(
            "list",
            TEXT,
            get!(Node::Record(Record::Code(c)) => Node::Str(&c.list)),
        ),
        field(
            "code",
            TEXT,
            get!(Node::Record(Record::Code(c)) => Node::Str(&c.code)),
        ),
        field(
            "labels",
            Shape::Map(&TEXT),
            get!(Node::Record(Record::Code(c)) => Node::Labels(&c.labels)),
        ),
        field(
            "active",
            BOOL,
            get!(Node::Record(Record::Code(c)) => Node::Bool(c.active)),
        ),
    ],
);

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Activity, Code, Individual, Meta, Relation, Workplace};

    /// One record of every kind with every optional field filled and every list
    /// non-empty, so its serde form shows every key.
    pub(crate) fn full_records() -> Vec<Record> {
        let meta = |id: &str| Meta {
            source_id: id.into(),
            scope: "US".into(),
            modified_at: Some(Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()),
        };
        let ids = vec![
            Identifier {
                system: "NPI".into(),
                value: "1234567893".into(),
            },
            Identifier {
                system: "DEA".into(),
                value: "AB1234563".into(),
            },
        ];
        vec![
            Record::Individual(Individual {
                meta: meta("I1"),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                middle_name: Some("King".into()),
                title: Some("Dr".into()),
                gender: Some("F".into()),
                birth_date: NaiveDate::from_ymd_opt(1815, 12, 10),
                specialties: vec!["207R00000X".into(), "208D00000X".into()],
                identifiers: ids.clone(),
                email: Some("ada@example.org".into()),
                status: Status::Active,
            }),
            Record::Workplace(Workplace {
                meta: meta("W1"),
                name: "General Hospital".into(),
                type_code: Some("HOSP".into()),
                parent_id: Some("W0".into()),
                address: Address {
                    lines: vec!["1 Main St".into(), "Suite 2".into()],
                    city: Some("Springfield".into()),
                    region: Some("IL".into()),
                    postal_code: Some("62701".into()),
                    country: Some("US".into()),
                },
                phone: Some("+1 555 0100".into()),
                identifiers: ids,
                status: Status::Inactive,
            }),
            Record::Activity(Activity {
                meta: meta("A1"),
                individual_id: "I1".into(),
                workplace_id: "W1".into(),
                role: Some("ATT".into()),
                primary: true,
                phone: Some("+1 555 0101".into()),
                status: Status::Active,
            }),
            Record::Relation(Relation {
                meta: meta("R1"),
                relation_type: "parent".into(),
                from: EntityRef {
                    kind: EntityKind::Workplace,
                    id: "W1".into(),
                },
                to: EntityRef {
                    kind: EntityKind::Workplace,
                    id: "W0".into(),
                },
            }),
            Record::Code(Code {
                meta: meta("SP.207R00000X"),
                list: "SP".into(),
                code: "207R00000X".into(),
                labels: [("en".to_string(), "Internal Medicine".to_string())].into(),
                active: true,
            }),
        ]
    }

    /// Key paths of a JSON value: `a`, `a.b`, `a[].b` (arrays of objects).
    fn json_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(p.clone());
                    json_keys(v, &p, out);
                }
            }
            Value::Array(a) => {
                if let Some(first) = a.first() {
                    json_keys(first, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    /// The same key paths from the schema; maps contribute the keys of `sample`.
    fn schema_keys(shape: &Shape, prefix: &str, sample: &Value, out: &mut BTreeSet<String>) {
        match shape {
            Shape::Object(_, fields) => {
                for f in *fields {
                    let p = if prefix.is_empty() {
                        f.name.to_string()
                    } else {
                        format!("{prefix}.{}", f.name)
                    };
                    out.insert(p.clone());
                    schema_keys(&f.shape, &p, &sample[f.name], out);
                }
            }
            Shape::List(e) => {
                let first = sample.get(0).cloned().unwrap_or(Value::Null);
                schema_keys(e, &format!("{prefix}[]"), &first, out);
            }
            Shape::Map(_) => {
                if let Value::Object(m) = sample {
                    for k in m.keys() {
                        out.insert(format!("{prefix}.{k}"));
                    }
                }
            }
            Shape::Scalar(_) => {}
        }
    }

    #[test]
    fn schema_lists_exactly_the_serde_keys_of_every_kind() {
        let records = full_records();
        assert_eq!(records.len(), EntityKind::ALL.len());
        for r in &records {
            let json = serde_json::to_value(r).unwrap();
            let mut from_json = BTreeSet::new();
            json_keys(&json, "", &mut from_json);
            let mut from_schema = BTreeSet::new();
            schema_keys(root(r.kind()), "", &json, &mut from_schema);
            assert_eq!(from_schema, from_json, "schema of {} drifted", r.kind());
        }
    }

    /// Every path the schema allows (one index/selector per list), with its steps.
    pub(crate) fn leaf_paths(shape: &'static Shape, prefix: String, out: &mut Vec<String>) {
        match shape {
            Shape::Object(_, fields) => {
                for f in *fields {
                    let p = if prefix.is_empty() {
                        f.name.to_string()
                    } else {
                        format!("{prefix}.{}", f.name)
                    };
                    out.push(p.clone());
                    leaf_paths(&f.shape, p, out);
                }
            }
            Shape::List(e) => {
                out.push(format!("{prefix}[0]"));
                out.push(format!("{prefix}[1]"));
                leaf_paths(e, format!("{prefix}[0]"), out);
            }
            Shape::Map(_) => {
                out.push(format!("{prefix}.en"));
                out.push(format!("{prefix}.fr"));
            }
            Shape::Scalar(_) => {}
        }
    }

    /// Evaluates a plain path (names and indexes) on the serde_json form.
    fn json_lookup(v: &Value, path: &str) -> Value {
        let mut cur = v.clone();
        for seg in path.split('.') {
            let (name, idx) = match seg.find('[') {
                Some(i) => (
                    &seg[..i],
                    Some(seg[i + 1..seg.len() - 1].parse::<usize>().unwrap()),
                ),
                None => (seg, None),
            };
            cur = cur.get(name).cloned().unwrap_or(Value::Null);
            if let Some(i) = idx {
                cur = cur.get(i).cloned().unwrap_or(Value::Null);
            }
        }
        cur
    }

    /// Asserts typed evaluation equals serde_json lookup for every schema path.
    pub(crate) fn assert_getters_match_serde(r: &Record) {
        let json = serde_json::to_value(r).unwrap();
        let mut paths = Vec::new();
        leaf_paths(root(r.kind()), String::new(), &mut paths);
        for p in paths {
            let compiled = crate::mapping::expr::Path::compile(&p, r.kind()).unwrap();
            assert_eq!(
                compiled.eval(r).to_json(),
                json_lookup(&json, &p),
                "path {p} of {}",
                r.kind()
            );
        }
    }

    #[test]
    fn getters_render_exactly_what_serde_renders() {
        for r in full_records() {
            assert_getters_match_serde(&r);
        }
    }

    #[test]
    fn fractional_seconds_render_like_serde() {
        let mut r = full_records().remove(0);
        if let Record::Individual(i) = &mut r {
            i.meta.modified_at = Some(Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap());
            i.birth_date = NaiveDate::from_ymd_opt(12, 1, 2);
        }
        assert_getters_match_serde(&r);
    }

    proptest! {
        #[test]
        fn getters_match_serde_on_arbitrary_records(r in crate::mapping::tests::arb_record()) {
            assert_getters_match_serde(&r);
        }
    }
}
