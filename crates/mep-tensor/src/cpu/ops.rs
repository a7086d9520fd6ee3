//! Non-GEMM kernels of the CPU backend: batch norm, activations, pooling, resampling, the
//! loss and the optimiser steps.
//!
//! Every kernel here is memory-bound, so each streams its buffers once where the maths
//! allows, with contiguous inner loops the compiler can vectorise. Work is split over
//! rayon's global pool by (n, c) planes or by chunks of `CHUNK` elements, and stays on the
//! calling thread below `PAR_MIN` elements so that the many tiny calls of a small network
//! pay no scheduling cost. Reductions accumulate in f64 and are combined in a fixed order,
//! so results do not depend on how rayon splits the work.
//!
//! [`CpuBackend`](super::CpuBackend) validates every length before calling in; these
//! functions assume it and index accordingly.
#![allow(clippy::too_many_arguments)]

use super::sums::{bn_grad_sums, dot_f64, shifted_moments, sum_f64};
use crate::backend::{Act, AdamParams, SgdParams};
use crate::shape::{Nchw, Pool2dGeom};
use rayon::prelude::*;

/// Below this many elements of work an operation runs sequentially: a rayon join costs a few
/// microseconds, as much as streaming ~30k floats.
const PAR_MIN: usize = 1 << 15;
/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 13;

// ---- scheduling helpers --------------------------------------------------------------

fn parallel(work: usize) -> bool {
    work >= PAR_MIN
}

/// Planes per rayon task so that each task does about [`CHUNK`] elements of work.
fn planes_per_task(planes: usize, work: usize) -> usize {
    (CHUNK * planes / work.max(1)).max(1)
}

/// Runs `f(p, out_p)` on each consecutive `plane`-sized slice of `out`; `work` (elements read
/// and written) decides whether to go parallel.
fn for_each_plane<F>(out: &mut [f32], plane: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if plane == 0 || out.is_empty() {
        return;
    }
    if parallel(work) {
        let min = planes_per_task(out.len() / plane, work);
        out.par_chunks_mut(plane)
            .enumerate()
            .with_min_len(min)
            .for_each(|(p, o)| f(p, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(p, o)| f(p, o));
    }
}

/// [`for_each_plane`] with a second, per-plane output `extra[p]`.
fn for_each_plane_with<T, F>(out: &mut [f32], plane: usize, extra: &mut [T], work: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [f32], &mut T) + Sync + Send,
{
    if plane == 0 || out.is_empty() {
        return;
    }
    if parallel(work) {
        let min = planes_per_task(out.len() / plane, work);
        out.par_chunks_mut(plane)
            .zip(extra.par_iter_mut())
            .enumerate()
            .with_min_len(min)
            .for_each(|(p, (o, e))| f(p, o, e));
    } else {
        out.chunks_mut(plane)
            .zip(extra.iter_mut())
            .enumerate()
            .for_each(|(p, (o, e))| f(p, o, e));
    }
}

/// `[f(0), .., f(planes - 1)]`, in order whatever the split.
fn map_planes<T, F>(planes: usize, work: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync + Send,
{
    if parallel(work) {
        let min = planes_per_task(planes, work);
        (0..planes).into_par_iter().with_min_len(min).map(f).collect()
    } else {
        (0..planes).map(f).collect()
    }
}

/// `f(out_chunk)` over `out`, chunked for rayon when large.
fn chunks0<F>(out: &mut [f32], f: F)
where
    F: Fn(&mut [f32]) + Sync + Send,
{
    if parallel(out.len()) {
        out.par_chunks_mut(CHUNK).for_each(f);
    } else {
        f(out);
    }
}

/// `f(out_chunk, a_chunk)` over equally long `out` and `a`.
fn chunks1<F>(out: &mut [f32], a: &[f32], f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync + Send,
{
    if parallel(out.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(o, a)| f(o, a));
    } else {
        f(out, a);
    }
}

/// `f(out_chunk, a_chunk, b_chunk)` over equally long `out`, `a` and `b`.
fn chunks2<F>(out: &mut [f32], a: &[f32], b: &[f32], f: F)
where
    F: Fn(&mut [f32], &[f32], &[f32]) + Sync + Send,
{
    if parallel(out.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, a), b)| f(o, a, b));
    } else {
        f(out, a, b);
    }
}

