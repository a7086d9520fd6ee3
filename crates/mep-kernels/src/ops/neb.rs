//! neb.cu: the path never leaves the device; only P energies go in and P norms come out.
//!
//! The forces: v1 (the simple set) runs a block per pivot; v2 (the fast set) splits each row
//! into [`NEB_CHUNK`]-element chunks on a (chunks, P) grid, four launches with two-stage
//! fixed-order sums. The chunk and the block are constants, so the bits depend on P and D only.

use crate::backend::{blocks_for, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::elementwise::BLOCK;
use crate::ops::launch_per_element;
use mep_tensor::{Checked, Lerp, Neb, NebForceParams, Result};

/// Elements of a row one block of the v2 force kernels covers: fixed, so a result's bits do
/// not depend on the GPU (a grid sized to the machine would change the order of the sums).
/// 4096 keeps a 224×224 input row (150 528) at 37 blocks per pivot, over a thousand for 32 pivots.
pub const NEB_CHUNK: usize = 4096;

/// Bytes one neb_forces call moves through the kernels (each row read by every kernel that
/// reads it, energies and partials included), and the least any implementation must: read
/// the P rows of the path and the P − 2 interior gradients, write the P force rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Traffic {
    pub bytes: f64,
    pub min_bytes: f64,
}

/// [`Traffic`] of `neb_forces` for `pivots` rows of `dim`, `fast` (v2) or simple (v1); the
/// tangent fallbacks (zero-length tangents, rare) are left out.
pub fn neb_forces_traffic(pivots: usize, dim: usize, fast: bool) -> Traffic {
    let (p, d) = (pivots as f64, dim as f64);
    let interior = (p - 2.0).max(0.0);
    let row = 4.0 * d;
    let min_bytes = (p + interior + p) * row;
    // Interior pivot, both versions: 3 rows (|τ±|²), 4 rows (the tangent's sums), 4 rows read
    // and 1 written (the forces); endpoints write their zero row.
    let rows = interior * 12.0 + (p - interior);
    let chunks = dim.div_ceil(NEB_CHUNK) as f64;
    let small = if fast {
        // Partials written once and read by every block of the pivot that needs them.
        p * chunks * 8.0 * (2.0 + 6.0 + 1.0) + interior * chunks * chunks * 8.0 * (2.0 + 2.0 + 6.0 + 1.0 / chunks)
    } else {
        0.0
    };
    Traffic {
        bytes: rows * row + small + 2.0 * 8.0 * p,
        min_bytes,
    }
}

impl<L: Launcher> Neb for KernelBackend<L> {
    fn run_lerp_rows(
        &self,
        _: Checked,
        dim: usize,
        src: &DevBuf<L::Mem>,
        plan: &[Lerp],
        dst: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        if plan.is_empty() || dim == 0 {
            return Ok(());
        }
        let ab: Vec<u8> = plan
            .iter()
            .flat_map(|l| [l.a as i32, l.b as i32])
            .flat_map(i32::to_ne_bytes)
            .collect();
        let t: Vec<u8> = plan.iter().flat_map(|l| l.t.to_ne_bytes()).collect();
        let (ab, t) = (self.temp_bytes(&ab)?, self.temp_bytes(&t)?);
        let args = [
            i64_of(plan.len()),
            i64_of(dim),
            self.ptr(src),
            self.mem_ptr(&ab),
            self.mem_ptr(&t),
            self.ptr(dst),
        ];
        let n = plan.len() * dim;
        launch_per_element(self, "lerp_rows_f32_v1", n, &args)
    }

    fn run_copy_rows(
        &self,
        _: Checked,
        dim: usize,
        src: &DevBuf<L::Mem>,
        src_row: usize,
        dst: &mut DevBuf<L::Mem>,
        dst_row: usize,
        rows: usize,
    ) -> Result<()> {
        let n = rows * dim;
        if n == 0 {
            return Ok(());
        }
        let args = [
            i64_of(n),
            self.ptr_at(src, src_row * dim),
            self.ptr_at(dst, dst_row * dim),
        ];
        launch_per_element(self, "copy_rows_f32_v1", n, &args)
    }

