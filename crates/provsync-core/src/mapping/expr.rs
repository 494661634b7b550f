//! Field expressions: compiled paths and the per-field pipeline (source, translate,
//! date format, join, default, required).
//!
//! Everything that can be checked is checked when the mapping loads, so evaluating a
//! field only walks borrowed values and fails only for per-record reasons.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::Item;
use serde_json::Value;

use super::schema::{self, FieldDef, Node, Shape};
use crate::model::{EntityKind, Record};

/// One compiled path step.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A struct field.
    Get(&'static FieldDef),
    /// A list element.
    Index(usize),
    /// The first list element whose `field` renders as `value`.
    Select {
        field: &'static FieldDef,
        value: String,
    },
    /// A map entry (labels by locale).
    Key(String),
}

/// What paths are compiled against: the record of a kind and, inside a child
/// mapping with `for_each`, the list element being mapped (addressed as `item`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathCtx {
    /// Entity kind of the record.
    pub(crate) kind: EntityKind,
    /// Shape of the `for_each` element, if any.
    pub(crate) item: Option<&'static Shape>,
}

impl From<EntityKind> for PathCtx {
    fn from(kind: EntityKind) -> Self {
        PathCtx { kind, item: None }
    }
}

/// Where a value is read from while mapping: the record and the current `for_each`
/// element (`Null` outside a `for_each`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    pub(crate) record: &'a Record,
    pub(crate) item: Node<'a>,
}

impl<'a> From<&'a Record> for Input<'a> {
    fn from(record: &'a Record) -> Self {
        Input {
            record,
            item: Node::Null,
        }
    }
}

/// A path compiled against one entity kind.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// The path as written, for messages.
    pub(crate) text: String,
    /// Starts at the `for_each` element (`item...`) instead of the record.
    from_item: bool,
    steps: Vec<Step>,
    /// Shape of the value the path leads to.
    pub(crate) shape: &'static Shape,
}

/// One lexical segment of a path.
enum Segment<'s> {
    Name(&'s str),
    Index(usize),
    Select(&'s str, &'s str),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Splits `a.b[0].c[key=value]` into segments.
fn lex(text: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if end == 0 {
            return Err(match rest.chars().next() {
                None if text.is_empty() => "empty path".to_string(),
                None => format!("path {text:?} ends with '.'"),
                Some(c) => format!("unexpected {c:?} in path {text:?}"),
            });
        }
        out.push(Segment::Name(&rest[..end]));
        rest = &rest[end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in path {text:?}"))?;
            let body = &inner[..close];
            if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                let i = body
                    .parse()
                    .map_err(|_| format!("index {body} is too large in path {text:?}"))?;
                out.push(Segment::Index(i));
            } else if let Some((k, v)) = body.split_once('=') {
                if k.is_empty() || !k.chars().all(is_name_char) || v.is_empty() {
                    return Err(format!(
                        "bad selector [{body}] in path {text:?} (expected [key=value])"
                    ));
                }
                out.push(Segment::Select(k, v));
            } else {
                return Err(format!(
                    "bad brackets [{body}] in path {text:?} (expected [index] or [key=value])"
                ));
            }
            rest = &inner[close + 1..];
        }
        if rest.is_empty() {
            return Ok(out);
        }
        rest = rest.strip_prefix('.').ok_or_else(|| {
            let c = rest.chars().next().unwrap_or(' ');
            format!("unexpected {c:?} in path {text:?}")
        })?;
    }
}

