//! Schedules (DESIGN section 7): cron expressions that start a job template, fired
//! once per tick however many `serve` processes share the state store, with
//! "after" ordering (codes sync before the bulk sync) and manual triggers.
//!
//! Each process evaluates every schedule twice a second; for each tick that came
//! due it asks the store to fire it. The store claims the tick and creates the job
//! in one transaction (`schedule_runs` is keyed by schedule and tick), so exactly
//! one process creates the job and a crash between claim and job cannot lose or
//! duplicate it. A tick whose previous job is still active is recorded as skipped.
//!
//! A job that waits for another schedule's run stays `accepted` (held) until that
//! run ends; the held-job loop of any process then dispatches it, or cancels it
//! when the awaited run did not complete and the schedule says `after_failure = "skip"`.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use provsync_core::job::{JobId, JobSpec, JobState};
use provsync_core::store::{Dispatch, Fired, FiredBy, ScheduleFire, StoreError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::Runner;
use crate::config::ScheduleEntry;
use crate::job::{Engine, EngineError};

/// How often each process looks for due ticks and held jobs.
pub const POLL: Duration = Duration::from_millis(500);

/// An `accepted` job without a schedule is dispatched by the held-job loop only
/// after this long (its submitter normally dispatches it at once).
const STRANDED_AFTER_MS: i64 = 30_000;

/// What a schedule does when the run it waits for did not complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AfterFailure {
    /// Cancel this run (the default: a bulk sync without fresh codes would reject
    /// records whose codes the target does not know yet).
    #[default]
    Skip,
    /// Run anyway.
    Run,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Name.
    pub name: String,
    /// The pattern as written.
    pub pattern: String,
    cron: Cron,
    /// Time zone of the pattern.
    pub offset: FixedOffset,
    /// The job it starts.
    pub spec: JobSpec,
    /// Its dispatch key.
    pub target: String,
    /// The schedule it waits for.
    pub after: Option<String>,
    /// When the awaited run did not complete.
    pub after_failure: AfterFailure,
    /// Fire the latest missed tick at start.
    pub catch_up: bool,
    /// Fires on its cron (else only by manual trigger).
    pub enabled: bool,
}

impl Schedule {
    /// Validates an entry; an error names the field (relative to the entry).
    pub fn new(e: &ScheduleEntry, spec: JobSpec) -> Result<Self, (String, String)> {
        let cron = parse_cron(&e.cron).map_err(|m| ("cron".to_owned(), m))?;
        let offset = parse_offset(e.timezone.as_deref().unwrap_or("UTC"))
            .map_err(|m| ("timezone".to_owned(), m))?;
        let target = crate::job::dispatch::check(&spec).map_err(|errs| {
            let first = &errs[0];
            (format!("job.{}", first.field), first.message.clone())
        })?;
        Ok(Self {
            name: e.name.clone(),
            pattern: e.cron.clone(),
            cron,
            offset,
            spec,
            target,
            after: e.after.clone(),
            after_failure: e.after_failure,
            catch_up: e.catch_up,
            enabled: e.enabled,
        })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.offset);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.offset);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// `schedule:<name>`, the jobs' `requested_by`.
    pub fn requester(&self) -> String {
        format!("schedule:{}", self.name)
    }
}

/// Parses a cron pattern: 5 fields, or 6 with seconds first; `@daily` and friends.
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let p = pattern.trim();
    if p.is_empty() {
        return Err("must not be empty".into());
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(p)
        .map_err(|e| format!("{p:?} is not a cron expression: {e}"))?;
    // A pattern that never fires (30 February) would leave the schedule silent.
    let probe = Utc::now().with_timezone(&FixedOffset::east_opt(0).expect("UTC"));
    cron.find_next_occurrence(&probe, false)
        .map_err(|e| format!("{p:?} never fires: {e}"))?;
    Ok(cron)
}

/// `UTC`, `Z` or a fixed offset `+HH:MM` / `-HH:MM`.
pub fn parse_offset(tz: &str) -> Result<FixedOffset, String> {
    let t = tz.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero offset"));
    }
    FixedOffset::from_str(t).map_err(|_| {
        format!("expected UTC or a fixed offset such as +01:00, got {tz:?} (named zones are not supported)")
    })
}

