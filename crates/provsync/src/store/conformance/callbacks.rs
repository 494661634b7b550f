//! Callbacks: queued once per event, claimed by one sender at a time.

use chrono::Utc;
use provsync_core::job::JobId;

use crate::store::{Delivery, StateStore};

use super::support::{complete, new_job, spec, LEASE};

async fn job_with_callback(s: &dyn StateStore) -> JobId {
    let id = JobId::new();
    let mut spec = spec();
    spec.callback_url = Some("http://127.0.0.1:9/cb".into());
    s.create_job(&id, "t-cb", &spec, "test").await.unwrap();
    id
}

pub async fn callbacks_are_queued_on_accept_and_on_end_once(s: &dyn StateStore) {
    let quiet = new_job(s, "t-quiet").await;
    assert!(s.callbacks(&quiet).await.unwrap().is_empty());
    let id = job_with_callback(s).await;
    let cbs = s.callbacks(&id).await.unwrap();
    assert_eq!(cbs.len(), 1);
    assert_eq!(cbs[0].event, "accepted");
    assert!(cbs[0].next_at.is_some() && cbs[0].attempts == 0);
    s.dispatch(&id, "w", LEASE).await.unwrap();
    complete(s, &id).await;
    let events: Vec<String> = s
        .callbacks(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.event)
        .collect();
    assert_eq!(events, ["accepted", "finished"]);
    // A job without callback_url queues nothing at its end either.
    s.dispatch(&quiet, "w", LEASE).await.unwrap();
    complete(s, &quiet).await;
    assert!(s.callbacks(&quiet).await.unwrap().is_empty());
}

pub async fn callback_claims_are_exclusive_and_outcomes_recorded(s: &dyn StateStore) {
    let id = job_with_callback(s).await;
    let due = s.claim_callbacks(10, 60_000).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].url, "http://127.0.0.1:9/cb");
    assert_eq!(due[0].attempts, 0);
    // Claimed: not due again until the lease lapses.
    assert!(s.claim_callbacks(10, 60_000).await.unwrap().is_empty());
    let soon = Utc::now() - chrono::Duration::seconds(1);
    s.callback_attempted(
        &id,
        "accepted",
        &Delivery::Retry {
            error: "503".into(),
            at: soon,
        },
    )
    .await
    .unwrap();
    let again = s.claim_callbacks(10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    s.callback_attempted(&id, "accepted", &Delivery::Delivered)
        .await
        .unwrap();
    let st = &s.callbacks(&id).await.unwrap()[0];
    assert_eq!(st.attempts, 2);
    assert!(st.delivered_at.is_some() && st.next_at.is_none());
    assert_eq!(st.last_error, None);
    let other = job_with_callback(s).await;
    s.claim_callbacks(10, 60_000).await.unwrap();
    s.callback_attempted(
        &other,
        "accepted",
        &Delivery::GiveUp {
            error: "404".into(),
        },
    )
    .await
    .unwrap();
    let st = &s.callbacks(&other).await.unwrap()[0];
    assert!(st.gave_up_at.is_some() && st.next_at.is_none());
    assert_eq!(st.last_error.as_deref(), Some("404"));
    assert!(s.claim_callbacks(10, 0).await.unwrap().is_empty());
}
