//! The Salesforce target (Health Cloud / Life Sciences Cloud): records with child
//! objects go as composite graphs (one graph per record and its children, many graphs
//! per request), flat records and links as sObject Collections, grouped by parent.
//! Every request is planned within the documented limits (`plan`), sent with the
//! retry, re-auth and budget policy of `client`, after a `preflight` of the mapping
//! against the org's describe. Writes of `bulk_threshold` records or more go as
//! Bulk API 2.0 jobs (`bulk`), which an abort of the run aborts.

pub mod auth;
pub mod bulk;
pub mod client;
pub mod codes;
pub mod collections;
pub mod config;
pub mod graph;
pub mod job_run;
pub mod limits;
pub mod locks;
pub mod metadata;
pub mod plan;
pub mod preflight;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, SourceId};
use provsync_core::target::{
    Applied, Change, Joined, Outcome, RunRef, TablePlan, Target, TargetError, TargetLimits, Write,
};

use client::Client;
use collections::{FlatRecord, UNRESOLVED};
pub use config::SalesforceConfig;
use graph::GraphResult;

/// A Salesforce connector failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SfError {
    /// Settings or mapping do not fit the org (never retried).
    #[error("{0}")]
    Config(String),
    /// Authentication refused.
    #[error("{0}")]
    Refused(String),
    /// A failure worth retrying (503, transport).
    #[error("{0}")]
    Transient(String),
    /// Transient failures that outlived the retries.
    #[error("{0}")]
    Unavailable(String),
    /// The run was aborted while the request waited for the budget (its records
    /// fail with this reason; the run goes on winding down).
    #[error("{0}")]
    Cancelled(String),
    /// An answer the connector cannot read.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A request-level error answer.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Salesforce error code.
        code: String,
        /// Message.
        message: String,
    },
}

impl From<SfError> for TargetError {
    fn from(e: SfError) -> Self {
        match e {
            SfError::Config(m) => TargetError::Config(m),
            SfError::Refused(m) => TargetError::Refused(m),
            SfError::Transient(m) | SfError::Unavailable(m) | SfError::Cancelled(m) => {
                TargetError::Unavailable(m)
            }
            e @ (SfError::Protocol(_) | SfError::Api { .. }) => {
                TargetError::Unavailable(e.to_string())
            }
        }
    }
}

/// Most records the loader hands over at once: the connector plans its own requests.
const MAX_BATCH: usize = 10_000;

/// The `salesforce` target.
pub struct SalesforceTarget {
    client: Client,
    /// The mapping's plan, kept from `prepare` for the sweep.
    plan: Mutex<Vec<TablePlan>>,
    /// Parents referenced by requests in flight.
    locks: locks::ParentLocks,
    /// One value set read-merge-write at a time (pages load concurrently).
    codes_lock: tokio::sync::Mutex<()>,
    /// What the codes sync did per value set, for the run summary.
    code_reports: Mutex<BTreeMap<String, codes::SetReport>>,
    /// Bulk jobs in flight per run (aborted with the run).
    bulk_jobs: bulk::InFlight,
    /// The run's IntegrationJobRun: its Id and what the end of the run did with it.
    job_run: tokio::sync::Mutex<job_run::JobRunState>,
    /// Graphs per composite graph request (adaptive).
    graph_cap: limits::GraphCap,
    /// Graphs halted by their request's failures, and re-sent.
    graphs_halted: AtomicU64,
}

/// One request of a round, with the parent records it references.
struct Request {
    kind: RequestKind,
    /// External ids of referenced parents (none for graphs: their children refer
    /// to a parent in the same graph).
    parents: std::collections::BTreeSet<String>,
}

enum RequestKind {
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
struct GraphQueue {
    ids: Vec<usize>,
    units: Vec<plan::GraphUnit>,
}

impl GraphQueue {
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Re-sends of a record's graph halted by other graphs' failures before the record
/// fails: a guard only (each halt needs 15 failures that count as attempts).
const MAX_HALTED_RESENDS: u32 = 100;

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
    /// Reads the secrets the config names; no request is sent yet.
    pub fn open(cfg: SalesforceConfig) -> Result<Self, TargetError> {
        cfg.validate()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let creds = auth::Credentials::resolve(&cfg.auth, &cfg.login_url)?;
        Ok(SalesforceTarget {
            client: Client::new(cfg, creds)?,
            plan: Mutex::new(Vec::new()),
            locks: locks::ParentLocks::default(),
            codes_lock: tokio::sync::Mutex::new(()),
            code_reports: Mutex::new(BTreeMap::new()),
            bulk_jobs: bulk::InFlight::default(),
            job_run: tokio::sync::Mutex::new(job_run::JobRunState::default()),
            graph_cap: limits::GraphCap::new(plan::MAX_GRAPHS),
            graphs_halted: AtomicU64::new(0),
        })
    }

