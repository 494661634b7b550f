//! A tiny hand-written SplitMix64 generator and key derivation.
//!
//! Hand-written on purpose: a world generated from a seed must be byte-for-byte the
//! same forever, whatever crate versions the workspace resolves, so the generator may
//! not depend on `rand` (whose algorithms and sampling change between releases). The
//! constants are those of Steele, Lea and Flood's SplitMix64 and must never change.
//!
//! Every decision is drawn from a generator keyed by (seed, stream, index, night), so
//! any record of any night can be computed alone, without the records before it.

/// The SplitMix64 increment (the golden ratio as a 64-bit fraction).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a strong 64-bit mixer.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step from `z`: adds the increment, then mixes.
fn mix(z: u64) -> u64 {
    finalize(z.wrapping_add(GOLDEN))
}

/// The independent decision streams. Values are part of the output format: never
/// renumber them, only add new ones.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    IndividualBase = 1,
    IndividualRemove = 2,
    IndividualChange = 3,
    // 4 is free: workplaces take their base content from the facility rows.
    WorkplaceRemove = 5,
    WorkplaceChange = 6,
    WorkplaceParent = 7,
    ActivityBase = 8,
    ActivityMove = 9,
    ActivityChange = 10,
}

/// The key of the generator for one (seed, stream, index, night).
pub(crate) fn key(seed: u64, stream: Stream, index: u64, night: u32) -> u64 {
    let h = mix(seed);
    let h = mix(h ^ stream as u64);
    let h = mix(h ^ index);
    mix(h ^ u64::from(night))
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The generator for one (seed, stream, index, night).
    pub(crate) fn for_key(seed: u64, stream: Stream, index: u64, night: u32) -> Self {
        Self {
            state: key(seed, stream, index, night),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        finalize(self.state)
    }

    /// A uniform value in `0..n` (0 when `n` is 0), by multiply-shift so there is no
    /// modulo bias worth speaking of and no loop.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform index into a slice of length `n`.
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `ppm` parts per million.
    pub(crate) fn chance(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }

    /// A uniform index in `0..n` different from `current` (`n` must be at least 2).
    pub(crate) fn other_index(&mut self, n: usize, current: usize) -> usize {
        (current + 1 + self.index(n - 1)) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (from the published C code):
        // they pin the algorithm so the output can never drift.
        let mut r = Rng { state: 0 };
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn keys_differ_by_every_component() {
        let base = key(1, Stream::IndividualBase, 5, 1);
        assert_ne!(base, key(2, Stream::IndividualBase, 5, 1));
        assert_ne!(base, key(1, Stream::IndividualChange, 5, 1));
        assert_ne!(base, key(1, Stream::IndividualBase, 6, 1));
        assert_ne!(base, key(1, Stream::IndividualBase, 5, 2));
        assert_eq!(base, key(1, Stream::IndividualBase, 5, 1));
    }

    #[test]
    fn below_and_other_index_stay_in_range() {
        let mut r = Rng::for_key(7, Stream::ActivityBase, 0, 0);
        for n in 1..50u64 {
            assert!(r.below(n) < n);
        }
        for _ in 0..200 {
            let o = r.other_index(5, 3);
            assert!(o < 5 && o != 3);
        }
        assert_eq!(r.below(0), 0);
    }
}
