//! Paths do not depend on the working directory: a job file's relative paths start
//! at its folder, the default state store is the per-user one, looking at jobs
//! never creates a store, and `provsync jobs` lists runs with the API's filters.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;

/// `provsync ARGS` in `cwd` with `HOME` and `XDG_STATE_HOME` as given (never the
/// caller's) and no `PROVSYNC_STATE`.
fn provsync(cwd: &Path, home: &Path, xdg: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("PROVSYNC_STATE")
        .env_remove("XDG_STATE_HOME");
    if let Some(x) = xdg {
        c.env("XDG_STATE_HOME", x);
    }
    c.output().expect("spawn provsync")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A job folder: a small world, a mapping and a job file naming both (and a
/// SQLite target) by paths relative to the job file.
fn job_folder(root: &Path, individuals: u32, target: &str) -> PathBuf {
    let dir = root.join("job");
    std::fs::create_dir_all(&dir).unwrap();
    let world = generate(&dir, individuals, 3, 1);
    std::fs::rename(&world, dir.join("world.ndjson")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/sql-provider.toml"),
        dir.join("my-mapping.toml"),
    )
    .unwrap();
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "scope = [\"US\"]\nmapping = \"my-mapping.toml\"\n\
             [source]\ntype = \"file\"\npath = \"world.ndjson\"\n\
             [target]\ntype = \"sqlite\"\nurl = \"sqlite://{target}\"\n"
        ),
    )
    .unwrap();
    job
}

#[test]
fn a_job_file_run_from_another_folder_finds_its_source_and_mapping_next_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_folder(tmp.path(), 50, "provider.db");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let state = state_url(tmp.path());
    let o = provsync(
        &elsewhere,
        tmp.path(),
        None,
        &["run", "../job/job.toml", "--json", "-q", "--state", &state],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["state"], "completed", "{}", text(&o));
    assert!(
        summary["counts"]["created"].as_u64().unwrap() > 50,
        "{summary}"
    );
    assert!(
        job.with_file_name("provider.db").is_file(),
        "the relative sqlite:// target lands next to the job file"
    );
    assert_eq!(files_under(&elsewhere), Vec::<PathBuf>::new());
}

