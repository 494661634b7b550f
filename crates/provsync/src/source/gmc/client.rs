//! The SOAP 1.1 client of `GetDoctorsForDB`: a templated envelope, timeouts, and
//! retries with backoff on transport errors and ReturnCode 98.

use std::sync::OnceLock;
use std::time::Duration;

use provsync_core::source::SourceError;
use tokio::io::AsyncBufRead;
use tokio_util::io::StreamReader;

use super::config::{Credentials, GmcConfig};
use super::response::{self, ParseError, Response};
use crate::retry::Backoff;

const ACTION: &str = "https://webcache.gmc-uk.org/GMCWebServices/GetDoctorsForDB";

/// The request envelope; every value is XML-escaped.
fn envelope(body: &str, request_id: &str, internal_user: &str, c: &Credentials) -> String {
    use quick_xml::escape::escape as e;
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\
<soap:Body><GetDoctorsForDB xmlns=\"https://webcache.gmc-uk.org/GMCWebServices/\">\
<request><DesignatedBodyCode>{}</DesignatedBodyCode><ClientRequestID>{}</ClientRequestID>\
<InternalUser>{}</InternalUser></request><Username>{}</Username><Password>{}</Password>\
</GetDoctorsForDB></soap:Body></soap:Envelope>",
        e(body),
        e(request_id),
        e(internal_user),
        e(&c.username),
        e(&c.password)
    )
}

/// What one call ended with, before retries are decided.
enum Attempt {
    Done(Response),
    Transient(String),
}

/// Why a designated body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The account is refused (ReturnCode 99: name, password or caller IP): every
    /// body would answer the same, so no new request is sent; calls in flight end,
    /// and the run fails once the bodies that did answer are loaded and swept.
    Refused(String),
    /// Only this body failed (81 no access, 80 unknown body, a malformed answer or a
    /// fault, retries exhausted, not asked after a refusal): the job goes on with
    /// the others, and this body is not reconciled.
    Body(String),
}

/// A `GetDoctorsForDB` client for one job.
pub struct Client {
    http: reqwest::Client,
    config: GmcConfig,
    credentials: Credentials,
    /// The first refusal (ReturnCode 99) any call met: once set, no request is sent.
    refusal: OnceLock<String>,
}

/// The meaning of a non-zero ReturnCode, for error messages.
pub fn return_code_meaning(code: &str) -> &'static str {
    match code {
        "70" => "invalid GMC number",
        "80" => "invalid designated body",
        "81" => "the account has no access to this designated body",
        "98" => "GMC internal error",
        "99" => "invalid credentials (user name, password or caller IP address)",
        "140" => "doctor not associated with the designated body",
        _ => "unknown return code",
    }
}

