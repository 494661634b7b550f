//! `provsync bench-onekey`: the OneKey emulator's serving rate (a client pulling every
//! packet of a full session over loopback HTTP), then a full OneKey -> PostgreSQL
//! sync of the same world, end to end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobSpec, JobState};
use serde::{Deserialize, Serialize};
use sqlx::Executor;

use super::bench::peak_rss_bytes;
use super::emulate::{start_onekey, OneKeyArgs};
use super::out::outln;
use super::run::run_spec;
use crate::job::{Engine, Progress};

const SCHEMA: &str = "provsync_bench_onekey";

/// Arguments of `bench-onekey`.
#[derive(Debug, Args)]
pub struct BenchOneKeyArgs {
    /// Individuals in the served world.
    #[arg(long, default_value_t = 100_000)]
    pub individuals: u64,
    /// Index slots per packet.
    #[arg(long, default_value_t = 2_000)]
    pub packet_size: u32,
    /// PostgreSQL server (the bench uses and drops schema `provsync_bench_onekey`).
    #[arg(
        long,
        env = "PROVSYNC_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// Only measure the emulator, not the sync.
    #[arg(long)]
    pub emulator_only: bool,
    /// Seed of the world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Folder of your own reference data; by default the data built into provsync.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct OneKeyBenchReport {
    /// Individuals served.
    pub individuals: u64,
    /// Packets of a full session.
    pub packets: u64,
    /// Records served in them.
    pub records: u64,
    /// Bytes served.
    pub bytes: u64,
    /// Seconds to pull every packet.
    pub serve_secs: f64,
    /// Records per second served to the client (HTTP, JSON, loopback).
    pub serve_records_per_sec: f64,
    /// Records per second of packet building alone (generation + JSON).
    pub build_records_per_sec: f64,
    /// Full OneKey -> PostgreSQL sync, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_secs: Option<f64>,
    /// Records extracted by the sync (with derived parent relations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_records: Option<u64>,
    /// End-to-end records per second of the sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_records_per_sec: Option<f64>,
    /// Seconds each stage of the sync was busy: extract (fetch + parse packets),
    /// transform, load, relations, finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_stage_secs: Option<[f64; 5]>,
    /// Peak resident memory of the process (emulator and sync together).
    pub peak_rss_bytes: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activated {
    session_id: String,
    first_cursor: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PacketHead {
    next_cursor: Option<String>,
    last_packet: bool,
}

/// Pulls every packet of a full session; returns the packet count.
async fn pull_all(addr: SocketAddr, key: &str, packet_size: u32) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1");
    let a: Activated = http
        .post(format!("{base}/sync-sessions"))
        .header("x-api-key", key)
        .json(&serde_json::json!({"countries": ["US"], "mode": "full", "packetSize": packet_size}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut cursor = a.first_cursor;
    let mut packets = 0;
    loop {
        let body = http
            .get(format!("{base}/sync-sessions/{}/packets", a.session_id))
            .query(&[("cursor", &cursor)])
            .header("x-api-key", key)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        packets += 1;
        let head: PacketHead = serde_json::from_slice(&body)?;
        match (head.last_packet, head.next_cursor) {
            (false, Some(next)) => cursor = next,
            _ => break,
        }
    }
    http.delete(format!("{base}/sync-sessions/{}", a.session_id))
        .header("x-api-key", key)
        .send()
        .await?;
    Ok(packets)
}

fn sync_spec(addr: SocketAddr, key: &str, a: &BenchOneKeyArgs) -> anyhow::Result<JobSpec> {
    let key_file = std::env::temp_dir().join(format!("provsync-bench-{}-key", std::process::id()));
    crate::secret::write_file(&key_file, key)?;
    let text = format!(
        "scope = [\"US\"]\n[source]\ntype = \"onekey\"\nurl = \"http://{addr}\"\napi_key_file = {key_file:?}\n\
         [target]\ntype = \"postgres\"\nurl = {:?}\nschema = \"{SCHEMA}\"\n\
         [options]\npage_size = {}\nbatch_size = 5000\n",
        a.postgres_url, a.packet_size
    );
    Ok(toml::from_str(&text)?)
}

/// Runs the bench.
pub async fn bench_onekey(a: BenchOneKeyArgs) -> anyhow::Result<ExitCode> {
    let emu_args = OneKeyArgs {
        listen: "127.0.0.1:0".parse()?,
        individuals: a.individuals,
        seed: a.seed,
        data_dir: a.data_dir.clone(),
        ..OneKeyArgs::defaults()
    };
    let running = start_onekey(&emu_args).await?;
    let key = emu_args.api_key.clone();
    let journal = running.emulator.journal();

    let started = Instant::now();
    let packets = pull_all(running.addr, &key, a.packet_size).await?;
    let serve_secs = started.elapsed().as_secs_f64();
    let stats = journal.stats(0);
    let mut report = OneKeyBenchReport {
        individuals: a.individuals,
        packets,
        records: stats.records,
        bytes: stats.bytes,
        serve_secs,
        serve_records_per_sec: stats.records as f64 / serve_secs,
        build_records_per_sec: stats.build_records_per_sec,
        sync_secs: None,
        sync_records: None,
        sync_records_per_sec: None,
        sync_stage_secs: None,
        peak_rss_bytes: 0,
    };

    if !a.emulator_only {
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
        let dir =
            std::env::temp_dir().join(format!("provsync-bench-onekey-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let store =
            crate::store::open(&format!("sqlite://{}", dir.join("state.db").display())).await?;
        let engine = Engine::new(store);
        let started = Instant::now();
        let job = run_spec(&engine, &sync_spec(running.addr, &key, &a)?, "bench", false).await?;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            job.state == JobState::Completed,
            "the sync ended {}: {:?}",
            job.state,
            job.failure
        );
        let records = job
            .summary
            .as_ref()
            .and_then(|s| s["counts"]["extracted"].as_u64())
            .unwrap_or(0);
        report.sync_secs = Some(secs);
        report.sync_records = Some(records);
        report.sync_records_per_sec = Some(records as f64 / secs);
        let p = &engine.progress;
        let busy = |ns: &std::sync::atomic::AtomicU64| Progress::get(ns) as f64 / 1e9;
        report.sync_stage_secs = Some([
            busy(&p.extract_ns),
            busy(&p.transform_ns),
            busy(&p.load_ns),
            busy(&p.relations_ns),
            busy(&p.finish_ns),
        ]);
        pool.execute(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE").as_str())
            .await?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    report.peak_rss_bytes = peak_rss_bytes();
    running.task.abort();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!(
            "provsync bench-onekey: {} individuals, packets of {}",
            a.individuals,
            a.packet_size
        )?;
        outln!(
            "  emulator           {} packets, {} records, {:.1} MB in {:.1} s: {:.0} records/s served ({:.0} records/s building)",
            report.packets,
            report.records,
            report.bytes as f64 / 1e6,
            report.serve_secs,
            report.serve_records_per_sec,
            report.build_records_per_sec
        )?;
        if let (Some(s), Some(n), Some(r)) = (
            report.sync_secs,
            report.sync_records,
            report.sync_records_per_sec,
        ) {
            outln!("  OneKey -> PostgreSQL  {n} records in {s:.1} s: {r:.0} records/s end to end")?;
        }
        if let Some([e, t, l, r, f]) = report.sync_stage_secs {
            outln!(
                "  stages busy        {e:.1} s extract (fetch + parse), {t:.1} s transform, {l:.1} s load, {r:.1} s relations, {f:.1} s finish"
            )?;
        }
        outln!(
            "  peak RSS           {:.1} MB",
            report.peak_rss_bytes as f64 / 1e6
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
