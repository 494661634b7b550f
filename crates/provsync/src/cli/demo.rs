//! `provsync demo`: the whole flow on the embedded default, end to end: a OneKey-style
//! MDM emulator in this process serves a generated world; a codes sync, then a full
//! provider sync load it into a SQLite provider store; then the MDM moves to night 2
//! and a delta sync applies that night's changes (additions, changes, moves,
//! removals), printing what each run did.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobSpec, JobState};

use super::emulate::{start_onekey, OneKeyArgs};
use super::run::{print_summary, run_spec};
use crate::job::Engine;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's files (provider store, state).
    #[arg(long, default_value = "provsync-demo")]
    pub dir: PathBuf,
    /// Individuals in the generated world.
    #[arg(long, default_value_t = 20_000)]
    pub individuals: u64,
    /// Seed of the world.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder of the reference data.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A job reading the emulator at `url` into the SQLite store `target`.
fn job_spec(kind: &str, mode: &str, source: &str, target: &Path) -> anyhow::Result<JobSpec> {
    let text = format!(
        "kind = \"{kind}\"\nmode = \"{mode}\"\nscope = [\"US\"]\n[source]\n{source}\n\
         [target]\ntype = \"sqlite\"\nurl = \"sqlite://{}\"\n[options]\npage_size = 1000\n",
        target.display()
    );
    Ok(toml::from_str(&text)?)
}

/// Runs the demo.
pub async fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let dir = a.dir.canonicalize()?;
    let target = dir.join("provider.db");
    let state = dir.join("state.db");
    for f in [&target, &state] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
        }
    }
    println!("provsync demo: Salesforce target not built yet, so the demo loads the embedded SQLite provider store.");
    let store = crate::store::open(&format!("sqlite://{}", state.display())).await?;
    let engine = Engine::new(store);
    let mut worst = JobState::Completed;
    let mut emu_args = OneKeyArgs {
        listen: "127.0.0.1:0".parse()?,
        individuals: a.individuals,
        seed: a.seed,
        data_dir: a.data_dir.clone(),
        ..OneKeyArgs::defaults()
    };
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
    let mut running = None;
    for (night, kind, mode, what) in steps {
        if running.as_ref().is_none_or(|(n, _)| *n != night) {
            if let Some((_, r)) = running.take() {
                let r: super::emulate::Running = r;
                r.task.abort();
            }
            emu_args.night = night;
            let r = start_onekey(&emu_args).await?;
            println!(
                "\n== OneKey emulator at http://{} serves night {night} ({} individuals, seed {})",
                r.addr, a.individuals, a.seed
            );
            running = Some((night, r));
        }
        let Some((_, r)) = &running else { continue };
        let mut source = format!("type = \"onekey\"\nurl = \"http://{}\"\n", r.addr);
        if kind == "codes-sync" {
            source += &format!("api_key = {:?}\n", emu_args.api_key);
        } else {
            source += &format!(
                "client_id = {:?}\nclient_secret = {:?}\n",
                emu_args.client_id, emu_args.client_secret
            );
        }
        if mode == "delta" {
            source += "since_night = 1\n";
        }
        println!("\n== {what}");
        let job = run_spec(
            &engine,
            &job_spec(kind, mode, &source, &target)?,
            "demo",
            !a.quiet,
        )
        .await?;
        print_summary(&job, false)?;
        if job.state != JobState::Completed {
            worst = job.state;
        }
    }
    if let Some((_, r)) = running {
        r.task.abort();
    }
    println!("\nprovider store: {}", target.display());
    println!("job state:      {}", state.display());
    println!(
        "try: sqlite3 {} \"SELECT change, count(*) FROM change_log GROUP BY run_id, change\"",
        target.display()
    );
    Ok(super::exit_code(worst))
}