impl Client {
    /// A client with the job's settings and credentials.
    pub fn new(config: GmcConfig, credentials: Credentials) -> Result<Self, SourceError> {
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                SourceError::Config(format!(
                    "source gmc: HTTP client: {}",
                    crate::errors::http(&e)
                ))
            })?;
        Ok(Self {
            http,
            config,
            credentials,
            refusal: OnceLock::new(),
        })
    }

    async fn attempt(&self, body: &str) -> Result<Attempt, Failure> {
        let request_id = uuid::Uuid::now_v7().to_string();
        let xml = envelope(
            body,
            &request_id,
            &self.config.internal_user,
            &self.credentials,
        );
        let sent = self
            .http
            .post(&self.config.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{ACTION}\""))
            .body(xml)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // The error text names the URL, never the envelope (which holds the password).
            Err(e) => {
                return Ok(Attempt::Transient(format!(
                    "transport: {}",
                    crate::errors::http(&e)
                )))
            }
        };
        let status = resp.status();
        let cap = self.config.max_answer_bytes;
        if let Some(n) = resp.content_length().filter(|n| *n > cap) {
            return Err(too_big(body, cap, Some(n)));
        }
        let parsed = response::parse(capped_body(resp, cap)).await;
        // Bytes that stopped coming (the cap, the connection) decide before the XML does.
        if let Err(ParseError::Read(e)) = &parsed {
            return read_failure(body, cap, e);
        }
        if !status.is_success() {
            return judge_error_status(body, status, parsed.ok().and_then(|r| r.fault));
        }
        let parsed = parsed
            .map_err(|e| Failure::Body(format!("designated body {body}: HTTP {status}, {e}")))?;
        if let Some(fault) = &parsed.fault {
            return Err(Failure::Body(format!(
                "designated body {body}: HTTP {status}, SOAP fault: {fault}"
            )));
        }
        if parsed.return_code == "98" {
            return Ok(Attempt::Transient(format!(
                "ReturnCode 98 ({})",
                return_code_meaning("98")
            )));
        }
        Ok(Attempt::Done(parsed))
    }

    /// Whether GMC has refused the credentials on a call of this client.
    pub fn refused(&self) -> bool {
        self.refusal.get().is_some()
    }

    /// Why `body` is not asked, when GMC has refused the credentials on a call:
    /// further calls with refused credentials are pointless and may lock the account.
    pub fn not_asked(&self, body: &str) -> Option<String> {
        self.refusal.get().map(|refusal| {
            format!("designated body {body}: not asked, the credentials were refused ({refusal})")
        })
    }

    /// The doctors of one designated body: a complete, successful response (ReturnCode
    /// 0 with a list), or an error naming the body and the cause. A call is sent once
    /// started; after a refusal (99) on any body it is not retried.
    pub async fn doctors_for(&self, body: &str) -> Result<Response, Failure> {
        let mut retries = self.retry().start();
        loop {
            let why = match self.attempt(body).await? {
                Attempt::Done(r) => {
                    let checked = check(body, r);
                    if let Err(Failure::Refused(why)) = &checked {
                        // The first refusal stops every new request of this client.
                        let _ = self.refusal.set(why.clone());
                    }
                    return checked;
                }
                Attempt::Transient(why) => why,
            };
            let Some(delay) = retries.next(None) else {
                return Err(Failure::Body(format!(
                    "designated body {body}: {why} (after {} retries)",
                    self.config.retries
                )));
            };
            tracing::warn!(body, attempt = retries.failed(), %why, "gmc call failed; retrying");
            tokio::time::sleep(delay).await;
            if let Some(refusal) = self.refusal.get() {
                return Err(Failure::Body(format!(
                    "designated body {body}: {why}, not retried: the credentials were refused ({refusal})"
                )));
            }
        }
    }

    /// The retry policy: `retries` after the first attempt, the delay doubling from
    /// `backoff_ms` without jitter or cap (as documented for `source.backoff_ms`).
    fn retry(&self) -> Backoff {
        Backoff {
            attempts: self.config.retries.saturating_add(1),
            base: Duration::from_millis(self.config.backoff_ms),
            max: Duration::MAX,
            jitter: 0.0,
        }
    }
}

/// Why an answer's bytes stopped coming.
#[derive(Debug, thiserror::Error)]
enum Read {
    /// More than the cap arrived.
    #[error("the answer is over the cap")]
    TooBig,
    /// The connection failed.
    #[error(transparent)]
    Transport(reqwest::Error),
}

/// The failure of an answer over `max_answer_bytes`, with its size when announced.
fn too_big(body: &str, cap: u64, size: Option<u64>) -> Failure {
    Failure::Body(format!(
        "designated body {body}: the answer is larger than source.max_answer_bytes ({cap} bytes){}",
        size.map(|n| format!(": {n} bytes")).unwrap_or_default()
    ))
}

