//! `provsync bench`: generate a world, run a full sync, then an unchanged rerun, and
//! report throughput per stage and end to end, peak memory, the rerun's writes and
//! time, and (for PostgreSQL) the raw `COPY` rate of the same records into an
//! unlogged table: our rate as a share of the machine's limit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use provsync_core::job::{JobId, JobSpec};
use serde::Serialize;
use sqlx::Executor;

use super::generate::{world, write_snapshot_file};
use super::out::outln;
use super::run::run_spec;
use crate::job::{Engine, Progress};

/// Which target to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    /// The embedded SQLite provider store.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Individuals in the generated world.
    #[arg(long, default_value_t = 100_000)]
    pub individuals: u64,
    /// Target to load.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub target: BenchTarget,
    /// PostgreSQL server (the bench uses and drops schema `provsync_bench`).
    #[arg(
        long,
        env = "PROVSYNC_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// Seed of the world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Working folder (a temporary one when absent).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Records per page (the job default when absent).
    #[arg(long)]
    pub page_size: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Folder of your own reference data; by default the data built into provsync.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Records per second of each stage, over the time that stage was busy.
#[derive(Debug, Serialize)]
pub struct StageRates {
    /// Fetching and parsing pages.
    pub extract: f64,
    /// Validating and mapping.
    pub transform: f64,
    /// Hash checks, entity writes, ledger commits.
    pub load: f64,
    /// Link loading.
    pub relations: f64,
    /// Reconciliation, sweep, summary.
    pub finish: f64,
    /// Seconds of the load stage spent on store hash lookups, target writes, ledger commits.
    pub load_split_secs: [f64; 3],
}

/// The bench's figures.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Target measured.
    pub target: String,
    /// Individuals asked for.
    pub individuals: u64,
    /// Records extracted by the full run.
    pub records: u64,
    /// Time to generate the world file.
    pub generate_ms: u64,
    /// Full sync, wall clock.
    pub full_ms: u64,
    /// Full sync, records per second end to end.
    pub records_per_sec: f64,
    /// Per-stage rates of the full sync.
    pub stages: StageRates,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
    /// Unchanged rerun, wall clock.
    pub rerun_ms: u64,
    /// Rows the rerun wrote to the target (change-log entries: created, updated, moved, disconnected).
    pub rerun_writes: u64,
    /// Rerun time as a share of the full run.
    pub rerun_share: f64,
    /// Rerun seconds busy in extract, transform, hash lookups, ledger commits, finish.
    pub rerun_split_secs: [f64; 5],
    /// Raw `COPY` of the same records into an unlogged table (PostgreSQL only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_records_per_sec: Option<f64>,
    /// Our end-to-end rate as a share of the raw `COPY` rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_share: Option<f64>,
}

const BENCH_SCHEMA: &str = "provsync_bench";

fn job(world: &Path, target: BenchTarget, dir: &Path, a: &BenchArgs) -> anyhow::Result<JobSpec> {
    let target_toml = match target {
        BenchTarget::Sqlite => format!(
            "type = \"sqlite\"\nurl = \"sqlite://{}\"",
            dir.join("provider.db").display()
        ),
        BenchTarget::Postgres => format!(
            "type = \"postgres\"\nurl = {:?}\nschema = \"{BENCH_SCHEMA}\"",
            a.postgres_url
        ),
    };
    let text = format!(
        "scope = [\"US\"]\n[source]\ntype = \"file\"\npath = {:?}\n[target]\n{target_toml}\n[options]\npage_size = {}\nbatch_size = 5000\n",
        world.display().to_string(),
        a.page_size
            .unwrap_or(provsync_core::job::JobOptions::default().page_size)
    );
    Ok(toml::from_str(&text)?)
}

