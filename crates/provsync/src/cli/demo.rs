//! `provsync demo`: the seed's story end to end on one machine with nothing beside
//! the binary. A OneKey-style MDM emulator in this process serves a generated world
//! (from the reference data built into provsync); a codes sync loads its code lists,
//! a full provider sync loads night 1, then the MDM moves to night 2 and a delta sync
//! applies that night's changes (additions, changes, moves, removals). The target is
//! the embedded SQLite provider store, or (`--target salesforce`) a Salesforce org
//! emulated in this process. The demo ends by showing what the target holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use provsync_core::job::{JobSpec, JobState};
use provsync_core::store::JobRecord;
use provsync_emulators::salesforce::{self as sf_emulator, Emu};

use super::emulate::{start_onekey, OneKeyArgs};
use super::out::outln;
use super::run::{print_summary, run_spec};
use crate::job::Engine;

/// Where the demo loads the MDM's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoTarget {
    /// The embedded SQLite provider store (one file).
    Sqlite,
    /// A Life Sciences Cloud org emulated in this process.
    Salesforce,
}

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the data goes.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub target: DemoTarget,
    /// Folder for the demo's files (provider store, job state, secrets of the
    /// emulators); emptied of earlier demo files first.
    #[arg(long, default_value = "provsync-demo")]
    pub dir: PathBuf,
    /// Individuals in the generated world (default: 20,000 into SQLite, 2,000 into
    /// the emulated org).
    #[arg(long)]
    pub individuals: Option<u64>,
    /// Seed of the world.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder of your own reference data; by default the data built into provsync.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The demo's files, all inside `--dir`.
struct Files {
    provider: PathBuf,
    state: PathBuf,
    onekey_secret: PathBuf,
    onekey_api_key: PathBuf,
    salesforce_secret: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Self {
        Self {
            provider: dir.join("provider.db"),
            state: dir.join("state.db"),
            onekey_secret: dir.join("onekey-client-secret"),
            onekey_api_key: dir.join("onekey-api-key"),
            salesforce_secret: dir.join("salesforce-client-secret"),
        }
    }

    /// Removes what an earlier demo left, so each demo starts from nothing.
    fn clear(&self) {
        for f in [&self.provider, &self.state] {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
    }
}

/// Writes an emulator's secret to a file the demo's jobs name (the state store holds
/// the file's path, never the value).
fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    crate::secret::write_file(path, value)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The `[target]` table of the demo's jobs.
fn target_table(target: DemoTarget, files: &Files, org: Option<&str>) -> String {
    match (target, org) {
        (DemoTarget::Salesforce, Some(url)) => format!(
            "type = \"salesforce\"\nlogin_url = \"{url}\"\n\
             auth = {{ flow = \"client_credentials\", client_id = \"provsync\", \
             client_secret_file = {:?} }}\n",
            files.salesforce_secret.display().to_string()
        ),
        _ => format!(
            "type = \"sqlite\"\nurl = \"sqlite://{}\"\n",
            files.provider.display()
        ),
    }
}

/// One demo job as a job file would give it.
fn job_spec(kind: &str, mode: &str, source: &str, target: &str) -> anyhow::Result<JobSpec> {
    let text = format!(
        "kind = \"{kind}\"\nmode = \"{mode}\"\nscope = [\"US\"]\n[source]\n{source}\n\
         [target]\n{target}\n[options]\npage_size = 1000\n"
    );
    Ok(toml::from_str(&text)?)
}

/// A Salesforce org emulated in this process, in memory.
struct Org {
    emu: Arc<Emu>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

async fn start_org(secret: &str) -> anyhow::Result<Org> {
    let mut args = super::emulate_salesforce::SalesforceArgs::defaults();
    args.client_secret = secret.to_owned();
    let emu = Emu::new(args.config()?).context("cannot start the Salesforce emulator")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let url = format!("http://{}", listener.local_addr()?);
    let served = emu.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = sf_emulator::serve(served, listener, std::future::pending()).await {
            tracing::error!("salesforce emulator: {e}");
        }
    });
    Ok(Org { emu, url, task })
}

