//! The one retry policy of the connectors and the callback delivery: a bounded
//! number of attempts, exponential backoff from a base delay, capped, with a
//! jittered share (so clients that failed together do not retry together), and
//! never shorter than a delay the server asked for (`Retry-After`).
//!
//! Callers only classify their failures: they ask [`Retries::next`] after a failure
//! a retry can help, and sleep the delay it gives (a caller's sleep ends when its
//! future is dropped, so an aborted run waits for nothing); a failure a retry cannot
//! help is returned at once.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Attempts in all, the first one included (at least one is always made).
    pub attempts: u32,
    /// The delay before the first retry, before jitter; doubled per retry.
    pub base: Duration,
    /// The longest delay, before jitter.
    pub max: Duration,
    /// The share of each delay that is random, `0.0..=1.0`: the delay is uniform in
    /// `[d × (1 − jitter), d]`. 0 is none, 0.5 "equal jitter", 1 "full jitter".
    pub jitter: f64,
}

impl Backoff {
    /// The delay before retry `retry` (from 1), never shorter than `at_least`.
    pub fn delay(&self, retry: u32, at_least: Option<Duration>) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max);
        let jittered = full.mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * unit());
        jittered.max(at_least.unwrap_or_default())
    }

    /// The delay before another attempt once `failed` attempts have failed, or
    /// `None` when the attempts are spent.
    pub fn after(&self, failed: u32, at_least: Option<Duration>) -> Option<Duration> {
        (failed < self.attempts).then(|| self.delay(failed, at_least))
    }

    /// The retries of one call.
    pub fn start(&self) -> Retries {
        Retries {
            policy: *self,
            failed: 0,
        }
    }
}

/// The failures of one call so far, under a policy.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    failed: u32,
}

impl Retries {
    /// Counts a failure a retry can help: the delay before the next attempt (never
    /// shorter than `at_least`, a server-given delay), or `None` when the attempts
    /// are spent.
    pub fn next(&mut self, at_least: Option<Duration>) -> Option<Duration> {
        self.failed += 1;
        self.policy.after(self.failed, at_least)
    }

    /// Attempts that failed so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }
}

/// Uniform in `[0, 1)`, from the standard library's randomly keyed hasher: jitter
/// needs spread between clients and calls, not quality.
fn unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> Backoff {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            jitter,
        }
    }

    #[test]
    fn delays_double_from_the_base_up_to_the_cap_within_the_jitter() {
        for jitter in [0.0, 0.25, 0.5, 1.0] {
            let p = policy(jitter);
            for retry in 1..=40 {
                let full = Duration::from_millis((100u64 << (retry - 1).min(20)).min(1000));
                let d = p.delay(retry, None);
                assert!(
                    d <= full && d >= full.mul_f64(1.0 - jitter),
                    "retry {retry}, jitter {jitter}: {d:?} vs {full:?}"
                );
            }
        }
        assert_eq!(policy(0.0).delay(3, None), Duration::from_millis(400));
        assert_eq!(policy(0.0).delay(u32::MAX, None), Duration::from_secs(1));
        let uncapped = Backoff {
            max: Duration::MAX,
            ..policy(0.0)
        };
        assert_eq!(uncapped.delay(5, None), Duration::from_millis(1600));
    }

    #[test]
    fn jitter_spreads_delays() {
        let p = policy(0.5);
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3, None)).collect();
        assert!(spread.len() > 1, "jitter spreads delays");
        let full: Vec<_> = (0..200).map(|_| policy(1.0).delay(1, None)).collect();
        assert!(
            full.iter().any(|d| *d < Duration::from_millis(50)),
            "{full:?}"
        );
    }

    #[test]
    fn a_server_given_delay_is_a_floor() {
        let p = policy(1.0);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        // A shorter one does not shorten the backoff.
        let d = policy(0.0).delay(2, Some(Duration::from_millis(1)));
        assert_eq!(d, Duration::from_millis(200));
    }

    #[test]
    fn attempts_bound_the_retries() {
        let mut r = policy(0.0).start();
        assert_eq!(r.next(None), Some(Duration::from_millis(100)));
        assert_eq!(r.next(None), Some(Duration::from_millis(200)));
        assert_eq!(
            r.next(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(r.next(None), None, "the fourth failure is the last attempt");
        assert_eq!(r.failed(), 4);
        // One attempt (or none asked for) means no retry at all.
        for attempts in [0, 1] {
            let mut once = Backoff {
                attempts,
                ..policy(0.0)
            }
            .start();
            assert_eq!(once.next(None), None);
        }
        assert_eq!(policy(0.0).after(3, None), Some(Duration::from_millis(400)));
        assert_eq!(policy(0.0).after(4, None), None);
    }
}
