//! The run's IntegrationJobRun (seed steps 1.10 and 2.5) and the configured
//! post-job actions (an Apex REST call that starts the HCP address batch).
//!
//! Per the Life Sciences Cloud Developer Guide ("IntegrationJobRun"), JobIdentifier
//! is a plain string (Create, Filter, Group, Sort, Update), neither External ID nor
//! idLookup, so it cannot key an upsert (the REST API Developer Guide, "Insert or
//! Update (Upsert) a Record Using an External ID"): the record is created when the
//! run starts, its Id kept in the state store, and updated by Id when it ends. A
//! run that lost the Id finds its record with SOQL on JobIdentifier.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{Body, Client};
use super::config::PostJobAction;
use super::preflight::{self, PicklistValue};
use super::SfError;

/// The object.
pub const OBJECT: &str = "IntegrationJobRun";
/// JobAdditionalInfo's length (a string of 255 in the Salesforce Field Reference).
const ADDITIONAL_INFO_MAX: usize = 255;

/// What the target knows of the run's IntegrationJobRun.
#[derive(Debug, Default)]
pub struct JobRunState {
    /// The record's Id, once created or found.
    pub id: Option<String>,
    /// The Status picklist's active values, once the object was described.
    pub statuses: Option<Vec<PicklistValue>>,
    /// What the end of the run did with the record, for the run's target report.
    pub report: Option<Value>,
}

/// Status values that fit each state of a run, in order of preference (compared
/// without case, spaces or punctuation, with the value's API name and its label):
/// the object reference does not list the org's values, so describe decides.
fn fitting(state: &str) -> &'static [&'static str] {
    match state {
        "running" => &["inprogress", "running", "started", "processing"],
        "completed" => &[
            "completed",
            "success",
            "succeeded",
            "successful",
            "complete",
        ],
        "completed_with_errors" => &[
            "completedwitherrors",
            "partiallycompleted",
            "partialsuccess",
            "completedwithwarnings",
            "warning",
        ],
        "failed" => &["failed", "failure", "error"],
        "aborted" => &["aborted", "cancelled", "canceled", "stopped"],
        _ => &[],
    }
}

/// The org's Status value for a run in `state`, if its picklist offers one.
pub fn status_for(state: &str, values: &[PicklistValue]) -> Option<String> {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    fitting(state).iter().find_map(|want| {
        values
            .iter()
            .filter(|v| v.active)
            .find(|v| {
                norm(&v.value) == *want || v.label.as_deref().is_some_and(|l| norm(l) == *want)
            })
            .map(|v| v.value.clone())
    })
}

/// The Status picklist's values (none when the org's object has no Status).
pub async fn statuses(client: &Client) -> Result<Vec<PicklistValue>, SfError> {
    let Some(d) = preflight::describe(client, OBJECT).await? else {
        return Err(SfError::Config(format!(
            "the org has no {OBJECT} at API version {} (Life Sciences Cloud, v65.0 and later)",
            client.config().api_version
        )));
    };
    Ok(d.fields
        .into_iter()
        .find(|f| f.name.eq_ignore_ascii_case("Status"))
        .map(|f| f.picklist_values)
        .unwrap_or_default())
}

/// JobAdditionalInfo: the scope (the object reference's example is the country a
/// job applies to), the target and who started the run, cut to the field's length.
fn additional_info(info: &Value) -> String {
    let scope: Vec<&str> = info["scope"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let text = format!(
        "scope {}; target {}; requested by {}",
        if scope.is_empty() {
            "all".to_string()
        } else {
            scope.join(",")
        },
        info["target"].as_str().unwrap_or("-"),
        info["requested_by"].as_str().unwrap_or("-"),
    );
    if text.chars().count() <= ADDITIONAL_INFO_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(ADDITIONAL_INFO_MAX - 1).collect();
    cut.push('…');
    cut
}

/// The fields set when the run starts (seed step 1.10): `info` or the summary.
pub fn start_fields(info: &Value, status: Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "JobName".into(),
        format!(
            "provsync {} {}",
            info["kind"].as_str().unwrap_or("job"),
            info["mode"].as_str().unwrap_or("")
        )
        .trim_end()
        .into(),
    );
    m.insert("JobIdentifier".into(), info["job_id"].clone());
    m.insert("StartDateTime".into(), info["started_at"].clone());
    m.insert("JobAdditionalInfo".into(), additional_info(info).into());
    if let Some(s) = status {
        m.insert("Status".into(), s.into());
    }
    m
}