impl Path {
    /// Parses `text` and checks every segment against the shape of `kind`.
    pub(crate) fn compile(text: &str, ctx: impl Into<PathCtx>) -> Result<Path, String> {
        let ctx = ctx.into();
        let mut shape = schema::root(ctx.kind);
        let mut steps = Vec::new();
        // What the path addresses so far, for messages.
        let mut at = String::new();
        let mut segments = lex(text)?.into_iter().peekable();
        let mut from_item = false;
        if let (Some(Segment::Name("item")), Some(item)) = (segments.peek(), ctx.item) {
            segments.next();
            shape = item;
            from_item = true;
            at.push_str("item");
        }
        for seg in segments {
            match seg {
                Segment::Name(name) => {
                    match shape {
                        Shape::Object(ty, fields) => {
                            let f = fields.iter().find(|f| f.name == name).ok_or_else(|| {
                                format!(
                                    "unknown path segment {name:?} ({ty} has: {})",
                                    schema::field_names(fields)
                                )
                            })?;
                            steps.push(Step::Get(f));
                            shape = &f.shape;
                        }
                        Shape::Map(values) => {
                            steps.push(Step::Key(name.to_string()));
                            shape = values;
                        }
                        Shape::List(_) => {
                            return Err(format!(
                                "{at} is a list: pick an element with {at}[0] or {at}[key=value] before .{name}"
                            ))
                        }
                        Shape::Scalar(_) => {
                            return Err(format!("{at} is a single value and has no field {name:?}"))
                        }
                    }
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(name);
                }
                Segment::Index(i) => {
                    let Shape::List(elem) = shape else {
                        return Err(format!("{at} is not a list: [{i}] does not apply"));
                    };
                    steps.push(Step::Index(i));
                    shape = elem;
                    let _ = write!(at, "[{i}]");
                }
                Segment::Select(key, value) => {
                    let Shape::List(elem) = shape else {
                        return Err(format!(
                            "{at} is not a list: [{key}={value}] does not apply"
                        ));
                    };
                    let Shape::Object(ty, fields) = elem else {
                        return Err(format!(
                            "{at} is a list of single values: [{key}={value}] needs a list of objects"
                        ));
                    };
                    let field = fields.iter().find(|f| f.name == key).ok_or_else(|| {
                        format!(
                            "unknown selector key {key:?} ({ty} has: {})",
                            schema::field_names(fields)
                        )
                    })?;
                    steps.push(Step::Select {
                        field,
                        value: value.to_string(),
                    });
                    shape = elem;
                    let _ = write!(at, "[{key}={value}]");
                }
            }
        }
        Ok(Path {
            text: text.to_string(),
            from_item,
            steps,
            shape,
        })
    }

    /// The value at this path in `input` (`Null` when absent).
    pub(crate) fn eval<'a>(&self, input: impl Into<Input<'a>>) -> Node<'a> {
        let input = input.into();
        let mut node = if self.from_item {
            input.item
        } else {
            Node::Record(input.record)
        };
        for step in &self.steps {
            node = match step {
                Step::Get(f) => (f.get)(node),
                Step::Index(i) => node.index(*i),
                Step::Select { field, value } => node
                    .elements()
                    .find(|e| (field.get)(*e).text().as_deref() == Some(value.as_str()))
                    .unwrap_or(Node::Null),
                Step::Key(k) => node.key(k),
            };
            if matches!(node, Node::Null) {
                break;
            }
        }
        node
    }
}

/// What a translation does with a value its table does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnMissing {
    /// Keep the source value (the default: partial code tables are common, and a raw
    /// code in the target is visible and fixable, where a rejected record is not).
    Keep,
    /// Treat the value as absent, so the field's `default` (or null) applies.
    Default,
    /// Reject the record.
    Reject,
}

/// A named code translation table.
#[derive(Debug)]
pub(crate) struct Translation {
    pub(crate) name: String,
    pub(crate) entries: HashMap<String, Value>,
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The value at a path.
    Path(Path),
    /// Parts joined by a separator, null and empty parts skipped.
    Concat { parts: Vec<Path>, separator: String },
    /// A fixed value.
    Constant(Value),
}

/// One target field, compiled.
#[derive(Debug, Clone)]
pub(crate) struct FieldExpr {
    /// Target field name.
    pub(crate) name: String,
    pub(crate) source: Source,
    pub(crate) translate: Option<Arc<Translation>>,
    pub(crate) on_missing: OnMissing,
    /// Joins a list into one string with this separator.
    pub(crate) join: Option<String>,
    pub(crate) date_format: Option<Vec<Item<'static>>>,
    /// Used when the value is null.
    pub(crate) default: Option<Value>,
    /// A null value (after `default`) rejects the record.
    pub(crate) required: bool,
}

/// Formats a date or datetime with strftime items; `None` if the items need what the
/// value lacks (a time on a date).
pub(crate) fn format_node(node: Node<'_>, items: &[Item<'static>]) -> Option<String> {
    let mut out = String::new();
    let ok = match node {
        Node::Date(d) => write!(out, "{}", d.format_with_items(items.iter())),
        Node::DateTime(t) => write!(out, "{}", t.format_with_items(items.iter())),
        _ => return None,
    };
    ok.ok().map(|_| out)
}

