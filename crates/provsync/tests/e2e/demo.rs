//! `provsync demo` as a newcomer meets it: the release binary run from an empty
//! folder (also its HOME), with no reference data folder anywhere, into SQLite and
//! into the emulated Salesforce org; every command it suggests works.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

/// Runs `provsync demo ARGS` with `dir` as working directory and HOME, and no
/// `PROVSYNC_DATA_DIR`: only what the binary carries.
fn demo(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("demo")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_STATE_HOME", dir.join(".state"))
        .env_remove("PROVSYNC_DATA_DIR")
        .env_remove("PROVSYNC_STATE")
        .output()
        .expect("spawn provsync demo")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The state store holds job specs with references to secrets, never their values.
fn assert_no_secret_in(dir: &Path, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir.join("provsync-demo")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("state.db") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{name} holds the secret {s:?}"
            );
        }
    }
}

#[test]
fn demo_runs_from_an_empty_folder_with_nothing_beside_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let o = demo(dir.path(), &["--quiet"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed:\n{out}\n{err}");
    assert!(!out.contains("not built yet"), "{out}");
    assert!(
        !out.contains("sqlite3"),
        "it suggests no tool a machine may lack: {out}"
    );
    for step in ["codes sync", "provider full sync", "provider delta sync"] {
        assert!(out.contains(step), "{step} missing:\n{out}");
    }
    assert_eq!(out.matches(" completed\n").count(), 3, "{out}");
    // What the store holds, from its own tables and change log.
    assert!(out.contains("what the provider store"), "{out}");
    for table in ["individuals", "workplaces", "activities", "codes"] {
        assert!(out.contains(table), "{table}:\n{out}");
    }
    assert!(
        out.contains("moved") || out.contains("disconnected"),
        "{out}"
    );
    assert_no_secret_in(dir.path(), &["provsync-secret", "provsync-api-key"]);

    // The command it suggests works as printed.
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("try:"))
        .unwrap_or_else(|| panic!("no suggestion:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let s = Command::new(words[0])
        .args(&words[1..])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let (status_out, status_err) = text(&s);
    assert!(s.status.success(), "{line}:\n{status_out}\n{status_err}");
    assert!(status_out.contains("completed"), "{status_out}");
}

#[test]
fn demo_into_salesforce_shows_what_the_org_holds() {
    let dir = tempfile::tempdir().unwrap();
    let o = demo(
        dir.path(),
        &["--target", "salesforce", "--individuals", "300", "--quiet"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed:\n{out}\n{err}");
    assert_eq!(out.matches(" completed\n").count(), 3, "{out}");
    assert!(out.contains("what the org at"), "{out}");
    for object in ["Account", "HealthcareProvider", "IntegrationJobRun"] {
        assert!(out.contains(object), "{object}:\n{out}");
    }
    assert!(
        out.contains("codes sync wrote"),
        "picklist values added:\n{out}"
    );
    // One IntegrationJobRun per run, each naming its job.
    let runs = out
        .lines()
        .skip_while(|l| !l.contains("IntegrationJobRun records:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .count();
    assert_eq!(runs, 3, "{out}");
    assert_no_secret_in(
        dir.path(),
        &[
            "provsync-secret",
            "provsync-api-key",
            "provsync-demo-secret",
        ],
    );
}
