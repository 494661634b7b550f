//! `provsync bench-salesforce`: a OneKey -> Salesforce full sync against the
//! Salesforce emulator with real-world latency (300 ms per call) and the 25-call
//! cap: API calls per 10,000 records against the floor of the APIs used, and
//! records per second; with `--lock-errors`, a row-lock storm: records failed, and
//! composite graphs halted by their request's failures per graph sent.

use std::io::{BufRead, BufReader};
use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobSpec, JobState};
use serde::Serialize;

use super::emulate::{start_onekey, OneKeyArgs};
use super::out::outln;
use super::run::run_spec;
use crate::job::Engine;
use crate::target::salesforce::plan;

/// Arguments of `bench-salesforce`.
#[derive(Debug, Args)]
pub struct BenchSalesforceArgs {
    /// Individuals in the OneKey world (workplaces and activities come with them).
    #[arg(long, default_value_t = 10_000)]
    pub individuals: u64,
    /// Emulated latency of every Salesforce call (ms).
    #[arg(long, default_value_t = 300)]
    pub latency_ms: u64,
    /// Concurrent call cap of the org (and the connector's `max_concurrency`).
    #[arg(long, default_value_t = 25)]
    pub max_calls: usize,
    /// OneKey packet size (individuals or workplaces per page).
    #[arg(long, default_value_t = 5_000)]
    pub packet_size: u32,
    /// Pages loaded at once.
    #[arg(long, default_value_t = 4)]
    pub load_workers: usize,
    /// The connector's `bulk_threshold`: 0 measures composite graphs and
    /// collections, a size up to the page's measures Bulk API 2.0 jobs.
    #[arg(long, default_value_t = 0)]
    pub bulk_threshold: usize,
    /// Share (0..1) of record writes with a parent the org refuses with
    /// `UNABLE_TO_LOCK_ROW` (a lock storm).
    #[arg(long, default_value_t = 0.0)]
    pub lock_errors: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct SalesforceBenchReport {
    /// Org records written by the provider sync (every object).
    pub org_records: u64,
    /// Canonical records extracted.
    pub source_records: u64,
    /// Provider sync wall time.
    pub secs: f64,
    /// Org records per second.
    pub org_records_per_sec: f64,
    /// Canonical records per second.
    pub source_records_per_sec: f64,
    /// Write requests of the provider sync (graph and collections; with Bulk, every
    /// Bulk call: create, upload, close, status, results).
    pub write_calls: u64,
    /// Bulk API 2.0 jobs made.
    pub bulk_jobs: u64,
    /// All API calls of the provider sync (login, describes, writes, job run).
    pub api_calls: u64,
    /// The fewest write requests the limits allow for the same records (with Bulk:
    /// six calls per job, for create, upload, close, one status check and the two
    /// result files, plus the collections of what did not go as Bulk).
    pub floor_calls: u64,
    /// write_calls / floor_calls.
    pub ratio_to_floor: f64,
    /// API calls per 10,000 org records.
    pub calls_per_10k_records: f64,
    /// Limit violations the emulator saw.
    pub limit_violations: u64,
    /// Records the provider sync failed.
    pub failed_records: u64,
    /// Composite graphs the org received (re-sends included).
    pub graphs_sent: u64,
    /// Graphs the org halted (`PROCESSING_HALTED`) because more than 14 graphs of
    /// their request failed.
    pub graphs_halted: u64,
    /// graphs_halted / graphs_sent.
    pub halted_share: f64,
    /// Record writes the org refused with an injected `UNABLE_TO_LOCK_ROW`.
    pub lock_errors: u64,
    /// The emulator's stats after the run.
    pub stats: serde_json::Value,
}

/// A `provsync emulate salesforce` child process; killed when dropped.
struct Org {
    child: std::process::Child,
    url: String,
}

impl Drop for Org {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_org(a: &BenchSalesforceArgs) -> anyhow::Result<Org> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["emulate", "salesforce", "--listen", "127.0.0.1:0"])
        .args(["--latency-ms", &a.latency_ms.to_string()])
        .args(["--max-long-calls", &a.max_calls.to_string()])
        .args(["--api-budget", "10000000"])
        .args(["--lock-errors", &a.lock_errors.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting provsync emulate salesforce")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("emulator stdout")?).read_line(&mut line)?;
    let url = line
        .trim()
        .split_once("listening on ")
        .map(|(_, u)| u.trim().to_string())
        .with_context(|| format!("the emulator did not announce its address: {line:?}"))?;
    Ok(Org { child, url })
}

fn spec(
    kind: &str,
    onekey: &str,
    key: &str,
    org: &str,
    a: &BenchSalesforceArgs,
) -> anyhow::Result<JobSpec> {
    let key_file = std::env::temp_dir().join(format!("provsync-bench-{}-key", std::process::id()));
    crate::secret::write_file(&key_file, key)?;
    let text = format!(
        "kind = \"{kind}\"\nscope = [\"US\"]\n\
         [source]\ntype = \"onekey\"\nurl = \"http://{onekey}\"\napi_key_file = {key_file:?}\n\
         [target]\ntype = \"salesforce\"\nlogin_url = \"{org}\"\nmax_concurrency = {}\nintegration_job_run = false\nbulk_threshold = {}\nbulk_poll_ms = 200\n\
         auth = {{ flow = \"client_credentials\", client_id = \"provsync\", client_secret_env = \"SF_CLIENT_SECRET\" }}\n\
         [options]\npage_size = {}\nbatch_size = 10000\nload_workers = {}\n",
        a.max_calls, a.bulk_threshold, a.packet_size, a.load_workers
    );
    Ok(toml::from_str(&text)?)
}

async fn stats(http: &reqwest::Client, org: &str) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .get(format!("{org}/_emulator/stats"))
        .send()
        .await?
        .json()
        .await?)
}

