//! linear.cu: linear layers, `y = x·wᵀ + b` and its gradients, on the tiled SGEMM (v2) or one
//! thread per output (v1).

use crate::backend::{blocks_for, i32_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::conv::{opt_ptr, tile_grid, TILE_THREADS};
use crate::ops::elementwise::BLOCK;
use mep_tensor::{Checked, Linear, Result};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// `n`, `k`, `m` as the kernels' ints.
fn dims(op: &'static str, n: usize, k: usize, m: usize) -> Result<[Arg; 3]> {
    Ok([i32_of(op, "n", n)?, i32_of(op, "k", k)?, i32_of(op, "m", m)?])
}

/// `C[rows×cols] = op(A)·op(B) (+ bias)` with v2 kernel `name` (`gemm_nt`, `gemm_nn`, `gemm_tn`).
#[allow(clippy::too_many_arguments)]
fn gemm<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    name: &str,
    (rows, cols, depth): (usize, usize, usize),
    a: &B<L>,
    b: &B<L>,
    bias: Option<&B<L>>,
    c: &mut B<L>,
) -> Result<()> {
    let args = [
        i32_of(op, "rows", rows)?,
        i32_of(op, "cols", cols)?,
        i32_of(op, "depth", depth)?,
        kb.ptr(a),
        kb.ptr(b),
        opt_ptr(kb, bias),
        kb.ptr(c),
    ];
    kb.launch(name, tile_grid(op, rows, cols, 1)?, Dims::x(TILE_THREADS), &args)
}

impl<L: Launcher> Linear for KernelBackend<L> {
    fn run_linear(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        x: &B<L>,
        w: &B<L>,
        bias: Option<&B<L>>,
        y: &mut B<L>,
    ) -> Result<()> {
        const OP: &str = "linear";
        let d = dims(OP, n, k, m)?;
        if y.len == 0 {
            return Ok(());
        }
        if self.fast() {
            return gemm(self, OP, "gemm_nt_f32_v2", (n, m, k), x, w, bias, y);
        }
        let args = [
            d[0],
            d[1],
            d[2],
            self.ptr(x),
            self.ptr(w),
            opt_ptr(self, bias),
            self.ptr(y),
        ];
        self.launch(
            "linear_f32_v1",
            Dims::x(blocks_for(y.len, BLOCK)),
            Dims::x(BLOCK),
            &args,
        )
    }

    fn run_linear_bwd_input(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        dy: &B<L>,
        w: &B<L>,
        dx: &mut B<L>,
    ) -> Result<()> {
        const OP: &str = "linear_bwd_input";
        let d = dims(OP, n, k, m)?;
        if dx.len == 0 {
            return Ok(());
        }
        if self.fast() {
            return gemm(self, OP, "gemm_nn_f32_v2", (n, k, m), dy, w, None, dx);
        }
        let args = [d[0], d[1], d[2], self.ptr(dy), self.ptr(w), self.ptr(dx)];
        self.launch(
            "linear_bwd_input_f32_v1",
            Dims::x(blocks_for(dx.len, BLOCK)),
            Dims::x(BLOCK),
            &args,
        )
    }

    fn run_linear_bwd_weight(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        x: &B<L>,
        dy: &B<L>,
        dw: &mut B<L>,
        db: Option<&mut B<L>>,
    ) -> Result<()> {
        const OP: &str = "linear_bwd_weight";
        let d = dims(OP, n, k, m)?;
        if dw.len > 0 {
            if self.fast() {
                gemm(self, OP, "gemm_tn_f32_v2", (m, k, n), dy, x, None, dw)?;
            } else {
                let args = [d[0], d[1], d[2], self.ptr(x), self.ptr(dy), self.ptr(dw)];
                self.launch(
                    "linear_bwd_weight_f32_v1",
                    Dims::x(blocks_for(dw.len, BLOCK)),
                    Dims::x(BLOCK),
                    &args,
                )?;
            }
        }
        let Some(db) = db else { return Ok(()) };
        if m == 0 {
            return Ok(());
        }
        let args = [d[0], d[2], self.ptr(dy), self.ptr(db)];
        if self.fast() {
            // 32 columns × 8 row groups per block: each warp reads 32 consecutive floats of a row.
            self.launch(
                "col_sum_f32_v2",
                Dims::x(m.div_ceil(32) as u32),
                Dims::xyz(32, 8, 1),
                &args,
            )
        } else {
            self.launch("col_sum_f32_v1", Dims::x(blocks_for(m, BLOCK)), Dims::x(BLOCK), &args)
        }
    }
}
