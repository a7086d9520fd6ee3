//! The path operations of the nudged elastic band on the CPU: gather-and-interpolate of rows,
//! row copies, distances between consecutive rows and the NEB forces.
//!
//! Layout: a path is one row-major `[rows, dim]` buffer, a row per pivot. Every kernel is
//! rayon-parallel over rows (pivots) and accumulates in f64; each row's sums run in a fixed
//! order, so the results do not depend on the thread count. `reference::neb` holds the naive
//! f64 versions these are tested against.

use crate::backend::{Lerp, NebForceParams};
use rayon::prelude::*;

/// `dst` row r = `(1 - t) src[a] + t src[b]`, computed in f64; `t = 0` and `t = 1` copy.
pub fn lerp_rows(dim: usize, src: &[f32], plan: &[Lerp], dst: &mut [f32]) {
    dst.par_chunks_mut(dim).zip(plan.par_iter()).for_each(|(d, l)| {
        let a = &src[l.a * dim..(l.a + 1) * dim];
        let b = &src[l.b * dim..(l.b + 1) * dim];
        if l.t == 0.0 {
            d.copy_from_slice(a);
        } else if l.t == 1.0 {
            d.copy_from_slice(b);
        } else {
            let t = l.t as f64;
            for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                *d = ((1.0 - t) * a as f64 + t * b as f64) as f32;
            }
        }
    });
}

/// Copies `rows` rows of `dim` values from `src` row `src_row` into `dst` row `dst_row`.
pub fn copy_rows(dim: usize, src: &[f32], src_row: usize, dst: &mut [f32], dst_row: usize, rows: usize) {
    dst[dst_row * dim..(dst_row + rows) * dim].copy_from_slice(&src[src_row * dim..(src_row + rows) * dim]);
}

