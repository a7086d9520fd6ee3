//! Winograd F(m×m, 3×3) for stride-1, padding-1 3×3 convolutions with wide channels
//! (ResNet-50's 3×3 layers), beside the im2col + GEMM path of [`conv`](super::conv).
//!
//! Each m×m block ("tile") of output pixels comes from an a×a patch `d` of the input,
//! a = m + 2: `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. The elementwise product, summed over input
//! channels, is a² GEMMs, one per position ξ of the transformed tile:
//! `M[ξ] (c_out × tiles) = U[ξ] (c_out × c_in) · V[ξ] (c_in × tiles)`. Two versions
//! ([`Tiling`]):
//!
//! - **Version 1, F(2×2, 3×3)**: 16 multiplies per 4 outputs where the direct sum has 36
//!   (2.25× less GEMM work). Its transforms are exact halves and sums, and it stays within a
//!   few ulps of the direct sum.
//! - **Version 2, F(4×4, 3×3)**: 36 multiplies per 16 outputs (4× less), and a² = 36 values
//!   per 16 pixels to transform and move instead of 16 per 4. Its transforms have entries
//!   up to 8 (and `G` has sixths), so it rounds more: its error bound, from the transforms'
//!   absolute values, is 36× version 1's (`tests::error_bound`). Measured against the f64
//!   sum on uniform data (64–256 channels, 14×14 and 28×28 planes): relative L2 error
//!   1.5–3.0e-6 against 2.7–5.0e-7, largest error 16–17× version 1's; a whole ResNet-50 at
//!   224×224 against PyTorch moved from 1.19e-6 to 1.28e-6 (activations, relative L2) and
//!   1.38e-3 to 1.52e-3 (input gradient; BENCHMARKS.md). cuDNN and oneDNN ship
//!   F(4×4, 3×3) in f32 too. [`direct::choose_winograd`](super::direct::choose_winograd)
//!   picks it where it is faster. One more difference: a NaN or an infinity in the input
//!   reaches every output of the 4×4 tiles whose patch holds it (the terms that cancel in
//!   exact arithmetic do not cancel a NaN), not only the 3×3 neighbourhood the direct sum and
//!   F(2×2) confine it to. An output whose neighbourhood holds a NaN is NaN on every path.
//!
//! **Same bits on every machine.** The transforms are additions, subtractions and
//! multiplications by constants in a fixed order (Rust never contracts them into FMAs) and
//! the GEMMs are [`gemm_fixed_order`](super::gemm::gemm_fixed_order)'s, so each output is the
//! same on AVX2 and AVX-512 machines, whatever the thread count or how the tiles are cut
//! into units.

use super::conv::epilogue;
use super::gemm::{sgemm_into, SharedMut, Workspace};
use crate::backend::Act;
use crate::shape::Conv2dGeom;
use gemm::Parallelism;
use rayon::prelude::*;

/// Floats of transformed input plus GEMM output one unit aims for: `a²·(c_in + c_out)` per
/// tile, 2 MiB in all (the L2 of the machines measured), but never fewer than
/// [`MIN_TILES`] tiles per GEMM, where re-packing `U[ξ]` per call would start to cost.
const UNIT_FLOATS: usize = 512 * 1024;
/// The fewest tiles (GEMM columns) a unit aims for.
const MIN_TILES: usize = 64;

/// Which Winograd version computes a layer: the output tile's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// Version 1, F(2×2, 3×3).
    F2x2,
    /// Version 2, F(4×4, 3×3).
    F4x4,
}

