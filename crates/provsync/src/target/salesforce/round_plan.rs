//! Round planning: which records of a round go as graphs, collections grouped by
//! parent, or Bulk jobs; the request limits themselves are `plan`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use provsync_core::mapped::MappedRecord;

use super::graph::{self, GraphResult};
use super::{plan, SalesforceTarget};

/// One request of a round, with the parent records it references.
pub(super) struct Request {
    pub(super) kind: RequestKind,
    /// External ids of referenced parents (none for graphs: their children refer
    /// to a parent in the same graph).
    pub(super) parents: BTreeSet<String>,
}

/// How a request writes its records.
pub(super) enum RequestKind {
    /// Graphs of these records.
    Graph(Vec<usize>),
    /// A collection of these records (one object).
    Collection(Vec<usize>),
    /// Bulk jobs for these records (one object, no children).
    Bulk(Vec<usize>),
    /// Bulk jobs for these records and then their children.
    BulkTree(Vec<usize>),
}

/// The graphs of a round not yet sent: record indexes and their units, in order.
#[derive(Default)]
pub(super) struct GraphQueue {
    pub(super) ids: Vec<usize>,
    pub(super) units: Vec<plan::GraphUnit>,
}

impl GraphQueue {
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The parents a flat record references (`Relationship.Field` values).
fn parents_of(r: &MappedRecord) -> impl Iterator<Item = String> + '_ {
    r.fields
        .iter()
        .filter(|(n, v)| n.contains('.') && !v.is_null())
        .map(|(_, v)| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
}

impl SalesforceTarget {
    /// The graphs of records with children (cut into requests as they are sent);
    /// collections, grouped by parent, for the rest (or Bulk jobs for a large write).
    /// Records that fit no request come back failed.
    pub(super) fn plan_round(
        &self,
        run: &str,
        records: &[&MappedRecord],
        pending: &[usize],
    ) -> (Vec<Request>, GraphQueue, Vec<(usize, GraphResult)>) {
        let (with_children, flat): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|&&i| !records[i].children.is_empty());
        let threshold = self.client.config().bulk_threshold;
        let size: usize = pending.iter().map(|&i| 1 + records[i].children.len()).sum();
        // Large writes go as Bulk jobs (a few calls whatever the size); their parents
        // are not locked: Bulk answers a lock conflict per row, and those rows are
        // retried. An aborted run starts no new Bulk job.
        // Bulk API 2.0 documents no duplicate rule header: records a rule flags
        // would fail there whatever the job says, so a job that saves them
        // anyway writes through graphs and collections only.
        let bulk = threshold > 0 && !self.client.config().duplicate_rule_allow_save;
        if bulk && size >= threshold && !self.bulk_jobs.is_aborted(run) {
            let requests = bulk_requests(records, with_children, flat);
            return (requests, GraphQueue::default(), Vec::new());
        }
        let (graphs, misfits) = graph_queue(records, &with_children);
        (collection_requests(records, &flat), graphs, misfits)
    }
}

/// Bulk jobs: one for the records with children (and then their children), one per
/// object for the rest.
fn bulk_requests(
    records: &[&MappedRecord],
    with_children: Vec<usize>,
    flat: Vec<usize>,
) -> Vec<Request> {
    let mut requests = Vec::new();
    if !with_children.is_empty() {
        requests.push(Request {
            kind: RequestKind::BulkTree(with_children),
            parents: Default::default(),
        });
    }
    let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in flat {
        by_table
            .entry(records[i].table.as_str())
            .or_default()
            .push(i);
    }
    for ids in by_table.into_values() {
        requests.push(Request {
            kind: RequestKind::Bulk(ids),
            parents: Default::default(),
        });
    }
    requests
}

/// The graphs to send, in order, and the records whose graph fits no request.
fn graph_queue(
    records: &[&MappedRecord],
    with_children: &[usize],
) -> (GraphQueue, Vec<(usize, GraphResult)>) {
    let mut graphs = GraphQueue::default();
    let mut misfits = Vec::new();
    for &i in with_children {
        let unit = graph::unit(records[i]);
        match unit.too_big() {
            None => {
                graphs.ids.push(i);
                graphs.units.push(unit);
            }
            // A graph over the limits cannot be sent, nor split (children need
            // the parent's id from the same graph): the record fails, naming
            // the limit.
            Some(why) => misfits.push((
                i,
                GraphResult::Failed(format!(
                    "{} {}: {why}",
                    records[i].table, records[i].source_id
                )),
            )),
        }
    }
    (graphs, misfits)
}

/// Collections of flat records: per object, grouped by their most shared parent (a
/// workplace rather than one of its practitioners), so few requests share a parent.
fn collection_requests(records: &[&MappedRecord], flat: &[usize]) -> Vec<Request> {
    let mut shared: HashMap<String, usize> = Default::default();
    for &i in flat {
        for p in parents_of(records[i]) {
            *shared.entry(p).or_default() += 1;
        }
    }
    let mut by_table: BTreeMap<&str, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for &i in flat {
        let r = records[i];
        let parent = parents_of(r)
            .max_by_key(|p| (shared.get(p).copied().unwrap_or(0), p.clone()))
            .unwrap_or_default();
        by_table
            .entry(r.table.as_str())
            .or_default()
            .entry(parent)
            .or_default()
            .push(i);
    }
    let mut requests = Vec::new();
    for groups in by_table.into_values() {
        let groups: Vec<Vec<usize>> = groups.into_values().collect();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        for chunk in plan::pack_groups(&sizes, plan::MAX_COLLECTION) {
            let ids: Vec<usize> = chunk
                .into_iter()
                .flat_map(|(g, start, n)| groups[g][start..start + n].iter().copied())
                .collect();
            let parents = ids.iter().flat_map(|&i| parents_of(records[i])).collect();
            requests.push(Request {
                kind: RequestKind::Collection(ids),
                parents,
            });
        }
    }
    requests
}
