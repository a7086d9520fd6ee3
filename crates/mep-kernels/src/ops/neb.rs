//! neb.cu: the path never leaves the device; only P energies go in and P norms come out.

use crate::backend::{blocks_for, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::elementwise::BLOCK;
use crate::ops::launch_per_element;
use mep_tensor::{Checked, Lerp, Neb, NebForceParams, Result};

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
        let args = [i64_of(rows), i64_of(dim), self.ptr(x), self.mem_ptr(&out)];
        if self.fast() {
            self.launch(
                "row_distances_f32_v2",
                Dims::x(blocks_for(pairs, 1)),
                Dims::x(BLOCK),
                &args,
            )?;
        } else {
            launch_per_element(self, "row_distances_f32_v1", pairs, &args)?;
        }
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
        let e: Vec<u8> = energies.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let e = self.temp_bytes(&e)?;
        let norms = self.temp_f64(p.pivots)?;
        let args = [
            i64_of(p.pivots),
            i64_of(p.dim),
            self.ptr(pivots),
            self.ptr(grads),
            self.mem_ptr(&e),
            Arg::I32(p.spring.is_some() as i32),
            Arg::F32(p.spring.unwrap_or(0.0)),
            Arg::I32(p.climbing.map_or(-1, |c| c as i32)),
            self.ptr(forces),
            self.mem_ptr(&norms),
        ];
        self.launch(
            "neb_forces_f32_v1",
            Dims::x(blocks_for(p.pivots, 1)),
            Dims::x(BLOCK),
            &args,
        )?;
        self.read_f64(&norms, p.pivots)
    }
}
