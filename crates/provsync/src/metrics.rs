//! Prometheus metrics (DESIGN section 7): one process-wide recorder from the
//! `metrics` crate, rendered by the API's `GET /metrics` route (no listener of its
//! own). Names follow `provsync_<thing>_<unit>`.
//!
//! - `provsync_records_total{stage,outcome,kind}`: records of finished runs, per
//!   stage and outcome (from the run's per-kind counts).
//! - `provsync_record_errors_total{stage}`: rejected, failed records and failed links.
//! - `provsync_jobs_finished_total{state}`: runs this process drove to their end.
//! - `provsync_job_duration_seconds`: histogram of run durations (start to finish).
//! - `provsync_queue_depth{target}` and `provsync_jobs_running`: gauges, refreshed
//!   on scrape.
//! - `provsync_pages_total`, `provsync_stage_busy_seconds_total{stage}`: the
//!   engine's live progress counters.
//! - `provsync_http_requests_total{method,route,status}`,
//!   `provsync_http_request_duration_seconds{method,route}`: from the request log.
//! - `provsync_target_calls_total{target,op,outcome}`,
//!   `provsync_target_call_seconds{target,op}`: every call to a target connector.
//! - `provsync_schedule_ticks_total{schedule,fired_by,outcome}`: schedule firings.
//! - `provsync_callbacks_total{event,outcome}`: callback delivery attempts.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use provsync_core::job::{JobState, KindCounts};

use crate::job::Progress;

/// Buckets of the HTTP latency histogram (seconds).
const HTTP_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Buckets of the job duration histogram (seconds).
const JOB_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Targets with a queue-depth series, so emptied queues go back to 0.
static QUEUE_TARGETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the process-wide recorder (once) and returns its handle. When another
/// recorder is already installed, the handle renders nothing.
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("provsync_http_request_duration_seconds".into()),
                &HTTP_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("provsync_job_duration_seconds".into()),
                    &JOB_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("provsync_target_call_seconds".into()),
                    &HTTP_BUCKETS,
                )
            })
            .expect("histogram buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "a metrics recorder is already installed");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "provsync_records_total",
        "Records of finished runs, by stage, outcome and entity kind"
    );
    describe_counter!(
        "provsync_record_errors_total",
        "Rejected and failed records and failed links of finished runs, by stage"
    );
    describe_counter!(
        "provsync_jobs_finished_total",
        "Jobs this process drove to a final state, by state"
    );
    describe_histogram!(
        "provsync_job_duration_seconds",
        metrics::Unit::Seconds,
        "Job run time from start to finish"
    );
    describe_gauge!("provsync_queue_depth", "Queued jobs, by target");
    describe_gauge!("provsync_jobs_running", "Jobs this process is driving now");
    describe_counter!("provsync_pages_total", "Source pages fetched");
    describe_counter!(
        "provsync_stage_busy_seconds_total",
        metrics::Unit::Seconds,
        "Time spent in each stage"
    );
    describe_counter!(
        "provsync_http_requests_total",
        "HTTP requests, by method, route and status"
    );
    describe_histogram!(
        "provsync_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency, by method and route"
    );
    describe_counter!(
        "provsync_target_calls_total",
        "Calls to target connectors, by connector type, operation and outcome"
    );
    describe_histogram!(
        "provsync_target_call_seconds",
        metrics::Unit::Seconds,
        "Latency of calls to target connectors, by connector type and operation"
    );
    describe_counter!(
        "provsync_schedule_ticks_total",
        "Schedule firings seen by this process, by schedule, trigger and outcome"
    );
    describe_counter!(
        "provsync_callbacks_total",
        "Callback delivery attempts, by event and outcome"
    );
}

/// Records one call to a target connector.
pub fn target_call(target: &str, op: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!("provsync_target_calls_total", "target" => target.to_owned(), "op" => op, "outcome" => outcome)
        .increment(1);
    histogram!("provsync_target_call_seconds", "target" => target.to_owned(), "op" => op)
        .record(elapsed.as_secs_f64());
}

