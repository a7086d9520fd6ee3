//! pool.cu: max pool, global average pool, nearest 2x upsampling, the option-A shortcut.

use crate::backend::{blocks_for, i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::pointwise::BLOCK;
use mep_tensor::{check_len, Backend, Nchw, Pool2dGeom, Result};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// Output tile of `max_pool2d_f32_v2` (rows, columns; one thread each) and the capacity of its
/// staged input tile in floats: pool.cu's `POOL_TH`, `POOL_TW`, `POOL_TILE`.
const TILE_H: usize = 8;
const TILE_W: usize = 32;
const TILE_CAPACITY: usize = 4096;
/// Planes per block of `global_avg_pool_f32_v2` (one warp each).
const GAP_PLANES_PER_BLOCK: usize = BLOCK as usize / 32;

/// One thread per element of `n` (`n` > 0).
fn per_element(n: usize) -> Dims {
    Dims::x(blocks_for(n, BLOCK))
}

/// `(planes, h, w, k, stride, pad, oh, ow)`, the leading arguments of the max-pool kernels.
fn pool_args(op: &'static str, g: &Pool2dGeom) -> Result<[Arg; 8]> {
    let s = &g.input;
    Ok([
        i64_of(s.n * s.c),
        i64_of(s.h),
        i64_of(s.w),
        i32_of(op, "kernel size", g.k)?,
        i32_of(op, "stride", g.stride)?,
        i32_of(op, "padding", g.pad)?,
        i64_of(g.out_h()),
        i64_of(g.out_w()),
    ])
}

/// The grid of `max_pool2d_f32_v2` (planes, tiles of a plane), or `None` when its input tile
/// would not fit the shared buffer or the grid its limits (v1 runs instead).
fn tiled_grid(g: &Pool2dGeom) -> Option<Dims> {
    let th = (TILE_H - 1) * g.stride + g.k;
    let tw = (TILE_W - 1) * g.stride + g.k;
    let planes = g.input.n * g.input.c;
    let tiles = g.out_h().div_ceil(TILE_H) * g.out_w().div_ceil(TILE_W);
    let fits = th.checked_mul(tw).is_some_and(|t| t <= TILE_CAPACITY);
    (fits && planes <= i32::MAX as usize && tiles <= 65535).then(|| Dims::xyz(planes as u32, tiles as u32, 1))
}

pub(crate) fn max_pool2d<L: Launcher>(kb: &KernelBackend<L>, g: &Pool2dGeom, x: &B<L>, y: &mut B<L>) -> Result<()> {
    const OP: &str = "max_pool2d";
    g.validate(OP)?;
    check_len(OP, "x", g.input.numel(), x.len)?;
    check_len(OP, "y", g.output().numel(), y.len)?;
    if y.len == 0 {
        return Ok(());
    }
    let mut args = pool_args(OP, g)?.to_vec();
    args.extend([kb.ptr(x), kb.ptr(y)]);
    match tiled_grid(g).filter(|_| kb.fast()) {
        Some(grid) => kb.launch("max_pool2d_f32_v2", grid, Dims::x((TILE_H * TILE_W) as u32), &args),
        None => kb.launch("max_pool2d_f32_v1", per_element(y.len), Dims::x(BLOCK), &args),
    }
}

pub(crate) fn max_pool2d_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    g: &Pool2dGeom,
    x: &B<L>,
    dy: &B<L>,
    dx: &mut B<L>,
) -> Result<()> {
    const OP: &str = "max_pool2d_bwd";
    g.validate(OP)?;
    check_len(OP, "x", g.input.numel(), x.len)?;
    check_len(OP, "dy", g.output().numel(), dy.len)?;
    check_len(OP, "dx", g.input.numel(), dx.len)?;
    if dx.len == 0 {
        return Ok(());
    }
    let head = pool_args(OP, g)?;
    // The argmaxes are ints within a plane.
    if kb.fast() && g.input.hw() <= i32::MAX as usize {
        let arg = Backend::alloc(kb, dy.len)?;
        let args: Vec<Arg> = head.into_iter().chain([kb.ptr(x), kb.ptr(&arg)]).collect();
        kb.launch("max_pool2d_argmax_f32_v2", per_element(dy.len), Dims::x(BLOCK), &args)?;
        let args: Vec<Arg> = head.into_iter().chain([kb.ptr(&arg), kb.ptr(dy), kb.ptr(dx)]).collect();
        kb.launch("max_pool2d_bwd_f32_v2", per_element(dx.len), Dims::x(BLOCK), &args)
    } else {
        let args: Vec<Arg> = head.into_iter().chain([kb.ptr(x), kb.ptr(dy), kb.ptr(dx)]).collect();
        kb.launch("max_pool2d_bwd_f32_v1", per_element(dx.len), Dims::x(BLOCK), &args)
    }
}

