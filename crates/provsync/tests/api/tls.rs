//! `[tls]`: the service speaks HTTPS with a certificate and key from PEM files
//! (relative to the config file); a bad file is refused at start and by `config
//! check`, naming the key, the path and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

const TLS: &str = "[tls]\ncert_file = \"tls/server.crt\"\nkey_file = \"tls/server.key\"\n";

/// A folder with the test certificate and key under `tls/`.
fn dir_with_certificate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    for f in ["server.crt", "server.key"] {
        std::fs::copy(fixtures().join(f), dir.path().join("tls").join(f)).unwrap();
    }
    dir
}

/// A client that trusts the test CA only.
fn client_trusting_the_test_ca() -> reqwest::Client {
    let ca = std::fs::read(fixtures().join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_syncs_end_to_end_over_https_and_plain_http_on_the_port_gets_nothing() {
    let dir = dir_with_certificate();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let mut s = Server::start_configured(dir, &state, TLS);
    let addr = s
        .base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not served over https: {}", s.base))
        .to_owned();

    // A client without the test CA does not trust the server.
    let untrusting = s.http.get(format!("{}/healthz", s.base)).send().await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    s.http = client_trusting_the_test_ca();

    // A client that connects and never starts its handshake holds up no one (the
    // handshake runs in the connection's task, not the accept loop, whose header
    // timeout of 10 s would otherwise stall the next request past the bound).
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let resp = s
        .http
        .get(format!("{}/healthz", s.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert_eq!(resp.map(|r| r.status()).ok(), Some(StatusCode::OK));

    // Plain HTTP on the HTTPS port gets no HTTP answer, and the server keeps serving.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    let (st, v) = s.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let world = generate(s.path(), 200);
    let (_, extracted) = world_counts(&world);
    let (st, v) = s.submit(&job(&world, &s.path().join("provider.db"))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let total = &done["counts"]["total"];
    assert_eq!(n(&total["extracted"]), extracted, "{done:#}");
    assert_eq!(n(&total["created"]), extracted, "{done:#}");
    assert_eq!(n(&total["rejected"]) + n(&total["failed"]), 0, "{done:#}");
}

#[test]
fn config_check_and_serve_refuse_a_missing_or_garbage_certificate_or_key_by_key_and_path() {
    let dir = dir_with_certificate();
    let file = dir.path().join("c.toml");
    let write = |extra: &str| {
        std::fs::write(&file, format!("{}\n{extra}", config_text("sqlite://s.db"))).unwrap()
    };

    write(TLS);
    let o = config_check(&file, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("tls     on"), "{out}");

    std::fs::write(dir.path().join("tls/garbage.pem"), "hello\n").unwrap();
    for (extra, key, path, reason) in [
        (
            TLS.replace("server.crt", "missing.crt"),
            "tls.cert_file",
            "tls/missing.crt",
            "No such file or directory",
        ),
        (
            TLS.replace("server.key", "missing.key"),
            "tls.key_file",
            "tls/missing.key",
            "No such file or directory",
        ),
        (
            TLS.replace("server.crt", "garbage.pem"),
            "tls.cert_file",
            "tls/garbage.pem",
            "holds no PEM certificate",
        ),
        (
            TLS.replace("server.key", "garbage.pem"),
            "tls.key_file",
            "tls/garbage.pem",
            "holds no PEM private key",
        ),
    ] {
        write(&extra);
        let o = config_check(&file, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra}: {err}");
        assert!(
            err.contains(key) && err.contains(path) && err.contains(reason),
            "{extra}: {err}"
        );
        // `serve` refuses it before listening.
        let o = std::process::Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env_remove("PROVSYNC_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra}: {err}");
        assert!(err.contains(key) && !err.contains("listening on"), "{err}");
    }
}
