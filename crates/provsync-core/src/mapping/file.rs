//! The mapping file (TOML): schema, load-time validation and load errors.
//!
//! The file is walked from `toml`'s spanned document tree rather than derived with
//! serde, so every refusal names the file, the line and the dotted field at fault, and
//! fields keep the order they have in the file (the span order).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::Value;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::expr::{
    format_node, FieldExpr, OnMissing, Path, PathCtx, Source, Template, Translation,
};
use super::schema::{Node, Scalar};
use crate::model::EntityKind;

/// A mapping file refused at load time: where, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {}{message}", field_prefix(.field))]
pub struct MappingError {
    /// The file name given to `Mapping::from_toml`.
    pub origin: String,
    /// 1-based line of the fault.
    pub line: usize,
    /// Dotted path of the field at fault (`entities.individual.fields.npi`); empty for
    /// TOML syntax errors.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Which entity kinds a file maps, to which table, with which fields.
#[derive(Debug)]
pub(crate) struct EntityMapping {
    pub(crate) kind: EntityKind,
    pub(crate) table: String,
    pub(crate) fields: Vec<FieldExpr>,
    pub(crate) children: Vec<ChildMapping>,
    pub(crate) disconnect: Vec<(String, Value)>,
    /// The target key template, when not the source id.
    pub(crate) key: Option<Template>,
}

/// A child object written with each record of a kind (`[[entities.K.children]]`).
#[derive(Debug)]
pub(crate) struct ChildMapping {
    pub(crate) table: String,
    pub(crate) key: Template,
    pub(crate) parent_field: String,
    /// One child per element of this list (addressed as `item` in paths).
    pub(crate) for_each: Option<Path>,
    /// The child exists only when this value is present (not null, empty or false).
    pub(crate) when: Option<Path>,
    pub(crate) fields: Vec<FieldExpr>,
    pub(crate) disconnect: Vec<(String, Value)>,
}

/// A parsed and validated mapping file.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) name: Option<String>,
    pub(crate) entities: Vec<EntityMapping>,
}

type Entry<'a, 'i> = (
    &'a Spanned<toml::de::DeString<'i>>,
    &'a Spanned<DeValue<'i>>,
);

/// Table entries in file order (the parser keeps them sorted by key).
fn entries<'a, 'i>(t: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut v: Vec<Entry<'a, 'i>> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The JSON value of a TOML string, number or boolean.
fn scalar_json(v: &DeValue<'_>) -> Option<Value> {
    match v {
        DeValue::String(s) => Some(Value::String(s.to_string())),
        DeValue::Boolean(b) => Some(Value::Bool(*b)),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(Value::from),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        _ => None,
    }
}

const CHILD_KEYS: &[&str] = &[
    "object",
    "key",
    "parent_field",
    "for_each",
    "when",
    "fields",
    "disconnect",
];

const FIELD_KEYS: &str = "from, concat, separator, constant, translate, on_missing, default, join, date_format, required";

struct Loader<'t> {
    text: &'t str,
    origin: &'t str,
}

