//! Every file in `recipes/` runs as its header comment says: the test starts the
//! emulators with the header's `provsync emulate ...` commands (defaults; only the
//! listen address differs), runs the header's `provsync run ...` lines (or, for a
//! service configuration, `config check`, then `provsync serve` and the header's
//! manual trigger) with the header's environment variables, and each run must end
//! `completed`. What a user would change is changed in a copy, as a user would:
//! the emulators' and the database's addresses. The copies sit in a folder laid out
//! like the repository (`recipes/`, `mappings/`) and run from another working
//! directory, so their relative paths must start at the recipe's folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::emulators::Emulator;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `provsync` command line of a recipe's header: its environment variables and
/// the words after `provsync`.
#[derive(Debug, Clone)]
struct Line {
    env: Vec<(String, String)>,
    words: Vec<String>,
}

/// One step of a recipe's header, in order.
#[derive(Debug, Clone)]
enum Step {
    /// `provsync emulate SYSTEM ARGS...`: the words after `emulate`; it replaces a
    /// running emulator of the same system (a later night, say).
    Emulate(Vec<String>),
    /// `provsync run recipes/NAME ...`.
    Run(Line),
}

/// The commands a recipe's comments give.
#[derive(Debug, Default)]
struct Header {
    /// Emulators started and runs, in order.
    steps: Vec<Step>,
    /// `provsync serve --config recipes/NAME`.
    serve: Option<Line>,
    /// The manual trigger's bearer token and path (a `curl` line).
    trigger: Option<(String, String)>,
}

impl Header {
    fn parse(text: &str) -> Header {
        // Comment lines, with `\` continuations joined.
        let mut lines: Vec<String> = Vec::new();
        let mut continued = false;
        for l in text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix('#'))
        {
            let l = l.trim();
            if continued {
                lines.last_mut().unwrap().push(' ');
                lines.last_mut().unwrap().push_str(l.trim_end_matches('\\'));
            } else {
                lines.push(l.trim_end_matches('\\').to_owned());
            }
            continued = l.ends_with('\\');
        }
        let mut h = Header::default();
        for l in lines {
            let words: Vec<&str> = l.split_whitespace().filter(|w| *w != "&").collect();
            if words.first() == Some(&"curl") {
                let token = words
                    .iter()
                    .position(|w| *w == "Bearer")
                    .map(|i| words[i + 1].trim_matches('"').to_owned());
                let path = words
                    .iter()
                    .find_map(|w| w.find("/v1/").map(|i| w[i..].to_owned()));
                if let (Some(t), Some(p)) = (token, path) {
                    h.trigger = Some((t, p));
                }
                continue;
            }
            let Some(at) = words.iter().position(|w| *w == "provsync") else {
                continue;
            };
            let env: Vec<(String, String)> = words[..at]
                .iter()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            if env.len() != at {
                continue; // prose that mentions provsync
            }
            let line = Line {
                env,
                words: words[at + 1..].iter().map(|w| (*w).to_owned()).collect(),
            };
            match line.words.first().map(String::as_str) {
                Some("emulate") => h.steps.push(Step::Emulate(line.words[1..].to_vec())),
                Some("run") => h.steps.push(Step::Run(line)),
                Some("serve") => h.serve = Some(line),
                _ => {}
            }
        }
        h
    }
}

impl Line {
    /// The recipe a `run RECIPE` or `serve --config RECIPE` line names (its file name).
    fn recipe(&self) -> String {
        let path = match self.words[0].as_str() {
            "run" => &self.words[1],
            _ => {
                let i = self.words.iter().position(|w| w == "--config").unwrap();
                &self.words[i + 1]
            }
        };
        assert!(
            path.starts_with("recipes/"),
            "header commands run from the repository root: {self:?}"
        );
        Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Header {
    /// The runs, in order.
    fn runs(&self) -> impl Iterator<Item = &Line> {
        self.steps.iter().filter_map(|s| match s {
            Step::Run(l) => Some(l),
            Step::Emulate(_) => None,
        })
    }
}

/// The running emulators, by system.
#[derive(Default)]
struct Emulators(Vec<(String, Emulator)>);

impl Emulators {
    /// Starts `provsync emulate ARGS` (on a free port), replacing a running
    /// emulator of the same system.
    fn start(&mut self, args: &[String], recipe: &str) {
        assert!(
            !args.iter().any(|a| a.starts_with("--listen")),
            "{recipe}: emulators run on their default address"
        );
        self.0.retain(|(s, _)| *s != args[0]);
        let emu = Emulator::start(&args[0], &args[1..], "listening on ");
        self.0.push((args[0].clone(), emu));
    }

    fn url(&self, system: &str, recipe: &str) -> String {
        self.0
            .iter()
            .find(|(s, _)| s == system)
            .map(|(_, e)| e.url.clone())
            .unwrap_or_else(|| {
                panic!(
                    "{recipe} needs `provsync emulate {system}`, which its header does not start"
                )
            })
    }
}

/// Copies recipe `name` into `dir`, pointed at the emulators and the database.
fn point_at(name: &str, dir: &Path, emus: &Emulators, db_url: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("recipes").join(name)).unwrap();
    let mut job: toml::Table = toml::from_str(&text).unwrap();
    let source = job["source"].as_table_mut().unwrap();
    let system = source["type"].as_str().unwrap().to_owned();
    assert!(
        ["onekey", "gmc"].contains(&system.as_str()),
        "{name}: no emulator for source type {system}"
    );
    source.insert("url".into(), emus.url(&system, name).into());
    let target = job["target"].as_table_mut().unwrap();
    match target["type"].as_str().unwrap() {
        "postgres" => {
            target.insert("url".into(), db_url.into());
        }
        "salesforce" => {
            target.insert("login_url".into(), emus.url("salesforce", name).into());
        }
        other => panic!("{name}: no emulator for target type {other}"),
    }
    let copy = dir.join(name);
    std::fs::write(&copy, toml::to_string(&job).unwrap()).unwrap();
    copy
}

/// A folder laid out like the repository (`recipes/` for the copies, the shipped
/// `mappings/`), and a working directory outside it.
fn workspace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let recipes = tmp.path().join("recipes");
    let cwd = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    std::os::unix::fs::symlink(repo().join("mappings"), tmp.path().join("mappings")).unwrap();
    (tmp, recipes, cwd)
}

