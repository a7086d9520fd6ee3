//! gemm.cu: linear layers, `y = x·wᵀ + b` and its gradients, on the tiled SGEMM (v2) or one
//! thread per output (v1).

use crate::backend::{blocks_for, i32_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::conv::{opt_ptr, tile_grid, TILE_THREADS};
use crate::ops::pointwise::BLOCK;
use mep_tensor::cpu::check_opt_len;
use mep_tensor::{check_len, Result};

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

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear<L: Launcher>(
    kb: &KernelBackend<L>,
    n: usize,
    k: usize,
    m: usize,
    x: &B<L>,
    w: &B<L>,
    bias: Option<&B<L>>,
    y: &mut B<L>,
) -> Result<()> {
    const OP: &str = "linear";
    check_len(OP, "x", n * k, x.len)?;
    check_len(OP, "w", m * k, w.len)?;
    check_opt_len(OP, "bias", m, bias.map(|b| b.len))?;
    check_len(OP, "y", n * m, y.len)?;
    let d = dims(OP, n, k, m)?;
    if y.len == 0 {
        return Ok(());
    }
    if kb.fast() {
        return gemm(kb, OP, "gemm_nt_f32_v2", (n, m, k), x, w, bias, y);
    }
    let args = [d[0], d[1], d[2], kb.ptr(x), kb.ptr(w), opt_ptr(kb, bias), kb.ptr(y)];
    kb.launch(
        "linear_f32_v1",
        Dims::x(blocks_for(y.len, BLOCK)),
        Dims::x(BLOCK),
        &args,
    )
}

pub(crate) fn linear_bwd_input<L: Launcher>(
    kb: &KernelBackend<L>,
    n: usize,
    k: usize,
    m: usize,
    dy: &B<L>,
    w: &B<L>,
    dx: &mut B<L>,
) -> Result<()> {
    const OP: &str = "linear_bwd_input";
    check_len(OP, "dy", n * m, dy.len)?;
    check_len(OP, "w", m * k, w.len)?;
    check_len(OP, "dx", n * k, dx.len)?;
    let d = dims(OP, n, k, m)?;
    if dx.len == 0 {
        return Ok(());
    }
    if kb.fast() {
        return gemm(kb, OP, "gemm_nn_f32_v2", (n, k, m), dy, w, None, dx);
    }
    let args = [d[0], d[1], d[2], kb.ptr(dy), kb.ptr(w), kb.ptr(dx)];
    kb.launch(
        "linear_bwd_input_f32_v1",
        Dims::x(blocks_for(dx.len, BLOCK)),
        Dims::x(BLOCK),
        &args,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bwd_weight<L: Launcher>(
    kb: &KernelBackend<L>,
    n: usize,
    k: usize,
    m: usize,
    x: &B<L>,
    dy: &B<L>,
    dw: &mut B<L>,
    db: Option<&mut B<L>>,
) -> Result<()> {
    const OP: &str = "linear_bwd_weight";
    check_len(OP, "x", n * k, x.len)?;
    check_len(OP, "dy", n * m, dy.len)?;
    check_len(OP, "dw", m * k, dw.len)?;
    check_opt_len(OP, "db", m, db.as_ref().map(|b| b.len))?;
    let d = dims(OP, n, k, m)?;
    if dw.len > 0 {
        if kb.fast() {
            gemm(kb, OP, "gemm_tn_f32_v2", (m, k, n), dy, x, None, dw)?;
        } else {
            let args = [d[0], d[1], d[2], kb.ptr(x), kb.ptr(dy), kb.ptr(dw)];
            kb.launch(
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
    let args = [d[0], d[2], kb.ptr(dy), kb.ptr(db)];
    if kb.fast() {
        // 32 columns × 8 row groups per block: each warp reads 32 consecutive floats of a row.
        kb.launch(
            "col_sum_f32_v2",
            Dims::x(m.div_ceil(32) as u32),
            Dims::xyz(32, 8, 1),
            &args,
        )
    } else {
        kb.launch("col_sum_f32_v1", Dims::x(blocks_for(m, BLOCK)), Dims::x(BLOCK), &args)
    }
}