pub(crate) fn global_avg_pool<L: Launcher>(kb: &KernelBackend<L>, s: &Nchw, x: &B<L>, y: &mut B<L>) -> Result<()> {
    check_len("global_avg_pool", "x", s.numel(), x.len)?;
    check_len("global_avg_pool", "y", s.n * s.c, y.len)?;
    let planes = s.n * s.c;
    if planes == 0 {
        return Ok(());
    }
    let args = [i64_of(planes), i64_of(s.hw()), kb.ptr(x), kb.ptr(y)];
    if kb.fast() {
        let grid = Dims::x(blocks_for(planes, GAP_PLANES_PER_BLOCK as u32));
        kb.launch("global_avg_pool_f32_v2", grid, Dims::x(BLOCK), &args)
    } else {
        kb.launch("global_avg_pool_f32_v1", per_element(planes), Dims::x(BLOCK), &args)
    }
}

pub(crate) fn global_avg_pool_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    s: &Nchw,
    dy: &B<L>,
    dx: &mut B<L>,
) -> Result<()> {
    check_len("global_avg_pool_bwd", "dy", s.n * s.c, dy.len)?;
    check_len("global_avg_pool_bwd", "dx", s.numel(), dx.len)?;
    if dx.len == 0 {
        return Ok(());
    }
    let args = [i64_of(s.n * s.c), i64_of(s.hw()), kb.ptr(dy), kb.ptr(dx)];
    kb.launch("global_avg_pool_bwd_f32_v1", per_element(dx.len), Dims::x(BLOCK), &args)
}

pub(crate) fn upsample_nearest2x<L: Launcher>(kb: &KernelBackend<L>, s: &Nchw, x: &B<L>, y: &mut B<L>) -> Result<()> {
    check_len("upsample_nearest2x", "x", s.numel(), x.len)?;
    check_len("upsample_nearest2x", "y", 4 * s.numel(), y.len)?;
    if y.len == 0 {
        return Ok(());
    }
    let args = [i64_of(s.n * s.c), i64_of(s.h), i64_of(s.w), kb.ptr(x), kb.ptr(y)];
    kb.launch("upsample_nearest2x_f32_v1", per_element(y.len), Dims::x(BLOCK), &args)
}

pub(crate) fn upsample_nearest2x_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    s: &Nchw,
    dy: &B<L>,
    dx: &mut B<L>,
) -> Result<()> {
    check_len("upsample_nearest2x_bwd", "dy", 4 * s.numel(), dy.len)?;
    check_len("upsample_nearest2x_bwd", "dx", s.numel(), dx.len)?;
    if dx.len == 0 {
        return Ok(());
    }
    let args = [i64_of(s.n * s.c), i64_of(s.h), i64_of(s.w), kb.ptr(dy), kb.ptr(dx)];
    kb.launch(
        "upsample_nearest2x_bwd_f32_v1",
        per_element(dx.len),
        Dims::x(BLOCK),
        &args,
    )
}

/// `(n, c, h, w, subsample, pad, oh, ow)`, the leading arguments of the shortcut kernels.
fn shortcut_args(s: &Nchw, subsample: bool, pad: usize) -> [Arg; 8] {
    let o = s.shortcut_pad(subsample, pad);
    [
        i64_of(s.n),
        i64_of(s.c),
        i64_of(s.h),
        i64_of(s.w),
        Arg::I32(subsample as i32),
        i64_of(pad),
        i64_of(o.h),
        i64_of(o.w),
    ]
}

pub(crate) fn shortcut_pad<L: Launcher>(
    kb: &KernelBackend<L>,
    s: &Nchw,
    subsample: bool,
    pad: usize,
    x: &B<L>,
    y: &mut B<L>,
) -> Result<()> {
    let out = s.shortcut_pad(subsample, pad);
    check_len("shortcut_pad", "x", s.numel(), x.len)?;
    check_len("shortcut_pad", "y", out.numel(), y.len)?;
    if y.len == 0 {
        return Ok(());
    }
    let args: Vec<Arg> = shortcut_args(s, subsample, pad)
        .into_iter()
        .chain([kb.ptr(x), kb.ptr(y)])
        .collect();
    kb.launch("shortcut_pad_f32_v1", per_element(y.len), Dims::x(BLOCK), &args)
}

pub(crate) fn shortcut_pad_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    s: &Nchw,
    subsample: bool,
    pad: usize,
    dy: &B<L>,
    dx: &mut B<L>,
) -> Result<()> {
    let out = s.shortcut_pad(subsample, pad);
    check_len("shortcut_pad_bwd", "dy", out.numel(), dy.len)?;
    check_len("shortcut_pad_bwd", "dx", s.numel(), dx.len)?;
    if dx.len == 0 {
        return Ok(());
    }
    let args: Vec<Arg> = shortcut_args(s, subsample, pad)
        .into_iter()
        .chain([kb.ptr(dy), kb.ptr(dx)])
        .collect();
    kb.launch("shortcut_pad_bwd_f32_v1", per_element(dx.len), Dims::x(BLOCK), &args)
}
