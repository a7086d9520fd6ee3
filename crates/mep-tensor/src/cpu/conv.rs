//! Convolutions of the CPU backend (forward, input and weight gradients) and transposed
//! convolutions, on the GEMMs of [`gemm`](super::gemm).
//!
//! Every convolution is a GEMM per image, `Y_n[c_out, oh·ow] = W[c_out, K] · Col_n[K, oh·ow]`
//! with `K = c_in·kh·kw` and `Col_n` the im2col matrix of image `n`. The output pixels of an
//! image are cut into column blocks so that the block of `Col_n` built for one GEMM stays in
//! L2 and the epilogue (bias, residual, activation) runs on an output block that is still hot.
//! The (image, block) pairs are the unit of parallel work: rayon spreads them over its threads
//! and each GEMM runs single-threaded, which avoids gemm's per-call fork/join; only when there
//! are too few units does gemm parallelise internally.
//!
//! Paths: [`direct::choose`] and [`direct::choose_winograd`] send some 3×3 layers to the
//! direct kernels or to [`winograd`]. 1×1 stride-1 convs read the input as the GEMM operand
//! directly, and strided 1×1 convs run as 1×1 stride-1 convs of the pixels they read; other
//! stride-1 convs run on a zero-padded copy of the input over a "wide" output grid where each
//! im2col row is one contiguous copy (`conv2d_wide`); strided convs use a general im2col.
//! Small output planes, and planes of up to 64 pixels under a weight of at least 256 Ki
//! values, put several images into each GEMM (`conv2d_batched`). Input
//! gradients of stride-1 convs are forward convs with the flipped, transposed weight; strided
//! ones go through col2im. Weight gradients accumulate over fixed chunks of the images (not
//! one per thread), into a column-major `dW` when that makes gemm transpose the smaller
//! operand, and the chunks are added in order.
//!
//! Every result is bit-identical across runs, thread counts and x86-64 machines (AVX2 or
//! AVX-512, any cache sizes): no sum is split by the thread count or rayon's scheduling, and
//! `gemm_fixed_order` keeps gemm to the kernels that round the same on every machine.
//!
//! Callers ([`CpuBackend`](super::CpuBackend)) have checked every length.

use super::direct::{self, fwd, wgrad, ConvOp, ConvPath, Isa};
use super::gemm::{gemm_fixed_order, sgemm, sgemm_into, Scratch, SharedMut, Workspace};
use super::winograd;
use crate::backend::Act;
use crate::shape::{Conv2dGeom, ConvT2dGeom};
use gemm::Parallelism;
use rayon::prelude::*;

/// Floats of im2col columns plus output one forward block may use: half of a 2 MiB L2.
const COL_BLOCK_FLOATS: usize = 256 * 1024;
/// Weight-gradient GEMMs read and write all of `dW` per call, so they want long blocks
/// (a large GEMM depth) more than they want the columns to stay in L2.
const WGRAD_BLOCK_FLOATS: usize = 1024 * 1024;
/// The chunks of images whose weight gradients are summed separately and then added in
/// order: enough for the threads of most machines (more threads share each chunk's GEMMs),
/// few enough that the private dWs stay small.
const WGRAD_CHUNKS: usize = 16;
/// Output pixels a chunk of the weight gradient covers at least: its private dW (written once,
/// added once) must cost little beside its GEMMs (ResNet-50's 14×14 layers took twice as long
/// with one chunk per image).
const WGRAD_CHUNK_PIXELS: usize = 1024;
/// Below this many output columns per block, GEMM efficiency drops faster than balance improves.
const MIN_BLOCK_COLS: usize = 64;
/// Output planes of at most this many pixels are computed several images per GEMM: one
/// image's plane alone makes a GEMM too narrow to amortise packing the weights (ResNet-50's
/// later stages at 32×32 input have planes of 16, 4 and 1 pixels). Measured on ResNet-50 at
/// 32×32 and ResNet-20: 16 beat 0, 64 and 256 (larger planes do better per image).
const SMALL_PLANE: usize = 16;
/// 1×1 layers with at least this many weights and output planes of at most
/// [`BIG_WEIGHT_PLANE`] pixels are batched too. Measured with `conv_paths --r50-1x1` (AVX2,
/// 2 threads, wall ms, batch 8): ResNet-50's 7×7 1×1 layers at 224×224 took 5.1–5.2 ms
/// forward and 7.2–8.5 ms input gradient image by image, 4.3 and 4.8–5.2 batched; the
/// strided 1024→2048 one 12.4 and 18.5 ms, then 9.4 and 10.9.
const BIG_WEIGHT: usize = 512 * 512;
/// See [`BIG_WEIGHT`].
const BIG_WEIGHT_PLANE: usize = 64;
/// Larger kernels with at least [`BIG_WEIGHT`] weights are batched up to this plane: their
/// im2col columns are built per image either way, and image by image ResNet-50's 256→256
/// 28→14 stride-2 layer at 224×224 packs its whole weight (2.4 MB, more than L2) for each
/// GEMM of 196 columns. `conv_paths --r50 --layer "28>14" --path Gemm --reps 5`, 2 threads,
/// on-CPU ms, image by image / batched (2026-12-06, evening, rounds alternating):
/// - AVX2: forward 33.0 / 26.2, 28.0 / 27.1, 28.2 / 27.5; input gradient 40.9 / 27.6,
///   35.0 / 29.7, 36.1 / 30.3;
/// - AVX-512: forward 24.9 / 15.2, 17.1 / 15.8, 17.7 / 16.2; input gradient 37.1 / 18.4,
///   20.8 / 17.9, 29.4 / 20.2.
///
/// With a lower weight bound, 128→128 56→28 (784-pixel planes) lost batched on AVX2 (forward
/// 31.7–45.6 against 43.8–51.8 ms), and 1×1 layers on 14×14 planes did not clearly gain.
const BIG_KERNEL_PLANE: usize = 256;
/// The number of columns a batched GEMM aims for.
const BATCH_COLS: usize = 1024;

fn threads() -> usize {
    rayon::current_num_threads()
}

/// How the output pixels of each image are cut into column blocks, and whether the
/// (image, block) units run in parallel (else each GEMM parallelises itself).
#[derive(Clone, Copy, Debug)]
struct Plan {
    block: usize,
    blocks: usize,
    parallel_units: bool,
}