/// Whether F(m×m, 3×3) can compute `g`: 3×3, stride 1, padding 1, no empty dimension (the
/// same for both versions).
///
/// ```
/// use mep_tensor::{cpu::winograd, Conv2dGeom, Nchw};
/// let x = Nchw { n: 8, c: 128, h: 28, w: 28 };
/// assert!(winograd::supports(&Conv2dGeom::square("layer2", x, 128, 3, 1, 1).unwrap()));
/// assert!(!winograd::supports(&Conv2dGeom::square("down", x, 128, 3, 2, 1).unwrap()));
/// ```
pub fn supports(g: &Conv2dGeom) -> bool {
    let nonempty = [g.n, g.c_in, g.c_out, g.h, g.w].iter().all(|&d| d > 0);
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1 && nonempty
}

/// One version's 1-D transforms. Each maps `k` vectors of `n` values (one per channel) to
/// `k'`: vector `j` of the source is `s[j·ss..][..n]`, vector `i` of the destination
/// `d[i·ds..][..n]`. The 2-D transforms apply them along rows, then along columns.
trait Transforms {
    /// Output pixels per tile side, m.
    const M: usize;
    /// Input pixels per patch side, a = m + 2.
    const A: usize = Self::M + 2;
    /// `G`: the 3 taps of a weight row or column to a values.
    fn weight(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize);
    /// `Bᵀ`: a input values to a transformed ones.
    fn input(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize);
    /// `Aᵀ`: a products to m outputs.
    fn output(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize);
}

/// The `K` source vectors of a [`Transforms`] call.
fn ins<const K: usize>(s: &[f32], ss: usize, n: usize) -> [&[f32]; K] {
    std::array::from_fn(|j| &s[j * ss..j * ss + n])
}

/// The `K` destination vectors of a [`Transforms`] call.
fn outs<const K: usize>(d: &mut [f32], ds: usize, n: usize) -> [&mut [f32]; K] {
    let mut rest = d;
    std::array::from_fn(|k| {
        let step = if k + 1 < K { ds } else { n };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(step);
        rest = tail;
        &mut head[..n]
    })
}

/// Version 1: `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`,
/// `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`, `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`.
struct F2;

impl Transforms for F2 {
    const M: usize = 2;
    fn weight(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [g0, g1, g2] = ins(s, ss, n);
        let [u0, u1, u2, u3] = outs(d, ds, n);
        for o in 0..n {
            u0[o] = g0[o];
            u1[o] = 0.5 * (g0[o] + g1[o] + g2[o]);
            u2[o] = 0.5 * (g0[o] - g1[o] + g2[o]);
            u3[o] = g2[o];
        }
    }
    fn input(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [d0, d1, d2, d3] = ins(s, ss, n);
        let [v0, v1, v2, v3] = outs(d, ds, n);
        for c in 0..n {
            v0[c] = d0[c] - d2[c];
            v1[c] = d1[c] + d2[c];
            v2[c] = d2[c] - d1[c];
            v3[c] = d1[c] - d3[c];
        }
    }
    fn output(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [m0, m1, m2, m3] = ins(s, ss, n);
        let [y0, y1] = outs(d, ds, n);
        for k in 0..n {
            y0[k] = m0[k] + m1[k] + m2[k];
            y1[k] = m1[k] - m2[k] - m3[k];
        }
    }
}

/// Version 2 (Lavin & Gray's points 0, ±1, ±2): `G = [[¼,0,0],[−⅙,−⅙,−⅙],[−⅙,⅙,−⅙],
/// [1⁄24,1⁄12,⅙],[1⁄24,−1⁄12,⅙],[0,0,1]]`, `Bᵀ = [[4,0,−5,0,1,0],[0,−4,−4,1,1,0],
/// [0,4,−4,−1,1,0],[0,−2,−1,2,1,0],[0,2,−1,−2,1,0],[0,4,0,−5,0,1]]`,
/// `Aᵀ = [[1,1,1,1,1,0],[0,1,−1,2,−2,0],[0,1,1,4,4,0],[0,1,−1,8,−8,1]]`.
struct F4;

