//! Load planning: packs records into requests that never pass a documented limit.
//!
//! Composite graph: at most 75 graphs, 500 nodes, depth 15 and 15 distinct node kinds
//! (version x method x object) per request. sObject Collections: at most 200 records
//! of one object per request.

use std::collections::BTreeSet;

/// Graphs per composite graph request.
pub const MAX_GRAPHS: usize = 75;
/// Nodes per composite graph request (all graphs together).
pub const MAX_NODES: usize = 500;
/// Distinct node kinds per composite graph request.
pub const MAX_NODE_KINDS: usize = 15;
/// Depth of a graph (a record and its children are two levels).
pub const MAX_DEPTH: usize = 15;
/// Records per sObject Collections request.
pub const MAX_COLLECTION: usize = 200;

/// One graph to place: its node count and the node kinds (objects: every node is a
/// PATCH upsert of the one API version, so the object tells the kind apart).
#[derive(Debug, Clone)]
pub struct GraphUnit {
    /// Nodes in the graph.
    pub nodes: usize,
    /// Objects its nodes write.
    pub objects: BTreeSet<String>,
}

impl GraphUnit {
    /// Why the graph fits no request at all, if so.
    pub fn too_big(&self) -> Option<String> {
        if self.nodes > MAX_NODES {
            Some(format!(
                "{} records in one graph: a graph request takes at most {MAX_NODES}",
                self.nodes
            ))
        } else if self.objects.len() > MAX_NODE_KINDS {
            Some(format!(
                "{} objects in one graph: a graph request takes at most {MAX_NODE_KINDS}",
                self.objects.len()
            ))
        } else {
            None
        }
    }
}

/// Packs graphs, in order, into as few requests as the limits allow (greedy first
/// fit in order: a request is closed when the next graph does not fit). Returns the
/// requests as unit indexes and the units that fit none.
pub fn pack_graphs(units: &[GraphUnit]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let (fit, misfits): (Vec<usize>, Vec<usize>) =
        (0..units.len()).partition(|&i| units[i].too_big().is_none());
    let fitting: Vec<GraphUnit> = fit.iter().map(|&i| units[i].clone()).collect();
    let mut requests = Vec::new();
    let mut start = 0;
    while start < fitting.len() {
        let n = take_graphs(&fitting[start..], MAX_GRAPHS);
        requests.push(fit[start..start + n].to_vec());
        start += n;
    }
    (requests, misfits)
}

/// How many of `units`, from the first, go in the next request of at most
/// `max_graphs` graphs (never more than the limits allow; at least one when there
/// is one: each unit must fit a request alone, see `GraphUnit::too_big`).
pub fn take_graphs(units: &[GraphUnit], max_graphs: usize) -> usize {
    let max = max_graphs.clamp(1, MAX_GRAPHS);
    let mut nodes = 0;
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    for (n, u) in units.iter().enumerate() {
        let new_kinds = u
            .objects
            .iter()
            .filter(|o| !kinds.contains(o.as_str()))
            .count();
        let fits =
            n < max && nodes + u.nodes <= MAX_NODES && kinds.len() + new_kinds <= MAX_NODE_KINDS;
        if !fits {
            return n.max(1);
        }
        nodes += u.nodes;
        kinds.extend(u.objects.iter().map(String::as_str));
    }
    units.len()
}

