//! The Salesforce target end to end: the real `provsync emulate onekey` serves a
//! generated world, the real `provsync emulate salesforce` plays the org, and the
//! real `provsync run` syncs codes into picklists and providers into the org. Every
//! test ends by asking the emulator for limit violations: there must be none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::emulators::Emulator;

fn mapping(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../mappings")
        .join(name)
}

/// A job file: `kind`, the OneKey source, the Salesforce target, extra target lines.
fn job(
    dir: &Path,
    name: &str,
    kind: &str,
    scope: &str,
    (mdm, org): (&Emulator, &Emulator),
    mapping_file: &Path,
    target_extra: &str,
) -> PathBuf {
    let text = format!(
        "kind = \"{kind}\"\nmode = \"full\"\nscope = [{scope}]\nmapping = \"{}\"\n\
         [source]\ntype = \"onekey\"\nurl = \"{}\"\nclient_id = \"provsync\"\nclient_secret_env = \"ONEKEY_CLIENT_SECRET\"\n\
         [target]\ntype = \"salesforce\"\nlogin_url = \"{}\"\nbackoff_ms = 20\npark_poll_secs = 1\n\
         auth = {{ flow = \"client_credentials\", client_id = \"provsync\", client_secret_env = \"SF_CLIENT_SECRET\" }}\n{target_extra}\n\
         [options]\npage_size = 100\nmax_disconnect_share = 0.5\n",
        mapping_file.display(),
        mdm.url,
        org.url
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `provsync run` of a job file with the emulators' secrets in its environment.
fn sf_command(job: &Path, state: &str) -> Command {
    let mut c = Command::new(bin());
    c.arg("run")
        .arg(job)
        .args(["--state", state, "--json", "-q"])
        .env("NO_COLOR", "1")
        .env("ONEKEY_CLIENT_SECRET", "provsync-secret")
        .env("SF_CLIENT_SECRET", "provsync-secret")
        .env_remove("PROVSYNC_STATE")
        .env_remove("PROVSYNC_QUEUE");
    c
}

fn run_sf(dir: &Path, job: &Path) -> Run {
    let o = sf_command(job, &state_url(dir))
        .output()
        .expect("spawn provsync run");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    Run {
        code: o.status.code().unwrap_or(-1),
        summary: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Codes sync then provider sync of one night; returns the provider run.
fn sync_night(dir: &Path, mdm: &Emulator, org: &Emulator, night: u32, extra: &str) -> Run {
    let lsc = mapping("salesforce-lsc.toml");
    let codes = job(
        dir,
        &format!("codes{night}"),
        "codes-sync",
        "\"US\"",
        (mdm, org),
        &lsc,
        extra,
    );
    let c = run_sf(dir, &codes);
    assert_eq!(c.state(), "completed", "codes sync: {c}");
    let providers = job(
        dir,
        &format!("providers{night}"),
        "provider-sync",
        "\"US\"",
        (mdm, org),
        &lsc,
        extra,
    );
    run_sf(dir, &providers)
}

#[test]
fn salesforce_full_sync_then_night_two_with_changes_additions_and_disconnections() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&[]);
    let mdm = Emulator::onekey(300, 1, "US");
    // Seed step 2.5: the HCP address batch is started through Apex REST at job end.
    let post_job = "[[target.post_job]]\nname = \"hcp-address-batch\"\n\
                    path = \"/services/apexrest/provsync/hcpAddressBatch\"\n\
                    body = { jobId = \"{job_id}\", state = \"{state}\" }";
    let r = sync_night(dir.path(), &mdm, &org, 1, post_job);
    assert_eq!(r.state(), "completed", "{r}");
    r.assert_reconciled();
    assert_eq!(r.count("failed"), 0, "{r}");
    let apex = org.get("/_emulator/apex-calls");
    let last = apex
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["body"]["jobId"], r.summary["job_id"], "{apex}");
    assert_eq!(last["body"]["state"], "completed", "{apex}");
    assert!(
        last["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("provsync/hcpAddressBatch"),
        "{apex}"
    );
    let individuals = r.kind_count("individual", "created");
    assert!(individuals >= 300, "{r}");
    assert_eq!(org.written("HealthcareProvider"), individuals);
    assert!(org.written("HealthcareProviderSpecialty") >= individuals);
    assert!(org.written("ProviderAffiliation") > 0);
    assert!(org.written("ContactPointAddress") > 0);
    assert_eq!(
        r.summary["target_report"]["integration_job_run"]["written"], true,
        "{r}"
    );
    org.assert_no_violations();
    drop(mdm);

    let mdm = Emulator::onekey(300, 2, "US");
    let r2 = sync_night(dir.path(), &mdm, &org, 2, "");
    assert_eq!(r2.state(), "completed", "{r2}");
    r2.assert_reconciled();
    assert!(r2.count("updated") > 0, "night 2 changes nothing: {r2}");
    assert!(r2.count("created") > 0, "night 2 adds nothing: {r2}");
    assert!(r2.count("unchanged") > 0, "{r2}");
    let disconnected: u64 = r2.summary["per_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["disconnected"].as_u64().unwrap_or(0))
        .sum();
    assert!(disconnected > 0, "night 2 disconnects nothing: {r2}");
    org.assert_no_violations();
}

#[test]
fn salesforce_lock_and_503_storm_completes_with_counts_that_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&["--lock-errors", "0.1", "--fail-503", "0.1", "--seed", "3"]);
    let mdm = Emulator::onekey(200, 1, "US");
    let r = sync_night(dir.path(), &mdm, &org, 1, "max_attempts = 12");
    assert_eq!(r.state(), "completed", "{r}");
    r.assert_reconciled();
    assert_eq!(r.count("failed"), 0, "{r}");
    assert_eq!(
        org.written("HealthcareProvider"),
        r.kind_count("individual", "created")
    );
    // The storm really blew: both faults were injected and retried through.
    let faults = &org.stats()["faults"];
    assert!(faults["lock_errors"].as_u64().unwrap_or(0) > 0, "{faults}");
    assert!(faults["fail_503"].as_u64().unwrap_or(0) > 0, "{faults}");
    org.assert_no_violations();
}

/// A lock storm heavy enough that requests of 75 graphs fail more than 14 of them:
/// Salesforce then halts the rest with PROCESSING_HALTED (REST API Developer Guide,
/// "Composite Graph Limits",
/// https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_graph_limits.htm).
/// The halted graphs are re-sent without spending the records' attempts, the
/// requests shrink, and the run writes every record.
#[test]
fn salesforce_lock_storm_halted_graphs_are_re_sent_and_no_record_fails() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&["--lock-errors", "0.4", "--seed", "5"]);
    let mdm = Emulator::onekey(200, 1, "US");
    let r = sync_night(dir.path(), &mdm, &org, 1, "max_attempts = 20");
    assert_eq!(r.state(), "completed", "{r}");
    r.assert_reconciled();
    assert_eq!(r.count("failed"), 0, "{r}");
    assert_eq!(
        org.written("HealthcareProvider"),
        r.kind_count("individual", "created")
    );
    let graphs = &org.stats()["graphs"];
    let halted = graphs["halted"].as_u64().unwrap_or(0);
    assert!(halted > 0, "no graph was halted: {graphs}");
    // Every halted graph was seen by the target and re-sent.
    assert_eq!(
        r.summary["target_report"]["graphs_halted"].as_u64(),
        Some(halted),
        "{r}"
    );
    org.assert_no_violations();
}

