//! Composite graph: one graph per record with its children, many graphs per request.

use std::collections::BTreeSet;

use provsync_core::mapped::MappedRecord;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{Body, Client, ALLOW_SAVE, DUPLICATE_RULE_HEADER};
use super::plan::GraphUnit;
use super::wire::{self, RecordError, SaveResult};
use super::SfError;

/// What a graph request said about one record.
#[derive(Debug, Clone)]
pub enum GraphResult {
    /// Written; the parent record's id.
    Written(Option<String>),
    /// Failed for a reason retrying cannot fix.
    Failed(String),
    /// Failed for a reason retrying may fix (a lock).
    Retry(String),
    /// Not run: the request's other graphs failed more than 14 times, so
    /// Salesforce halted the rest (`PROCESSING_HALTED`). Re-sent, and not an
    /// attempt of the record: nothing was wrong with it.
    Halted,
}

/// The node count and objects of a record's graph.
pub fn unit(r: &MappedRecord) -> GraphUnit {
    let mut objects = BTreeSet::new();
    objects.insert(r.table.clone());
    objects.extend(r.children.iter().map(|c| c.table.clone()));
    GraphUnit {
        nodes: 1 + r.children.len(),
        objects,
    }
}

/// The graph of one record: its upsert, then each child's upsert referring to it.
fn graph(client: &Client, id: usize, r: &MappedRecord) -> Value {
    let ext = &client.config().external_id_field;
    let data = client.data_path();
    let root = format!("r{id}");
    let mut nodes = vec![json!({
        "method": "PATCH",
        "url": format!("{data}/sobjects/{}/{ext}/{}", r.table, wire::encode_segment(r.target_key())),
        "referenceId": root,
        "body": wire::body(&r.fields),
    })];
    for (j, c) in r.children.iter().enumerate() {
        let mut body = wire::body(&c.fields);
        body.insert(c.parent_field.clone(), json!(format!("@{{{root}.id}}")));
        nodes.push(json!({
            "method": "PATCH",
            "url": format!("{data}/sobjects/{}/{ext}/{}", c.table, wire::encode_segment(&c.key)),
            "referenceId": format!("{root}c{j}"),
            "body": body,
        }));
    }
    if client.config().duplicate_rule_allow_save {
        // Subrequests inherit no other header from the graph request.
        let own = json!({ DUPLICATE_RULE_HEADER: ALLOW_SAVE });
        for n in &mut nodes {
            n["httpHeaders"] = own.clone();
        }
    }
    json!({"graphId": format!("g{id}"), "compositeRequest": nodes})
}

