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
    /// Folder of your own reference data (`us-facilities/*.csv[.gz]`,
    /// `nucc/*.csv[.gz]`); by default the data built into provsync.
    #[arg(long, env = "PROVSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Loads the reference data (a folder of the user's, else the data built into
/// provsync) and builds the world.
pub fn world(seed: u64, individuals: u64, data: Option<&Path>) -> anyhow::Result<World> {
    let reference = match data {
        Some(dir) => Arc::new(
            ReferenceData::load(dir)
                .with_context(|| format!("loading reference data from {}", dir.display()))?,
        ),
        None => ReferenceData::embedded(),
    };
    Ok(World::new(WorldSpec::us(seed, individuals), reference)?)
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