/// Orders schedules so that each comes after the one it waits for; refuses cycles.
pub fn dependency_order(mut by_name: BTreeMap<String, Schedule>) -> Result<Vec<Schedule>, String> {
    let mut out: Vec<Schedule> = Vec::with_capacity(by_name.len());
    while !by_name.is_empty() {
        let ready: Vec<String> = by_name
            .values()
            .filter(|s| {
                s.after
                    .as_ref()
                    .is_none_or(|a| out.iter().any(|o| &o.name == a))
            })
            .map(|s| s.name.clone())
            .collect();
        if ready.is_empty() {
            let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
            return Err(format!(
                "schedules: `after` forms a cycle among {}",
                names.join(", ")
            ));
        }
        for name in ready {
            out.push(by_name.remove(&name).expect("listed"));
        }
    }
    Ok(out)
}

/// What a manual trigger did.
#[derive(Debug, Clone, PartialEq)]
pub enum Triggered {
    /// A job was created (and dispatched, unless it waits for another run).
    Started {
        /// The job.
        job: JobId,
        /// Its state now.
        state: JobState,
        /// The run it waits for.
        after_job: Option<JobId>,
    },
    /// The schedule's previous job is still active.
    AlreadyRunning(JobId),
}

/// Fires schedules, dispatches held jobs, and drives the started jobs through the runner.
#[derive(Clone)]
pub struct Scheduler {
    engine: Engine,
    runner: Runner,
    schedules: std::sync::Arc<Vec<Schedule>>,
}

impl Scheduler {
    /// A scheduler for these (dependency-ordered) schedules.
    pub fn new(engine: Engine, runner: Runner, schedules: Vec<Schedule>) -> Self {
        Self {
            engine,
            runner,
            schedules: std::sync::Arc::new(schedules),
        }
    }

    /// The configured schedules.
    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    /// The schedule of that name.
    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// `POST /v1/admin/sync/{schedule}`: starts the schedule's job now, unless its
    /// previous job is still active.
    pub async fn trigger(
        &self,
        schedule: &Schedule,
        requested_by: &str,
    ) -> Result<Triggered, EngineError> {
        let fired = self
            .fire(schedule, FiredBy::Manual, Utc::now(), requested_by)
            .await?;
        match fired {
            Fired::Created { job, after_job } => {
                let state = self.release(&job.id, schedule, after_job.as_ref()).await?;
                Ok(Triggered::Started {
                    job: job.id,
                    state,
                    after_job,
                })
            }
            Fired::Running(id) => Ok(Triggered::AlreadyRunning(id)),
            Fired::AlreadyFired => Err(EngineError::Store(StoreError::Backend(
                "a manual trigger collided with another at the same millisecond; retry".into(),
            ))),
        }
    }

    async fn fire(
        &self,
        s: &Schedule,
        fired_by: FiredBy,
        tick_at: DateTime<Utc>,
        requested_by: &str,
    ) -> Result<Fired, EngineError> {
        let id = JobId::new();
        let fire = ScheduleFire {
            schedule: &s.name,
            fired_by,
            tick_at,
            job_id: &id,
            target: &s.target,
            spec: &s.spec,
            requested_by,
            after: s.after.as_deref(),
        };
        let fired = self.engine.store.fire_schedule(&fire).await?;
        let outcome = match &fired {
            Fired::Created { .. } => "fired",
            Fired::AlreadyFired => "claimed_elsewhere",
            Fired::Running(_) => "skipped_running",
        };
        crate::metrics::schedule_tick(&s.name, fired_by.as_str(), outcome);
        match &fired {
            Fired::Created { job, after_job } => tracing::info!(
                schedule = %s.name, job = %job.id, fired_by = fired_by.as_str(),
                tick = %tick_at, after_job = ?after_job.as_ref().map(|j| j.as_str()),
                "schedule fired"
            ),
            Fired::Running(j) => tracing::info!(
                schedule = %s.name, job = %j, tick = %tick_at,
                "schedule's previous job still active: tick skipped"
            ),
            Fired::AlreadyFired => tracing::debug!(
                schedule = %s.name, tick = %tick_at, "tick fired by another process"
            ),
        }
        Ok(fired)
    }

