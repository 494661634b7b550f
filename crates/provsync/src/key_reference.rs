//! The reference of every key a job file and a service configuration take,
//! generated from the types that parse them: a JSON Schema of each (for editors and
//! validators) and a Markdown page listing every key. `provsync schema` prints them;
//! `docs/reference/` ships them, and a test keeps the shipped copies current.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

/// Which file a reference describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Document {
    /// A job file (`provsync run job.toml`; the body of `POST /v1/jobs`).
    Job,
    /// The service configuration (`provsync serve --config provsync.toml`).
    Config,
}

impl Document {
    /// File name of the shipped JSON Schema.
    pub fn schema_file(self) -> &'static str {
        match self {
            Document::Job => "job.schema.json",
            Document::Config => "config.schema.json",
        }
    }

    fn root(self) -> &'static str {
        match self {
            Document::Job => "JobRequest",
            Document::Config => "ConfigFile",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Document::Job => "provsync job file",
            Document::Config => "provsync service configuration",
        }
    }
}

/// The service configuration's types, gathered like the API's.
#[derive(OpenApi)]
#[openapi(components(schemas(crate::config::ConfigFile)))]
struct ConfigDoc;

/// The JSON Schema (2020-12) of a document: the root type's schema with every type
/// it refers to under `$defs`.
pub fn json_schema(doc: Document) -> Value {
    let api = match doc {
        Document::Job => crate::api::openapi::document(),
        Document::Config => ConfigDoc::openapi(),
    };
    let mut defs = serde_json::to_value(api.components.map(|c| c.schemas).unwrap_or_default())
        .expect("schemas serialize");
    rewrite_refs(&mut defs);
    let defs = defs.as_object().cloned().unwrap_or_default();
    let root = defs
        .get(doc.root())
        .cloned()
        .expect("the root type is a component");
    let mut used = BTreeSet::new();
    collect_refs(&root, &defs, &mut used);
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("title".into(), json!(doc.title()));
    if let Value::Object(fields) = root {
        out.extend(fields);
    }
    out.insert(
        "$defs".into(),
        Value::Object(
            used.into_iter()
                .filter_map(|n| defs.get(&n).map(|d| (n, d.clone())))
                .collect(),
        ),
    );
    Value::Object(out)
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                *r = r.replace("#/components/schemas/", "#/$defs/");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn collect_refs(v: &Value, defs: &Map<String, Value>, used: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                if used.insert(name.to_owned()) {
                    if let Some(d) = defs.get(name) {
                        collect_refs(d, defs, used);
                    }
                }
            }
            m.values().for_each(|x| collect_refs(x, defs, used));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, defs, used)),
        _ => {}
    }
}

/// The Markdown page listing every key of both documents, section by section.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Keys of job files and of the service configuration\n\n\
         Generated from the types that parse them (`provsync schema job|config \
         --markdown`); the JSON Schemas beside this page (`job.schema.json`, \
         `config.schema.json`) say the same for editors and validators. A key that is \
         not listed is refused, with its file and line.\n",
    );
    for (doc, heading) in [
        (Document::Job, "Job file"),
        (Document::Config, "Service configuration"),
    ] {
        let schema = json_schema(doc);
        let mut w = Writer {
            defs: schema["$defs"].as_object().cloned().unwrap_or_default(),
            out: &mut out,
            // a schedule's inline job takes a job file's keys, listed above
            linked: (doc == Document::Config).then_some(("JobRequest", "[job file](#job-file)")),
        };
        w.out.push_str(&format!("\n## {heading}\n"));
        w.section(&schema, "", 2);
    }
    out
}

struct Writer<'a> {
    defs: Map<String, Value>,
    out: &'a mut String,
    /// A type listed elsewhere on the page, and the link to it.
    linked: Option<(&'static str, &'static str)>,
}

