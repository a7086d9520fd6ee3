//! The f64 reductions of batch norm, pooling and the dot products: `LANES` running sums per
//! quantity, each over the elements `i ≡ lane (mod LANES)` in order, then added lane by lane.
//!
//! Version 1 (`portable`) is plain Rust. The crate is compiled for baseline x86-64, where
//! those loops become scalar SSE2 (one `cvtss2sd` and one `addsd` per element): in a
//! ResNet-20 training step on AVX2 the batch-norm sums ran at about 4 GB/s, a fifth of what
//! 2 cores stream. Version 2 (`avx2`) is the same loops in AVX2 intrinsics, taken whenever
//! [`Isa::current`] is not `Portable`: lanes 0–3 and 4–7 are two 4-wide f64 registers, and
//! every lane sees the same operations in the same order (convert, subtract, multiply, add:
//! no FMA, as Rust does not contract the portable `a + b * c` either), so both versions give
//! the same bits (`tests::both_versions_give_the_same_bits`).

#[cfg(target_arch = "x86_64")]
use super::direct::Isa;

/// Independent accumulators per quantity: they break the add dependency chain, and their
/// number (not the vector width) fixes the order of every sum.
pub(crate) const LANES: usize = 8;

/// Whether the AVX2 version runs (any x86-64 ISA above `Portable` has AVX2).
#[cfg(target_arch = "x86_64")]
#[inline]
fn avx2() -> bool {
    Isa::current() != Isa::Portable
}

/// `Σ a` in f64.
pub(crate) fn sum_f64(a: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: `Isa::current()` above `Portable` was detected with avx2 (and fma).
        return unsafe { v2::sum(a) };
    }
    portable::sum(a)
}

/// `Σ a·b` in f64.
pub(crate) fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `sum_f64`.
        return unsafe { v2::dot(a, b) };
    }
    portable::dot(a, b)
}

/// `(Σ (a − shift), Σ (a − shift)²)`: one pass for mean and variance; the shift (a sample of
/// the same channel) keeps `E[d²] − E[d]²` from cancelling when the mean dwarfs the spread.
pub(crate) fn shifted_moments(a: &[f32], shift: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `sum_f64`.
        return unsafe { v2::moments(a, shift) };
    }
    portable::moments(a, shift)
}

/// `(Σ dy, Σ dy (x − mean))`, the two reductions of every batch-norm backward.
pub(crate) fn bn_grad_sums(x: &[f32], dy: &[f32], mean: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `sum_f64`.
        return unsafe { v2::grad_sums(x, dy, mean) };
    }
    portable::grad_sums(x, dy, mean)
}

/// Version 1: the reference, and the code every non-x86 build runs.
mod portable {
    use super::LANES;

    pub fn sum(a: &[f32]) -> f64 {
        let mut acc = [0.0f64; LANES];
        let chunks = a.chunks_exact(LANES);
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        for c in chunks {
            for (s, &v) in acc.iter_mut().zip(c) {
                *s += v as f64;
            }
        }
        acc.iter().sum::<f64>() + tail
    }

    pub fn dot(a: &[f32], b: &[f32]) -> f64 {
        let mut acc = [0.0f64; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f64 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum();
        for (ca, cb) in ca.zip(cb) {
            for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
                *s += x as f64 * y as f64;
            }
        }
        acc.iter().sum::<f64>() + tail
    }

    pub fn moments(a: &[f32], shift: f64) -> (f64, f64) {
        let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
        let chunks = a.chunks_exact(LANES);
        let (mut t1, mut t2) = (0.0, 0.0);
        for &v in chunks.remainder() {
            let d = v as f64 - shift;
            t1 += d;
            t2 += d * d;
        }
        for c in chunks {
            for ((s1, s2), &v) in s1.iter_mut().zip(s2.iter_mut()).zip(c) {
                let d = v as f64 - shift;
                *s1 += d;
                *s2 += d * d;
            }
        }
        (s1.iter().sum::<f64>() + t1, s2.iter().sum::<f64>() + t2)
    }

    pub fn grad_sums(x: &[f32], dy: &[f32], mean: f64) -> (f64, f64) {
        let (mut s1, mut s2) = ([0.0f64; LANES], [0.0f64; LANES]);
        let (cx, cd) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
        let (mut t1, mut t2) = (0.0, 0.0);
        for (&x, &g) in cx.remainder().iter().zip(cd.remainder()) {
            t1 += g as f64;
            t2 += g as f64 * (x as f64 - mean);
        }
        for (cx, cd) in cx.zip(cd) {
            for (((s1, s2), &x), &g) in s1.iter_mut().zip(s2.iter_mut()).zip(cx).zip(cd) {
                *s1 += g as f64;
                *s2 += g as f64 * (x as f64 - mean);
            }
        }
        (s1.iter().sum::<f64>() + t1, s2.iter().sum::<f64>() + t2)
    }
}

