//! `provsync token create`: a new API token and the configuration entry that
//! accepts it, so that nobody needs `openssl rand` and `sha256sum` by hand.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::out::{note, outln};
use crate::config::{self, Role};

/// Arguments of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token once, then the `[[tokens]]` entry (its SHA-256) for
    /// the service's configuration file.
    Create {
        /// What the token may do (read < operate < admin).
        #[arg(long, value_enum)]
        role: Role,
        /// Name shown in logs and in `requested_by` (default: the role and the start
        /// of the hash).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `provsync token ...`.
pub fn token_command(a: TokenArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        TokenCommand::Create { role, name } => {
            let token = config::new_token().context("reading the system's random source")?;
            let hash = config::sha256_hex(&token);
            let name = name.unwrap_or_else(|| format!("{role}-{}", &hash[..8]));
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            // The first line alone is the token (`| head -n 1`); the rest can be
            // appended to the configuration file as it is.
            outln!("{token}")?;
            outln!()?;
            outln!("[[tokens]]")?;
            outln!("name = {}", toml::Value::String(name))?;
            outln!("sha256 = \"{hash}\"")?;
            outln!("role = \"{role}\"")?;
            note!(
                "the token above is shown only now: hand it to the client \
                 (`Authorization: Bearer <token>`); the configuration keeps only its hash"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
