//! The job state machine: every state, every legal transition, nothing implicit.
//!
//! ```text
//! accepted -> queued -> running -> finishing -> completed | completed_with_errors | failed
//!                          |
//!                          +-> aborting -> aborted
//! accepted | queued -> aborted (cancelled before it ran), failed (could not start)
//! ```
//! A failure while running does not jump to `failed`: extraction stops, loaded pages
//! and their relations are processed, then `finishing` ends as `failed` (seed 3.1/3.2).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Validated and persisted, not yet dispatched.
    Accepted,
    /// Waiting behind the target's active job.
    Queued,
    /// Extracting, transforming, loading, processing relations.
    Running,
    /// Reconciling counts, sweeping, writing the summary.
    Finishing,
    /// Abort requested: no new pages; in-flight work and relations complete.
    Aborting,
    /// Finished with every record accounted for and none rejected or failed.
    Completed,
    /// Finished, under the failure threshold, with some records rejected or failed.
    CompletedWithErrors,
    /// Ended by an error of the source or target, or over the failure threshold.
    Failed,
    /// Ended by an abort request.
    Aborted,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 9] = [
        JobState::Accepted,
        JobState::Queued,
        JobState::Running,
        JobState::Finishing,
        JobState::Aborting,
        JobState::Completed,
        JobState::CompletedWithErrors,
        JobState::Failed,
        JobState::Aborted,
    ];

    /// Whether the job has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::CompletedWithErrors
                | JobState::Failed
                | JobState::Aborted
        )
    }

    /// Whether the job holds its target (only one active job per target).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Running | JobState::Finishing | JobState::Aborting
        )
    }

    /// The snake_case name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "accepted",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finishing => "finishing",
            JobState::Aborting => "aborting",
            JobState::Completed => "completed",
            JobState::CompletedWithErrors => "completed_with_errors",
            JobState::Failed => "failed",
            JobState::Aborted => "aborted",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The transitions the machine may take, as a table independent of `apply`.
    pub fn may_become(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Accepted, Queued)
                | (Accepted, Running)
                | (Accepted, Aborted)
                | (Accepted, Failed)
                | (Queued, Running)
                | (Queued, Aborted)
                | (Queued, Failed)
                | (Running, Finishing)
                | (Running, Aborting)
                | (Aborting, Aborted)
                | (Finishing, Completed)
                | (Finishing, CompletedWithErrors)
                | (Finishing, Failed)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The target is busy: wait in the dispatch queue.
    Enqueue,
    /// The dispatcher gave the job its target.
    Start,
    /// Someone asked to abort (a queued or accepted job is simply cancelled).
    Abort,
    /// The source or target failed, or the failure threshold was crossed.
    Fail(String),
    /// Extraction, loading and relations are done (or stopped): finish the job.
    WorkDone,
    /// The finish stage is done; `with_errors` if records were rejected or failed.
    Finished {
        /// Records were rejected or failed (under the threshold).
        with_errors: bool,
    },
}

/// An event that the job's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal job transition: {event} while {state}")]
pub struct IllegalTransition {
    /// State the job was in.
    pub state: JobState,
    /// Name of the refused event.
    pub event: &'static str,
}

impl JobEvent {
    /// The event's snake_case name (for transitions' reasons and errors).
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Enqueue => "enqueue",
            JobEvent::Start => "start",
            JobEvent::Abort => "abort",
            JobEvent::Fail(_) => "fail",
            JobEvent::WorkDone => "work_done",
            JobEvent::Finished { .. } => "finished",
        }
    }
}

/// A job's state plus what decides its outcome: the first failure recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMachine {
    /// Current state.
    pub state: JobState,
    /// The first failure recorded while the job was active; it makes the outcome `failed`.
    pub failure: Option<String>,
}

impl Default for JobMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl JobMachine {
    /// A freshly accepted job.
    pub fn new() -> Self {
        Self {
            state: JobState::Accepted,
            failure: None,
        }
    }

    /// Rebuilds the machine from persisted fields.
    pub fn restore(state: JobState, failure: Option<String>) -> Self {
        Self { state, failure }
    }

