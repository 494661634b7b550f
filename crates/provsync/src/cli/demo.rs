//! `provsync demo`: the whole flow on the embedded default, end to end: generate a
//! world, sync it into a SQLite provider store, then sync the next night (changes,
//! additions, moves, disconnections), printing what happened at each step.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use provsync_core::job::{JobSpec, JobState};

use super::generate::{world, write_snapshot_file};
use super::run::{print_summary, run_spec};
use crate::job::Engine;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's files (world snapshots, provider store, state).
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

fn job_spec(world_file: &std::path::Path, target: &std::path::Path) -> anyhow::Result<JobSpec> {
    let text = format!(
        r#"
kind = "provider-sync"
mode = "full"
scope = ["US"]
[source]
type = "file"
path = {world:?}
[target]
type = "sqlite"
url = "sqlite://{target}"
"#,
        world = world_file.display().to_string(),
        target = target.display(),
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
    let world = world(a.seed, a.individuals, a.data_dir.as_deref())?;
    let store = crate::store::open(&format!("sqlite://{}", state.display())).await?;
    let engine = Engine::new(store);
    let mut worst = JobState::Completed;
    for night in 1..=2u32 {
        let file = dir.join(format!("world-night{night}.ndjson"));
        let n = write_snapshot_file(&world, night, &file)?;
        println!(
            "\n== night {night}: generated {n} records ({} individuals at start, seed {}) -> {}",
            a.individuals,
            a.seed,
            file.display()
        );
        let job = run_spec(&engine, &job_spec(&file, &target)?, "demo", !a.quiet).await?;
        print_summary(&job, false)?;
        if job.state != JobState::Completed {
            worst = job.state;
        }
    }
    println!("\nprovider store: {}", target.display());
    println!("job state:      {}", state.display());
    println!(
        "try: sqlite3 {} \"SELECT change, count(*) FROM change_log GROUP BY run_id, change\"",
        target.display()
    );
    Ok(super::exit_code(worst))
}
