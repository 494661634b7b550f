//! PostgreSQL pools, opened in one place for the state store, the target and the
//! outbox relay. A pool that cannot connect keeps retrying until its acquire timeout
//! and then says only `pool timed out`, so [`connect`] first opens one connection
//! of its own: a server that refuses is reported within seconds, with its host:port
//! and the cause (`Connection refused (os error 111)`, a refused password, an
//! unknown database), never the URL's password.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::secret::{redact, url_password};

/// How long [`connect`] keeps retrying a server that refuses or is starting up (a
/// restart), before it reports the cause.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long one connection attempt may take (a host that drops packets).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLSTATE `cannot_connect_now`: the server is starting up or shutting down.
const CANNOT_CONNECT_NOW: &str = "57P03";

/// How a pool is set up.
#[derive(Debug, Clone)]
pub struct PoolSettings<'a> {
    /// Shown in `pg_stat_activity`.
    pub application_name: &'a str,
    /// Connections at most.
    pub max_connections: u32,
    /// How long a query waits for a connection (a server gone mid-run).
    pub acquire_timeout: Duration,
    /// The schema put first on every connection's `search_path`.
    pub search_path: Option<&'a str>,
    /// Server settings for every connection (`plan_cache_mode`...).
    pub options: &'a [(&'a str, &'a str)],
    /// How long a refused connection is retried before the cause is reported.
    pub patience: Duration,
    /// The password, when it does not come with the URL (a job's `password_env` or
    /// `password_file`; `PGPASSWORD` and `~/.pgpass` work as in libpq).
    pub password: Option<&'a crate::secret::Secret>,
}

impl Default for PoolSettings<'_> {
    fn default() -> Self {
        Self {
            application_name: "provsync",
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
            search_path: None,
            options: &[],
            patience: PATIENCE,
            password: None,
        }
    }
}

/// Why a pool could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// The server could not be reached or refused us.
    #[error("cannot connect to PostgreSQL at {at}: {cause}")]
    Connect {
        /// `host:port` (or the socket folder).
        at: String,
        /// What went wrong, as the OS or the server said it.
        cause: String,
    },
}

/// What a failed connection attempt says, in the OS's or the server's words.
fn cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => crate::errors::chain(other),
    }
}

/// Whether waiting may help: the server refuses (not up yet) or is starting.
fn worth_retrying(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some(CANNOT_CONNECT_NOW),
        _ => false,
    }
}

/// Opens a pool on `url` once one connection succeeds (see the module doc).
pub async fn connect(url: &str, s: &PoolSettings<'_>) -> Result<PgPool, PgError> {
    let pw = url_password(url);
    let pw = pw.as_deref();
    let mut opts = PgConnectOptions::from_str(url)
        .map_err(|e| PgError::Url(redact(e.to_string(), pw)))?
        .application_name(s.application_name);
    if !s.options.is_empty() {
        opts = opts.options(s.options.iter().copied());
    }
    if let Some(p) = s.password {
        opts = opts.password(p.expose());
    }
    let pw = pw.or(s.password.map(|p| p.expose()));
    let at = match opts.get_socket() {
        Some(dir) => format!("{} (port {})", dir.display(), opts.get_port()),
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    };
    probe(&opts, s.patience)
        .await
        .map_err(|cause| PgError::Connect {
            at,
            cause: redact(cause, pw),
        })?;
    let mut pool = PgPoolOptions::new()
        .max_connections(s.max_connections.max(1))
        .acquire_timeout(s.acquire_timeout);
    if let Some(schema) = s.search_path {
        let set_path = format!("SET search_path TO {schema}");
        pool = pool.after_connect(move |conn, _| {
            let set_path = set_path.clone();
            Box::pin(async move {
                conn.execute(set_path.as_str()).await?;
                Ok(())
            })
        });
    }
    Ok(pool.connect_lazy_with(opts))
}

/// One connection, retried while waiting may help and `patience` lasts; the last
/// cause otherwise.
async fn probe(opts: &PgConnectOptions, patience: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let e = match tokio::time::timeout(ATTEMPT_TIMEOUT, opts.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => return Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
        };
        if !worth_retrying(&e) || started.elapsed() >= patience {
            return Err(cause(&e));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local port nothing listens on (bound, then let go).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn a_refused_connection_names_host_port_and_the_os_cause_not_the_password() {
        let port = closed_port();
        let settings = PoolSettings {
            patience: Duration::ZERO,
            ..PoolSettings::default()
        };
        let e = connect(
            &format!("postgres://u:s3cret@127.0.0.1:{port}/db"),
            &settings,
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}: "
            )),
            "{text}"
        );
        assert!(text.contains("Connection refused"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let e = connect("postgres://u:s3cret@h:notaport/x", &settings)
            .await
            .unwrap_err();
        assert!(matches!(e, PgError::Url(_)), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
