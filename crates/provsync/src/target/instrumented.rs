//! A [`Target`] wrapper that counts and times every call made to the target
//! (`provsync_target_calls_total`, `provsync_target_call_seconds`), so every
//! connector reports its API calls and latency the same way.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use provsync_core::model::{EntityKind, Scope, SourceId};
use provsync_core::target::{Outcome, RunRef, TablePlan, Target, TargetError, TargetLimits, Write};

/// Wraps a target; `kind` (the connector type) labels its metrics.
pub struct Instrumented {
    inner: Arc<dyn Target>,
    kind: String,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Target>, kind: &str) -> Arc<dyn Target> {
        Arc::new(Self {
            inner,
            kind: kind.to_owned(),
        })
    }

    fn record<T>(&self, op: &'static str, started: Instant, r: &Result<T, TargetError>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(TargetError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        crate::metrics::target_call(&self.kind, op, outcome, started.elapsed());
    }
}

#[async_trait]
impl Target for Instrumented {
    fn limits(&self) -> TargetLimits {
        self.inner.limits()
    }

    async fn prepare(&self, plan: &[TablePlan]) -> Result<(), TargetError> {
        let t = Instant::now();
        let r = self.inner.prepare(plan).await;
        self.record("prepare", t, &r);
        r
    }

    async fn upsert(&self, run: &RunRef, writes: &[Write]) -> Result<Vec<Outcome>, TargetError> {
        let t = Instant::now();
        let r = self.inner.upsert(run, writes).await;
        self.record("upsert", t, &r);
        r
    }

    async fn upsert_links(
        &self,
        run: &RunRef,
        writes: &[Write],
    ) -> Result<Vec<Outcome>, TargetError> {
        let t = Instant::now();
        let r = self.inner.upsert_links(run, writes).await;
        self.record("upsert_links", t, &r);
        r
    }

    async fn disconnect(
        &self,
        run: &RunRef,
        kind: EntityKind,
        ids: &[SourceId],
    ) -> Result<u64, TargetError> {
        let t = Instant::now();
        let r = self.inner.disconnect(run, kind, ids).await;
        self.record("disconnect", t, &r);
        r
    }

    async fn disconnect_in_scope(
        &self,
        run: &RunRef,
        kind: EntityKind,
        scope: &[Scope],
        ids: &[SourceId],
    ) -> Result<Vec<SourceId>, TargetError> {
        let t = Instant::now();
        let r = self.inner.disconnect_in_scope(run, kind, scope, ids).await;
        self.record("disconnect", t, &r);
        r
    }

    async fn start_run(
        &self,
        run: &RunRef,
        info: &serde_json::Value,
        kept: Option<&str>,
    ) -> Result<Option<String>, TargetError> {
        let t = Instant::now();
        let r = self.inner.start_run(run, info, kept).await;
        self.record("start_run", t, &r);
        r
    }

    async fn write_audit(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        let t = Instant::now();
        let r = self.inner.write_audit(run, summary).await;
        self.record("write_audit", t, &r);
        r
    }

    async fn end_run(
        &self,
        run: &RunRef,
        summary: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, TargetError> {
        let t = Instant::now();
        let r = self.inner.end_run(run, summary).await;
        self.record("end_run", t, &r);
        r
    }

    async fn abort(&self, run: &RunRef) -> Result<Vec<String>, TargetError> {
        let t = Instant::now();
        let r = self.inner.abort(run).await;
        self.record("abort", t, &r);
        r
    }

    fn parked(&self) -> Option<String> {
        self.inner.parked()
    }
}