    /// Applies an event; returns the new state, or an error leaving the machine unchanged.
    pub fn apply(&mut self, event: JobEvent) -> Result<JobState, IllegalTransition> {
        use JobState::*;
        let illegal = IllegalTransition {
            state: self.state,
            event: event.name(),
        };
        let next = match (self.state, event) {
            (Accepted, JobEvent::Enqueue) => Queued,
            (Accepted | Queued, JobEvent::Start) => Running,
            (Accepted | Queued, JobEvent::Abort) => Aborted,
            (Accepted | Queued, JobEvent::Fail(reason)) => {
                self.failure.get_or_insert(reason);
                Failed
            }
            (Running, JobEvent::Abort) => Aborting,
            // Already aborting: a second request changes nothing, and says so.
            (Running | Aborting | Finishing, JobEvent::Fail(reason)) => {
                self.failure.get_or_insert(reason);
                self.state
            }
            (Running, JobEvent::WorkDone) => Finishing,
            (Aborting, JobEvent::WorkDone | JobEvent::Finished { .. }) => Aborted,
            (Finishing, JobEvent::Finished { with_errors }) => {
                if self.failure.is_some() {
                    Failed
                } else if with_errors {
                    CompletedWithErrors
                } else {
                    Completed
                }
            }
            _ => return Err(illegal),
        };
        debug_assert!(next == self.state || self.state.may_become(next));
        self.state = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = JobEvent> {
        prop_oneof![
            Just(JobEvent::Enqueue),
            Just(JobEvent::Start),
            Just(JobEvent::Abort),
            "[a-z]{1,8}".prop_map(JobEvent::Fail),
            Just(JobEvent::WorkDone),
            any::<bool>().prop_map(|with_errors| JobEvent::Finished { with_errors }),
        ]
    }

    #[test]
    fn happy_path_reaches_completed() {
        let mut m = JobMachine::new();
        for e in [JobEvent::Start, JobEvent::WorkDone] {
            m.apply(e).unwrap();
        }
        assert_eq!(
            m.apply(JobEvent::Finished { with_errors: false }),
            Ok(JobState::Completed)
        );
    }

    #[test]
    fn failure_while_running_still_finishes_then_fails() {
        let mut m = JobMachine::new();
        m.apply(JobEvent::Start).unwrap();
        assert_eq!(
            m.apply(JobEvent::Fail("auth refused".into())),
            Ok(JobState::Running)
        );
        assert_eq!(m.apply(JobEvent::WorkDone), Ok(JobState::Finishing));
        assert_eq!(
            m.apply(JobEvent::Finished { with_errors: false }),
            Ok(JobState::Failed)
        );
        assert_eq!(m.failure.as_deref(), Some("auth refused"));
    }

    #[test]
    fn abort_of_a_queued_job_cancels_it() {
        let mut m = JobMachine::new();
        m.apply(JobEvent::Enqueue).unwrap();
        assert_eq!(m.apply(JobEvent::Abort), Ok(JobState::Aborted));
    }

    #[test]
    fn abort_while_finishing_is_refused() {
        let mut m = JobMachine::restore(JobState::Finishing, None);
        let err = m.apply(JobEvent::Abort).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal job transition: abort while finishing"
        );
        assert_eq!(m.state, JobState::Finishing);
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
    }

    proptest! {
        #[test]
        fn random_events_only_take_legal_transitions(events in proptest::collection::vec(event(), 0..40)) {
            let mut m = JobMachine::new();
            let mut abort_seen = false;
            for e in events {
                let before = m.clone();
                let is_abort = e == JobEvent::Abort;
                match m.apply(e) {
                    Ok(next) => {
                        prop_assert!(next == before.state || before.state.may_become(next),
                            "{:?} -> {:?} is not in the table", before.state, next);
                        abort_seen |= is_abort;
                    }
                    Err(_) => prop_assert_eq!(&m, &before, "a refused event changed the machine"),
                }
                if before.state.is_terminal() {
                    prop_assert_eq!(m.state, before.state, "terminal state left");
                }
                if m.state == JobState::Aborted {
                    prop_assert!(abort_seen, "aborted without an abort request");
                }
                if matches!(m.state, JobState::Completed | JobState::CompletedWithErrors) {
                    prop_assert!(m.failure.is_none(), "success reported with a failure recorded");
                }
            }
        }

        #[test]
        fn terminal_states_refuse_every_event(e in event(), s in prop::sample::select(JobState::ALL.to_vec())) {
            prop_assume!(s.is_terminal());
            let mut m = JobMachine::restore(s, None);
            prop_assert!(m.apply(e).is_err());
            prop_assert_eq!(m.state, s);
        }
    }
}