/// Records one schedule firing (`fired`, `skipped_running`, `claimed_elsewhere`).
pub fn schedule_tick(schedule: &str, fired_by: &'static str, outcome: &'static str) {
    counter!("provsync_schedule_ticks_total", "schedule" => schedule.to_owned(), "fired_by" => fired_by, "outcome" => outcome)
        .increment(1);
}

/// Records one callback delivery attempt (`delivered`, `retry`, `gave_up`).
pub fn callback_attempt(event: &str, outcome: &'static str) {
    counter!("provsync_callbacks_total", "event" => event.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Records the end of a job: its final state, duration and per-kind counts.
pub fn job_finished(state: JobState, duration: Option<Duration>, per_kind: &KindCounts) {
    counter!("provsync_jobs_finished_total", "state" => state.to_string()).increment(1);
    if let Some(d) = duration {
        histogram!("provsync_job_duration_seconds").record(d.as_secs_f64());
    }
    let unreadable = std::iter::once(("unreadable", &per_kind.unreadable));
    for (kind, c) in per_kind
        .kinds
        .iter()
        .map(|(k, c)| (k.as_str(), c))
        .chain(unreadable)
    {
        for (stage, outcome, n) in [
            ("extract", "extracted", c.extracted),
            ("transform", "rejected", c.rejected),
            ("load", "created", c.created),
            ("load", "updated", c.updated),
            ("load", "unchanged", c.unchanged),
            // Failed links of the relations stage are counted there, not here.
            ("load", "failed", c.failed - c.relations_failed),
            ("load", "staged", c.relations_staged),
            ("relations", "loaded", c.relations_loaded),
            ("relations", "failed", c.relations_failed),
            ("finish", "disconnected", c.disconnected),
        ] {
            counter!("provsync_records_total", "stage" => stage, "outcome" => outcome, "kind" => kind)
                .increment(n);
        }
    }
    let t = per_kind.total();
    for (stage, n) in [
        ("transform", t.rejected),
        ("load", t.failed - t.relations_failed),
        ("relations", t.relations_failed),
    ] {
        counter!("provsync_record_errors_total", "stage" => stage).increment(n);
    }
}

/// Records one HTTP request.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    counter!(
        "provsync_http_requests_total",
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!(
        "provsync_http_request_duration_seconds",
        "method" => method.to_owned(),
        "route" => route.to_owned()
    )
    .record(elapsed.as_secs_f64());
}

/// Sets the queue-depth gauges from the queued jobs' targets; targets whose queue
/// emptied go back to 0.
pub fn set_queue_depth<'a>(targets: impl IntoIterator<Item = &'a str>) {
    let mut depth: BTreeMap<String, u64> = BTreeMap::new();
    for t in targets {
        *depth.entry(t.to_owned()).or_default() += 1;
    }
    let mut known = QUEUE_TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    for t in known.iter() {
        if !depth.contains_key(t) {
            gauge!("provsync_queue_depth", "target" => t.clone()).set(0.0);
        }
    }
    for (t, n) in &depth {
        gauge!("provsync_queue_depth", "target" => t.clone()).set(*n as f64);
        if !known.contains(t) {
            known.push(t.clone());
        }
    }
}

/// Copies the engine's live progress counters and the running-job count.
pub fn set_progress(p: &Progress, running: usize) {
    gauge!("provsync_jobs_running").set(running as f64);
    counter!("provsync_pages_total").absolute(Progress::get(&p.pages));
    let secs = |c: &AtomicU64| Progress::get(c) / 1_000_000_000;
    for (stage, c) in [
        ("extract", &p.extract_ns),
        ("transform", &p.transform_ns),
        ("load", &p.load_ns),
        ("relations", &p.relations_ns),
        ("finish", &p.finish_ns),
    ] {
        counter!("provsync_stage_busy_seconds_total", "stage" => stage).absolute(secs(c));
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    let h = init();
    h.run_upkeep();
    h.render()
}