/// Runs the demo.
pub async fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    let files = Files::new(&dir);
    files.clear();
    let individuals = a.individuals.unwrap_or(match a.target {
        DemoTarget::Sqlite => 20_000,
        DemoTarget::Salesforce => 2_000,
    });
    let mut emu_args = OneKeyArgs {
        listen: "127.0.0.1:0".parse()?,
        individuals,
        seed: a.seed,
        data_dir: a.data_dir.clone(),
        ..OneKeyArgs::defaults()
    };
    write_secret(&files.onekey_secret, &emu_args.client_secret)?;
    write_secret(&files.onekey_api_key, &emu_args.api_key)?;
    let org = match a.target {
        DemoTarget::Sqlite => {
            outln!(
                "provsync demo: a OneKey-style MDM (emulated in this process) into the \
                 embedded SQLite provider store {}",
                files.provider.display()
            )?;
            None
        }
        DemoTarget::Salesforce => {
            let secret = "provsync-demo-secret";
            write_secret(&files.salesforce_secret, secret)?;
            let org = start_org(secret).await?;
            outln!(
                "provsync demo: a OneKey-style MDM into a Life Sciences Cloud org, both \
                 emulated in this process (org at {})",
                org.url
            )?;
            Some(org)
        }
    };
    let target = target_table(a.target, &files, org.as_ref().map(|o| o.url.as_str()));
    let store = crate::store::open(&format!("sqlite://{}", files.state.display())).await?;
    let engine = Engine::new(store);
    let mut worst = JobState::Completed;
    let steps: [(u32, &str, &str, &str); 3] = [
        (
            1,
            "codes-sync",
            "full",
            "codes sync: specialty and role code lists",
        ),
        (1, "provider-sync", "full", "provider full sync of night 1"),
        (
            2,
            "provider-sync",
            "delta",
            "provider delta sync: night 2's changes since night 1",
        ),
    ];
    let mut running: Option<(u32, super::emulate::Running)> = None;
    let mut jobs = Vec::new();
    for (night, kind, mode, what) in steps {
        if running.as_ref().is_none_or(|(n, _)| *n != night) {
            if let Some((_, r)) = running.take() {
                r.task.abort();
            }
            emu_args.night = night;
            let r = start_onekey(&emu_args).await?;
            outln!(
                "\n== OneKey emulator at http://{} serves night {night} ({individuals} \
                 individuals, seed {})",
                r.addr,
                a.seed
            )?;
            running = Some((night, r));
        }
        let Some((_, r)) = &running else { continue };
        let mut source = format!("type = \"onekey\"\nurl = \"http://{}\"\n", r.addr);
        if kind == "codes-sync" {
            source += &format!(
                "api_key_file = {:?}\n",
                files.onekey_api_key.display().to_string()
            );
        } else {
            source += &format!(
                "client_id = {:?}\nclient_secret_file = {:?}\n",
                emu_args.client_id,
                files.onekey_secret.display().to_string()
            );
        }
        if mode == "delta" {
            source += "since_night = 1\n";
        }
        outln!("\n== {what}")?;
        let job = run_spec(
            &engine,
            &job_spec(kind, mode, &source, &target)?,
            "demo",
            !a.quiet,
        )
        .await?;
        print_summary(&job, false)?;
        if job.state != JobState::Completed && worst == JobState::Completed {
            worst = job.state;
        }
        jobs.push(job);
    }
    if let Some((_, r)) = running {
        r.task.abort();
    }
    match &org {
        Some(org) => show_org(org, &jobs)?,
        None => show_store(&files.provider).await?,
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "provsync".into());
    let state = format!("sqlite://{}", files.state.display());
    outln!("\njob state: {}", files.state.display())?;
    if let Some(last) = jobs.last() {
        outln!("try:       {exe} status {} --state {state}", last.id)?;
    }
    if let Some(org) = org {
        org.task.abort();
    }
    Ok(super::exit_code(worst))
}

/// What the SQLite provider store holds: rows per table and what each run changed,
/// read from the store's own change log.
async fn show_store(path: &Path) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    outln!("\n== what the provider store {} holds", path.display())?;
    outln!(
        "  {:<12} {:>10} {:>13}",
        "table",
        "connected",
        "disconnected"
    )?;
    for table in [
        "individuals",
        "workplaces",
        "activities",
        "relations",
        "codes",
    ] {
        let (on, off): (i64, i64) = sqlx::query_as(&format!(
            "SELECT COALESCE(SUM(connected = 1), 0), COALESCE(SUM(connected = 0), 0) FROM {table}"
        ))
        .fetch_one(&mut db)
        .await?;
        outln!("  {table:<12} {on:>10} {off:>13}")?;
    }
    outln!("  change log (the store's own record of every change), per run:")?;
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT run_id, kind, change, count(*) FROM change_log \
         GROUP BY run_id, kind, change ORDER BY min(id), kind, change",
    )
    .fetch_all(&mut db)
    .await?;
    let mut last = String::new();
    for (run, kind, change, n) in rows {
        if run != last {
            outln!("    run {run}")?;
            last = run.clone();
        }
        outln!("      {kind:<10} {change:<13} {n:>8}")?;
    }
    db.close().await?;
    Ok(())
}

/// What the emulated org holds: records per object, the picklist values the codes
/// sync added, and the IntegrationJobRun of each provider run.
fn show_org(org: &Org, jobs: &[JobRecord]) -> anyhow::Result<()> {
    let o = org.emu.org_guard();
    outln!("\n== what the org at {} holds", org.url)?;
    for object in o.schema.objects() {
        let n = o.table(&object.name).rows.len();
        if n > 0 {
            outln!("  {:<34} {n:>8} records", object.name)?;
        }
    }
    outln!("  picklist value sets (active values):")?;
    for vs in o.value_sets.values() {
        let active = vs.values.iter().filter(|v| v.active).count();
        outln!("    {:<32} {active:>6}", vs.full_name)?;
    }
    if let Some(codes) = jobs.first().and_then(|j| j.summary.as_ref()) {
        for (name, counts) in codes["target_report"]["value_sets"]
            .as_object()
            .into_iter()
            .flatten()
        {
            outln!(
                "    codes sync wrote {name}: added {}, updated {}, deactivated {}, unchanged {}",
                counts["added"],
                counts["updated"],
                counts["deactivated"],
                counts["unchanged"]
            )?;
        }
    }
    outln!("  IntegrationJobRun records:")?;
    for run in o.table("IntegrationJobRun").rows.values() {
        let text = |f: &str| run.get(f).and_then(|v| v.as_str()).unwrap_or("-");
        // The summary is JSON in a long text field, as the org stores it.
        let summary: serde_json::Value =
            serde_json::from_str(text("JobExectionSummary")).unwrap_or_default();
        let c = &summary["counts"];
        outln!(
            "    {}  {}  ended {}  {}  created {}  updated {}  disconnected {}",
            text("JobIdentifier"),
            text("JobName"),
            text("EndDateTime"),
            summary["state"].as_str().unwrap_or("-"),
            c["created"],
            c["updated"],
            c["disconnected"]
        )?;
    }
    Ok(())
}
