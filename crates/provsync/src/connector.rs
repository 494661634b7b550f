//! What every connector section (`[source]`, `[target]`) shares: parsing its
//! settings into the connector's typed config, unknown keys refused with their path,
//! and the schema of a section picked by its `type`.

use provsync_core::job::{ConnectorSpec, SpecError};
use serde::de::DeserializeOwned;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// How a serde error names its field: the key serde named in the message (an
/// unknown or missing key is named there, not in the path) joined to the path.
pub fn field_of(path: &str, message: &str) -> (String, Problem) {
    let path = if path == "." { "" } else { path };
    let named = |prefix: &str| -> Option<&str> { message.strip_prefix(prefix)?.split('`').next() };
    let (name, problem) = match (named("unknown field `"), named("missing field `")) {
        (Some(n), _) => (Some(n), Problem::Unknown),
        (_, Some(n)) => (Some(n), Problem::Missing),
        _ => (None, Problem::Invalid),
    };
    let field = match name {
        None => path.to_owned(),
        Some(n) if path.is_empty() => n.to_owned(),
        Some(n) if path == n || path.ends_with(&format!(".{n}")) => path.to_owned(),
        Some(n) => format!("{path}.{n}"),
    };
    (field, problem)
}

/// What a serde error found wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A key the type does not have.
    Unknown,
    /// A required key is absent.
    Missing,
    /// A value of the wrong type or form.
    Invalid,
}

/// Parses the settings of a connector section (`section` is `source` or `target`)
/// into its typed config; an error names the key (`source.paht`,
/// `target.auth.client_id`) and, for an unknown key, the keys the connector takes.
pub fn parse<T: DeserializeOwned>(section: &str, spec: &ConnectorSpec) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(spec.settings.clone())).map_err(
        |e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let (field, problem) = field_of(&path, &message);
            let message = match problem {
                Problem::Unknown => format!("{message} (the keys of a `{}` {section})", spec.kind),
                _ => message,
            };
            SpecError {
                field: if field.is_empty() {
                    section.to_owned()
                } else {
                    format!("{section}.{field}")
                },
                message,
            }
        },
    )
}

/// The error for a `type` no connector has.
pub fn unknown_type(section: &str, kind: &str, known: &[&str]) -> SpecError {
    SpecError {
        field: format!("{section}.type"),
        message: format!("{kind:?} is not one of: {}", known.join(", ")),
    }
}

/// The schema of a section whose `type` picks the connector: one of `variants`
/// (type name, the connector's config schema), each the config's own keys plus
/// `type`. The keys are merged rather than combined with `allOf`, because a config
/// refuses unknown keys (`additionalProperties: false`), `type` among them.
pub fn tagged_schema(variants: Vec<(&'static str, RefOr<Schema>)>) -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new();
    for (name, schema) in variants {
        let RefOr::T(Schema::Object(mut object)) = schema else {
            unreachable!("connector configs are structs");
        };
        let tag = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([name]))
            .description(Some("Picks this connector."))
            .build();
        object.properties.insert("type".into(), tag.into());
        object.required.insert(0, "type".into());
        object.title = Some(name.into());
        one_of = one_of.item(object);
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}

/// The schema of a job's `source` or `target` (`key`): a configured connection's
/// name, or the section written out in full (the component `full`).
pub fn named_or_full(key: &str, full: &str) -> RefOr<Schema> {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .title(Some("connection"))
        .description(Some(format!(
            "The name of a configured {key} connection (GET /v1/connections)."
        )))
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[A-Za-z0-9_-]+$"))
        .build();
    let one_of = OneOfBuilder::new()
        .item(name)
        .item(utoipa::openapi::Ref::from_schema_name(full))
        .description(Some(format!(
            "A {key} connection's name; or, where the service allows it, the connector \
             written out in full (`type` and its keys)."
        )))
        .build();
    RefOr::T(Schema::OneOf(one_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_key_at_fault() {
        assert_eq!(
            field_of(".", "unknown field `paht`, expected `path`"),
            ("paht".into(), Problem::Unknown)
        );
        assert_eq!(
            field_of("auth", "unknown field `client_idd`, expected `client_id`"),
            ("auth.client_idd".into(), Problem::Unknown)
        );
        assert_eq!(
            field_of("auth.client_id", "missing field `client_id`"),
            ("auth.client_id".into(), Problem::Missing)
        );
        assert_eq!(
            field_of("timeout_secs", "invalid type: string \"x\", expected u64"),
            ("timeout_secs".into(), Problem::Invalid)
        );
    }

    #[test]
    fn a_typo_in_a_section_is_refused_with_its_path_and_the_valid_keys() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct File {
            path: String,
        }
        let spec: ConnectorSpec =
            serde_json::from_value(serde_json::json!({"type": "file", "paht": "x"})).unwrap();
        let err = parse::<File>("source", &spec).unwrap_err();
        assert_eq!(err.field, "source.paht");
        assert!(err.message.contains("`path`"), "{}", err.message);
        assert!(err.message.contains("`file` source"), "{}", err.message);
    }
}
