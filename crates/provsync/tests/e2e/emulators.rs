//! The emulators as child processes (`provsync emulate onekey|salesforce`), with
//! the control and REST calls tests make to them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::bin;

/// A running emulator process; killed when dropped.
pub struct Emulator {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    /// Base URL.
    pub url: String,
}

impl Emulator {
    pub fn start(system: &str, args: &[String], announce: &str) -> Emulator {
        let mut child = Command::new(bin())
            .args(["emulate", system, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn provsync emulate {system}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .split_once(announce)
            .map(|(_, u)| u.trim().to_string())
            .unwrap_or_else(|| panic!("{system} emulator did not announce its address: {line:?}"));
        Emulator {
            child,
            _stdout: stdout,
            url,
        }
    }

    /// A OneKey-style MDM over `individuals` at `night`.
    pub fn onekey(individuals: u32, night: u32, countries: &str) -> Emulator {
        let args = [
            "--individuals",
            &individuals.to_string(),
            "--seed",
            "7",
            "--night",
            &night.to_string(),
            "--countries",
            countries,
        ]
        .map(String::from);
        Emulator::start("onekey", &args, "listening on ")
    }

    /// The org, with extra flags (faults, limits).
    pub fn salesforce(flags: &[&str]) -> Emulator {
        let args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        Emulator::start("salesforce", &args, "listening on ")
    }

    pub fn get(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", &format!("{}{path}", self.url)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn post(&self, path: &str) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                &format!("{}{path}", self.url),
            ])
            .output()
            .expect("curl");
        assert!(out.status.success(), "POST {path} failed");
    }

    /// POSTs a JSON body to a control endpoint (`/_emulator/faults`...).
    pub fn control(&self, path: &str, body: &Value) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--max-time",
                "10",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("{}{path}", self.url),
            ])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "POST {path} {body} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets the org's API budget and starts a fresh window.
    pub fn set_budget(&self, calls: u64) {
        self.control(
            "/_emulator/faults",
            &serde_json::json!({ "api_budget": calls }),
        );
        self.post("/_emulator/reset-budget");
    }

    pub fn stats(&self) -> Value {
        self.get("/_emulator/stats")
    }

    /// Asserts the org saw no request over a documented limit.
    pub fn assert_no_violations(&self) {
        let stats = self.stats();
        let v = &stats["limit_violations"];
        let n = v
            .as_array()
            .map(Vec::len)
            .or_else(|| v.as_u64().map(|n| n as usize))
            .unwrap_or_else(|| panic!("no limit_violations in stats: {stats}"));
        assert_eq!(n, 0, "limit violations: {v}");
    }

    /// The org's Bulk API 2.0 ingest jobs, as the REST API lists them.
    pub fn bulk_jobs(&self) -> Vec<Value> {
        self.api_get("/services/data/v65.0/jobs/ingest")["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Records of `object` in the org (a SOQL `COUNT()`).
    pub fn count(&self, object: &str) -> u64 {
        let q = format!("/services/data/v65.0/query?q=SELECT+COUNT()+FROM+{object}");
        self.api_get(&q)["totalSize"].as_u64().expect("totalSize")
    }

    /// A REST API GET with a fresh client-credentials token.
    pub fn api_get(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-d",
                "grant_type=client_credentials&client_id=provsync&client_secret=provsync-secret",
                &format!("{}/services/oauth2/token", self.url),
            ])
            .output()
            .expect("curl");
        let token: Value = serde_json::from_slice(&out.stdout).expect("token answer");
        let token = token["access_token"].as_str().expect("access_token");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-H",
                &format!("Authorization: Bearer {token}"),
                &format!("{}{path}", self.url),
            ])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Calls of one kind the org answered (from the stats).
    pub fn calls(&self, kind: &str) -> u64 {
        self.stats()["calls_by_kind"][kind].as_u64().unwrap_or(0)
    }

    /// Records written to `object` (from the stats).
    pub fn written(&self, object: &str) -> u64 {
        self.stats()["records_written"][object]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
