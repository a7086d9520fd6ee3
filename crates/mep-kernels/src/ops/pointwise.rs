//! elementwise.cu and reduce.cu.

use crate::backend::{blocks_for, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use mep_tensor::cpu::check_act;
use mep_tensor::{check_len, Act, Result};

/// Threads per block of the pointwise kernels.
pub(crate) const BLOCK: u32 = 256;
/// Most blocks a grid-stride (v2) kernel gets: enough to fill an H200's 132 SMs several times.
pub(crate) const MAX_STRIDE_BLOCKS: u32 = 4096;

/// Launches pointwise kernel `base` (`<base>_v1` one thread per element, or `<base>_v2`
/// grid-stride) over `n` elements.
pub(crate) fn launch_n<L: Launcher>(kb: &KernelBackend<L>, base: &str, n: usize, args: &[Arg]) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let (name, grid) = if kb.fast() {
        (format!("{base}_v2"), blocks_for(n, BLOCK).min(MAX_STRIDE_BLOCKS))
    } else {
        (format!("{base}_v1"), blocks_for(n, BLOCK))
    };
    kb.launch(&name, Dims::x(grid), Dims::x(BLOCK), args)
}

/// `act` as the kernels' `(int act, float slope)` (elementwise.cu's codes).
pub(crate) fn act_args(act: Act) -> [Arg; 2] {
    let (code, slope) = match act {
        Act::Identity => (0, 0.0),
        Act::Relu => (1, 0.0),
        Act::LeakyRelu(s) => (2, s),
        Act::Sigmoid => (3, 0.0),
    };
    [Arg::I32(code), Arg::F32(slope)]
}

pub(crate) fn fill<L: Launcher>(kb: &KernelBackend<L>, y: &mut DevBuf<L::Mem>, value: f32) -> Result<()> {
    launch_n(kb, "fill_f32", y.len, &[i64_of(y.len), Arg::F32(value), kb.ptr(y)])
}

pub(crate) fn activation<L: Launcher>(
    kb: &KernelBackend<L>,
    act: Act,
    x: &DevBuf<L::Mem>,
    y: &mut DevBuf<L::Mem>,
) -> Result<()> {
    check_act("activation", act)?;
    check_len("activation", "y", x.len, y.len)?;
    let [code, slope] = act_args(act);
    launch_n(
        kb,
        "act_fwd_f32",
        x.len,
        &[i64_of(x.len), code, slope, kb.ptr(x), kb.ptr(y)],
    )
}

pub(crate) fn activation_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    act: Act,
    y: &DevBuf<L::Mem>,
    dy: &DevBuf<L::Mem>,
    dx: &mut DevBuf<L::Mem>,
) -> Result<()> {
    check_act("activation_bwd", act)?;
    check_len("activation_bwd", "dy", y.len, dy.len)?;
    check_len("activation_bwd", "dx", y.len, dx.len)?;
    let [code, slope] = act_args(act);
    let args = [i64_of(y.len), code, slope, kb.ptr(y), kb.ptr(dy), kb.ptr(dx)];
    launch_n(kb, "act_bwd_f32", y.len, &args)
}

pub(crate) fn add<L: Launcher>(
    kb: &KernelBackend<L>,
    a: &DevBuf<L::Mem>,
    b: &DevBuf<L::Mem>,
    y: &mut DevBuf<L::Mem>,
) -> Result<()> {
    check_len("add", "b", a.len, b.len)?;
    check_len("add", "y", a.len, y.len)?;
    launch_n(kb, "add_f32", a.len, &[i64_of(a.len), kb.ptr(a), kb.ptr(b), kb.ptr(y)])
}

pub(crate) fn add_assign<L: Launcher>(kb: &KernelBackend<L>, y: &mut DevBuf<L::Mem>, x: &DevBuf<L::Mem>) -> Result<()> {
    check_len("add_assign", "x", y.len, x.len)?;
    launch_n(kb, "add_assign_f32", y.len, &[i64_of(y.len), kb.ptr(y), kb.ptr(x)])
}

pub(crate) fn axpy<L: Launcher>(
    kb: &KernelBackend<L>,
    alpha: f32,
    x: &DevBuf<L::Mem>,
    y: &mut DevBuf<L::Mem>,
) -> Result<()> {
    check_len("axpy", "y", x.len, y.len)?;
    launch_n(
        kb,
        "axpy_f32",
        x.len,
        &[i64_of(x.len), Arg::F32(alpha), kb.ptr(x), kb.ptr(y)],
    )
}

pub(crate) fn scale<L: Launcher>(kb: &KernelBackend<L>, alpha: f32, x: &mut DevBuf<L::Mem>) -> Result<()> {
    launch_n(kb, "scale_f32", x.len, &[i64_of(x.len), Arg::F32(alpha), kb.ptr(x)])
}

/// Runs reduction `base` into one f64 accumulator and reads it back.
fn reduce<L: Launcher>(kb: &KernelBackend<L>, base: &str, n: usize, bufs: &[Arg]) -> Result<f64> {
    let out = kb.temp_f64_zeros(1)?;
    let mut args = vec![i64_of(n)];
    args.extend_from_slice(bufs);
    args.push(kb.mem_ptr(&out));
    launch_n(kb, base, n, &args)?;
    Ok(kb.read_f64(&out, 1)?[0])
}

pub(crate) fn dot<L: Launcher>(kb: &KernelBackend<L>, x: &DevBuf<L::Mem>, y: &DevBuf<L::Mem>) -> Result<f64> {
    check_len("dot", "y", x.len, y.len)?;
    reduce(kb, "dot_f32", x.len, &[kb.ptr(x), kb.ptr(y)])
}

pub(crate) fn norm<L: Launcher>(kb: &KernelBackend<L>, x: &DevBuf<L::Mem>) -> Result<f64> {
    Ok(reduce(kb, "sumsq_f32", x.len, &[kb.ptr(x)])?.sqrt())
}