/// Binds `$f` to a closure computing `act` and evaluates `$body` once per variant, so that each
/// kernel is monomorphised with its activation inlined instead of matching per element.
macro_rules! with_act {
    ($act:expr, $f:ident => $body:expr) => {
        match $act {
            Act::Identity => {
                let $f = |v: f32| v;
                $body
            }
            Act::Relu => {
                let $f = crate::float::relu::<f32>;
                $body
            }
            Act::LeakyRelu(slope) => {
                let $f = move |v: f32| if v > 0.0 { v } else { slope * v };
                $body
            }
            Act::Sigmoid => {
                let $f = |v: f32| 1.0 / (1.0 + (-v).exp());
                $body
            }
        }
    };
}

// ---- f64 reductions (crate::cpu::sums) ---------------------------------------------

/// Sums per-plane pairs over the batch: `out[ch] = Σ_i part[i c + ch]`, in sample order.
fn reduce_over_batch(part: &[(f64, f64)], c: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); c];
    for row in part.chunks(c.max(1)) {
        for (o, &(a, b)) in out.iter_mut().zip(row) {
            o.0 += a;
            o.1 += b;
        }
    }
    out
}

// ---- batch norm ----------------------------------------------------------------------

/// `y = act((x - mean) · gamma / sqrt(var + eps) + beta)`, per channel.
pub fn batch_norm_infer(
    s: &Nchw,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
    y: &mut [f32],
) {
    let (c, hw) = (s.c, s.hw());
    // Subtracting the mean before scaling keeps precision when |mean| >> std.
    let coef: Vec<(f32, f32, f32)> = (0..c)
        .map(|ch| {
            let a = gamma[ch] as f64 / (var[ch] as f64 + eps as f64).sqrt();
            (mean[ch], a as f32, beta[ch])
        })
        .collect();
    normalize(hw, &coef, act, x, y);
}

/// `y = act((x − mean)·a + b)` with `(mean, a, b) = coef[channel]`, over NCHW planes of `hw`
/// pixels: the map of both batch-norm forwards.
fn normalize(hw: usize, coef: &[(f32, f32, f32)], act: Act, x: &[f32], y: &mut [f32]) {
    let c = coef.len();
    with_act!(act, f => for_each_plane(y, hw, 2 * x.len(), |p, yp| {
        let (mu, a, b) = coef[p % c];
        for (y, &x) in yp.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
            *y = f((x - mu) * a + b);
        }
    }))
}

/// `dx = dy · gamma / sqrt(var + eps)`; `dgamma = Σ dy · (x - mean) / sqrt(var + eps)`,
/// `dbeta = Σ dy` over batch and pixels.
pub fn batch_norm_infer_bwd(
    s: &Nchw,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    let (c, hw) = (s.c, s.hw());
    let invstd: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps as f64).sqrt()).collect();
    let k: Vec<f32> = (0..c).map(|ch| (gamma[ch] as f64 * invstd[ch]) as f32).collect();
    let scale_plane = |p: usize, dxp: &mut [f32]| {
        let k = k[p % c];
        for (dx, &g) in dxp.iter_mut().zip(&dy[p * hw..(p + 1) * hw]) {
            *dx = g * k;
        }
    };
    if dgamma.is_none() && dbeta.is_none() {
        for_each_plane(dx, hw, 2 * dy.len(), scale_plane);
        return;
    }
    // One pass over memory: the sums re-read the plane dx was just computed from, still in cache.
    let mut part = vec![(0.0, 0.0); s.n * c];
    for_each_plane_with(dx, hw, &mut part, 3 * dy.len(), |p, dxp, sums| {
        scale_plane(p, dxp);
        let r = p * hw..(p + 1) * hw;
        *sums = bn_grad_sums(&x[r.clone()], &dy[r], mean[p % c] as f64);
    });
    let tot = reduce_over_batch(&part, c);
    if let Some(dgamma) = dgamma {
        for ((d, &(_, sxd)), &is) in dgamma.iter_mut().zip(&tot).zip(&invstd) {
            *d = (sxd * is) as f32;
        }
    }
    if let Some(dbeta) = dbeta {
        for (d, &(sd, _)) in dbeta.iter_mut().zip(&tot) {
            *d = sd as f32;
        }
    }
}

