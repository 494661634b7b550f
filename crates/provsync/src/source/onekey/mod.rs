//! The `onekey` source: a OneKey-style MDM over REST (`docs/onekey-contract.md`).
//!
//! `open` activates a sync session for the job's countries and mode; `fetch` asks for
//! the packet at a cursor. Cursors are self-contained, so they are the job's
//! checkpoint: a resumed job, or a session re-activated after the MDM expired the old
//! one, continues from the last cursor without fetching earlier packets again.
//! `close` deletes the session (completion, abort, failure). A codes-sync job reads
//! the code lists of each country instead (cursor `codes:<country>`).

mod client;
pub mod config;
mod packet;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use provsync_core::job::Mode;
use provsync_core::model::{Code, EntityKind, Meta, Record, Scope, SourceId};
use provsync_core::source::{BadRecord, Cursor, OpenRequest, Page, Source, SourceError};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use client::{CallError, Client};
pub use config::{OneKeySettings, Secret};

/// Re-activations in a row (without a packet in between) before giving up.
const MAX_REACTIVATIONS: u32 = 3;
/// Prefix of the cursors of a codes-sync run.
const CODES: &str = "codes:";

/// The session the source holds, and how to make another like it.
#[derive(Debug, Default)]
struct SessionState {
    /// The activation body (to re-activate on expiry).
    activation: Option<serde_json::Value>,
    /// The active session.
    id: Option<String>,
    /// Countries of a codes-sync run, in order.
    code_countries: Vec<String>,
}

/// Reads provider data and code lists from a OneKey-style MDM.
pub struct OneKeySource {
    settings: OneKeySettings,
    client: Client,
    state: Mutex<SessionState>,
    /// The session's `packetCount` (0: not told) and the highest packet number
    /// read, for the progress display's share and ETA.
    packets: (AtomicU64, AtomicU64),
}

