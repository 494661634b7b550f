//! The `gmc` source: GMC `GetDoctorsForDB` over SOAP, body by body (the job's scope
//! lists the body codes), each body in pages of at most the job's `page_size`
//! doctors (a doctor's connection and the body's workplace come with them).
//!
//! A body's pages are sent only once GMC has answered it completely (its doctors
//! held compact in the session, made records page by page): the body's last page
//! carries a [`ScopeSnapshot`], complete when GMC answered ReturnCode 0 with a
//! list, and the pages before it are `Part`s of it. A body that could not be read
//! is one empty failed page, so it changes none of its doctors. The engine then
//! reconciles body by body. A refused account (ReturnCode 99) makes that body's
//! page `Refused`: no new request is sent, the calls in flight are still delivered
//! (a body that answered completely is loaded and swept), the bodies not asked get
//! failed pages, and the run ends `failed`.

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
    /// Doctors per page.
    page_size: usize,
    /// Calls in flight, by body index: at most `concurrency` from the body the
    /// engine fetches on, so a body's call overlaps the load of the one before.
    ahead: HashMap<usize, Call>,
    /// The body being paged out, when its last page is still to come.
    held: Option<Held>,
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

/// Where a page starts, as its cursor says: `"<body index>"` for a body's first
/// page, `"<body index>:<offset>:<digest>"` for a later one (the doctors of the
/// body's answer sent in earlier pages, and the fingerprint of that answer).
///
/// The cursor is kept in the page ledger. A run resumed after a crash in the
/// middle of a body asks GMC for the body again and goes on from the offset, but
/// only if the answer is the same list ([`response::Response::digest`]): offsets
/// into another list would skip or repeat doctors, and a skipped doctor would be
/// swept. A body whose answer changed fails for the run instead (its pages loaded
/// before the crash stay loaded, and nobody of it is disconnected).
#[derive(Debug, Clone, PartialEq, Eq)]
struct At {
    body: usize,
    offset: usize,
    digest: Option<String>,
}

impl At {
    /// Reads a cursor of a night of `bodies` bodies.
    fn parse(cursor: &Cursor, bodies: usize) -> Option<At> {
        let mut parts = cursor.0.splitn(3, ':');
        let body = parts.next()?.parse().ok().filter(|i| *i < bodies)?;
        let at = match (parts.next(), parts.next()) {
            (None, _) => At {
                body,
                offset: 0,
                digest: None,
            },
            (Some(offset), Some(digest)) => At {
                body,
                offset: offset.parse().ok()?,
                digest: Some(digest.to_owned()),
            },
            (Some(_), None) => return None,
        };
        Some(at)
    }

    fn cursor(&self) -> Cursor {
        match &self.digest {
            None => Cursor(self.body.to_string()),
            Some(d) => Cursor(format!("{}:{}:{d}", self.body, self.offset)),
        }
    }
}

/// A body GMC answered completely, whose doctors are being sent page by page.
struct Held {
    index: usize,
    code: String,
    /// The answer's fingerprint, carried by the cursors of its later pages.
    digest: String,
    /// Doctors not sent yet; each is dropped once it is records.
    doctors: std::vec::IntoIter<response::RawDoctor>,
    /// Doctors sent (or skipped on a resume) so far.
    offset: usize,
}

impl Held {
    fn new(index: usize, code: String, response: response::Response) -> Self {
        Self {
            index,
            code,
            digest: response.digest(),
            doctors: response.doctors.into_iter(),
            offset: 0,
        }
    }

    /// Goes on from where a page of an earlier answer of the body left, or says why
    /// it cannot: the answer is not the same list.
    fn resume(&mut self, at: &At) -> Result<(), String> {
        let Some(digest) = &at.digest else {
            return Ok(());
        };
        if *digest != self.digest || at.offset > self.doctors.len() {
            return Err(format!(
                "designated body {}: GMC's answer changed since its first {} doctors were loaded (the run was resumed); the body is not reconciled this run",
                self.code, at.offset
            ));
        }
        self.doctors.by_ref().take(at.offset).for_each(drop);
        self.offset = at.offset;
        Ok(())
    }

    /// The next page: the body's workplace first, then up to `size` doctors, each
    /// as its individual and connection. The last page says the body is complete.
    fn page(&mut self, size: usize, next_body: Option<Cursor>) -> Page {
        let size = size.max(1).min(self.doctors.len());
        let mut page = Page {
            records: Vec::with_capacity(1 + 2 * size),
            bad: Vec::new(),
            next: None,
            snapshot: None,
        };
        if self.offset == 0 {
            page.records.push(records::body(&self.code));
        }
        for d in self.doctors.by_ref().take(size) {
            match records::doctor(&self.code, &d) {
                Ok(rs) => page.records.extend(rs),
                Err(b) => page.bad.push(b),
            }
        }
        self.offset += size;
        let scope = Scope(self.code.clone());
        if self.done() {
            page.next = next_body;
            page.snapshot = Some(ScopeSnapshot::Complete { scope });
        } else {
            let at = At {
                body: self.index,
                offset: self.offset,
                digest: Some(self.digest.clone()),
            };
            page.next = Some(at.cursor());
            page.snapshot = Some(ScopeSnapshot::Part { scope });
        }
        page
    }

