//! conv_region.cu: the forward and the input gradient of a convolution as dense implicit
//! GEMMs over tap classes, so that no padding tap and no inserted stride zero is multiplied.
//!
//! The planner splits the output index space, per dimension, into [`Run`]s of positions
//! that the same taps reach (the forward's border rows; the input gradient's stride phases
//! and their borders); a region is a row run × a column run, whose taps are a dense grid.
//! Each region is one launch of `conv2d_region_{fwd,fwd4,dgrad}_<BM>x<BN>_f32_v3` (fwd4:
//! float4 weight rows, see [`Launch::vec`]), with the tile that multiplies least and, when its grid cannot fill the machine, its K range split
//! into partial sums that `conv2d_region_sum_f32_v3` adds in a fixed order. In TF32 or bf16
//! (the backend's precision) the same plan runs the tensor-core twins: `_tf32_v5` /
//! `_bf16_v5` (operands staged by cp.async) with the fast kernels, `_tf32_v4` / `_bf16_v4`
//! (staged through registers) with the simple set, so that tests run both (bf16's sums
//! through `conv2d_region_sum_bf16_v4`, which rounds the result).

use crate::backend::{i32_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::conv::{SPLIT_MIN_SLICES, SPLIT_TARGET_BLOCKS, TILE_THREADS};
use crate::ops::elementwise::act_args;
use crate::ops::{launch_per_element, opt_ptr};
use mep_tensor::precision::Precision;
use mep_tensor::{Act, Conv2dGeom, Memory, Result, TensorError};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// Depth of one K slice (tile.cuh's `TILE_K`).
const TILE_K: usize = 16;

/// Which product a plan computes: the forward (`y` from `x` and `w`) or the input gradient
/// (`dx` from `dy` and `w`, the weight read transposed and flipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Forward,
    InputGrad,
}

/// Positions `out0 + out_step·a` (a < `count`) of one output dimension and the taps
/// t < `ntaps` that land in the source at every one of them: kernel tap `w0 + w_step·t`,
/// read at source position `src0 + src_pos·a + src_tap·t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub out0: usize,
    pub out_step: usize,
    pub count: usize,
    pub ntaps: usize,
    pub w0: usize,
    pub w_step: usize,
    pub src0: isize,
    pub src_pos: isize,
    pub src_tap: isize,
}

/// Appends position `a` of a run family to `runs`: a new run when its taps `key` (first
/// tap index, count) differ from the last run's.
fn push_run(runs: &mut Vec<(Run, (isize, usize))>, key: (isize, usize), make: impl FnOnce() -> Run) {
    match runs.last_mut() {
        Some((r, k)) if *k == key => r.count += 1,
        _ => runs.push((make(), key)),
    }
}

/// The forward's runs of one dimension: output positions `o < out` read source positions
/// `o·s − p + ki` for the taps `ki < k` that land in `0..size`.
pub(crate) fn forward_runs(out: usize, size: usize, k: usize, s: usize, p: usize) -> Vec<Run> {
    let (size, k, s, p) = (size as isize, k as isize, s as isize, p as isize);
    let mut runs = Vec::new();
    for o in 0..out as isize {
        let lo = (p - o * s).max(0);
        let hi = (size + p - o * s).min(k);
        let ntaps = (hi - lo).max(0) as usize;
        let lo = if ntaps == 0 { 0 } else { lo };
        push_run(&mut runs, (lo, ntaps), || Run {
            out0: o as usize,
            out_step: 1,
            count: 1,
            ntaps,
            w0: lo as usize,
            w_step: 1,
            src0: o * s - p + lo,
            src_pos: s,
            src_tap: 1,
        });
    }
    runs.into_iter().map(|(r, _)| r).collect()
}