    /// The HTTP client (calls made, budget seen).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes records (graphs for those with children, collections for the rest),
    /// retrying the records Salesforce asks to retry; one outcome per record.
    async fn write(
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
        let send = |kind: RequestKind| async move {
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
                    let r =
                        bulk::upsert_tree(&self.client, &self.bulk_jobs, run, records, &ids).await;
                    (ids, r)
                }
            }
        };
        let start = |req: Request| {
            let parents = req.parents;
            let fut = send(req.kind);
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
        for (ids, r) in answers {
            match r {
                Ok(results) => out.extend(ids.into_iter().zip(results)),
                // A request refused as a whole fails its records, not the job.
                Err(SfError::Api {
                    status,
                    code,
                    message,
                }) => out.extend(ids.into_iter().map(|i| {
                    (
                        i,
                        GraphResult::Failed(format!(
                            "{} {}: request refused: HTTP {status} {code}: {message}",
                            records[i].table, records[i].source_id
                        )),
                    )
                })),
                Err(SfError::Cancelled(why)) => out.extend(ids.into_iter().map(|i| {
                    (
                        i,
                        GraphResult::Failed(format!(
                            "{} {}: {why}",
                            records[i].table, records[i].source_id
                        )),
                    )
                })),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// The graphs of records with children (cut into requests as they are sent);
    /// collections, grouped by parent, for the rest (or Bulk jobs for a large write).
    /// Records that fit no request come back failed.
    fn plan_round(
        &self,
        run: &str,
        records: &[&MappedRecord],
        pending: &[usize],
    ) -> (Vec<Request>, GraphQueue, Vec<(usize, GraphResult)>) {
        let (with_children, flat): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|&&i| !records[i].children.is_empty());
        let mut requests = Vec::new();
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
            return (requests, GraphQueue::default(), Vec::new());
        }
        let mut graphs = GraphQueue::default();
        let mut misfits = Vec::new();
        for &i in &with_children {
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
        // Per object, records grouped by their most shared parent (a workplace
        // rather than one of its practitioners), so few requests share a parent.
        let mut shared: std::collections::HashMap<String, usize> = Default::default();
        for &i in &flat {
            for p in parents_of(records[i]) {
                *shared.entry(p).or_default() += 1;
            }
        }
        let mut by_table: BTreeMap<&str, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
        for &i in &flat {
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
        (requests, graphs, misfits)
    }

    /// Sets the disconnect fields of swept records (and of their one-per-parent
    /// children) by upsert on the external id; counts the records changed.
    async fn sweep(
        &self,
        run: &str,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError> {
        let Some(p) = self.plan_of(kind) else {
            return Err(TargetError::Config(format!(
                "no mapping prepared for {kind} records: nothing to disconnect with"
            )));
        };
        if p.disconnect.is_empty() || p.key.is_some() {
            // Nothing to mark, or no way to find the rows from source ids: said in
            // the log; the sweep reports zero disconnected for the kind.
            tracing::warn!(%kind, table = %p.table, swept = ids.len(),
                "Salesforce: the mapping gives no disconnect fields (or keys records by a template): swept records left as they are");
            return Ok(0);
        }
        let mut changed = 0;
        // Stand-in records carry the disconnect fields to the collection writer;
        // `roots[i]` says whether record i is a swept record (not a child).
        let mut mapped = Vec::new();
        let mut roots = Vec::new();
        let stand_in = |table: &str, fields: &[(String, serde_json::Value)], key: &str| {
            MappedRecord::new(
                kind,
                SourceId::from(key),
                provsync_core::model::Scope::from(""),
                table.to_string(),
                fields.to_vec(),
                Vec::new(),
            )
        };
        for id in ids {
            mapped.push(stand_in(&p.table, &p.disconnect, id.as_str()));
            roots.push(true);
            for c in p.children.iter().filter(|c| !c.disconnect.is_empty()) {
                if let Some(key) = c.key_for(id.as_str()) {
                    mapped.push(stand_in(&c.table, &c.disconnect, &key));
                    roots.push(false);
                }
            }
        }
        let refs: Vec<&MappedRecord> = mapped.iter().collect();
        let outcomes = self.write(run, &refs).await?;
        for ((r, root), o) in mapped.iter().zip(&roots).zip(outcomes) {
            let key = r.source_id.as_str();
            match o {
                Outcome::Written { .. } | Outcome::Unchanged if *root => changed += 1,
                Outcome::Written { .. } | Outcome::Unchanged => {}
                Outcome::Failed { reason } | Outcome::Unresolved { reason } => {
                    tracing::warn!(%key, %reason, "Salesforce: disconnect not written");
                }
            }
        }
        Ok(changed)
    }

    /// Codes into value sets: per set, read the current values, merge, write once.
    async fn sync_codes(&self, records: &[&MappedRecord]) -> Result<Vec<Outcome>, TargetError> {
        let _one_at_a_time = self.codes_lock.lock().await;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut sets: BTreeMap<(metadata::SetKind, String), Vec<(usize, codes::Incoming)>> =
            BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let text = |f: &str| match r.field(f) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            let Some(set) = text("ValueSet").filter(|s| !s.is_empty()) else {
                // The codes mapping names no value set for this list: not synced.
                outcomes[i] = Some(Outcome::Written {
                    target_id: None,
                    applied: None,
                });
                continue;
            };
            let (kind, name) = match set.split_once(':') {
                Some(("StandardValueSet", n)) => (metadata::SetKind::Standard, n.to_string()),
                Some(("GlobalValueSet", n)) => (metadata::SetKind::Global, n.to_string()),
                _ if r.table == "StandardValueSet" => (metadata::SetKind::Standard, set),
                _ => (metadata::SetKind::Global, set),
            };
            let Some(value) = text("Value").filter(|v| !v.is_empty()) else {
                outcomes[i] = Some(Outcome::Failed {
                    reason: format!("code {}: no Value mapped", r.source_id),
                });
                continue;
            };
            let active = !matches!(r.field("IsActive"), Some(serde_json::Value::Bool(false)));
            sets.entry((kind, name)).or_default().push((
                i,
                codes::Incoming {
                    value,
                    label: text("Label").unwrap_or_default(),
                    active,
                },
            ));
        }
        for ((kind, name), items) in sets {
            let current = metadata::read(&self.client, kind, &name).await?;
            let mut set = match (current, kind) {
                (Some(s), _) => s,
                (None, metadata::SetKind::Global) => metadata::ValueSet {
                    kind,
                    name: name.clone(),
                    master_label: name.clone(),
                    sorted: false,
                    values: Vec::new(),
                },
                (None, metadata::SetKind::Standard) => {
                    for (i, _) in &items {
                        outcomes[*i] = Some(Outcome::Failed {
                            reason: format!("standard value set {name} does not exist in the org"),
                        });
                    }
                    continue;
                }
            };
            let incoming: Vec<codes::Incoming> = items.iter().map(|(_, c)| c.clone()).collect();
            let merged = codes::merge(&mut set, &incoming);
            let changed = merged.iter().any(|m| {
                matches!(
                    m,
                    codes::Merged::Added | codes::Merged::Updated | codes::Merged::Deactivated
                )
            });
            let written = if changed {
                metadata::upsert(&self.client, &set)
                    .await
                    .map_err(|e| match e {
                        SfError::Api { .. } | SfError::Protocol(_) => {
                            SfError::Config(format!("writing value set {name}: {e}"))
                        }
                        other => other,
                    })
            } else {
                Ok(())
            };
            if let Err(e) = written {
                return Err(e.into());
            }
            let mut reports = self.code_reports.lock().expect("reports lock");
            let report = reports.entry(name.clone()).or_default();
            for ((i, inc), m) in items.iter().zip(&merged) {
                report.add(&inc.value, m);
                outcomes[*i] = Some(match m {
                    codes::Merged::NotFitted(why) => Outcome::Failed {
                        reason: format!("{why}: {} left out", inc.value),
                    },
                    // The org's value set already had it as it is.
                    codes::Merged::Unchanged => Outcome::Unchanged,
                    // Counted as the value set changed, not as the state store guessed.
                    codes::Merged::Added => Outcome::Written {
                        target_id: None,
                        applied: Some(Applied {
                            change: Change::Created,
                            joined: Joined::Connected,
                        }),
                    },
                    codes::Merged::Updated | codes::Merged::Deactivated => Outcome::Written {
                        target_id: None,
                        applied: Some(Applied {
                            change: Change::Updated,
                            joined: Joined::Stayed,
                        }),
                    },
                });
            }
            tracing::info!(value_set = %name, added = report.added, updated = report.updated,
                deactivated = report.deactivated, unchanged = report.unchanged,
                not_fitted = report.not_fitted.len(), written = changed, "Salesforce value set merged");
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Outcome::Failed {
                    reason: "code not processed".into(),
                })
            })
            .collect())
    }

