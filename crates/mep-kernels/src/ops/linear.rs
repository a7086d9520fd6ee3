//! linear.cu: linear layers, `y = x·wᵀ + b` and its gradients, on the tiled SGEMM (v2) or one
//! thread per output (v1); in TF32 or bf16 (the backend's precision) on the tensor-core
//! GEMMs: v4 (operands staged by cp.async) with the fast kernels where its 16-byte copies
//! fit, v3 (staged through registers) otherwise and with the simple set, so that tests run
//! both.

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

/// Whether GEMM `base`'s v4 can stage its operands with 16-byte cp.async copies: every
/// leading dimension (`depth` for a k-contiguous operand, `rows` or `cols` for a
/// row-contiguous one) a multiple of 4 floats, and both operands 16-byte aligned.
pub(crate) fn copies_fit(base: &str, (rows, cols, depth): (usize, usize, usize), a: Arg, b: Arg) -> bool {
    let lds: &[usize] = match base {
        "gemm_nt" => &[depth],
        "gemm_nn" => &[depth, cols],
        _ => &[rows, cols],
    };
    let aligned = |p: Arg| matches!(p, Arg::Ptr(p) if p % 16 == 0);
    lds.iter().all(|ld| ld % 4 == 0) && aligned(a) && aligned(b)
}

/// The kernel of GEMM `base` in precision `p`: v2 in fp32; in TF32 or bf16 v4 when `fast`
/// and its `copies_fit`, else v3.
pub(crate) fn gemm_kernel(base: &str, p: Precision, fast: bool, copies_fit: bool) -> String {
    match p {
        Precision::Fp32 => format!("{base}_f32_v2"),
        p if fast && copies_fit => format!("{base}_{p}_v4"),
        p => format!("{base}_{p}_v3"),
    }
}

/// `C[rows×cols] = op(A)·op(B) (+ bias)` with GEMM `base` (`gemm_nt`, `gemm_nn`, `gemm_tn`),
/// the kernel [`gemm_kernel`] picks.
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
    let fit = copies_fit(base, (rows, cols, depth), args[3], args[4]);
    let name = gemm_kernel(base, kb.precision(), kb.fast(), fit);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_runs_where_its_copies_fit_and_v3_elsewhere() {
        let (p16, p4) = (Arg::Ptr(256), Arg::Ptr(260));
        assert!(copies_fit("gemm_nt", (3, 5, 8), p16, p16));
        assert!(!copies_fit("gemm_nt", (4, 4, 6), p16, p16));
        assert!(!copies_fit("gemm_nt", (4, 4, 8), p16, p4));
        assert!(copies_fit("gemm_nn", (3, 4, 8), p16, p16));
        assert!(!copies_fit("gemm_nn", (4, 6, 8), p16, p16));
        assert!(copies_fit("gemm_tn", (4, 8, 3), p16, p16));
        assert!(!copies_fit("gemm_tn", (6, 8, 4), p16, p16));
        assert_eq!(gemm_kernel("gemm_nn", Precision::Tf32, true, true), "gemm_nn_tf32_v4");
        assert_eq!(gemm_kernel("gemm_nn", Precision::Bf16, false, true), "gemm_nn_bf16_v3");
        assert_eq!(gemm_kernel("gemm_tn", Precision::Bf16, true, false), "gemm_tn_bf16_v3");
        assert_eq!(gemm_kernel("gemm_nt", Precision::Fp32, true, true), "gemm_nt_f32_v2");
    }
}
