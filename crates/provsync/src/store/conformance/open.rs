//! Backend-independent checks of `open`.

use provsync_core::job::JobState;

use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

use super::support::new_job;

#[tokio::test]
async fn open_refuses_bad_and_unknown_backends_without_echoing_secrets() {
    // An unparseable port fails before any connection attempt.
    let e = crate::store::open("postgres://sync:s3cret@db:notaport/provsync")
        .await
        .err()
        .expect("bad URL");
    assert!(matches!(e, StoreError::Backend(_)));
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let e = crate::store::open("mysql://u:s3cret@db/x")
        .await
        .err()
        .expect("unsupported");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert!(e.to_string().contains("mysql"), "{e}");
}

#[tokio::test]
async fn reopening_a_file_keeps_state_and_migrations_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let id = {
        let s = SqliteStore::open(&url).await.unwrap();
        let id = new_job(&s, "t").await;
        s.pool().close().await;
        id
    };
    let s = crate::store::open(&url).await.unwrap();
    assert_eq!(s.job(&id).await.unwrap().state, JobState::Accepted);
}