#[derive(Deserialize)]
struct GraphResponse {
    graphs: Vec<GraphAnswer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphAnswer {
    graph_id: String,
    is_successful: bool,
    graph_response: NodeAnswers,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAnswers {
    composite_response: Vec<NodeAnswer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAnswer {
    body: Value,
    http_status_code: u16,
    reference_id: String,
}

/// Sends one graph request for `records` (indexes into the batch) and returns a
/// result per record, in the order given.
pub async fn send(
    client: &Client,
    batch: &[&MappedRecord],
    indexes: &[usize],
) -> Result<Vec<GraphResult>, SfError> {
    let graphs: Vec<Value> = indexes
        .iter()
        .map(|&i| graph(client, i, batch[i]))
        .collect();
    let path = format!("{}/composite/graph", client.data_path());
    let resp = client
        .call(
            Method::POST,
            &path,
            &Body::Json(json!({ "graphs": graphs })),
        )
        .await?;
    let answer: GraphResponse = resp.ok()?.json()?;
    let mut by_id: std::collections::HashMap<String, GraphAnswer> = answer
        .graphs
        .into_iter()
        .map(|g| (g.graph_id.clone(), g))
        .collect();
    Ok(indexes
        .iter()
        .map(|&i| match by_id.remove(&format!("g{i}")) {
            // A graph the answer leaves out was not processed either.
            None => GraphResult::Halted,
            Some(g) => result_of(batch[i], &format!("r{i}"), g),
        })
        .collect())
}

fn result_of(r: &MappedRecord, root: &str, g: GraphAnswer) -> GraphResult {
    let nodes = g.graph_response.composite_response;
    if g.is_successful {
        let id = nodes
            .iter()
            .find(|n| n.reference_id == root)
            .and_then(|n| serde_json::from_value::<SaveResult>(n.body.clone()).ok())
            .and_then(|s| s.id);
        return GraphResult::Written(id);
    }
    // The failing node carries the real error; the others say PROCESSING_HALTED. A
    // graph whose every node says PROCESSING_HALTED was not run at all.
    let mut real = Vec::new();
    for n in &nodes {
        if n.http_status_code < 300 {
            continue;
        }
        let errors: Vec<RecordError> = serde_json::from_value(n.body.clone()).unwrap_or_default();
        for e in errors {
            if e.code != "PROCESSING_HALTED" {
                real.push((n.reference_id.clone(), e));
            }
        }
    }
    let Some((_, first)) = real.first() else {
        return GraphResult::Halted;
    };
    if real.iter().all(|(_, e)| wire::is_retryable(&e.code)) {
        return GraphResult::Retry(first.code.clone());
    }
    let reasons: Vec<String> = real
        .iter()
        .filter(|(_, e)| !wire::is_retryable(&e.code))
        .map(|(node, e)| {
            let (object, key) = node_name(r, root, node);
            explain(&object, &key, e, r, node == root)
        })
        .collect();
    GraphResult::Failed(reasons.join("; "))
}

/// The object and key a node reference id stands for.
fn node_name(r: &MappedRecord, root: &str, node: &str) -> (String, String) {
    node.strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('c'))
        .and_then(|j| j.parse::<usize>().ok())
        .and_then(|j| r.children.get(j))
        .map(|c| (c.table.clone(), c.key.clone()))
        .unwrap_or_else(|| (r.table.clone(), r.target_key().to_string()))
}

/// One error as the run's error ledger shows it; a restricted picklist refusal names
/// the value sent, so the missing code is plain.
pub fn explain(object: &str, key: &str, e: &RecordError, r: &MappedRecord, root: bool) -> String {
    let mut s = wire::describe_errors(object, key, std::slice::from_ref(e));
    if e.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" {
        let fields: Vec<&(String, Value)> = if root {
            r.fields.iter().collect()
        } else {
            r.children
                .iter()
                .find(|c| c.key == key && c.table == object)
                .map(|c| c.fields.iter().collect())
                .unwrap_or_default()
        };
        for f in &e.fields {
            if let Some((_, v)) = fields.iter().find(|(n, _)| n == f) {
                s.push_str(&format!(
                    " [value {v} is not in the restricted picklist {object}.{f}: run the codes sync or fix the codes mapping]"
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use provsync_core::mapped::MappedChild;
    use provsync_core::model::EntityKind;

    use super::*;

    fn record() -> MappedRecord {
        MappedRecord::new(
            EntityKind::Individual,
            "WUSM1".into(),
            "US".into(),
            "Account".into(),
            vec![("Specialty__pc".into(), json!("WUS.SP.999"))],
            vec![],
        )
        .with_children(vec![MappedChild {
            table: "HealthcareProvider".into(),
            key: "WUSM1".into(),
            parent_field: "AccountId".into(),
            fields: vec![("Name".into(), json!("Ada"))],
        }])
    }

    fn answer(v: Value) -> GraphAnswer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_unknown_code_names_the_value_and_the_picklist() {
        let g = answer(
            json!({"graphId": "g0", "isSuccessful": false, "graphResponse": {"compositeResponse": [
                {"referenceId": "r0", "httpStatusCode": 400, "body": [{"errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "message": "Specialty: bad value for restricted picklist field: WUS.SP.999", "fields": ["Specialty__pc"]}]},
                {"referenceId": "r0c0", "httpStatusCode": 400, "body": [{"errorCode": "PROCESSING_HALTED", "message": "halted"}]}
            ]}}),
        );
        let GraphResult::Failed(reason) = result_of(&record(), "r0", g) else {
            panic!("not a failure")
        };
        assert!(
            reason.starts_with("Account WUSM1: INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
            "{reason}"
        );
        assert!(
            reason.contains(
                r#"value "WUS.SP.999" is not in the restricted picklist Account.Specialty__pc"#
            ),
            "{reason}"
        );
        assert!(!reason.contains("PROCESSING_HALTED"), "{reason}");
    }

    #[test]
    fn locks_and_halted_graphs_are_retried_and_success_gives_the_parent_id() {
        let locked = answer(
            json!({"graphId": "g0", "isSuccessful": false, "graphResponse": {"compositeResponse": [
                {"referenceId": "r0", "httpStatusCode": 200, "body": {"id": "001x", "success": true}},
                {"referenceId": "r0c0", "httpStatusCode": 400, "body": [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]}
            ]}}),
        );
        assert!(
            matches!(result_of(&record(), "r0", locked), GraphResult::Retry(w) if w == "UNABLE_TO_LOCK_ROW")
        );
        let ok = answer(
            json!({"graphId": "g0", "isSuccessful": true, "graphResponse": {"compositeResponse": [
                {"referenceId": "r0", "httpStatusCode": 201, "body": {"id": "001x", "success": true, "created": true}},
                {"referenceId": "r0c0", "httpStatusCode": 201, "body": {"id": "0cmx", "success": true, "created": true}}
            ]}}),
        );
        assert!(
            matches!(result_of(&record(), "r0", ok), GraphResult::Written(Some(id)) if id == "001x")
        );
    }

    #[test]
    fn a_graph_halted_after_the_requests_failures_exceeded_14_is_halted_not_failed() {
        let halted = answer(
            json!({"graphId": "g0", "isSuccessful": false, "graphResponse": {"compositeResponse": [
                {"referenceId": "r0", "httpStatusCode": 400, "body": [{"errorCode": "PROCESSING_HALTED", "message": "halted"}]},
                {"referenceId": "r0c0", "httpStatusCode": 400, "body": [{"errorCode": "PROCESSING_HALTED", "message": "halted"}]}
            ]}}),
        );
        assert!(matches!(
            result_of(&record(), "r0", halted),
            GraphResult::Halted
        ));
    }
}
