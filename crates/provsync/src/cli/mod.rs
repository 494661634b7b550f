//! The command line: `run`, `status`, `jobs`, `abort`, `generate`, `emulate`, `demo`, `bench`,
//! `serve`, `config check`.

mod bench;
mod bench_gmc;
mod bench_onekey;
mod bench_salesforce;
mod demo;
mod emulate;
mod emulate_gmc;
mod emulate_salesforce;
mod generate;
mod progress;
mod relay;
mod run;
mod serve;
mod status;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use provsync_core::job::JobState;

/// provsync: provider master data sync.
#[derive(Debug, Parser)]
#[command(name = "provsync", version, about)]
pub struct Cli {
    /// Log format on stderr.
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROVSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
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
            Command::Worker(a) => worker::worker(a).await,
            Command::RelayChanges(a) => relay::relay_changes(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Each cause once (anyhow's `{:#}` repeats those printed by their parent).
            eprintln!("error: {}", crate::errors::chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}
