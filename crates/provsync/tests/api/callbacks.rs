//! Callbacks: a job's `callback_url` gets signed `job.accepted` and `job.finished`
//! POSTs, retried after a failure, never holding the job up; requests asking for
//! callbacks the server cannot sign or may not send are refused (deny by default,
//! and no loopback, link-local or private address unless listed as itself).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxStatus};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

const SECRET: &str = "callback-secret-0123456789";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

/// A receiver on 127.0.0.1 that answers 503 to the first attempt of each event
/// (after `delay`) and 200 afterwards; with its URL and address.
async fn receiver(delay: Duration) -> (String, std::net::SocketAddr, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let got = keep.clone();
            async move {
                let event = headers["x-provsync-event"].to_str().unwrap().to_owned();
                let first = !got
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|g| g.headers["x-provsync-event"] == event.as_str());
                if first {
                    tokio::time::sleep(delay).await;
                }
                let answered = if first { 503 } else { 200 };
                got.lock().unwrap().push(Got {
                    headers,
                    body: body.to_vec(),
                    answered,
                });
                AxStatus::from_u16(answered).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), addr, got)
}

fn verify(g: &Got) -> Value {
    let ts = g.headers["x-provsync-timestamp"].to_str().unwrap();
    let sig = g.headers["x-provsync-signature"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&g.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("sha256={hex}"), "signature does not verify");
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "stale timestamp {ts}");
    serde_json::from_slice(&g.body).unwrap()
}

fn server_with_callbacks(state: &str, extra_hosts: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("callback.key");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let extra = format!(
        "[callbacks]\nsecret_file = \"{}\"\nmax_attempts = 4\ntimeout_secs = 5\n{extra_hosts}",
        secret.display()
    );
    Server::start_configured(dir, state, &extra)
}

async fn callbacks_are_signed_retried_and_never_hold_the_job_up(state: &str) {
    // The first attempt of each event takes 2 s and fails.
    let (url, addr, got) = receiver(Duration::from_secs(2)).await;
    // A loopback receiver is allowed the documented way: its address listed as itself.
    let s = server_with_callbacks(state, &format!("allowed_hosts = [\"{addr}\"]\n"));
    let world = generate(s.path(), 200);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["callback_url"] = json!(url);
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    // The job ended while its callbacks were still failing or pending.
    let delivered_early = got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.answered == 200)
        .count();
    assert_eq!(delivered_early, 0, "the job waited for its callbacks");

    let start = Instant::now();
    let job = loop {
        let (_, v) = s.get(&format!("/v1/jobs/{id}")).await;
        let cbs = v["callbacks"].as_array().unwrap().clone();
        if cbs.len() == 2 && cbs.iter().all(|c| c["delivered_at"].is_string()) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "callbacks not delivered: {:#}\n{}",
            v["callbacks"],
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for cb in job["callbacks"].as_array().unwrap() {
        assert_eq!(cb["attempts"], 2, "one failure, one success: {cb}");
        assert!(cb["last_error"].is_null(), "{cb}");
    }

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "{got:?}");
    let ok: Vec<&Got> = got.iter().filter(|g| g.answered == 200).collect();
    let accepted = ok
        .iter()
        .find(|g| g.headers["x-provsync-event"] == "job.accepted")
        .unwrap();
    let finished = ok
        .iter()
        .find(|g| g.headers["x-provsync-event"] == "job.finished")
        .unwrap();
    let a = verify(accepted);
    assert_eq!(a["event"], "job.accepted");
    assert_eq!(a["job_id"], id.as_str());
    let f = verify(finished);
    assert_eq!(f["event"], "job.finished");
    assert_eq!(f["state"], "completed");
    assert_eq!(f["errors"], 0);
    assert!(
        f["counts"]["individual"]["created"].as_u64().unwrap() > 0,
        "{f}"
    );
    // Retries carry the same delivery id, so receivers can deduplicate.
    let ids: Vec<&str> = got
        .iter()
        .filter(|g| g.headers["x-provsync-event"] == "job.finished")
        .map(|g| g.headers["x-provsync-delivery"].to_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    // The key never reaches the log.
    assert!(!s.logs().contains(SECRET), "{}", s.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_the_server_cannot_sign_or_may_not_call_are_refused() {
    let s = Server::start();
    let world = generate(s.path(), 10);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["callback_url"] = json!("http://127.0.0.1:9/hook");
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "callback_url", "{v}");
    assert!(v["message"].as_str().unwrap().contains("secret"), "{v}");

    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = server_with_callbacks(&state, "allowed_hosts = [\"crm.example\"]\n");
    let world = generate(s.path(), 10);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["callback_url"] = json!("http://169.254.169.254/latest/meta-data");
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "callback_url", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("allowed_hosts"),
        "{v}"
    );
    body["callback_url"] = json!("https://elsewhere.example/hook");
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("elsewhere.example") && m.contains("allowed_hosts"),
        "{v}"
    );
    body["callback_url"] = json!("ftp://crm.example/x");
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_job", "{v}");
    assert_eq!(v["field"], "callback_url", "{v}");
}

crate::on_both_stores!(callbacks_are_signed_retried_and_never_hold_the_job_up);

/// POSTs a job with `callback_url` to `s` and returns the refusal's message.
async fn refusal(s: &Server, url: &str) -> String {
    let world = generate(s.path(), 10);
    let mut body = job(&world, &s.path().join("provider.db"));
    body["callback_url"] = json!(url);
    let (st, v) = s.submit(&body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{url}: {v}");
    assert_eq!(v["code"], "invalid_value", "{v}");
    assert_eq!(v["field"], "callback_url", "{v}");
    v["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_refused_without_allowed_hosts_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = server_with_callbacks(&state, "");
    for url in ["https://crm.example/hook", "http://127.0.0.1:9/hook"] {
        let m = refusal(&s, url).await;
        assert!(m.contains("[callbacks] allowed_hosts"), "{url}: {m}");
        assert!(m.contains("denied by default"), "{url}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_loopback_metadata_or_unlisted_hosts_are_refused_at_submission() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    // localhost is listed by name: it resolves to loopback, which only the address
    // itself listed admits, even with allow_private_addresses.
    let s = server_with_callbacks(
        &state,
        "allowed_hosts = [\"crm.example\", \"localhost\", \"127.0.0.1:9000\"]\n\
         allow_private_addresses = true\n",
    );
    let m = refusal(&s, "http://127.0.0.1:9001/hook").await;
    assert!(
        m.contains("127.0.0.1:9001") && m.contains("loopback") && m.contains("allowed_hosts"),
        "{m}"
    );
    let m = refusal(&s, "http://169.254.169.254/latest/meta-data").await;
    assert!(
        m.contains("169.254.169.254") && m.contains("link-local"),
        "{m}"
    );
    let m = refusal(&s, "https://elsewhere.example/hook").await;
    assert!(
        m.contains("elsewhere.example") && m.contains("not in [callbacks] allowed_hosts"),
        "{m}"
    );
    let m = refusal(&s, "http://localhost:9000/hook").await;
    assert!(
        m.contains("\"localhost\" resolves to") && m.contains("loopback"),
        "{m}"
    );
}