impl Loader<'_> {
    fn err(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> MappingError {
        let start = span.start.min(self.text.len());
        MappingError {
            origin: self.origin.to_string(),
            line: 1 + self.text.as_bytes()[..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn string<'v>(
        &self,
        v: &'v Spanned<DeValue<'_>>,
        field: &str,
        what: &str,
    ) -> Result<&'v str, MappingError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s),
            other => Err(self.err(
                v.span(),
                field,
                format!("{what} must be a string, not {}", other.type_str()),
            )),
        }
    }

    fn table<'v, 'i>(
        &self,
        v: &'v Spanned<DeValue<'i>>,
        field: &str,
    ) -> Result<&'v DeTable<'i>, MappingError> {
        match v.get_ref() {
            DeValue::Table(t) => Ok(t),
            other => Err(self.err(
                v.span(),
                field,
                format!("expected a table, not {}", other.type_str()),
            )),
        }
    }

    fn load(&self) -> Result<Loaded, MappingError> {
        let doc = DeTable::parse(self.text).map_err(|e| {
            self.err(
                e.span().unwrap_or(0..0),
                "",
                format!("invalid TOML: {}", e.message()),
            )
        })?;
        let mut name = None;
        let mut translations_v = None;
        let mut entities_v = None;
        for (k, v) in entries(doc.get_ref()) {
            match k.get_ref().as_ref() {
                "name" => name = Some(self.string(v, "name", "name")?.to_string()),
                "version" => match v.get_ref() {
                    DeValue::Integer(i) if i.as_str() == "1" => {}
                    _ => {
                        return Err(self.err(
                            v.span(),
                            "version",
                            "unsupported version (this program reads version = 1)",
                        ))
                    }
                },
                "translations" => translations_v = Some(v),
                "entities" => entities_v = Some((k, v)),
                other => {
                    return Err(self.err(
                        k.span(),
                        other,
                        "unknown key (expected one of: name, version, translations, entities)",
                    ))
                }
            }
        }
        let translations = match translations_v {
            Some(v) => self.translations(v)?,
            None => HashMap::new(),
        };
        let Some((entities_k, entities_v)) = entities_v else {
            return Err(self.err(
                0..0,
                "entities",
                "missing: a mapping maps at least one kind",
            ));
        };
        let mut entities = Vec::new();
        for (k, v) in entries(self.table(entities_v, "entities")?) {
            let path = join_path("entities", k.get_ref());
            let kind = EntityKind::parse(k.get_ref()).ok_or_else(|| {
                self.err(
                    k.span(),
                    &path,
                    "unknown entity kind (expected one of: individual, workplace, activity, relation, code)",
                )
            })?;
            entities.push(self.entity(kind, &path, v, &translations)?);
        }
        if entities.is_empty() {
            return Err(self.err(
                entities_k.span(),
                "entities",
                "no entity kinds: a mapping maps at least one kind",
            ));
        }
        Ok(Loaded { name, entities })
    }

    fn translations(
        &self,
        v: &Spanned<DeValue<'_>>,
    ) -> Result<HashMap<String, Arc<Translation>>, MappingError> {
        let mut out = HashMap::new();
        for (k, table) in entries(self.table(v, "translations")?) {
            let path = join_path("translations", k.get_ref());
            let mut map = HashMap::new();
            for (code, value) in entries(self.table(table, &path)?) {
                let json = scalar_json(value.get_ref()).ok_or_else(|| {
                    self.err(
                        value.span(),
                        &join_path(&path, code.get_ref()),
                        format!(
                            "a translation must be a string, number or boolean, not {}",
                            value.get_ref().type_str()
                        ),
                    )
                })?;
                map.insert(code.get_ref().to_string(), json);
            }
            out.insert(
                k.get_ref().to_string(),
                Arc::new(Translation {
                    name: k.get_ref().to_string(),
                    entries: map,
                }),
            );
        }
        Ok(out)
    }

    fn entity(
        &self,
        kind: EntityKind,
        path: &str,
        v: &Spanned<DeValue<'_>>,
        translations: &HashMap<String, Arc<Translation>>,
    ) -> Result<EntityMapping, MappingError> {
        let t = self.table(v, path)?;
        let mut table = None;
        let mut fields_v = None;
        let mut children = Vec::new();
        let mut disconnect = Vec::new();
        let mut key = None;
        for (k, v) in entries(t) {
            match k.get_ref().as_ref() {
                "table" => table = Some(self.name(v, &join_path(path, "table"), "table")?),
                "key" => {
                    let field = join_path(path, "key");
                    let text = self.string(v, &field, "key")?;
                    key = Some(
                        Template::compile(text, kind.into())
                            .map_err(|m| self.err(v.span(), &field, m))?,
                    );
                }
                "fields" => fields_v = Some(v),
                "disconnect" => disconnect = self.disconnect(v, &join_path(path, "disconnect"))?,
                "children" => {
                    let cpath = join_path(path, "children");
                    let DeValue::Array(items) = v.get_ref() else {
                        return Err(self.err(
                            v.span(),
                            &cpath,
                            "children must be an array of tables ([[...children]])",
                        ));
                    };
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{cpath}[{i}]");
                        children.push(self.child(kind, &ipath, item, translations)?);
                    }
                }
                other => {
                    return Err(self.err(
                        k.span(),
                        &join_path(path, other),
                        "unknown key (expected table, key, fields, children, disconnect)",
                    ))
                }
            }
        }
        let table = table.ok_or_else(|| {
            self.err(
                v.span(),
                &join_path(path, "table"),
                "missing: which table or object this kind goes to",
            )
        })?;
        let fields = match fields_v {
            Some(fv) => self.fields(kind.into(), &join_path(path, "fields"), fv, translations)?,
            None => Vec::new(),
        };
        Ok(EntityMapping {
            kind,
            table,
            fields,
            children,
            disconnect,
            key,
        })
    }

    /// A non-empty table or field name.
    fn name(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        what: &str,
    ) -> Result<String, MappingError> {
        let name = self.string(v, field, what)?;
        if name.trim().is_empty() {
            return Err(self.err(v.span(), field, format!("{what} name is empty")));
        }
        Ok(name.to_string())
    }

    /// `disconnect = { Field = value, ... }`: what a swept record is set to.
    fn disconnect(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<Vec<(String, Value)>, MappingError> {
        let mut out = Vec::new();
        for (k, v) in entries(self.table(v, field)?) {
            let value = scalar_json(v.get_ref()).ok_or_else(|| {
                self.err(
                    v.span(),
                    field,
                    "disconnect values must be strings, numbers or booleans",
                )
            })?;
            out.push((k.get_ref().to_string(), value));
        }
        if out.is_empty() {
            return Err(self.err(v.span(), field, "disconnect sets no field"));
        }
        Ok(out)
    }

    /// The `fields` table of an entity or child, in file order.
    fn fields(
        &self,
        ctx: PathCtx,
        fpath: &str,
        fv: &Spanned<DeValue<'_>>,
        translations: &HashMap<String, Arc<Translation>>,
    ) -> Result<Vec<FieldExpr>, MappingError> {
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in entries(self.table(fv, fpath)?) {
            let name = k.get_ref().to_string();
            let field = join_path(fpath, &name);
            if name.trim().is_empty() {
                return Err(self.err(k.span(), &field, "target field name is empty"));
            }
            // SQL and Salesforce field names are case-insensitive: NPI and npi collide.
            if !seen.insert(name.to_lowercase()) {
                return Err(self.err(
                    k.span(),
                    &field,
                    "duplicate target field (names are compared without case)",
                ));
            }
            fields.push(self.field(ctx, name, &field, v, translations)?);
        }
        Ok(fields)
    }

    /// One `[[entities.K.children]]` table.
    fn child(
        &self,
        kind: EntityKind,
        path: &str,
        v: &Spanned<DeValue<'_>>,
        translations: &HashMap<String, Arc<Translation>>,
    ) -> Result<ChildMapping, MappingError> {
        let t = self.table(v, path)?;
        let get = |key: &str| entries(t).into_iter().find(|(k, _)| k.get_ref() == key);
        for (k, _) in entries(t) {
            if !CHILD_KEYS.contains(&k.get_ref().as_ref()) {
                return Err(self.err(
                    k.span(),
                    &join_path(path, k.get_ref()),
                    format!("unknown key (expected one of: {})", CHILD_KEYS.join(", ")),
                ));
            }
        }
        let required = |key: &str, what: &str| {
            get(key).ok_or_else(|| {
                self.err(v.span(), &join_path(path, key), format!("missing: {what}"))
            })
        };
        let (_, ov) = required("object", "which table or object the child goes to")?;
        let table = self.name(ov, &join_path(path, "object"), "object")?;
        let (_, pv) = required(
            "parent_field",
            "the child's field that refers to its parent",
        )?;
        let parent_field = self.name(pv, &join_path(path, "parent_field"), "parent_field")?;
        let mut ctx = PathCtx::from(kind);
        let for_each = match get("for_each") {
            Some((_, fv)) => {
                let field = join_path(path, "for_each");
                let p = self.path(ctx, fv, &field, "for_each")?;
                let super::schema::Shape::List(elem) = p.shape else {
                    return Err(self.err(
                        fv.span(),
                        &field,
                        format!("for_each needs a list; {} is not one", p.text),
                    ));
                };
                ctx.item = Some(elem);
                Some(p)
            }
            None => None,
        };
        let key =
            match get("key") {
                Some((_, kv)) => {
                    let field = join_path(path, "key");
                    let text = self.string(kv, &field, "key")?;
                    Template::compile(text, ctx).map_err(|m| self.err(kv.span(), &field, m))?
                }
                None if for_each.is_some() => return Err(self.err(
                    v.span(),
                    &join_path(path, "key"),
                    "missing: a child made per for_each element needs a key template using {item}",
                )),
                None => Template::compile("{source_id}", ctx)
                    .map_err(|m| self.err(v.span(), path, m))?,
            };
        let when = match get("when") {
            Some((_, wv)) => Some(self.path(ctx, wv, &join_path(path, "when"), "when")?),
            None => None,
        };
        let fields = match get("fields") {
            Some((_, fv)) => self.fields(ctx, &join_path(path, "fields"), fv, translations)?,
            None => Vec::new(),
        };
        let disconnect = match get("disconnect") {
            Some((_, dv)) => self.disconnect(dv, &join_path(path, "disconnect"))?,
            None => Vec::new(),
        };
        Ok(ChildMapping {
            table,
            key,
            parent_field,
            for_each,
            when,
            fields,
            disconnect,
        })
    }

    fn path(
        &self,
        kind: PathCtx,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        what: &str,
    ) -> Result<Path, MappingError> {
        let text = self.string(v, field, what)?;
        Path::compile(text, kind).map_err(|m| self.err(v.span(), field, m))
    }

    /// One mapped field: a path string, or a table of one source and its modifiers.
    fn field(
        &self,
        kind: PathCtx,
        name: String,
        field: &str,
        v: &Spanned<DeValue<'_>>,
        translations: &HashMap<String, Arc<Translation>>,
    ) -> Result<FieldExpr, MappingError> {
        let mut expr = FieldExpr {
            name,
            source: Source::Constant(Value::Null),
            translate: None,
            on_missing: OnMissing::Keep,
            join: None,
            date_format: None,
            default: None,
            required: false,
        };
        let spec = match v.get_ref() {
            DeValue::String(_) => {
                expr.source = Source::Path(self.path(kind, v, field, "a path")?);
                return Ok(expr);
            }
            DeValue::Table(t) => t,
            other => {
                return Err(self.err(
                    v.span(),
                    field,
                    format!(
                        "expected a path string or a table ({FIELD_KEYS}), not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let keys = self.field_keys(kind, field, spec, translations, &mut expr)?;
        let source = self.one_source(v, field, &keys.sources)?;
        self.modifiers_fit(field, source, &keys.modifiers)?;
        if let (Source::Concat { separator: s, .. }, Some(sep)) =
            (&mut expr.source, keys.separator.clone())
        {
            *s = sep;
        }
        if let Source::Path(p) = &expr.source {
            let date_format = self.path_modifiers_fit(field, v, &keys, &expr, p)?;
            expr.date_format = date_format;
        }
        Ok(expr)
    }

    /// Reads each key of a field table into `expr`, refusing unknown keys and values
    /// of the wrong type; whether the keys fit together is checked after.
    fn field_keys<'v, 'i>(
        &self,
        kind: PathCtx,
        field: &str,
        spec: &'v DeTable<'i>,
        translations: &HashMap<String, Arc<Translation>>,
        expr: &mut FieldExpr,
    ) -> Result<FieldKeys<'v, 'i>, MappingError> {
        let mut keys = FieldKeys::default();
        for (k, v) in entries(spec) {
            let key: &str = k.get_ref();
            match key {
                "from" => {
                    keys.sources.push(("from", k.span()));
                    expr.source = Source::Path(self.path(kind, v, field, "from")?);
                }
                "concat" => {
                    keys.sources.push(("concat", k.span()));
                    expr.source = self.concat(kind, v, field)?;
                }
                "constant" => {
                    keys.sources.push(("constant", k.span()));
                    expr.source = Source::Constant(self.scalar(v, field, "constant")?);
                }
                "separator" => {
                    keys.modifiers.push(("separator", k.span()));
                    keys.separator = Some(self.string(v, field, "separator")?.to_string());
                }
                "translate" => {
                    keys.modifiers.push(("translate", k.span()));
                    expr.translate = Some(self.translation(v, field, translations)?);
                }
                "on_missing" => {
                    keys.modifiers.push(("on_missing", k.span()));
                    expr.on_missing = self.on_missing(v, field)?;
                }
                "default" => {
                    keys.modifiers.push(("default", k.span()));
                    expr.default = Some(self.scalar(v, field, "default")?);
                }
                "join" => {
                    keys.modifiers.push(("join", k.span()));
                    expr.join = Some(self.string(v, field, "join")?.to_string());
                }
                "date_format" => {
                    keys.modifiers.push(("date_format", k.span()));
                    keys.date_format = Some(v);
                }
                "required" => {
                    keys.modifiers.push(("required", k.span()));
                    expr.required = self.boolean(v, field, "required")?;
                }
                other => {
                    return Err(self.err(
                        k.span(),
                        field,
                        format!("unknown key {other:?} (expected one of: {FIELD_KEYS})"),
                    ))
                }
            }
        }
        Ok(keys)
    }

    /// A `concat` source: a non-empty array of paths to text.
    fn concat(
        &self,
        kind: PathCtx,
        v: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<Source, MappingError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(v.span(), field, "concat must be an array of paths"));
        };
        if items.is_empty() {
            return Err(self.err(v.span(), field, "concat has no parts"));
        }
        let mut parts = Vec::new();
        for item in items.iter() {
            let p = self.path(kind, item, field, "a concat part")?;
            if !p.shape.is_textual() {
                return Err(self.err(
                    item.span(),
                    field,
                    format!("concat part {} is an object, not text", p.text),
                ));
            }
            parts.push(p);
        }
        Ok(Source::Concat {
            parts,
            separator: String::new(),
        })
    }

    /// A string, number or boolean (`constant`, `default`).
    fn scalar(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        what: &str,
    ) -> Result<Value, MappingError> {
        scalar_json(v.get_ref()).ok_or_else(|| {
            self.err(
                v.span(),
                field,
                format!(
                    "{what} must be a string, number or boolean, not {}",
                    v.get_ref().type_str()
                ),
            )
        })
    }

    /// A `true` or `false`.
    fn boolean(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        what: &str,
    ) -> Result<bool, MappingError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            other => Err(self.err(
                v.span(),
                field,
                format!("{what} must be true or false, not {}", other.type_str()),
            )),
        }
    }

    /// The translation table `translate` names, which must be in `translations`.
    fn translation(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        translations: &HashMap<String, Arc<Translation>>,
    ) -> Result<Arc<Translation>, MappingError> {
        let t = self.string(v, field, "translate")?;
        let table = translations.get(t).ok_or_else(|| {
            let mut known: Vec<_> = translations.keys().map(String::as_str).collect();
            known.sort_unstable();
            self.err(
                v.span(),
                field,
                format!(
                    "translate names a missing table {t:?} (translations has: {})",
                    known.join(", ")
                ),
            )
        })?;
        Ok(table.clone())
    }

    /// What `on_missing` does with a value the translation lacks.
    fn on_missing(&self, v: &Spanned<DeValue<'_>>, field: &str) -> Result<OnMissing, MappingError> {
        match self.string(v, field, "on_missing")? {
            "keep" => Ok(OnMissing::Keep),
            "default" => Ok(OnMissing::Default),
            "reject" => Ok(OnMissing::Reject),
            other => Err(self.err(
                v.span(),
                field,
                format!("on_missing {other:?} is not one of: keep, default, reject"),
            )),
        }
    }

    /// The one source key of a field table.
    fn one_source(
        &self,
        v: &Spanned<DeValue<'_>>,
        field: &str,
        sources: &[(&'static str, Range<usize>)],
    ) -> Result<&'static str, MappingError> {
        match sources {
            [] => Err(self.err(
                v.span(),
                field,
                "no source: give one of from, concat, constant",
            )),
            [(s, _)] => Ok(*s),
            [(a, _), (b, span), ..] => Err(self.err(
                span.clone(),
                field,
                format!("two sources ({a} and {b}): give exactly one of from, concat, constant"),
            )),
        }
    }

    /// Refuses modifiers that do not apply to the field's source.
    fn modifiers_fit(
        &self,
        field: &str,
        source: &str,
        modifiers: &[(&'static str, Range<usize>)],
    ) -> Result<(), MappingError> {
        let allowed: &[&str] = match source {
            "from" => &[
                "translate",
                "on_missing",
                "default",
                "join",
                "date_format",
                "required",
            ],
            "concat" => &["separator", "default", "required"],
            _ => &[],
        };
        for (m, span) in modifiers {
            if !allowed.contains(m) {
                return Err(self.err(
                    span.clone(),
                    field,
                    format!("{m} does not apply to a {source} field"),
                ));
            }
        }
        Ok(())
    }

    /// Refuses modifiers of a `from` field that do not fit the path's shape or each
    /// other; returns the parsed `date_format`, if given.
    fn path_modifiers_fit(
        &self,
        field: &str,
        v: &Spanned<DeValue<'_>>,
        keys: &FieldKeys<'_, '_>,
        expr: &FieldExpr,
        p: &Path,
    ) -> Result<Option<Vec<Item<'static>>>, MappingError> {
        let key_span = |name: &str| keys.span_of(name).unwrap_or_else(|| v.span());
        if expr.on_missing != OnMissing::Keep && expr.translate.is_none() {
            return Err(self.err(key_span("on_missing"), field, "on_missing needs translate"));
        }
        if expr.translate.is_some() && !p.shape.is_textual() {
            return Err(self.err(
                key_span("translate"),
                field,
                format!(
                    "translate needs a single value or a list of them; {} is an object",
                    p.text
                ),
            ));
        }
        if expr.join.is_some() && !p.shape.is_scalar_list() {
            return Err(self.err(
                key_span("join"),
                field,
                format!("join needs a list of single values; {} is not one", p.text),
            ));
        }
        let Some(fv) = keys.date_format else {
            return Ok(None);
        };
        if expr.translate.is_some() {
            return Err(self.err(
                key_span("date_format"),
                field,
                "date_format and translate do not combine (translate yields codes, not dates)",
            ));
        }
        let scalar = p.shape.scalar();
        if !matches!(scalar, Some(Scalar::Date | Scalar::DateTime)) {
            return Err(self.err(
                key_span("date_format"),
                field,
                format!(
                    "date_format needs a date or datetime; {} is not one",
                    p.text
                ),
            ));
        }
        let fmt = self.string(fv, field, "date_format")?;
        let items = date_items(fmt, scalar == Some(Scalar::Date))
            .map_err(|m| self.err(fv.span(), field, m))?;
        Ok(Some(items))
    }
}

/// The keys of one field table as read, before checking that they fit together.
#[derive(Default)]
struct FieldKeys<'v, 'i> {
    /// (key, span) of each source present.
    sources: Vec<(&'static str, Range<usize>)>,
    /// (key, span) of each modifier present.
    modifiers: Vec<(&'static str, Range<usize>)>,
    separator: Option<String>,
    date_format: Option<&'v Spanned<DeValue<'i>>>,
}

impl FieldKeys<'_, '_> {
    /// Where a modifier's key is, if present.
    fn span_of(&self, name: &str) -> Option<Range<usize>> {
        self.modifiers
            .iter()
            .find(|(m, _)| *m == name)
            .map(|(_, s)| s.clone())
    }
}

/// Parses a strftime format, refusing unknown specifiers and, for dates, time fields.
fn date_items(fmt: &str, date_only: bool) -> Result<Vec<Item<'static>>, String> {
    let items = StrftimeItems::new(fmt)
        .parse_to_owned()
        .map_err(|_| format!("invalid date_format {fmt:?} (chrono strftime syntax)"))?;
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "invalid date_format {fmt:?} (chrono strftime syntax)"
        ));
    }
    // Formatting fails (it would panic in `to_string`) when the format asks for what the
    // value lacks; probe once here instead of failing every record.
    let probe = if date_only {
        NaiveDate::from_ymd_opt(2000, 1, 2).map(Node::Date)
    } else {
        Utc.with_ymd_and_hms(2000, 1, 2, 3, 4, 5)
            .single()
            .map(Node::DateTime)
    };
    match probe.and_then(|n| format_node(n, &items)) {
        Some(_) => Ok(items),
        None => Err(format!(
            "date_format {fmt:?} asks for a time or zone, but the value is a date"
        )),
    }
}

/// Parses and validates a mapping file.
pub(crate) fn load(text: &str, origin: &str) -> Result<Loaded, MappingError> {
    Loader { text, origin }.load()
}
