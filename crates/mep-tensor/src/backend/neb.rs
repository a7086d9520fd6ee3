//! Path ops of the nudged elastic band: gather-and-interpolate of rows, row copies,
//! distances between consecutive rows and the NEB forces.

use super::Memory;
use crate::error::{check_len, Result, TensorError};

/// One row of a gather-and-interpolate ([`Neb::lerp_rows`]):
/// `dst row = (1 - t) · src[a] + t · src[b]`.
///
/// `t = 0` copies row `a` exactly and `t = 1` row `b`; `t` outside `[0, 1]` extrapolates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lerp {
    /// The row weighted by `1 - t`.
    pub a: usize,
    /// The row weighted by `t`.
    pub b: usize,
    /// The interpolation parameter.
    pub t: f32,
}

/// Parameters of the NEB force computation ([`Neb::neb_forces`]) on `pivots` rows of
/// `dim` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NebForceParams {
    /// P, the number of pivots, endpoints included.
    pub pivots: usize,
    /// D, the number of coordinates of one pivot.
    pub dim: usize,
    /// Spring constant k (Henkelman & Jónsson 2000, eq. 12); `None` = no spring term
    /// (k = ∞, handled by redistributing the pivots to equal arc length).
    pub spring: Option<f32>,
    /// Index of the climbing image, if any (Henkelman, Uberuaga & Jónsson 2000); must be an
    /// interior pivot.
    pub climbing: Option<usize>,
}

/// An f64 stored in two f32 words of a buffer (low word first, the bits unchanged), so that
/// the device-side NEB ops can leave f64 results (force norms, segment lengths) in an ordinary
/// buffer; [`f64_from_words`] reads them back exactly.
pub fn f64_to_words(v: f64) -> [f32; 2] {
    let b = v.to_bits();
    [f32::from_bits(b as u32), f32::from_bits((b >> 32) as u32)]
}

/// The f64 values stored by [`f64_to_words`] in `words` (an odd last word is ignored).
pub fn f64_from_words(words: &[f32]) -> Vec<f64> {
    words
        .chunks_exact(2)
        .map(|w| f64::from_bits(w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32))
        .collect()
}

/// The climbing image of a path with pivot `energies`: the highest interior pivot, the first
/// of equal ones; None when the path has no interior pivot.
pub fn climbing_image(energies: &[f64]) -> Option<usize> {
    let p = energies.len();
    (p >= 3).then(|| (1..p - 1).fold(1, |best, i| if energies[i] > energies[best] { i } else { best }))
}

/// The plan moving the pivots to equal arc length along the piecewise-linear path with
/// segment lengths `dist` (endpoints stay); with a climbing image `c`, the pivots on each side
/// of it are spread evenly over their own part and the climbing image stays (the climbing
/// string method, E, Ren & Vanden-Eijnden 2007). Parts of zero length are left as they are.
pub fn redistribution_plan(dist: &[f64], climbing: Option<usize>) -> Vec<Lerp> {
    let p = dist.len() + 1;
    let mut plan: Vec<Lerp> = (0..p).map(|r| Lerp { a: r, b: r, t: 0.0 }).collect();
    let mut cum = Vec::with_capacity(p);
    cum.push(0.0);
    for d in dist {
        cum.push(cum.last().unwrap_or(&0.0) + d);
    }
    let parts = match climbing {
        Some(c) if c > 0 && c + 1 < p => vec![(0, c), (c, p - 1)],
        _ => vec![(0, p - 1)],
    };
    for (lo, hi) in parts {
        let total = cum[hi] - cum[lo];
        if total.is_nan() || total <= 0.0 {
            continue;
        }
        let mut seg = lo;
        for (k, row) in plan.iter_mut().enumerate().take(hi).skip(lo + 1) {
            let target = cum[lo] + total * (k - lo) as f64 / (hi - lo) as f64;
            while seg + 1 < hi && cum[seg + 1] <= target {
                seg += 1;
            }
            let t = if dist[seg] > 0.0 {
                ((target - cum[seg]) / dist[seg]).clamp(0.0, 1.0)
            } else {
                0.0
            };
            *row = Lerp {
                a: seg,
                b: seg + 1,
                t: t as f32,
            };
        }
    }
    plan
}

fn invalid(op: &'static str, msg: String) -> TensorError {
    TensorError::Invalid { op, msg }
}

/// Checks the arguments of [`Neb::lerp_rows`].
fn check_lerp_rows(dim: usize, src_len: usize, plan: &[Lerp], dst_len: usize) -> Result<()> {
    const OP: &str = "lerp_rows";
    if dim == 0 {
        return Err(invalid(OP, "dim must be positive".into()));
    }
    let rows = src_len / dim;
    if rows * dim != src_len {
        return Err(invalid(
            OP,
            format!("src has {src_len} elements, not whole rows of {dim}"),
        ));
    }
    check_len(OP, "dst", plan.len() * dim, dst_len)?;
    for (r, l) in plan.iter().enumerate() {
        if l.a >= rows || l.b >= rows {
            return Err(invalid(
                OP,
                format!("plan[{r}] reads rows ({}, {}) of a {rows}-row src", l.a, l.b),
            ));
        }
        if !l.t.is_finite() {
            return Err(invalid(OP, format!("plan[{r}] has t = {}", l.t)));
        }
    }
    Ok(())
}