/// The input gradient's runs of one dimension: positions `i < size` of dx, phase by phase
/// (`i ≡ r mod s`); in phase r only the taps `ki = kr + s·u` with `kr = (r + p) mod s` reach
/// it, from dy position `(i + p − ki) / s = q + a − u` (`i = r + s·a`, `q = (r + p − kr) / s`)
/// when that lies in `0..out`.
pub(crate) fn input_grad_runs(size: usize, out: usize, k: usize, s: usize, p: usize) -> Vec<Run> {
    let mut all = Vec::new();
    for r in 0..s.min(size) {
        let kr = (r + p) % s;
        let q = ((r + p - kr) / s) as isize;
        let phase_taps = if kr < k { (k - kr).div_ceil(s) } else { 0 } as isize;
        let mut runs = Vec::new();
        for a in 0..(size - r).div_ceil(s) as isize {
            let ulo = (q + a - out as isize + 1).max(0);
            let uhi = (q + a + 1).min(phase_taps);
            let ntaps = (uhi - ulo).max(0) as usize;
            let ulo = if ntaps == 0 { 0 } else { ulo };
            push_run(&mut runs, (ulo, ntaps), || Run {
                out0: r + s * a as usize,
                out_step: s,
                count: 1,
                ntaps,
                w0: kr + s * ulo as usize,
                w_step: s,
                src0: q + a - ulo,
                src_pos: 1,
                src_tap: -1,
            });
        }
        all.extend(runs.into_iter().map(|(r, _)| r));
    }
    all
}

/// The regions of a pass: every (row run, column run) pair.
pub(crate) fn regions(g: &Conv2dGeom, pass: Pass) -> Vec<(Run, Run)> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (rows, cols) = match pass {
        Pass::Forward => (
            forward_runs(oh, g.h, g.kh, g.stride, g.pad),
            forward_runs(ow, g.w, g.kw, g.stride, g.pad),
        ),
        Pass::InputGrad => (
            input_grad_runs(g.h, oh, g.kh, g.stride, g.pad),
            input_grad_runs(g.w, ow, g.kw, g.stride, g.pad),
        ),
    };
    rows.iter().flat_map(|&y| cols.iter().map(move |&x| (y, x))).collect()
}

/// A tile shape of conv_region.cu and its kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub rows: usize,
    pub cols: usize,
    pub forward: &'static str,
    /// The forward reading the weight as float4 (see [`Launch::vec`]).
    pub forward_vec: &'static str,
    pub input_grad: &'static str,
}

/// The tile shapes, in order of preference when two multiply the same.
pub(crate) const TILES: [Tile; 3] = [
    Tile {
        rows: 128,
        cols: 64,
        forward: "conv2d_region_fwd_128x64_f32_v3",
        forward_vec: "conv2d_region_fwd4_128x64_f32_v3",
        input_grad: "conv2d_region_dgrad_128x64_f32_v3",
    },
    Tile {
        rows: 64,
        cols: 64,
        forward: "conv2d_region_fwd_64x64_f32_v3",
        forward_vec: "conv2d_region_fwd4_64x64_f32_v3",
        input_grad: "conv2d_region_dgrad_64x64_f32_v3",
    },
    Tile {
        rows: 128,
        cols: 32,
        forward: "conv2d_region_fwd_128x32_f32_v3",
        forward_vec: "conv2d_region_fwd4_128x32_f32_v3",
        input_grad: "conv2d_region_dgrad_128x32_f32_v3",
    },
];

impl Tile {
    /// The kernel of this tile for `pass`, with float4 weight loads when `vec`.
    pub fn kernel(&self, pass: Pass, vec: bool) -> &'static str {
        match (pass, vec) {
            (Pass::Forward, false) => self.forward,
            (Pass::Forward, true) => self.forward_vec,
            (Pass::InputGrad, _) => self.input_grad,
        }
    }
    /// Outputs the tiles of an `m × n` GEMM compute, edges included.
    fn covered(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.rows) * self.rows * n.div_ceil(self.cols) * self.cols
    }
}

/// `f32_kernel` (a v3 name of conv_region.cu) in precision `p`: itself for fp32, else its
/// tensor-core twin, the same name with `_tf32_v5` or `_bf16_v5` (cp.async staging) for
/// `_f32_v3` when `fast`, `_tf32_v4` or `_bf16_v4` (register staging) otherwise. Every v4
/// has its v5, which needs nothing more of the operands (its gathers copy 4 bytes at a time,
/// and fwd4's 16-byte copies the float4 loads' alignment).
pub(crate) fn in_precision(f32_kernel: &str, p: Precision, fast: bool) -> String {
    match p {
        Precision::Fp32 => f32_kernel.to_string(),
        p => f32_kernel.replace("_f32_v3", &format!("_{p}_v{}", if fast { 5 } else { 4 })),
    }
}

/// The split-K sum (and zero-region epilogue) kernel of precision `p`: only bf16 rounds.
fn sum_kernel(p: Precision) -> &'static str {
    match p {
        Precision::Bf16 => "conv2d_region_sum_bf16_v4",
        _ => "conv2d_region_sum_f32_v3",
    }
}

