//! The write loop: rounds of requests until every record has an outcome, re-sending
//! what Salesforce asks to retry and graphs halted by their neighbours' failures.

use std::sync::atomic::Ordering;

use futures::StreamExt;
use provsync_core::mapped::MappedRecord;
use provsync_core::target::{Outcome, TargetError};

use super::collections::{self, FlatRecord, UNRESOLVED};
use super::graph::{self, GraphResult};
use super::round_plan::{Request, RequestKind};
use super::{bulk, plan, SalesforceTarget, SfError};

/// Re-sends of a record's graph halted by other graphs' failures before the record
/// fails: a guard only (each halt needs 15 failures that count as attempts).
const MAX_HALTED_RESENDS: u32 = 100;

impl SalesforceTarget {
    /// Writes records (graphs for those with children, collections for the rest),
    /// retrying the records Salesforce asks to retry; one outcome per record.
    pub(super) async fn write(
        &self,
        run: &str,
        records: &[&MappedRecord],
    ) -> Result<Vec<Outcome>, TargetError> {
        let cfg = self.client.config();
        let mut done: Vec<Option<GraphResult>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        // Sends that count against `max_attempts`, and re-sends of halted graphs
        // (which do not: the record was never tried).
        let mut tries = vec![0u32; records.len()];
        let mut halts = vec![0u32; records.len()];
        while !pending.is_empty() {
            let results = self.round(run, records, &pending).await?;
            let mut retry = Vec::new();
            let mut backoff = 0;
            let mut reason = String::new();
            let mut halted = 0;
            for (i, r) in results {
                match r {
                    GraphResult::Halted if halts[i] < MAX_HALTED_RESENDS => {
                        halts[i] += 1;
                        halted += 1;
                        retry.push(i);
                    }
                    GraphResult::Halted => {
                        done[i] = Some(GraphResult::Failed(format!(
                            "{} {}: still PROCESSING_HALTED after {} sends",
                            records[i].table, records[i].source_id, halts[i]
                        )))
                    }
                    GraphResult::Retry(why) => {
                        tries[i] += 1;
                        if tries[i] < cfg.max_attempts {
                            backoff = backoff.max(tries[i]);
                            reason = why;
                            retry.push(i);
                        } else {
                            done[i] = Some(GraphResult::Failed(format!(
                                "{} {}: still {why} after {} attempts",
                                records[i].table, records[i].source_id, tries[i]
                            )))
                        }
                    }
                    other => done[i] = Some(other),
                }
            }
            if halted > 0 {
                self.graphs_halted.fetch_add(halted, Ordering::Relaxed);
                tracing::debug!(
                    graphs = halted,
                    "Salesforce graphs halted by their request's failures re-sent"
                );
            }
            if backoff > 0 {
                tracing::debug!(records = retry.len() as u64 - halted, attempt = backoff, reason = %reason, "Salesforce records retried");
                tokio::time::sleep(self.client.backoff(backoff)).await;
            }
            pending = retry;
        }
        Ok(done
            .into_iter()
            .map(|r| match r {
                Some(GraphResult::Written(id)) => Outcome::Written {
                    target_id: id,
                    applied: None,
                },
                Some(GraphResult::Failed(reason)) => match reason.strip_prefix(UNRESOLVED) {
                    Some(rest) => Outcome::Unresolved {
                        reason: rest.to_string(),
                    },
                    None => Outcome::Failed { reason },
                },
                Some(GraphResult::Retry(why)) => Outcome::Failed {
                    reason: format!("not written: {why}"),
                },
                Some(GraphResult::Halted) => Outcome::Failed {
                    reason: "not written: PROCESSING_HALTED".into(),
                },
                None => Outcome::Failed {
                    reason: "no answer from Salesforce for this record".into(),
                },
            })
            .collect())
    }