/// Checks the arguments of [`Neb::copy_rows`].
fn check_copy_rows(
    dim: usize,
    src_len: usize,
    src_row: usize,
    dst_len: usize,
    dst_row: usize,
    rows: usize,
) -> Result<()> {
    const OP: &str = "copy_rows";
    let end = |row: usize| row.checked_add(rows).and_then(|r| r.checked_mul(dim));
    match (end(src_row), end(dst_row)) {
        (Some(s), Some(d)) if s <= src_len && d <= dst_len => Ok(()),
        _ => Err(invalid(
            OP,
            format!(
                "rows {src_row}..+{rows} of src ({src_len} elements) into rows {dst_row}..+{rows} of dst \
                 ({dst_len} elements), rows of {dim}, are out of range"
            ),
        )),
    }
}

/// Checks the arguments of [`Neb::row_distances`].
fn check_row_distances(dim: usize, rows: usize, x_len: usize) -> Result<()> {
    if rows == 0 {
        return Err(invalid("row_distances", "rows must be at least 1".into()));
    }
    check_len("row_distances", "x", rows * dim, x_len)
}

/// Checks the arguments of [`Neb::neb_forces`].
fn check_neb_forces(
    p: &NebForceParams,
    pivots_len: usize,
    grads_len: usize,
    energies: &[f64],
    forces_len: usize,
) -> Result<()> {
    const OP: &str = "neb_forces";
    check_neb_geometry(OP, p, [pivots_len, grads_len, forces_len])?;
    check_len(OP, "energies", p.pivots, energies.len())?;
    if let Some(i) = energies.iter().position(|e| !e.is_finite()) {
        return Err(invalid(OP, format!("energy of pivot {i} is {}", energies[i])));
    }
    if let Some(c) = p.climbing {
        if c == 0 || c + 1 >= p.pivots {
            return Err(invalid(
                OP,
                format!("climbing image {c} is not an interior pivot of 0..{}", p.pivots),
            ));
        }
    }
    Ok(())
}

/// The checks both force ops share: pivots, rows and the spring.
fn check_neb_geometry(op: &'static str, p: &NebForceParams, lens: [usize; 3]) -> Result<()> {
    if p.pivots < 2 {
        return Err(invalid(op, format!("{} pivots; a path needs at least 2", p.pivots)));
    }
    if p.dim == 0 {
        return Err(invalid(op, "dim must be positive".into()));
    }
    let len = p.pivots * p.dim;
    for (arg, found) in ["pivots", "grads", "forces"].into_iter().zip(lens) {
        check_len(op, arg, len, found)?;
    }
    if let Some(k) = p.spring {
        if !(k.is_finite() && k >= 0.0) {
            return Err(invalid(
                op,
                format!("spring constant {k} must be finite and non-negative"),
            ));
        }
    }
    Ok(())
}

/// Checks the arguments of [`Neb::neb_forces_on_device`].
fn check_neb_forces_on_device(
    p: &NebForceParams,
    lens: [usize; 5], // pivots, grads, energies, forces, norms
) -> Result<()> {
    const OP: &str = "neb_forces_on_device";
    let [pivots_len, grads_len, energies_len, forces_len, norms_len] = lens;
    if p.climbing.is_some() {
        return Err(invalid(
            OP,
            "the climbing image is chosen on the device from the energies; pass climbing = None and climb = true"
                .into(),
        ));
    }
    check_neb_geometry(OP, p, [pivots_len, grads_len, forces_len])?;
    check_len(OP, "energies", p.pivots, energies_len)?;
    check_len(OP, "norms (two words per pivot)", 2 * p.pivots, norms_len)
}

/// Checks the arguments of [`Neb::redistribute_rows`].
fn check_redistribute_rows(dim: usize, rows: usize, lens: [usize; 3], energies: Option<usize>) -> Result<()> {
    const OP: &str = "redistribute_rows";
    let [src_len, dst_len, lengths_len] = lens;
    if rows < 2 || dim == 0 {
        return Err(invalid(
            OP,
            format!("{rows} rows of {dim}; a path needs 2 rows of at least 1 value"),
        ));
    }
    check_len(OP, "src", rows * dim, src_len)?;
    check_len(OP, "dst", rows * dim, dst_len)?;
    check_len(OP, "lengths (two words per segment)", 2 * (rows - 1), lengths_len)?;
    energies.map_or(Ok(()), |e| check_len(OP, "energies", rows, e))
}