/// Version 2: version 1's loops over whole chunks of 8 in AVX2; the tails and the final
/// lane sums are version 1's own code.
#[cfg(target_arch = "x86_64")]
mod v2 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// Lanes 0–3 and 4–7 of 8 floats at `p`, widened to f64.
    ///
    /// # Safety
    /// AVX2, and 8 readable floats at `p`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load8(p: *const f32) -> (__m256d, __m256d) {
        // SAFETY: the caller's contract.
        let v = unsafe { _mm256_loadu_ps(p) };
        (
            _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
        )
    }

    /// The 8 lanes of two registers, in lane order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(lo: __m256d, hi: __m256d) -> [f64; LANES] {
        let mut out = [0.0f64; LANES];
        // SAFETY: `out` holds 8 f64, 4 from each store.
        unsafe {
            _mm256_storeu_pd(out.as_mut_ptr(), lo);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
        }
        out
    }

    /// The whole chunks of `len`, and where the tail starts.
    fn whole(len: usize) -> usize {
        len / LANES * LANES
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sum(a: &[f32]) -> f64 {
        let n = whole(a.len());
        let [mut s0, mut s1] = [_mm256_setzero_pd(); 2];
        for i in (0..n).step_by(LANES) {
            // SAFETY: i + 8 <= n <= a.len().
            let (v0, v1) = unsafe { load8(a.as_ptr().add(i)) };
            (s0, s1) = (_mm256_add_pd(s0, v0), _mm256_add_pd(s1, v1));
        }
        let tail: f64 = a[n..].iter().map(|&v| v as f64).sum();
        lanes(s0, s1).iter().sum::<f64>() + tail
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f64 {
        let len = a.len().min(b.len());
        let n = whole(len);
        let [mut s0, mut s1] = [_mm256_setzero_pd(); 2];
        for i in (0..n).step_by(LANES) {
            // SAFETY: i + 8 <= n <= both lengths.
            let ((x0, x1), (y0, y1)) = unsafe { (load8(a.as_ptr().add(i)), load8(b.as_ptr().add(i))) };
            s0 = _mm256_add_pd(s0, _mm256_mul_pd(x0, y0));
            s1 = _mm256_add_pd(s1, _mm256_mul_pd(x1, y1));
        }
        let tail: f64 = a[n..len]
            .iter()
            .zip(&b[n..len])
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum();
        lanes(s0, s1).iter().sum::<f64>() + tail
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn moments(a: &[f32], shift: f64) -> (f64, f64) {
        let n = whole(a.len());
        let m = _mm256_set1_pd(shift);
        let [mut p0, mut p1, mut q0, mut q1] = [_mm256_setzero_pd(); 4];
        for i in (0..n).step_by(LANES) {
            // SAFETY: i + 8 <= n <= a.len().
            let (v0, v1) = unsafe { load8(a.as_ptr().add(i)) };
            let (d0, d1) = (_mm256_sub_pd(v0, m), _mm256_sub_pd(v1, m));
            (p0, p1) = (_mm256_add_pd(p0, d0), _mm256_add_pd(p1, d1));
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
        }
        let (mut t1, mut t2) = (0.0, 0.0);
        for &v in &a[n..] {
            let d = v as f64 - shift;
            t1 += d;
            t2 += d * d;
        }
        (
            lanes(p0, p1).iter().sum::<f64>() + t1,
            lanes(q0, q1).iter().sum::<f64>() + t2,
        )
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn grad_sums(x: &[f32], dy: &[f32], mean: f64) -> (f64, f64) {
        let len = x.len().min(dy.len());
        let n = whole(len);
        let m = _mm256_set1_pd(mean);
        let [mut p0, mut p1, mut q0, mut q1] = [_mm256_setzero_pd(); 4];
        for i in (0..n).step_by(LANES) {
            // SAFETY: i + 8 <= n <= both lengths.
            let ((x0, x1), (g0, g1)) = unsafe { (load8(x.as_ptr().add(i)), load8(dy.as_ptr().add(i))) };
            (p0, p1) = (_mm256_add_pd(p0, g0), _mm256_add_pd(p1, g1));
            q0 = _mm256_add_pd(q0, _mm256_mul_pd(g0, _mm256_sub_pd(x0, m)));
            q1 = _mm256_add_pd(q1, _mm256_mul_pd(g1, _mm256_sub_pd(x1, m)));
        }
        let (mut t1, mut t2) = (0.0, 0.0);
        for (&x, &g) in x[n..len].iter().zip(&dy[n..len]) {
            t1 += g as f64;
            t2 += g as f64 * (x as f64 - mean);
        }
        (
            lanes(p0, p1).iter().sum::<f64>() + t1,
            lanes(q0, q1).iter().sum::<f64>() + t2,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data;

    /// Lengths around the chunk of 8 (tails of 0–7, empty), values with specials mixed in.
    fn cases() -> Vec<(Vec<f32>, Vec<f32>)> {
        let mut out = Vec::new();
        for (k, len) in [0usize, 1, 7, 8, 9, 15, 16, 64, 1000, 1027].into_iter().enumerate() {
            let a: Vec<f32> = test_data(len, 2 * k as u64 + 1).iter().map(|v| v * 1e3 + 7.0).collect();
            let b = test_data(len, 2 * k as u64 + 2);
            out.push((a, b));
        }
        let mut a = test_data(40, 99);
        a[3] = f32::NAN;
        a[17] = f32::INFINITY;
        a[30] = -0.0;
        out.push((a.clone(), test_data(40, 98)));
        out.push((test_data(40, 97), a));
        out
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_versions_give_the_same_bits() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: only version 1 runs here");
            return;
        }
        let bits = |v: f64| if v.is_nan() { u64::MAX } else { v.to_bits() };
        let pair = |(a, b): (f64, f64)| (bits(a), bits(b));
        for (a, b) in cases() {
            // SAFETY: avx2 detected above.
            unsafe {
                assert_eq!(bits(v2::sum(&a)), bits(portable::sum(&a)), "sum, {} values", a.len());
                assert_eq!(bits(v2::dot(&a, &b)), bits(portable::dot(&a, &b)), "dot, {}", a.len());
                for shift in [0.0, 7.25, -1e3] {
                    assert_eq!(
                        pair(v2::moments(&a, shift)),
                        pair(portable::moments(&a, shift)),
                        "moments, {} values, shift {shift}",
                        a.len()
                    );
                    assert_eq!(
                        pair(v2::grad_sums(&a, &b, shift)),
                        pair(portable::grad_sums(&a, &b, shift)),
                        "grad sums, {} values, mean {shift}",
                        a.len()
                    );
                }
            }
        }
    }

    #[test]
    fn the_sums_are_the_f64_sums_within_their_rounding() {
        for (a, b) in cases()
            .into_iter()
            .filter(|(a, b)| a.iter().chain(b).all(|v| v.is_finite()))
        {
            let want: f64 = a.iter().map(|&v| v as f64).sum();
            let mag: f64 = a.iter().map(|&v| (v as f64).abs()).sum();
            let tol = a.len() as f64 * f64::EPSILON * mag + 1e-300;
            assert!((sum_f64(&a) - want).abs() <= tol, "sum of {}", a.len());
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let mag: f64 = a.iter().zip(&b).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
            let tol = a.len() as f64 * f64::EPSILON * mag + 1e-300;
            assert!((dot_f64(&a, &b) - want).abs() <= tol, "dot of {}", a.len());
            let (s1, s2) = shifted_moments(&a, 7.0);
            let (w1, w2): (f64, f64) = a
                .iter()
                .map(|&v| (v as f64 - 7.0, (v as f64 - 7.0).powi(2)))
                .fold((0.0, 0.0), |(p, q), (d, e)| (p + d, q + e));
            let mag = a.iter().map(|&v| (v as f64 - 7.0).abs()).sum::<f64>();
            assert!((s1 - w1).abs() <= a.len() as f64 * f64::EPSILON * mag + 1e-300);
            assert!((s2 - w2).abs() <= a.len() as f64 * f64::EPSILON * w2 + 1e-300);
            let (g1, g2) = bn_grad_sums(&a, &b, 7.0);
            let w1: f64 = b.iter().map(|&v| v as f64).sum();
            let w2: f64 = a.iter().zip(&b).map(|(&x, &g)| g as f64 * (x as f64 - 7.0)).sum();
            let m1: f64 = b.iter().map(|&v| (v as f64).abs()).sum();
            let m2: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &g)| (g as f64 * (x as f64 - 7.0)).abs())
                .sum();
            assert!((g1 - w1).abs() <= a.len() as f64 * f64::EPSILON * m1 + 1e-300);
            assert!((g2 - w2).abs() <= a.len() as f64 * f64::EPSILON * m2 + 1e-300);
        }
    }
}
