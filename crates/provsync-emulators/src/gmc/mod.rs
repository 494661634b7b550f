//! The GMC emulator: `GetDoctorsForDB` over SOAP 1.1 and 1.2 (per
//! `FullGMCConnect.wsdl`) from a generated register, with credentials checked and
//! faults injected on request. The WSDL is served at `?WSDL`.

pub mod register;
pub mod soap;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use register::{Doctor, RegisterSpec};
use soap::Version;

/// Path of the service, as on GMC's server.
pub const SERVICE_PATH: &str = "/GMCWebServices/WebService.asmx";
/// The SOAPAction of `GetDoctorsForDB`.
pub const GET_DOCTORS_ACTION: &str = "https://webcache.gmc-uk.org/GMCWebServices/GetDoctorsForDB";
const WSDL: &str = include_str!("FullGMCConnect.wsdl");
const WSDL_ADDRESS: &str = "https://webcache.gmc-uk.org/GMCWebServices/WebService.asmx";

/// Faults the emulator injects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share (0..=1) of calls answered with ReturnCode 98 (GMC internal error).
    pub error_98_share: f64,
    /// Answer every call with ReturnCode 99 (invalid credentials).
    pub always_99: bool,
    /// Bodies answered with ReturnCode 0 and an empty list.
    pub empty_bodies: Vec<String>,
    /// Bodies answered with malformed XML.
    pub malformed_bodies: Vec<String>,
    /// Bodies the account may not see (ReturnCode 81).
    pub denied_bodies: Vec<String>,
    /// Delay before every answer.
    pub delay: Duration,
    /// Bodies answered with a fixed non-zero ReturnCode on every call, so a test can
    /// script one night per body: 80 (invalid body), 81 (no access), 98 (internal
    /// error, every retry) or 99 (credentials refused), the codes GMC's clients meet
    /// (reference gmc.md, "ReturnCode"). A 99 on one body only stands for credentials
    /// that stop working mid-night (a password rotated, the caller IP dropped from the
    /// allow-list); GMC checks them on every call (gmc.md: name, password or IP).
    pub body_codes: Vec<(String, String)>,
    /// Bodies answered with exactly these doctors (GMC numbers of the register's
    /// numbering) instead of the generated night: a test writes each night's lists.
    pub body_lists: Vec<(String, Vec<String>)>,
}

/// The ReturnCodes `Faults::body_codes` may script (reference gmc.md).
pub const SCRIPTED_CODES: [&str; 4] = ["80", "81", "98", "99"];

/// Everything the emulator serves.
#[derive(Debug, Clone)]
pub struct GmcEmulator {
    /// The register.
    pub register: RegisterSpec,
    /// Accepted user name.
    pub username: String,
    /// Accepted password.
    pub password: String,
    /// Injected faults.
    pub faults: Faults,
}

struct Shared {
    emu: GmcEmulator,
    calls: AtomicU64,
}

/// The emulator's routes (service path and `?WSDL`).
pub fn router(emu: GmcEmulator) -> Router {
    let shared = Arc::new(Shared {
        emu,
        calls: AtomicU64::new(0),
    });
    Router::new()
        .route(SERVICE_PATH, get(wsdl).post(call))
        .with_state(shared)
}

/// Serves the emulator on a bound listener until the process ends.
pub async fn serve(emu: GmcEmulator, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(emu)).await
}

/// The URL of the service on a bound address.
pub fn service_url(addr: SocketAddr) -> String {
    format!("http://{addr}{SERVICE_PATH}")
}

async fn wsdl(headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if !q.is_some_and(|q| q.eq_ignore_ascii_case("wsdl")) {
        return (StatusCode::BAD_REQUEST, "GET serves the WSDL: add ?WSDL\n").into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let own = format!("http://{host}{SERVICE_PATH}");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        WSDL.replace(WSDL_ADDRESS, &own),
    )
        .into_response()
}

fn xml(status: StatusCode, version: Version, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, version.content_type())],
        body,
    )
        .into_response()
}

fn version_of(headers: &HeaderMap) -> Version {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/soap+xml") {
        Version::Soap12
    } else {
        Version::Soap11
    }
}

/// The SOAP 1.1 action header, or the `action` parameter of a SOAP 1.2 content type.
fn action_of(headers: &HeaderMap) -> Option<String> {
    if let Some(a) = headers.get("soapaction").and_then(|h| h.to_str().ok()) {
        return Some(a.trim_matches('"').to_owned());
    }
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';')
        .filter_map(|p| p.trim().strip_prefix("action="))
        .map(|a| a.trim_matches('"').to_owned())
        .next()
}

async fn call(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = s.calls.fetch_add(1, Ordering::Relaxed);
    let emu = &s.emu;
    if !emu.faults.delay.is_zero() {
        tokio::time::sleep(emu.faults.delay).await;
    }
    let (version, call) = match soap::parse_call(&body) {
        Ok(c) => c,
        Err(why) => {
            let v = version_of(&headers);
            return xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                v,
                soap::fault(v, true, &why),
            );
        }
    };
    if let Some(action) = action_of(&headers) {
        if !action.is_empty() && action != GET_DOCTORS_ACTION {
            let why = format!("SOAPAction {action:?} is not served by this emulator");
            return xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                version,
                soap::fault(version, true, &why),
            );
        }
    }
    if call.operation != "GetDoctorsForDB" {
        let why = format!(
            "operation {} is not served by this emulator",
            call.operation
        );
        return xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            version,
            soap::fault(version, true, &why),
        );
    }
    let gmc_id = format!("EMU-{n}");
    let answer = |doctors: &[Doctor], code: &str| {
        xml(
            StatusCode::OK,
            version,
            soap::response(version, doctors, &call.client_request_id, &gmc_id, code),
        )
    };
    let body_code = call.designated_body_code.as_str();
    // The ReturnCodes are gmc.md's (99 credentials, 98 internal error, 80 unknown
    // body, 81 no access); which one wins when several apply is not documented
    // (guess: credentials first, then the body, then access).
    if emu.faults.always_99 || call.username != emu.username || call.password != emu.password {
        tracing::info!(body = body_code, "gmc emulator: credentials refused (99)");
        return answer(&[], "99");
    }
    if let Some((_, code)) = emu.faults.body_codes.iter().find(|(b, _)| b == body_code) {
        tracing::info!(body = body_code, code, "gmc emulator: scripted ReturnCode");
        return answer(&[], code);
    }
    let roll = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    if roll < emu.faults.error_98_share {
        return answer(&[], "98");
    }
    let Some(index) = emu.register.body_index(body_code) else {
        return answer(&[], "80");
    };
    if emu.faults.denied_bodies.iter().any(|b| b == body_code) {
        return answer(&[], "81");
    }
    if emu.faults.empty_bodies.iter().any(|b| b == body_code) {
        return answer(&[], "0");
    }
    let doctors = match emu.faults.body_lists.iter().find(|(b, _)| b == body_code) {
        Some((_, numbers)) => numbers
            .iter()
            .filter_map(|gmc| emu.register.doctor_numbered(gmc))
            .collect(),
        None => emu.register.doctors_of(index),
    };
    let mut text = soap::response(version, &doctors, &call.client_request_id, &gmc_id, "0");
    if emu.faults.malformed_bodies.iter().any(|b| b == body_code) {
        // Cut mid-document and close a tag that was never opened.
        text.truncate(text.len() / 2);
        text.push_str("</NotOpened>");
    }
    xml(StatusCode::OK, version, text)
}
