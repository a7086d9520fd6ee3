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
    if p.pivots < 2 {
        return Err(invalid(OP, format!("{} pivots; a path needs at least 2", p.pivots)));
    }
    if p.dim == 0 {
        return Err(invalid(OP, "dim must be positive".into()));
    }
    let len = p.pivots * p.dim;
    check_len(OP, "pivots", len, pivots_len)?;
    check_len(OP, "grads", len, grads_len)?;
    check_len(OP, "forces", len, forces_len)?;
    check_len(OP, "energies", p.pivots, energies.len())?;
    if let Some(i) = energies.iter().position(|e| !e.is_finite()) {
        return Err(invalid(OP, format!("energy of pivot {i} is {}", energies[i])));
    }
    if let Some(k) = p.spring {
        if !(k.is_finite() && k >= 0.0) {
            return Err(invalid(
                OP,
                format!("spring constant {k} must be finite and non-negative"),
            ));
        }
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
    }
}
