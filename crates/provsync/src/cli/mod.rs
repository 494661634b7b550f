//! The command line: `run`, `status`, `jobs`, `abort`, `generate`, `emulate`, `demo`, `bench`,
//! `serve`, `config check`, `token create`.
//!
//! Every write to stdout or stderr goes through [`out`] (closed pipes, JSON logs).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_gmc;
mod bench_onekey;
mod bench_salesforce;
mod demo;
mod emulate;
mod emulate_gmc;
mod emulate_salesforce;
mod generate;
pub(crate) mod out;
mod progress;
mod relay;
mod run;
mod schema;
mod serve;
mod status;
mod token;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use provsync_core::job::JobState;

/// provsync: provider master data sync.
#[derive(Debug, Parser)]
#[command(name = "provsync", version, about)]
pub struct Cli {
    /// Log format on stderr.
    ///
    /// `json`: every stderr line is one JSON object (log events, notices, the final
    /// error). Which events are logged: `PROVSYNC_LOG`, an EnvFilter directive list
    /// (`info`, `provsync=debug,sqlx=warn`); by default warnings, plus provsync's
    /// info events for `serve`, `worker` and `relay-changes` (jobs accepted and
    /// finished, aborts, refused tokens, schedule triggers). Colour only when stderr
    /// is a terminal and `NO_COLOR` is unset.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PROVSYNC_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job file to completion (resuming an interrupted run of the same target).
    Run(run::RunArgs),
    /// Show a job's state, counts and errors.
    Status(status::StatusArgs),
    /// List jobs, newest first, with the filters of `GET /v1/jobs`.
    Jobs(status::JobsArgs),
    /// Abort a job (a queued one is cancelled at once).
    Abort(status::AbortArgs),
    /// Write a deterministic generated world (or a later night of it) as NDJSON.
    Generate(generate::GenerateArgs),
    /// Serve an emulated source system (a OneKey-style MDM) over a generated world.
    Emulate(emulate::EmulateArgs),
    /// Generate a world and sync two nights of it into a SQLite provider store.
    Demo(demo::DemoArgs),
    /// Measure throughput, memory and rerun cost of a full sync.
    Bench(bench::BenchArgs),
    /// Measure the OneKey emulator's serving rate and a OneKey -> PostgreSQL sync.
    BenchOnekey(bench_onekey::BenchOneKeyArgs),
    /// Time the nightly GMC sync end to end: emulator process -> PostgreSQL doctors store.
    BenchGmc(bench_gmc::BenchGmcArgs),
    /// Measure a OneKey -> Salesforce sync against the emulated org (latency, call cap).
    BenchSalesforce(bench_salesforce::BenchSalesforceArgs),
    /// Serve the HTTP API and run submitted jobs in the background.
    Serve(serve::ServeArgs),
    /// Check a service configuration file.
    Config(serve::ConfigArgs),
    /// Create an API token for the service's configuration.
    Token(token::TokenArgs),
    /// Print the keys a job file or the service configuration takes (JSON Schema,
    /// or Markdown with --markdown).
    Schema(schema::SchemaArgs),
    /// Consume the stage queues and take over dead processes' jobs (distributed runtime).
    Worker(worker::WorkerArgs),
    /// Publish a target's change outbox to RabbitMQ (connection events).
    RelayChanges(relay::RelayArgs),
}

/// Exit code for a job's final state: 0 completed, 2 with errors, 3 aborted, 1 failed.
pub fn exit_code(state: JobState) -> ExitCode {
    match state {
        JobState::Completed => ExitCode::SUCCESS,
        JobState::CompletedWithErrors => ExitCode::from(2),
        JobState::Aborted => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}

/// Default log filter of one-shot commands: warnings, and the command's own notices
/// in JSON mode (progress and results have their own lines).
const CLI_LOG: &str = "warn,provsync::cli=info";
/// Default log filter of the long-running services: what an operator follows.
const SERVICE_LOG: &str = "warn,provsync=info";

impl Command {
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Worker(_) | Command::RelayChanges(_) => SERVICE_LOG,
            _ => CLI_LOG,
        }
    }
}

/// Colour codes only for a person at a terminal, and never with `NO_COLOR` set
/// to a non-empty value (<https://no-color.org>).
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
        LogFormat::Json => {
            out::set_json_logs(true);
            builder.json().with_ansi(false).init()
        }
    }
}

/// Whether `--log-format json` (or `PROVSYNC_LOG_FORMAT=json`) was asked for, read
/// from the raw arguments when they did not parse.
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    std::env::var("PROVSYNC_LOG_FORMAT").is_ok_and(|v| v == "json")
        || args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error is one more stderr line: JSON too when JSON was asked for.
        Err(e) if e.use_stderr() && json_requested() => {
            init_logging(LogFormat::Json, CLI_LOG);
            out::emit(tracing::Level::ERROR, format_args!("{}", e.render()));
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format, cli.command.default_log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out::emit(
                tracing::Level::ERROR,
                format_args!("cannot start the async runtime: {e}"),
            );
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(a) => run::run(a).await,
            Command::Status(a) => status::status(a).await,
            Command::Jobs(a) => status::jobs(a).await,
            Command::Abort(a) => status::abort(a).await,
            Command::Generate(a) => generate::generate(a),
            Command::Emulate(a) => emulate::emulate(a).await,
            Command::Demo(a) => demo::demo(a).await,
            Command::Bench(a) => bench::bench(a).await,
            Command::BenchOnekey(a) => bench_onekey::bench_onekey(a).await,
            Command::BenchGmc(a) => bench_gmc::bench_gmc(a).await,
            Command::BenchSalesforce(a) => bench_salesforce::bench_salesforce(a).await,
            Command::Serve(a) => serve::serve(a).await,
            Command::Config(a) => serve::config_command(a),
            Command::Token(a) => token::token_command(a),
            Command::Schema(a) => schema::schema_command(a),
            Command::Worker(a) => worker::worker(a).await,
            Command::RelayChanges(a) => relay::relay_changes(a).await,
        }
    });
    match result {
        Ok(code) => code,
        // The reader of stdout went away: see `out`.
        Err(_) if out::stdout_closed() => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once (anyhow's `{:#}` repeats those printed by their parent).
            out::emit(
                tracing::Level::ERROR,
                format_args!("{}", crate::errors::chain(e.as_ref())),
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }
}