impl Transforms for F4 {
    const M: usize = 4;
    fn weight(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [g0, g1, g2] = ins(s, ss, n);
        let [u0, u1, u2, u3, u4, u5] = outs(d, ds, n);
        for o in 0..n {
            // In f64, so that each value is rounded once (the sixth's own error, 1e-17, is
            // far below f32's); multiplying by it rather than dividing keeps the sweep fast.
            const SIXTH: f64 = 1.0 / 6.0;
            let (a, b, c) = (g0[o] as f64, g1[o] as f64, g2[o] as f64);
            let (even, odd) = (0.25 * a + c, 0.5 * b);
            u0[o] = (0.25 * a) as f32;
            u1[o] = (-(a + b + c) * SIXTH) as f32;
            u2[o] = (-(a - b + c) * SIXTH) as f32;
            u3[o] = ((even + odd) * SIXTH) as f32;
            u4[o] = ((even - odd) * SIXTH) as f32;
            u5[o] = g2[o];
        }
    }
    fn input(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [d0, d1, d2, d3, d4, d5] = ins(s, ss, n);
        let [v0, v1, v2, v3, v4, v5] = outs(d, ds, n);
        for c in 0..n {
            v0[c] = (4.0 * d0[c] - 5.0 * d2[c]) + d4[c];
            v1[c] = (d3[c] + d4[c]) - 4.0 * (d1[c] + d2[c]);
            v2[c] = (d4[c] - d3[c]) + 4.0 * (d1[c] - d2[c]);
            v3[c] = (d4[c] - d2[c]) + 2.0 * (d3[c] - d1[c]);
            v4[c] = (d4[c] - d2[c]) - 2.0 * (d3[c] - d1[c]);
            v5[c] = (4.0 * d1[c] - 5.0 * d3[c]) + d5[c];
        }
    }
    fn output(s: &[f32], ss: usize, d: &mut [f32], ds: usize, n: usize) {
        let [m0, m1, m2, m3, m4, m5] = ins(s, ss, n);
        let [y0, y1, y2, y3] = outs(d, ds, n);
        for k in 0..n {
            let (p, q) = (m1[k] + m2[k], m1[k] - m2[k]);
            let (r, t) = (m3[k] + m4[k], m3[k] - m4[k]);
            y0[k] = m0[k] + p + r;
            y1[k] = q + 2.0 * t;
            y2[k] = p + 4.0 * r;
            y3[k] = (q + 8.0 * t) + m5[k];
        }
    }
}

/// `U[i][ξ][o] = (G w[o][i] Gᵀ)[ξ]`: for each ξ a `c_in × c_out` matrix at row stride
/// `a²·c_out`, the GEMMs' right operand. Input channel `i`'s values are one contiguous run,
/// so that each task writes its own block of `U` and each transform writes straight into it.
///
/// Blocks of [`WT_BLOCK`] input channels are gathered channel-minor first (contiguous runs of
/// the weight), so that every step of the transform is a sweep over the output channels. It
/// is done per call, memory-bound (`U` is a²/9 of the weight): for version 1, 1.6 ms of the
/// 7.4 ms of a 256→256 14×14 layer at batch 8, half of the 512→512 7×7 one.
///
/// `flipped`: `w` is the weight of the convolution whose input gradient this one is
/// (`[c_in, c_out, 3, 3]` here), read flipped and transposed as the gather goes.
fn weight_transform<T: Transforms>(ws: &Workspace, co: usize, ci: usize, w: &[f32], flipped: bool, u: &mut [f32]) {
    let per_channel = T::A * T::A * co;
    u[..ci * per_channel]
        .par_chunks_mut(WT_BLOCK * per_channel)
        .enumerate()
        .for_each(|(blk, ub)| {
            let (i0, i1) = (blk * WT_BLOCK, ci.min((blk + 1) * WT_BLOCK));
            weight_block::<T>(ws, (co, ci), w, flipped, (i0, i1), ub);
        });
}

