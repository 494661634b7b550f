//! Bearer tokens: configured as SHA-256 hashes with a role; the presented token is
//! hashed and compared with every configured hash in constant time. The request log
//! names the token, never shows it. Refused tokens are counted per client address
//! ([`super::throttle`]), and every state-changing request is written to the audit
//! log (target `provsync::api::audit`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{AboutJob, ApiError, ErrorCode, Forbidden};
use super::AppState;
use crate::config::{Role, Token};

/// Who is calling: the token's name and role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Caller {
    /// Refuses with `forbidden` unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "token {:?} has role {}; this route needs {role}",
                    self.name, self.role
                ),
            ))
        }
    }
}

/// Equality of two hashes in time independent of where they differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Why a request was refused before reaching its route (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No usable `Authorization: Bearer` header.
    NoToken,
    /// A token no `[[tokens]]` entry has.
    UnknownToken,
}

impl Refused {
    /// The reason for the log (it never quotes the header).
    pub fn reason(self) -> &'static str {
        match self {
            Refused::NoToken => "no token presented",
            Refused::UnknownToken => "unknown token",
        }
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let message = match r {
            Refused::NoToken => "an `Authorization: Bearer <token>` header is required",
            Refused::UnknownToken => "unknown token",
        };
        ApiError::new(ErrorCode::Unauthorized, message)
    }
}

/// The caller a request's `Authorization: Bearer` header names.
pub fn authenticate(tokens: &[Token], headers: &HeaderMap) -> Result<Caller, Refused> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Refused::NoToken)?;
    let value = value.to_str().map_err(|_| Refused::NoToken)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Refused::NoToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refused::NoToken);
    }
    let presented = crate::config::sha256(token);
    // Compare with every configured hash (no early exit on a match).
    let mut found: Option<&Token> = None;
    for t in tokens {
        if ct_eq(&t.hash, &presented) {
            found = Some(t);
        }
    }
    found
        .map(|t| Caller {
            name: t.name.clone(),
            role: t.role,
        })
        .ok_or(Refused::UnknownToken)
}

/// Paths served without a token (also in the OpenAPI document: see `openapi.rs`).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json")
}

/// 429 `too_many_requests` with `Retry-After`: the address spent its budget of
/// refused tokens.
fn too_many(wait: Duration) -> Response {
    let secs = super::throttle::retry_after_secs(wait);
    let mut resp = ApiError::new(
        ErrorCode::TooManyRequests,
        format!("too many refused tokens from this address: try again in {secs} s"),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Methods that change state (every `POST` route): their requests are audited.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Authenticates every request but the health routes and the OpenAPI document
/// (answering 429 without looking at the token when the client's address has
/// spent its refused-token budget), logs each request with method, path, status,
/// latency and token name (and each refusal with its reason), audits each
/// state-changing one, and counts it in the HTTP metrics by route template.
pub async fn auth_and_log(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route template keeps the metric's label set small (no ids, no 404 paths).
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut token_name: Option<String> = None;
    let mut refused: Option<String> = None;
    let presents_token = req.headers().contains_key(header::AUTHORIZATION);
    let resp = if is_public(&path) {
        next.run(req).await
    } else if let Some(wait) = peer
        .filter(|_| presents_token)
        .and_then(|p| state.throttle.blocked(p))
    {
        refused = Some("too many refused tokens from this address".to_owned());
        too_many(wait)
    } else {
        match authenticate(&state.tokens, req.headers()) {
            Ok(caller) => {
                token_name = Some(caller.name.clone());
                req.extensions_mut().insert(caller);
                next.run(req).await
            }
            Err(r) => {
                refused = Some(r.reason().to_owned());
                // Only a wrong token is a guess; a missing one is not.
                if let (Refused::UnknownToken, Some(p)) = (r, peer) {
                    if let Some(wait) = state.throttle.failed(p) {
                        tracing::warn!(
                            target: "provsync::api::auth",
                            peer = %p,
                            retry_after_s = super::throttle::retry_after_secs(wait),
                            "too many refused tokens: this address gets 429 until its budget refills"
                        );
                    }
                }
                ApiError::from(r).into_response()
            }
        }
    };
    let peer_shown = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
    if let Some(Forbidden(reason)) = resp.extensions().get::<Forbidden>() {
        refused = Some(reason.clone());
    }
    // Refusals name the route, the token's name if it has one, and the reason;
    // never the presented token nor its hash.
    if let Some(reason) = refused {
        tracing::info!(
            target: "provsync::api::auth",
            method = %method,
            route = %route,
            status = resp.status().as_u16(),
            token = token_name.as_deref().unwrap_or("-"),
            peer = %peer_shown,
            %reason,
            "token refused"
        );
    }
    // Who asked for what and what came of it, refusals included; the token by
    // its name only (abort keeps no actor in the store: this is its record).
    if changes_state(&method) && !is_public(&path) {
        tracing::info!(
            target: "provsync::api::audit",
            method = %method,
            route = %route,
            path = %path,
            token = %token_name.as_deref().unwrap_or("-"),
            job = %resp.extensions().get::<AboutJob>().map_or("-", |j| j.0.as_str()),
            status = resp.status().as_u16(),
            code = %resp.extensions().get::<ErrorCode>().map_or_else(|| "-".to_owned(), |c| c.name()),
            peer = %peer_shown,
            "audit"
        );
    }
    tracing::info!(
        target: "provsync::api::request",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        token = token_name.as_deref().unwrap_or("-"),
        "request"
    );
    crate::metrics::http_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{decode_sha256, sha256_hex};
    use axum::http::HeaderValue;

    fn tokens() -> Vec<Token> {
        vec![Token {
            name: "reader".into(),
            hash: decode_sha256(&sha256_hex("s3cret")).unwrap(),
            role: Role::Read,
        }]
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_tokens_resolve_by_hash() {
        let c = authenticate(&tokens(), &headers("Bearer s3cret")).unwrap();
        assert_eq!(c.name, "reader");
        assert!(c.require(Role::Read).is_ok());
        assert_eq!(
            c.require(Role::Operate).unwrap_err().code,
            ErrorCode::Forbidden
        );
        let e = authenticate(&tokens(), &headers("Bearer nope")).unwrap_err();
        assert_eq!(e, Refused::UnknownToken);
        assert_eq!(ApiError::from(e).code, ErrorCode::Unauthorized);
        for bad in ["Basic s3cret", "Bearer ", "s3cret"] {
            let e = authenticate(&tokens(), &headers(bad)).unwrap_err();
            assert_eq!(e, Refused::NoToken, "{bad}");
        }
        let e = authenticate(&tokens(), &HeaderMap::new()).unwrap_err();
        assert_eq!(ApiError::from(e).code, ErrorCode::Unauthorized);
    }
}
