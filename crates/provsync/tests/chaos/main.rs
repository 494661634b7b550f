//! The distributed runtime under faults: `provsync worker` processes killed with
//! SIGKILL at random moments, a RabbitMQ restart, a worker lacking the mapping. The real
//! binary, PostgreSQL and RabbitMQ on 127.0.0.1 (required with `CI=true`).
//!
//! Its own test binary, and one test at a time: restarting the broker must not
//! disturb other tests.

#[path = "../e2e/common.rs"]
mod common;

mod distributed;
