//! Tests of `provsync serve`: the real binary on a free 127.0.0.1 port with a temp
//! config (SQLite state in a temp dir, one token per role), driven over real HTTP.
//!
//! One test binary; each module is one area of behaviour.

mod common;

mod audit;
mod auth;
mod brute_force;
mod callbacks;
mod codes_sync;
mod concurrency;
mod connections;
mod gmc_nightly;
mod jobs;
mod least_privilege;
mod lifecycle;
mod observability;
mod replay;
mod schedules;
mod tls;
mod validation;
