//! Slows down token guessing: every refused token costs its peer address one unit
//! of a budget of `[http] auth_failures_per_minute` (default 10), which refills at
//! that rate (one unit every 6 s by default; GCRA, via `governor`). An address
//! whose budget is spent gets 429 `too_many_requests` with `Retry-After` for every
//! request that carries credentials, and its token is not even looked at, so a
//! correct guess made meanwhile does not get in either. Requests without
//! credentials and the other addresses are unaffected.
//!
//! The key is the TCP peer's address (an IPv6 address by its /64, which one host
//! usually holds whole); `X-Forwarded-For` is not trusted, as anyone can send it.
//! Behind a reverse proxy every client shares the proxy's budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::middleware::StateInformationMiddleware;
use governor::{clock::MonotonicClock, state::keyed::HashMapStateStore, Quota, RateLimiter};

/// Refused tokens an address may present per minute by default.
pub const DEFAULT_FAILURES_PER_MINUTE: u32 = 10;

/// Entries kept before the first pruning; after each one, twice what remained.
const PRUNE_AT_LEAST: usize = 1024;

// The std clock by name (not `DefaultClock`, which another crate's `quanta`
// feature would swap), so its instants are `std::time::Instant`.
type Limiter =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr>, MonotonicClock, StateInformationMiddleware>;

/// The failed-authentication budgets of peer addresses.
pub struct AuthThrottle {
    failures: Limiter,
    /// Addresses whose budget is spent, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// How long one unit of the budget takes to refill.
    refill: Duration,
    /// Entries at which the next pruning happens.
    prune_at: Mutex<usize>,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("refill", &self.refill)
            .finish_non_exhaustive()
    }
}

impl AuthThrottle {
    /// A budget of `per_minute` refused tokens, refilling at that rate.
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self::new(Quota::per_minute(per_minute))
    }

    fn new(quota: Quota) -> Self {
        Self {
            refill: quota.replenish_interval(),
            failures: Limiter::new(quota, HashMapStateStore::default(), MonotonicClock),
            blocked: Mutex::new(HashMap::new()),
            prune_at: Mutex::new(PRUNE_AT_LEAST),
        }
    }

    /// How long `peer` must still wait, if its budget is spent.
    pub fn blocked(&self, peer: IpAddr) -> Option<Duration> {
        let until = *self.lock_blocked().get(&key(peer))?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a refused token from `peer`; returns how long it must now wait
    /// when that spent its budget.
    pub fn failed(&self, peer: IpAddr) -> Option<Duration> {
        let key = key(peer);
        let now = Instant::now();
        let until = match self.failures.check_key(&key) {
            // The last unit: the next one refills within `refill`.
            Ok(left) if left.remaining_burst_capacity() == 0 => Some(now + self.refill),
            Ok(_) => None,
            // Only when two requests raced past `blocked`.
            Err(not_until) => Some(not_until.earliest_possible()),
        };
        if let Some(until) = until {
            self.lock_blocked().insert(key, until);
        }
        self.prune(now);
        until.map(|u| u.saturating_duration_since(now))
    }

    /// Forgets refilled budgets and ended blocks once the entries have doubled
    /// since the last pruning, so memory stays proportional to the addresses
    /// failing within one refill of the whole budget.
    fn prune(&self, now: Instant) {
        let mut prune_at = self.prune_at.lock().unwrap_or_else(|p| p.into_inner());
        if self.failures.len() < *prune_at {
            return;
        }
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        let mut blocked = self.lock_blocked();
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
        *prune_at = (self.failures.len() * 2).max(PRUNE_AT_LEAST);
    }

    fn lock_blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // A panic elsewhere while holding it leaves a map that is still sound.
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held (both maps), for tests of the pruning.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.failures.len() + self.lock_blocked().len()
    }
}

/// The budget an address draws on: IPv4 as itself, IPv6 by its /64 (an
/// IPv4-mapped IPv6 address as the IPv4 address).
fn key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// `Retry-After` in whole seconds, rounded up (never 0).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_budget_is_per_address_and_its_last_unit_blocks() {
        let t = AuthThrottle::per_minute(NonZeroU32::new(3).unwrap());
        let a = ip("192.0.2.1");
        assert_eq!(t.failed(a), None);
        assert_eq!(t.failed(a), None);
        assert!(t.blocked(a).is_none());
        let wait = t.failed(a).expect("the third failure spends the budget");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!(t.blocked(a).is_some());
        assert!(t.blocked(ip("192.0.2.2")).is_none());
        // One host's IPv6 addresses share a budget; its IPv4-mapped form is the IPv4 one.
        for s in ["2001:db8::1", "2001:db8::2", "2001:db8::3:4"] {
            t.failed(ip(s));
        }
        assert!(t.blocked(ip("2001:db8::ffff")).is_some());
        assert!(t.blocked(ip("2001:db8:0:1::1")).is_none());
        assert!(t.blocked(ip("::ffff:192.0.2.1")).is_some());
    }

    #[test]
    fn refilled_budgets_are_pruned() {
        // A unit refills every microsecond: every entry is stale by the next call.
        let quota = Quota::with_period(Duration::from_micros(1)).unwrap();
        let t = AuthThrottle::new(quota);
        for i in 0..(PRUNE_AT_LEAST as u32 * 4) {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)));
            std::thread::sleep(Duration::from_micros(2));
        }
        assert!(t.entries() <= PRUNE_AT_LEAST * 2, "{}", t.entries());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(6)), 6);
        assert_eq!(retry_after_secs(Duration::from_millis(6001)), 7);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