/// The fields set when the run ends (seed step 2.5).
pub fn end_fields(summary: &Value, status: Option<String>) -> Map<String, Value> {
    let state = summary["state"].as_str().unwrap_or_default();
    let mut m = Map::new();
    m.insert("EndDateTime".into(), summary["finished_at"].clone());
    // The run summary's counts as every surface shows them: the headline, the kinds
    // it counts, and the counts per kind.
    m.insert(
        "JobExectionSummary".into(),
        json!({
            "state": state,
            "counts": summary["counts"],
            "counted": summary["counted"],
            "per_kind": summary["per_kind"],
            "sweep": summary["sweep"],
            "errors_total": summary["errors_total"],
            "failure": summary["failure"],
        })
        .to_string()
        .into(),
    );
    if let Some(s) = status {
        m.insert("Status".into(), s.into());
    }
    m
}

/// The Id of the IntegrationJobRun whose JobIdentifier is `job_id`, if the org has
/// one (the oldest, should a crash have left two).
pub async fn find(client: &Client, job_id: &str) -> Result<Option<String>, SfError> {
    let soql = format!(
        "SELECT Id FROM {OBJECT} WHERE JobIdentifier = '{}' ORDER BY CreatedDate LIMIT 1",
        soql_escape(job_id)
    );
    let path = format!(
        "{}/query?q={}",
        client.data_path(),
        super::wire::encode_segment(&soql)
    );
    let v: Value = client
        .call(Method::GET, &path, &Body::None)
        .await?
        .ok()?
        .json()?;
    Ok(v["records"][0]["Id"].as_str().map(str::to_string))
}

/// A SOQL string literal's content (`\` and `'` escaped).
fn soql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Creates the record; returns its Id.
pub async fn create(client: &Client, fields: Map<String, Value>) -> Result<String, SfError> {
    let path = format!("{}/sobjects/{OBJECT}", client.data_path());
    let v: Value = client
        .call(Method::POST, &path, &Body::Json(Value::Object(fields)))
        .await?
        .ok()?
        .json()?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SfError::Protocol(format!("{OBJECT} created without an id: {v}")))
}

/// Updates the record by its Id.
pub async fn update(client: &Client, id: &str, fields: Map<String, Value>) -> Result<(), SfError> {
    let path = format!(
        "{}/sobjects/{OBJECT}/{}",
        client.data_path(),
        super::wire::encode_segment(id)
    );
    client
        .call(Method::PATCH, &path, &Body::Json(Value::Object(fields)))
        .await?
        .ok()?;
    Ok(())
}

/// Whether an action runs for a run ending in `state`.
pub fn applies(action: &PostJobAction, state: &str) -> bool {
    !action.only_on_success || matches!(state, "completed" | "completed_with_errors")
}

/// `{job_id}` and `{state}` replaced in every string of a body.
pub fn render(body: &Value, job_id: &str, state: &str) -> Value {
    match body {
        Value::String(s) => Value::String(s.replace("{job_id}", job_id).replace("{state}", state)),
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, job_id, state)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), render(v, job_id, state)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Runs one post-job action; returns its HTTP status.
pub async fn run_action(
    client: &Client,
    action: &PostJobAction,
    job_id: &str,
    state: &str,
) -> Result<u16, SfError> {
    let method =
        Method::from_bytes(action.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            SfError::Config(format!(
                "post_job {}: bad method {}",
                action.name, action.method
            ))
        })?;
    let body = match &action.body {
        Some(b) => Body::Json(render(b, job_id, state)),
        None => Body::None,
    };
    let resp = client.call(method, &action.path, &body).await?;
    Ok(resp.ok()?.status.as_u16())
}

/// The run's IntegrationJobRun, created at the start and ended with the run.
impl super::SalesforceTarget {
    /// The IntegrationJobRun's Status values, described once per process.
    async fn job_run_statuses(&self, jr: &mut JobRunState) -> Result<Vec<PicklistValue>, SfError> {
        if jr.statuses.is_none() {
            jr.statuses = Some(statuses(&self.client).await?);
        }
        Ok(jr.statuses.clone().unwrap_or_default())
    }