fn rate(records: u64, ns: &AtomicU64) -> f64 {
    let secs = Progress::get(ns) as f64 / 1e9;
    if secs > 0.0 {
        records as f64 / secs
    } else {
        0.0
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

async fn reset_postgres(url: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url)
        .await
        .with_context(|| format!("connecting to {}", crate::secret::redact_urls(url)))?;
    pool.execute(format!("DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE").as_str())
        .await?;
    Ok(())
}

async fn change_log_rows(engine: &Engine, spec: &JobSpec, id: &JobId) -> anyhow::Result<u64> {
    let target = crate::target::open(&spec.target).await?;
    drop(target);
    let sql = "SELECT count(*) FROM change_log WHERE run_id = $1";
    let n: i64 = match spec.target.kind.as_str() {
        "postgres" => {
            let url = spec.target.settings["url"].as_str().unwrap_or_default();
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query_scalar(&sql.replace("change_log", &format!("{BENCH_SCHEMA}.change_log")))
                .bind(id.as_str())
                .fetch_one(&pool)
                .await?
        }
        _ => {
            let url = spec.target.settings["url"].as_str().unwrap_or_default();
            let pool = sqlx::SqlitePool::connect(url).await?;
            sqlx::query_scalar(&sql.replace("$1", "?"))
                .bind(id.as_str())
                .fetch_one(&pool)
                .await?
        }
    };
    let _ = engine;
    Ok(n as u64)
}

/// Streams the world file's records into an unlogged table with `COPY`; records/s.
async fn raw_copy_rate(url: &str, world: &Path) -> anyhow::Result<f64> {
    let pool = sqlx::PgPool::connect(url).await?;
    let table = format!("{BENCH_SCHEMA}.copy_raw");
    pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {BENCH_SCHEMA}").as_str())
        .await?;
    pool.execute(format!("DROP TABLE IF EXISTS {table}").as_str())
        .await?;
    pool.execute(
        format!("CREATE UNLOGGED TABLE {table} (source_id text, kind text, doc text)").as_str(),
    )
    .await?;
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
        .await?;
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(world)?);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut n = 0u64;
    for line in reader.lines() {
        let line = line?;
        let id = serde_json::from_str::<serde_json::Value>(&line)?;
        buf.extend_from_slice(b"\"");
        buf.extend_from_slice(id["source_id"].as_str().unwrap_or("").as_bytes());
        buf.extend_from_slice(b"\",\"");
        buf.extend_from_slice(id["kind"].as_str().unwrap_or("").as_bytes());
        buf.extend_from_slice(b"\",\"");
        buf.extend_from_slice(line.replace('"', "\"\"").as_bytes());
        buf.extend_from_slice(b"\"\n");
        n += 1;
        if buf.len() > (1 << 20) {
            copy.send(std::mem::take(&mut buf)).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await?;
    }
    copy.finish().await?;
    let secs = started.elapsed().as_secs_f64();
    pool.execute(format!("DROP TABLE {table}").as_str()).await?;
    Ok(n as f64 / secs)
}

/// Runs the bench.
pub async fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let world_file = dir.join("world.ndjson");
    let started = Instant::now();
    let w = world(a.seed, a.individuals, a.data_dir.as_deref())?;
    write_snapshot_file(&w, 1, &world_file)?;
    let generate_ms = started.elapsed().as_millis() as u64;
    if a.target == BenchTarget::Postgres {
        reset_postgres(&a.postgres_url).await?;
    }
    for f in ["provider.db", "state.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{f}{suffix}")));
        }
    }
    let spec = job(&world_file, a.target, &dir, &a)?;
    let store = crate::store::open(&format!("sqlite://{}", dir.join("state.db").display())).await?;

    let engine = Engine::new(store.clone());
    let started = Instant::now();
    let full = run_spec(&engine, &spec, "bench", false).await?;
    let full_ms = started.elapsed().as_millis() as u64;
    let records = full
        .summary
        .as_ref()
        .and_then(|s| s["counts"]["extracted"].as_u64())
        .unwrap_or(0);
    anyhow::ensure!(
        full.state == provsync_core::job::JobState::Completed,
        "full run ended {}: {:?}",
        full.state,
        full.failure
    );
    let p = &engine.progress;
    let stages = StageRates {
        extract: rate(records, &p.extract_ns),
        transform: rate(records, &p.transform_ns),
        load: rate(records, &p.load_ns),
        relations: rate(Progress::get(&p.links), &p.relations_ns),
        finish: rate(records, &p.finish_ns),
        load_split_secs: [
            Progress::get(&p.load_known_ns) as f64 / 1e9,
            Progress::get(&p.load_target_ns) as f64 / 1e9,
            Progress::get(&p.load_commit_ns) as f64 / 1e9,
        ],
    };

    let rerun_engine = Engine::new(store);
    let started = Instant::now();
    let rerun = run_spec(&rerun_engine, &spec, "bench", false).await?;
    let rerun_ms = started.elapsed().as_millis() as u64;
    let rerun_writes = change_log_rows(&rerun_engine, &spec, &rerun.id).await?;
    let rp = &rerun_engine.progress;
    let rerun_split_secs = [
        Progress::get(&rp.extract_ns) as f64 / 1e9,
        Progress::get(&rp.transform_ns) as f64 / 1e9,
        Progress::get(&rp.load_known_ns) as f64 / 1e9,
        Progress::get(&rp.load_commit_ns) as f64 / 1e9,
        Progress::get(&rp.finish_ns) as f64 / 1e9,
    ];

    let records_per_sec = records as f64 / (full_ms as f64 / 1000.0);
    let copy = match a.target {
        BenchTarget::Postgres => Some(raw_copy_rate(&a.postgres_url, &world_file).await?),
        BenchTarget::Sqlite => None,
    };
    let report = BenchReport {
        target: format!("{:?}", a.target).to_lowercase(),
        individuals: a.individuals,
        records,
        generate_ms,
        full_ms,
        records_per_sec,
        stages,
        peak_rss_bytes: peak_rss_bytes(),
        rerun_ms,
        rerun_writes,
        rerun_share: rerun_ms as f64 / full_ms.max(1) as f64,
        rerun_split_secs,
        copy_records_per_sec: copy,
        copy_share: copy.map(|c| records_per_sec / c),
    };
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    print_report(&report, a.json)?;
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("provsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn print_report(r: &BenchReport, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?)?;
        return Ok(());
    }
    outln!(
        "provsync bench: {} individuals into {}",
        r.individuals,
        r.target
    )?;
    outln!("  records            {}", r.records)?;
    outln!(
        "  full run           {:.1} s, {:.0} records/s end to end",
        r.full_ms as f64 / 1e3,
        r.records_per_sec
    )?;
    outln!(
        "  stages (records/s while busy): extract {:.0}, transform {:.0}, load {:.0}, relations {:.0} links/s, finish {:.0}",
        r.stages.extract, r.stages.transform, r.stages.load, r.stages.relations, r.stages.finish
    )?;
    let [known, target, commit] = r.stages.load_split_secs;
    outln!(
        "  load split         {known:.1} s hash lookups, {target:.1} s target writes, {commit:.1} s ledger commits"
    )?;
    outln!(
        "  peak RSS           {:.1} MB",
        r.peak_rss_bytes as f64 / 1e6
    )?;
    outln!(
        "  unchanged rerun    {:.1} s ({:.1}% of the full run), {} rows written",
        r.rerun_ms as f64 / 1e3,
        100.0 * r.rerun_share,
        r.rerun_writes
    )?;
    let [e, t, k, c, f] = r.rerun_split_secs;
    outln!(
        "  rerun split        {e:.1} s extract, {t:.1} s transform, {k:.1} s hash lookups, {c:.1} s ledger commits, {f:.1} s finish"
    )?;
    if let (Some(c), Some(s)) = (r.copy_records_per_sec, r.copy_share) {
        outln!(
            "  raw COPY           {c:.0} records/s into an unlogged table; we reach {:.0}% of it",
            100.0 * s
        )?;
    }
    Ok(())
}
