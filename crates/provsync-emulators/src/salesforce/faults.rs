//! Injected faults: latency per call, a share of 503 answers, a share of record writes
//! refused with `UNABLE_TO_LOCK_ROW`; changed at runtime through `POST /_emulator/faults`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The faults in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Milliseconds added to every call (a sleep, so concurrent calls overlap).
    #[serde(default)]
    pub latency_ms: u64,
    /// Share (0..=1) of calls answered 503.
    #[serde(default)]
    pub fail_503: f64,
    /// Share (0..=1) of record writes with a parent refused with `UNABLE_TO_LOCK_ROW`.
    #[serde(default)]
    pub lock_errors: f64,
    /// Milliseconds each 200-row chunk of a Bulk API 2.0 job takes to process (real
    /// jobs take seconds to minutes: long enough for a client to see `InProgress`
    /// and abort).
    #[serde(default)]
    pub bulk_chunk_ms: u64,
}

/// A change posted to `/_emulator/faults`: any of the fault flags, plus the token
/// lifetime and the API budget.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// New latency.
    pub latency_ms: Option<u64>,
    /// New 503 share.
    pub fail_503: Option<f64>,
    /// New lock error share.
    pub lock_errors: Option<f64>,
    /// New Bulk processing time per chunk.
    pub bulk_chunk_ms: Option<u64>,
    /// New token lifetime (for tokens issued from now on).
    pub token_ttl_secs: Option<u64>,
    /// New API budget (calls per window).
    pub api_budget: Option<u64>,
}

/// Why a fault change was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    /// A share outside 0..=1.
    #[error("{0} must be between 0 and 1, got {1}")]
    Share(&'static str, f64),
}

impl Faults {
    /// Checks the shares.
    pub fn validate(&self) -> Result<(), FaultError> {
        for (name, v) in [
            ("fail_503", self.fail_503),
            ("lock_errors", self.lock_errors),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(FaultError::Share(name, v));
            }
        }
        Ok(())
    }

    /// Applies a patch's fault fields.
    pub fn apply(&mut self, p: &FaultsPatch) -> Result<(), FaultError> {
        let mut next = self.clone();
        if let Some(v) = p.latency_ms {
            next.latency_ms = v;
        }
        if let Some(v) = p.fail_503 {
            next.fail_503 = v;
        }
        if let Some(v) = p.lock_errors {
            next.lock_errors = v;
        }
        if let Some(v) = p.bulk_chunk_ms {
            next.bulk_chunk_ms = v;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// A seeded, lock-free source of rolls in [0, 1) (splitmix64 over a counter), so a
/// fault share gives the same sequence for the same seed.
#[derive(Debug)]
pub struct Rng {
    seed: u64,
    n: AtomicU64,
}

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng {
            seed,
            n: AtomicU64::new(0),
        }
    }

    /// The next roll.
    pub fn roll(&self) -> f64 {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `share`.
    pub fn chance(&self, share: f64) -> bool {
        share > 0.0 && self.roll() < share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_follow_the_share() {
        let rng = Rng::new(7);
        let hits = (0..10_000).filter(|_| rng.chance(0.3)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
    }

    #[test]
    fn a_share_above_one_is_refused() {
        let mut f = Faults::default();
        let err = f
            .apply(&FaultsPatch {
                lock_errors: Some(1.5),
                ..FaultsPatch::default()
            })
            .unwrap_err();
        assert_eq!(err, FaultError::Share("lock_errors", 1.5));
        assert_eq!(f, Faults::default());
    }
}