/// The tile that computes the fewest outputs for an `m × n` GEMM (the first of [`TILES`] on
/// a tie: the larger tiles read shared memory less per product).
pub(crate) fn pick_tile(m: usize, n: usize) -> Tile {
    *TILES
        .iter()
        .min_by_key(|t| t.covered(m, n))
        .expect("TILES is not empty")
}

/// `(chunk, splits)`: the K range of each split (a multiple of TILE_K) and their count, for a
/// grid of `blocks` over a depth of `k`: splits until the launch has about
/// SPLIT_TARGET_BLOCKS blocks, each summing at least SPLIT_MIN_SLICES slices.
pub(crate) fn split_k(blocks: usize, k: usize) -> (usize, usize) {
    let slices = k.div_ceil(TILE_K);
    let want = if blocks >= SPLIT_TARGET_BLOCKS {
        1
    } else {
        SPLIT_TARGET_BLOCKS
            .div_ceil(blocks.max(1))
            .min(slices / SPLIT_MIN_SLICES)
            .max(1)
    };
    let chunk = slices.div_ceil(want).max(1) * TILE_K;
    (chunk, k.div_ceil(chunk).max(1))
}

/// `(M, C)` of a pass: the GEMM's rows (output channels) and the channels its K runs over.
fn rows_and_channels(g: &Conv2dGeom, pass: Pass) -> (usize, usize) {
    match pass {
        Pass::Forward => (g.c_out, g.c_in),
        Pass::InputGrad => (g.c_in, g.c_out),
    }
}

/// One launch of a pass: a region, its GEMM's `n` columns and depth `k`, and, when `k > 0`,
/// the tile and the split of K (`chunk`, `splits`); a region with `k = 0` is only written by
/// the sum kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    pub y: Run,
    pub x: Run,
    pub n: usize,
    pub k: usize,
    pub tile: Option<Tile>,
    pub chunk: usize,
    pub splits: usize,
    /// A forward region with every tap and K % 4 = 0: its weight rows are K contiguous
    /// floats, read as float4 when the weight is 16-byte aligned.
    pub vec: bool,
}

/// The launches of a pass, in order: every region with at least one output.
pub(crate) fn plan(g: &Conv2dGeom, pass: Pass) -> Vec<Launch> {
    let (m, c) = rows_and_channels(g, pass);
    regions(g, pass)
        .into_iter()
        .filter_map(|(y, x)| {
            let (n, k) = (g.n * y.count * x.count, c * y.ntaps * x.ntaps);
            if n == 0 || m == 0 {
                return None;
            }
            let mut l = Launch {
                y,
                x,
                n,
                k,
                tile: None,
                chunk: 0,
                splits: 0,
                vec: pass == Pass::Forward && y.ntaps == g.kh && x.ntaps == g.kw && k % 4 == 0,
            };
            if k > 0 {
                let tile = pick_tile(m, n);
                (l.chunk, l.splits) = split_k(m.div_ceil(tile.rows) * n.div_ceil(tile.cols), k);
                l.tile = Some(tile);
            }
            Some(l)
        })
        .collect()
}