/// The path ops of the NEB on row-major `[rows, dim]` buffers, a row per pivot.
///
/// Implementors provide the `run_*` methods, which may assume that every row index is in
/// range, lengths match, `t`, energies and the spring constant are finite and the climbing
/// image is interior.
pub trait Neb: Memory {
    checked_ops! {
        /// `dst` row r = `(1 - t) src[a] + t src[b]` with `(a, b, t) = plan[r]`; rows have `dim`
        /// values, `src` holds whole rows and `dst` has `plan.len()` rows.
        fn lerp_rows(
            &self,
            dim: usize,
            src: &Self::Buf,
            plan: &[Lerp],
            dst: &mut Self::Buf,
        ) -> Result<()> => run_lerp_rows {
            check_lerp_rows(dim, self.len(src), plan, self.len(dst))?;
        }
        /// Copies `rows` rows of `dim` values from `src` (starting at row `src_row`) into `dst`
        /// (starting at row `dst_row`).
        fn copy_rows(
            &self,
            dim: usize,
            src: &Self::Buf,
            src_row: usize,
            dst: &mut Self::Buf,
            dst_row: usize,
            rows: usize,
        ) -> Result<()> => run_copy_rows {
            check_copy_rows(dim, self.len(src), src_row, self.len(dst), dst_row, rows)?;
        }
        /// Euclidean distances between consecutive rows, `|x[i+1] - x[i]|` for `i` in
        /// `0..rows-1`, accumulated in f64.
        fn row_distances(&self, dim: usize, rows: usize, x: &Self::Buf) -> Result<Vec<f64>> => run_row_distances {
            check_row_distances(dim, rows, self.len(x))?;
        }
        /// NEB forces on every interior pivot (endpoint rows of `forces` set to 0), from the
        /// `pivots`, the energy gradients at the pivots (`grads`, rows 0 and P-1 ignored) and the
        /// `energies` at the pivots (host scalars, all finite).
        ///
        /// Improved tangent (Henkelman & Jónsson 2000, eqs. 8–11) from the raw neighbour vectors
        /// `τ+ = R[i+1] - R[i]`, `τ- = R[i] - R[i-1]`; where `E[i+1] = E[i-1]` (ties, flat
        /// energy) the bisector `τ+/|τ+| + τ-/|τ-|` instead, and where a tangent has zero length
        /// to rounding (zero-length segments, a path folding back) the bisector, then `τ+` or
        /// `τ-`, then no tangent at all (never NaN). The force is the perpendicular true force `-∇E + (∇E·τ̂)τ̂` plus the spring
        /// force along the tangent `k(|τ+| - |τ-|)τ̂` (eq. 12); the climbing image gets
        /// `-∇E + 2(∇E·τ̂)τ̂` and no spring.
        ///
        /// Returns, per pivot (0 for endpoints), the norm of the perpendicular true force; for the
        /// climbing image the norm of its whole force (`|∇E|`), since it must also reach the
        /// saddle along the tangent.
        fn neb_forces(
            &self,
            p: &NebForceParams,
            pivots: &Self::Buf,
            grads: &Self::Buf,
            energies: &[f64],
            forces: &mut Self::Buf,
        ) -> Result<Vec<f64>> => run_neb_forces {
            check_neb_forces(p, self.len(pivots), self.len(grads), energies, self.len(forces))?;
        }
        /// [`neb_forces`](Self::neb_forces) with the energies in a device buffer (`energies`,
        /// P values) and the norms left in one (`norms`, P f64 as [`f64_to_words`] stores them),
        /// so that a step needs no host copy and can be captured in a CUDA graph. With `climb`
        /// the climbing image is the [`climbing_image`] of the energies (`p.climbing` must be
        /// None). Energies are not checked for finiteness here: the caller reads them back
        /// after the step.
        #[allow(clippy::too_many_arguments)]
        fn neb_forces_on_device(
            &self,
            p: &NebForceParams,
            climb: bool,
            pivots: &Self::Buf,
            grads: &Self::Buf,
            energies: &Self::Buf,
            forces: &mut Self::Buf,
            norms: &mut Self::Buf,
        ) -> Result<()> => run_neb_forces_on_device {
            let lens = [self.len(pivots), self.len(grads), self.len(energies), self.len(forces), self.len(norms)];
            check_neb_forces_on_device(p, lens)?;
        }
        /// The string method's redistribution on the device: `dst` = the `rows` pivots of `src`
        /// moved to equal arc length along its piecewise-linear path ([`redistribution_plan`],
        /// computed on the device in f64), each side of the [`climbing_image`] of `energies`
        /// on its own when they are given; `lengths` gets the segment lengths of `src`
        /// ([`row_distances`](Self::row_distances), as [`f64_to_words`] stores them) for the
        /// caller's finiteness check. `dst` equals `src` bit for bit where the plan is the
        /// identity.
        fn redistribute_rows(
            &self,
            dim: usize,
            rows: usize,
            src: &Self::Buf,
            energies: Option<&Self::Buf>,
            dst: &mut Self::Buf,
            lengths: &mut Self::Buf,
        ) -> Result<()> => run_redistribute_rows {
            let lens = [self.len(src), self.len(dst), self.len(lengths)];
            check_redistribute_rows(dim, rows, lens, energies.map(|e| self.len(e)))?;
        }
    }
}
