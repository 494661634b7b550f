//! The Salesforce target (Health Cloud / Life Sciences Cloud): records with child
//! objects go as composite graphs (one graph per record and its children, many graphs
//! per request), flat records and links as sObject Collections, grouped by parent.
//! Every request is planned within the documented limits (`plan`), sent with the
//! retry, re-auth and budget policy of `client`, after a `preflight` of the mapping
//! against the org's describe. Writes of `bulk_threshold` records or more go as
//! Bulk API 2.0 jobs (`bulk`), which an abort of the run aborts.
//!
//! This file holds the `Target` impl, which delegates: `write` sends rounds until
//! every record has an outcome, `round_plan` splits a round into requests, `sweep`
//! marks swept records disconnected, `codes_sync` merges codes into value sets and
//! `job_run` keeps the run's IntegrationJobRun.

pub mod auth;
pub mod bulk;
pub mod client;
pub mod codes;
mod codes_sync;
pub mod collections;
pub mod config;
pub mod graph;
pub mod job_run;
pub mod limits;
pub mod locks;
pub mod metadata;
pub mod plan;
pub mod preflight;
mod round_plan;
mod sweep;
pub mod wire;
mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use provsync_core::mapped::MappedRecord;
use provsync_core::model::{EntityKind, SourceId};
use provsync_core::target::{Outcome, RunRef, TablePlan, Target, TargetError, TargetLimits, Write};

use client::Client;
pub use config::SalesforceConfig;

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

    /// What the codes sync did per value set so far.
    pub fn code_reports(&self) -> BTreeMap<String, codes::SetReport> {
        self.code_reports.lock().expect("reports lock").clone()
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