/// [`weight_transform`] of input channels `i0..i1`, into their block `ub` of `U`.
fn weight_block<T: Transforms>(
    ws: &Workspace,
    (co, ci): (usize, usize),
    w: &[f32],
    flipped: bool,
    (i0, i1): (usize, usize),
    ub: &mut [f32],
) {
    let a = T::A;
    let mut g = ws.take((i1 - i0) * 9 * co);
    // G g of one input channel, `t[(r·3 + j)·co + o]`.
    let mut t = ws.take(3 * a * co);
    if flipped {
        // g[(ii·9 + tap)·co + o] = w[i0 + ii][o][8 − tap]: each input channel's weights are
        // one contiguous run, so this gather needs no separate flipped copy of the weight.
        for ii in 0..i1 - i0 {
            let run = &w[(i0 + ii) * co * 9..(i0 + ii + 1) * co * 9];
            for (o, kernel) in run.chunks_exact(9).enumerate() {
                for (tap, val) in kernel.iter().rev().enumerate() {
                    g[(ii * 9 + tap) * co + o] = *val;
                }
            }
        }
    } else {
        // g[(ii·9 + tap)·co + o] = w[o][i0 + ii][tap].
        for o in 0..co {
            let run = &w[(o * ci + i0) * 9..(o * ci + i1) * 9];
            for (k, val) in run.iter().enumerate() {
                g[k * co + o] = *val;
            }
        }
    }
    for (ii, uc) in ub.chunks_exact_mut(a * a * co).enumerate() {
        let taps = &g[ii * 9 * co..(ii + 1) * 9 * co];
        for j in 0..3 {
            T::weight(&taps[j * co..], 3 * co, &mut t[j * co..3 * a * co], 3 * co, co);
        }
        // Row r of G g times Gᵀ: ξ = r·a + s.
        for r in 0..a {
            T::weight(&t[r * 3 * co..], co, &mut uc[r * a * co..(r + 1) * a * co], co, co);
        }
    }
}

/// Input channels whose weights one task of [`weight_transform`] gathers and transforms.
const WT_BLOCK: usize = 8;
/// Channels the transposes between NCHW and the transforms' channel-minor rows move together.
const TRANSPOSE_BLOCK: usize = 8;

/// `y = act(conv2d(x, w) + bias + residual)` for a shape [`supports`] accepts, NCHW,
/// weight `[c_out, c_in, 3, 3]`, with the given version.
///
/// The transforms run on channel-minor copies of a tile row (one transpose in, one out), so
/// that each of their additions is a sweep over the channels, long and contiguous however
/// small the plane; the GEMMs are `M[ξ] (tiles × c_out) = V[ξ] (tiles × c_in) · U[ξ]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    ws: &Workspace,
    tiling: Tiling,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    run(ws, tiling, g, x, (w, false), bias, residual, act, y);
}

/// The input gradient `dx` of a convolution `g` that [`supports`] accepts, from `dy` and its
/// weight `w` (`[c_out, c_in, 3, 3]`): with stride 1 and padding 1 it is the convolution of
/// `dy` with the flipped, transposed weight, which the weight transform reads from `w` as it
/// goes. The same bits as [`conv2d`] with that weight.
pub fn conv2d_bwd_input(ws: &Workspace, tiling: Tiling, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let gt = Conv2dGeom {
        c_in: g.c_out,
        h: g.out_h(),
        w: g.out_w(),
        c_out: g.c_in,
        ..*g
    };
    run(ws, tiling, &gt, dy, (w, true), None, None, Act::Identity, dx);
}

