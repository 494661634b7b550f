//! `provsync emulate onekey|gmc|salesforce`. `onekey` serves a generated world over the OneKey-style contract
//! (`docs/onekey-contract.md`) until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use provsync_emulators::onekey::{OneKeyConfig, OneKeyEmulator};

use super::generate::world;
use super::out::{note, outln};

/// Which system to emulate.
#[derive(Debug, Subcommand)]
pub enum EmulateCommand {
    /// A OneKey-style MDM: sessions, packets, code lists, faults on request.
    Onekey(OneKeyArgs),
    /// GMC GetDoctorsForDB (SOAP 1.1/1.2) from a generated register.
    Gmc(super::emulate_gmc::GmcArgs),
    /// A Salesforce org: OAuth, REST, collections, composite graph, Bulk 2.0, query,
    /// Metadata value sets, with limits, faults and durable state.
    Salesforce(super::emulate_salesforce::SalesforceArgs),
}

/// Arguments of `emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// The system.
    #[command(subcommand)]
    pub system: EmulateCommand,
}

/// Arguments of `emulate onekey`.
#[derive(Debug, Args)]
pub struct OneKeyArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub listen: SocketAddr,
    /// Individuals of the initial world, per country.
    #[arg(long, default_value_t = 10_000)]
    pub individuals: u64,
    /// Seed of the world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Night served (1 = the initial world; delta sessions return what changed since an earlier night).
    #[arg(long, default_value_t = 1)]
    pub night: u32,
    /// Countries served, comma-separated ISO codes.
    #[arg(long, default_value = "US", value_delimiter = ',')]
    pub countries: Vec<String>,
    /// OAuth2 client id accepted.
    #[arg(long, default_value = "provsync")]
    pub client_id: String,
    /// OAuth2 client secret accepted.
    #[arg(
        long,
        env = "ONEKEY_CLIENT_SECRET",
        default_value = "provsync-secret",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// API key accepted in `X-API-Key`.
    #[arg(
        long,
        env = "ONEKEY_API_KEY",
        default_value = "provsync-api-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// Bearer token lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Session lifetime from activation, seconds.
    #[arg(long, default_value_t = 3600)]
    pub session_ttl: u64,
    /// Expire each session after it served this many packets.
    #[arg(long)]
    pub expire_session_after: Option<u64>,
    /// Share (0..1) of API requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    pub fail_5xx_share: f64,
    /// Share (0..1) of API requests answered with 429 and Retry-After.
    #[arg(long, default_value_t = 0.0)]
    pub fail_429_share: f64,
    /// Retry-After of a 429, seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Latency added to every request, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Packet number (from 1) sent with malformed records.
    #[arg(long)]
    pub malformed_packet: Option<u64>,
    /// Append every request to this NDJSON file.
    #[arg(long)]
    pub request_log: Option<PathBuf>,
    /// Seed of the fault decisions.
    #[arg(long, default_value_t = 0x5eed)]
    pub fault_seed: u64,
    /// Folder of your own reference data; by default the data built into provsync.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl OneKeyArgs {
    /// The flags' defaults (for in-process emulators: demo, bench).
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: OneKeyArgs,
        }
        Wrapper::parse_from(["onekey"]).args
    }

    /// The emulator configuration these flags describe.
    pub fn config(&self) -> OneKeyConfig {
        OneKeyConfig {
            countries: self.countries.iter().map(|c| c.trim().to_owned()).collect(),
            night: self.night,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            api_key: self.api_key.clone(),
            token_ttl: Duration::from_secs(self.token_ttl),
            session_ttl: Duration::from_secs(self.session_ttl),
            expire_session_after: self.expire_session_after,
            fail_5xx_share: self.fail_5xx_share,
            fail_429_share: self.fail_429_share,
            retry_after_secs: self.retry_after,
            latency: Duration::from_millis(self.latency_ms),
            malformed_packet: self.malformed_packet,
            request_log: self.request_log.clone(),
            fault_seed: self.fault_seed,
        }
    }
}

/// A running emulator: its address and the task serving it.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The emulator's state (journal, counters).
    pub emulator: Arc<OneKeyEmulator>,
    /// The server task.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the OneKey emulator in this process.
pub async fn start_onekey(a: &OneKeyArgs) -> anyhow::Result<Running> {
    let world = world(a.seed, a.individuals, a.data_dir.as_deref())?;
    let emulator = Arc::new(OneKeyEmulator::new(&world, a.config())?);
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let app = provsync_emulators::onekey::router(emulator.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running {
        addr,
        emulator,
        task,
    })
}

/// Runs `emulate`.
pub async fn emulate(a: EmulateArgs) -> anyhow::Result<ExitCode> {
    let a = match a.system {
        EmulateCommand::Onekey(a) => a,
        EmulateCommand::Gmc(g) => return super::emulate_gmc::emulate(g).await,
        EmulateCommand::Salesforce(s) => return super::emulate_salesforce::emulate(s).await,
    };
    let running = start_onekey(&a).await?;
    // One line on stdout (scripts and tests read the address from it); the rest on
    // stderr. A closed stdout must not stop the server.
    let _ = outln!("onekey emulator listening on http://{}", running.addr);
    note!(
        "serving {} individuals per country ({}), seed {}, night {}",
        a.individuals,
        a.countries.join(","),
        a.seed,
        a.night
    );
    tokio::select! {
        r = running.task => { r??; }
        _ = tokio::signal::ctrl_c() => { note!("onekey emulator stopping"); }
    }
    Ok(ExitCode::SUCCESS)
}