    /// The IntegrationJobRun's Status values, described once per process.
    async fn job_run_statuses(
        &self,
        jr: &mut job_run::JobRunState,
    ) -> Result<Vec<preflight::PicklistValue>, SfError> {
        if jr.statuses.is_none() {
            jr.statuses = Some(job_run::statuses(&self.client).await?);
        }
        Ok(jr.statuses.clone().unwrap_or_default())
    }

    /// Creates the run's IntegrationJobRun, unless the org has one already (a run
    /// that lost its Id, e.g. killed between the create and the state store's write).
    async fn create_job_run(
        &self,
        jr: &mut job_run::JobRunState,
        job_id: &str,
        info: &serde_json::Value,
    ) -> Result<String, SfError> {
        let statuses = self.job_run_statuses(jr).await?;
        if let Some(id) = job_run::find(&self.client, job_id).await? {
            tracing::info!(job = %job_id, id = %id, "IntegrationJobRun of the run found by its JobIdentifier");
            return Ok(id);
        }
        let fields = job_run::start_fields(info, job_run::status_for("running", &statuses));
        let id = job_run::create(&self.client, fields).await?;
        tracing::info!(job = %job_id, id = %id, "IntegrationJobRun created");
        Ok(id)
    }

    /// Ends the run's IntegrationJobRun: updated by its Id, found by JobIdentifier if
    /// this process has no Id, created whole if the start could not create it.
    async fn end_job_run(
        &self,
        jr: &mut job_run::JobRunState,
        job_id: &str,
        summary: &serde_json::Value,
    ) -> Result<serde_json::Value, SfError> {
        let statuses = self.job_run_statuses(jr).await?;
        let state = summary["state"].as_str().unwrap_or_default();
        let status = job_run::status_for(state, &statuses);
        let mut fields = job_run::end_fields(summary, status.clone());
        let id = match jr.id.clone() {
            Some(id) => id,
            None => match job_run::find(&self.client, job_id).await? {
                Some(id) => id,
                None => {
                    let mut all = job_run::start_fields(summary, None);
                    all.append(&mut fields);
                    let id = job_run::create(&self.client, all).await?;
                    jr.id = Some(id.clone());
                    return Ok(serde_json::json!({
                        "written": true, "id": id, "status": status,
                        "note": "created at the end: the start of the run could not create it",
                    }));
                }
            },
        };
        jr.id = Some(id.clone());
        job_run::update(&self.client, &id, fields).await?;
        Ok(serde_json::json!({"written": true, "id": id, "status": status}))
    }