#[test]
fn salesforce_token_expiry_mid_run_logs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&["--latency-ms", "40"]);
    let mdm = Emulator::onekey(200, 1, "US");
    // Every session the org issued is expired again and again while the runs go.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let expirer = {
        let done = done.clone();
        let url = org.url.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                let _ = Command::new("curl")
                    .args([
                        "-sS",
                        "-X",
                        "POST",
                        &format!("{url}/_emulator/expire-tokens"),
                    ])
                    .output();
                n += 1;
            }
            n
        })
    };
    let r = sync_night(dir.path(), &mdm, &org, 1, "");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let expiries = expirer.join().unwrap();
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    r.assert_reconciled();
    let issued = org.stats()["tokens_issued"].as_u64().unwrap_or(0);
    assert!(
        expiries > 2 && issued > 2,
        "tokens issued: {issued} over {expiries} expiries"
    );
    org.post("/_emulator/expire-tokens");
    org.assert_no_violations();
}

#[test]
fn salesforce_spent_budget_parks_the_job_until_it_resets() {
    let dir = tempfile::tempdir().unwrap();
    // Enough for the codes sync and part of the load; the window resets in 8 s.
    let org = Emulator::salesforce(&["--api-budget", "15", "--budget-window-secs", "8"]);
    let mdm = Emulator::onekey(300, 1, "US");
    let started = std::time::Instant::now();
    let r = sync_night(dir.path(), &mdm, &org, 1, "budget_reserve = 3");
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    r.assert_reconciled();
    assert!(
        started.elapsed().as_secs() >= 8,
        "the run never waited for the budget"
    );
    org.assert_no_violations();
}

/// The emulator's default org with some properties of one field changed, as a
/// `--schema` file in `dir`.
fn org_schema(dir: &Path, object: &str, field: &str, change: Value) -> PathBuf {
    let mut schema: Value =
        serde_json::from_str(provsync_emulators::salesforce::schema::DEFAULT_SCHEMA).unwrap();
    let fields = schema["sobjects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["name"] == object)
        .unwrap_or_else(|| panic!("no {object} in the default org"))["fields"]
        .as_array_mut()
        .unwrap();
    let f = fields
        .iter_mut()
        .find(|f| f["name"] == field)
        .unwrap_or_else(|| panic!("no {object}.{field} in the default org"));
    for (k, v) in change.as_object().unwrap() {
        f[k] = v.clone();
    }
    let path = dir.join(format!("org-{object}-{field}.json"));
    std::fs::write(&path, schema.to_string()).unwrap();
    path
}

#[test]
fn salesforce_preflight_failure_fails_the_job_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    // Account.Type restricted, without the workplace mapping's default "Other".
    let schema = org_schema(
        dir.path(),
        "Account",
        "Type",
        serde_json::json!({"restrictedPicklist": true, "picklistValues": [
            {"value": "Hospital"}, {"value": "Clinic"}, {"value": "Pharmacy"},
            {"value": "Practice"}
        ]}),
    );
    let org = Emulator::salesforce(&["--schema", schema.to_str().unwrap()]);
    let mdm = Emulator::onekey(50, 1, "US");
    let text = std::fs::read_to_string(mapping("salesforce-lsc.toml"))
        .unwrap()
        .replace(
            "PersonEmail = \"email\"",
            "PersonEmail = \"email\"\nShoe_Size__c = \"gender\"",
        )
        .replace(
            "object = \"HealthcareProviderNpi\"",
            "object = \"HealthcareProviderNpiX\"",
        );
    let bad = dir.path().join("bad-mapping.toml");
    std::fs::write(&bad, text).unwrap();
    let j = job(
        dir.path(),
        "bad",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &bad,
        "",
    );
    let r = run_sf(dir.path(), &j);
    assert_eq!(r.state(), "failed", "{r}");
    let failure = r.summary["failure"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(failure.contains("preflight"), "{failure}");
    assert!(failure.contains("Account.Shoe_Size__c"), "{failure}");
    assert!(
        failure.contains("object HealthcareProviderNpiX does not exist"),
        "{failure}"
    );
    // Restricted picklists with no values yet (no codes sync ran): named too.
    assert!(failure.contains("Specialty__pc"), "{failure}");
    // A value the mapping itself writes that the restricted picklist lacks: named
    // with where the mapping says it.
    assert!(
        failure.contains(
            "Account.Type (workplace mapping): value \"Other\" from the mapping's default \
             is not in the restricted picklist"
        ),
        "{failure}"
    );
    assert_eq!(org.written("Account"), 0);
    org.assert_no_violations();
}

#[test]
fn salesforce_codes_sync_over_the_value_set_cap_reports_what_is_left_out_and_reruns_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&[]);
    // Two countries' specialties (about 870 each) share one global value set.
    let mdm = Emulator::onekey(20, 1, "US,ES");
    let lsc = mapping("salesforce-lsc.toml");
    let j = job(
        dir.path(),
        "codes",
        "codes-sync",
        "\"US\", \"ES\"",
        (&mdm, &org),
        &lsc,
        "",
    );
    // Left-out values are failed records: let them not fail the run ([options] is last).
    let mut text = std::fs::read_to_string(&j).unwrap();
    text.push_str("max_failed_records = \"50%\"\n");
    std::fs::write(&j, text).unwrap();
    let r = run_sf(dir.path(), &j);
    assert_eq!(r.state(), "completed_with_errors", "{r}");
    let sets = &r.summary["target_report"]["value_sets"];
    let sp = &sets["OneKey_Specialty"];
    let added = sp["added"].as_u64().unwrap();
    let left_out = sp["not_fitted"].as_array().unwrap().len() as u64;
    assert_eq!(added, 1_000, "{sets}");
    assert!(left_out > 0, "{sets}");
    assert_eq!(r.count("failed"), left_out, "{r}");
    assert!(r.summary["first_errors"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("OneKey_Specialty is full"));
    assert_eq!(sets["OneKey_Role"]["added"].as_u64(), Some(12), "{sets}");

    let again = run_sf(dir.path(), &j);
    assert_eq!(again.count("created"), 0, "{again}");
    assert_eq!(again.count("updated"), 0, "{again}");
    let sets = &again.summary["target_report"]["value_sets"];
    assert_eq!(
        sets["OneKey_Specialty"]["added"].as_u64(),
        Some(0),
        "{sets}"
    );
    assert_eq!(
        again.summary["target_report"]["value_sets_note"].as_str(),
        Some("no change: every value set already had these values"),
        "{again}"
    );
    org.assert_no_violations();
}

