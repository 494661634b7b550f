//! The `gmc` source: GMC `GetDoctorsForDB` over SOAP, one page per designated body
//! (the job's scope lists the body codes; the cursor is the body's index).

pub mod client;
pub mod config;
pub mod records;
pub mod response;

use std::sync::Mutex;

use async_trait::async_trait;
use provsync_core::job::Mode;
use provsync_core::model::Scope;
use provsync_core::source::{Cursor, OpenRequest, Page, Source, SourceError};

pub use config::GmcConfig;

/// Reads doctors per designated body from GMC (or its emulator).
pub struct GmcSource {
    config: GmcConfig,
    session: Mutex<Option<Session>>,
}

struct Session {
    bodies: Vec<Scope>,
    client: std::sync::Arc<client::Client>,
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
        let client = client::Client::new(self.config.clone(), credentials)?;
        *self.session.lock().expect("session lock") = Some(Session {
            bodies: req.scope.clone(),
            client: std::sync::Arc::new(client),
        });
        Ok(Cursor("0".into()))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let (body, next, client) = {
            let guard = self.session.lock().expect("session lock");
            let s = guard
                .as_ref()
                .ok_or_else(|| SourceError::Config("source gmc: fetch before open".into()))?;
            let i: usize = cursor
                .0
                .parse()
                .ok()
                .filter(|i| *i < s.bodies.len())
                .ok_or_else(|| SourceError::BadCursor(cursor.0.clone()))?;
            let next = (i + 1 < s.bodies.len()).then(|| Cursor((i + 1).to_string()));
            (s.bodies[i].0.clone(), next, s.client.clone())
        };
        let response = client.doctors_for(&body).await?;
        let mut page = Page {
            records: Vec::with_capacity(1 + 2 * response.doctors.len()),
            bad: Vec::new(),
            next,
        };
        page.records.push(records::body(&body));
        for d in &response.doctors {
            match records::doctor(&body, d) {
                Ok(rs) => page.records.extend(rs),
                Err(b) => page.bad.push(b),
            }
        }
        tracing::info!(
            body,
            doctors = response.doctors.len(),
            gmc_request_id = %response.gmc_request_id,
            "gmc body fetched"
        );
        Ok(page)
    }
}