/// An answer whose bytes stopped coming: over the cap fails the body, a transport
/// error is retried.
fn read_failure(body: &str, cap: u64, e: &std::io::Error) -> Result<Attempt, Failure> {
    match e.get_ref().and_then(|e| e.downcast_ref::<Read>()) {
        Some(Read::TooBig) => Err(too_big(body, cap, None)),
        Some(Read::Transport(e)) => Ok(Attempt::Transient(format!(
            "reading the answer: {}",
            crate::errors::http(e)
        ))),
        None => Ok(Attempt::Transient(format!("reading the answer: {e}"))),
    }
}

/// An answer's body as a reader of its chunks as they arrive, failing with
/// [`Read::TooBig`] on the chunk that takes it past `cap` bytes, so the answer is
/// parsed without being held whole and never read past the cap.
fn capped_body(resp: reqwest::Response, cap: u64) -> impl AsyncBufRead + Unpin {
    let chunks = futures::stream::try_unfold((resp, 0u64), move |(mut resp, read)| async move {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| std::io::Error::other(Read::Transport(e)))?;
        let Some(chunk) = chunk else {
            return Ok(None);
        };
        let read = read + chunk.len() as u64;
        if read > cap {
            return Err(std::io::Error::other(Read::TooBig));
        }
        Ok(Some((chunk, (resp, read))))
    });
    StreamReader::new(Box::pin(chunks))
}

/// A non-2xx answer, judged by its status, whatever its body parsed to: a SOAP
/// fault (SOAP 1.1 sends faults with HTTP 500) fails the body; any other answer (an
/// HTML error page from a proxy or load balancer) is retried when the status says a
/// retry can help (5xx, 408, 429), and fails the body otherwise.
fn judge_error_status(
    body: &str,
    status: reqwest::StatusCode,
    fault: Option<String>,
) -> Result<Attempt, Failure> {
    if let Some(fault) = fault {
        return Err(Failure::Body(format!(
            "designated body {body}: HTTP {status}, SOAP fault: {fault}"
        )));
    }
    let retry = status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    if retry {
        Ok(Attempt::Transient(format!("HTTP {status}")))
    } else {
        Err(Failure::Body(format!(
            "designated body {body}: HTTP {status}"
        )))
    }
}