#[test]
fn salesforce_health_cloud_mapping_loads_practitioner_facilities() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&[]);
    let mdm = Emulator::onekey(120, 1, "US");
    let hc = mapping("salesforce-health-cloud.toml");
    let codes = job(
        dir.path(),
        "codes",
        "codes-sync",
        "\"US\"",
        (&mdm, &org),
        &hc,
        "",
    );
    assert_eq!(run_sf(dir.path(), &codes).state(), "completed");
    let j = job(
        dir.path(),
        "hc",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &hc,
        "",
    );
    let r = run_sf(dir.path(), &j);
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    r.assert_reconciled();
    let links = r.kind_count("activity", "created") + r.kind_count("activity", "updated");
    assert!(links > 0, "{r}");
    assert_eq!(org.written("HealthcarePractitionerFacility"), links);
    assert_eq!(org.written("ProviderAffiliation"), 0);
    org.assert_no_violations();
}

/// The job file of `job` with its client-credentials auth swapped for the JWT
/// bearer flow signed by the test key, as `username`.
fn jwt_job(plain: &Path, username: &str) -> PathBuf {
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/salesforce/jwt-test-key.pem");
    let text = std::fs::read_to_string(plain).unwrap();
    let old = "auth = { flow = \"client_credentials\", client_id = \"provsync\", client_secret_env = \"SF_CLIENT_SECRET\" }";
    assert!(text.contains(old), "job file layout changed: {text}");
    let new = format!(
        "auth = {{ flow = \"jwt\", client_id = \"provsync\", username = \"{username}\", \
         audience = \"https://login.salesforce.com\", private_key_file = \"{}\" }}",
        key.display()
    );
    let path = plain.with_extension("jwt.toml");
    std::fs::write(&path, text.replace(old, &new)).unwrap();
    path
}

#[test]
fn salesforce_jwt_bearer_flow_syncs_and_a_refused_assertion_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/salesforce/jwt-test-cert.pem");
    // Tokens live 1 s: the run has to sign fresh assertions as it goes.
    let org = Emulator::salesforce(&[
        "--jwt-cert",
        cert.to_str().unwrap(),
        "--token-ttl-secs",
        "1",
    ]);
    let mdm = Emulator::onekey(80, 1, "US");
    let lsc = mapping("salesforce-lsc.toml");
    let codes = job(
        dir.path(),
        "codes",
        "codes-sync",
        "\"US\"",
        (&mdm, &org),
        &lsc,
        "",
    );
    let codes = jwt_job(&codes, "integration@provsync.example");
    let c = run_sf(dir.path(), &codes);
    assert_eq!(c.state(), "completed", "{c}");
    let providers = job(
        dir.path(),
        "providers",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &lsc,
        "",
    );
    let good = jwt_job(&providers, "integration@provsync.example");
    let r = run_sf(dir.path(), &good);
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    r.assert_reconciled();
    assert_eq!(
        org.written("HealthcareProvider"),
        r.kind_count("individual", "created")
    );
    org.assert_no_violations();

    // An assertion for a user the org does not know is refused at login: the job
    // fails before loading and says why.
    let bad = jwt_job(&providers, "somebody-else@provsync.example");
    let state = tempfile::tempdir().unwrap();
    let r = run_sf(state.path(), &bad);
    assert_eq!(r.state(), "failed", "{r}");
    let text = format!("{} {}", r.summary, r.stderr);
    assert!(
        text.contains("invalid_grant"),
        "the refusal is not named: {r}"
    );
    org.assert_no_violations();
}

#[test]
fn salesforce_bulk_api_loads_large_writes_and_reports_the_rows_salesforce_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Lock errors hit Bulk rows too: they come back in failedResults and are retried.
    let org = Emulator::salesforce(&["--lock-errors", "0.05", "--seed", "5"]);
    // Two countries' specialties do not fit the 1,000-value set: individuals whose
    // specialty was left out are refused by the restricted picklist, row by row.
    let mdm = Emulator::onekey(150, 1, "US,ES");
    let lsc = mapping("salesforce-lsc.toml");
    let scope = "\"US\", \"ES\"";
    let bulk = "bulk_threshold = 150\nbulk_poll_ms = 50\nmax_attempts = 12";
    let lenient = |j: PathBuf| {
        let mut text = std::fs::read_to_string(&j).unwrap();
        text.push_str("max_failed_records = \"90%\"\n");
        std::fs::write(&j, text).unwrap();
        j
    };
    let codes = lenient(job(
        dir.path(),
        "codes",
        "codes-sync",
        scope,
        (&mdm, &org),
        &lsc,
        bulk,
    ));
    let c = run_sf(dir.path(), &codes);
    assert_eq!(c.state(), "completed_with_errors", "{c}");
    let providers = lenient(job(
        dir.path(),
        "providers",
        "provider-sync",
        scope,
        (&mdm, &org),
        &lsc,
        bulk,
    ));
    let r = run_sf(dir.path(), &providers);
    assert_eq!(r.state(), "completed_with_errors", "{r}");
    r.assert_reconciled();

    // The entity pages went as Bulk jobs.
    assert!(org.calls("bulk_create") > 0, "{}", org.stats());
    assert!(
        org.calls("bulk_results") >= 2 * org.calls("bulk_create"),
        "{}",
        org.stats()
    );
    let jobs = org.bulk_jobs();
    // Most rows went through Bulk; graphs and collections only carry the records a
    // lock error sent back (retried in a round too small for Bulk) and the links.
    let in_bulk: u64 = jobs
        .iter()
        .filter_map(|j| j["numberRecordsProcessed"].as_u64())
        .sum();
    let written: u64 = org.stats()["records_written"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(
        in_bulk * 2 > written,
        "{in_bulk} of {written} rows in Bulk jobs"
    );
    assert!(
        jobs.iter().all(|j| j["state"] == "JobComplete"),
        "every Bulk job ran to its end: {jobs:?}"
    );
    for object in [
        "Account",
        "HealthcareProvider",
        "HealthcareProviderSpecialty",
        "HealthcareProviderNpi",
    ] {
        assert!(
            jobs.iter()
                .any(|j| j["object"] == object && j["operation"] == "upsert"),
            "no Bulk upsert of {object}: {jobs:?}"
        );
    }
    assert!(org.stats()["faults"]["lock_errors"].as_u64().unwrap_or(0) > 0);

    // Refused rows are failed records naming the value and the picklist; written
    // records have their children (sent only for written parents).
    let refused = r.kind_count("individual", "failed");
    assert!(refused > 0, "{r}");
    let reasons: Vec<&str> = r.summary["first_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|m| m.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
                && m.contains("is not in the restricted picklist Account.Specialty__pc")),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|m| m.contains("UNABLE_TO_LOCK_ROW")),
        "{reasons:?}"
    );
    let individuals = r.kind_count("individual", "created");
    assert!(individuals > 0, "{r}");
    // Children go only with a written parent (a lock error re-sends a record and its
    // children, so writes are counted more than once: count the org's records).
    assert_eq!(org.count("HealthcareProvider"), individuals, "{r}");
    org.assert_no_violations();
}