impl Plan {
    fn new(n: usize, cols: usize, max_block: usize) -> Plan {
        let nt = threads();
        let cols = cols.max(1);
        let mut blocks = cols.div_ceil(max_block.max(1));
        // A few units per thread so that uneven images or blocks still balance.
        let want_units = 4 * nt;
        if nt > 1 && n * blocks < want_units {
            blocks = blocks.max(want_units.div_ceil(n.max(1)));
        }
        blocks = blocks.min(cols.div_ceil(MIN_BLOCK_COLS.min(cols))).max(1);
        // gemm's AVX-512 micro-kernel covers 64 output columns (4 registers of 16) at a time.
        let block = cols.div_ceil(blocks).next_multiple_of(64).min(cols);
        let blocks = cols.div_ceil(block);
        Plan {
            block,
            blocks,
            parallel_units: nt > 1 && n * blocks >= nt,
        }
    }

    /// Runs `f(img, j0, j1)` for each block `j0..j1` of the `cols` columns of each of `n`
    /// images: the plan's units, in parallel when it says so.
    fn for_each_block(&self, n: usize, cols: usize, f: impl Fn(usize, usize, usize) + Sync + Send) {
        for_units(n * self.blocks, self.parallel_units, |u| {
            let (img, blk) = (u / self.blocks, u % self.blocks);
            let j0 = blk * self.block;
            f(img, j0, cols.min(j0 + self.block));
        });
    }

    fn gemm_par(&self) -> Parallelism {
        if self.parallel_units {
            Parallelism::None
        } else {
            Parallelism::Rayon(0)
        }
    }
}

fn for_units(units: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    if parallel {
        (0..units).into_par_iter().for_each(f);
    } else {
        (0..units).for_each(f);
    }
}

fn is_direct(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0
}

/// The output columns `[ox_lo, ox_hi)` whose input column `ox·stride + kj - pad` is inside the image.
fn valid_cols(g: &Conv2dGeom, kj: usize, ow: usize) -> (usize, usize) {
    let lo = g.pad.saturating_sub(kj).div_ceil(g.stride);
    let hi = if g.w + g.pad > kj {
        ((g.w - 1 + g.pad - kj) / g.stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Visits the output-row segments of the pixel range `[j0, j1)`: `(oy, ox0, ox1, offset in block)`.
fn for_segments(ow: usize, j0: usize, j1: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut j = j0;
    while j < j1 {
        let (oy, ox0) = (j / ow, j % ow);
        let ox1 = ow.min(ox0 + (j1 - j));
        f(oy, ox0, ox1, j - j0);
        j += ox1 - ox0;
    }
}

/// The im2col rows of output pixels `[j0, j1)` of one image: `col[K, j1 - j0]`, row `(c, ki, kj)`,
/// rows `ld` floats apart (`ld ≥ j1 - j0`, so several images can share one matrix).
fn im2col(g: &Conv2dGeom, x_img: &[f32], j0: usize, j1: usize, col: &mut [f32], ld: usize) {
    let ow = g.out_w();
    let rows_3x3 =
        g.kh == 3 && g.kw == 3 && g.pad == 1 && g.stride == 1 && j0.is_multiple_of(ow) && j1.is_multiple_of(ow);
    if rows_3x3 {
        let oys = j0 / ow..j1 / ow;
        match ow {
            4 => return im2col_3x3_rows::<4>(g, x_img, oys, col, ld),
            7 => return im2col_3x3_rows::<7>(g, x_img, oys, col, ld),
            8 => return im2col_3x3_rows::<8>(g, x_img, oys, col, ld),
            16 => return im2col_3x3_rows::<16>(g, x_img, oys, col, ld),
            _ => {}
        }
    }
    im2col_any(g, x_img, j0, j1, col, ld);
}

/// [`im2col`] for any geometry and pixel range.
fn im2col_any(g: &Conv2dGeom, x_img: &[f32], j0: usize, j1: usize, col: &mut [f32], ld: usize) {
    let (ow, hw, bl, s) = (g.out_w(), g.h * g.w, j1 - j0, g.stride);
    let mut rows = col.chunks_mut(ld);
    for plane in x_img.chunks_exact(hw) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let Some(row) = rows.next() else { return };
                let row = &mut row[..bl];
                let (lo, hi) = valid_cols(g, kj, ow);
                for_segments(ow, j0, j1, |oy, ox0, ox1, off| {
                    let seg = &mut row[off..off + ox1 - ox0];
                    let iy = (oy * s + ki).wrapping_sub(g.pad);
                    if iy >= g.h {
                        seg.fill(0.0);
                        return;
                    }
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let a = lo.clamp(ox0, ox1);
                    let b = hi.clamp(a, ox1);
                    seg[..a - ox0].fill(0.0);
                    seg[b - ox0..].fill(0.0);
                    let dst = &mut seg[a - ox0..b - ox0];
                    if b > a {
                        let first = a * s + kj - g.pad;
                        if s == 1 {
                            dst.copy_from_slice(&src[first..first + (b - a)]);
                        } else if s == 2 {
                            // Pairs vectorise into shuffles where `step_by` stays scalar; the last
                            // pixel may lack its partner at the row's end.
                            let (body, last) = dst.split_at_mut(b - a - 1);
                            for (d, p) in body.iter_mut().zip(src[first..].chunks_exact(2)) {
                                *d = p[0];
                            }
                            last[0] = src[first + 2 * (b - a - 1)];
                        } else {
                            for (d, v) in dst.iter_mut().zip(src[first..].iter().step_by(s)) {
                                *d = *v;
                            }
                        }
                    }
                });
            }
        }
    }
}