    /// Creates the run's IntegrationJobRun, unless the org has one already (a run
    /// that lost its Id, e.g. killed between the create and the state store's write).
    pub(super) async fn create_job_run(
        &self,
        jr: &mut JobRunState,
        job_id: &str,
        info: &serde_json::Value,
    ) -> Result<String, SfError> {
        let statuses = self.job_run_statuses(jr).await?;
        if let Some(id) = find(&self.client, job_id).await? {
            tracing::info!(job = %job_id, id = %id, "IntegrationJobRun of the run found by its JobIdentifier");
            return Ok(id);
        }
        let fields = start_fields(info, status_for("running", &statuses));
        let id = create(&self.client, fields).await?;
        tracing::info!(job = %job_id, id = %id, "IntegrationJobRun created");
        Ok(id)
    }

    /// Ends the run's IntegrationJobRun: updated by its Id, found by JobIdentifier if
    /// this process has no Id, created whole if the start could not create it.
    pub(super) async fn end_job_run(
        &self,
        jr: &mut JobRunState,
        job_id: &str,
        summary: &serde_json::Value,
    ) -> Result<serde_json::Value, SfError> {
        let statuses = self.job_run_statuses(jr).await?;
        let state = summary["state"].as_str().unwrap_or_default();
        let status = status_for(state, &statuses);
        let mut fields = end_fields(summary, status.clone());
        let id = match jr.id.clone() {
            Some(id) => id,
            None => match find(&self.client, job_id).await? {
                Some(id) => id,
                None => {
                    let mut all = start_fields(summary, None);
                    all.append(&mut fields);
                    let id = create(&self.client, all).await?;
                    jr.id = Some(id.clone());
                    return Ok(serde_json::json!({
                        "written": true, "id": id, "status": status,
                        "note": "created at the end: the start of the run could not create it",
                    }));
                }
            },
        };
        jr.id = Some(id.clone());
        update(&self.client, &id, fields).await?;
        Ok(serde_json::json!({"written": true, "id": id, "status": status}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_the_job_and_actions_follow_the_state() {
        let b = json!({"job": "{job_id}", "n": 1, "tags": ["{state}"]});
        assert_eq!(
            render(&b, "J1", "completed"),
            json!({"job": "J1", "n": 1, "tags": ["completed"]})
        );
        let a = PostJobAction {
            name: "addresses".into(),
            method: "POST".into(),
            path: "/services/apexrest/x".into(),
            body: None,
            only_on_success: true,
        };
        assert!(applies(&a, "completed_with_errors"));
        assert!(!applies(&a, "failed"));
    }

    fn values(v: &[(&str, &str)]) -> Vec<PicklistValue> {
        v.iter()
            .map(|(value, label)| PicklistValue {
                value: value.to_string(),
                label: Some(label.to_string()),
                active: true,
            })
            .collect()
    }

    #[test]
    fn status_is_set_only_to_a_value_the_orgs_picklist_offers() {
        let org = values(&[
            ("InProgress", "In Progress"),
            ("Completed", "Completed"),
            ("Failed", "Failed"),
        ]);
        assert_eq!(status_for("running", &org).as_deref(), Some("InProgress"));
        assert_eq!(status_for("completed", &org).as_deref(), Some("Completed"));
        assert_eq!(status_for("failed", &org).as_deref(), Some("Failed"));
        // Nothing fits: left out rather than a value saying something else.
        assert_eq!(status_for("completed_with_errors", &org), None);
        assert_eq!(status_for("aborted", &org), None);
        let labelled = values(&[("S1", "Partially Completed"), ("S2", "Canceled")]);
        assert_eq!(
            status_for("completed_with_errors", &labelled).as_deref(),
            Some("S1")
        );
        assert_eq!(status_for("aborted", &labelled).as_deref(), Some("S2"));
    }

    #[test]
    fn job_additional_info_fits_its_255_characters() {
        let scope: Vec<String> = (0..200).map(|i| format!("DB{i}")).collect();
        let info = json!({"job_id": "J", "scope": scope, "target": "sf", "requested_by": "cli"});
        let text = additional_info(&info);
        assert_eq!(text.chars().count(), 255);
        assert!(
            text.starts_with("scope DB0,DB1") && text.ends_with('…'),
            "{text}"
        );
        let short = json!({"scope": ["US"], "target": "sf", "requested_by": "cli"});
        assert_eq!(
            additional_info(&short),
            "scope US; target sf; requested by cli"
        );
    }

    #[test]
    fn soql_literals_are_escaped() {
        assert_eq!(soql_escape("a'b\\c"), "a\\'b\\\\c");
    }
}