/// Training-mode batch norm: batch mean, biased variance `σ²`, `y = (x - μ)/sqrt(σ² + eps) γ + β`;
/// running stats `r = (1 - momentum) r + momentum · stat` with the unbiased `σ² m/(m - 1)`.
pub fn batch_norm_train(
    s: &Nchw,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    momentum: f32,
    eps: f32,
    act: Act,
    y: &mut [f32],
    save_mean: &mut [f32],
    save_invstd: &mut [f32],
) {
    let (c, hw) = (s.c, s.hw());
    let m = (s.n * hw) as f64;
    let shift: Vec<f64> = (0..c)
        .map(|ch| if s.n * hw > 0 { x[ch * hw] as f64 } else { 0.0 })
        .collect();
    let part = map_planes(s.n * c, x.len(), |p| {
        shifted_moments(&x[p * hw..(p + 1) * hw], shift[p % c])
    });
    let tot = reduce_over_batch(&part, c);
    let mom = momentum as f64;
    let mut coef = Vec::with_capacity(c);
    for ch in 0..c {
        let (s1, s2) = tot[ch];
        let d = s1 / m;
        // Clamped at 0 against cancellation, but not with `max`, which would turn the NaN of a
        // non-finite input into a variance of 0 (PyTorch's variance is NaN then).
        let var = crate::float::relu(s2 / m - d * d);
        let mean = shift[ch] + d;
        let invstd = 1.0 / (var + eps as f64).sqrt();
        save_mean[ch] = mean as f32;
        save_invstd[ch] = invstd as f32;
        let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
        running_mean[ch] = ((1.0 - mom) * running_mean[ch] as f64 + mom * mean) as f32;
        running_var[ch] = ((1.0 - mom) * running_var[ch] as f64 + mom * unbiased) as f32;
        coef.push((mean as f32, (gamma[ch] as f64 * invstd) as f32, beta[ch]));
    }
    normalize(hw, &coef, act, x, y);
}

/// `dx = γ·invstd/m · (m·dy − Σdy − x̂·Σ(dy·x̂))`, `dγ = Σ dy·x̂`, `dβ = Σ dy`, with
/// `x̂ = (x − μ)·invstd` and `m = n·h·w`.
pub fn batch_norm_train_bwd(
    s: &Nchw,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    save_mean: &[f32],
    save_invstd: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let (c, hw) = (s.c, s.hw());
    let m = (s.n * hw) as f64;
    let part = map_planes(s.n * c, 2 * x.len(), |p| {
        let r = p * hw..(p + 1) * hw;
        bn_grad_sums(&x[r.clone()], &dy[r], save_mean[p % c] as f64)
    });
    let tot = reduce_over_batch(&part, c);
    // dx = a·dy + b − q·(x − μ) with a = γ·invstd, b = −a·Σdy/m, q = a·invstd·dγ/m.
    let mut coef = Vec::with_capacity(c);
    for ch in 0..c {
        let (sd, sxd) = tot[ch];
        let invstd = save_invstd[ch] as f64;
        let dg = sxd * invstd;
        dgamma[ch] = dg as f32;
        dbeta[ch] = sd as f32;
        let a = gamma[ch] as f64 * invstd;
        let (b, q) = if m > 0.0 {
            (-a * sd / m, a * invstd * dg / m)
        } else {
            (0.0, 0.0)
        };
        coef.push((save_mean[ch], a as f32, b as f32, q as f32));
    }
    for_each_plane(dx, hw, 3 * x.len(), |p, dxp| {
        let (mu, a, b, q) = coef[p % c];
        let r = p * hw..(p + 1) * hw;
        for ((dx, &x), &g) in dxp.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
            *dx = a * g + b - q * (x - mu);
        }
    });
}

// ---- pointwise -----------------------------------------------------------------------