/// [`im2col`] of whole output rows `oys` of a 3×3, stride-1, padding-1 convolution with
/// `OW`-pixel rows (ResNet-20's 8×8 and 16×16 stages, ResNet-50's 7×7 at 224×224 and 4×4 at
/// 32×32): the same values, each input row padded
/// once into a small array from which the three `kj` segments are fixed-size copies, instead
/// of a fill and a copy call per row segment, whose calls cost more than the few floats they
/// move.
fn im2col_3x3_rows<const OW: usize>(
    g: &Conv2dGeom,
    x_img: &[f32],
    oys: std::ops::Range<usize>,
    col: &mut [f32],
    ld: usize,
) {
    debug_assert!(g.kh == 3 && g.kw == 3 && g.pad == 1 && g.stride == 1 && g.w == OW);
    let hw = g.h * g.w;
    // Padded input row: a zero column on either side; 32 floats hold OW ≤ 16 (+2).
    let mut pb = [0.0f32; 32];
    for (c, plane) in x_img.chunks_exact(hw).enumerate() {
        for ki in 0..3 {
            let r0 = (c * 3 + ki) * 3 * ld;
            for (q, oy) in oys.clone().enumerate() {
                let iy = (oy + ki).wrapping_sub(1);
                if iy < g.h {
                    pb[1..1 + OW].copy_from_slice(&plane[iy * OW..][..OW]);
                } else {
                    pb[1..1 + OW].fill(0.0);
                }
                for kj in 0..3 {
                    let at = r0 + kj * ld + q * OW;
                    let seg: &mut [f32; OW] = (&mut col[at..at + OW]).try_into().expect("OW floats");
                    let src: &[f32; OW] = pb[kj..kj + OW].try_into().expect("OW floats");
                    *seg = *src;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds `col[K, j1 - j0]` (rows `ld` apart) into the image gradient `dx_img`.
fn col2im_add(g: &Conv2dGeom, col: &[f32], j0: usize, j1: usize, dx_img: &mut [f32], ld: usize) {
    let (ow, hw, bl, s) = (g.out_w(), g.h * g.w, j1 - j0, g.stride);
    let mut rows = col.chunks(ld);
    for plane in dx_img.chunks_exact_mut(hw) {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let Some(row) = rows.next() else { return };
                let row = &row[..bl];
                let (lo, hi) = valid_cols(g, kj, ow);
                for_segments(ow, j0, j1, |oy, ox0, ox1, off| {
                    let iy = (oy * s + ki).wrapping_sub(g.pad);
                    let a = lo.clamp(ox0, ox1);
                    let b = hi.clamp(a, ox1);
                    if iy >= g.h || b == a {
                        return;
                    }
                    let src = &row[off + a - ox0..off + b - ox0];
                    let first = iy * g.w + a * s + kj - g.pad;
                    if s == 1 {
                        for (d, v) in plane[first..first + (b - a)].iter_mut().zip(src) {
                            *d += *v;
                        }
                    } else {
                        for (d, v) in plane[first..].iter_mut().step_by(s).zip(src) {
                            *d += *v;
                        }
                    }
                });
            }
        }
    }
}

/// `row = act(row + b + res)` on one output row segment.
pub(crate) fn epilogue(row: &mut [f32], b: Option<f32>, res: Option<&[f32]>, act: Act) {
    if let Some(b) = b {
        row.iter_mut().for_each(|v| *v += b);
    }
    if let Some(res) = res {
        row.iter_mut().zip(res).for_each(|(v, r)| *v += *r);
    }
    match act {
        Act::Identity => {}
        Act::Relu => row.iter_mut().for_each(|v| *v = crate::float::relu(*v)),
        Act::LeakyRelu(s) => row.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { s * *v }),
        Act::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
    }
}

/// Sums each channel of an NCHW tensor: `out[c] = Σ_{n, p} t[n, c, p]`.
pub(super) fn channel_sums(n: usize, c: usize, hw: usize, t: &[f32], out: &mut [f32]) {
    out.par_iter_mut().enumerate().for_each(|(ch, o)| {
        let mut acc = 0.0f64;
        for img in 0..n {
            let plane = &t[(img * c + ch) * hw..][..hw];
            // Sixteen lanes vectorise; f64 across chunks keeps large planes accurate.
            let mut lanes = [0.0f32; 16];
            let mut chunks = plane.chunks_exact(16);
            for ch16 in &mut chunks {
                for (l, v) in lanes.iter_mut().zip(ch16) {
                    *l += *v;
                }
            }
            acc += lanes.iter().map(|&v| v as f64).sum::<f64>();
            acc += chunks.remainder().iter().map(|&v| v as f64).sum::<f64>();
        }
        *o = acc as f32;
    });
}

/// The operands of a forward convolution other than its output, `(x, w, bias, residual, act)`
/// as [`conv2d`] takes them, for the strategies it picks from.
#[derive(Clone, Copy)]
struct Forward<'a>(&'a [f32], &'a [f32], Option<&'a [f32]>, Option<&'a [f32]>, Act);

/// `y = act(conv2d(x, w) + bias + residual)`, NCHW, weight `[c_out, c_in, kh, kw]`, on the
/// path [`direct::choose`] picks for the shape.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    conv2d_on(ConvPath::Auto, ws, g, x, w, bias, residual, act, y);
}

/// [`conv2d`] on the given path (a forced path the shape does not support falls back to GEMM).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_on(
    path: ConvPath,
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    // Winograd first: where it is chosen it beats the direct kernels too (64→64 at 56×56).
    if let Some(tiling) = direct::use_winograd(path, ConvOp::Forward, g) {
        return winograd::conv2d(ws, tiling, g, x, w, bias, residual, act, y);
    }
    if direct::use_direct(path, ConvOp::Forward, g) {
        return fwd::conv2d(ws, Isa::current(), g, x, w, bias, residual, act, y);
    }
    if let Some(gs) = subsampled(g) {
        // A strided 1×1 conv is a 1×1 stride-1 conv of the input's kept pixels: gathered once,
        // they run on that path (weights packed once per block of a whole image rather than
        // per im2col block). Each output is the same dot product in the same order: same bits.
        let mut xs = ws.take(gs.input().numel());
        subsample(g, x, &mut xs);
        return conv2d_on(path, ws, &gs, &xs, w, bias, residual, act, y);
    }
    let direct = is_direct(g);
    let f = Forward(x, w, bias, residual, act);
    if use_batched(g) {
        return conv2d_batched(ws, g, &f, y);
    }
    if g.stride == 1 && !direct {
        return conv2d_wide(ws, g, &f, y);
    }
    let (ohw, kk, co) = (g.out_h() * g.out_w(), g.c_in * g.kh * g.kw, g.c_out);
    let in_img = g.c_in * g.h * g.w;
    // The columns and the output block both stay in L2 until the epilogue has run.
    let max_block = COL_BLOCK_FLOATS / (kk + co).max(1);
    let plan = Plan::new(g.n, ohw, max_block);
    let par = plan.gemm_par();
    let yp = SharedMut(y.as_mut_ptr());
    plan.for_each_block(g.n, ohw, |img, j0, j1| {
        let bl = j1 - j0;
        let x_img = &x[img * in_img..(img + 1) * in_img];
        let y_off = img * co * ohw;
        let col = (!direct).then(|| {
            let mut c = ws.take(kk * bl);
            im2col(g, x_img, j0, j1, &mut c, bl);
            c
        });
        let (rhs, rhs_rs) = match &col {
            None => (x_img.as_ptr().wrapping_add(j0), ohw),
            Some(c) => (c.as_ptr(), bl),
        };
        // SAFETY: the unit writes rows `[y_off + o·ohw + j0, .. + bl)` only, disjoint from other units;
        // lhs is `co×kk` row-major and rhs `kk×bl` at row stride `rhs_rs`, both in bounds.
        unsafe {
            sgemm(
                (co, bl, kk),
                (yp.get().add(y_off + j0), ohw),
                false,
                (w.as_ptr(), kk, 1),
                (rhs, rhs_rs, 1),
                par,
            );
        }
        drop(col);
        if bias.is_some() || residual.is_some() || act != Act::Identity {
            for o in 0..co {
                let start = y_off + o * ohw + j0;
                // SAFETY: as above, this row segment belongs to this unit alone.
                let row = unsafe { std::slice::from_raw_parts_mut(yp.get().add(start), bl) };
                epilogue(row, bias.map(|b| b[o]), residual.map(|r| &r[start..start + bl]), act);
            }
        }
    });
}

