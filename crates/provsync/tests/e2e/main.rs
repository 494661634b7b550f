//! End-to-end tests of the `provsync` binary: real processes, real SQLite files and
//! a real PostgreSQL server, checked against the generator's snapshots.
//!
//! One test binary (one link step); each module is one area of behaviour.

mod common;
mod emulators;

mod abort;
mod bad_input;
mod connection_errors;
mod demo;
mod dispatch;
mod distributed;
mod gmc;
mod guards;
mod onekey;
mod paths;
mod postgres_sync;
mod progress;
mod recipes;
mod reference_sources;
mod resume;
mod salesforce;
mod salesforce_emulator;
mod sqlite_sync;
mod unix_manners;