/// `y = act(x)`.
pub fn activation(act: Act, x: &[f32], y: &mut [f32]) {
    with_act!(act, f => chunks1(y, x, |y, x| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f(x);
        }
    }))
}

/// `dx = dy · act'`, the derivative read off the output `y`: ReLU `y <= 0 ? 0 : 1` (PyTorch's
/// threshold_backward; NaN passes dy), LeakyReLU `y > 0 ? 1 :
/// slope` (slope > 0, so the output's sign is the input's), sigmoid `y (1 − y)`.
pub fn activation_bwd(act: Act, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    match act {
        Act::Identity => chunks1(dx, dy, |dx, dy| dx.copy_from_slice(dy)),
        Act::Relu => chunks2(dx, y, dy, |dx, y, dy| {
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                // PyTorch's threshold_backward: `y <= 0 ? 0 : dy`, so a NaN output passes dy.
                *dx = if y <= 0.0 { 0.0 } else { g };
            }
        }),
        Act::LeakyRelu(slope) => chunks2(dx, y, dy, |dx, y, dy| {
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                *dx = if y > 0.0 { g } else { slope * g };
            }
        }),
        Act::Sigmoid => chunks2(dx, y, dy, |dx, y, dy| {
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                *dx = g * y * (1.0 - y);
            }
        }),
    }
}

/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    chunks2(y, a, b, |y, a, b| {
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = a + b;
        }
    });
}

// ---- pooling and resampling ----------------------------------------------------------

/// The input range `[start, end)` a pooling window at output index `o` covers, clipped to
/// `0..size` (the clipped-off part is padding, i.e. −∞).
fn window(g: &Pool2dGeom, o: usize, size: usize) -> (usize, usize) {
    let start = o * g.stride;
    let lo = start.saturating_sub(g.pad).min(size);
    let hi = (start + g.k).saturating_sub(g.pad).min(size);
    (lo, hi)
}

