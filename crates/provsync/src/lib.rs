//! provsync runtime: the job engine and its stages, the state stores, the source
//! and target connectors, and the command line.

pub mod api;
pub mod callback;
pub mod cli;
pub mod config;
pub mod connections;
pub mod connector;
pub mod errors;
pub mod events;
pub mod http;
pub mod job;
pub mod key_reference;
pub mod metrics;
pub mod paths;
pub mod pg;
pub mod queue;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod store;
pub mod target;
pub mod toml_place;
