//! The one way the command line writes to a person or a script.
//!
//! Stdout (results: summaries, status, generated worlds) goes through [`outln!`] or
//! [`stdout`]: writes are fallible, never `println!` (which panics on a closed
//! pipe). When the reader has gone (`provsync status ID --json | head -c 1`), the
//! command ends quietly with exit 0: the reader chose to stop reading, and a
//! pipeline under `set -o pipefail` must not fail on it (the convention of `rg`
//! and `fd` rather than the shell's 141 for SIGPIPE). [`stdout_closed`] tells
//! `cli::main` that this is why the command stopped.
//!
//! Stderr lines for the person (`job ... started`, warnings, the final error) go
//! through [`note!`] and [`warning!`]: plain text, or with `--log-format json` one
//! log event each, so that in that mode every stderr line is JSON.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Level;

/// Set once a write to stdout found its reader gone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set when stderr carries JSON log events only.
static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Stdout for the command's results; a closed pipe is an error the caller
/// propagates and [`stdout_closed`] remembers.
pub struct Stdout(io::StdoutLock<'static>);

/// Locks stdout for the command's results.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Whether a write to stdout failed because its reader went away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn noted<T>(r: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &r {
        if e.kind() == io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
    r
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        noted(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        noted(self.0.flush())
    }
}

/// Writes one line to stdout (what [`outln!`] expands to).
pub fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = stdout();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// `println!` that returns an `io::Result` instead of panicking on a closed pipe.
macro_rules! outln {
    () => {
        $crate::cli::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Makes [`emit`] write JSON log events (`--log-format json`).
pub fn set_json_logs(on: bool) {
    JSON_LOGS.store(on, Ordering::Relaxed);
}

/// Whether stderr carries JSON log events only.
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

/// A line for the person on stderr: `[warning: |error: ]text`, or a log event at
/// `level` in JSON mode. A closed stderr loses the line rather than panicking.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    if json_logs() {
        let text = args.to_string();
        let text = text.trim();
        match level {
            Level::ERROR => tracing::error!("{text}"),
            Level::WARN => tracing::warn!("{text}"),
            _ => tracing::info!("{text}"),
        }
        return;
    }
    let prefix = match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        _ => "",
    };
    let _ = writeln!(io::stderr().lock(), "{prefix}{args}");
}

/// A line for the person on stderr (see [`emit`]).
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::out::emit(tracing::Level::INFO, format_args!($($arg)*))
    };
}
pub(crate) use note;

/// A `warning: ` line on stderr (see [`emit`]).
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::cli::out::emit(tracing::Level::WARN, format_args!($($arg)*))
    };
}
pub(crate) use warning;