/// PyTorch's scan rule: a strictly larger value or a NaN takes over, so ties keep the first
/// maximum in row-major window order and NaN propagates.
#[inline(always)]
fn takes_over(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// Flat index (within the plane) of the window's maximum under [`takes_over`], starting from the
/// window's first element as PyTorch does.
#[inline]
fn window_argmax(g: &Pool2dGeom, xp: &[f32], oh: usize, ow: usize) -> (usize, f32) {
    let w = g.input.w;
    let (h0, h1) = window(g, oh, g.input.h);
    let (w0, w1) = window(g, ow, w);
    let (mut arg, mut best) = (h0 * w + w0, f32::NEG_INFINITY);
    for ih in h0..h1 {
        for (iw, &v) in xp[ih * w + w0..ih * w + w1].iter().enumerate() {
            if takes_over(v, best) {
                best = v;
                arg = ih * w + w0 + iw;
            }
        }
    }
    (arg, best)
}

/// Outputs one pass of [`pool_row`] scans side by side.
const POOL_LANES: usize = 8;

/// The window maxima of output row `oh` of one plane, each given to `emit(j, max, index)` in
/// order of `j` (the flat index is only computed with `ARG`), each window scanned in
/// row-major order under [`takes_over`] exactly as [`window_argmax`] does. Outputs whose window is not clipped by the padding are scanned
/// [`POOL_LANES`] at a time, each lane doing its own window's steps in the same order: the
/// one-by-one scan's data-dependent branches made ResNet-50's 112×112 pooling 3 % of a
/// forward+backward.
fn pool_row<const ARG: bool>(g: &Pool2dGeom, xp: &[f32], oh: usize, mut emit: impl FnMut(usize, f32, usize)) {
    let (w, ow, s) = (g.input.w, g.out_w(), g.stride);
    let (h0, h1) = window(g, oh, g.input.h);
    // Unclipped windows: j·s ≥ pad and j·s + k − pad ≤ w.
    let j_lo = g.pad.div_ceil(s.max(1)).min(ow);
    let j_hi = if w + g.pad >= g.k {
        ((w + g.pad - g.k) / s.max(1) + 1).clamp(j_lo, ow)
    } else {
        j_lo
    };
    let mut j = 0;
    while j < ow {
        if j >= j_lo && j + POOL_LANES <= j_hi {
            let mut b = [f32::NEG_INFINITY; POOL_LANES];
            let first = h0 * w + j * s - g.pad;
            // u32 indices (a plane holds fewer than 2³² pixels) select in vector lanes.
            let mut a = [0u32; POOL_LANES];
            for (l, al) in a.iter_mut().enumerate() {
                *al = (first + l * s) as u32;
            }
            for ih in h0..h1 {
                for kj in 0..g.k {
                    let base = ih * w + j * s - g.pad + kj;
                    let vals: [f32; POOL_LANES] = std::array::from_fn(|l| xp[base + l * s]);
                    for l in 0..POOL_LANES {
                        let take = takes_over(vals[l], b[l]);
                        b[l] = if take { vals[l] } else { b[l] };
                        if ARG {
                            a[l] = if take { (base + l * s) as u32 } else { a[l] };
                        }
                    }
                }
            }
            for l in 0..POOL_LANES {
                emit(j + l, b[l], a[l] as usize);
            }
            j += POOL_LANES;
        } else {
            let (i, v) = window_argmax(g, xp, oh, j);
            emit(j, v, i);
            j += 1;
        }
    }
}

/// Max over each `k × k` window at `stride`, padding counting as −∞.
pub fn max_pool2d(g: &Pool2dGeom, x: &[f32], y: &mut [f32]) {
    let (hw, oh, ow) = (g.input.hw(), g.out_h(), g.out_w());
    for_each_plane(y, oh * ow, x.len() + y.len(), |p, yp| {
        let xp = &x[p * hw..(p + 1) * hw];
        for i in 0..oh {
            let row = &mut yp[i * ow..(i + 1) * ow];
            pool_row::<false>(g, xp, i, |j, v, _| row[j] = v);
        }
    });
}

/// `dx[argmax(window)] += dy[window]`, the argmax recomputed from `x` with the first-maximum rule.
pub fn max_pool2d_bwd(g: &Pool2dGeom, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (hw, oh, ow) = (g.input.hw(), g.out_h(), g.out_w());
    for_each_plane(dx, hw, 2 * x.len() + dy.len(), |p, dxp| {
        let xp = &x[p * hw..(p + 1) * hw];
        let dyp = &dy[p * oh * ow..(p + 1) * oh * ow];
        dxp.fill(0.0);
        for i in 0..oh {
            let dy_row = &dyp[i * ow..(i + 1) * ow];
            pool_row::<true>(g, xp, i, |j, _, a| dxp[a] += dy_row[j]);
        }
    });
}

/// `y[n, c] = mean over h, w of x[n, c]`.
pub fn global_avg_pool(s: &Nchw, x: &[f32], y: &mut [f32]) {
    let hw = s.hw();
    for_each_plane(y, 1, x.len(), |p, yp| {
        yp[0] = (sum_f64(&x[p * hw..(p + 1) * hw]) / hw as f64) as f32;
    });
}

/// `dx[n, c, :, :] = dy[n, c] / (h w)`.
pub fn global_avg_pool_bwd(s: &Nchw, dy: &[f32], dx: &mut [f32]) {
    let hw = s.hw();
    for_each_plane(dx, hw, dx.len(), |p, dxp| dxp.fill(dy[p] / hw as f32));
}

/// `y[n, c, i, j] = x[n, c, i / 2, j / 2]`.
pub fn upsample_nearest2x(s: &Nchw, x: &[f32], y: &mut [f32]) {
    let (h, w) = (s.h, s.w);
    for_each_plane(y, 4 * h * w, 5 * x.len(), |p, yp| {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for (xrow, yrows) in xp.chunks_exact(w).zip(yp.chunks_exact_mut(4 * w)) {
            let (even, odd) = yrows.split_at_mut(2 * w);
            for (pair, &v) in even.chunks_exact_mut(2).zip(xrow) {
                pair[0] = v;
                pair[1] = v;
            }
            odd.copy_from_slice(even);
        }
    });
}

/// `dx[n, c, i, j] = Σ` of the 2×2 block of `dy` that `x[n, c, i, j]` was copied to.
pub fn upsample_nearest2x_bwd(s: &Nchw, dy: &[f32], dx: &mut [f32]) {
    let (h, w) = (s.h, s.w);
    for_each_plane(dx, h * w, dy.len() + dx.len(), |p, dxp| {
        let dyp = &dy[p * 4 * h * w..(p + 1) * 4 * h * w];
        for (dxrow, dyrows) in dxp.chunks_exact_mut(w).zip(dyp.chunks_exact(4 * w)) {
            let (even, odd) = dyrows.split_at(2 * w);
            for ((d, e), o) in dxrow.iter_mut().zip(even.chunks_exact(2)).zip(odd.chunks_exact(2)) {
                *d = (e[0] + e[1]) + (o[0] + o[1]);
            }
        }
    });
}

/// `y = zero-pad channels (pad before, pad after) of x[:, :, ::2, ::2]` (or of `x` when not
/// subsampling).
pub fn shortcut_pad(s: &Nchw, subsample: bool, pad: usize, x: &[f32], y: &mut [f32]) {
    let o = s.shortcut_pad(subsample, pad);
    let (hw, w, ohw, ow) = (s.hw(), s.w, o.hw(), o.w);
    for_each_plane(y, ohw, x.len() + y.len(), |p, yp| {
        let (i, ch) = (p / o.c, p % o.c);
        if ch < pad || ch >= pad + s.c {
            yp.fill(0.0);
            return;
        }
        let xp = &x[(i * s.c + ch - pad) * hw..(i * s.c + ch - pad + 1) * hw];
        if !subsample {
            yp.copy_from_slice(xp);
            return;
        }
        for (yrow, xrow) in yp.chunks_exact_mut(ow).zip(xp.chunks(w).step_by(2)) {
            for (y, &x) in yrow.iter_mut().zip(xrow.iter().step_by(2)) {
                *y = x;
            }
        }
    });
}

/// Backward of [`shortcut_pad`]: the kept pixels of the middle channels get their `dy`, the rest 0.
pub fn shortcut_pad_bwd(s: &Nchw, subsample: bool, pad: usize, dy: &[f32], dx: &mut [f32]) {
    let o = s.shortcut_pad(subsample, pad);
    let (w, ohw, ow) = (s.w, o.hw(), o.w);
    for_each_plane(dx, s.hw(), dx.len() + dy.len(), |p, dxp| {
        let (i, ch) = (p / s.c, p % s.c);
        let q = i * o.c + ch + pad;
        let dyp = &dy[q * ohw..(q + 1) * ohw];
        if !subsample {
            dxp.copy_from_slice(dyp);
            return;
        }
        dxp.fill(0.0);
        for (dyrow, dxrow) in dyp.chunks_exact(ow).zip(dxp.chunks_mut(w).step_by(2)) {
            for (&g, d) in dyrow.iter().zip(dxrow.iter_mut().step_by(2)) {
                *d = g;
            }
        }
    });
}

// ---- the loss ------------------------------------------------------------------------

/// Row-wise `probs = softmax(logits)`, `losses[i] = logsumexp(logits_i) − logits_i[target_i]`,
/// both shifted by the row maximum so that no exponential overflows.
pub fn softmax_cross_entropy(
    n: usize,
    c: usize,
    logits: &[f32],
    targets: &[usize],
    probs: &mut [f32],
    losses: &mut [f32],
) {
    for_each_plane_with(probs, c, losses, 2 * n * c, |i, pr, loss| {
        let l = &logits[i * c..(i + 1) * c];
        // A NaN logit makes the row's maximum NaN, as on the GPU.
        let mx = l.iter().copied().fold(f32::NEG_INFINITY, crate::float::max_nan);
        for (p, &v) in pr.iter_mut().zip(l) {
            *p = (v - mx).exp();
        }
        let sum = sum_f64(pr);
        let inv = (1.0 / sum) as f32;
        for p in pr.iter_mut() {
            *p *= inv;
        }
        *loss = (sum.ln() - (l[targets[i]] - mx) as f64) as f32;
    });
}

/// `dlogits = scale · (probs − onehot(targets))`.
pub fn softmax_cross_entropy_bwd(
    n: usize,
    c: usize,
    probs: &[f32],
    targets: &[usize],
    scale: f32,
    dlogits: &mut [f32],
) {
    for_each_plane(dlogits, c, 2 * n * c, |i, d| {
        let pr = &probs[i * c..(i + 1) * c];
        for (d, &p) in d.iter_mut().zip(pr) {
            *d = scale * p;
        }
        let t = targets[i];
        d[t] = scale * (pr[t] - 1.0);
    });
}

// ---- vector and optimiser ops --------------------------------------------------------

/// `y += alpha x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    chunks1(y, x, |y, x| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    });
}

