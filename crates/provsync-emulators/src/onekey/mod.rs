//! `provsync emulate onekey`: a OneKey-style MDM over HTTP that speaks the contract of
//! `docs/onekey-contract.md`: OAuth2 client-credentials tokens (or an API key), sync
//! sessions over countries (full, or delta since a night), packets by cursor, code
//! lists per country, and the faults a real MDM gives (expired sessions, 429 with
//! `Retry-After`, 5xx, latency, a malformed packet) on request.
//!
//! Nothing of the world is held in memory: each packet is generated from its cursor
//! ([`packets`]), so any size is served in constant memory.

mod auth;
pub mod codes;
pub mod cursor;
pub mod journal;
pub mod packets;
mod server;
mod sessions;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use server::router;

use crate::generator::World;
use cursor::SyncMode;
use journal::Journal;
use packets::Catalog;

/// Largest packet size a session may ask for (docs/onekey-contract.md: `packetSize`
/// 1..=20000; the OneKey-style MDM is ours, so its contract is the source).
pub const MAX_PACKET_SIZE: u32 = 20_000;

/// How the emulator behaves.
#[derive(Clone)]
pub struct OneKeyConfig {
    /// Countries served (ISO 3166-1 alpha-2), each a copy of the world in its own ids.
    pub countries: Vec<String>,
    /// The night served: full sessions return its snapshot, delta ones its changes.
    pub night: u32,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret (never printed).
    pub client_secret: String,
    /// API key accepted in `X-API-Key` (never printed).
    pub api_key: String,
    /// Lifetime of a bearer token.
    pub token_ttl: Duration,
    /// Lifetime of a session from its activation.
    pub session_ttl: Duration,
    /// A session expires after serving this many packets (to expire one mid-run).
    pub expire_session_after: Option<u64>,
    /// Share (0..1) of API requests answered with a 5xx.
    pub fail_5xx_share: f64,
    /// Share (0..1) of API requests answered with 429.
    pub fail_429_share: f64,
    /// `Retry-After` seconds of a 429.
    pub retry_after_secs: u64,
    /// Added to every request.
    pub latency: Duration,
    /// Packet number (from 1) sent with malformed records.
    pub malformed_packet: Option<u64>,
    /// NDJSON file every request is appended to.
    pub request_log: Option<PathBuf>,
    /// Seed of the fault decisions.
    pub fault_seed: u64,
}

impl fmt::Debug for OneKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneKeyConfig")
            .field("countries", &self.countries)
            .field("night", &self.night)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("api_key", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("expire_session_after", &self.expire_session_after)
            .field("fail_5xx_share", &self.fail_5xx_share)
            .field("fail_429_share", &self.fail_429_share)
            .field("latency", &self.latency)
            .field("malformed_packet", &self.malformed_packet)
            .finish_non_exhaustive()
    }
}

impl Default for OneKeyConfig {
    fn default() -> Self {
        Self {
            countries: vec!["US".into()],
            night: 1,
            client_id: "provsync".into(),
            client_secret: "provsync-secret".into(),
            api_key: "provsync-api-key".into(),
            token_ttl: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(3600),
            expire_session_after: None,
            fail_5xx_share: 0.0,
            fail_429_share: 0.0,
            retry_after_secs: 1,
            latency: Duration::ZERO,
            malformed_packet: None,
            request_log: None,
            fault_seed: 0x5eed,
        }
    }
}

/// Why the emulator cannot start. Each text holds its cause (and no `source()`),
/// so a chain of errors shows it once.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A setting is out of range; names it.
    #[error("{0}")]
    Config(String),
    /// The world cannot be generated.
    #[error("world: {0}")]
    World(crate::generator::WorldError),
    /// The request log cannot be opened.
    #[error("request log {path}: {cause}")]
    Log {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

impl From<crate::generator::WorldError> for EmulatorError {
    fn from(e: crate::generator::WorldError) -> Self {
        Self::World(e)
    }
}

/// An active sync session.
#[derive(Debug, Clone)]
struct Session {
    countries: Vec<String>,
    mode: SyncMode,
    night: u32,
    packet_size: u32,
    expires: Instant,
    served: u64,
}

/// The emulator's state: the worlds (generated on demand), tokens, sessions, journal.
pub struct OneKeyEmulator {
    config: OneKeyConfig,
    catalog: Catalog,
    journal: Journal,
    tokens: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Session>>,
    ids: AtomicU64,
}

impl fmt::Debug for OneKeyEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneKeyEmulator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// SplitMix64's mixer: fault decisions and ids from counters.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl OneKeyEmulator {
    /// An emulator serving `world` (copied per country) as `config` says.
    pub fn new(world: &World, config: OneKeyConfig) -> Result<Self, EmulatorError> {
        let bad = |m: String| Err(EmulatorError::Config(m));
        if config.countries.is_empty() {
            return bad("at least one country is needed".into());
        }
        for c in &config.countries {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return bad(format!(
                    "country {c:?} is not an ISO 3166-1 alpha-2 code (two capital letters)"
                ));
            }
        }
        for (name, share) in [
            ("fail-5xx-share", config.fail_5xx_share),
            ("fail-429-share", config.fail_429_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return bad(format!("--{name} must be between 0 and 1, got {share}"));
            }
        }
        if config.fail_5xx_share + config.fail_429_share >= 1.0 {
            return bad("--fail-5xx-share + --fail-429-share must stay below 1".into());
        }
        if config.night == 0 || config.night > crate::generator::MAX_NIGHT {
            return bad(format!(
                "--night must be 1..={}, got {}",
                crate::generator::MAX_NIGHT,
                config.night
            ));
        }
        let journal =
            Journal::new(config.request_log.as_deref()).map_err(|cause| EmulatorError::Log {
                path: config.request_log.clone().unwrap_or_default(),
                cause,
            })?;
        Ok(Self {
            catalog: Catalog::new(world, &config.countries)?,
            config,
            journal,
            tokens: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OneKeyConfig {
        &self.config
    }

    /// The worlds served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The request log and counters.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// A fresh, hard-to-guess id with a prefix.
    fn new_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        format!(
            "{prefix}{:016x}{:016x}",
            mix(self.config.fault_seed ^ n),
            mix(nanos ^ n.rotate_left(17))
        )
    }
}