    fn run_row_distances(&self, _: Checked, dim: usize, rows: usize, x: &DevBuf<L::Mem>) -> Result<Vec<f64>> {
        let pairs = rows.saturating_sub(1);
        if pairs == 0 {
            return Ok(Vec::new());
        }
        let out = self.temp_f64(pairs)?;
        self.distances_into(dim, rows, x, self.mem_ptr(&out))?;
        self.read_f64(&out, pairs)
    }

    fn run_neb_forces(
        &self,
        _: Checked,
        p: &NebForceParams,
        pivots: &DevBuf<L::Mem>,
        grads: &DevBuf<L::Mem>,
        energies: &[f64],
        forces: &mut DevBuf<L::Mem>,
    ) -> Result<Vec<f64>> {
        // The kernels read the climbing image after the energies (neb.cu).
        let climbing = p.climbing.map_or(-1.0, |c| c as f64);
        let e: Vec<u8> = energies
            .iter()
            .chain([&climbing])
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let e = self.temp_bytes(&e)?;
        let norms = self.temp_f64(p.pivots)?;
        self.forces_from(p, pivots, grads, &e, forces, self.mem_ptr(&norms))?;
        self.read_f64(&norms, p.pivots)
    }

    fn run_neb_forces_on_device(
        &self,
        _: Checked,
        p: &NebForceParams,
        climb: bool,
        pivots: &DevBuf<L::Mem>,
        grads: &DevBuf<L::Mem>,
        energies: &DevBuf<L::Mem>,
        forces: &mut DevBuf<L::Mem>,
        norms: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        let e = self.temp_f64(p.pivots + 1)?;
        let args = [
            i64_of(p.pivots),
            self.ptr(energies),
            Arg::I32(climb as i32),
            self.mem_ptr(&e),
        ];
        self.launch("neb_energies_f32_v1", Dims::x(1), Dims::x(32), &args)?;
        // `norms` holds P f64 as pairs of words, which is how the kernels write them.
        self.forces_from(p, pivots, grads, &e, forces, self.ptr(norms))
    }

    fn run_redistribute_rows(
        &self,
        _: Checked,
        dim: usize,
        rows: usize,
        src: &DevBuf<L::Mem>,
        energies: Option<&DevBuf<L::Mem>>,
        dst: &mut DevBuf<L::Mem>,
        lengths: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        // The segment lengths straight into `lengths` (f64 as pairs of words).
        self.distances_into(dim, rows, src, self.ptr(lengths))?;
        let (cum, ab, t) = (self.temp_f64(rows)?, self.temp_f64(rows)?, self.temp_f64(rows)?);
        let e = energies.map_or(Arg::Ptr(0), |e| self.ptr(e));
        let args = [
            i64_of(rows),
            self.ptr(lengths),
            e,
            self.mem_ptr(&ab),
            self.mem_ptr(&t),
            self.mem_ptr(&cum),
        ];
        self.launch("neb_plan_f64_v1", Dims::x(1), Dims::x(32), &args)?;
        let args = [
            i64_of(rows),
            i64_of(dim),
            self.ptr(src),
            self.mem_ptr(&ab),
            self.mem_ptr(&t),
            self.ptr(dst),
        ];
        launch_per_element(self, "lerp_rows_f32_v1", rows * dim, &args)
    }
}

impl<L: Launcher> KernelBackend<L> {
    /// The `rows − 1` segment lengths of `x` as f64 at `out`.
    fn distances_into(&self, dim: usize, rows: usize, x: &DevBuf<L::Mem>, out: Arg) -> Result<()> {
        let pairs = rows.saturating_sub(1);
        let args = [i64_of(rows), i64_of(dim), self.ptr(x), out];
        if self.fast() {
            self.launch(
                "row_distances_f32_v2",
                Dims::x(blocks_for(pairs, 1)),
                Dims::x(BLOCK),
                &args,
            )
        } else {
            launch_per_element(self, "row_distances_f32_v1", pairs, &args)
        }
    }

