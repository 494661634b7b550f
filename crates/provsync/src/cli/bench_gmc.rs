//! `provsync bench-gmc`: the nightly GMC sync end to end — a `provsync emulate gmc`
//! process serving 13 designated bodies of 8,000 doctors, the `gmc` source, and the
//! PostgreSQL doctors store of `recipes/gmc-to-postgres.toml` — timed for a first
//! night (every doctor connected) and the next night (moves, joins, departures and
//! the per-body sweep).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobSpec, JobState};
use serde::Serialize;
use sqlx::Executor;

use super::bench::peak_rss_bytes;
use super::out::outln;
use super::run::run_spec;
use crate::job::{Engine, Progress};

const SCHEMA: &str = "provsync_bench_gmc";
const USER: &str = "bench";
const PASSWORD: &str = "bench-pw";

/// Arguments of `bench-gmc`.
#[derive(Debug, Args)]
pub struct BenchGmcArgs {
    /// Designated bodies.
    #[arg(long, default_value_t = 13)]
    pub bodies: u32,
    /// Doctors per body.
    #[arg(long, default_value_t = 8_000)]
    pub doctors_per_body: u32,
    /// Bodies asked at once (the source's `concurrency`).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// PostgreSQL server (the bench uses and drops schema `provsync_bench_gmc`).
    #[arg(
        long,
        env = "PROVSYNC_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One timed night.
#[derive(Debug, Serialize)]
pub struct NightFigures {
    /// Register night (0: first load; 1: the next night's changes).
    pub night: u32,
    /// Wall time of the run, seconds.
    pub secs: f64,
    /// Records extracted (bodies, doctors and their connections).
    pub records: u64,
    /// Doctors returned by GMC.
    pub doctors: u64,
    /// Records per second end to end.
    pub records_per_sec: f64,
    /// Doctors connected, moved and disconnected by the run.
    pub connected: u64,
    /// Doctors that changed designated body.
    pub moved: u64,
    /// Doctors disconnected by the per-body sweep.
    pub disconnected: u64,
    /// Seconds each stage was busy: extract (SOAP call + parse), transform, load,
    /// relations, finish (sweep).
    pub stage_secs: [f64; 5],
    /// Of the load: seconds reading the state store's hashes, writing the target,
    /// committing the page to the state store.
    pub load_secs: [f64; 3],
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct GmcBenchReport {
    /// Designated bodies.
    pub bodies: u32,
    /// Doctors per body on night 0.
    pub doctors_per_body: u32,
    /// The first night and the next.
    pub nights: Vec<NightFigures>,
    /// Peak resident memory of this process (the emulator runs in its own).
    pub peak_rss_bytes: u64,
}

/// A `provsync emulate gmc` child process, killed on drop.
struct EmulatorProcess {
    child: Child,
    url: String,
}

impl EmulatorProcess {
    fn start(a: &BenchGmcArgs, night: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["emulate", "gmc", "--listen", "127.0.0.1:0"])
            .args(["--bodies", &a.bodies.to_string()])
            .args(["--doctors-per-body", &a.doctors_per_body.to_string()])
            .args(["--night", &night.to_string(), "--username", USER])
            .env("PROVSYNC_GMC_EMULATOR_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting provsync emulate gmc")?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("emulator stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("gmc emulator listening on ")
            .with_context(|| format!("unexpected first line from the emulator: {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(a: &BenchGmcArgs, url: &str, secret: &std::path::Path) -> anyhow::Result<JobSpec> {
    let bodies = provsync_emulators::gmc::RegisterSpec {
        bodies: a.bodies,
        doctors_per_body: a.doctors_per_body,
        seed: 1,
        night: 0,
    }
    .body_codes();
    let text = format!(
        "mode = \"full\"\nscope = {bodies:?}\nmapping = {:?}\n\
         [source]\ntype = \"gmc\"\nurl = {url:?}\nsecret_file = {:?}\nconcurrency = {}\n\
         [target]\ntype = \"postgres\"\nurl = {:?}\nschema = \"{SCHEMA}\"\n\
         [options]\nbatch_size = 5000\nmax_failed_records = 0\n",
        mapping_path()?,
        secret.display().to_string(),
        a.concurrency,
        a.postgres_url
    );
    Ok(toml::from_str(&text)?)
}

/// The shipped GMC mapping (next to the binary's workspace, or the working folder's).
fn mapping_path() -> anyhow::Result<String> {
    let candidates = [
        std::path::PathBuf::from("mappings/gmc-doctors.toml"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/gmc-doctors.toml"),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .context("mappings/gmc-doctors.toml not found: run from the repository root")
}

async fn night(
    a: &BenchGmcArgs,
    engine: &Engine,
    n: u32,
    secret: &std::path::Path,
) -> anyhow::Result<NightFigures> {
    let emu = EmulatorProcess::start(a, n)?;
    let before = busy_ns(&engine.progress);
    let started = Instant::now();
    let job = run_spec(engine, &spec(a, &emu.url, secret)?, "bench-gmc", false).await?;
    let secs = started.elapsed().as_secs_f64();
    let after = busy_ns(&engine.progress);
    anyhow::ensure!(
        job.state == JobState::Completed,
        "night {n} ended {}: {:?}",
        job.state,
        job.failure
    );
    let summary = job.summary.unwrap_or_default();
    let doctors = &summary["per_kind"]["individual"];
    let records = summary["counts"]["extracted"].as_u64().unwrap_or(0);
    Ok(NightFigures {
        night: n,
        secs,
        records,
        doctors: doctors["extracted"].as_u64().unwrap_or(0),
        records_per_sec: records as f64 / secs,
        connected: doctors["connected"].as_u64().unwrap_or(0),
        moved: doctors["moved"].as_u64().unwrap_or(0),
        disconnected: doctors["disconnected"].as_u64().unwrap_or(0),
        stage_secs: std::array::from_fn(|i| (after[i] - before[i]) as f64 / 1e9),
        load_secs: std::array::from_fn(|i| (after[5 + i] - before[5 + i]) as f64 / 1e9),
    })
}

/// Nanoseconds each stage has been busy so far (extract, transform, load,
/// relations, finish), then the load's parts (hashes, target, commit).
fn busy_ns(p: &Progress) -> [u64; 8] {
    [
        &p.extract_ns,
        &p.transform_ns,
        &p.load_ns,
        &p.relations_ns,
        &p.finish_ns,
        &p.load_known_ns,
        &p.load_target_ns,
        &p.load_commit_ns,
    ]
    .map(Progress::get)
}

/// Runs the bench.
pub async fn bench_gmc(a: BenchGmcArgs) -> anyhow::Result<ExitCode> {
    let pool = sqlx::PgPool::connect(&a.postgres_url)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                crate::secret::redact_urls(&a.postgres_url)
            )
        })?;
    pool.execute(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE").as_str())
        .await?;
    let dir = std::env::temp_dir().join(format!("provsync-bench-gmc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("gmc.secret");
    std::fs::write(&secret, format!("username={USER}\npassword={PASSWORD}\n"))?;
    let store = crate::store::open(&format!("sqlite://{}", dir.join("state.db").display())).await?;
    let engine = Engine::new(store);
    let mut report = GmcBenchReport {
        bodies: a.bodies,
        doctors_per_body: a.doctors_per_body,
        nights: Vec::new(),
        peak_rss_bytes: 0,
    };
    for n in [0, 1] {
        report.nights.push(night(&a, &engine, n, &secret).await?);
    }
    report.peak_rss_bytes = peak_rss_bytes();
    pool.execute(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE").as_str())
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "provsync bench-gmc: {} bodies x {} doctors, emulator process -> gmc source -> PostgreSQL",
        a.bodies,
        a.doctors_per_body
    )?;
    for f in &report.nights {
        let [e, t, l, r, fin] = f.stage_secs;
        let [lk, lt, lc] = f.load_secs;
        outln!(
            "  night {}  {} doctors, {} records in {:.2} s: {:.0} records/s ({:.0} doctors/s); connected {} moved {} disconnected {}",
            f.night,
            f.doctors,
            f.records,
            f.secs,
            f.records_per_sec,
            f.doctors as f64 / f.secs,
            f.connected,
            f.moved,
            f.disconnected
        )?;
        outln!(
            "           stages busy {e:.1} s extract (SOAP + parse), {t:.1} s transform, {l:.1} s load ({lk:.1} s hashes, {lt:.1} s target, {lc:.1} s commit), {r:.1} s relations, {fin:.1} s finish (sweep)"
        )?;
    }
    outln!("  peak RSS {:.1} MB", report.peak_rss_bytes as f64 / 1e6)?;
    Ok(ExitCode::SUCCESS)
}