/// Runs a job recipe's header steps in order; each run must complete.
async fn job_recipe(name: &str, header: &Header) {
    assert!(
        header.runs().any(|r| r.recipe() == name),
        "{name}: its header says no `provsync run recipes/{name}`"
    );
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut emus = Emulators::default();
    let (tmp, recipes, cwd) = workspace();
    let state = state_url(tmp.path());
    for step in &header.steps {
        let step = match step {
            Step::Emulate(args) => {
                emus.start(args, name);
                continue;
            }
            Step::Run(line) => line,
        };
        let copy = point_at(&step.recipe(), &recipes, &emus, &db.url);
        let o = Command::new(bin())
            .args([
                "run",
                copy.to_str().unwrap(),
                "--json",
                "-q",
                "--state",
                &state,
            ])
            .envs(step.env.iter().cloned())
            .env_remove("PROVSYNC_STATE")
            .current_dir(&cwd)
            .output()
            .unwrap();
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        assert!(
            o.status.success() && summary["state"] == "completed",
            "{name}: `provsync {}` ended {} (exit {:?}): {}\n{}",
            step.words.join(" "),
            summary["state"],
            o.status.code(),
            summary["failure"],
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A service configuration: `config check` of the shipped file, then the header's
/// `serve` over a copy and its manual trigger, whose run must complete.
async fn service_recipe(name: &str, header: &Header, config: &toml::Table) {
    let o = Command::new(bin())
        .args(["config", "check"])
        .arg(repo().join("recipes").join(name))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}: config check: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let serve = header
        .serve
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: its header says no `provsync serve --config`"));
    assert_eq!(serve.recipe(), name);
    let (token, path) = header
        .trigger
        .clone()
        .unwrap_or_else(|| panic!("{name}: its header gives no manual trigger (curl)"));
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut emus = Emulators::default();
    for step in &header.steps {
        match step {
            Step::Emulate(args) => emus.start(args, name),
            Step::Run(line) => panic!("{name}: a service recipe's header runs no job: {line:?}"),
        }
    }
    let (tmp, recipes, cwd) = workspace();
    let mut config = config.clone();
    for s in config["schedules"].as_array().unwrap() {
        let job = s["job_file"].as_str().unwrap();
        point_at(job, &recipes, &emus, &db.url);
    }
    if let Some(relay) = config.get_mut("relay").and_then(|r| r.as_table_mut()) {
        relay.insert("database".into(), db.url.clone().into());
    }
    let copy = recipes.join(name);
    std::fs::write(&copy, toml::to_string(&config).unwrap()).unwrap();

    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config", copy.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .envs(serve.env.iter().cloned())
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .env_remove("PROVSYNC_STATE")
        .current_dir(&cwd);
    let s = Serve::start(cmd);
    let accepted = s.call(&token, &["-X", "POST"], &path);
    let id = accepted["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: the trigger was refused: {accepted}"))
        .to_owned();
    let end = s.wait_terminal(&token, &id);
    assert_eq!(end["state"], "completed", "{name}: {end}");
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipe_runs_against_its_emulator_and_completes() {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    for name in &names {
        assert!(
            name.ends_with(".toml"),
            "recipes/ holds TOML recipes only: {name}"
        );
        let text = std::fs::read_to_string(repo().join("recipes").join(name)).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let header = Header::parse(&text);
        eprintln!("recipe {name}: {header:?}");
        if table.contains_key("source") {
            job_recipe(name, &header).await;
        } else {
            service_recipe(name, &header, &table).await;
        }
    }
}

#[test]
fn recipe_headers_are_read_with_their_continuations() {
    let h = Header::parse(
        "# Try it:\n#   provsync emulate onekey --night 2 &\n\
         #   A=1 B=two \\\n#     provsync run recipes/x.toml\n\
         # then `provsync status` tells\n\
         #   curl -X POST -H \"Authorization: Bearer t0k\" http://127.0.0.1:8080/v1/admin/sync/s\n\
         kind = \"provider-sync\"\n",
    );
    assert!(
        matches!(&h.steps[0], Step::Emulate(a) if a == &["onekey", "--night", "2"]),
        "{h:?}"
    );
    let runs: Vec<&Line> = h.runs().collect();
    assert_eq!((h.steps.len(), runs.len()), (2, 1), "{h:?}");
    assert_eq!(runs[0].recipe(), "x.toml");
    assert_eq!(
        runs[0].env,
        [("A".into(), "1".into()), ("B".into(), "two".into())]
    );
    assert_eq!(h.trigger, Some(("t0k".into(), "/v1/admin/sync/s".into())));
}