    fn done(&self) -> bool {
        self.doctors.len() == 0
    }
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

/// A body's answer, or what its (empty) page says of it when GMC did not answer it.
fn answered(
    body: &str,
    answer: Result<response::Response, Failure>,
) -> Result<response::Response, ScopeSnapshot> {
    let scope = Scope(body.to_owned());
    match answer {
        Ok(response) => {
            tracing::info!(
                body,
                doctors = response.doctors.len(),
                gmc_request_id = %response.gmc_request_id,
                "gmc body fetched"
            );
            Ok(response)
        }
        Err(Failure::Refused(reason)) => {
            tracing::error!(body, %reason, "gmc refused the credentials: no new body is asked");
            Err(ScopeSnapshot::Refused { scope, reason })
        }
        Err(Failure::Body(reason)) => {
            tracing::warn!(body, %reason, "gmc body failed: it is not reconciled");
            Err(ScopeSnapshot::Failed { scope, reason })
        }
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
            page_size: req.page_size,
            ahead: HashMap::new(),
            held: None,
        });
        Ok(Cursor("0".into()))
    }

    /// Designated bodies asked of the night's bodies.
    fn position(&self, next: &Cursor) -> Option<(u64, u64)> {
        let guard = self.session.lock().expect("session lock");
        let bodies = guard.as_ref()?.bodies.len() as u64;
        let body = next.0.split(':').next()?.parse::<u64>().ok()?;
        Some((body.min(bodies), bodies))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, SourceError> {
        let (at, body, next_body, page_size, held) = {
            let mut guard = self.session.lock().expect("session lock");
            let s = guard
                .as_mut()
                .ok_or_else(|| SourceError::Config("source gmc: fetch before open".into()))?;
            let at = At::parse(cursor, s.bodies.len())
                .ok_or_else(|| SourceError::BadCursor(cursor.0.clone()))?;
            let i = at.body;
            let next_body = (i + 1 < s.bodies.len()).then(|| Cursor((i + 1).to_string()));
            // The body being sent goes on where its last page ended; any other
            // cursor (a new body, a resume) asks GMC.
            let held = match s.held.take() {
                Some(h) if h.index == i && h.offset == at.offset => Ok(h),
                _ => Err(s.call(i, self.config.concurrency)),
            };
            (at, s.bodies[i].0.clone(), next_body, s.page_size, held)
        };
        let mut held = match held {
            Ok(held) => held,
            Err(call) => {
                let answer = match call {
                    Ok(call) => call.await.map_err(|e| {
                        SourceError::Unavailable(format!("designated body {body}: call task: {e}"))
                    })?,
                    Err(not_asked) => Err(not_asked),
                };
                match answered(&body, answer) {
                    Ok(response) => {
                        let mut held = Held::new(at.body, body.clone(), response);
                        if let Err(reason) = held.resume(&at) {
                            tracing::warn!(body, %reason, "gmc body failed: it is not reconciled");
                            let scope = Scope(body);
                            return Ok(empty_page(
                                next_body,
                                ScopeSnapshot::Failed { scope, reason },
                            ));
                        }
                        held
                    }
                    Err(snapshot) => return Ok(empty_page(next_body, snapshot)),
                }
            }
        };
        let page = held.page(page_size, next_body);
        if !held.done() {
            if let Some(s) = self.session.lock().expect("session lock").as_mut() {
                s.held = Some(held);
            }
        }
        Ok(page)
    }

    async fn close(&self) -> Result<(), SourceError> {
        // Calls started ahead for bodies the job will not fetch (abort, failure) end here.
        self.session.lock().expect("session lock").take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A `GetDoctorsForDB` answer listing doctors `first..first + n`.
    fn answer(first: usize, n: usize) -> String {
        let doctors: String = (first..first + n)
            .map(|i| {
                format!(
                    "<GetDoctorsForDBResponse_Doctor><GMCReferenceNumber>{}</GMCReferenceNumber></GetDoctorsForDBResponse_Doctor>",
                    1_000_000 + i
                )
            })
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDoctorsForDBResponse xmlns="https://webcache.gmc-uk.org/GMCWebServices/"><GetDoctorsForDBResult><Doctors>{doctors}</Doctors><ReturnCode>0</ReturnCode></GetDoctorsForDBResult></GetDoctorsForDBResponse></soap:Body></soap:Envelope>"#
        )
    }

    /// A fake GMC whose every body lists 35 doctors, from the number `first` holds;
    /// counts the calls.
    async fn fake(first: Arc<AtomicUsize>, calls: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                let first = first.load(Ordering::SeqCst);
                async move { ([("content-type", "text/xml")], answer(first, 35)) }
            }),
        );
        client::tests::fake_gmc(app).await
    }

    /// A source over `url` opened on bodies A and B with pages of `page_size`.
    async fn opened(url: &str, dir: &std::path::Path, page_size: usize) -> (GmcSource, Cursor) {
        let secret = dir.join("gmc.secret");
        std::fs::write(&secret, "username=u\npassword=p\n").unwrap();
        let config: GmcConfig = toml::from_str(&format!(
            "url = \"{url}\"\nsecret_file = {:?}\nretries = 0\nconcurrency = 1\n",
            secret.display().to_string()
        ))
        .unwrap();
        let source = GmcSource::new(config);
        let first = source
            .open(&OpenRequest {
                scope: vec![Scope::from("A"), Scope::from("B")],
                mode: Mode::Full,
                page_size,
            })
            .await
            .unwrap();
        (source, first)
    }

    fn doctors(page: &Page) -> Vec<String> {
        page.records
            .iter()
            .filter(|r| r.kind() == EntityKind::Individual)
            .map(|r| r.source_id().0.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_body_larger_than_a_page_comes_in_pages_with_its_snapshot_on_the_last() {
        let (first, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let url = fake(first, calls.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let (source, mut cursor) = opened(&url, dir.path(), 10).await;
        let mut pages = Vec::new();
        loop {
            let page = source.fetch(&cursor).await.unwrap();
            pages.push((cursor.clone(), page.clone()));
            match page.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(pages.len(), 8, "two bodies of 35 doctors, 10 a page");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "each body asked once");
        let a = Scope::from("A");
        let sizes: Vec<usize> = pages[..4].iter().map(|(_, p)| doctors(p).len()).collect();
        assert_eq!(sizes, [10, 10, 10, 5]);
        for (_, p) in &pages[..3] {
            assert_eq!(p.snapshot, Some(ScopeSnapshot::Part { scope: a.clone() }));
        }
        assert_eq!(
            pages[3].1.snapshot,
            Some(ScopeSnapshot::Complete { scope: a })
        );
        assert_eq!(pages[3].1.next, Some(Cursor("1".into())));
        // The body's workplace comes once, on its first page.
        let workplaces = |p: &Page| {
            p.records
                .iter()
                .filter(|r| r.kind() == EntityKind::Workplace)
                .count()
        };
        assert_eq!(workplaces(&pages[0].1), 1);
        assert_eq!(workplaces(&pages[1].1), 0);
        // Progress counts bodies.
        assert_eq!(source.position(&pages[1].0), Some((0, 2)));
        assert_eq!(source.position(&pages[4].0), Some((1, 2)));
    }

    /// A run resumed in the middle of a body asks GMC again and goes on from the
    /// page's offset while the answer is the same list; once it changed, the body
    /// fails (an offset into another list would skip or repeat doctors).
    #[tokio::test]
    async fn a_body_fetched_again_mid_way_goes_on_only_if_its_answer_is_unchanged() {
        let (first, calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let url = fake(first.clone(), calls).await;
        let dir = tempfile::tempdir().unwrap();
        let (source, cursor) = opened(&url, dir.path(), 10).await;
        let one = source.fetch(&cursor).await.unwrap();
        let second = one.next.clone().unwrap();
        let two = source.fetch(&second).await.unwrap();

        let (resumed, _) = opened(&url, dir.path(), 10).await;
        let again = resumed.fetch(&second).await.unwrap();
        assert_eq!(again, two, "the same page from the same cursor");
        assert_eq!(doctors(&again)[0], "1000010");

        first.store(1, Ordering::SeqCst);
        let (changed, _) = opened(&url, dir.path(), 10).await;
        let failed = changed.fetch(&second).await.unwrap();
        assert!(failed.records.is_empty());
        assert_eq!(failed.next, Some(Cursor("1".into())), "on to the next body");
        let Some(ScopeSnapshot::Failed { scope, reason }) = failed.snapshot else {
            panic!("a changed answer fails the body: {failed:?}")
        };
        assert_eq!(scope, Scope::from("A"));
        assert!(reason.contains("answer changed"), "{reason}");
    }

    #[test]
    fn cursors_read_back_as_written() {
        for at in [
            At {
                body: 3,
                offset: 0,
                digest: None,
            },
            At {
                body: 3,
                offset: 2500,
                digest: Some("00ff".into()),
            },
        ] {
            assert_eq!(At::parse(&at.cursor(), 4), Some(at));
        }
        for bad in ["4", "x", "1:10", "1:x:ab"] {
            assert_eq!(At::parse(&Cursor(bad.into()), 4), None, "{bad}");
        }
    }
}
