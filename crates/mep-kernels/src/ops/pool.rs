//! pool.cu: max pool, global average pool, nearest 2x upsampling, the option-A shortcut.

use crate::backend::{blocks_for, i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::elementwise::BLOCK;
use crate::ops::{launch_per_element, ptrs};
use mep_tensor::{Checked, Memory, Nchw, Pool, Pool2dGeom, Result};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// Output tile of `max_pool2d_f32_v2` (rows, columns; one thread each) and the capacity of its
/// staged input tile in floats: pool.cu's `POOL_TH`, `POOL_TW`, `POOL_TILE`.
const TILE_H: usize = 8;
const TILE_W: usize = 32;
const TILE_CAPACITY: usize = 4096;
/// Planes per block of `global_avg_pool_f32_v2` (one warp each).
const GAP_PLANES_PER_BLOCK: usize = BLOCK as usize / 32;

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

/// Launches `kernel`, one thread per element of `dst`, on `head` and the addresses of `src` and
/// `dst`; nothing when `dst` is empty.
fn per_output<L: Launcher>(
    kb: &KernelBackend<L>,
    kernel: &str,
    head: &[Arg],
    src: &B<L>,
    dst: &mut B<L>,
) -> Result<()> {
    if dst.len == 0 {
        return Ok(());
    }
    let args = [head, &ptrs(kb, [src, dst])].concat();
    launch_per_element(kb, kernel, dst.len, &args)
}

impl<L: Launcher> Pool for KernelBackend<L> {
    fn run_max_pool2d(&self, _: Checked, g: &Pool2dGeom, x: &B<L>, y: &mut B<L>) -> Result<()> {
        const OP: &str = "max_pool2d";
        if y.len == 0 {
            return Ok(());
        }
        let mut args = pool_args(OP, g)?.to_vec();
        args.extend([self.ptr(x), self.ptr(y)]);
        match tiled_grid(g).filter(|_| self.fast()) {
            Some(grid) => self.launch("max_pool2d_f32_v2", grid, Dims::x((TILE_H * TILE_W) as u32), &args),
            None => launch_per_element(self, "max_pool2d_f32_v1", y.len, &args),
        }
    }

    fn run_max_pool2d_bwd(&self, _: Checked, g: &Pool2dGeom, x: &B<L>, dy: &B<L>, dx: &mut B<L>) -> Result<()> {
        const OP: &str = "max_pool2d_bwd";
        if dx.len == 0 {
            return Ok(());
        }
        let head = pool_args(OP, g)?;
        // The argmaxes are ints within a plane.
        if self.fast() && g.input.hw() <= i32::MAX as usize {
            let arg = Memory::alloc(self, dy.len)?;
            let args = [&head[..], &ptrs(self, [x, &arg])].concat();
            launch_per_element(self, "max_pool2d_argmax_f32_v2", dy.len, &args)?;
            let args = [&head[..], &ptrs(self, [&arg, dy, dx])].concat();
            launch_per_element(self, "max_pool2d_bwd_f32_v2", dx.len, &args)
        } else {
            let args = [&head[..], &ptrs(self, [x, dy, dx])].concat();
            launch_per_element(self, "max_pool2d_bwd_f32_v1", dx.len, &args)
        }
    }

    fn run_global_avg_pool(&self, _: Checked, s: &Nchw, x: &B<L>, y: &mut B<L>) -> Result<()> {
        let planes = s.n * s.c;
        if planes == 0 {
            return Ok(());
        }
        let args = [i64_of(planes), i64_of(s.hw()), self.ptr(x), self.ptr(y)];
        if self.fast() {
            let grid = Dims::x(blocks_for(planes, GAP_PLANES_PER_BLOCK as u32));
            self.launch("global_avg_pool_f32_v2", grid, Dims::x(BLOCK), &args)
        } else {
            launch_per_element(self, "global_avg_pool_f32_v1", planes, &args)
        }
    }

    fn run_global_avg_pool_bwd(&self, _: Checked, s: &Nchw, dy: &B<L>, dx: &mut B<L>) -> Result<()> {
        per_output(
            self,
            "global_avg_pool_bwd_f32_v1",
            &[i64_of(s.n * s.c), i64_of(s.hw())],
            dy,
            dx,
        )
    }

    fn run_upsample_nearest2x(&self, _: Checked, s: &Nchw, x: &B<L>, y: &mut B<L>) -> Result<()> {
        let head = [i64_of(s.n * s.c), i64_of(s.h), i64_of(s.w)];
        per_output(self, "upsample_nearest2x_f32_v1", &head, x, y)
    }

    fn run_upsample_nearest2x_bwd(&self, _: Checked, s: &Nchw, dy: &B<L>, dx: &mut B<L>) -> Result<()> {
        let head = [i64_of(s.n * s.c), i64_of(s.h), i64_of(s.w)];
        per_output(self, "upsample_nearest2x_bwd_f32_v1", &head, dy, dx)
    }

    fn run_shortcut_pad(
        &self,
        _: Checked,
        s: &Nchw,
        subsample: bool,
        pad: usize,
        x: &B<L>,
        y: &mut B<L>,
    ) -> Result<()> {
        per_output(self, "shortcut_pad_f32_v1", &shortcut_args(s, subsample, pad), x, y)
    }

    fn run_shortcut_pad_bwd(
        &self,
        _: Checked,
        s: &Nchw,
        subsample: bool,
        pad: usize,
        dy: &B<L>,
        dx: &mut B<L>,
    ) -> Result<()> {
        per_output(
            self,
            "shortcut_pad_bwd_f32_v1",
            &shortcut_args(s, subsample, pad),
            dy,
            dx,
        )
    }
}