/// An org started with `org_flags`, an MDM of `individuals`, the codes synced
/// (with `codes_extra` target lines), and the provider sync job file (with
/// `providers_extra`).
fn codes_synced_world(
    dir: &Path,
    org_flags: &[&str],
    individuals: u32,
    codes_extra: &str,
    providers_extra: &str,
) -> (Emulator, Emulator, PathBuf) {
    let org = Emulator::salesforce(org_flags);
    let mdm = Emulator::onekey(individuals, 1, "US");
    let lsc = mapping("salesforce-lsc.toml");
    let pair = (&mdm, &org);
    let codes = job(
        dir,
        "codes",
        "codes-sync",
        "\"US\"",
        pair,
        &lsc,
        codes_extra,
    );
    assert_eq!(run_sf(dir, &codes).state(), "completed");
    let providers = job(
        dir,
        "providers",
        "provider-sync",
        "\"US\"",
        pair,
        &lsc,
        providers_extra,
    );
    (org, mdm, providers)
}

/// An hour-long budget window, cut to `budget` calls after the codes sync (3 kept
/// in reserve).
fn budget_world(dir: &Path, budget: u64) -> (Emulator, Emulator, PathBuf) {
    let reserve = "budget_reserve = 3";
    let world = codes_synced_world(
        dir,
        &["--budget-window-secs", "3600"],
        300,
        reserve,
        reserve,
    );
    world.0.set_budget(budget);
    world
}

/// Bulk jobs that take 1.5 s per 200 rows (real ones take seconds), and a provider
/// sync that loads through Bulk.
fn slow_bulk_world(dir: &Path) -> (Emulator, Emulator, PathBuf) {
    let bulk = "bulk_threshold = 150\nbulk_poll_ms = 50";
    codes_synced_world(dir, &["--bulk-chunk-ms", "1500"], 400, "", bulk)
}

/// Starts `run` in the background, aborts its job once the org works on one of its
/// Bulk jobs, and waits for the run to end.
fn abort_while_bulk_runs(org: &Emulator, dir: &Path, run: Command, state: &str) -> Run {
    let mut bg = spawn_command(run, dir, "run");
    let id = bg.job_id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !org
        .bulk_jobs()
        .iter()
        .any(|j| j["state"] == "InProgress" || j["state"] == "UploadComplete")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no Bulk job in progress: {:?}",
            org.bulk_jobs()
        );
        assert!(
            bg.child.try_wait().unwrap().is_none(),
            "the run ended before its Bulk jobs were seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    abort_job(&id, state);
    let r = bg.wait();
    r.expect_code(3);
    assert_eq!(r.state(), "aborted", "{r}");
    r
}

/// Some Bulk job was aborted in the org, and none is left open or running.
fn assert_bulk_jobs_aborted(org: &Emulator, context: &str) {
    let jobs = org.bulk_jobs();
    assert!(
        jobs.iter().any(|j| j["state"] == "Aborted"),
        "{jobs:?}\n{context}"
    );
    assert!(
        !jobs.iter().any(|j| matches!(
            j["state"].as_str(),
            Some("Open" | "UploadComplete" | "InProgress")
        )),
        "{jobs:?}"
    );
    org.assert_no_violations();
}