/// Rows the org's Bulk jobs processed (read through the REST API, as a client would).
async fn bulk_rows(http: &reqwest::Client, org: &str) -> anyhow::Result<u64> {
    let token: serde_json::Value = http
        .post(format!("{org}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "provsync"),
            ("client_secret", &std::env::var("SF_CLIENT_SECRET")?),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access_token from the emulator")?;
    let jobs: serde_json::Value = http
        .get(format!("{org}/services/data/v65.0/jobs/ingest"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(jobs["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|j| j["numberRecordsProcessed"].as_u64())
                .sum()
        })
        .unwrap_or(0))
}

/// A number in the stats by any of the names tried.
fn num(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .or_else(|| cur.as_array().map(|a| a.len() as u64))
        .unwrap_or(0)
}

/// Runs the bench.
pub async fn bench_salesforce(a: BenchSalesforceArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        std::env::var("SF_CLIENT_SECRET").is_ok(),
        "set SF_CLIENT_SECRET (the emulator's default is provsync-secret)"
    );
    let onekey_args = OneKeyArgs {
        listen: "127.0.0.1:0".parse()?,
        individuals: a.individuals,
        ..OneKeyArgs::defaults()
    };
    let onekey = start_onekey(&onekey_args).await?;
    let key = onekey_args.api_key.clone();
    let org = start_org(&a)?;
    let http = reqwest::Client::new();
    let dir = std::env::temp_dir().join(format!("provsync-bench-sf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = crate::store::open(&format!("sqlite://{}", dir.join("state.db").display())).await?;
    let engine = Engine::new(store);
    let addr = onekey.addr.to_string();

    let codes = run_spec(
        &engine,
        &spec("codes-sync", &addr, &key, &org.url, &a)?,
        "bench",
        false,
    )
    .await?;
    anyhow::ensure!(
        codes.state == JobState::Completed,
        "codes sync ended {}: {:?}",
        codes.state,
        codes.failure
    );
    let before = stats(&http, &org.url).await?;

    let started = Instant::now();
    let job = run_spec(
        &engine,
        &spec("provider-sync", &addr, &key, &org.url, &a)?,
        "bench",
        false,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    // Records refused under a storm are a figure of the bench, not its failure.
    anyhow::ensure!(
        matches!(
            job.state,
            JobState::Completed | JobState::CompletedWithErrors
        ),
        "provider sync ended {}: {:?}",
        job.state,
        job.failure
    );
    let after = stats(&http, &org.url).await?;

    let written = |s: &serde_json::Value, o: &str| num(s, &["records_written", o]);
    let objects = [
        "Account",
        "HealthcareProvider",
        "HealthcareProviderSpecialty",
        "HealthcareProviderNpi",
        "ContactPointAddress",
        "Identifier",
        "ProviderAffiliation",
    ];
    let delta = |o: &str| written(&after, o) - written(&before, o);
    let org_records: u64 = objects.iter().map(|o| delta(o)).sum();
    let calls = |s: &serde_json::Value, k: &str| num(s, &["calls_by_kind", k]);
    let made = |k: &str| calls(&after, k) - calls(&before, k);
    let bulk_jobs = made("bulk_create");
    let floor = if bulk_jobs > 0 {
        // Records of no Bulk job went as graphs or collections: count those at the
        // collections floor (what they cost at least).
        let in_bulk = bulk_rows(&http, &org.url).await?;
        6 * bulk_jobs
            + org_records
                .saturating_sub(in_bulk)
                .div_ceil(plan::MAX_COLLECTION as u64)
    } else {
        let graph_records = org_records - delta("ProviderAffiliation");
        let graphs = delta("Account");
        plan::graph_floor(graph_records as usize, graphs as usize) as u64
            + delta("ProviderAffiliation").div_ceil(plan::MAX_COLLECTION as u64)
    };
    let write_calls = [
        "graph",
        "collections_upsert",
        "bulk_create",
        "bulk_upload",
        "bulk_state",
        "bulk_status",
        "bulk_results",
    ]
    .iter()
    .map(|k| made(k))
    .sum::<u64>();
    let api_calls = num(&after, &["api_calls_used"]) - num(&before, &["api_calls_used"]);
    let source_records = job
        .summary
        .as_ref()
        .and_then(|s| s["counts"]["extracted"].as_u64())
        .unwrap_or(0);
    let graphs = |k: &str| num(&after, &["graphs", k]) - num(&before, &["graphs", k]);
    let (graphs_sent, graphs_halted) = (graphs("sent"), graphs("halted"));
    let failed_records = job
        .summary
        .as_ref()
        .and_then(|s| s["counts"]["failed"].as_u64())
        .unwrap_or(0);
    let lock_errors =
        num(&after, &["faults", "lock_errors"]) - num(&before, &["faults", "lock_errors"]);
    let report = SalesforceBenchReport {
        org_records,
        source_records,
        secs,
        org_records_per_sec: org_records as f64 / secs,
        source_records_per_sec: source_records as f64 / secs,
        write_calls,
        bulk_jobs,
        api_calls,
        floor_calls: floor,
        ratio_to_floor: write_calls as f64 / floor.max(1) as f64,
        calls_per_10k_records: api_calls as f64 * 10_000.0 / org_records.max(1) as f64,
        limit_violations: num(&after, &["limit_violations"]),
        failed_records,
        graphs_sent,
        graphs_halted,
        halted_share: graphs_halted as f64 / graphs_sent.max(1) as f64,
        lock_errors,
        stats: after,
    };
    onekey.task.abort();
    let _ = std::fs::remove_dir_all(&dir);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!(
            "provsync bench-salesforce: {} individuals, {} ms per call, {} calls at once, {:.0}% lock errors, {}",
            a.individuals,
            a.latency_ms,
            a.max_calls,
            a.lock_errors * 100.0,
            if a.bulk_threshold > 0 {
                format!("Bulk API 2.0 from {} records per write", a.bulk_threshold)
            } else {
                "composite graphs and collections".into()
            }
        )?;
        outln!(
            "  provider sync      {} org records ({} source records) in {:.1} s: {:.0} org records/s, {:.0} source records/s",
            report.org_records, report.source_records, report.secs, report.org_records_per_sec, report.source_records_per_sec
        )?;
        outln!(
            "  write requests     {} (floor {}, {:.3} x); {} API calls in all, {:.1} per 10,000 records",
            report.write_calls, report.floor_calls, report.ratio_to_floor, report.api_calls, report.calls_per_10k_records
        )?;
        if report.bulk_jobs > 0 {
            outln!("  Bulk jobs          {}", report.bulk_jobs)?;
        }
        outln!(
            "  graphs             {} sent, {} halted ({:.3}% of sent); {} lock errors injected",
            report.graphs_sent,
            report.graphs_halted,
            report.halted_share * 100.0,
            report.lock_errors
        )?;
        outln!("  failed records     {}", report.failed_records)?;
        outln!("  limit violations   {}", report.limit_violations)?;
    }
    Ok(ExitCode::SUCCESS)
}