    /// What the codes sync did per value set so far.
    pub fn code_reports(&self) -> BTreeMap<String, codes::SetReport> {
        self.code_reports.lock().expect("reports lock").clone()
    }

    fn plan_of(&self, kind: EntityKind) -> Option<TablePlan> {
        self.plan
            .lock()
            .expect("plan lock")
            .iter()
            .find(|p| p.kind == kind)
            .cloned()
    }
}

#[async_trait]
impl Target for SalesforceTarget {
    fn limits(&self) -> TargetLimits {
        TargetLimits {
            max_batch: MAX_BATCH,
            max_concurrency: self.client.config().max_concurrency,
        }
    }

    async fn prepare(&self, plan: &[TablePlan]) -> Result<(), TargetError> {
        let problems = preflight::check(&self.client, plan).await?;
        if !problems.is_empty() {
            return Err(TargetError::Config(format!(
                "Salesforce preflight failed ({} problems): {}",
                problems.len(),
                problems.join("; ")
            )));
        }
        *self.plan.lock().expect("plan lock") = plan.to_vec();
        Ok(())
    }

    async fn upsert(&self, run: &RunRef, writes: &[Write]) -> Result<Vec<Outcome>, TargetError> {
        let records: Vec<&MappedRecord> = writes.iter().map(|w| &w.record).collect();
        if records.iter().all(|r| r.kind == EntityKind::Code) && !records.is_empty() {
            return self.sync_codes(&records).await;
        }
        self.write(&run.job_id, &records).await
    }

