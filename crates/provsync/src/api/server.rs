//! The HTTP server loop, bounded: at most `max_connections` open connections (the
//! rest wait in the listen backlog), a request's headers must arrive within
//! `header_read_timeout` (which also closes a keep-alive connection left idle that
//! long), and its body within `body_timeout`. A client that opens connections and
//! sends nothing, or sends a byte a minute, cannot hold the server's memory.
//!
//! With TLS, each connection's handshake runs in its own task, bounded by
//! `header_read_timeout` too, so a slow handshake holds one slot and never the
//! accept loop. Every request carries its peer's address (axum's [`ConnectInfo`]).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tower_http::add_extension::AddExtension;

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; further ones wait until one closes.
    pub max_connections: usize,
    /// A request's headers must arrive within this (and an idle keep-alive
    /// connection is closed after it).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Refused tokens one address may present per minute (see [`super::throttle`]).
    pub auth_failures_per_minute: NonZeroU32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            auth_failures_per_minute: NonZeroU32::new(super::throttle::DEFAULT_FAILURES_PER_MINUTE)
                .expect("not zero"),
        }
    }
}

/// How long a graceful shutdown waits for open requests before it drops them.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` (over TLS with `tls`) until
/// `shutdown` resolves, then lets requests in flight finish (for at most [`DRAIN`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = AddExtension::new(app.clone(), ConnectInfo(peer));
        let mut closed = closed.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                return serve_connection(stream, app, limits, closed).await;
            };
            let handshake = tokio::time::timeout(limits.header_read_timeout, tls.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    // Plain HTTP on the HTTPS port, scanners, clients that distrust
                    // the certificate: their business, not the operator's.
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = closed.changed() => return,
            };
            serve_connection(stream, app, limits, closed).await;
        });
    }
    let _ = closing.send(true);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {DRAIN:?}: closing them");
    }
    Ok(())
}

/// Serves HTTP/1.1 on one connection until it ends, or until shutdown is
/// announced on `closed` (then gracefully).
async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    app: AddExtension<Router, ConnectInfo<SocketAddr>>,
    limits: HttpLimits,
    mut closed: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