#[test]
fn salesforce_abort_aborts_the_runs_bulk_jobs_in_the_org() {
    let dir = tempfile::tempdir().unwrap();
    let (org, _mdm, providers) = slow_bulk_world(dir.path());
    let state = state_url(dir.path());
    let r = abort_while_bulk_runs(&org, dir.path(), sf_command(&providers, &state), &state);
    r.assert_reconciled();
    assert_eq!(r.count("disconnected"), 0, "{r}");
    // Rows the aborted jobs never processed are failed records naming their job.
    assert!(
        r.summary["first_errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("aborted with the run"))),
        "{r}"
    );
    assert_bulk_jobs_aborted(&org, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_abort_in_the_distributed_runtime_aborts_the_bulk_jobs_its_workers_started() {
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (org, _mdm, providers) = slow_bulk_world(dir.path());
    // One worker process does the loading; the driver extracts and waits.
    let worker = Worker::start(dir.path(), &pg.url, "sfabort", SF_SECRETS);
    let mut driver = sf_command(&providers, &pg.url);
    driver.args(["--queue", &worker.queue]);
    let r = abort_while_bulk_runs(&org, dir.path(), driver, &pg.url);
    let log = worker.stop();
    assert_eq!(r.count("disconnected"), 0, "{r}");
    assert_bulk_jobs_aborted(&org, &log);
}

/// What a worker needs for these jobs: the emulators' secrets.
const SF_SECRETS: &[(&str, Option<&str>)] = &[
    ("ONEKEY_CLIENT_SECRET", Some("provsync-secret")),
    ("SF_CLIENT_SECRET", Some("provsync-secret")),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_a_worker_parked_on_the_budget_shows_the_job_parked_with_its_note() {
    if !broker_up() {
        return;
    }
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 14 calls: the driver's login and preflight take 8 and the IntegrationJobRun's
    // describe, lookup and create 3, so the worker, which opens the job's connectors
    // for itself, parks in its own preflight or first pages.
    let (org, _mdm, providers) = budget_world(dir.path(), 14);
    let worker = Worker::start(dir.path(), &pg.url, "sfpark", SF_SECRETS);
    let mut driver = sf_command(&providers, &pg.url);
    driver.args(["--queue", &worker.queue]);
    let mut bg = spawn_command(driver, dir.path(), "run");
    let id = bg.job_id();
    let st = bg.wait_for_status(&id, &pg.url, "the job shows parked", |s| {
        s["stage"] == "parked"
    });
    assert!(
        st["note"]
            .as_str()
            .unwrap_or("")
            .contains("API budget spent"),
        "{st}"
    );
    org.set_budget(100_000);
    let r = bg.wait();
    let log = worker.stop();
    assert_eq!(r.state(), "completed", "{r}\n{log}");
    r.assert_reconciled();
    assert!(log.contains("job parked"), "the worker did not park: {log}");
    let st = status(&id, &pg.url);
    assert!(st["note"].is_null(), "{st}");
    org.assert_no_violations();
}

/// A provider sync that parks once the org's budget (`budget` calls after the codes
/// sync, 3 kept in reserve, an hour before it resets) is spent, aborted while
/// parked; the run must end within a minute.
fn abort_a_parked_run(budget: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (org, _mdm, providers) = budget_world(dir.path(), budget);
    let state = state_url(dir.path());
    let mut bg = spawn_command(sf_command(&providers, &state), dir.path(), "run");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "the job parks", |s| s["stage"] == "parked");
    let aborted_at = std::time::Instant::now();
    abort_job(&id, &state);
    // Without the abort reaching the parked writes the run would wait an hour.
    while bg.child.try_wait().unwrap().is_none() {
        if aborted_at.elapsed().as_secs() > 60 {
            let _ = bg.child.kill();
            panic!("the aborted run still waits for the budget after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = bg.wait();
    r.expect_code(3);
    assert_eq!(r.state(), "aborted", "{r}");
    r.assert_reconciled();
    assert_eq!(r.count("disconnected"), 0, "{r}");
    org.assert_no_violations();
    r
}

#[test]
fn salesforce_abort_while_parked_on_the_spent_budget_ends_the_run_without_waiting_for_the_reset() {
    // 14 calls pay for the login, the preflight's describes, the IntegrationJobRun's
    // describe, lookup and create, and the first writes.
    let r = abort_a_parked_run(14);
    // The parked writes are failed records saying why, not lost ones.
    assert!(r.count("failed") > 0, "{r}");
    assert!(
        r.summary["first_errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("aborted while parked on the spent daily API budget"))),
        "{r}"
    );
}

#[test]
fn salesforce_abort_of_a_job_parked_in_its_preflight_ends_it_aborted_not_failed() {
    // 5 calls: the login and one describe, then the preflight parks.
    let r = abort_a_parked_run(5);
    assert_eq!(r.count("extracted"), 0, "{r}");
    assert!(r.summary["failure"].is_null(), "{r}");
    assert_eq!(
        r.summary["sweep"]["skipped"].as_str(),
        Some("the job was aborted before extraction"),
        "{r}"
    );
}

/// "A provider sync whose records carry codes unknown to a restricted picklist
/// reports them clearly": the picklist has active values (so preflight passes), the
/// records' specialties are not among them, and each refused record's error names
/// the object, the field, the value, that the picklist is restricted, and the codes
/// sync as the way out.
#[test]
fn salesforce_records_with_codes_unknown_to_a_restricted_picklist_name_them_in_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let schema = org_schema(
        dir.path(),
        "Account",
        "Specialty__pc",
        serde_json::json!({"valueSetName": null, "valueSetType": null,
            "picklistValues": [{"value": "NOT.A.SPECIALTY"}]}),
    );
    let org = Emulator::salesforce(&["--schema", schema.to_str().unwrap()]);
    let mdm = Emulator::onekey(30, 1, "US");
    // Nearly every record fails, so the failure threshold also fails the run: what
    // matters here is what the error ledger says of each refused record.
    let r = sync_night(dir.path(), &mdm, &org, 1, "");
    assert!(r.kind_count("individual", "failed") > 0, "{r}");
    let st = status(&r.job_id(), &state_url(dir.path()));
    let reasons: Vec<&str> = st["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .filter(|r| r.contains("Specialty__pc"))
        .collect();
    let reason = reasons
        .first()
        .unwrap_or_else(|| panic!("no picklist error: {st:#}"));
    assert!(
        reason.starts_with("Account ")
            && reason.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{reason}"
    );
    let value = reason
        .split("value \"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("the value is not named: {reason}"));
    assert!(!value.is_empty() && value != "NOT.A.SPECIALTY", "{reason}");
    assert!(
        reason.contains(&format!(
            "value \"{value}\" is not in the restricted picklist Account.Specialty__pc: \
             run the codes sync or fix the codes mapping"
        )),
        "{reason}"
    );
    org.assert_no_violations();
}

/// An org whose duplicate rule matches person accounts on LastName: the records
/// it flags fail, each error naming the rule, the Account it matched (which the
/// org has) and the target option; a run with `duplicate_rule_allow_save = true`
/// saves them all, through graphs (whose nodes carry the header themselves) and
/// collections (links, under a rule on ProviderAffiliation), never Bulk API 2.0
/// (which takes no such header) even over `bulk_threshold`.
#[test]
fn salesforce_duplicate_rules_reject_records_naming_rule_and_match_and_allow_save_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&["--duplicate-rule", "Account:LastName"]);
    let mdm = Emulator::onekey(80, 1, "US");
    let r = sync_night(dir.path(), &mdm, &org, 1, "");
    let st = status(&r.job_id(), &state_url(dir.path()));
    let errors = st["errors"].as_array().cloned().unwrap_or_default();
    let duplicates: Vec<&str> = errors
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .filter(|r| r.contains("DUPLICATES_DETECTED"))
        .collect();
    assert!(!duplicates.is_empty(), "no duplicate reported: {st:#}");
    assert_eq!(
        r.kind_count("individual", "failed") as usize,
        duplicates.len(),
        "every failed individual is a duplicate: {st:#}"
    );
    let mut rejected = Vec::new();
    for reason in &duplicates {
        let key = reason
            .strip_prefix("Account ")
            .and_then(|r| r.split(':').next())
            .unwrap_or_else(|| panic!("no record named: {reason}"));
        let matched = reason
            .split("duplicate rule Account_Duplicate_Rule matched Account ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .unwrap_or_else(|| panic!("the rule and match are not named: {reason}"));
        assert!(
            reason.ends_with("the target option duplicate_rule_allow_save = true saves it anyway]"),
            "{reason}"
        );
        let found = org.api_get(&format!("/services/data/v65.0/sobjects/Account/{matched}"));
        assert_eq!(
            found["Id"], matched,
            "the matched record is in the org: {found}"
        );
        assert_ne!(found["OneKey_Id__c"], key, "{reason}");
        rejected.push(key.to_owned());
    }

    // A fresh state: every record is written again, well over bulk_threshold.
    let again = tempfile::tempdir().unwrap();
    let providers = job(
        again.path(),
        "providers",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &mapping("salesforce-lsc.toml"),
        "duplicate_rule_allow_save = true\nbulk_threshold = 10",
    );
    let r = run_sf(again.path(), &providers);
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    r.assert_reconciled();
    assert!(org.bulk_jobs().is_empty(), "{:?}", org.bulk_jobs());
    for key in &rejected {
        let found = org.api_get(&format!(
            "/services/data/v65.0/sobjects/Account/OneKey_Id__c/{key}"
        ));
        assert_eq!(found["OneKey_Id__c"], key.as_str(), "{found}");
    }
    org.assert_no_violations();

    // Links go as sObject Collections: the header rides on those requests too. A
    // rule every active affiliation matches lets them all in with the option.
    let links = Emulator::salesforce(&["--duplicate-rule", "ProviderAffiliation:IsActive"]);
    let third = tempfile::tempdir().unwrap();
    let r = sync_night(
        third.path(),
        &mdm,
        &links,
        1,
        "duplicate_rule_allow_save = true",
    );
    assert_eq!(r.state(), "completed", "{r}");
    assert_eq!(r.count("failed"), 0, "{r}");
    assert!(links.calls("collections_upsert") > 0, "{}", links.stats());
    assert!(links.count("ProviderAffiliation") > 1);
    links.assert_no_violations();
}

/// A mapped field the integration user cannot see is absent from describe: the
/// preflight names it and field-level security as the likely cause, and nothing
/// is written.
#[test]
fn salesforce_preflight_names_a_mapped_field_hidden_by_field_level_security() {
    let dir = tempfile::tempdir().unwrap();
    let org = Emulator::salesforce(&["--hide-field", "Account.PersonEmail"]);
    let mdm = Emulator::onekey(20, 1, "US");
    let j = job(
        dir.path(),
        "providers",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &mapping("salesforce-lsc.toml"),
        "",
    );
    let r = run_sf(dir.path(), &j);
    assert_eq!(r.state(), "failed", "{r}");
    let failure = r.summary["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("preflight"), "{failure}");
    assert!(
        failure.contains(
            "Account.PersonEmail (individual mapping) is not in describe: it does not exist, \
             or is not visible to this user: check field-level security"
        ),
        "{failure}"
    );
    assert_eq!(org.written("Account"), 0);
    org.assert_no_violations();
}

/// `provsync serve` and its HTTP helpers, shared with the API tests (not copied).
#[path = "../api/common.rs"]
mod serve;

/// Submits a job file (as `job` writes it) to the server; returns the job id.
async fn submit_file(s: &serve::Server, file: &Path) -> String {
    let body: Value = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let (status, v) = s.submit(&body).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{v}");
    v["job_id"].as_str().unwrap().to_owned()
}

/// The reason a job is parked lives in the state store, not in the memory of the
/// process running it: `GET /v1/jobs/{id}`, a separate `provsync status` process and
/// a second `serve` all name the spent budget while the job waits, and the note is
/// gone once the budget resets and the job completes. (Before, only the server
/// running the job knew it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_parked_jobs_note_is_in_the_store_for_every_process_until_it_resumes() {
    // A window that never resets by itself: the test resets the budget when it is done looking.
    let org = Emulator::salesforce(&["--budget-window-secs", "86400"]);
    let mdm = Emulator::onekey(300, 1, "US");
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = serve::Server::start_with_env(
        dir,
        &state,
        "",
        &[
            ("ONEKEY_CLIENT_SECRET", "provsync-secret"),
            ("SF_CLIENT_SECRET", "provsync-secret"),
        ],
    );
    let lsc = mapping("salesforce-lsc.toml");
    let pair = (&mdm, &org);
    let reserve = "budget_reserve = 3";
    let codes = job(
        s.path(),
        "codes",
        "codes-sync",
        "\"US\"",
        pair,
        &lsc,
        reserve,
    );
    let codes = s.wait_terminal(&submit_file(&s, &codes).await).await;
    assert_eq!(codes["state"], "completed", "{codes:#}");

    // The provider sync needs more than 14 calls: 14 (3 kept in reserve) pay for
    // its preflight's 7 describes, its IntegrationJobRun's describe, lookup and
    // create, and the first writes, then it parks.
    org.set_budget(14);
    let providers = job(
        s.path(),
        "providers",
        "provider-sync",
        "\"US\"",
        pair,
        &lsc,
        reserve,
    );
    let id = submit_file(&s, &providers).await;
    let parked = s
        .wait_for(
            &id,
            "stage parked",
            std::time::Duration::from_secs(120),
            |v| v["stage"] == "parked" || v["timings"]["finished_at"].is_string(),
        )
        .await;
    assert_eq!(
        parked["stage"], "parked",
        "the run never parked: {parked:#}"
    );
    let note = parked["note"].as_str().unwrap_or_default().to_owned();
    assert!(note.contains("API budget spent"), "{parked:#}");

    // Other processes, reading the same store: the CLI and a second server.
    let cli = status(&id, &state);
    assert_eq!(cli["stage"], "parked", "{cli:#}");
    assert_eq!(cli["note"].as_str(), Some(note.as_str()), "{cli:#}");
    let other = serve::Server::start_with_state(&state);
    let (_, seen) = other.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(seen["note"].as_str(), Some(note.as_str()), "{seen:#}");
    drop(other);

    // The budget comes back (and is large enough for the rest): the job resumes.
    org.set_budget(100_000);
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(done["note"], Value::Null, "{done:#}");
    assert_ne!(done["stage"], "parked", "{done:#}");
    assert_eq!(status(&id, &state)["note"], Value::Null);
    org.assert_no_violations();
}

/// A SOQL query's records, every page of them.
fn soql(org: &Emulator, query: &str) -> Vec<Value> {
    let encoded: String = query
        .chars()
        .map(|ch| match ch {
            ' ' => "%20".to_string(),
            '\'' => "%27".to_string(),
            '=' => "%3D".to_string(),
            ',' => "%2C".to_string(),
            ch => ch.to_string(),
        })
        .collect();
    let mut path = format!("/services/data/v65.0/query?q={encoded}");
    let mut records = Vec::new();
    loop {
        let page = org.api_get(&path);
        records.extend(page["records"].as_array().cloned().unwrap_or_default());
        match page["nextRecordsUrl"].as_str() {
            Some(next) if page["done"] != true => path = next.to_string(),
            _ => return records,
        }
    }
}

/// A provider record of the org as the count test compares it.
#[derive(Debug, Clone, PartialEq)]
struct OrgRecord {
    kind: &'static str,
    active: bool,
    modified: String,
    /// The workplace an activity is at.
    related: Option<String>,
}

/// The org's records of each provider kind (the salesforce-lsc mapping: person and
/// business Accounts, and ProviderAffiliations from a person Account (activities)
/// or from a business one (the workplace hierarchy)), by record id.
fn org_records(org: &Emulator) -> BTreeMap<String, OrgRecord> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut out = BTreeMap::new();
    for r in soql(
        org,
        "SELECT Id, IsPersonAccount, Active__c, LastModifiedDate FROM Account",
    ) {
        let kind = if r["IsPersonAccount"] == true {
            "individual"
        } else {
            "workplace"
        };
        out.insert(
            text(&r["Id"]).unwrap(),
            OrgRecord {
                kind,
                active: r["Active__c"] == true,
                modified: text(&r["LastModifiedDate"]).unwrap(),
                related: None,
            },
        );
    }
    for r in soql(
        org,
        "SELECT Id, AccountId, IsActive, RelatedAccountId, LastModifiedDate FROM ProviderAffiliation",
    ) {
        let from = text(&r["AccountId"]).and_then(|id| out.get(&id));
        let kind = match from.map(|a| a.kind) {
            Some("individual") => "activity",
            Some("workplace") => "relation",
            other => panic!("an affiliation of no provider kind: {other:?}"),
        };
        out.insert(
            text(&r["Id"]).unwrap(),
            OrgRecord {
                kind,
                active: r["IsActive"] == true,
                modified: text(&r["LastModifiedDate"]).unwrap(),
                related: text(&r["RelatedAccountId"]),
            },
        );
    }
    out
}

/// What the org records of a run, from its records before and after: new ones were
/// created; ones stamped again were updated, or disconnected when their active flag
/// was cleared, or connected again when it was set; activities now at another
/// workplace moved; active ones left alone were unchanged.
fn org_changes(
    before: &BTreeMap<String, OrgRecord>,
    after: &BTreeMap<String, OrgRecord>,
) -> Recorded {
    let mut r = Recorded {
        by: "the org",
        changes: vec![
            "created",
            "updated",
            "moved",
            "disconnected",
            "connected",
            "unchanged",
        ],
        counts: BTreeMap::new(),
    };
    let mut add = |kind: &str, change: &str| {
        *r.counts
            .entry((kind.to_string(), change.to_string()))
            .or_default() += 1;
    };
    for (id, now) in after {
        let Some(was) = before.get(id) else {
            add(now.kind, "created");
            add(now.kind, "connected");
            continue;
        };
        if was.modified == now.modified {
            if now.active {
                add(now.kind, "unchanged");
            }
            continue;
        }
        if was.active && !now.active {
            add(now.kind, "disconnected");
            continue;
        }
        add(now.kind, "updated");
        if !was.active && now.active {
            add(now.kind, "connected");
        }
        if was.related != now.related {
            add(now.kind, "moved");
        }
    }
    r
}

/// The org's IntegrationJobRun of job `id`: its JobExectionSummary's counts.
fn integration_job_run(org: &Emulator, id: &str) -> Reading {
    let runs = soql(
        org,
        &format!("SELECT JobExectionSummary FROM IntegrationJobRun WHERE JobIdentifier = '{id}'"),
    );
    assert_eq!(runs.len(), 1, "IntegrationJobRun of {id}: {runs:?}");
    let summary: Value =
        serde_json::from_str(runs[0]["JobExectionSummary"].as_str().unwrap()).unwrap();
    assert!(
        summary["per_kind"].is_object(),
        "the IntegrationJobRun of {id} has no counts per kind: {summary}"
    );
    Reading::json(
        "the org's IntegrationJobRun JobExectionSummary",
        &summary["counts"],
        &summary["per_kind"],
    )
}

/// One truth for counts into Salesforce: a provider sync of night 1 (`provsync run`)
/// and of night 2 (through `provsync serve`: changes, additions, a sweep); every
/// surface of each run (its own output, `status --json`, the API, `/metrics`, and the
/// IntegrationJobRun it wrote to the org) shows, per kind and per change, what the
/// org's own records say the run did.
#[test]
fn salesforce_nights_agree_on_every_surface_with_the_org() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let state = state_url(dir);
    let env = [
        ("ONEKEY_CLIENT_SECRET", "provsync-secret"),
        ("SF_CLIENT_SECRET", "provsync-secret"),
    ];
    let serve = Serve::on_state(dir, &state, &env);
    let org = Emulator::salesforce(&[]);
    let lsc = mapping("salesforce-lsc.toml");
    let mut c = Checks::default();
    for (night, via) in [(1, Via::Text), (2, Via::Serve)] {
        let mdm = Emulator::onekey(300, night, "US");
        let pair = (&mdm, &org);
        let codes = job(
            dir,
            &format!("codes{night}"),
            "codes-sync",
            "\"US\"",
            pair,
            &lsc,
            "",
        );
        let r = run_sf(dir, &codes);
        assert_eq!(r.state(), "completed", "codes sync: {r}");
        let providers = job(
            dir,
            &format!("providers{night}"),
            "provider-sync",
            "\"US\"",
            pair,
            &lsc,
            "",
        );
        let before = org_records(&org);
        let (id, own) = run_via(via, &providers, &state, &serve, &env);
        let recorded = org_changes(&before, &org_records(&org));
        let (summary, mut readings) = read_surfaces(&id, &state, Some(&serve));
        readings.extend(own);
        readings.push(integration_job_run(&org, &id));
        let label = format!("night {night} ({via:?})");
        check_one_truth(&mut c, &label, &summary, &recorded, &readings);
        // Not vacuous: night 1 creates every kind; night 2 also updates, moves and
        // disconnects.
        let n = |kind: &str, change: &str| recorded.get(kind, change);
        let expected: &[(&str, &str)] = if night == 1 {
            &[
                ("individual", "created"),
                ("workplace", "created"),
                ("activity", "created"),
                ("relation", "created"),
            ]
        } else {
            &[
                ("individual", "created"),
                ("individual", "updated"),
                ("individual", "disconnected"),
                ("activity", "moved"),
                ("activity", "disconnected"),
            ]
        };
        for (kind, change) in expected {
            c.check(
                &format!("{label}: the org shows {kind} records {change}"),
                n(kind, change) > 0,
            );
        }
    }
    org.assert_no_violations();
    c.finish();
}

/// The org's IntegrationJobRun records of job `id`.
fn job_runs_of(org: &Emulator, id: &str) -> Vec<Value> {
    soql(
        org,
        &format!(
            "SELECT Id, JobName, StartDateTime, EndDateTime, Status, JobAdditionalInfo \
             FROM IntegrationJobRun WHERE JobIdentifier = '{id}'"
        ),
    )
}

/// The one IntegrationJobRun of job `id`, asserting there is exactly one.
fn the_job_run_of(org: &Emulator, id: &str) -> Value {
    let runs = job_runs_of(org, id);
    assert_eq!(runs.len(), 1, "one IntegrationJobRun per run: {runs:?}");
    runs[0].clone()
}

/// Seed step 1.10 then 2.5: the run's IntegrationJobRun exists (started, in
/// progress, no end) while the run loads, and the end of the run updates that very
/// record by its Id: one record per run.
#[test]
fn salesforce_integration_job_run_is_created_when_the_run_starts_and_updated_by_id_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (org, _mdm, providers) =
        codes_synced_world(dir.path(), &["--latency-ms", "30"], 300, "", "");
    let state = state_url(dir.path());
    let mut bg = spawn_command(sf_command(&providers, &state), dir.path(), "run");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "records are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) > 0
    });
    let started = the_job_run_of(&org, &id);
    assert_eq!(
        (started["EndDateTime"].clone(), started["Status"].clone()),
        (Value::Null, Value::from("InProgress")),
        "{started}"
    );
    assert!(started["StartDateTime"].is_string(), "{started}");
    assert_eq!(started["JobName"], "provsync provider-sync full");
    assert!(
        started["JobAdditionalInfo"]
            .as_str()
            .is_some_and(|i| i.starts_with("scope US;")),
        "{started}"
    );
    let r = bg.wait();
    assert_eq!(r.state(), "completed", "{r}");
    let ended = the_job_run_of(&org, &id);
    assert_eq!(ended["Id"], started["Id"], "updated, not created again");
    assert_eq!(ended["StartDateTime"], started["StartDateTime"]);
    assert!(ended["EndDateTime"].is_string(), "{ended}");
    assert_eq!(ended["Status"], "Completed", "{ended}");
    let report = &r.summary["target_report"]["integration_job_run"];
    assert_eq!(
        (report["written"].clone(), report["id"].clone()),
        (Value::Bool(true), ended["Id"].clone()),
        "{r}"
    );
    assert!(r.summary["audit_failure"].is_null(), "{r}");
    // The codes sync's record and this one: nothing else.
    assert_eq!(org.count("IntegrationJobRun"), 2);
    org.assert_no_violations();
}

/// A run killed after its IntegrationJobRun was created, resumed by another
/// process: with the Id the state store kept, or (`lose_id`) without it, as when
/// the process died between the create and the store's write; either way the run
/// ends with its one record, updated.
fn a_resumed_run_updates_the_job_run_its_start_created(lose_id: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (org, _mdm, providers) =
        codes_synced_world(dir.path(), &["--latency-ms", "30"], 300, "", "");
    let state = state_url(dir.path());
    let mut bg = spawn_command(sf_command(&providers, &state), dir.path(), "killed");
    let id = bg.job_id();
    bg.wait_for_status(&id, &state, "records are loaded", |s| {
        s["counts"]["created"].as_u64().unwrap_or(0) > 0
    });
    bg.child.kill().unwrap(); // SIGKILL
    bg.child.wait().unwrap();
    let started = the_job_run_of(&org, &id);
    assert!(started["EndDateTime"].is_null(), "{started}");
    if lose_id {
        let db = dir.path().join("state.db");
        let cleared = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            sqlx::query("UPDATE jobs SET target_ref = NULL WHERE id = ? AND target_ref IS NOT NULL")
                .bind(&id)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected()
        });
        assert_eq!(cleared, 1, "the store kept the record's Id");
    }
    let r = run_sf(dir.path(), &providers);
    assert_eq!(r.job_id(), id, "the rerun resumes the killed job: {r}");
    assert_eq!(r.state(), "completed", "{r}");
    let ended = the_job_run_of(&org, &id);
    assert_eq!(ended["Id"], started["Id"], "{ended}");
    assert!(ended["EndDateTime"].is_string(), "{ended}");
    assert_eq!(ended["Status"], "Completed", "{ended}");
    assert_eq!(
        r.summary["target_report"]["integration_job_run"]["id"], started["Id"],
        "{r}"
    );
    org.assert_no_violations();
}

