//! `provsync generate`: a deterministic world (and its later nights) as NDJSON of
//! canonical records, streamed: memory does not grow with the world's size.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use provsync_emulators::generator::{ReferenceData, World, WorldSpec};

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Individuals in the initial world (workplaces ~N/4, activities ~1.5N).
    #[arg(long, default_value_t = 10_000)]
    pub individuals: u64,
    /// Seed of every random decision: same seed, same world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Night to produce (1 = the initial snapshot; later nights evolve it).
    #[arg(long, default_value_t = 1)]
    pub night: u32,
    /// Output file (stdout when absent).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Folder of the reference data (US facilities, NUCC taxonomy).
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Finds the reference data folder: the flag or env, else `shared/data` next to the
/// working directory or to the source tree.
pub fn data_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let candidates = [
        PathBuf::from("../shared/data"),
        PathBuf::from("shared/data"),
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    ];
    candidates
        .iter()
        .find(|p| p.join("nucc").is_dir())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "reference data not found (looked for nucc/ in {}); pass --data-dir or set PROVSYNC_DATA_DIR",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Loads the reference data and builds the world.
pub fn world(seed: u64, individuals: u64, data: Option<&Path>) -> anyhow::Result<World> {
    let dir = data_dir(data)?;
    let reference = ReferenceData::load(&dir)
        .with_context(|| format!("loading reference data from {}", dir.display()))?;
    Ok(World::new(
        WorldSpec::us(seed, individuals),
        Arc::new(reference),
    )?)
}

/// Writes night `night` of `world` as NDJSON; returns the record count.
pub fn write_snapshot(world: &World, night: u32, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut n = 0;
    for record in world.records(night) {
        serde_json::to_writer(&mut w, &record)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// Writes night `night` to a file.
pub fn write_snapshot_file(world: &World, night: u32, path: &Path) -> anyhow::Result<u64> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    write_snapshot(world, night, &mut file)
}

/// Runs `generate`.
pub fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.night >= 1, "--night starts at 1 (the initial world)");
    let world = world(a.seed, a.individuals, a.data_dir.as_deref())?;
    let n = match &a.out {
        Some(path) => write_snapshot_file(&world, a.night, path)?,
        None => write_snapshot(&world, a.night, &mut super::out::stdout())?,
    };
    super::out::note!(
        "generated {n} records (seed {}, {} individuals, night {})",
        a.seed,
        a.individuals,
        a.night
    );
    Ok(ExitCode::SUCCESS)
}