/// `x *= alpha`.
pub fn scale(alpha: f32, x: &mut [f32]) {
    chunks0(x, |x| {
        for v in x.iter_mut() {
            *v *= alpha;
        }
    });
}

/// `Σ x_i y_i` in f64; chunk partials are summed in order, so the result is deterministic.
pub fn dot(x: &[f32], y: &[f32]) -> f64 {
    if parallel(x.len()) {
        let part: Vec<f64> = x
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .map(|(a, b)| dot_f64(a, b))
            .collect();
        part.iter().sum()
    } else {
        dot_f64(x, y)
    }
}

/// `torch.optim.Adam` / `AdamW` (single-tensor path): `g += wd p` (or `p *= 1 − lr wd` when
/// decoupled); `m = β₁m + (1−β₁)g`; `v = β₂v + (1−β₂)g²`;
/// `p −= lr/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + eps)`.
pub fn adam_step(h: &AdamParams, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    adam_step_with(h, h.bias_terms(), param, grad, m, v)
}

/// [`adam_step`] with the bias terms `[step_size, bc2_sqrt]` given
/// ([`AdamParams::bias_terms`]); `h.step` is not read.
pub fn adam_step_with(h: &AdamParams, bias: [f32; 2], param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
    let [step_size, bc2_sqrt] = bias;
    let (c1, c2) = ((1.0 - b1) as f32, (1.0 - b2) as f32);
    let (beta1, beta2, eps) = (h.beta1, h.beta2, h.eps);
    let (l2, decay) = match (h.weight_decay != 0.0, h.decoupled) {
        (false, _) => (0.0f32, 1.0f32),
        (true, false) => (h.weight_decay, 1.0),
        (true, true) => (0.0, (1.0 - h.lr as f64 * h.weight_decay as f64) as f32),
    };
    let kernel = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let pv = *p * decay;
            // Only when Adam's L2 term is on, as PyTorch: 0·∞ would turn an infinite parameter
            // into NaN.
            let g = if l2 != 0.0 { g + l2 * pv } else { g };
            let mv = beta1 * *m + c1 * g;
            let vv = beta2 * *v + c2 * g * g;
            *m = mv;
            *v = vv;
            *p = pv - step_size * (mv / (vv.sqrt() / bc2_sqrt + eps));
        }
    };
    if parallel(param.len()) {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| kernel(p, g, m, v));
    } else {
        kernel(param, grad, m, v);
    }
}

/// `torch.optim.SGD`, dampening 0: `g += wd p`; with momentum `buf = g` on step 1, else
/// `buf = μ buf + g`, then `g = nesterov ? g + μ buf : buf`; `p −= lr g`.
pub fn sgd_step(h: &SgdParams, param: &mut [f32], grad: &[f32], buf: &mut [f32]) {
    let (lr, mu, wd, nesterov, first) = (h.lr, h.momentum, h.weight_decay, h.nesterov, h.step == 1);
    let kernel = |p: &mut [f32], g: &[f32], b: &mut [f32]| {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
            let mut g = if wd != 0.0 { g + wd * *p } else { g };
            if mu != 0.0 {
                let bv = if first { g } else { mu * *b + g };
                *b = bv;
                g = if nesterov { g + mu * bv } else { bv };
            }
            *p -= lr * g;
        }
    };
    if parallel(param.len()) {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(buf.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| kernel(p, g, b));
    } else {
        kernel(param, grad, buf);
    }
}
