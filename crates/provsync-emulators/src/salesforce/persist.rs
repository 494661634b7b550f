//! Durability of `--state DIR`: `snapshot.json` (the whole org) plus `journal.jsonl`
//! (every committed change since, one JSON line each, flushed at the end of every
//! request). At start the snapshot is read, the journal replayed (a torn last line,
//! from a crash mid-write, is ignored), and both are compacted into a new snapshot.
//! A killed process therefore loses nothing a client saw answered; a clean shutdown
//! writes a fresh snapshot so the next start replays nothing.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bulk::BulkJob;
use super::store::{CallLog, Record, ValueSet};

/// One journaled change.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// A record's state after a commit.
    Put {
        /// Object.
        o: String,
        /// Record.
        r: Record,
    },
    /// A record deleted.
    Del {
        /// Object.
        o: String,
        /// Id.
        id: String,
    },
    /// A value set written.
    ValueSet(ValueSet),
    /// A Bulk job's new state.
    Job(Box<BulkJob>),
    /// A Bulk job deleted.
    DelJob {
        /// Job id.
        id: String,
    },
    /// API calls counted at a second.
    Calls {
        /// Seconds since the epoch.
        at: u64,
        /// Calls.
        n: u32,
    },
    /// The budget window emptied (`/_emulator/reset-budget`).
    ResetCalls,
}

/// The whole org at one moment.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Object -> id -> record.
    pub tables: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Record>>,
    /// Value sets.
    pub value_sets: Vec<ValueSet>,
    /// Bulk jobs.
    pub jobs: Vec<BulkJob>,
    /// API calls of the budget window.
    pub calls: CallLog,
    /// Next id counter.
    pub next_id: u64,
}

/// The open journal file.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    out: BufWriter<File>,
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.json")
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal.jsonl")
}

impl Journal {
    /// Reads what a previous run left: the snapshot and the journal's entries.
    pub fn load(dir: &Path) -> std::io::Result<(Option<Snapshot>, Vec<Entry>)> {
        std::fs::create_dir_all(dir)?;
        let snapshot = match std::fs::read(snapshot_path(dir)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", snapshot_path(dir).display()),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        match File::open(journal_path(dir)) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    match serde_json::from_str(&line) {
                        Ok(e) => entries.push(e),
                        // A torn tail from a crash mid-write: what follows cannot exist.
                        Err(_) => break,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok((snapshot, entries))
    }

    /// Writes `snapshot` and starts an empty journal beside it.
    pub fn compact(dir: &Path, snapshot: &Snapshot) -> std::io::Result<Journal> {
        write_snapshot(dir, snapshot)?;
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(journal_path(dir))?;
        Ok(Journal {
            dir: dir.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Appends one entry (buffered until [`Journal::flush`]).
    pub fn append(&mut self, e: &Entry) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, e)?;
        self.out.write_all(b"\n")
    }

    /// Hands the buffered entries to the operating system.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Writes a new snapshot and empties the journal.
    pub fn checkpoint(&mut self, snapshot: &Snapshot) -> std::io::Result<()> {
        self.out.flush()?;
        write_snapshot(&self.dir, snapshot)?;
        let file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(journal_path(&self.dir))?;
        self.out = BufWriter::with_capacity(1 << 20, file);
        Ok(())
    }
}

/// Writes the snapshot through a temporary file and a rename, so a crash leaves
/// either the old or the new one.
fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = dir.join("snapshot.json.tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    serde_json::to_writer(&mut out, snapshot)?;
    out.flush()?;
    out.get_ref().sync_all()?;
    drop(out);
    std::fs::rename(&tmp, snapshot_path(dir))
}