/// Multiply-adds each region kernel issues for a pass, beside those it needs (every product
/// of a region is a needed one): `(kernel, issued, needed)`, one entry per kernel used, in
/// the order of [`TILES`]. Splitting K adds nothing: every split but the last is whole slices.
pub(crate) fn work(g: &Conv2dGeom, pass: Pass) -> Vec<(&'static str, f64, f64)> {
    let (m, _) = rows_and_channels(g, pass);
    let mut out: Vec<(&'static str, f64, f64)> = Vec::new();
    for l in plan(g, pass) {
        let Some(tile) = l.tile else { continue };
        let issued = (tile.covered(m, l.n) * l.k.div_ceil(TILE_K) * TILE_K) as f64;
        let needed = (m * l.n * l.k) as f64;
        let kernel = tile.kernel(pass, l.vec);
        match out.iter_mut().find(|(name, _, _)| *name == kernel) {
            Some(row) => {
                row.1 += issued;
                row.2 += needed;
            }
            None => out.push((kernel, issued, needed)),
        }
    }
    let order = |name: &str| {
        let vec = TILES.iter().position(|t| t.kernel(pass, true) == name);
        (
            vec.is_none(),
            vec.or_else(|| TILES.iter().position(|t| t.kernel(pass, false) == name)),
        )
    };
    out.sort_by_key(|(name, _, _)| order(name));
    out
}

fn i32_signed(op: &'static str, what: &str, v: isize) -> Result<Arg> {
    i32::try_from(v).map(Arg::I32).map_err(|_| TensorError::Invalid {
        op,
        msg: format!("{what} = {v} does not fit the kernels' 32-bit index"),
    })
}

/// `out = epilogue(pass(src, w))` over every region of `g`: for the forward `src` is x and
/// `out` y (bias, residual and activation applied); for the input gradient `src` is dy and
/// `out` dx (`bias` per input channel, for conv_transpose2d; no residual, identity).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    g: &Conv2dGeom,
    pass: Pass,
    src: &B<L>,
    w: &B<L>,
    bias: Option<&B<L>>,
    residual: Option<&B<L>>,
    act: Act,
    out: &mut B<L>,
) -> Result<()> {
    let (m, c) = rows_and_channels(g, pass);
    let (oh, ow) = (g.out_h(), g.out_w());
    // Source and destination planes.
    let ((sh, sw), (dh, dw)) = match pass {
        Pass::Forward => ((g.h, g.w), (oh, ow)),
        Pass::InputGrad => ((oh, ow), (g.h, g.w)),
    };
    let khw = g.kh * g.kw;
    let (a_m, a_c) = match pass {
        Pass::Forward => (g.c_in * khw, khw),
        Pass::InputGrad => (khw, g.c_in * khw),
    };
    i32_of(op, "c_out·c_in·kh·kw", g.weight_len())?;
    i32_of(op, "source channels·plane", c * sh * sw)?;
    i32_of(op, "output channels·plane", m * dh * dw)?;
    let s = |what, v: isize| i32_signed(op, what, v);
    let prec = kb.precision();
    // The float4 weight loads need 16-byte aligned rows (plan checks K % 4 = 0).
    let w_aligned = matches!(kb.ptr(w), Arg::Ptr(p) if p % 16 == 0);
    for l in plan(g, pass) {
        let Launch {
            y,
            x,
            n,
            tile,
            chunk,
            splits,
            ..
        } = l;
        let mut args = vec![
            i32_of(op, "rows", m)?,
            i32_of(op, "channels", c)?,
            i32_of(op, "row taps", y.ntaps)?,
            i32_of(op, "column taps", x.ntaps)?,
            i32_of(op, "region rows", y.count)?,
            i32_of(op, "region columns", x.count)?,
            i32_of(op, "region columns·n", n)?,
            i32_of(op, "a_m", a_m)?,
            i32_of(op, "a_c", a_c)?,
            i32_of(op, "a_ty", y.w_step * g.kw)?,
            i32_of(op, "a_tx", x.w_step)?,
            i32_of(op, "a_base", y.w0 * g.kw + x.w0)?,
            Arg::I64((c * sh * sw) as i64),
            i32_of(op, "b_c", sh * sw)?,
            s("b_ty", y.src_tap * sw as isize)?,
            s("b_tx", x.src_tap)?,
            s("b_a", y.src_pos * sw as isize)?,
            s("b_b", x.src_pos)?,
            s("b_base", y.src0 * sw as isize + x.src0)?,
            Arg::I64((m * dh * dw) as i64),
            i32_of(op, "o_m", dh * dw)?,
            i32_of(op, "o_a", y.out_step * dw)?,
            i32_of(op, "o_b", x.out_step)?,
            i32_of(op, "o_base", y.out0 * dw + x.out0)?,
        ];
        let io = |args: &mut Vec<Arg>, chunk: usize, part: Arg| -> Result<()> {
            args.extend([i32_of(op, "split depth", chunk)?, kb.ptr(src), kb.ptr(w)]);
            args.extend([opt_ptr(kb, bias), opt_ptr(kb, residual)]);
            args.extend(act_args(act));
            args.extend([kb.ptr(out), part]);
            Ok(())
        };
        let Some(tile) = tile else {
            // No tap reaches this region: the epilogue of a zero sum.
            io(&mut args, 0, Arg::Ptr(0))?;
            launch_per_element(kb, sum_kernel(prec), m * n, &args)?;
            continue;
        };
        let (gy, gx) = (m.div_ceil(tile.rows), n.div_ceil(tile.cols));
        if gy > 65535 || splits > 65535 || gx > i32::MAX as usize {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "a {m}×{n} region needs more tiles of {}×{} than a CUDA grid holds",
                    tile.rows, tile.cols
                ),
            });
        }
        let grid = Dims::xyz(gx as u32, gy as u32, splits as u32);
        let kernel = in_precision(tile.kernel(pass, l.vec && w_aligned), prec, kb.fast());
        let kernel = kernel.as_str();
        if splits == 1 {
            io(&mut args, chunk, Arg::Ptr(0))?;
            kb.launch(kernel, grid, Dims::x(TILE_THREADS), &args)?;
            continue;
        }
        let part = kb.alloc(splits * m * n)?;
        let mut gemm = args.clone();
        io(&mut gemm, chunk, kb.ptr(&part))?;
        kb.launch(kernel, grid, Dims::x(TILE_THREADS), &gemm)?;
        io(&mut args, splits, kb.ptr(&part))?;
        launch_per_element(kb, sum_kernel(prec), m * n, &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    type Taps = BTreeSet<(usize, isize)>;

    /// The (kernel tap, source position) pairs each output position gets from `runs`,
    /// failing on a position covered twice.
    fn taps_of(runs: &[Run], positions: usize) -> Vec<Option<Taps>> {
        let mut got: Vec<Option<Taps>> = vec![None; positions];
        for r in runs {
            for a in 0..r.count {
                let o = r.out0 + r.out_step * a;
                assert!(got[o].is_none(), "position {o} in two runs: {runs:?}");
                let taps = (0..r.ntaps)
                    .map(|t| {
                        let src = r.src0 + r.src_pos * a as isize + r.src_tap * t as isize;
                        (r.w0 + r.w_step * t, src)
                    })
                    .collect();
                got[o] = Some(taps);
            }
        }
        got
    }

    #[test]
    fn runs_cover_every_position_once_with_exactly_its_in_bounds_taps() {
        for size in 1..12usize {
            for k in 1..8usize {
                for s in 1..5usize {
                    for p in 0..4usize {
                        if size + 2 * p < k {
                            continue;
                        }
                        let out = (size + 2 * p - k) / s + 1;
                        let case = format!("size {size} k {k} s {s} p {p}");
                        // Forward: output o reads source o·s − p + ki when in bounds.
                        let fwd = taps_of(&forward_runs(out, size, k, s, p), out);
                        for (o, got) in fwd.iter().enumerate() {
                            let want: Taps = (0..k)
                                .map(|ki| (ki, (o * s + ki) as isize - p as isize))
                                .filter(|&(_, i)| (0..size as isize).contains(&i))
                                .collect();
                            assert_eq!(got.as_ref(), Some(&want), "forward {case} o {o}");
                        }
                        // Input gradient: dx position i gets dy (i + p − ki) / s when exact
                        // and in bounds.
                        let dgrad = taps_of(&input_grad_runs(size, out, k, s, p), size);
                        for (i, got) in dgrad.iter().enumerate() {
                            let want: Taps = (0..k)
                                .filter_map(|ki| {
                                    let t = (i + p) as isize - ki as isize;
                                    (t >= 0 && t % s as isize == 0 && t / (s as isize) < out as isize)
                                        .then_some((ki, t / s as isize))
                                })
                                .collect();
                            assert_eq!(got.as_ref(), Some(&want), "input grad {case} i {i}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_1x1_stride_2_input_gradient_has_one_phase_with_taps() {
        let runs = input_grad_runs(7, 4, 1, 2, 0);
        let with_taps: Vec<_> = runs.iter().filter(|r| r.ntaps > 0).collect();
        assert_eq!(with_taps.len(), 1, "{runs:?}");
        assert_eq!(
            (with_taps[0].out0, with_taps[0].out_step, with_taps[0].count),
            (0, 2, 4)
        );
    }

    #[test]
    fn tiles_and_splits() {
        // 36 columns: 64 wide either way, so the larger tile; 6 columns: 32 wide.
        assert_eq!(pick_tile(128, 36).cols, 64);
        assert_eq!(pick_tile(128, 36).rows, 128);
        assert_eq!(pick_tile(128, 6).cols, 32);
        assert_eq!(pick_tile(64, 100).rows, 64);
        // A big grid is not split; a small one is, into chunks of whole slices.
        assert_eq!(split_k(300, 4608), (4608, 1));
        let (chunk, splits) = split_k(4, 4608);
        assert_eq!(chunk % TILE_K, 0);
        assert!(splits > 1 && splits * chunk >= 4608 && (splits - 1) * chunk < 4608);
        // Too shallow to split.
        assert_eq!(split_k(1, 100), (112, 1));
    }
}
