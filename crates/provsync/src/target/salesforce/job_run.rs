//! End of job (seed steps 1.10 and 2.5): the run's IntegrationJobRun record and the
//! configured post-job actions (an Apex REST call that starts the HCP address batch).

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Body, Client};
use super::config::PostJobAction;
use super::SfError;

/// Upserts the run's IntegrationJobRun (keyed by JobIdentifier) and returns its id.
pub async fn write_job_run(client: &Client, summary: &Value) -> Result<Option<String>, SfError> {
    let job_id = summary["job_id"].as_str().unwrap_or_default();
    let state = summary["state"].as_str().unwrap_or_default();
    let body = json!({
        "JobName": format!("provsync {} {}", summary["kind"].as_str().unwrap_or("job"), summary["mode"].as_str().unwrap_or("")),
        "EndDateTime": summary["finished_at"],
        "JobAdditionalInfo": json!({
            "state": state,
            "target": summary["target"],
            "requested_by": summary["requested_by"],
            "scope": summary["scope"],
        }).to_string(),
        // The run summary's counts as every surface shows them: the headline, the
        // kinds it counts, and the counts per kind.
        "JobExectionSummary": json!({
            "state": state,
            "counts": summary["counts"],
            "counted": summary["counted"],
            "per_kind": summary["per_kind"],
            "sweep": summary["sweep"],
            "errors_total": summary["errors_total"],
            "failure": summary["failure"],
        }).to_string(),
    });
    let path = format!(
        "{}/sobjects/IntegrationJobRun/JobIdentifier/{}",
        client.data_path(),
        super::wire::encode_segment(job_id)
    );
    let resp = client.call(Method::PATCH, &path, &Body::Json(body)).await?;
    Ok(resp.ok()?.json::<Value>()?["id"]
        .as_str()
        .map(str::to_string))
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
}
