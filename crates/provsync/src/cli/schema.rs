//! `provsync schema`: the reference of every key a job file or the service
//! configuration takes, as a JSON Schema or as the Markdown page `docs/reference/`
//! ships.

use std::process::ExitCode;

use clap::Args;

use super::out::outln;
use crate::key_reference::{self, Document};

/// Arguments of `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's keys: a job file or the service configuration.
    #[arg(value_enum, default_value = "job")]
    pub document: Document,
    /// Print the Markdown reference of both files instead of a JSON Schema.
    #[arg(long)]
    pub markdown: bool,
}

/// `provsync schema ...`.
pub fn schema_command(a: SchemaArgs) -> anyhow::Result<ExitCode> {
    if a.markdown {
        outln!("{}", key_reference::markdown().trim_end())?;
    } else {
        outln!(
            "{}",
            serde_json::to_string_pretty(&key_reference::json_schema(a.document))?
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
