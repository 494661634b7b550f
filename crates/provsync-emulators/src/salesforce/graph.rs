//! Composite graph: `POST /composite/graph`. Per request at most 75 graphs, 500 nodes,
//! 15 distinct node kinds (API version x method x object); each graph at most 15 deep.
//! Nodes are sObject record operations only. Each graph is all or nothing (the failing
//! node carries its error, every other node `PROCESSING_HALTED`); once the failed
//! graphs of a request exceed 14, the remaining ones are not processed.
//!
//! Source: REST API Developer Guide, "Composite Graph Limits"
//! <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_graph_limits.htm>.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::composite::{item, references, result_body, run_sub, Sub};
use super::errors::{processing_halted, ApiError};
use super::rest::{violation, Exec, Reply};

/// Graphs per request.
pub const MAX_GRAPHS: usize = 75;
/// Nodes per request.
pub const MAX_NODES: usize = 500;
/// Depth of one graph.
pub const MAX_DEPTH: usize = 15;
/// Distinct node kinds per request.
pub const MAX_NODE_KINDS: usize = 15;
/// Graph failures a request may have: "if the number of graph failures exceeds the
/// maximum limit of 14, processing is halted for the remaining graphs in the request.
/// The response includes errors for the failed graphs, and the status for the
/// remaining graphs is shown as PROCESSING_HALTED" (Composite Graph Limits). So the
/// 15th failed graph still carries its own error; the graphs after it are halted.
pub const MAX_FAILED_GRAPHS: usize = 14;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Graph {
    graph_id: String,
    composite_request: Vec<Sub>,
}

#[derive(Deserialize)]
struct Request {
    graphs: Vec<Graph>,
}

/// Why a graph request is refused before anything runs.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Over a documented limit: (limit name, message).
    Limit(&'static str, String),
    /// Malformed: message.
    Invalid(String),
}

/// The kind of a node (version, method, object) if its URL is a record operation.
fn node_kind(sub: &Sub) -> Option<(String, String, String)> {
    let path = sub.url.strip_prefix("/services/data/")?;
    let path = path.split('?').next().unwrap_or_default();
    let mut parts = path.split('/');
    let version = parts.next()?.to_owned();
    if parts.next()? != "sobjects" {
        return None;
    }
    let object = parts.next()?.to_ascii_lowercase();
    let rest: Vec<&str> = parts.collect();
    let method = sub.method.to_ascii_uppercase();
    let allowed = match rest.len() {
        0 => method == "POST",
        1 => matches!(method.as_str(), "GET" | "PATCH" | "DELETE"),
        2 => matches!(method.as_str(), "GET" | "PATCH" | "DELETE" | "POST"),
        _ => false,
    };
    allowed.then_some((version, method, object))
}

/// Checks the request's limits and each graph's shape; returns each graph's depth.
fn validate(graphs: &[Graph]) -> Result<(), Refusal> {
    if graphs.len() > MAX_GRAPHS {
        return Err(Refusal::Limit(
            "graph_count",
            format!(
                "The request has {} graphs; at most {MAX_GRAPHS} are allowed",
                graphs.len()
            ),
        ));
    }
    let nodes: usize = graphs.iter().map(|g| g.composite_request.len()).sum();
    if nodes > MAX_NODES {
        return Err(Refusal::Limit(
            "graph_nodes",
            format!("The request has {nodes} nodes; at most {MAX_NODES} are allowed"),
        ));
    }
    let mut kinds = HashSet::new();
    let mut ids = HashSet::new();
    for g in graphs {
        if !ids.insert(g.graph_id.as_str()) {
            return Err(Refusal::Invalid(format!(
                "Duplicate graphId: {}",
                g.graph_id
            )));
        }
        for sub in &g.composite_request {
            let Some(kind) = node_kind(sub) else {
                return Err(Refusal::Invalid(format!(
                    "Invalid node in graph {}: {} {} is not an sObject record operation",
                    g.graph_id, sub.method, sub.url
                )));
            };
            kinds.insert(kind);
        }
        let depth = depth(&g.composite_request).map_err(Refusal::Invalid)?;
        if depth > MAX_DEPTH {
            return Err(Refusal::Limit(
                "graph_depth",
                format!(
                    "Graph {} has a depth of {depth}; at most {MAX_DEPTH} is allowed",
                    g.graph_id
                ),
            ));
        }
    }
    if kinds.len() > MAX_NODE_KINDS {
        return Err(Refusal::Limit(
            "graph_node_kinds",
            format!(
                "The request has {} different nodes; at most {MAX_NODE_KINDS} are allowed",
                kinds.len()
            ),
        ));
    }
    Ok(())
}

/// Depth of a graph: the longest chain of `@{ref}` dependencies (a lone node is 1).
pub fn depth(nodes: &[Sub]) -> Result<usize, String> {
    let mut depth_of: HashMap<&str, usize> = HashMap::new();
    let mut max = 0;
    for n in nodes {
        let mut text = n.url.clone();
        if let Some(b) = &n.body {
            text.push_str(&b.to_string());
        }
        let mut d = 1;
        for r in references(&text) {
            let Some(&parent) = depth_of.get(r.as_str()) else {
                return Err(format!(
                    "Node {} refers to {r}, which is not an earlier node of its graph",
                    n.reference_id
                ));
            };
            d = d.max(parent + 1);
        }
        if depth_of.insert(n.reference_id.as_str(), d).is_some() {
            return Err(format!("Duplicate referenceId: {}", n.reference_id));
        }
        max = max.max(d);
    }
    Ok(max)
}