/// The text of a mapped JSON scalar (strings bare, numbers and booleans printed).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl FieldExpr {
    /// The field's value for `record`; `Err` is the reason the record is rejected.
    pub(crate) fn eval<'a>(&self, record: impl Into<Input<'a>>) -> Result<Value, String> {
        let record = record.into();
        let value = match &self.source {
            Source::Constant(v) => v.clone(),
            Source::Concat { parts, separator } => {
                let mut out = String::new();
                let mut any = false;
                let mut push = |t: &str| {
                    if !t.is_empty() {
                        if any {
                            out.push_str(separator);
                        }
                        out.push_str(t);
                        any = true;
                    }
                };
                for p in parts {
                    let node = p.eval(record);
                    if node.is_list() {
                        for e in node.elements() {
                            if let Some(t) = e.text() {
                                push(&t);
                            }
                        }
                    } else if let Some(t) = node.text() {
                        push(&t);
                    }
                }
                if any {
                    Value::String(out)
                } else {
                    Value::Null
                }
            }
            Source::Path(p) => {
                let node = p.eval(record);
                if !node.is_list() {
                    self.element(node)?
                } else if let Some(sep) = &self.join {
                    let mut parts = Vec::new();
                    for e in node.elements() {
                        if let Some(t) = value_text(&self.element(e)?) {
                            if !t.is_empty() {
                                parts.push(t);
                            }
                        }
                    }
                    if parts.is_empty() {
                        Value::Null
                    } else {
                        Value::String(parts.join(sep))
                    }
                } else {
                    Value::Array(
                        node.elements()
                            .map(|e| self.element(e))
                            .collect::<Result<_, _>>()?,
                    )
                }
            }
        };
        let value = match (value, &self.default) {
            (Value::Null, Some(d)) => d.clone(),
            (v, _) => v,
        };
        if self.required && value.is_null() {
            return Err(match &self.source {
                Source::Path(p) => format!("required value is missing ({} is empty)", p.text),
                _ => "required value is missing".to_string(),
            });
        }
        Ok(value)
    }

    /// The values this field can take that the mapping lists (value text, origin):
    /// its constant, its default, and its translation's values. A translation that
    /// keeps unknown codes (`on_missing = "keep"`) can also write values read from
    /// records; those are not known before loading.
    pub(crate) fn known_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &self.source {
            // Written as is: `eval` translates only values read from records.
            Source::Constant(v) => out.extend(value_text(v).map(|t| (t, "constant".into()))),
            Source::Path(_) => {
                if let Some(t) = &self.translate {
                    let origin = format!("translations.{}", t.name);
                    let mut values: Vec<String> =
                        t.entries.values().filter_map(value_text).collect();
                    // Table order is a hash order: sort, so reports are stable.
                    values.sort();
                    values.dedup();
                    out.extend(values.into_iter().map(|v| (v, origin.clone())));
                }
            }
            Source::Concat { .. } => {}
        }
        out.extend(
            self.default
                .as_ref()
                .and_then(value_text)
                .map(|t| (t, "default".into())),
        );
        out
    }

    /// Translates or formats one value (a scalar or one element of a list).
    fn element(&self, node: Node<'_>) -> Result<Value, String> {
        if matches!(node, Node::Null) {
            return Ok(Value::Null);
        }
        if let Some(t) = &self.translate {
            let Some(key) = node.text() else {
                return Ok(node.to_json());
            };
            return match t.entries.get(key.as_ref()) {
                Some(v) => Ok(v.clone()),
                None => match self.on_missing {
                    OnMissing::Keep => Ok(node.to_json()),
                    OnMissing::Default => Ok(Value::Null),
                    OnMissing::Reject => {
                        Err(format!("no translation for {key:?} in table {:?}", t.name))
                    }
                },
            };
        }
        if let Some(items) = &self.date_format {
            return format_node(node, items)
                .map(Value::String)
                .ok_or_else(|| format!("cannot format {:?} as a date", node.to_json()));
        }
        Ok(node.to_json())
    }
}