/// Stride-1 convolution on a zero-padded copy of the input, computed on a "wide" output grid
/// of `oh` rows of `wp = w + 2 pad` columns, of which the first `ow` are real and the rest
/// discarded. On that grid each im2col row is a single contiguous run of the padded plane
/// (`P[c][j + ki·wp + kj]` for wide pixel `j`), so building the columns is one `memcpy` per
/// row instead of one per output row segment with zero fills, which dominated layers with
/// few output channels.
fn conv2d_wide(ws: &Workspace, g: &Conv2dGeom, f: &Forward<'_>, y: &mut [f32]) {
    let Forward(x, w, bias, residual, act) = *f;
    let (oh, ow, kk, co, ci) = (g.out_h(), g.out_w(), g.c_in * g.kh * g.kw, g.c_out, g.c_in);
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    // The last wide pixel of the last tap reads `hp·wp + kw - 2`; the slack keeps it in the plane.
    let plane = hp * wp + g.kw;
    let (in_img, pad_img, ohw, wide) = (ci * g.h * g.w, ci * plane, oh * ow, oh * wp);
    if g.n == 0 || co == 0 {
        return;
    }
    let mut padded = ws.take(g.n * pad_img);
    padded.par_chunks_mut(plane).enumerate().for_each(|(p, dst)| {
        let src = &x[(p / ci.max(1)) * in_img + (p % ci.max(1)) * g.h * g.w..][..g.h * g.w];
        dst[..g.pad * wp].fill(0.0);
        for (r, src_row) in src.chunks_exact(g.w.max(1)).enumerate() {
            let row = &mut dst[(r + g.pad) * wp..(r + g.pad + 1) * wp];
            row[..g.pad].fill(0.0);
            row[g.pad..g.pad + g.w].copy_from_slice(src_row);
            row[g.pad + g.w..].fill(0.0);
        }
        dst[(g.h + g.pad) * wp..].fill(0.0);
    });
    let padded = &padded[..];
    let plan = Plan::new(g.n, wide, COL_BLOCK_FLOATS / (kk + co).max(1));
    let par = plan.gemm_par();
    let yp = SharedMut(y.as_mut_ptr());
    plan.for_each_block(g.n, wide, |img, j0, j1| {
        let bl = j1 - j0;
        let p_img = &padded[img * pad_img..(img + 1) * pad_img];
        let mut col = ws.take(kk * bl);
        let mut rows = col.chunks_exact_mut(bl);
        for p_plane in p_img.chunks_exact(plane) {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    if let Some(row) = rows.next() {
                        let first = j0 + ki * wp + kj;
                        row.copy_from_slice(&p_plane[first..first + bl]);
                    }
                }
            }
        }
        let mut out = ws.take(co * bl);
        sgemm_into((co, bl, kk), &mut out, (w, kk, 1), (&col[..], bl, 1), par);
        drop(col);
        let y_off = img * co * ohw;
        for (o, out_row) in out.chunks_exact(bl).enumerate() {
            for_segments(wp, j0, j1, |oy, ox0, ox1, off| {
                let ox1 = ox1.min(ow);
                if ox1 <= ox0 {
                    return;
                }
                let start = y_off + (o * oh + oy) * ow + ox0;
                let len = ox1 - ox0;
                // SAFETY: output pixels `(img, o, oy, ox0..ox1)` lie in this unit's wide block
                // only, so no other unit writes them.
                let dst = unsafe { std::slice::from_raw_parts_mut(yp.get().add(start), len) };
                dst.copy_from_slice(&out_row[off..off + len]);
                epilogue(dst, bias.map(|b| b[o]), residual.map(|r| &r[start..start + len]), act);
            });
        }
    });
}

/// The weight of the stride-1 convolution that computes an input gradient:
/// `w'[i, o, a, b] = w[o, i, kh-1-a, kw-1-b]`.
/// For each kernel tap `(ki, kj)` and output pixel, the input pixel it reads, or `h·w` (one
/// past the plane, where the gather keeps a zero) in the padding: small planes gather
/// through this table instead of walking row segments, whose bookkeeping costs more than
/// the copy when rows are a few pixels long, and the gather needs no branch.
fn tap_table(g: &Conv2dGeom) -> Vec<u32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut t = Vec::with_capacity(g.kh * g.kw * oh * ow);
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            for oy in 0..oh {
                for ox in 0..ow {
                    let iy = (oy * g.stride + ki).wrapping_sub(g.pad);
                    let ix = (ox * g.stride + kj).wrapping_sub(g.pad);
                    let i = if iy < g.h && ix < g.w { iy * g.w + ix } else { g.h * g.w };
                    t.push(i as u32);
                }
            }
        }
    }
    t
}

/// Planes up to this size are gathered through a stack copy with a zero slot after them.
const TABLE_MAX_PLANE: usize = 1024;

