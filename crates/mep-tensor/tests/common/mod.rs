//! Helpers shared by the CPU backend's test files: a seeded generator, f32 → f64, and the
//! `atol + rtol·|want|` comparison that lists the first mismatches.
// Each test file uses a different subset.
#![allow(dead_code)]

use mep_rng::SplitMix64;

/// The workspace's SplitMix64 (mep-rng) with the draws the tests need.
pub struct Rng(pub SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.unit_f32()
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Panics listing the first mismatches unless `|got − want| ≤ atol + rtol·|want|` everywhere.
#[track_caller]
pub fn assert_close<T: Copy + Into<f64>>(what: &str, got: &[T], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| {
            let diff = (got[i].into() - want[i]).abs();
            diff.is_nan() || diff > atol + rtol * want[i].abs()
        })
        .collect();
    if !bad.is_empty() {
        let mut msg = format!(
            "{what}: {} of {} values off (atol {atol:e}, rtol {rtol:e}):",
            bad.len(),
            got.len()
        );
        for &i in bad.iter().take(8) {
            let g: f64 = got[i].into();
            msg += &format!("\n  [{i}] got {g} want {} (diff {:.3e})", want[i], (g - want[i]).abs());
        }
        panic!("{msg}");
    }
}
