//! Sync sessions: activation, deletion, and the packet at a cursor (with the session
//! expiry and malformed-packet faults).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::auth::authorize;
use super::cursor::{PacketCursor, SyncMode};
use super::packets::BuiltPacket;
use super::server::{error, unknown_country, with_fault, Emu};
use super::{OneKeyEmulator, Session, MAX_PACKET_SIZE};

/// The body of `POST /api/v1/sync-sessions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ActivateBody {
    #[serde(default)]
    countries: Vec<String>,
    mode: String,
    since_night: Option<u32>,
    since: Option<DateTime<Utc>>,
    packet_size: Option<u32>,
}

/// `POST /api/v1/sync-sessions`: activates a sync session.
pub(super) async fn activate(
    State(emu): State<Emu>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let b: ActivateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("request body: {e}"),
            )
        }
    };
    let cfg = emu.config();
    let night = cfg.night;
    let countries: Vec<String> = if b.countries.is_empty() {
        emu.catalog().countries().map(str::to_owned).collect()
    } else {
        b.countries.clone()
    };
    for (i, c) in countries.iter().enumerate() {
        if emu.catalog().world(c).is_none() {
            return unknown_country(&emu, c);
        }
        if countries[..i].contains(c) {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("countries: {c} is given twice"),
            );
        }
    }
    let mode = match b.mode.as_str() {
        "full" => SyncMode::Full,
        "delta" => {
            let since = match (b.since_night, b.since) {
                (Some(n), None) => n,
                (None, Some(t)) => emu
                    .catalog()
                    .world(&countries[0])
                    .map(|w| w.night_at(t))
                    .unwrap_or(0),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        "mode delta needs exactly one of sinceNight or since (RFC 3339)",
                    )
                }
            };
            if since > night {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    format!("sinceNight {since} is after the current night {night}"),
                );
            }
            SyncMode::Delta { since }
        }
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                format!("mode must be full or delta, got {other:?}"),
            )
        }
    };
    let packet_size = b.packet_size.unwrap_or(1_000);
    if packet_size == 0 || packet_size > MAX_PACKET_SIZE {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!("packetSize must be 1..={MAX_PACKET_SIZE}, got {packet_size}"),
        );
    }
    let id = emu.new_id("SES");
    let now = Instant::now();
    let session = Session {
        countries: countries.clone(),
        mode,
        night,
        packet_size,
        expires: now + cfg.session_ttl,
        served: 0,
    };
    if let Ok(mut s) = emu.sessions.lock() {
        s.retain(|_, x| x.expires > now);
        s.insert(id.clone(), session);
    }
    emu.journal()
        .counters
        .sessions_opened
        .fetch_add(1, Ordering::Relaxed);
    let first = PacketCursor::first(countries.clone(), mode, night, packet_size);
    let expires_at = Utc::now()
        + chrono::Duration::from_std(cfg.session_ttl).unwrap_or(chrono::Duration::hours(1));
    let (mode_name, since) = match mode {
        SyncMode::Full => ("full", None),
        SyncMode::Delta { since } => ("delta", Some(since)),
    };
    (
        StatusCode::CREATED,
        Json(json!({
            "sessionId": id,
            "mode": mode_name,
            "countries": countries,
            "night": night,
            "sinceNight": since,
            "packetSize": packet_size,
            "packetCount": emu.catalog().packet_count(&countries, night, packet_size),
            "firstCursor": first.encode(),
            "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
    )
        .into_response()
}

/// `DELETE /api/v1/sync-sessions/{id}`: ends (aborts) a session.
pub(super) async fn delete_session(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let removed = emu.sessions.lock().ok().and_then(|mut s| s.remove(&id));
    match removed {
        Some(_) => {
            emu.journal()
                .counters
                .sessions_deleted
                .fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no active session {id}"),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PacketQuery {
    cursor: Option<String>,
}

/// `GET /api/v1/sync-sessions/{id}/packets?cursor=…`: the packet at a cursor.
pub(super) async fn packet(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PacketQuery>,
) -> Response {
    if let Err(r) = authorize(&emu, &headers) {
        return *r;
    }
    let session = match claim_packet(&emu, &id) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(text) = q.cursor else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "query parameter `cursor` is required (the session's firstCursor, then each nextCursor)",
        );
    };
    let cursor = match PacketCursor::decode(&text) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, "INVALID_CURSOR", e.to_string()),
    };
    if cursor.countries != session.countries
        || cursor.mode != session.mode
        || cursor.packet_size != session.packet_size
    {
        return error(
            StatusCode::CONFLICT,
            "CURSOR_MISMATCH",
            "the cursor belongs to a sync of other countries, mode or packet size than this session",
        );
    }
    if cursor.night != session.night {
        return error(
            StatusCode::CONFLICT,
            "CURSOR_STALE",
            format!(
                "the cursor is of night {} but the MDM now serves night {}; start a new sync",
                cursor.night, session.night
            ),
        );
    }
    let worker = emu.clone();
    let c = cursor.clone();
    let started = Instant::now();
    let built = tokio::task::spawn_blocking(move || worker.catalog().packet(&c)).await;
    let Ok(Some(mut built)) = built else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "the packet could not be built",
        );
    };
    let counters = &emu.journal().counters;
    counters
        .build_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let malformed = emu.config().malformed_packet == Some(cursor.packet_no);
    if malformed {
        corrupt(&mut built);
    }
    let body = render(&id, &cursor, &text, &built);
    counters.packets.fetch_add(1, Ordering::Relaxed);
    counters
        .records
        .fetch_add(built.records() as u64, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let r = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    if malformed {
        with_fault(r, "malformed")
    } else {
        r
    }
}