impl Writer<'_> {
    fn resolve<'v>(&'v self, v: &'v Value) -> &'v Value {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            Some(name) => self.defs.get(name).unwrap_or(v),
            None => v,
        }
    }

    /// The schema a value of `v` must follow when it is a table (or an array of
    /// tables, or an optional one, or a choice of tables), for a section of its own.
    fn nested<'v>(&'v self, v: &'v Value) -> Option<&'v Value> {
        let v = self.resolve(v);
        if let Some(items) = v.get("items") {
            return self.nested(items);
        }
        if let Some(any) = v.get("oneOf").and_then(Value::as_array) {
            let tables: Vec<&Value> = any.iter().filter_map(|x| self.nested(x)).collect();
            return match tables.len() {
                0 => None,
                1 if any.len() == 2 => Some(tables[0]),
                _ => Some(v),
            };
        }
        v.get("properties").map(|_| v)
    }

    /// A property's description: its own, else its type's.
    fn description_of(&self, prop: &Value) -> String {
        let own = prop.get("description").or_else(|| {
            prop.get("oneOf")?
                .as_array()?
                .iter()
                .find_map(|x| x.get("description"))
        });
        own.or_else(|| self.resolve(prop).get("description"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default()
    }

    fn section(&mut self, schema: &Value, path: &str, depth: usize) {
        let schema = self.resolve(schema).clone();
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            for variant in variants {
                let variant = self.resolve(variant).clone();
                let Some(tag) = self.tag_of(&variant) else {
                    continue;
                };
                self.out.push_str(&format!(
                    "\n{} `{path}` with {tag}\n",
                    "#".repeat(depth.min(6))
                ));
                self.table(&variant, path, depth + 1);
            }
            return;
        }
        if !path.is_empty() {
            self.out
                .push_str(&format!("\n{} `{path}`\n", "#".repeat(depth.min(6))));
        }
        self.table(&schema, path, depth + 1);
    }

    /// `type = "file"`: the property whose schema allows a single value.
    fn tag_of(&self, variant: &Value) -> Option<String> {
        let props = variant.get("properties")?.as_object()?;
        props.iter().find_map(|(k, p)| {
            let values = p.get("enum")?.as_array()?;
            (values.len() == 1).then(|| format!("`{k} = {}`", values[0]))
        })
    }

    fn table(&mut self, schema: &Value, path: &str, depth: usize) {
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !description.is_empty() {
            self.out.push_str(&format!("\n{}\n", one_line(description)));
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.out
            .push_str("\n| key | type | default | what it is |\n|---|---|---|---|\n");
        let mut nested = Vec::new();
        for (key, prop) in props {
            let default = prop
                .get("default")
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| {
                    if required.contains(key.as_str()) {
                        "required".into()
                    } else {
                        String::new()
                    }
                });
            let doc = self.description_of(prop);
            self.out.push_str(&format!(
                "| `{key}` | {} | {default} | {} |\n",
                self.type_of(prop),
                doc.replace('|', "\\|")
            ));
            if let Some(inner) = self.nested(prop).filter(|_| self.link_of(prop).is_none()) {
                let is_array = self.resolve(prop).get("items").is_some();
                let sub = match (path.is_empty(), is_array) {
                    (true, false) => key.clone(),
                    (true, true) => format!("[[{key}]]"),
                    (false, false) => format!("{path}.{key}"),
                    (false, true) => format!("{path}.{key}[]"),
                };
                nested.push((sub, inner.clone()));
            }
        }
        for (sub, inner) in nested {
            self.section(&inner, &sub, depth);
        }
    }

    /// The link to where a property's type is listed, when it is listed elsewhere.
    fn link_of(&self, prop: &Value) -> Option<&'static str> {
        let (name, link) = self.linked?;
        prop.to_string()
            .contains(&format!("\"#/$defs/{name}\""))
            .then_some(link)
    }

    fn type_of(&self, prop: &Value) -> String {
        if let Some(link) = self.link_of(prop) {
            return format!("table: the keys of a {link}");
        }
        if let Some(name) = prop
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            let target = self.resolve(prop);
            return match target.get("enum").and_then(Value::as_array) {
                Some(values) => values
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(" \\| "),
                None if target.get("properties").is_some() => "table".into(),
                None if target.get("oneOf").is_some() && self.nested(target).is_some() => {
                    "table".into()
                }
                None if target.get("oneOf").is_some() || target.get("type").is_some() => {
                    self.type_of(target)
                }
                None => name.to_owned(),
            };
        }
        if let Some(values) = prop.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        for combo in ["oneOf", "anyOf"] {
            if let Some(any) = prop.get(combo).and_then(Value::as_array) {
                let kinds: Vec<String> = any
                    .iter()
                    .filter(|x| x.get("type") != Some(&json!("null")))
                    .map(|x| self.type_of(x))
                    .collect();
                return kinds.join(" or ");
            }
        }
        let base = match prop.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "any".into(),
        };
        match (base.as_str(), prop.get("items")) {
            ("array", Some(items)) => format!("array of {}", self.type_of(items)),
            ("object", None) if prop.get("properties").is_some() => "table".into(),
            _ => base,
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped reference is what the types generate; `BLESS=1` rewrites it.
    #[test]
    fn shipped_key_reference_is_generated_from_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference");
        let mut files: Vec<(String, String)> = [Document::Job, Document::Config]
            .into_iter()
            .map(|d| {
                (
                    d.schema_file().to_owned(),
                    serde_json::to_string_pretty(&json_schema(d)).unwrap() + "\n",
                )
            })
            .collect();
        files.push(("keys.md".into(), markdown()));
        for (name, generated) in files {
            let path = dir.join(&name);
            if std::env::var_os("BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &generated).unwrap();
            }
            let shipped = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                shipped == generated,
                "docs/reference/{name} is not what the types generate: run \
                 `BLESS=1 cargo test --release -p provsync --lib key_reference`"
            );
        }
    }

    #[test]
    fn every_connector_key_is_in_the_job_schema() {
        let schema = json_schema(Document::Job);
        let text = schema.to_string();
        for key in [
            "client_secret_file",
            "password_env",
            "secret_file",
            "bulk_threshold",
            "private_key_file",
            "packet_size",
        ] {
            assert!(text.contains(&format!("\"{key}\"")), "{key} missing");
        }
        let sources = schema["properties"]["source"].to_string();
        assert!(sources.contains("Source"), "{sources}");
        let types = |def: &str| -> Vec<String> {
            schema["$defs"][def]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    v["properties"]["type"]["enum"][0]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(types("Source"), crate::source::TYPES);
        assert_eq!(types("Target"), crate::target::TYPES);
        let source = &schema["$defs"]["Source"];
        // an inline secret is refused, so the schema does not offer it
        assert!(!source.to_string().contains("\"client_secret\""));
    }

    #[test]
    fn the_markdown_reference_lists_each_connector_section() {
        let md = markdown();
        for heading in [
            "`source` with `type = \"file\"`",
            "`source` with `type = \"onekey\"`",
            "`target` with `type = \"salesforce\"`",
            "`target.auth` with `flow = \"jwt\"`",
            "`[[schedules]]`",
            "`[[tokens]]`",
        ] {
            assert!(md.contains(heading), "{heading} missing");
        }
    }
}