/// Packs groups of records (the records of one parent, kept together so two
/// concurrent requests do not lock the same parent row) into chunks of at most
/// `max` records, splitting only groups larger than `max`. `sizes[i]` is group i's
/// record count; returns per chunk the (group, first record, count) slices.
pub fn pack_groups(sizes: &[usize], max: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let max = max.max(1);
    let mut chunks = Vec::new();
    let mut cur = Vec::new();
    let mut len = 0;
    for (g, &size) in sizes.iter().enumerate() {
        let mut start = 0;
        while start < size {
            let room = max - len;
            // A group that would fit whole in a fresh chunk is not split across two.
            if size - start > room && size - start <= max && len > 0 {
                chunks.push(std::mem::take(&mut cur));
                len = 0;
                continue;
            }
            let take = (size - start).min(max - len);
            cur.push((g, start, take));
            len += take;
            start += take;
            if len == max {
                chunks.push(std::mem::take(&mut cur));
                len = 0;
            }
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

/// The fewest requests any packing could use: the larger of the node and graph bounds.
pub fn graph_floor(total_nodes: usize, graphs: usize) -> usize {
    total_nodes
        .div_ceil(MAX_NODES)
        .max(graphs.div_ceil(MAX_GRAPHS))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn unit(nodes: usize, objects: &[&str]) -> GraphUnit {
        GraphUnit {
            nodes,
            objects: objects.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn seventy_five_graphs_close_a_request() {
        let units: Vec<_> = (0..151)
            .map(|_| unit(2, &["Account", "HealthcareProvider"]))
            .collect();
        let (reqs, misfits) = pack_graphs(&units);
        assert!(misfits.is_empty());
        assert_eq!(reqs.iter().map(Vec::len).collect::<Vec<_>>(), [75, 75, 1]);
    }

    #[test]
    fn nodes_and_kinds_close_a_request_and_giants_are_refused() {
        let units: Vec<_> = (0..3).map(|_| unit(200, &["A"])).collect();
        let (reqs, _) = pack_graphs(&units);
        assert_eq!(reqs, [vec![0, 1], vec![2]]);
        let names: Vec<String> = (0..16).map(|i| format!("O{i}")).collect();
        let mut units: Vec<_> = names.iter().map(|n| unit(1, &[n.as_str()])).collect();
        units.push(unit(501, &["A"]));
        let (reqs, misfits) = pack_graphs(&units);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].len(), 15);
        assert_eq!(misfits, [16]);
    }

    #[test]
    fn a_smaller_graph_cap_closes_requests_earlier() {
        let units: Vec<_> = (0..30)
            .map(|_| unit(2, &["Account", "HealthcareProvider"]))
            .collect();
        assert_eq!(take_graphs(&units, 12), 12);
        assert_eq!(take_graphs(&units[24..], 12), 6);
        assert_eq!(
            take_graphs(&units, 0),
            1,
            "a request holds one graph at least"
        );
        assert_eq!(take_graphs(&units, 500), 30);
    }

    #[test]
    fn groups_stay_whole_when_they_can() {
        // 150 + 100: the 100 would straddle; it starts a new chunk instead.
        assert_eq!(
            pack_groups(&[150, 100], 200),
            [vec![(0, 0, 150)], vec![(1, 0, 100)]]
        );
        // A group over the cap is split.
        assert_eq!(
            pack_groups(&[450], 200),
            [vec![(0, 0, 200)], vec![(0, 200, 200)], vec![(0, 400, 50)]]
        );
    }

    fn arb_units() -> impl Strategy<Value = Vec<GraphUnit>> {
        let objects = proptest::sample::subsequence(
            (0..20).map(|i| format!("Obj{i}")).collect::<Vec<_>>(),
            1..6,
        );
        proptest::collection::vec(
            (1usize..40, objects).prop_map(|(nodes, objs)| GraphUnit {
                nodes,
                objects: objs.into_iter().collect(),
            }),
            0..400,
        )
    }

    proptest! {
        #[test]
        fn graph_requests_never_pass_a_limit(units in arb_units()) {
            let (reqs, misfits) = pack_graphs(&units);
            let mut seen = Vec::new();
            for r in &reqs {
                prop_assert!(!r.is_empty());
                prop_assert!(r.len() <= MAX_GRAPHS);
                prop_assert!(r.iter().map(|&i| units[i].nodes).sum::<usize>() <= MAX_NODES);
                let kinds: BTreeSet<_> = r.iter().flat_map(|&i| units[i].objects.iter()).collect();
                prop_assert!(kinds.len() <= MAX_NODE_KINDS);
                seen.extend(r.iter().copied());
            }
            seen.extend(misfits.iter().copied());
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..units.len()).collect::<Vec<_>>());
        }

        #[test]
        fn graph_packing_stays_near_the_floor_for_uniform_graphs(n in 1usize..3000, nodes in 1usize..12) {
            let units: Vec<_> = (0..n).map(|_| unit(nodes, &["Account", "HealthcareProvider"])).collect();
            let (reqs, _) = pack_graphs(&units);
            // Equal graphs pack perfectly: the floor is reached.
            let per = (MAX_NODES / nodes).min(MAX_GRAPHS);
            prop_assert_eq!(reqs.len(), n.div_ceil(per));
        }

        #[test]
        fn group_chunks_hold_every_record_once_within_the_cap(sizes in proptest::collection::vec(1usize..450, 0..60), max in 1usize..250) {
            let chunks = pack_groups(&sizes, max);
            let mut covered = vec![0usize; sizes.len()];
            for c in &chunks {
                prop_assert!(!c.is_empty());
                prop_assert!(c.iter().map(|s| s.2).sum::<usize>() <= max);
                for &(g, start, n) in c {
                    prop_assert_eq!(start, covered[g]);
                    covered[g] += n;
                }
            }
            prop_assert_eq!(&covered, &sizes);
            // A chunk closed early is followed by one that overflows it: at most twice the ideal.
            let total: usize = sizes.iter().sum();
            prop_assert!(chunks.len() <= 2 * total.div_ceil(max) + 1);
        }
    }
}