impl std::fmt::Debug for OneKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneKeySource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: CallError) -> SourceError {
    match e.status() {
        Some(401 | 403) => SourceError::Refused(e.to_string()),
        Some(400 | 404 | 409) => SourceError::Config(e.to_string()),
        _ => SourceError::Unavailable(e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Activated {
    session_id: String,
    first_cursor: String,
    /// Packets the session serves (optional in the contract).
    #[serde(default)]
    packet_count: Option<u64>,
}

#[derive(Deserialize)]
struct CountryList {
    countries: Vec<CountryEntry>,
}

#[derive(Deserialize)]
struct CountryEntry {
    code: String,
}

#[derive(Deserialize)]
struct CodeLists {
    country: String,
    lists: Vec<CodeList>,
}

#[derive(Deserialize)]
struct CodeList {
    list: String,
    codes: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct WireCode {
    code: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

impl OneKeySource {
    /// A source for the MDM the settings name; checks them first.
    pub fn new(settings: OneKeySettings) -> Result<Self, SourceError> {
        settings.validate()?;
        let client = Client::new(&settings)?;
        Ok(Self {
            settings,
            client,
            state: Mutex::new(SessionState::default()),
            packets: (AtomicU64::new(0), AtomicU64::new(0)),
        })
    }

    fn activation(&self, req: &OpenRequest) -> Result<serde_json::Value, SourceError> {
        let countries: Vec<&str> = req.scope.iter().map(|s| s.as_str()).collect();
        let packet_size = self
            .settings
            .packet_size
            .unwrap_or(req.page_size.min(u32::MAX as usize) as u32);
        let mut body = json!({"countries": countries, "packetSize": packet_size});
        match req.mode {
            Mode::Full => body["mode"] = json!("full"),
            Mode::Delta => {
                body["mode"] = json!("delta");
                match (self.settings.since_night, self.settings.since) {
                    (Some(n), None) => body["sinceNight"] = json!(n),
                    (None, Some(t)) => body["since"] = json!(t),
                    _ => {
                        return Err(SourceError::Config(
                            "source.since_night (or source.since) is required for mode = \"delta\""
                                .into(),
                        ))
                    }
                }
            }
        }
        Ok(body)
    }

    /// Activates a session with `body`; returns its id and first cursor.
    async fn activate(&self, body: &serde_json::Value) -> Result<Activated, SourceError> {
        let bytes = self
            .client
            .call(
                Method::POST,
                "/api/v1/sync-sessions",
                &[],
                Some(body),
                "activate sync session",
            )
            .await
            .map_err(unavailable)?;
        let a: Activated = serde_json::from_slice(&bytes).map_err(|e| {
            SourceError::Unavailable(format!("activate sync session: unexpected answer: {e}"))
        })?;
        tracing::info!(session = %a.session_id, "OneKey sync session activated");
        Ok(a)
    }

    /// The session to fetch with: the current one, or a new one like it.
    async fn session(&self, fresh: bool) -> Result<String, SourceError> {
        let mut st = self.state.lock().await;
        if let (Some(id), false) = (&st.id, fresh) {
            return Ok(id.clone());
        }
        let body = st.activation.clone().ok_or_else(|| {
            SourceError::Config("fetch before open: no sync session to continue".into())
        })?;
        let a = self.activate(&body).await?;
        st.id = Some(a.session_id.clone());
        Ok(a.session_id)
    }

    async fn fetch_packet(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let mut fresh = false;
        let mut reactivations = 0;
        let mut malformed = 0;
        loop {
            let session = self.session(fresh).await?;
            fresh = false;
            let path = format!("/api/v1/sync-sessions/{session}/packets");
            let result = self
                .client
                .call(
                    Method::GET,
                    &path,
                    &[("cursor", &cursor.0)],
                    None,
                    "get next packet",
                )
                .await;
            match result {
                Ok(body) => match packet::read_packet(&body) {
                    Ok((page, packet_no)) => {
                        self.packets.1.fetch_max(packet_no, Ordering::Relaxed);
                        return Ok(page);
                    }
                    // A cut or garbled body: ask again, a few times.
                    Err(e) if malformed + 1 < self.settings.max_attempts => {
                        malformed += 1;
                        tracing::warn!(error = %e, "unreadable packet: fetching it again");
                    }
                    Err(e) => {
                        return Err(SourceError::Unavailable(format!(
                            "packet at cursor {}: {e}",
                            cursor.0
                        )))
                    }
                },
                Err(e)
                    if matches!(e.code(), Some("SESSION_EXPIRED" | "SESSION_NOT_FOUND"))
                        && reactivations < MAX_REACTIVATIONS =>
                {
                    reactivations += 1;
                    tracing::info!(error = %e, "session gone: activating a new one to continue from the cursor");
                    fresh = true;
                }
                Err(e) if e.code() == Some("INVALID_CURSOR") => {
                    return Err(SourceError::BadCursor(format!("{}: {e}", cursor.0)))
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    async fn countries(&self, scope: &[Scope]) -> Result<Vec<String>, SourceError> {
        if !scope.is_empty() {
            return Ok(scope.iter().map(|s| s.0.clone()).collect());
        }
        let bytes = self
            .client
            .call(
                Method::GET,
                "/api/v1/countries",
                &[],
                None,
                "list countries",
            )
            .await
            .map_err(unavailable)?;
        let list: CountryList = serde_json::from_slice(&bytes).map_err(|e| {
            SourceError::Unavailable(format!("list countries: unexpected answer: {e}"))
        })?;
        Ok(list.countries.into_iter().map(|c| c.code).collect())
    }

    async fn fetch_codes(&self, country: &str) -> Result<Page, SourceError> {
        let path = format!("/api/v1/countries/{country}/code-lists");
        let what = format!("code lists of {country}");
        let bytes = self
            .client
            .call(Method::GET, &path, &[], None, &what)
            .await
            .map_err(unavailable)?;
        let lists: CodeLists = serde_json::from_slice(&bytes)
            .map_err(|e| SourceError::Unavailable(format!("{what}: unexpected answer: {e}")))?;
        let mut page = Page {
            records: Vec::new(),
            bad: Vec::new(),
            next: None,
            snapshot: None,
        };
        for list in lists.lists {
            for (i, raw) in list.codes.iter().enumerate() {
                match serde_json::from_str::<WireCode>(raw.get()) {
                    Ok(c) if !c.code.is_empty() => page.records.push(Record::Code(Code {
                        meta: Meta {
                            source_id: SourceId(c.code.clone()),
                            scope: Scope(lists.country.clone()),
                            modified_at: None,
                        },
                        list: list.list.clone(),
                        code: c.code,
                        labels: c.labels,
                        active: c.active,
                    })),
                    other => page.bad.push(BadRecord {
                        kind: Some(EntityKind::Code),
                        source_id: None,
                        position: format!("code lists of {country}: {}[{i}]", list.list),
                        reason: match other {
                            Err(e) => e.to_string(),
                            Ok(_) => "code is empty".into(),
                        },
                    }),
                }
            }
        }
        let st = self.state.lock().await;
        let at = st.code_countries.iter().position(|c| c == country);
        page.next = at
            .and_then(|i| st.code_countries.get(i + 1))
            .map(|c| Cursor(format!("{CODES}{c}")));
        Ok(page)
    }
}

#[async_trait]
impl Source for OneKeySource {
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        let body = self.activation(req)?;
        let a = self.activate(&body).await?;
        self.packets
            .0
            .store(a.packet_count.unwrap_or(0), Ordering::Relaxed);
        let mut st = self.state.lock().await;
        st.activation = Some(body);
        st.id = Some(a.session_id);
        Ok(Cursor(a.first_cursor))
    }

    async fn open_codes(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        let countries = self.countries(&req.scope).await?;
        let first = countries
            .first()
            .map(|c| Cursor(format!("{CODES}{c}")))
            .ok_or_else(|| SourceError::Config("the MDM serves no country".into()))?;
        self.state.lock().await.code_countries = countries;
        Ok(first)
    }

    fn position(&self, next: &Cursor) -> Option<(u64, u64)> {
        let total = self.packets.0.load(Ordering::Relaxed);
        let done = self.packets.1.load(Ordering::Relaxed);
        (total > 0 && !next.0.starts_with(CODES)).then_some((done.min(total), total))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        match cursor.0.strip_prefix(CODES) {
            Some(country) => self.fetch_codes(country).await,
            None => self.fetch_packet(cursor).await,
        }
    }

    async fn close(&self) -> Result<(), SourceError> {
        let id = self.state.lock().await.id.take();
        let Some(id) = id else { return Ok(()) };
        let path = format!("/api/v1/sync-sessions/{id}");
        match self
            .client
            .call(Method::DELETE, &path, &[], None, "delete sync session")
            .await
        {
            Ok(_) => {
                tracing::info!(session = %id, "OneKey sync session deleted");
                Ok(())
            }
            // Already gone (expired): nothing to end.
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