fn check(body: &str, r: Response) -> Result<Response, Failure> {
    let code = r.return_code.as_str();
    let why = || {
        format!(
            "designated body {body}: ReturnCode {code} ({}), GMCRequestID {:?}",
            return_code_meaning(code),
            r.gmc_request_id
        )
    };
    match code {
        "0" if r.has_list => Ok(r),
        "0" => Err(Failure::Body(format!(
            "designated body {body}: ReturnCode 0 without a Doctors list"
        ))),
        "" => Err(Failure::Body(format!(
            "designated body {body}: the response has no ReturnCode"
        ))),
        "99" => Err(Failure::Refused(why())),
        _ => Err(Failure::Body(why())),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn the_envelope_escapes_values() {
        let c = Credentials {
            username: "a<b".into(),
            password: "p&q".into(),
        };
        let x = envelope("1-X", "r", "me", &c);
        assert!(x.contains("<Username>a&lt;b</Username>"), "{x}");
        assert!(x.contains("<Password>p&amp;q</Password>"), "{x}");
    }

    #[test]
    fn credentials_refusal_names_the_body_and_code() {
        let r = Response {
            return_code: "99".into(),
            ..Response::default()
        };
        let Failure::Refused(s) = check("1-AIIDHJ", r).unwrap_err() else {
            panic!("99 refuses the account, not one body")
        };
        assert!(s.contains("1-AIIDHJ") && s.contains("99"), "{s}");
    }

    #[test]
    fn no_access_to_one_body_fails_that_body_only() {
        let r = Response {
            return_code: "81".into(),
            ..Response::default()
        };
        let Failure::Body(why) = check("1-AIIDWA", r).unwrap_err() else {
            panic!("81 is about one body")
        };
        assert!(
            why.contains("designated body 1-AIIDWA: ReturnCode 81"),
            "{why}"
        );
    }

    #[test]
    fn success_without_a_list_is_not_an_empty_body() {
        let r = Response {
            return_code: "0".into(),
            ..Response::default()
        };
        assert!(check("1-X", r).is_err());
    }

    /// Serves `app` as a fake GMC; returns its URL.
    pub(in crate::source::gmc) async fn fake_gmc(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// A client of a fake GMC serving `app`, with these extra settings.
    async fn client_of(app: axum::Router, settings: &str) -> Client {
        let url = fake_gmc(app).await;
        let config: GmcConfig = toml::from_str(&format!("url = \"{url}\"\n{settings}\n")).unwrap();
        let credentials = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        Client::new(config, credentials).unwrap()
    }

    /// An HTML 503 page (a proxy in front of GMC) is retried, and the body answers.
    #[tokio::test]
    async fn an_html_503_is_retried_until_the_body_answers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    use axum::response::IntoResponse;
                    if n < 2 {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [("content-type", "text/html")],
                            "<html><body><h1>503 Service Unavailable</h1></body></html>",
                        )
                            .into_response()
                    } else {
                        ([("content-type", "text/xml")], OK_ANSWER).into_response()
                    }
                }
            }),
        );
        let client = client_of(app, "retries = 3\nbackoff_ms = 1").await;
        let answer = client
            .doctors_for("1-X")
            .await
            .map_err(|e| format!("{e:?}"));
        assert_eq!(answer.unwrap().doctors.len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// An answer over `max_answer_bytes` fails that body, naming the cap, whether
    /// the server announced its size or streamed it.
    #[tokio::test]
    async fn an_answer_over_the_cap_fails_the_body_with_its_size() {
        for chunked in [false, true] {
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(move || async move {
                    let big = OK_ANSWER.replace(
                        "<ReturnCode>",
                        &format!("<!-- {} --><ReturnCode>", "x".repeat(10_000)),
                    );
                    if chunked {
                        // Small chunks: the parser has read a part when the cap is met.
                        let parts: Vec<_> = big
                            .as_bytes()
                            .chunks(64)
                            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                            .collect();
                        axum::body::Body::from_stream(futures::stream::iter(parts))
                    } else {
                        axum::body::Body::from(big)
                    }
                }),
            );
            let client = client_of(app, "retries = 0\nmax_answer_bytes = 4096").await;
            let Err(Failure::Body(why)) = client.doctors_for("1-X").await else {
                panic!("an answer over the cap must fail its body")
            };
            assert!(
                why.starts_with(
                    "designated body 1-X: the answer is larger than source.max_answer_bytes (4096 bytes)"
                ),
                "{why}"
            );
            assert_eq!(why.contains(": 10"), !chunked, "{why}");
        }
    }

    #[test]
    fn a_client_error_status_fails_the_body_without_a_retry() {
        let r = judge_error_status("1-X", reqwest::StatusCode::FORBIDDEN, None);
        assert!(
            matches!(r, Err(Failure::Body(why)) if why == "designated body 1-X: HTTP 403 Forbidden")
        );
    }

    #[tokio::test]
    async fn retries_double_from_backoff_ms_without_jitter() {
        let client = client_of(axum::Router::new(), "retries = 2\nbackoff_ms = 500").await;
        let mut r = client.retry().start();
        assert_eq!(r.next(None), Some(Duration::from_millis(500)));
        assert_eq!(r.next(None), Some(Duration::from_millis(1000)));
        assert_eq!(r.next(None), None, "two retries, three attempts");
    }

    const OK_ANSWER: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetDoctorsForDBResponse xmlns="https://webcache.gmc-uk.org/GMCWebServices/"><GetDoctorsForDBResult><Doctors><GetDoctorsForDBResponse_Doctor><GMCReferenceNumber>1234567</GMCReferenceNumber></GetDoctorsForDBResponse_Doctor></Doctors><ReturnCode>0</ReturnCode></GetDoctorsForDBResult></GetDoctorsForDBResponse></soap:Body></soap:Envelope>"#;
}