/// A text template with `{path}` placeholders (the external id of a child record:
/// `"{source_id}-SP-{item}"`).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The template as written.
    pub(crate) text: String,
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone)]
enum TemplatePart {
    Literal(String),
    Path(Path),
}

impl Template {
    /// Compiles `text`; every placeholder must be a path to a single value.
    pub(crate) fn compile(text: &str, ctx: PathCtx) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in template {text:?}"))?;
            let path = Path::compile(&after[..close], ctx)?;
            if !matches!(path.shape, Shape::Scalar(_)) {
                return Err(format!(
                    "template placeholder {{{}}} must be a single value",
                    path.text
                ));
            }
            parts.push(TemplatePart::Path(path));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in template {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, TemplatePart::Path(_))) {
            return Err(format!(
                "template {text:?} has no {{path}}: every record would get the same key"
            ));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The rendered text; `Err` names the placeholder that is empty.
    pub(crate) fn render<'a>(&self, input: impl Into<Input<'a>>) -> Result<String, String> {
        let input = input.into();
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Path(path) => match path.eval(input).text() {
                    Some(t) if !t.is_empty() => out.push_str(&t),
                    _ => return Err(format!("key part {{{}}} is empty", path.text)),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::schema::tests::full_records;

    fn individual() -> Record {
        full_records().remove(0)
    }

    fn compile(p: &str) -> Result<Path, String> {
        Path::compile(p, EntityKind::Individual)
    }

    #[test]
    fn paths_read_fields_indexes_and_selectors() {
        let r = individual();
        let get = |p: &str| compile(p).unwrap().eval(&r).to_json();
        assert_eq!(get("first_name"), "Ada");
        assert_eq!(get("specialties[1]"), "208D00000X");
        assert_eq!(get("specialties[9]"), Value::Null);
        assert_eq!(get("identifiers[system=NPI].value"), "1234567893");
        assert_eq!(get("identifiers[system=DEA].value"), "AB1234563");
        assert_eq!(get("identifiers[system=GMC].value"), Value::Null);
        assert_eq!(get("identifiers[1].system"), "DEA");
        assert_eq!(get("birth_date"), "1815-12-10");
        assert_eq!(get("kind"), "individual");
    }

    #[test]
    fn paths_into_nested_objects_and_maps() {
        let records = full_records();
        let w = &records[1];
        let p = Path::compile("address.lines[0]", EntityKind::Workplace).unwrap();
        assert_eq!(p.eval(w).to_json(), "1 Main St");
        let c = &records[4];
        let p = Path::compile("labels.en", EntityKind::Code).unwrap();
        assert_eq!(p.eval(c).to_json(), "Internal Medicine");
        let p = Path::compile("labels.de-CH", EntityKind::Code).unwrap();
        assert_eq!(p.eval(c).to_json(), Value::Null);
        let r = &records[3];
        let p = Path::compile("to.id", EntityKind::Relation).unwrap();
        assert_eq!(p.eval(r).to_json(), "W0");
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        let err = |p: &str| compile(p).unwrap_err();
        assert!(err("identifierz").contains(
            "unknown path segment \"identifierz\" (Individual has: kind, source_id, scope"
        ));
        assert!(err("").contains("empty path"));
        assert!(err("first_name.").contains("ends with '.'"));
        assert!(err("a..b").contains("unexpected '.'"));
        assert!(err("first_name..x").contains("unexpected '.'"));
        assert!(err("specialties[").contains("unclosed '['"));
        assert!(err("specialties[x]").contains("bad brackets"));
        assert!(err("identifiers[=NPI]").contains("bad selector"));
        assert!(err("identifiers[syztem=NPI]").contains("unknown selector key \"syztem\""));
        assert!(err("specialties[code=x]").contains("list of single values"));
        assert!(err("first_name[0]").contains("first_name is not a list"));
        assert!(err("first_name.x").contains("single value"));
        assert!(err("identifiers.value").contains("identifiers is a list"));
        assert!(err("first name").contains("unexpected ' '"));
        assert!(err("first_namé").contains("unexpected 'é'"));
        assert!(err("é").contains("unexpected 'é'"));
        assert!(err("specialties[99999999999999999999999]").contains("too large"));
        let e = Path::compile("address.cityy", EntityKind::Workplace).unwrap_err();
        assert!(e.contains("(Address has: lines, city"), "{e}");
    }
}