/// `|x[i+1] - x[i]|` for `i` in `0..rows-1`, each accumulated in f64.
pub fn row_distances(dim: usize, rows: usize, x: &[f32]) -> Vec<f64> {
    (0..rows.saturating_sub(1))
        .into_par_iter()
        .map(|i| {
            let a = &x[i * dim..(i + 1) * dim];
            let b = &x[(i + 1) * dim..(i + 2) * dim];
            a.iter()
                .zip(b)
                .map(|(&a, &b)| {
                    let d = b as f64 - a as f64;
                    d * d
                })
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

/// A tangent `α τ+ + β τ-` shorter than this times `|α||τ+| + |β||τ-|` is taken as zero-length:
/// its direction would be rounding noise.
pub const ZERO_TANGENT: f64 = 1e-10;

/// The tangent as a combination `α τ+ + β τ-` of the raw neighbour vectors, before
/// normalisation (Henkelman & Jónsson 2000, eqs. 8–11). `np`, `nm` are `|τ+|`, `|τ-|`.
/// Ties `E[i+1] = E[i-1]` (flat energy included) take the bisector of the normalised vectors.
pub(crate) fn tangent_coefficients(e_prev: f64, e: f64, e_next: f64, np: f64, nm: f64) -> (f64, f64) {
    if e_next > e && e > e_prev {
        (1.0, 0.0) // eq. 8, monotone up: τ = τ+
    } else if e_next < e && e < e_prev {
        (0.0, 1.0) // eq. 8, monotone down: τ = τ-
    } else if e_next == e_prev {
        bisector(np, nm)
    } else {
        // eqs. 9–11, at an extremum: weight by ΔE_max and ΔE_min.
        let (dp, dm) = ((e_next - e).abs(), (e_prev - e).abs());
        let (dmax, dmin) = (dp.max(dm), dp.min(dm));
        if e_next > e_prev {
            (dmax, dmin)
        } else {
            (dmin, dmax)
        }
    }
}

/// The coefficients of `τ+/|τ+| + τ-/|τ-|`, a zero-length vector contributing nothing.
pub(crate) fn bisector(np: f64, nm: f64) -> (f64, f64) {
    let inv = |n: f64| if n > 0.0 { 1.0 / n } else { 0.0 };
    (inv(np), inv(nm))
}

/// The fallbacks tried in order when a tangent has zero length: the bisector, `τ+`, `τ-`,
/// then none (`(0, 0)`).
pub(crate) fn tangent_fallbacks(np: f64, nm: f64) -> [(f64, f64); 3] {
    let inv = |n: f64| if n > 0.0 { 1.0 / n } else { 0.0 };
    [bisector(np, nm), (inv(np), 0.0), (0.0, inv(nm))]
}

/// NEB forces of every interior pivot into `forces` (endpoint rows zeroed) and the norm of each
/// pivot's perpendicular true force (the whole force for the climbing image); see
/// [`Neb::neb_forces`](crate::Neb::neb_forces). Arguments must have passed
/// that method's checks.
pub fn neb_forces(p: &NebForceParams, x: &[f32], g: &[f32], e: &[f64], forces: &mut [f32]) -> Vec<f64> {
    let (n, d) = (p.pivots, p.dim);
    forces
        .par_chunks_mut(d)
        .enumerate()
        .map(|(i, f)| {
            if i == 0 || i + 1 == n {
                f.fill(0.0);
                return 0.0;
            }
            let prev = &x[(i - 1) * d..i * d];
            let cur = &x[i * d..(i + 1) * d];
            let next = &x[(i + 1) * d..(i + 2) * d];
            let grad = &g[i * d..(i + 1) * d];
            // Pass 1: |τ+|, |τ-|.
            let (mut np2, mut nm2) = (0.0f64, 0.0f64);
            for j in 0..d {
                let (c, tp, tm) = (cur[j] as f64, next[j] as f64, prev[j] as f64);
                let (p, m) = (tp - c, c - tm);
                np2 += p * p;
                nm2 += m * m;
            }
            let (np, nm) = (np2.sqrt(), nm2.sqrt());
            // Pass 2: |τ| and ∇E·τ for τ = α τ+ + β τ-, with the fallbacks where |τ| = 0.
            let measure = |(a, b): (f64, f64)| {
                let (mut tt, mut gt) = (0.0f64, 0.0f64);
                if a != 0.0 || b != 0.0 {
                    for j in 0..d {
                        let c = cur[j] as f64;
                        let t = a * (next[j] as f64 - c) + b * (c - prev[j] as f64);
                        tt += t * t;
                        gt += grad[j] as f64 * t;
                    }
                }
                (tt, gt)
            };
            // A tangent counts as zero-length when rounding could have made it (cancellation).
            let usable = |(a, b): (f64, f64), tt: f64| tt.sqrt() > ZERO_TANGENT * (a.abs() * np + b.abs() * nm);
            let mut coef = tangent_coefficients(e[i - 1], e[i], e[i + 1], np, nm);
            let (mut tt, mut gt) = measure(coef);
            if !usable(coef, tt) {
                (coef, tt, gt) = (tangent_fallbacks(np, nm).into_iter())
                    .map(|c| {
                        let (tt, gt) = measure(c);
                        (c, tt, gt)
                    })
                    .find(|&(c, tt, _)| usable(c, tt))
                    .unwrap_or(((0.0, 0.0), 0.0, 0.0));
            }
            let tn = tt.sqrt();
            let (a, b) = if tn > 0.0 {
                (coef.0 / tn, coef.1 / tn)
            } else {
                (0.0, 0.0)
            };
            // ∇E·τ̂.
            let gtau = if tn > 0.0 { gt / tn } else { 0.0 };
            let climbing = p.climbing == Some(i);
            // Eq. 12: the spring force along the tangent, k(|τ+| - |τ-|) (none for the climbing image).
            let spring = match (p.spring, climbing) {
                (Some(k), false) => k as f64 * (np - nm),
                _ => 0.0,
            };
            // Pass 3: the forces.
            let mut norm2 = 0.0f64;
            for j in 0..d {
                let c = cur[j] as f64;
                let th = a * (next[j] as f64 - c) + b * (c - prev[j] as f64);
                let gj = grad[j] as f64;
                if climbing {
                    // Climbing image: -∇E + 2(∇E·τ̂)τ̂.
                    let fj = -gj + 2.0 * gtau * th;
                    norm2 += fj * fj;
                    f[j] = fj as f32;
                } else {
                    // The perpendicular true force -∇E + (∇E·τ̂)τ̂, then the spring along τ̂.
                    let perp = -gj + gtau * th;
                    norm2 += perp * perp;
                    f[j] = (perp + spring * th) as f32;
                }
            }
            norm2.sqrt()
        })
        .collect()
}