    /// The forces from energies (and the climbing image after them) already on the device at
    /// `e`; the P norms as f64 at `norms`.
    fn forces_from(
        &self,
        p: &NebForceParams,
        pivots: &DevBuf<L::Mem>,
        grads: &DevBuf<L::Mem>,
        e: &L::Mem,
        forces: &mut DevBuf<L::Mem>,
        norms: Arg,
    ) -> Result<()> {
        let (has_spring, k) = (Arg::I32(p.spring.is_some() as i32), Arg::F32(p.spring.unwrap_or(0.0)));
        if self.fast() && p.dim > 0 {
            return self.neb_forces_v2(p, pivots, grads, e, [has_spring, k], forces, norms);
        }
        let args = [
            i64_of(p.pivots),
            i64_of(p.dim),
            self.ptr(pivots),
            self.ptr(grads),
            self.mem_ptr(e),
            has_spring,
            k,
            self.ptr(forces),
            norms,
        ];
        self.launch(
            "neb_forces_f32_v1",
            Dims::x(blocks_for(p.pivots, 1)),
            Dims::x(BLOCK),
            &args,
        )
    }

    /// The four launches of the v2 forces (see neb.cu); `spring` is (has_spring, k).
    #[allow(clippy::too_many_arguments)]
    fn neb_forces_v2(
        &self,
        p: &NebForceParams,
        pivots: &DevBuf<L::Mem>,
        grads: &DevBuf<L::Mem>,
        e: &L::Mem,
        spring: [Arg; 2],
        forces: &mut DevBuf<L::Mem>,
        norms: Arg,
    ) -> Result<()> {
        let chunks = p.dim.div_ceil(NEB_CHUNK);
        let rows = u32::try_from(p.pivots).ok().filter(|&r| r <= 65_535);
        let (Some(rows), Ok(nc)) = (rows, i32::try_from(chunks)) else {
            return Err(mep_tensor::TensorError::Invalid {
                op: "neb_forces",
                msg: format!(
                    "{} pivots of {} elements: the v2 grid holds at most 65535 pivots and 2^31 chunks",
                    p.pivots, p.dim
                ),
            });
        };
        let grid = Dims::xyz(chunks as u32, rows, 1);
        let (part1, part2, part3) = (
            self.temp_f64(p.pivots * chunks * 2)?,
            self.temp_f64(p.pivots * chunks * 6)?,
            self.temp_f64(p.pivots * chunks)?,
        );
        let (np, d, c) = (i64_of(p.pivots), i64_of(p.dim), i64_of(NEB_CHUNK));
        let (x, g, e) = (self.ptr(pivots), self.ptr(grads), self.mem_ptr(e));
        let (m1, m2, m3) = (self.mem_ptr(&part1), self.mem_ptr(&part2), self.mem_ptr(&part3));
        let block = Dims::x(BLOCK);
        self.launch("neb_partials_f32_v2", grid, block, &[np, d, c, x, m1])?;
        self.launch("neb_measure_f32_v2", grid, block, &[np, d, c, x, g, e, m1, m2])?;
        let [has_spring, k] = spring;
        let f = self.ptr(forces);
        let args = [np, d, c, x, g, e, m1, m2, has_spring, k, f, m3];
        self.launch("neb_forces_f32_v2", grid, block, &args)?;
        let args = [np, Arg::I32(nc), m3, norms];
        self.launch("neb_norms_f32_v2", Dims::x(blocks_for(p.pivots, BLOCK)), block, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traffic_model_counts_rows() {
        // 34 rows of a 56×56×256 layer: the minimum is 34 + 32 + 34 rows of 4 bytes each.
        let d = 256 * 56 * 56;
        let t = neb_forces_traffic(34, d, false);
        assert_eq!(t.min_bytes, 100.0 * 4.0 * d as f64);
        let ratio = t.bytes / t.min_bytes;
        assert!((3.8..4.0).contains(&ratio), "{ratio}");
        let v2 = neb_forces_traffic(34, d, true);
        // Every block re-adds its pivot's chunk partials: 196 chunks cost v2 8 % more.
        assert!(v2.bytes > t.bytes && v2.bytes / t.bytes < 1.1, "{v2:?} vs {t:?}");
    }
}