/// Takes one packet from a session's allowance, or answers why not.
fn claim_packet(emu: &OneKeyEmulator, id: &str) -> Result<Session, Box<Response>> {
    let mut sessions = emu.sessions.lock().map_err(|_| {
        Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "session table poisoned",
        ))
    })?;
    let Some(s) = sessions.get_mut(id) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no active session {id}"),
        )));
    };
    let used_up = emu
        .config()
        .expire_session_after
        .is_some_and(|n| s.served >= n);
    if s.expires <= Instant::now() || used_up {
        sessions.remove(id);
        emu.journal()
            .counters
            .sessions_expired
            .fetch_add(1, Ordering::Relaxed);
        return Err(Box::new(with_fault(
            error(
                StatusCode::GONE,
                "SESSION_EXPIRED",
                format!(
                    "session {id} has expired; activate a new one and continue with your cursor"
                ),
            ),
            "expired",
        )));
    }
    s.served += 1;
    Ok(s.clone())
}

/// Breaks two records of a packet the way a faulty MDM export does: the first
/// individual loses its last name, the first activity's individual id is a number.
fn corrupt(p: &mut BuiltPacket) {
    let edit = |text: &mut String, field: &str, value: serde_json::Value| {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) {
            v[field] = value;
            *text = v.to_string();
        }
    };
    if let Some(i) = p.individuals.first_mut() {
        edit(i, "lastName", serde_json::Value::Null);
    }
    if let Some(a) = p.activities.first_mut() {
        edit(a, "individualEid", json!(12345));
    }
}

/// The packet's JSON, written directly from its serialized records.
fn render(session: &str, cursor: &PacketCursor, text: &str, p: &BuiltPacket) -> String {
    let size: usize = p
        .workplaces
        .iter()
        .chain(&p.individuals)
        .chain(&p.activities)
        .map(|r| r.len() + 1)
        .sum();
    let mut out = String::with_capacity(size + 512);
    let next = p.next.as_ref().map(PacketCursor::encode);
    out.push_str(
        &json!({
            "sessionId": session,
            "packetNo": cursor.packet_no,
            "country": cursor.country_code(),
            "cursor": text,
            "nextCursor": next,
            "lastPacket": next.is_none(),
        })
        .to_string(),
    );
    out.pop(); // the closing brace: the arrays follow
    for (name, items) in [
        ("workplaces", &p.workplaces),
        ("individuals", &p.individuals),
        ("activities", &p.activities),
    ] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        out.push(']');
    }
    out.push('}');
    out
}