#[test]
fn salesforce_a_run_resumed_in_another_process_updates_its_one_integration_job_run() {
    a_resumed_run_updates_the_job_run_its_start_created(false);
}

#[test]
fn salesforce_a_resumed_run_that_lost_the_job_runs_id_finds_it_by_job_identifier() {
    a_resumed_run_updates_the_job_run_its_start_created(true);
}

/// An org whose IntegrationJobRun cannot be written (here: the org has no such
/// object): the data is loaded, the audit record is missing, and every surface says
/// so; the run ends `completed_with_errors`, not `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_a_run_whose_integration_job_run_cannot_be_written_ends_completed_with_errors_saying_so(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut schema: Value =
        serde_json::from_str(provsync_emulators::salesforce::schema::DEFAULT_SCHEMA).unwrap();
    schema["sobjects"]
        .as_array_mut()
        .unwrap()
        .retain(|o| o["name"] != "IntegrationJobRun");
    let path = dir.path().join("org-without-job-run.json");
    std::fs::write(&path, schema.to_string()).unwrap();
    let org = Emulator::salesforce(&["--schema", path.to_str().unwrap()]);
    let mdm = Emulator::onekey(50, 1, "US");
    let lsc = mapping("salesforce-lsc.toml");
    let providers = job(
        dir.path(),
        "providers",
        "provider-sync",
        "\"US\"",
        (&mdm, &org),
        &lsc,
        "",
    );
    // The codes sync first (the restricted picklists need their values).
    let codes = job(
        dir.path(),
        "codes",
        "codes-sync",
        "\"US\"",
        (&mdm, &org),
        &lsc,
        "",
    );
    let c = run_sf(dir.path(), &codes);
    assert_eq!(c.state(), "completed_with_errors", "{c}");
    let r = run_sf(dir.path(), &providers);
    r.expect_code(2);
    assert_eq!(r.state(), "completed_with_errors", "{r}");
    r.assert_reconciled();
    assert_eq!((r.count("failed"), r.count("rejected")), (0, 0), "{r}");
    assert!(r.count("created") > 0, "the data is loaded: {r}");
    let why = r.summary["audit_failure"].as_str().unwrap_or_default();
    assert!(
        why.contains("IntegrationJobRun not written") && why.contains("no IntegrationJobRun"),
        "{r}"
    );
    assert_eq!(
        r.summary["target_report"]["integration_job_run"]["written"], false,
        "{r}"
    );
    let id = r.job_id();
    let state = state_url(dir.path());
    assert_eq!(status(&id, &state)["audit_failure"], why);
    let text = Command::new(bin())
        .args(["status", &id, "--state", &state])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "AUDIT    the target's record of this run is missing: {why}"
        )),
        "{text}"
    );
    let api = serve::Server::start_with_state(&state);
    let (_, seen) = api.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(seen["audit_failure"], why, "{seen:#}");
    assert_eq!(seen["state"], "completed_with_errors", "{seen:#}");
    org.assert_no_violations();
}
