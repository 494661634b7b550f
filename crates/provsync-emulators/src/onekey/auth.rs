//! Authentication: the OAuth2 client-credentials token endpoint, and the check of a
//! request's bearer token or API key.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::json;

use super::server::{error, Emu};
use super::OneKeyEmulator;

/// Checks the bearer token or API key of a request.
pub(super) fn authorize(emu: &OneKeyEmulator, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let unauthorized = |code: &str, msg: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, code, msg);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Box::new(r)
    };
    if let Some(key) = headers.get("x-api-key") {
        return if key.as_bytes() == emu.config().api_key.as_bytes() {
            Ok(())
        } else {
            Err(unauthorized("INVALID_API_KEY", "the API key is not valid"))
        };
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "UNAUTHORIZED",
            "send `Authorization: Bearer <token>` (from POST /oauth2/token) or `X-API-Key`",
        ));
    };
    let token = auth
        .to_str()
        .ok()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let expires = emu.tokens.lock().ok().and_then(|t| t.get(token).copied());
    match expires {
        Some(at) if at > Instant::now() => Ok(()),
        Some(_) => Err(unauthorized(
            "TOKEN_EXPIRED",
            "the access token has expired; request a new one",
        )),
        None => Err(unauthorized("INVALID_TOKEN", "unknown access token")),
    }
}

/// `POST /oauth2/token`: OAuth2 client credentials (form fields or HTTP Basic).
pub(super) async fn token(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, code: &str, msg: &str| {
        (
            status,
            Json(json!({"error": error, "error_description": msg, "code": code, "message": msg})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "UNSUPPORTED_GRANT_TYPE",
            "grant_type must be client_credentials",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(decode_basic);
    let (id, secret) = match (&basic, form.get("client_id"), form.get("client_secret")) {
        (Some((i, s)), _, _) => (i.as_str(), s.as_str()),
        (None, Some(i), Some(s)) => (i.as_str(), s.as_str()),
        _ => ("", ""),
    };
    let cfg = emu.config();
    if id != cfg.client_id || secret != cfg.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "INVALID_CLIENT",
            "client authentication failed",
        );
    }
    let token = emu.new_id("tok_");
    if let Ok(mut tokens) = emu.tokens.lock() {
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(token.clone(), now + cfg.token_ttl);
    }
    emu.journal()
        .counters
        .tokens
        .fetch_add(1, Ordering::Relaxed);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": cfg.token_ttl.as_secs(),
    }))
    .into_response()
}

/// `user:password` of an HTTP Basic header.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.trim_end_matches('=').bytes() {
        bits = bits << 6 | A.iter().position(|a| *a == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    let text = String::from_utf8(out).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}
