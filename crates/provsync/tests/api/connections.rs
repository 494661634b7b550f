//! The server bounds its connections: a client that sends half a request, or leaves
//! a keep-alive connection idle, is closed after the configured header timeout, and
//! no more than `max_connections` are served at once; the server answers throughout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Whether the server closes `c` (end of stream or a reset) within `bound`; the
/// bytes it sent before are drained.
async fn closed_within(c: &mut TcpStream, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Server::start_configured(
        dir,
        &state,
        "[http]\nheader_read_timeout_secs = 1\nmax_connections = 8\n",
    );
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();

    // 20 clients that send part of a request line and stop: more than the 8 served
    // at once, so the rest wait their turn, and each is closed once its turn's
    // header timeout passes.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTT").await.unwrap();
        slow.push(c);
    }
    // One that asks properly, then keeps its keep-alive connection open and idle.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: provsync\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), idle.read_exact(&mut head))
        .await
        .expect("the idle client is served within its turn")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let started = Instant::now();
    for (i, c) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(20)).await,
            "slow connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "an idle keep-alive connection stays open"
    );
    let (st, v) = s.get("/healthz").await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
