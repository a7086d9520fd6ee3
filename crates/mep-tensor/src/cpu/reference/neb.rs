//! Naive f64 versions of the path operations of the nudged elastic band: the readable
//! specification the CPU kernels in `cpu::neb` are tested against.

use crate::cpu::neb::ZERO_TANGENT;

/// `(1 - t) src[a] + t src[b]` for each `(a, b, t)` of `plan`, rows of `dim` values.
pub fn lerp_rows(dim: usize, src: &[f64], plan: &[(usize, usize, f64)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(plan.len() * dim);
    for &(a, b, t) in plan {
        for j in 0..dim {
            out.push((1.0 - t) * src[a * dim + j] + t * src[b * dim + j]);
        }
    }
    out
}

/// `|x[i+1] - x[i]|` for consecutive rows of `dim` values.
pub fn row_distances(dim: usize, x: &[f64]) -> Vec<f64> {
    let rows = x.len() / dim;
    (1..rows)
        .map(|i| {
            let mut s = 0.0;
            for j in 0..dim {
                let d = x[i * dim + j] - x[(i - 1) * dim + j];
                s += d * d;
            }
            s.sqrt()
        })
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// `v / |v|`, or `None` for a zero-length vector.
fn unit(v: &[f64]) -> Option<Vec<f64>> {
    let n = norm(v);
    (n > 0.0).then(|| v.iter().map(|x| x / n).collect())
}

/// `v / |v|`, or zeros for a zero-length vector.
fn unit_or_zero(v: &[f64]) -> Vec<f64> {
    unit(v).unwrap_or_else(|| vec![0.0; v.len()])
}

/// The unit tangent at pivot `cur` between `prev` and `next` with energies `e_prev`, `e`,
/// `e_next` (Henkelman & Jónsson 2000, eqs. 8–11), with `τ+ = next - cur`, `τ- = cur - prev`:
///
/// - `E[i+1] > E[i] > E[i-1]`: `τ+`; `E[i+1] < E[i] < E[i-1]`: `τ-`;
/// - `E[i+1] = E[i-1]` (ties and flat energy): the bisector `τ+/|τ+| + τ-/|τ-|`;
/// - otherwise, with `ΔE_max`, `ΔE_min` the larger and smaller of `|E[i±1] - E[i]|`:
///   `τ+ ΔE_max + τ- ΔE_min` if `E[i+1] > E[i-1]`, else `τ+ ΔE_min + τ- ΔE_max`;
///
/// and where that vector has zero length (shorter than `ZERO_TANGENT` times the size of its
/// terms), the first non-zero of the bisector, `τ+`, `τ-` (a zero-length vector contributing
/// nothing to the bisector); all zero gives a zero tangent.
pub fn tangent(prev: &[f64], cur: &[f64], next: &[f64], e_prev: f64, e: f64, e_next: f64) -> Vec<f64> {
    let tp: Vec<f64> = next.iter().zip(cur).map(|(n, c)| n - c).collect();
    let tm: Vec<f64> = cur.iter().zip(prev).map(|(c, p)| c - p).collect();
    let bis: Vec<f64> = unit_or_zero(&tp)
        .iter()
        .zip(unit_or_zero(&tm))
        .map(|(a, b)| a + b)
        .collect();
    let (np, nm) = (norm(&tp), norm(&tm));
    // The weights of τ+ and τ- in each candidate, and so the size of its terms.
    let (wp, wm) = if e_next > e && e > e_prev {
        (1.0, 0.0)
    } else if e_next < e && e < e_prev {
        (0.0, 1.0)
    } else if e_next == e_prev {
        (f64::NAN, f64::NAN) // the bisector
    } else {
        let (dp, dm) = ((e_next - e).abs(), (e_prev - e).abs());
        let (dmax, dmin) = (dp.max(dm), dp.min(dm));
        if e_next > e_prev {
            (dmax, dmin)
        } else {
            (dmin, dmax)
        }
    };
    let bis_scale = (np > 0.0) as u8 as f64 + (nm > 0.0) as u8 as f64;
    let (tau, scale) = if wp.is_nan() {
        (bis.clone(), bis_scale)
    } else {
        (
            tp.iter().zip(&tm).map(|(p, m)| wp * p + wm * m).collect(),
            wp * np + wm * nm,
        )
    };
    // A vector shorter than ZERO_TANGENT times the size of its terms is rounding noise.
    let usable = |v: &[f64], scale: f64| (norm(v) > ZERO_TANGENT * scale).then(|| unit(v)).flatten();
    usable(&tau, scale)
        .or_else(|| usable(&bis, bis_scale))
        .or_else(|| usable(&tp, np))
        .or_else(|| usable(&tm, nm))
        .unwrap_or_else(|| vec![0.0; cur.len()])
}

/// NEB forces and the per-pivot norms of the perpendicular true force (the whole force for
/// the climbing image), for `pivots` rows of `dim` values; see
/// [`Neb::neb_forces`](crate::Neb::neb_forces).
pub fn neb_forces(
    pivots: usize,
    dim: usize,
    spring: Option<f64>,
    climbing: Option<usize>,
    x: &[f64],
    g: &[f64],
    e: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let row = |v: &[f64], i: usize| v[i * dim..(i + 1) * dim].to_vec();
    let mut forces = vec![0.0; pivots * dim];
    let mut norms = vec![0.0; pivots];
    for i in 1..pivots.saturating_sub(1) {
        let (prev, cur, next, grad) = (row(x, i - 1), row(x, i), row(x, i + 1), row(g, i));
        let tau = tangent(&prev, &cur, &next, e[i - 1], e[i], e[i + 1]);
        let g_tau = dot(&grad, &tau);
        let f: Vec<f64> = if climbing == Some(i) {
            // Climbing image: F = -∇E + 2(∇E·τ̂)τ̂.
            let f: Vec<f64> = grad.iter().zip(&tau).map(|(g, t)| -g + 2.0 * g_tau * t).collect();
            norms[i] = norm(&f);
            f
        } else {
            // F⊥ = -∇E + (∇E·τ̂)τ̂.
            let perp: Vec<f64> = grad.iter().zip(&tau).map(|(g, t)| -g + g_tau * t).collect();
            norms[i] = norm(&perp);
            // Eq. 12: F_s = k(|R[i+1] - R[i]| - |R[i] - R[i-1]|)τ̂.
            let d_next: Vec<f64> = next.iter().zip(&cur).map(|(a, b)| a - b).collect();
            let d_prev: Vec<f64> = cur.iter().zip(&prev).map(|(a, b)| a - b).collect();
            let s = spring.map_or(0.0, |k| k * (norm(&d_next) - norm(&d_prev)));
            perp.iter().zip(&tau).map(|(p, t)| p + s * t).collect()
        };
        forces[i * dim..(i + 1) * dim].copy_from_slice(&f);
    }
    (forces, norms)
}