/// [`im2col`] of a whole small image through a [`tap_table`]; rows `ld` apart.
fn im2col_table(g: &Conv2dGeom, table: &[u32], x_img: &[f32], col: &mut [f32], ld: usize) {
    let (ohw, hw) = (g.out_h() * g.out_w(), g.h * g.w);
    let taps = g.kh * g.kw;
    let mut padded = [0.0f32; TABLE_MAX_PLANE + 1];
    for (c, plane) in x_img.chunks_exact(hw).enumerate() {
        padded[..hw].copy_from_slice(plane);
        let padded = &padded[..=hw];
        for (t, idx) in table.chunks_exact(ohw).enumerate() {
            let row = &mut col[(c * taps + t) * ld..][..ohw];
            for (d, &i) in row.iter_mut().zip(idx) {
                *d = padded[i as usize];
            }
        }
    }
}

/// The adjoint of [`im2col_table`]: writes the image gradient from the columns (padding
/// taps land in the scratch slot past the plane).
fn col2im_table(g: &Conv2dGeom, table: &[u32], col: &[f32], dx_img: &mut [f32], ld: usize) {
    let (ohw, hw) = (g.out_h() * g.out_w(), g.h * g.w);
    let taps = g.kh * g.kw;
    let mut acc = [0.0f32; TABLE_MAX_PLANE + 1];
    for (c, plane) in dx_img.chunks_exact_mut(hw).enumerate() {
        let acc = &mut acc[..=hw];
        acc.fill(0.0);
        for (t, idx) in table.chunks_exact(ohw).enumerate() {
            let row = &col[(c * taps + t) * ld..][..ohw];
            for (v, &i) in row.iter().zip(idx) {
                acc[i as usize] += *v;
            }
        }
        plane.copy_from_slice(&acc[..hw]);
    }
}

/// Whether several images share each GEMM: small output planes, in a batch, from input
/// planes small enough for the table gather.
fn use_batched(g: &Conv2dGeom) -> bool {
    let ohw = g.out_h() * g.out_w();
    // Layers with a large weight (ResNet-50's 7×7 stage at 224×224: 49-pixel planes, 1–2.4 M
    // weights) would pack all of it per image for a GEMM of 49 columns.
    let plane = if g.kh * g.kw > 1 {
        BIG_KERNEL_PLANE
    } else {
        BIG_WEIGHT_PLANE
    };
    let big_weight = ohw <= plane && g.weight_len() >= BIG_WEIGHT;
    small_plane_batched(g) || (big_weight && can_batch(g))
}

/// Whether [`use_batched`] takes `g` for its small output plane alone.
fn small_plane_batched(g: &Conv2dGeom) -> bool {
    g.out_h() * g.out_w() <= SMALL_PLANE && can_batch(g)
}

/// Whether the batched GEMM can run `g` at all: several images, input planes small enough for
/// its tap table.
fn can_batch(g: &Conv2dGeom) -> bool {
    g.n > 1 && g.h * g.w <= TABLE_MAX_PLANE
}

