//! linear.cu: linear layers, `y = x·wᵀ + b` and its gradients, on the tiled SGEMM (v2) or one
//! thread per output (v1); in TF32 or bf16 (the backend's precision) on the tensor-core
//! GEMMs (v3), whichever kernel set is chosen.

use crate::backend::{i32_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::conv::{tile_grid, TILE_THREADS};
use crate::ops::{launch_per_element, opt_ptr, ptrs};
use mep_tensor::precision::Precision;
use mep_tensor::{Checked, Linear, Memory, Result};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// `n`, `k`, `m` as the kernels' ints.
fn dims(op: &'static str, n: usize, k: usize, m: usize) -> Result<[Arg; 3]> {
    Ok([i32_of(op, "n", n)?, i32_of(op, "k", k)?, i32_of(op, "m", m)?])
}

/// Whether `kb` runs the GEMMs (the fast kernels, or a tensor-core precision, which has no
/// one-thread-per-output version).
fn tiled<L: Launcher>(kb: &KernelBackend<L>) -> bool {
    kb.fast() || kb.precision() != Precision::Fp32
}

/// `C[rows×cols] = op(A)·op(B) (+ bias)` with GEMM `base` (`gemm_nt`, `gemm_nn`, `gemm_tn`):
/// v2 in fp32, the v3 of the backend's precision otherwise.
#[allow(clippy::too_many_arguments)]
fn gemm<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    base: &str,
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
    let name = match kb.precision() {
        Precision::Fp32 => format!("{base}_f32_v2"),
        p => format!("{base}_{p}_v3"),
    };
    kb.launch(&name, tile_grid(op, rows, cols, 1)?, Dims::x(TILE_THREADS), &args)
}

/// The v1 kernel `name`, one thread per element of `out`, on `d` (`n`, `k`, `m`), `ins` and
/// `out`'s address.
fn simple<L: Launcher>(kb: &KernelBackend<L>, name: &str, d: [Arg; 3], ins: &[Arg], out: &B<L>) -> Result<()> {
    let args = [&d[..], ins, &[kb.ptr(out)]].concat();
    launch_per_element(kb, name, out.len, &args)
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
        if tiled(self) {
            return gemm(self, OP, "gemm_nt", (n, m, k), x, w, bias, y);
        }
        simple(
            self,
            "linear_f32_v1",
            d,
            &[self.ptr(x), self.ptr(w), opt_ptr(self, bias)],
            y,
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
        if tiled(self) {
            return gemm(self, OP, "gemm_nn", (n, k, m), dy, w, None, dx);
        }
        simple(self, "linear_bwd_input_f32_v1", d, &ptrs(self, [dy, w]), dx)
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
            if tiled(self) {
                gemm(self, OP, "gemm_tn", (m, k, n), dy, x, None, dw)?;
            } else {
                simple(self, "linear_bwd_weight_f32_v1", d, &ptrs(self, [x, dy]), dw)?;
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
            launch_per_element(self, "col_sum_f32_v1", m, &args)
        }
    }
}