    /// Dispatches a new schedule job now unless it waits for a run still active.
    async fn release(
        &self,
        id: &JobId,
        s: &Schedule,
        after_job: Option<&JobId>,
    ) -> Result<JobState, EngineError> {
        if let Some(after) = after_job {
            let awaited = self.engine.store.job(after).await?;
            if !awaited.state.is_terminal() {
                return Ok(JobState::Accepted);
            }
            if let Some(state) = self
                .cancel_if_awaited_failed(id, s, after, awaited.state)
                .await?
            {
                return Ok(state);
            }
        }
        self.dispatch(id).await
    }

    /// Cancels a held job whose awaited run did not complete, when its schedule says so.
    async fn cancel_if_awaited_failed(
        &self,
        id: &JobId,
        s: &Schedule,
        after: &JobId,
        after_state: JobState,
    ) -> Result<Option<JobState>, EngineError> {
        let completed = matches!(
            after_state,
            JobState::Completed | JobState::CompletedWithErrors
        );
        if completed || s.after_failure == AfterFailure::Run {
            return Ok(None);
        }
        let reason = format!(
            "skipped: the awaited run {after} of schedule {} ended {after_state}",
            s.after.as_deref().unwrap_or("?")
        );
        self.engine.store.record_failure(id, &reason).await?;
        match self
            .engine
            .store
            .transition(id, JobState::Accepted, JobState::Aborted, Some(&reason))
            .await
        {
            Ok(()) => {
                tracing::warn!(schedule = %s.name, job = %id, %reason, "scheduled job cancelled");
                Ok(Some(JobState::Aborted))
            }
            // Another process got there first.
            Err(StoreError::Conflict { actual, .. }) => Ok(Some(actual)),
            Err(e) => Err(e.into()),
        }
    }

    async fn dispatch(&self, id: &JobId) -> Result<JobState, EngineError> {
        let how = self
            .engine
            .store
            .dispatch(id, &self.engine.owner, self.engine.lease.as_millis() as i64)
            .await;
        match how {
            Ok(Dispatch::Started) => {
                self.runner.spawn(id.clone());
                Ok(JobState::Running)
            }
            Ok(Dispatch::Queued) => Ok(JobState::Queued),
            // Another process dispatched it between our read and our write.
            Err(StoreError::Conflict { actual, .. }) => Ok(actual),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the tick and held-job loops until the token is cancelled.
    pub fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        let stop = token.clone();
        let me = self.clone();
        tokio::spawn(async move {
            let started = Utc::now();
            // The last instant each schedule was evaluated up to.
            let mut seen: Vec<DateTime<Utc>> = me
                .schedules
                .iter()
                .map(|s| {
                    if s.catch_up {
                        // One second before the latest tick, so that tick counts as due.
                        s.latest_at_or_before(started)
                            .map_or(started, |t| t - chrono::Duration::seconds(1))
                    } else {
                        started
                    }
                })
                .collect();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                me.fire_due(&mut seen).await;
                if let Err(e) = me.release_held().await {
                    tracing::warn!(error = %e, "cannot dispatch held jobs");
                }
            }
        });
        token
    }

    /// Fires, in dependency order, the latest due tick of each schedule. Older
    /// ticks missed while the process was paused are not fired (one run per
    /// wake-up, like cron's), but they are logged.
    async fn fire_due(&self, seen: &mut [DateTime<Utc>]) {
        let now = Utc::now();
        for (s, upto) in self.schedules.iter().zip(seen.iter_mut()) {
            if !s.enabled {
                continue;
            }
            let Some(latest) = s.latest_at_or_before(now) else {
                continue;
            };
            if latest <= *upto {
                continue;
            }
            if let Some(first) = s.next_after(*upto) {
                if first < latest {
                    tracing::warn!(schedule = %s.name, from = %first, to = %latest,
                        "ticks missed while paused; firing only the latest");
                }
            }
            match self.fire(s, FiredBy::Cron, latest, &s.requester()).await {
                Ok(Fired::Created { job, after_job }) => {
                    if let Err(e) = self.release(&job.id, s, after_job.as_ref()).await {
                        tracing::warn!(schedule = %s.name, job = %job.id, error = %e,
                            "cannot dispatch scheduled job; the held-job loop retries");
                    }
                    *upto = latest;
                }
                Ok(_) => *upto = latest,
                // Retried on the next poll: the tick stays due.
                Err(e) => tracing::warn!(schedule = %s.name, error = %e, "cannot fire schedule"),
            }
        }
    }

