//! What a caller may ask the service to run: sources and targets by the name of a
//! configured connection; a connector written out in full only when the
//! administrator allows it (`[api] free_form_connectors`), only to `admin` tokens,
//! and only within the data folders and hosts configured; a mapping by its name in
//! the configured folder. `provsync run job.toml`, which runs with the user's own
//! rights, is not held to this.

use std::path::Path;

use provsync_core::job::{ConnectorSpec, JobSpec};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, FieldError};
use super::AppState;
use crate::config::Role;
use crate::connections::Side;

/// Resolves a submitted job in place: named connections put in, full sections
/// admitted (their relative paths starting at the service's folder) and the mapping
/// found by name. Refusals are 403 `forbidden` naming the setting or the role
/// needed; a name nothing has is 400 `invalid_value`.
pub fn admit(st: &AppState, caller: &Caller, spec: &mut JobSpec) -> Result<(), ApiError> {
    if let Err(errs) = st.connections.resolve(spec) {
        return Err(many(
            ErrorCode::InvalidValue,
            errs.into_iter().map(|e| (e.field, e.message)).collect(),
        ));
    }
    for side in [Side::Source, Side::Target] {
        let section = section_mut(spec, side);
        if section.connection.is_none() {
            gate(st, caller, side)?;
            match side {
                Side::Source => crate::source::resolve_paths(section, &st.base_dir),
                Side::Target => crate::target::resolve_paths(section, &st.base_dir),
            }
        }
    }
    if let Some(m) = spec.mapping.take() {
        spec.mapping = Some(mapping(st, caller, &m)?);
    }
    check_bounds(st, spec)
}

/// Checks a stored job about to run again for a caller (a replay): a section
/// written out in full needs what submitting it would.
pub fn admit_again(st: &AppState, caller: &Caller, spec: &JobSpec) -> Result<(), ApiError> {
    for side in [Side::Source, Side::Target] {
        if section(spec, side).connection.is_none() {
            gate(st, caller, side)?;
        }
    }
    check_bounds(st, spec)
}

fn section(spec: &JobSpec, side: Side) -> &ConnectorSpec {
    match side {
        Side::Source => &spec.source,
        Side::Target => &spec.target,
    }
}

fn section_mut(spec: &mut JobSpec, side: Side) -> &mut ConnectorSpec {
    match side {
        Side::Source => &mut spec.source,
        Side::Target => &mut spec.target,
    }
}

/// Whether this caller may write `side` out in full here.
fn gate(st: &AppState, caller: &Caller, side: Side) -> Result<(), ApiError> {
    let key = side.key();
    if !st.api.free_form_connectors {
        return Err(ApiError::field(
            ErrorCode::Forbidden,
            key,
            format!(
                "this server refuses a {key} written out in full (the setting [api] \
                 free_form_connectors is off): name a configured {key} connection \
                 instead (`\"{key}\": \"<name>\"`; GET /v1/connections lists them)"
            ),
        ));
    }
    if caller.role < Role::Admin {
        return Err(ApiError::field(
            ErrorCode::Forbidden,
            key,
            format!(
                "token {:?} has role {}; a {key} written out in full needs role admin \
                 ([api] free_form_connectors); name a configured {key} connection instead",
                caller.name, caller.role
            ),
        ));
    }
    Ok(())
}

/// The files and hosts of full sections lie within `[api]` data folders and hosts.
fn check_bounds(st: &AppState, spec: &JobSpec) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    for side in [Side::Source, Side::Target] {
        let s = section(spec, side);
        if s.connection.is_none() {
            errs.extend(st.api.bounds.check(side, s));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(many(
            ErrorCode::Forbidden,
            errs.into_iter().map(|e| (e.field, e.message)).collect(),
        ))
    }
}

/// The file of a request's `mapping`: a name in `[api] mappings` (`lsc-custom` or
/// `lsc-custom.toml`), or, for a caller allowed full sections, a path within the
/// data folders.
fn mapping(st: &AppState, caller: &Caller, m: &str) -> Result<String, ApiError> {
    let is_name = !m.is_empty()
        && !m.starts_with('.')
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let bad = |message: String| ApiError::field(ErrorCode::InvalidValue, "mapping", message);
    if is_name {
        let Some(folder) = &st.api.mappings else {
            return Err(bad(format!(
                "names the mapping {m:?}, but this server has no folder of mappings \
                 ([api] mappings); leave `mapping` out to use the target's default"
            )));
        };
        let file = if m.ends_with(".toml") {
            folder.join(m)
        } else {
            folder.join(format!("{m}.toml"))
        };
        if !file.is_file() {
            return Err(bad(format!(
                "no mapping named {m:?} in {} (it has: {})",
                folder.display(),
                mapping_names(folder)
            )));
        }
        return Ok(file.to_string_lossy().into_owned());
    }
    if st.api.free_form_connectors && caller.role >= Role::Admin {
        let path = crate::paths::relative_to(Some(&st.base_dir), Path::new(m));
        st.api
            .bounds
            .check_file(&path)
            .map_err(|why| ApiError::field(ErrorCode::Forbidden, "mapping", why))?;
        return Ok(path.to_string_lossy().into_owned());
    }
    Err(bad(format!(
        "{m:?} is not a mapping name (letters, digits, `.`, `_`, `-`): a request names \
         a mapping of the server's folder ([api] mappings)"
    )))
}

/// The mapping names in `folder`, for an error message.
fn mapping_names(folder: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// One error listing every `(field, message)` found.
fn many(code: ErrorCode, errs: Vec<(String, String)>) -> ApiError {
    let mut e = ApiError::new(
        code,
        errs.iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; "),
    );
    e.field = errs.first().map(|(f, _)| f.clone());
    e.errors = errs
        .into_iter()
        .map(|(field, message)| FieldError {
            code,
            message,
            field,
        })
        .collect();
    e
}