/// [`conv2d`] on `tiling`'s version; `weight`: the weight, and whether it is to be read
/// flipped and transposed ([`weight_transform`]).
#[allow(clippy::too_many_arguments)]
fn run(
    ws: &Workspace,
    tiling: Tiling,
    g: &Conv2dGeom,
    x: &[f32],
    weight: (&[f32], bool),
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    match tiling {
        Tiling::F2x2 => run_version::<F2>(ws, g, x, weight, bias, residual, act, y),
        Tiling::F4x4 => run_version::<F4>(ws, g, x, weight, bias, residual, act, y),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_version<T: Transforms>(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    (w, flipped): (&[f32], bool),
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    debug_assert!(supports(g));
    let (ci, co, h, wd) = (g.c_in, g.c_out, g.h, g.w);
    let (m, a2) = (T::M, T::A * T::A);
    let (th, tw) = (h.div_ceil(m), wd.div_ceil(m));
    let mut u = ws.take(a2 * co * ci);
    weight_transform::<T>(ws, co, ci, w, flipped, &mut u);
    let u = &u[..];
    // Units are runs of tile rows over the whole batch (a run may cross images).
    let rows = g.n * th;
    let per_unit = (UNIT_FLOATS / (a2 * (ci + co))).max(MIN_TILES);
    let rows_per_unit = per_unit.div_ceil(tw).clamp(1, rows);
    let units = rows.div_ceil(rows_per_unit);
    let nt = rayon::current_num_threads();
    let parallel = nt > 1 && units >= nt;
    let par = if parallel {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    let yp = SharedMut(y.as_mut_ptr());
    let body = |unit: usize| {
        let r0 = unit * rows_per_unit;
        let r1 = rows.min(r0 + rows_per_unit);
        let tb = (r1 - r0) * tw;
        let mut v = ws.take(a2 * ci * tb);
        input_transform::<T>(ws, g, x, r0, r1, &mut v[..a2 * ci * tb]);
        let mut prod = ws.take(a2 * co * tb);
        for xi in 0..a2 {
            sgemm_into(
                (tb, co, ci),
                &mut prod[xi * co * tb..(xi + 1) * co * tb],
                (&v[xi * ci * tb..], ci, 1),
                (&u[xi * co..], a2 * co, 1),
                par,
            );
        }
        drop(v);
        // SAFETY: the unit's tile rows `r0..r1` own output rows `m·ty .. m·ty + m` of their
        // images, which no other unit writes.
        unsafe { output_transform::<T>(ws, g, &prod[..a2 * co * tb], r0, r1, bias, residual, act, yp) };
    };
    if parallel {
        (0..units).into_par_iter().for_each(body);
    } else {
        (0..units).for_each(body);
    }
}

/// `V[ξ][t][c] = (Bᵀ d B)[ξ]` for the tiles `t` of tile rows `r0..r1` (row `r` = image `r / th`,
/// tile row `r % th`).
fn input_transform<T: Transforms>(ws: &Workspace, g: &Conv2dGeom, x: &[f32], r0: usize, r1: usize, v: &mut [f32]) {
    let (ci, h, wd) = (g.c_in, g.h, g.w);
    let (m, a) = (T::M, T::A);
    let (th, tw) = (h.div_ceil(m), wd.div_ceil(m));
    let plane = ci * (r1 - r0) * tw;
    // The tile row's a input rows, zero-padded to columns −1 ..= m·tw, channel-minor:
    // `p[(i·pw + 1 + xx)·ci + c] = x[c][m·ty − 1 + i][xx]`.
    let pw = m * tw + 2;
    let mut p = ws.take(a * pw * ci);
    // d·B of one patch: `db[(i·a + j)·ci + c]`.
    let mut db = ws.take(a * a * ci);
    for r in r0..r1 {
        let (img, ty) = (r / th, r % th);
        p[..a * pw * ci].fill(0.0);
        for i in 0..a {
            let yy = (m * ty + i).wrapping_sub(1);
            if yy >= h {
                continue;
            }
            let dst = &mut p[(i * pw + 1) * ci..(i * pw + 1 + wd) * ci];
            // In blocks of channels, so that each pixel's stores are one contiguous run.
            for c0 in (0..ci).step_by(TRANSPOSE_BLOCK) {
                let c1 = ci.min(c0 + TRANSPOSE_BLOCK);
                let row = |c: usize| &x[((img * ci + c) * h + yy) * wd..][..wd];
                for xx in 0..wd {
                    for c in c0..c1 {
                        dst[xx * ci + c] = row(c)[xx];
                    }
                }
            }
        }
        let toff = (r - r0) * tw;
        for tx in 0..tw {
            for i in 0..a {
                let patch_row = &p[(i * pw + m * tx) * ci..];
                T::input(patch_row, ci, &mut db[i * a * ci..a * a * ci], ci, ci);
            }
            // Bᵀ (d B): column j of every row gives ξ = k·a + j.
            let base = (toff + tx) * ci;
            for j in 0..a {
                T::input(&db[j * ci..], a * ci, &mut v[base + j * plane..], a * plane, ci);
            }
        }
    }
}

/// `y = act(Aᵀ M A + bias + residual)` for tile rows `r0..r1`, `M[ξ][t][k]`.
///
/// # Safety
/// `y` must address the whole output, and no other thread may write output rows of these
/// tile rows meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform<T: Transforms>(
    ws: &Workspace,
    g: &Conv2dGeom,
    prod: &[f32],
    r0: usize,
    r1: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: SharedMut,
) {
    let (co, h, wd) = (g.c_out, g.h, g.w);
    let (m, a) = (T::M, T::A);
    let (th, tw) = (h.div_ceil(m), wd.div_ceil(m));
    let plane = co * (r1 - r0) * tw;
    // M A of one tile, `ma[(i·m + b)·co + k]`, and the tile row's m output rows,
    // channel-minor: `q[(dy·m·tw + ox)·co + k]`.
    let mut ma = ws.take(a * m * co);
    let mut q = ws.take(m * m * tw * co);
    let mut lines = vec![0.0f32; TRANSPOSE_BLOCK * wd];
    for r in r0..r1 {
        let (img, ty) = (r / th, r % th);
        let toff = (r - r0) * tw;
        for tx in 0..tw {
            let tile = (toff + tx) * co;
            for i in 0..a {
                T::output(
                    &prod[i * a * plane + tile..],
                    plane,
                    &mut ma[i * m * co..a * m * co],
                    co,
                    co,
                );
            }
            for b in 0..m {
                let top = (m * tx + b) * co;
                T::output(&ma[b * co..], m * co, &mut q[top..], m * tw * co, co);
            }
        }
        for dy in 0..m {
            let oy = m * ty + dy;
            if oy >= h {
                continue;
            }
            let q_row = &q[dy * m * tw * co..][..wd * co];
            for k0 in (0..co).step_by(TRANSPOSE_BLOCK) {
                let k1 = co.min(k0 + TRANSPOSE_BLOCK);
                for ox in 0..wd {
                    for k in k0..k1 {
                        lines[(k - k0) * wd + ox] = q_row[ox * co + k];
                    }
                }
                for k in k0..k1 {
                    let line = &mut lines[(k - k0) * wd..(k - k0 + 1) * wd];
                    let start = ((img * co + k) * h + oy) * wd;
                    epilogue(
                        line,
                        bias.map(|b| b[k]),
                        residual.map(|res| &res[start..start + wd]),
                        act,
                    );
                    // SAFETY: this row belongs to tile row `r`, which only this unit computes.
                    let row = unsafe { std::slice::from_raw_parts_mut(y.get().add(start), wd) };
                    row.copy_from_slice(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data;
    use crate::cpu::reference;
    use crate::shape::Nchw;

    /// A version's `(G, Bᵀ, Aᵀ)` as f64 matrices, read off its 1-D transforms.
    fn matrices<T: Transforms>() -> [Vec<Vec<f64>>; 3] {
        let read = |f: fn(&[f32], usize, &mut [f32], usize, usize), k: usize, rows: usize| {
            let mut mat = vec![vec![0.0; k]; rows];
            for j in 0..k {
                let mut e = vec![0.0f32; k];
                e[j] = 1.0;
                let mut out = vec![0.0f32; rows];
                f(&e, 1, &mut out, 1, 1);
                for (i, v) in out.iter().enumerate() {
                    mat[i][j] = *v as f64;
                }
            }
            mat
        };
        [
            read(T::weight, 3, T::A),
            read(T::input, T::A, T::A),
            read(T::output, T::A, T::M),
        ]
    }

    /// `Aᵀ [(G g) ⊙ (Bᵀ d)]` is the correlation of `d` with `g` (1-D), to f64 precision
    /// (version 2's `G` holds sixths rounded to f32): the matrices are a Winograd triple.
    fn check_identity<T: Transforms>() {
        let [gm, bt, at] = matrices::<T>();
        let (gv, dv) = ([0.3, -1.7, 2.2], [1.0, -0.5, 0.25, 2.0, -3.0, 0.75]);
        let mul = |m: &[Vec<f64>], v: &[f64]| -> Vec<f64> {
            m.iter()
                .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
                .collect()
        };
        let prod: Vec<f64> = mul(&gm, &gv)
            .iter()
            .zip(mul(&bt, &dv[..T::A]))
            .map(|(a, b)| a * b)
            .collect();
        for (p, got) in mul(&at, &prod).iter().enumerate() {
            let want: f64 = (0..3).map(|k| dv[p + k] * gv[k]).sum();
            assert!((got - want).abs() < 1e-6, "{}: at {p} got {got}, want {want}", T::M);
        }
    }

    #[test]
    fn both_versions_are_winograd_triples() {
        check_identity::<F2>();
        check_identity::<F4>();
    }

    /// `max_p Σ_ξ |Aᵀ ⊗ Aᵀ|[p, ξ] · (|G| 1 |G|ᵀ)[ξ] · (|Bᵀ| 1 |B|)[ξ]`: how much a version can
    /// amplify the f32 rounding of the products it sums, where the direct sum has 9 (its
    /// taps) for operands of magnitude at most 1.
    fn error_bound<T: Transforms>() -> f64 {
        let [gm, bt, at] = matrices::<T>();
        let abs_sum = |m: &[Vec<f64>]| -> Vec<f64> { m.iter().map(|r| r.iter().map(|v| v.abs()).sum()).collect() };
        let (gs, bs) = (abs_sum(&gm), abs_sum(&bt));
        let one_d = at
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(x, a)| a.abs() * gs[x] * bs[x])
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        one_d * one_d
    }

    #[test]
    fn version_2_can_round_36_times_more() {
        assert_eq!(error_bound::<F2>(), 64.0);
        assert!((error_bound::<F4>() - 2304.0).abs() < 1e-3, "{}", error_bound::<F4>());
    }

    /// The input gradient reads the weight flipped and transposed in its gather: the same
    /// bits as the forward with that weight built beforehand, on both versions.
    #[test]
    fn input_gradient_is_the_flipped_forward() {
        let g = Conv2dGeom::square(
            "wino",
            Nchw {
                n: 2,
                c: 12,
                h: 9,
                w: 10,
            },
            20,
            3,
            1,
            1,
        )
        .expect("geometry");
        let (dy, w) = (test_data(g.output().numel(), 5), test_data(g.weight_len(), 6));
        let gt = Conv2dGeom {
            c_in: g.c_out,
            c_out: g.c_in,
            ..g
        };
        // The flipped copy the GEMM and direct paths still build.
        let mut wt = vec![0.0f32; w.len()];
        crate::cpu::conv::flip_transpose(&g, &w, &mut wt);
        let ws = Workspace::default();
        for tiling in [Tiling::F2x2, Tiling::F4x4] {
            let mut dx = vec![f32::NAN; g.input().numel()];
            conv2d_bwd_input(&ws, tiling, &g, &dy, &w, &mut dx);
            let mut want = vec![f32::NAN; g.input().numel()];
            conv2d(&ws, tiling, &gt, &dy, &wt, None, None, Act::Identity, &mut want);
            assert!(
                dx.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{tiling:?}"
            );
        }
    }

    /// A NaN anywhere in the input makes every output whose 3×3 neighbourhood holds it NaN,
    /// on both versions, wherever it sits in a tile (F(4×4) may spread it further within its
    /// tile; F(2×2) may not).
    #[test]
    fn a_nan_reaches_its_neighbourhood() {
        let g = Conv2dGeom::square("wino", Nchw { n: 1, c: 2, h: 9, w: 9 }, 3, 3, 1, 1).expect("geometry");
        let w = test_data(g.weight_len(), 7);
        let ws = Workspace::default();
        let mut spread = 0;
        for (yy, xx) in [(0, 0), (1, 2), (3, 3), (4, 7), (8, 8), (5, 0)] {
            let mut x = test_data(g.input().numel(), 8);
            x[g.w * g.h + yy * g.w + xx] = f32::NAN;
            for tiling in [Tiling::F2x2, Tiling::F4x4] {
                let mut y = vec![0.0f32; g.output().numel()];
                conv2d(&ws, tiling, &g, &x, &w, None, None, Act::Identity, &mut y);
                for k in 0..g.c_out {
                    for oy in 0..g.h {
                        for ox in 0..g.w {
                            let near = oy.abs_diff(yy) <= 1 && ox.abs_diff(xx) <= 1;
                            let v = y[(k * g.h + oy) * g.w + ox];
                            assert!(!near || v.is_nan(), "{tiling:?}: NaN at {yy},{xx} missed {k},{oy},{ox}");
                            if tiling == Tiling::F2x2 {
                                assert!(near || !v.is_nan(), "F(2×2): NaN at {yy},{xx} reached {k},{oy},{ox}");
                            } else if !near && v.is_nan() {
                                spread += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            spread > 0,
            "F(4×4) kept every NaN in its neighbourhood: the module doc says otherwise"
        );
    }

    /// Against the f64 reference, on odd and even planes, one and several units, with
    /// bias, residual and ReLU: version 1 within a few f32 ulps of the sum's magnitude,
    /// version 2 within its [`error_bound`].
    #[test]
    fn matches_the_f64_reference() {
        for (tiling, scale) in [(Tiling::F2x2, 9.0), (Tiling::F4x4, error_bound::<F4>())] {
            for (n, ci, hw, co) in [
                (1, 3, 5, 2),
                (2, 8, 7, 16),
                (3, 16, 9, 8),
                (2, 130, 6, 70),
                (1, 4, 1, 3),
                (2, 64, 14, 64),
                (1, 24, 11, 40),
            ] {
                let g = Conv2dGeom::square("wino", Nchw { n, c: ci, h: hw, w: hw }, co, 3, 1, 1).expect("geometry");
                let x = test_data(g.input().numel(), 1);
                let w = test_data(g.weight_len(), 2);
                let b = test_data(co, 3);
                let res = test_data(g.output().numel(), 4);
                let ws = Workspace::default();
                let mut y = vec![f32::NAN; g.output().numel()];
                conv2d(&ws, tiling, &g, &x, &w, Some(&b), Some(&res), Act::Relu, &mut y);
                let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
                let want = reference::conv::conv2d(&g, &wide(&x), &wide(&w), Some(&wide(&b)));
                // |x|, |w| < 1: each product's rounding, amplified at most `scale` times.
                let tol = scale * ci as f64 * 4.0 * f32::EPSILON as f64;
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    let want = (want + res[i] as f64).max(0.0);
                    assert!(
                        (*got as f64 - want).abs() <= tol,
                        "{tiling:?} {n} {ci} {hw} {co}: at {i} got {got}, want {want}"
                    );
                }
            }
        }
    }
}