    /// Plans and sends one round of requests concurrently (under the gate).
    async fn round(
        &self,
        run: &str,
        records: &[&MappedRecord],
        pending: &[usize],
    ) -> Result<Vec<(usize, GraphResult)>, TargetError> {
        let (requests, graphs, misfits) = self.plan_round(run, records, pending);
        let mut out = Vec::with_capacity(pending.len());
        out.extend(misfits);
        let start = |req: Request| {
            let parents = req.parents;
            let fut = self.send(run, records, req.kind);
            async move { (parents, fut.await) }
        };
        // Start requests whose parents no request in flight holds (a lock conflict
        // avoided is a retry saved), up to the concurrency cap.
        let cap = self.client.config().max_concurrency;
        let mut waiting: std::collections::VecDeque<Request> = requests.into();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut answers = Vec::new();
        let mut next_graph = 0;
        loop {
            // Graph requests are cut as they start, at the graph cap the answers so
            // far have set (their children refer to a parent in the same graph: no
            // parent to hold).
            while running.len() < cap && next_graph < graphs.len() {
                let n = plan::take_graphs(&graphs.units[next_graph..], self.graph_cap.get());
                let ids = graphs.ids[next_graph..next_graph + n].to_vec();
                next_graph += n;
                running.push(start(Request {
                    kind: RequestKind::Graph(ids),
                    parents: Default::default(),
                }));
            }
            let mut i = 0;
            while running.len() < cap && i < waiting.len() {
                if self.locks.try_take(&waiting[i].parents) {
                    let req = waiting.remove(i).expect("index in range");
                    running.push(start(req));
                } else {
                    i += 1;
                }
            }
            if running.is_empty() {
                if waiting.is_empty() {
                    break;
                }
                // Held by another upsert call's requests: wait for a release.
                self.locks.changed().await;
                continue;
            }
            tokio::select! {
                Some((parents, answer)) = running.next() => {
                    self.locks.release(&parents);
                    answers.push(answer);
                }
                // Another call's release may let a waiting request start.
                _ = self.locks.changed(), if !waiting.is_empty() => {}
            }
        }
        for (ids, answer) in answers {
            out.extend(results_of(records, ids, answer)?);
        }
        Ok(out)
    }

    /// Sends one request; its record indexes come back with the answer.
    async fn send(
        &self,
        run: &str,
        records: &[&MappedRecord],
        kind: RequestKind,
    ) -> (Vec<usize>, Result<Vec<GraphResult>, SfError>) {
        match kind {
            RequestKind::Graph(ids) => {
                let r = graph::send(&self.client, records, &ids).await;
                if let Ok(results) = &r {
                    let halted = results
                        .iter()
                        .filter(|r| matches!(r, GraphResult::Halted))
                        .count();
                    let failed = results
                        .iter()
                        .filter(|r| matches!(r, GraphResult::Failed(_) | GraphResult::Retry(_)))
                        .count();
                    self.graph_cap.observe(ids.len(), failed, halted);
                }
                (ids, r)
            }
            RequestKind::Collection(ids) => {
                let flat: Vec<FlatRecord<'_>> =
                    ids.iter().map(|&i| FlatRecord::of(records[i])).collect();
                let r = collections::upsert(&self.client, &flat).await;
                (ids, r)
            }
            RequestKind::Bulk(ids) => {
                let flat: Vec<FlatRecord<'_>> =
                    ids.iter().map(|&i| FlatRecord::of(records[i])).collect();
                let r = bulk::upsert(&self.client, &self.bulk_jobs, run, &flat).await;
                (ids, r)
            }
            RequestKind::BulkTree(ids) => {
                let r = bulk::upsert_tree(&self.client, &self.bulk_jobs, run, records, &ids).await;
                (ids, r)
            }
        }
    }
}

/// Each record's result from its request's answer. A request refused as a whole,
/// or cancelled by an abort, fails its records, not the job.
fn results_of(
    records: &[&MappedRecord],
    ids: Vec<usize>,
    answer: Result<Vec<GraphResult>, SfError>,
) -> Result<Vec<(usize, GraphResult)>, SfError> {
    let fail_all = |why: &dyn Fn(usize) -> String| {
        ids.iter()
            .map(|&i| (i, GraphResult::Failed(why(i))))
            .collect()
    };
    match answer {
        Ok(results) => Ok(ids.iter().copied().zip(results).collect()),
        Err(SfError::Api {
            status,
            code,
            message,
        }) => Ok(fail_all(&|i| {
            format!(
                "{} {}: request refused: HTTP {status} {code}: {message}",
                records[i].table, records[i].source_id
            )
        })),
        Err(SfError::Cancelled(why)) => Ok(fail_all(&|i| {
            format!("{} {}: {why}", records[i].table, records[i].source_id)
        })),
        Err(e) => Err(e),
    }
}
