//! The progress display as a person sees it: in a real terminal (a pseudo-terminal
//! from util-linux `script`) and as plain lines when stderr is not a terminal. Its
//! last frame shows the run summary's numbers, counted for that job alone.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The final frame's numbers a summary implies, over every kind.
fn totals(summary: &serde_json::Value) -> [u64; 8] {
    let mut t = [0; 8];
    let names = [
        "extracted",
        "rejected",
        "created",
        "updated",
        "unchanged",
        "failed",
        "disconnected",
        "relations_staged",
    ];
    for (_, k) in summary["per_kind"].as_object().unwrap() {
        for (i, n) in names.iter().enumerate() {
            t[i] += k[*n].as_u64().unwrap_or(0);
        }
    }
    t
}

/// The frame lines `provsync run` ends with for this summary.
fn expected_frame(summary: &serde_json::Value) -> Vec<String> {
    let [extracted, rejected, created, updated, unchanged, failed, disconnected, _] =
        totals(summary);
    vec![
        format!("extract {extracted} records"),
        format!("{} mapped, {rejected} rejected", extracted - rejected),
        format!("{created} created, {updated} updated, {unchanged} unchanged, {failed} failed"),
        format!("{disconnected} disconnected"),
    ]
}

fn job_file(dir: &Path, individuals: u32) -> (std::path::PathBuf, String) {
    let world = generate(dir, individuals, 3, 1);
    let target = Target::sqlite(dir, "provider.db");
    let file = Job::full(&world, &target).write(&dir.join("job.toml"));
    (file, state_url(dir))
}

#[test]
fn progress_in_a_terminal_ends_with_the_summarys_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (file, state) = job_file(dir.path(), 3000);
    let cmd = format!("{} run {} --state {state} --json", bin(), file.display());
    // `script` gives the command a pseudo-terminal: stderr is a terminal there.
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("PROVSYNC_STATE")
        .output()
        .expect("util-linux script");
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{screen}");
    let start = screen.find('{').expect("JSON summary");
    let end = screen.rfind('}').unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&screen[start..=end].replace("\r\n", "\n")).unwrap();
    for stage in ["extract", "transform", "load", "relations", "sweep"] {
        assert!(screen.contains(stage), "no {stage} bar:\n{screen}");
    }
    let [extracted, _, created, updated, unchanged, failed, ..] = totals(&summary);
    assert!(
        screen.contains(&format!("{extracted} records")),
        "last frame's extract: {extracted}\n{screen}"
    );
    assert!(
        screen.contains(&format!(
            "{created} created, {updated} updated, {unchanged} unchanged, {failed} failed"
        )),
        "last frame's load\n{screen}"
    );
    assert!(screen.contains("no link deferred") || screen.contains("deferred:"));
}

#[test]
fn a_onekey_run_in_a_terminal_shows_its_share_of_the_session_and_an_eta() {
    let dir = tempfile::tempdir().unwrap();
    // 40 ms per packet and packets of 50: the run takes long enough to draw frames.
    let args = ["--individuals", "1500", "--seed", "7", "--latency-ms", "40"].map(String::from);
    let mdm = crate::emulators::Emulator::start("onekey", &args, "listening on ");
    let target = Target::sqlite(dir.path(), "provider.db");
    let file = Job::onekey(&mdm.url, "E2E_PROGRESS_ONEKEY_SECRET", &target)
        .option("page_size = 50")
        .write(&dir.path().join("job.toml"));
    let cmd = format!(
        "{} run {} --state {}",
        bin(),
        file.display(),
        state_url(dir.path())
    );
    let o = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("E2E_PROGRESS_ONEKEY_SECRET", "provsync-secret")
        .env_remove("PROVSYNC_STATE")
        .output()
        .expect("util-linux script");
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{screen}");
    assert!(
        screen.contains("% of the source, ETA "),
        "no share of the OneKey session with an ETA:\n{screen}"
    );
}

#[test]
fn progress_lines_off_a_terminal_end_with_the_summarys_numbers_for_that_job_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (file, state) = job_file(dir.path(), 2000);
    let mut last = None;
    // Twice in one store: each run's lines count that run only.
    for _ in 0..2 {
        let o = Command::new(bin())
            .arg("run")
            .arg(&file)
            .args(["--state", &state, "--json"])
            .env_remove("PROVSYNC_STATE")
            .output()
            .unwrap();
        assert!(o.status.success());
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !stderr.contains('\u{1b}'),
            "no terminal codes off a terminal: {stderr}"
        );
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let final_line = stderr
            .lines()
            .rfind(|l| l.starts_with("progress:"))
            .unwrap_or_else(|| panic!("no progress line: {stderr}"));
        assert!(final_line.contains("stage done"), "{final_line}");
        for part in expected_frame(&summary) {
            assert!(final_line.contains(&part), "{part:?} not in {final_line}");
        }
        last = Some(summary);
    }
    // The second run found everything unchanged: its line says so, not a sum of both.
    let second = last.unwrap();
    assert_eq!(totals(&second)[2], 0, "{second}");
}
