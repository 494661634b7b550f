//! The `gmc` source: GMC `GetDoctorsForDB` over SOAP, one page per designated body
//! (the job's scope lists the body codes; the cursor is the body's index).
//!
//! Each page is a whole body, so it carries a [`ScopeSnapshot`]: complete when GMC
//! answered ReturnCode 0 with a list, failed (an empty page) when only that body
//! could not be read. The engine then reconciles body by body. A refused account
//! (ReturnCode 99) makes that body's page `Refused`: no new request is sent, the
//! calls in flight are still delivered (a body that answered completely is loaded
//! and swept), the bodies not asked get failed pages, and the run ends `failed`.

pub mod client;
pub mod config;
pub mod records;
pub mod response;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use provsync_core::job::Mode;
use provsync_core::model::{EntityKind, Scope};
use provsync_core::source::{Cursor, OpenRequest, Page, ScopeSnapshot, Source, SourceError};
use tokio::task::JoinHandle;

use client::{Client, Failure};
pub use config::GmcConfig;

/// The answer of one body's call, started ahead of the engine's fetch.
type Call = JoinHandle<Result<response::Response, Failure>>;

/// Reads doctors per designated body from GMC (or its emulator).
pub struct GmcSource {
    config: GmcConfig,
    session: Mutex<Option<Session>>,
}

struct Session {
    bodies: Vec<Scope>,
    client: Arc<Client>,
    /// Calls in flight, by body index: at most `concurrency` from the body the
    /// engine fetches on, so a body's call overlaps the load of the one before.
    ahead: HashMap<usize, Call>,
}

impl Session {
    /// Starts the calls of bodies `i..i + concurrency` not started yet and takes
    /// body `i`'s (a body fetched again, after a crash, is called again). Once GMC
    /// has refused the credentials no call is started: a body not started yet is
    /// not asked, and says why.
    fn call(&mut self, i: usize, concurrency: usize) -> Result<Call, Failure> {
        let end = (i + concurrency.max(1)).min(self.bodies.len());
        for j in i..end {
            if !self.client.refused() && !self.ahead.contains_key(&j) {
                let client = self.client.clone();
                let body = self.bodies[j].0.clone();
                let call = tokio::spawn(async move { client.doctors_for(&body).await });
                self.ahead.insert(j, call);
            }
        }
        match self.ahead.remove(&i) {
            Some(call) => Ok(call),
            None => Err(Failure::Body(
                self.client
                    .not_asked(&self.bodies[i].0)
                    .expect("a body is only left unstarted after a refusal"),
            )),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for call in self.ahead.values() {
            call.abort();
        }
    }
}

impl GmcSource {
    /// A source with these settings (credentials are read when a job opens it).
    pub fn new(config: GmcConfig) -> Self {
        Self {
            config,
            session: Mutex::new(None),
        }
    }
}

/// The page of a body GMC answered: its workplace, then each doctor and connection
/// (each raw doctor is dropped once it is records).
fn body_page(body: &str, response: response::Response, next: Option<Cursor>) -> Page {
    let mut page = Page {
        records: Vec::with_capacity(1 + 2 * response.doctors.len()),
        bad: Vec::new(),
        next,
        snapshot: Some(ScopeSnapshot::Complete {
            scope: Scope(body.to_owned()),
        }),
    };
    page.records.push(records::body(body));
    for d in response.doctors {
        match records::doctor(body, &d) {
            Ok(rs) => page.records.extend(rs),
            Err(b) => page.bad.push(b),
        }
    }
    page
}

/// The page of a body GMC did not answer completely: no records, and why.
fn empty_page(next: Option<Cursor>, snapshot: ScopeSnapshot) -> Page {
    Page {
        records: Vec::new(),
        bad: Vec::new(),
        next,
        snapshot: Some(snapshot),
    }
}

/// A doctor's designated body and connection come with the doctor, so a night's
/// headline counts doctors (see `source::derived_kinds`).
pub const DERIVED_KINDS: [EntityKind; 2] = [EntityKind::Workplace, EntityKind::Activity];

#[async_trait]
impl Source for GmcSource {
    async fn open(&self, req: &OpenRequest) -> Result<Cursor, SourceError> {
        if req.scope.is_empty() {
            return Err(SourceError::Config(
                "source gmc: the job's scope must list the designated body codes (GMC has no call that lists them)".into(),
            ));
        }
        if req.mode != Mode::Full {
            return Err(SourceError::Config(
                "source gmc: GetDoctorsForDB returns whole bodies, so the job's mode must be full"
                    .into(),
            ));
        }
        let credentials = self.config.credentials()?;
        let client = Client::new(self.config.clone(), credentials)?;
        *self.session.lock().expect("session lock") = Some(Session {
            bodies: req.scope.clone(),
            client: Arc::new(client),
            ahead: HashMap::new(),
        });
        Ok(Cursor("0".into()))
    }

    /// Designated bodies asked of the night's bodies.
    fn position(&self, next: &Cursor) -> Option<(u64, u64)> {
        let guard = self.session.lock().expect("session lock");
        let bodies = guard.as_ref()?.bodies.len() as u64;
        Some((next.0.parse::<u64>().ok()?.min(bodies), bodies))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let (body, next, call) = {
            let mut guard = self.session.lock().expect("session lock");
            let s = guard
                .as_mut()
                .ok_or_else(|| SourceError::Config("source gmc: fetch before open".into()))?;
            let i: usize = cursor
                .0
                .parse()
                .ok()
                .filter(|i| *i < s.bodies.len())
                .ok_or_else(|| SourceError::BadCursor(cursor.0.clone()))?;
            let next = (i + 1 < s.bodies.len()).then(|| Cursor((i + 1).to_string()));
            (
                s.bodies[i].0.clone(),
                next,
                s.call(i, self.config.concurrency),
            )
        };
        let answer = match call {
            Ok(call) => call.await.map_err(|e| {
                SourceError::Unavailable(format!("designated body {body}: call task: {e}"))
            })?,
            Err(not_asked) => Err(not_asked),
        };
        match answer {
            Ok(response) => {
                tracing::info!(
                    body,
                    doctors = response.doctors.len(),
                    gmc_request_id = %response.gmc_request_id,
                    "gmc body fetched"
                );
                Ok(body_page(&body, response, next))
            }
            Err(Failure::Refused(reason)) => {
                tracing::error!(body, %reason, "gmc refused the credentials: no new body is asked");
                Ok(empty_page(
                    next,
                    ScopeSnapshot::Refused {
                        scope: Scope(body),
                        reason,
                    },
                ))
            }
            Err(Failure::Body(reason)) => {
                tracing::warn!(body, %reason, "gmc body failed: it is not reconciled");
                Ok(empty_page(
                    next,
                    ScopeSnapshot::Failed {
                        scope: Scope(body),
                        reason,
                    },
                ))
            }
        }
    }

    async fn close(&self) -> Result<(), SourceError> {
        // Calls started ahead for bodies the job will not fetch (abort, failure) end here.
        self.session.lock().expect("session lock").take();
        Ok(())
    }
}