/// Handles `POST /composite/graph`.
pub fn handle(x: &mut Exec<'_>, _version_text: &str, body: &[u8]) -> Reply {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return ApiError::json(e).into(),
    };
    let nodes: usize = req.graphs.iter().map(|g| g.composite_request.len()).sum();
    x.graph_nodes = nodes as u64;
    x.records = nodes as u64;
    // The limits page gives the numbers, not the answer to going over: the code
    // `LIMIT_EXCEEDED` (and `INVALID_INPUT` for a malformed graph) is a guess.
    match validate(&req.graphs) {
        Ok(()) => {}
        Err(Refusal::Limit(limit, message)) => {
            return violation(x.emu, limit, ApiError::bad("LIMIT_EXCEEDED", message));
        }
        Err(Refusal::Invalid(message)) => return ApiError::bad("INVALID_INPUT", message).into(),
    }
    let mut failures = 0;
    let mut halted_graphs = 0;
    let mut out = Vec::with_capacity(req.graphs.len());
    for g in &req.graphs {
        if failures > MAX_FAILED_GRAPHS {
            halted_graphs += 1;
            // The guide names the status, PROCESSING_HALTED, not the rest of the
            // shape: each node carrying it, as in a rolled-back graph, and this
            // message are our guess.
            let halted =
                "The number of failed graphs exceeded the limit; this graph was not processed.";
            let items: Vec<Value> = g
                .composite_request
                .iter()
                .map(|s| json!({"body": processing_halted(halted), "httpHeaders": {}, "httpStatusCode": 400, "referenceId": s.reference_id}))
                .collect();
            out.push(json!({"graphId": g.graph_id, "isSuccessful": false,
                            "graphResponse": {"compositeResponse": items}}));
            continue;
        }
        let (ok, items) = run_graph(x, g);
        if !ok {
            failures += 1;
        }
        out.push(json!({"graphId": g.graph_id, "isSuccessful": ok,
                        "graphResponse": {"compositeResponse": items}}));
    }
    x.emu
        .stats
        .graphs(req.graphs.len() as u64, failures as u64, halted_graphs);
    Reply::ok(json!({"graphs": out}))
}

fn run_graph(x: &mut Exec<'_>, g: &Graph) -> (bool, Vec<Value>) {
    let mark = x.tx.mark();
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut items = Vec::with_capacity(g.composite_request.len());
    for (i, sub) in g.composite_request.iter().enumerate() {
        let reply = run_sub(x, sub, &results);
        if !reply.is_success() {
            x.org.rollback_to(x.tx, mark);
            let halted = "The transaction was rolled back since another operation in the same transaction failed.";
            let items = g
                .composite_request
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    if j == i {
                        item(&reply, &s.reference_id)
                    } else {
                        json!({"body": processing_halted(halted), "httpHeaders": {}, "httpStatusCode": 400,
                               "referenceId": s.reference_id})
                    }
                })
                .collect();
            return (false, items);
        }
        results.insert(sub.reference_id.clone(), result_body(&reply));
        items.push(item(&reply, &sub.reference_id));
    }
    (true, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(r: &str, method: &str, url: &str, body: Value) -> Sub {
        Sub {
            method: method.into(),
            url: url.into(),
            reference_id: r.into(),
            body: Some(body),
            http_headers: Default::default(),
        }
    }

    fn chain(n: usize) -> Vec<Sub> {
        (0..n)
            .map(|i| {
                let body = if i == 0 {
                    json!({})
                } else {
                    json!({"ParentId": format!("@{{n{}.id}}", i - 1)})
                };
                node(
                    &format!("n{i}"),
                    "POST",
                    "/services/data/v63.0/sobjects/Account",
                    body,
                )
            })
            .collect()
    }

    #[test]
    fn depth_is_the_longest_reference_chain() {
        assert_eq!(depth(&chain(1)).unwrap(), 1);
        assert_eq!(depth(&chain(15)).unwrap(), 15);
        let err = validate(&[Graph {
            graph_id: "g".into(),
            composite_request: chain(16),
        }])
        .unwrap_err();
        assert!(matches!(err, Refusal::Limit("graph_depth", _)), "{err:?}");
    }

    #[test]
    fn a_reference_to_a_later_node_is_invalid() {
        let nodes = vec![node(
            "a",
            "POST",
            "/services/data/v63.0/sobjects/Account",
            json!({"ParentId": "@{b.id}"}),
        )];
        assert!(depth(&nodes).is_err());
    }

    #[test]
    fn limits_on_graphs_nodes_and_kinds() {
        let graphs: Vec<Graph> = (0..76)
            .map(|i| Graph {
                graph_id: format!("g{i}"),
                composite_request: chain(1),
            })
            .collect();
        assert!(matches!(
            validate(&graphs),
            Err(Refusal::Limit("graph_count", _))
        ));
        let graphs: Vec<Graph> = (0..51)
            .map(|i| Graph {
                graph_id: format!("g{i}"),
                composite_request: chain(10),
            })
            .collect();
        assert!(matches!(
            validate(&graphs),
            Err(Refusal::Limit("graph_nodes", _))
        ));
        let kinds: Vec<Sub> = (0..16)
            .map(|i| {
                node(
                    &format!("k{i}"),
                    "POST",
                    &format!("/services/data/v{}.0/sobjects/Account", 40 + i),
                    json!({}),
                )
            })
            .collect();
        let err = validate(&[Graph {
            graph_id: "g".into(),
            composite_request: kinds,
        }])
        .unwrap_err();
        assert!(
            matches!(err, Refusal::Limit("graph_node_kinds", _)),
            "{err:?}"
        );
        let query = vec![node(
            "q",
            "GET",
            "/services/data/v63.0/query?q=SELECT+Id+FROM+Account",
            json!({}),
        )];
        assert!(matches!(
            validate(&[Graph {
                graph_id: "g".into(),
                composite_request: query
            }]),
            Err(Refusal::Invalid(_))
        ));
    }
}
