//! SplitMix64 (Steele, Lea & Flood 2014): the one seeded generator of the workspace.
//!
//! Every crate that needs reproducible randomness (weight initialisation, augmentation,
//! the synthetic demo set, NEB reseeding, test data, the fuzz mutator) draws from this
//! generator, so a seed means the same sequence on every machine and in every crate. It is
//! not PyTorch's generator: a seed here does not reproduce a PyTorch script's draws.
//!
//! The draws that each user needs on top of the 64 raw bits (a float in `[0, 1)`, an
//! unbiased integer below `n`) are here too, so that they are written once.
//!
//! ```
//! use mep_rng::SplitMix64;
//! let mut a = SplitMix64::new(7);
//! let mut b = SplitMix64::new(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let u = a.unit_f32();
//! assert!((0.0..1.0).contains(&u));
//! ```

#![forbid(unsafe_code)]

/// The golden-ratio increment of SplitMix64's state.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective scramble of 64 bits. Used on its own to hash
/// coordinates (seed, split, index) into independent starting states.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first output of a generator started at `seed`: `mix(seed + γ)`. A one-call hash for
/// deriving seeds from seeds.
pub fn hash(seed: u64) -> u64 {
    mix(seed.wrapping_add(GAMMA))
}

/// A SplitMix64 generator: 64 bits of state, a fixed sequence per seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` from the top 24 bits: every value is an exact f32.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[0, 1)` from the top 53 bits: every value is an exact f64.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in `0..n` by `next_u64() % n` (`n = 0` is taken as 1). The modulo bias
    /// (at most n / 2⁶⁴) is irrelevant for test data and fuzzing; use
    /// [`SplitMix64::below_unbiased`] where it matters.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A uniform integer in `0..n` (`n > 0`) without modulo bias: Lemire's multiply-shift
    /// with rejection of the short zone.
    pub fn below_unbiased(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_reference_sequence() {
        // The reference values of SplitMix64 from seed 1234567 (Vigna's splitmix64.c).
        let mut g = SplitMix64::new(1234567);
        let want = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for w in want {
            assert_eq!(g.next_u64(), w);
        }
    }

    #[test]
    fn hash_is_the_first_draw() {
        assert_eq!(hash(42), SplitMix64::new(42).next_u64());
    }

    #[test]
    fn unbiased_draws_stay_below_n() {
        let mut g = SplitMix64::new(3);
        for n in [1u64, 2, 3, 7, 1 << 40, u64::MAX] {
            for _ in 0..100 {
                assert!(g.below_unbiased(n) < n);
                assert!(g.below(n) < n);
            }
        }
    }
}