#[test]
fn status_abort_and_jobs_of_a_missing_store_create_nothing_and_name_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (empty, home) = (tmp.path().join("empty"), tmp.path().join("home"));
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let store = home.join(".local/state/provsync/state.db");
    for args in [
        &["status", "no-such-job"][..],
        &["abort", "no-such-job"],
        &["jobs"],
    ] {
        let o = provsync(&empty, &home, None, args);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&store.display().to_string()) && err.contains("does not exist"),
            "{args:?} names the store it looked in: {}",
            text(&o)
        );
        assert_eq!(files_under(tmp.path()), Vec::<PathBuf>::new(), "{args:?}");
        assert!(
            !home.join(".local").exists(),
            "{args:?} made the store's folder"
        );
    }
    // An explicit store that is missing is named the same way.
    let o = provsync(
        &empty,
        &home,
        None,
        &["status", "x", "--state", "sqlite://here.db"],
    );
    assert!(!o.status.success() && !empty.join("here.db").exists());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("here.db"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_default_state_store_lands_under_xdg_state_home() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_folder(tmp.path(), 20, "provider.db");
    let (cwd, xdg) = (tmp.path().join("cwd"), tmp.path().join("xdg"));
    std::fs::create_dir_all(&cwd).unwrap();
    let store = xdg.join("provsync/state.db");
    let help = provsync(&cwd, tmp.path(), Some(&xdg), &["run", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains(&format!("sqlite://{}", store.display())),
        "--help prints the resolved default: {}",
        text(&help)
    );
    let o = provsync(
        &cwd,
        tmp.path(),
        Some(&xdg),
        &["run", job.to_str().unwrap(), "--json", "-q"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(store.is_file(), "no store at {}", store.display());
    assert_eq!(files_under(&cwd), Vec::<PathBuf>::new());
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = provsync(&cwd, tmp.path(), Some(&xdg), &["status", &id, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["state"], "completed", "{st}");
}

#[test]
fn jobs_lists_runs_newest_first_with_the_api_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let job = job_folder(tmp.path(), 30, "a.db");
    let other = job.with_file_name("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("sqlite://a.db", "sqlite://b.db"),
    )
    .unwrap();
    let state = state_url(tmp.path());
    let first = run(&job, &state);
    first.expect_code(0);
    let second = run(&other, &state);
    second.expect_code(0);
    let jobs = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["jobs", "--json", "--state", &state];
        args.extend(extra);
        let o = provsync(tmp.path(), tmp.path(), None, &args);
        assert!(o.status.success(), "{}", text(&o));
        let page: Value = serde_json::from_slice(&o.stdout).unwrap();
        page["jobs"].as_array().unwrap().clone()
    };
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|j| j["job_id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = jobs(&[]);
    assert_eq!(ids(&all), [second.job_id(), first.job_id()], "newest first");
    assert_eq!(
        all[1]["counts"]["created"].as_u64(),
        Some(first.count("created")),
        "the listed counts are the run's: {}",
        all[1]
    );
    assert!(all[1]["duration_ms"].as_i64().is_some(), "{}", all[1]);
    let a_target = all[1]["target"].as_str().unwrap().to_owned();
    assert!(a_target.ends_with("/job/a.db"), "{a_target}");
    assert_eq!(ids(&jobs(&["--target", &a_target])), [first.job_id()]);
    assert_eq!(
        ids(&jobs(&["--state-filter", "completed", "--limit", "1"])),
        [second.job_id()]
    );
    assert_eq!(ids(&jobs(&["--offset", "1"])), [first.job_id()]);
    assert!(jobs(&["--state-filter", "failed"]).is_empty());
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(jobs(&["--since", &later]).is_empty());

    let o = provsync(tmp.path(), tmp.path(), None, &["jobs", "--state", &state]);
    let table = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("EXTRACTED"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&second.job_id()) && lines[2].starts_with(&first.job_id()),
        "{table}"
    );
    assert!(
        lines[2].contains("completed") && lines[2].contains(&a_target),
        "{table}"
    );
    let o = provsync(
        tmp.path(),
        tmp.path(),
        None,
        &["jobs", "--state", &state, "--state-filter", "done"],
    );
    assert!(
        !o.status.success(),
        "an unknown state is refused: {}",
        text(&o)
    );
}

#[test]
fn a_job_submitted_over_the_api_finds_relative_paths_from_the_config_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (conf, elsewhere) = (tmp.path().join("conf"), tmp.path().join("elsewhere"));
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let world = generate(&conf, 20, 3, 1);
    std::fs::rename(&world, conf.join("world.ndjson")).unwrap();
    let token = "operate-token-paths";
    let config = conf.join("provsync.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate = \"sqlite://state.db\"\n\
             [[tokens]]\nname = \"crm\"\nsha256 = \"{}\"\nrole = \"operate\"\n\
             [sources.world]\ntype = \"file\"\npath = \"world.ndjson\"\n\
             [targets.provider]\ntype = \"sqlite\"\nurl = \"sqlite://provider.db\"\n",
            provsync::config::sha256_hex(token)
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("PROVSYNC_STATE")
        .current_dir(&elsewhere);
    let s = Serve::start(cmd);
    // The connections' relative paths start at the config folder.
    let job = serde_json::json!({"scope": ["US"], "source": "world", "target": "provider"});
    let accepted = s.call(
        token,
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            &job.to_string(),
        ],
        "/v1/jobs",
    );
    let id = accepted["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{accepted}"));
    let end = s.wait_terminal(token, id);
    assert_eq!(end["state"], "completed", "{end}");
    assert!(conf.join("provider.db").is_file() && conf.join("state.db").is_file());
    assert_eq!(files_under(&elsewhere), Vec::<PathBuf>::new());
}
