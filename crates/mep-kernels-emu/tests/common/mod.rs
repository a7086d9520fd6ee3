//! Shared by the tests: deterministic data, launch shapes, and the tolerance check.
#![allow(dead_code)]

use mep_kernels_emu::{Launch, Version};

/// Deterministic values in `[lo, hi)` (a 64-bit LCG, Knuth's MMIX constants).
pub fn data(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Sizes that are not multiples of the block sizes, plus a one-element buffer.
pub const SIZES: [usize; 4] = [1, 37, 1000, 4099];

/// The launches a kernel version is tested with for `n` work items: v1 covers the items with
/// one thread each (blocks of 32 and 128, multi-block); v2 is grid-stride (one block, and 3
/// blocks of 64 so that each thread takes several items).
pub fn launches(v: Version, n: usize) -> Vec<Launch> {
    match v {
        Version::V1 => vec![Launch::cover(n, 32), Launch::cover(n, 128)],
        Version::V2 => vec![Launch::new(1, 32), Launch::new(3, 64)],
    }
}

/// Fails, listing the first mismatches with their indices, unless every
/// `|got − want| ≤ atol + rtol·|want|` (NaN matches NaN).
pub fn assert_close<T: Into<f64> + Copy>(what: &str, got: &[T], want: &[T], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter_map(|(i, (&g, &w))| {
            let (g, w): (f64, f64) = (g.into(), w.into());
            let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= atol + rtol * w.abs();
            (!ok).then(|| format!("[{i}] got {g:e}, want {w:e}, diff {:e}", (g - w).abs()))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} mismatches (atol {atol:e}, rtol {rtol:e}); first: {}",
        bad.len(),
        got.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
}