/// How the batch is cut into chunks of images that share one GEMM: the chunk size, the
/// number of chunks, and the GEMM's own parallelism (none when chunks run in parallel).
fn batch_plan(n: usize, ohw: usize) -> (usize, usize, Parallelism) {
    let nt = threads();
    // Wide enough GEMMs, but at least one chunk per thread where the batch allows it.
    let nb = (BATCH_COLS / ohw.max(1)).clamp(1, n.div_ceil(nt).max(1));
    let chunks = n.div_ceil(nb);
    let par = if chunks >= nt {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    (nb, chunks, par)
}

/// The forward for small output planes: the im2col columns of several images side by side
/// (`col[K, m·ohw]`) so one GEMM covers them, then a scatter to NCHW that applies the
/// epilogue while each row is in cache. Chunks of images run in parallel.
fn conv2d_batched(ws: &Workspace, g: &Conv2dGeom, f: &Forward<'_>, y: &mut [f32]) {
    let Forward(x, w, bias, residual, act) = *f;
    let (ohw, kk, co) = (g.out_h() * g.out_w(), g.c_in * g.kh * g.kw, g.c_out);
    let in_img = g.c_in * g.h * g.w;
    let (nb, chunks, par) = batch_plan(g.n, ohw);
    let direct = is_direct(g);
    let table = if direct { Vec::new() } else { tap_table(g) };
    let body = |chunk: usize, y_chunk: &mut [f32]| {
        let i0 = chunk * nb;
        let m = nb.min(g.n - i0);
        let cols = m * ohw;
        let mut col = ws.take(kk * cols);
        for j in 0..m {
            let x_img = &x[(i0 + j) * in_img..][..in_img];
            if direct {
                for (c, plane) in x_img.chunks_exact(ohw).enumerate() {
                    col[c * cols + j * ohw..][..ohw].copy_from_slice(plane);
                }
            } else {
                im2col_table(g, &table, x_img, &mut col[j * ohw..], cols);
            }
        }
        let mut out = ws.take(co * cols);
        sgemm_into((co, cols, kk), &mut out, (w, kk, 1), (&col[..], cols, 1), par);
        let base = i0 * co * ohw;
        match residual {
            // Bias and activation on the GEMM's long rows, where they vectorise; the
            // scatter to NCHW is then a plain copy of rows of `ohw` pixels.
            None => {
                for (o, row) in out.chunks_exact_mut(cols).enumerate() {
                    epilogue(row, bias.map(|b| b[o]), None, act);
                }
                for (r, row) in y_chunk.chunks_exact_mut(ohw).enumerate() {
                    let (j, o) = (r / co, r % co);
                    row.copy_from_slice(&out[o * cols + j * ohw..][..ohw]);
                }
            }
            Some(res) => {
                for (o, row) in out.chunks_exact_mut(cols).enumerate() {
                    epilogue(row, bias.map(|b| b[o]), None, Act::Identity);
                }
                let res = &res[base..base + y_chunk.len()];
                for (r, (row, rrow)) in y_chunk.chunks_exact_mut(ohw).zip(res.chunks_exact(ohw)).enumerate() {
                    let (j, o) = (r / co, r % co);
                    let src = &out[o * cols + j * ohw..][..ohw];
                    for ((d, v), rv) in row.iter_mut().zip(src).zip(rrow) {
                        *d = *v + *rv;
                    }
                }
                if act != Act::Identity {
                    epilogue(y_chunk, None, None, act);
                }
            }
        }
    };
    let per = nb * co * ohw;
    if chunks >= threads() && chunks > 1 {
        y.par_chunks_mut(per).enumerate().for_each(|(c, yc)| body(c, yc));
    } else {
        y.chunks_mut(per).enumerate().for_each(|(c, yc)| body(c, yc));
    }
}

/// The input gradient for small output planes: `dy` of several images gathered side by side,
/// `dCol = Wᵀ·dY` as one GEMM, then col2im image by image. Chunks of images run in parallel.
fn conv2d_bwd_input_batched(ws: &Workspace, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (ohw, kk, co) = (g.out_h() * g.out_w(), g.c_in * g.kh * g.kw, g.c_out);
    let in_img = g.c_in * g.h * g.w;
    let (nb, chunks, par) = batch_plan(g.n, ohw);
    let table = tap_table(g);
    let body = |chunk: usize, dx_chunk: &mut [f32]| {
        let i0 = chunk * nb;
        let m = nb.min(g.n - i0);
        let cols = m * ohw;
        let mut dyb = ws.take(co * cols);
        for j in 0..m {
            for o in 0..co {
                dyb[o * cols + j * ohw..][..ohw].copy_from_slice(&dy[((i0 + j) * co + o) * ohw..][..ohw]);
            }
        }
        let mut col = ws.take(kk * cols);
        // wᵀ is read as `kk×co` (strides 1 and kk).
        sgemm_into((kk, cols, co), &mut col, (w, 1, kk), (&dyb[..], cols, 1), par);
        for (j, dx_img) in dx_chunk.chunks_exact_mut(in_img).enumerate() {
            col2im_table(g, &table, &col[j * ohw..], dx_img, cols);
        }
    };
    if in_img == 0 {
        return;
    }
    let per = nb * in_img;
    if chunks >= threads() && chunks > 1 {
        dx.par_chunks_mut(per).enumerate().for_each(|(c, d)| body(c, d));
    } else {
        dx.chunks_mut(per).enumerate().for_each(|(c, d)| body(c, d));
    }
}

/// `out[i, o] = flip(w[o, i])`: the weight of the convolution that is this one's input
/// gradient. Tiled over (o, i) so that the reads of a tile are contiguous runs of kernels
/// rather than one kernel per cache line.
pub(super) fn flip_transpose(g: &Conv2dGeom, w: &[f32], out: &mut [f32]) {
    const TILE: usize = 16;
    let (ci, co, kk) = (g.c_in, g.c_out, g.kh * g.kw);
    out.par_chunks_mut(TILE * co * kk).enumerate().for_each(|(ib, dst)| {
        let i0 = ib * TILE;
        let i1 = ci.min(i0 + TILE);
        for o0 in (0..co).step_by(TILE) {
            for o in o0..co.min(o0 + TILE) {
                for i in i0..i1 {
                    let src = &w[(o * ci + i) * kk..][..kk];
                    let d = &mut dst[((i - i0) * co + o) * kk..][..kk];
                    // Reversing the kh·kw kernel flips both of its axes at once.
                    for (dv, sv) in d.iter_mut().zip(src.iter().rev()) {
                        *dv = *sv;
                    }
                }
            }
        }
    });
}

/// Gradient of `conv2d` with respect to its input, on the path [`direct::choose`] picks.
pub fn conv2d_bwd_input(ws: &Workspace, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    conv2d_bwd_input_on(ConvPath::Auto, ws, g, dy, w, dx);
}

/// [`conv2d_bwd_input`] on the given path (a forced path the shape does not support falls
/// back to GEMM).
pub fn conv2d_bwd_input_on(path: ConvPath, ws: &Workspace, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let direct = direct::use_direct(path, ConvOp::BwdInput, g);
    if direct && g.stride == 2 {
        return fwd::conv2d_bwd_input_s2(ws, Isa::current(), g, dy, w, dx);
    }
    if let Some(gs) = subsampled(g) {
        // The gradient of the kept pixels (a 1×1 stride-1 input gradient), scattered back;
        // every other pixel's gradient is zero. The same sums as col2im's: same bits.
        let mut dxs = ws.take(gs.input().numel());
        conv2d_bwd_input_on(path, ws, &gs, dy, w, &mut dxs);
        dx.fill(0.0);
        scatter_subsampled(g, &dxs, dx);
        return;
    }
    let winograd = direct::use_winograd(path, ConvOp::BwdInput, g);
    if use_batched(g) && !direct && winograd.is_none() {
        // Wᵀ through the GEMM's strides: no flipped weight to build.
        return conv2d_bwd_input_batched(ws, g, dy, w, dx);
    }
    if let Some(tiling) = winograd {
        return winograd::conv2d_bwd_input(ws, tiling, g, dy, w, dx);
    }
    if is_direct(g) {
        return conv2d_bwd_input_direct(g, dy, w, dx);
    }
    if g.stride == 1 && g.kh == g.kw && g.pad < g.kh {
        // With stride 1 the input gradient is itself a convolution (flipped, transposed
        // weight), which avoids col2im's scattered adds and parallelises over blocks.
        let gt = Conv2dGeom {
            n: g.n,
            c_in: g.c_out,
            h: g.out_h(),
            w: g.out_w(),
            c_out: g.c_in,
            kh: g.kh,
            kw: g.kw,
            stride: 1,
            pad: g.kh - 1 - g.pad,
        };
        let mut wt = ws.take(g.weight_len());
        flip_transpose(g, w, &mut wt);
        if direct {
            fwd::conv2d(ws, Isa::current(), &gt, dy, &wt, None, None, Act::Identity, dx);
        } else {
            // The choice was made for the gradient's shape; the forward's table must not redo it.
            conv2d_on(ConvPath::Gemm, ws, &gt, dy, &wt, None, None, Act::Identity, dx);
        }
        return;
    }
    conv2d_bwd_input_col2im(ws, g, dy, w, dx);
}

/// The 1×1 stride-1 geometry of a strided 1×1 convolution without padding, over the pixels
/// it reads (`x[.., s·i, s·j]`); `None` for other convolutions, and for the small output
/// planes that the batched GEMM takes, whose tap table gathers the kept pixels already (the
/// copy would be one more pass: ResNet-50 at 32×32).
fn subsampled(g: &Conv2dGeom) -> Option<Conv2dGeom> {
    let strided_1x1 = g.kh == 1 && g.kw == 1 && g.pad == 0 && g.stride > 1;
    (strided_1x1 && !small_plane_batched(g)).then(|| Conv2dGeom {
        h: g.out_h(),
        w: g.out_w(),
        stride: 1,
        ..*g
    })
}

/// `xs[n, c, i, j] = x[n, c, s·i, s·j]` for [`subsampled`]'s geometry.
fn subsample(g: &Conv2dGeom, x: &[f32], xs: &mut [f32]) {
    let (oh, ow, s) = (g.out_h(), g.out_w(), g.stride);
    let plane = g.h * g.w;
    xs[..g.n * g.c_in * oh * ow]
        .par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(p, dst)| {
            let src = &x[p * plane..(p + 1) * plane];
            for (i, row) in dst.chunks_exact_mut(ow.max(1)).enumerate() {
                let src_row = &src[s * i * g.w..];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = src_row[s * j];
                }
            }
        });
}

