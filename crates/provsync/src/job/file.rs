//! A job file (`provsync run job.toml`, a schedule's `job_file`): read, its relative
//! paths made to start at its folder, and checked before a job exists, each problem
//! named at its file, line and column.

use std::path::Path;

use provsync_core::job::JobSpec;

use crate::connections::Connections;

/// A job file that cannot be read or does not hold a valid job; the message names
/// the file and, for each problem, the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobFileError(pub String);

/// Reads, resolves and checks a job file that writes its source and target out
/// in full (`provsync run job.toml`).
pub fn read(path: &Path) -> Result<JobSpec, JobFileError> {
    read_with(path, &Connections::default())
}

/// Reads, resolves and checks a job file that may name the service's
/// `connections` (a schedule's `job_file`).
pub fn read_with(path: &Path, connections: &Connections) -> Result<JobSpec, JobFileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| JobFileError(format!("cannot read job file {origin}: {e}")))?;
    parse(&text, &origin, &crate::paths::folder_of(path), connections)
}

/// Parses a job file's text (`origin` names it in errors; relative paths start at
/// `base`; named connections come from `connections`) and checks it as a
/// submission would.
pub fn parse(
    text: &str,
    origin: &str,
    base: &Path,
    connections: &Connections,
) -> Result<JobSpec, JobFileError> {
    let mut spec: JobSpec = toml::from_str(text).map_err(|e| {
        // toml quotes the offending line: a URL in it must not show its password.
        JobFileError(crate::secret::redact_urls(&format!("{origin}: {e}")))
    })?;
    crate::paths::resolve_job_paths(&mut spec, base);
    let checked = connections
        .resolve(&mut spec)
        .and_then(|()| super::dispatch::check(&spec).map(drop));
    if let Err(errs) = checked {
        let list: Vec<String> = errs
            .iter()
            .map(|e| crate::toml_place::describe(origin, text, &e.field, &e.message))
            .collect();
        return Err(JobFileError(format!(
            "{origin}: invalid job ({} problem{}):\n{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join("\n")
        )));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> String {
        parse(
            text,
            "job.toml",
            Path::new("/jobs"),
            &Connections::default(),
        )
        .unwrap_err()
        .0
    }

    #[test]
    fn a_typo_in_the_source_section_is_refused_at_its_line_with_the_valid_keys() {
        let e = errors_of(
            "[source]\ntype = \"file\"\npaht = \"world.ndjson\"\n\n\
             [target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n",
        );
        assert!(
            e.contains("job.toml:3:1: source.paht: unknown field `paht`"),
            "{e}"
        );
        assert!(e.contains("expected `path`"), "{e}");
        assert!(e.contains(" 3 | paht = \"world.ndjson\""), "{e}");
    }

    #[test]
    fn every_problem_of_both_sections_is_listed() {
        let e = errors_of(
            "[source]\ntype = \"gmc\"\nurl = \"http://x\"\ntimeout_secs = \"soon\"\n\n\
             [target]\ntype = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\nschema = \"p\"\n",
        );
        assert!(e.contains("(2 problems)"), "{e}");
        assert!(
            e.contains("job.toml:4:1: source.timeout_secs: invalid type"),
            "{e}"
        );
        assert!(
            e.contains("job.toml:8:1: target.url: carries a password"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_connector_type_names_the_known_ones() {
        let e = errors_of(
            "[source]\ntype = \"fiel\"\n[target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n",
        );
        assert!(
            e.contains("job.toml:2:1: source.type: \"fiel\" is not one of: file,"),
            "{e}"
        );
    }

    #[test]
    fn a_secret_written_into_a_onekey_section_is_refused_before_the_job_is_stored() {
        let e = errors_of(
            "[source]\ntype = \"onekey\"\nurl = \"http://x\"\nclient_id = \"a\"\nclient_secret = \"s3cret\"\n\
             [target]\ntype = \"sqlite\"\nurl = \"sqlite://t.db\"\n",
        );
        assert!(e.contains("job.toml:5:1: source.client_secret:"), "{e}");
        assert!(!e.contains("s3cret\" is"), "{e}");
    }
}