    /// Dispatches held jobs whose awaited run has ended (or cancels them), and
    /// accepted jobs whose submitter died before dispatching them.
    async fn release_held(&self) -> Result<(), EngineError> {
        for held in self.engine.store.held_jobs(STRANDED_AFTER_MS).await? {
            let schedule = held.schedule.as_deref().and_then(|n| self.get(n));
            if let Some((after, state)) = &held.after {
                if !state.is_terminal() {
                    continue;
                }
                let cancelled = match schedule {
                    Some(s) => self
                        .cancel_if_awaited_failed(&held.id, s, after, *state)
                        .await?
                        .is_some(),
                    None => false,
                };
                if cancelled {
                    continue;
                }
            }
            let state = self.dispatch(&held.id).await?;
            tracing::info!(job = %held.id, schedule = ?held.schedule, %state, "held job dispatched");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, cron: &str, after: Option<&str>) -> ScheduleEntry {
        ScheduleEntry {
            name: name.into(),
            cron: cron.into(),
            timezone: None,
            job_file: None,
            job: None,
            after: after.map(Into::into),
            after_failure: AfterFailure::Skip,
            catch_up: false,
            enabled: true,
        }
    }

    fn spec() -> JobSpec {
        toml::from_str(
            "[source]\ntype = 'file'\npath = 'w.ndjson'\n[target]\ntype = 'sqlite'\nurl = 'sqlite://t.db'\n",
        )
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_field_patterns_give_their_ticks() {
        let s = Schedule::new(&entry("a", "*/2 * * * * *", None), spec()).unwrap();
        assert_eq!(
            s.next_after(at("2026-12-02T10:00:01Z")),
            Some(at("2026-12-02T10:00:02Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2026-12-02T10:00:03.500Z")),
            Some(at("2026-12-02T10:00:02Z"))
        );
        let nightly = Schedule::new(&entry("n", "30 1 * * *", None), spec()).unwrap();
        assert_eq!(
            nightly.next_after(at("2026-12-02T10:00:00Z")),
            Some(at("2026-12-03T01:30:00Z"))
        );
    }

    #[test]
    fn a_fixed_offset_moves_the_ticks() {
        let mut e = entry("n", "0 2 * * *", None);
        e.timezone = Some("+01:00".into());
        let s = Schedule::new(&e, spec()).unwrap();
        // 00:00Z is 01:00 at +01:00: the next 02:00 there is 01:00Z the same day.
        assert_eq!(
            s.next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-02T01:00:00Z"))
        );
        e.timezone = Some("Europe/London".into());
        assert_eq!(Schedule::new(&e, spec()).unwrap_err().0, "timezone");
    }

    #[test]
    fn bad_patterns_name_the_cron_field() {
        for bad in ["", "61 * * * *", "* * *", "0 0 30 2 *"] {
            let err = Schedule::new(&entry("a", bad, None), spec()).unwrap_err();
            assert_eq!(err.0, "cron", "{bad}: {}", err.1);
        }
    }

    #[test]
    fn a_bad_job_names_its_field() {
        let mut bad = spec();
        bad.options.page_size = 0;
        let err = Schedule::new(&entry("a", "@daily", None), bad).unwrap_err();
        assert_eq!(err.0, "job.options.page_size");
    }

    #[test]
    fn dependency_order_puts_awaited_schedules_first_and_refuses_cycles() {
        let mk = |n: &str, after: Option<&str>| {
            (
                n.to_owned(),
                Schedule::new(&entry(n, "@daily", after), spec()).unwrap(),
            )
        };
        let ordered = dependency_order(
            [
                mk("a-bulk", Some("z-codes")),
                mk("z-codes", None),
                mk("m", Some("a-bulk")),
            ]
            .into_iter()
            .collect(),
        )
        .unwrap();
        let names: Vec<_> = ordered.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["z-codes", "a-bulk", "m"]);
        let err = dependency_order(
            [mk("a", Some("b")), mk("b", Some("a"))]
                .into_iter()
                .collect(),
        )
        .unwrap_err();
        assert!(err.contains("cycle"), "{err}");
    }
}