/// `dx[n, c, s·i, s·j] = dxs[n, c, i, j]`, the inverse of [`subsample`] (other pixels untouched).
fn scatter_subsampled(g: &Conv2dGeom, dxs: &[f32], dx: &mut [f32]) {
    let (oh, ow, s) = (g.out_h(), g.out_w(), g.stride);
    let plane = g.h * g.w;
    dx.par_chunks_mut(plane.max(1)).enumerate().for_each(|(p, dst)| {
        let src = &dxs[p * oh * ow..(p + 1) * oh * ow];
        for (i, row) in src.chunks_exact(ow.max(1)).enumerate() {
            let dst_row = &mut dst[s * i * g.w..];
            for (j, v) in row.iter().enumerate() {
                dst_row[s * j] = *v;
            }
        }
    });
}

/// Input gradient of a 1×1 stride-1 convolution: `dX = Wᵀ·dY` per image, the transpose
/// taken by the GEMM's strides rather than materialised.
fn conv2d_bwd_input_direct(g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (hw, ci, co) = (g.h * g.w, g.c_in, g.c_out);
    let plan = Plan::new(g.n, hw, COL_BLOCK_FLOATS / (ci + co).max(1));
    let par = plan.gemm_par();
    let dxp = SharedMut(dx.as_mut_ptr());
    plan.for_each_block(g.n, hw, |img, j0, j1| {
        let bl = j1 - j0;
        // SAFETY: the unit writes columns `[j0, j0 + bl)` of image `img`'s `ci×hw` gradient,
        // disjoint from other units; lhs is wᵀ (`ci×co`, strides 1 and ci); rhs is the `co×bl`
        // block of dy at row stride hw; all in bounds.
        unsafe {
            sgemm(
                (ci, bl, co),
                (dxp.get().add(img * ci * hw + j0), hw),
                false,
                (w.as_ptr(), 1, ci),
                (dy.as_ptr().add(img * co * hw + j0), hw, 1),
                par,
            );
        }
    });
}

/// Input gradient through `dCol = Wᵀ·dY` and col2im, image by image.
fn conv2d_bwd_input_col2im(ws: &Workspace, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (ohw, kk, co) = (g.out_h() * g.out_w(), g.c_in * g.kh * g.kw, g.c_out);
    if use_batched(g) {
        return conv2d_bwd_input_batched(ws, g, dy, w, dx);
    }
    let in_img = g.c_in * g.h * g.w;
    let max_block = (COL_BLOCK_FLOATS / kk.max(1)).max(MIN_BLOCK_COLS);
    let nt = threads();
    // col2im of two blocks of one image add into the same pixels, so images are the units.
    let parallel = nt > 1 && g.n >= nt;
    let par = if parallel {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    let body = |img: usize, dx_img: &mut [f32]| {
        dx_img.fill(0.0);
        let dy_img = &dy[img * co * ohw..(img + 1) * co * ohw];
        let block = max_block.min(ohw.max(1));
        let mut col = ws.take(kk * block);
        let mut j0 = 0;
        while j0 < ohw {
            let j1 = ohw.min(j0 + block);
            let bl = j1 - j0;
            // wᵀ is read as `kk×co` (strides 1 and kk), the block of dy at row stride ohw.
            sgemm_into((kk, bl, co), &mut col, (w, 1, kk), (&dy_img[j0..], ohw, 1), par);
            col2im_add(g, &col[..kk * bl], j0, j1, dx_img, bl);
            j0 = j1;
        }
    };
    if in_img == 0 {
        return;
    }
    if parallel {
        dx.par_chunks_mut(in_img).enumerate().for_each(|(i, d)| body(i, d));
    } else {
        dx.chunks_mut(in_img).enumerate().for_each(|(i, d)| body(i, d));
    }
}

/// `dW (+)= Σ_j dY[o, j]·Col[K, j]` over the given images, into `acc`: `[c_out, K]`, or its
/// transpose `[K, c_out]` when `transposed`.
#[allow(clippy::too_many_arguments)]
fn wgrad_images(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    imgs: std::ops::Range<usize>,
    acc: &mut [f32],
    transposed: bool,
    par: Parallelism,
) {
    let (ohw, kk, co) = (g.out_h() * g.out_w(), g.c_in * g.kh * g.kw, g.c_out);
    let in_img = g.c_in * g.h * g.w;
    let direct = is_direct(g);
    let block = if direct {
        ohw.max(1)
    } else {
        (WGRAD_BLOCK_FLOATS / kk.max(1)).clamp(256, ohw.max(256))
    };
    let mut col = if direct {
        None
    } else {
        Some(ws.take(kk * block.min(ohw)))
    };
    let (dst_rs, dst_cs) = if transposed { (1, co) } else { (kk, 1) };
    let mut first = true;
    for img in imgs {
        let x_img = &x[img * in_img..(img + 1) * in_img];
        let dy_img = &dy[img * co * ohw..(img + 1) * co * ohw];
        let mut j0 = 0;
        while j0 < ohw {
            let j1 = ohw.min(j0 + block);
            let bl = j1 - j0;
            let (rhs, rhs_cs) = match col.as_mut() {
                None => (x_img.as_ptr().wrapping_add(j0), ohw),
                Some(c) => {
                    im2col(g, x_img, j0, j1, &mut c[..kk * bl], bl);
                    (c.as_ptr(), bl)
                }
            };
            // SAFETY: dst is acc (`co×kk` either way round), lhs the `co×bl` block of dy (row
            // stride ohw), rhs the transpose of the `kk×bl` columns (row stride 1, column
            // stride rhs_cs); all in bounds.
            unsafe {
                gemm_fixed_order(
                    co,
                    kk,
                    bl,
                    acc.as_mut_ptr(),
                    dst_rs,
                    dst_cs,
                    !first,
                    dy_img.as_ptr().wrapping_add(j0),
                    ohw,
                    1,
                    rhs,
                    1,
                    rhs_cs,
                    par,
                );
            }
            first = false;
            j0 = j1;
        }
    }
    if first {
        acc.fill(0.0);
    }
}

/// Gradients of `conv2d` with respect to the weight and, when given, the bias, on the path
/// [`direct::choose`] picks.
pub fn conv2d_bwd_weight(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    conv2d_bwd_weight_on(ConvPath::Auto, ws, g, x, dy, dw, db);
}

/// [`conv2d_bwd_weight`] on the given path (a forced path the shape does not support falls
/// back to GEMM).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_bwd_weight_on(
    path: ConvPath,
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    if direct::use_direct(path, ConvOp::BwdWeight, g) && wgrad::conv2d_bwd_weight_direct(ws, g, x, dy, dw) {
        if let Some(db) = db {
            channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), dy, db);
        }
        return;
    }
    let nt = threads();
    let (wl, kk, co) = (g.weight_len(), g.c_in * g.kh * g.kw, g.c_out);
    // Both operands are contiguous along the pixels they are summed over, so gemm must
    // transpose one of them while packing, which is slow; a column-major dW makes that the
    // (smaller) dY block instead of the im2col columns.
    let transposed = co < kk;
    // With a batch, each chunk of images accumulates into a private dW and the chunks are
    // summed in order. The chunks are fixed by the batch and the plane size, not by the
    // thread count, so
    // that dW is bit-identical whatever `--threads` is (a private dW per thread would make the
    // sum's grouping, and so its rounding, depend on it).
    let ohw = g.out_h() * g.out_w();
    let per =
        g.n.div_ceil(WGRAD_CHUNKS)
            .max(WGRAD_CHUNK_PIXELS.div_ceil(ohw.max(1)))
            .max(1);
    let chunks = g.n.div_ceil(per).max(1);
    let par = if chunks >= nt {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    if !transposed && chunks == 1 {
        wgrad_images(ws, g, x, dy, 0..g.n, dw, false, par);
    } else if wl > 0 {
        let own = usize::from(!transposed);
        let mut partials: Vec<Scratch<'_>> = (own..chunks).map(|_| ws.take(wl)).collect();
        let mut targets: Vec<&mut [f32]> = Vec::with_capacity(chunks);
        if !transposed {
            targets.push(&mut *dw);
        }
        targets.extend(partials.iter_mut().map(|p| &mut p[..]));
        let run = |c: usize, t: &mut [f32]| {
            let imgs = c * per..g.n.min((c + 1) * per);
            wgrad_images(ws, g, x, dy, imgs, t, transposed, par);
        };
        if chunks > 1 {
            targets.into_par_iter().enumerate().for_each(|(c, t)| run(c, t));
        } else {
            targets.into_iter().enumerate().for_each(|(c, t)| run(c, t));
        }
        if transposed {
            // Add the partials into the first where they are contiguous, then transpose once
            // (strided reads of every partial would cost as much as the GEMMs).
            let (first, rest) = partials.split_first_mut().expect("at least one chunk");
            let rest: Vec<&[f32]> = rest.iter().map(|p| &p[..]).collect();
            add_in_order(first, &rest);
            let sum = &first[..];
            dw.par_chunks_mut(kk).enumerate().for_each(|(o, row)| {
                for (i, d) in row.iter_mut().enumerate() {
                    *d = sum[i * co + o];
                }
            });
        } else {
            let parts: Vec<&[f32]> = partials.iter().map(|p| &p[..]).collect();
            add_in_order(dw, &parts);
        }
    }
    if let Some(db) = db {
        channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), dy, db);
    }
}