    async fn upsert_links(
        &self,
        run: &RunRef,
        writes: &[Write],
    ) -> Result<Vec<Outcome>, TargetError> {
        let records: Vec<&MappedRecord> = writes.iter().map(|w| &w.record).collect();
        self.write(&run.job_id, &records).await
    }

    async fn disconnect(
        &self,
        run: &RunRef,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError> {
        self.sweep(&run.job_id, kind, ids).await
    }

    async fn abort(&self, run: &RunRef) -> Result<Vec<String>, TargetError> {
        let aborted = bulk::abort_run(&self.client, &self.bulk_jobs, &run.job_id).await;
        // Then nothing waits for a spent budget: parked writes fail at once.
        self.client.cancel();
        if !aborted.is_empty() {
            tracing::info!(job = %run.job_id, bulk_jobs = ?aborted, "Salesforce Bulk jobs aborted with the run");
        }
        Ok(aborted
            .into_iter()
            .map(|id| format!("Salesforce Bulk job {id}"))
            .collect())
    }

    async fn start_run(
        &self,
        run: &RunRef,
        info: &serde_json::Value,
        kept: Option<&str>,
    ) -> Result<Option<String>, TargetError> {
        if !self.client.config().integration_job_run {
            return Ok(None);
        }
        let mut jr = self.job_run.lock().await;
        if let Some(id) = kept {
            // A resumed run: the record exists, its Id is the store's.
            jr.id = Some(id.to_string());
            return Ok(Some(id.to_string()));
        }
        match self.create_job_run(&mut jr, &run.job_id, info).await {
            Ok(id) => {
                jr.id = Some(id.clone());
                Ok(Some(id))
            }
            Err(e) => Err(TargetError::Audit(format!(
                "{} not created at the start of the run: {e}",
                job_run::OBJECT
            ))),
        }
    }

    async fn write_audit(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        if !self.client.config().integration_job_run {
            return Ok(None);
        }
        let mut jr = self.job_run.lock().await;
        match self.end_job_run(&mut jr, &run.job_id, summary).await {
            Ok(v) => {
                jr.report = Some(v.clone());
                Ok(Some(v))
            }
            Err(e) => {
                let why = format!("{} not written: {e}", job_run::OBJECT);
                tracing::error!(job = %run.job_id, error = %e, "IntegrationJobRun not written");
                jr.report = Some(serde_json::json!({"written": false, "error": why}));
                Err(TargetError::Audit(why))
            }
        }
    }

    async fn end_run(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        let cfg = self.client.config();
        let state = summary["state"].as_str().unwrap_or_default();
        let mut report = serde_json::Map::new();
        let reports = self.code_reports();
        if !reports.is_empty() {
            let changed = reports
                .values()
                .any(|r| r.added + r.updated + r.deactivated > 0);
            report.insert("value_sets".into(), serde_json::json!(reports));
            if !changed {
                report.insert(
                    "value_sets_note".into(),
                    "no change: every value set already had these values".into(),
                );
            }
        }
        if let Some(v) = self.job_run.lock().await.report.take() {
            report.insert("integration_job_run".into(), v);
        }
        let mut actions = Vec::new();
        for a in &cfg.post_job {
            if !job_run::applies(a, state) {
                actions.push(
                    serde_json::json!({"name": a.name, "skipped": format!("run ended {state}")}),
                );
                continue;
            }
            let v = match job_run::run_action(&self.client, a, &run.job_id, state).await {
                Ok(status) => serde_json::json!({"name": a.name, "status": status}),
                Err(e) => {
                    tracing::warn!(job = %run.job_id, action = %a.name, error = %e, "post-job action failed");
                    serde_json::json!({"name": a.name, "error": e.to_string()})
                }
            };
            actions.push(v);
        }
        if !actions.is_empty() {
            report.insert("post_job".into(), serde_json::Value::Array(actions));
        }
        // Graphs Salesforce halted because other graphs of their request failed
        // more than 14 times; each was re-sent, none is a failed record.
        report.insert(
            "graphs_halted".into(),
            self.graphs_halted.load(Ordering::Relaxed).into(),
        );
        report.insert(
            "api_calls".into(),
            self.client
                .calls
                .load(std::sync::atomic::Ordering::Relaxed)
                .into(),
        );
        if let Some(u) = self.client.budget.last() {
            report.insert(
                "api_usage".into(),
                serde_json::json!({"used": u.used, "max": u.max}),
            );
        }
        Ok(Some(serde_json::Value::Object(report)))
    }

    fn parked(&self) -> Option<String> {
        self.client.parked()
    }
}