/// `dst += parts[0] + parts[1] + …`, each element summed in that order (so the result does
/// not depend on the threads), in parallel over chunks of 4096.
pub(crate) fn add_in_order(dst: &mut [f32], parts: &[&[f32]]) {
    dst.par_chunks_mut(4096).enumerate().for_each(|(i, d)| {
        for p in parts {
            for (a, b) in d.iter_mut().zip(&p[i * 4096..]) {
                *a += *b;
            }
        }
    });
}

/// `y = conv_transpose2d(x, w) + bias`: the input gradient of [`ConvT2dGeom::as_conv`], whose
/// weight layout `[c_out, c_in]` is ours `[c_in, c_out]`.
pub fn conv_transpose2d(ws: &Workspace, g: &ConvT2dGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    conv2d_bwd_input(ws, &g.as_conv(), x, w, y);
    if let Some(b) = bias {
        let hw = g.out_h() * g.out_w();
        if hw > 0 {
            y.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
                let v = b[i % g.c_out];
                plane.iter_mut().for_each(|p| *p += v);
            });
        }
    }
}

/// Gradient of `conv_transpose2d` with respect to its input: the forward of the adjoint conv.
pub fn conv_transpose2d_bwd_input(ws: &Workspace, g: &ConvT2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    conv2d(ws, &g.as_conv(), dy, w, None, None, Act::Identity, dx);
}

/// Gradients of `conv_transpose2d` with respect to its weight and, when given, bias.
pub fn conv_transpose2d_bwd_weight(
    ws: &Workspace,
    g: &ConvT2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    // In the adjoint conv, dy is the input and x the output gradient.
    conv2d_bwd_weight(ws, &g.as_conv(), dy, x, dw, None);
    if let Some(db) = db {
        channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), dy, db);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data as data;

    /// The short-row fast path writes exactly what the general im2col writes, for whole
    /// images and for runs of rows, into columns wider than the block.
    #[test]
    fn im2col_of_short_rows_is_the_general_one() {
        for (n_ch, hw) in [(3, 8), (5, 16), (1, 8), (2, 7), (3, 4)] {
            let input = crate::shape::Nchw {
                n: 1,
                c: n_ch,
                h: hw,
                w: hw,
            };
            let g = Conv2dGeom::square("im2col test", input, 4, 3, 1, 1).expect("a valid geometry");
            let x = data(g.input().numel(), 7);
            let kk = n_ch * 9;
            for (r0, r1) in [(0, hw), (1, 3), (hw - 1, hw)] {
                let (j0, j1) = (r0 * hw, r1 * hw);
                let ld = j1 - j0 + 5;
                let mut fast = vec![f32::NAN; kk * ld];
                let mut general = fast.clone();
                im2col(&g, &x, j0, j1, &mut fast, ld);
                im2col_any(&g, &x, j0, j1, &mut general, ld);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&fast),
                    bits(&general),
                    "{n_ch} channels {hw}×{hw}, rows {r0}..{r1}"
                );
            }
        }
    }
}
