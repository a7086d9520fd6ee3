//! f64 convolution for a batch of points: im2col + `gemm`, rayon-parallel over groups of
//! points.
//!
//! The f32 backend rounds at 1e-7, far above the tolerance at which the linear restriction
//! decides where a ReLU changes sign, so the exact analysis runs the network in f64. Each
//! group of points is one GEMM `Y[c_out, g·oh·ow] = W[c_out, K] · Col[K, g·oh·ow]` with
//! `K = c_in·k·k` and `Col` the im2col matrix of the group's `g` images; small output planes
//! take several images per GEMM so that the GEMM is wide enough to amortise packing `W`.
//! 1×1 stride-1 convolutions of one image read the input as the GEMM operand directly.
//! [`mep_tensor::cpu::reference::conv::conv2d`] (a direct loop nest in f64) is the
//! specification the tests hold this against.

#[cfg(test)]
use crate::window::{Row, Window};
use gemm::Parallelism;
use mep_tensor::Conv2dGeom;
use rayon::prelude::*;

/// Output columns a grouped GEMM aims for.
const GROUP_COLS: usize = 256;

/// `dst[m×n] (row stride dst_rs) = lhs[m×k] · rhs[k×n]`, all row-major with unit column stride.
///
/// # Safety
/// Every addressed element must be inside its allocation, and `dst` must not alias the others.
#[allow(clippy::too_many_arguments)]
unsafe fn dgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f64,
    dst_rs: usize,
    lhs: *const f64,
    lhs_rs: usize,
    rhs: *const f64,
    rhs_rs: usize,
    par: Parallelism,
) {
    // Through the backend's fixed-order GEMM, so that certificates come out the same bits
    // on AVX2 and AVX-512 machines and for every thread count, as the f32 results do.
    mep_tensor::cpu::gemm::gemm_fixed_order(m, n, k, dst, dst_rs, 1, false, lhs, lhs_rs, 1, rhs, rhs_rs, 1, par);
}

/// `out[c_out × cols] = W[c_out × K] · col[K × cols]`, all row-major.
///
/// # Panics
/// When a slice is shorter than its matrix.
fn weight_times(g: &Conv2dGeom, w: &[f64], col: &[f64], cols: usize, out: &mut [f64], par: Parallelism) {
    let kk = g.c_in * g.kh * g.kw;
    assert!(w.len() >= g.c_out * kk && col.len() >= kk * cols && out.len() >= g.c_out * cols);
    // SAFETY: the three matrices lie inside their slices (asserted); `out` is borrowed mutably.
    unsafe {
        dgemm(
            g.c_out,
            cols,
            kk,
            out.as_mut_ptr(),
            cols,
            w.as_ptr(),
            kk,
            col.as_ptr(),
            cols,
            par,
        )
    };
}

/// Writes the im2col matrix of `g_img` images starting at `x` into `col`: row `(ci, ky, kx)`,
/// column `img·oh·ow + oy·ow + ox`, holding `x[img, ci, oy·s + ky − p, ox·s + kx − p]` (zero in
/// the padding).
fn im2col(g: &Conv2dGeom, x: &[f64], g_img: usize, col: &mut [f64]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let ohw = oh * ow;
    let cols = g_img * ohw;
    let in_img = g.c_in * g.h * g.w;
    for ci in 0..g.c_in {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (ci * g.kh + ky) * g.kw + kx;
                let row = &mut col[r * cols..(r + 1) * cols];
                // The output columns whose input column lies inside the image.
                let lo = g.pad.saturating_sub(kx).div_ceil(g.stride).min(ow);
                let hi = if g.w + g.pad > kx {
                    ((g.w - 1 + g.pad - kx) / g.stride + 1).min(ow)
                } else {
                    0
                }
                .max(lo);
                for img in 0..g_img {
                    let plane = &x[img * in_img + ci * g.h * g.w..][..g.h * g.w];
                    for oy in 0..oh {
                        let dst = &mut row[img * ohw + oy * ow..][..ow];
                        let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                        if iy >= g.h {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy * g.w..][..g.w];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        if g.stride == 1 {
                            let x0 = lo + kx - g.pad;
                            dst[lo..hi].copy_from_slice(&src[x0..x0 + hi - lo]);
                        } else {
                            for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                                *d = src[ox * g.stride + kx - g.pad];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[n,o,oy,ox] = bias[o] + Σ_{i,a,b} x[n, i, oy·s + a − p, ox·s + b − p]·w[o,i,a,b]` for the
/// `g.n` images of `x: [n, c_in, h, w]`, `w: [c_out, c_in, k, k]`, into `y: [n, c_out, oh, ow]`.
///
/// The caller has checked the lengths: `x.len() = g.input().numel()`, `w.len() = g.weight_len()`,
/// `y.len() = g.output().numel()`, `bias.len() = c_out`.
pub fn conv2d(g: &Conv2dGeom, x: &[f64], w: &[f64], bias: &[f64], y: &mut [f64]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let ohw = oh * ow;
    let kk = g.c_in * g.kh * g.kw;
    let in_img = g.c_in * g.h * g.w;
    let out_img = g.c_out * ohw;
    if g.n == 0 || out_img == 0 {
        return;
    }
    let per = GROUP_COLS.div_ceil(ohw).clamp(1, g.n);
    let groups = g.n.div_ceil(per);
    let threads = rayon::current_num_threads();
    // Few groups: let each GEMM use every thread instead.
    let (outer, par) = if groups >= threads {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(0))
    };
    let direct = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
    let run = |scratch: &mut Vec<f64>, gi: usize, yg: &mut [f64]| {
        let g_img = yg.len() / out_img;
        let xg = &x[gi * per * in_img..][..g_img * in_img];
        let cols = g_img * ohw;
        if direct && g_img == 1 {
            // K = c_in: the images' channels are the columns' rows already.
            weight_times(g, w, xg, ohw, yg, par);
        } else {
            let need = kk * cols + if g_img > 1 { g.c_out * cols } else { 0 };
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (col, out) = scratch.split_at_mut(kk * cols);
            if direct {
                // Row ci of Col is channel ci of every image in turn.
                for img in 0..g_img {
                    for ci in 0..g.c_in {
                        col[ci * cols + img * ohw..][..ohw].copy_from_slice(&xg[img * in_img + ci * ohw..][..ohw]);
                    }
                }
            } else {
                im2col(g, xg, g_img, col);
            }
            if g_img == 1 {
                weight_times(g, w, col, ohw, yg, par);
            } else {
                let out = &mut out[..g.c_out * cols];
                weight_times(g, w, col, cols, out, par);
                for img in 0..g_img {
                    for o in 0..g.c_out {
                        yg[img * out_img + o * ohw..][..ohw].copy_from_slice(&out[o * cols + img * ohw..][..ohw]);
                    }
                }
            }
        }
        for (o, plane) in yg.chunks_mut(ohw).enumerate() {
            let b = bias[o % g.c_out];
            plane.iter_mut().for_each(|v| *v += b);
        }
    };
    if outer {
        y.par_chunks_mut(per * out_img)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (gi, yg)| run(scratch, gi, yg));
    } else {
        let mut scratch = Vec::new();
        for (gi, yg) in y.chunks_mut(per * out_img).enumerate() {
            run(&mut scratch, gi, yg);
        }
    }
}

/// Columns a chunk of windowed rows aims for in [`conv2d_rows`].
#[cfg(test)]
const ROW_CHUNK_COLS: usize = 512;

/// Version 1 of the windowed-row convolution, kept as the plain one the tests hold version 2
/// ([`crate::direct::conv2d_rows_direct`], which the bounds use) against.
///
/// `y = W x` (no bias) for rows `x` of shape `[c_in, h, w]` each stored over its window
/// (see [`crate::window`]): every output row over the window of outputs that read its input
/// window, the same numbers as the dense [`conv2d`] of the dense rows there (and zero
/// elsewhere). Rows go in chunks of about [`ROW_CHUNK_COLS`] output pixels, each chunk one
/// im2col of the windows' pixels and one GEMM, the chunks in parallel; the chunks depend on
/// the windows only, so the result does not depend on the thread count.
#[cfg(test)]
pub(crate) fn conv2d_rows(g: &Conv2dGeom, w: &[f64], x: &[&Row]) -> Vec<Row> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let kk = g.c_in * g.kh * g.kw;
    let outs: Vec<Window> = x.iter().map(|r| r.win.slide(g.kh, g.stride, g.pad, oh, ow)).collect();
    // Chunk boundaries: consecutive rows until the columns reach the aim.
    let mut bounds = vec![0];
    let mut cols = 0;
    for (i, o) in outs.iter().enumerate() {
        cols += o.area();
        if cols >= ROW_CHUNK_COLS {
            bounds.push(i + 1);
            cols = 0;
        }
    }
    if *bounds.last().expect("starts with 0") != x.len() {
        bounds.push(x.len());
    }
    let chunks: Vec<(usize, usize)> = bounds.windows(2).map(|b| (b[0], b[1])).collect();
    let done: Vec<Vec<Row>> = chunks
        .par_iter()
        .map_init(Vec::new, |scratch: &mut Vec<f64>, &(a, b)| {
            let cols: usize = outs[a..b].iter().map(Window::area).sum();
            if cols == 0 {
                return (a..b).map(|_| Row::zero()).collect();
            }
            let need = kk * cols + g.c_out * cols;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (col, out) = scratch.split_at_mut(kk * cols);
            im2col_rows(g, &x[a..b], &outs[a..b], cols, col);
            weight_times(g, w, col, cols, out, Parallelism::None);
            let mut start = 0;
            outs[a..b]
                .iter()
                .map(|&win| {
                    let area = win.area();
                    if area == 0 {
                        return Row::zero();
                    }
                    let mut data = Vec::with_capacity(g.c_out * area);
                    for o in 0..g.c_out {
                        data.extend_from_slice(&out[o * cols + start..][..area]);
                    }
                    start += area;
                    Row { win, data }
                })
                .collect()
        })
        .collect();
    done.into_iter().flatten().collect()
}

/// The im2col matrix of windowed rows: row `(ci, ky, kx)`, the columns of row `r` being the
/// pixels of its output window `outs[r]` in turn (`cols` in all). Each row's column ranges
/// per `kx` are worked out once, before its channels and taps.
#[cfg(test)]
fn im2col_rows(g: &Conv2dGeom, x: &[&Row], outs: &[Window], cols: usize, col: &mut [f64]) {
    let (s, p) = (g.stride as isize, g.pad as isize);
    let mut spans = Vec::with_capacity(g.kw);
    let mut start = 0;
    for (xr, o) in x.iter().zip(outs) {
        let (iw, area) = (xr.win, o.area());
        if area == 0 {
            continue;
        }
        let (ih, iwd, ow) = (iw.height(), iw.width(), o.width());
        // Per kx: the output columns (from o.x0) whose input column ox·s + kx − p lies in
        // the input window, and the window column the first of them reads.
        spans.clear();
        for kx in 0..g.kw {
            let lo_x = (iw.x0 as isize + p - kx as isize).max(0);
            let lo = ((lo_x + s - 1) / s).max(o.x0 as isize) as usize;
            let hi_x = iw.x1 as isize + p - kx as isize;
            let hi = if hi_x <= 0 { 0 } else { ((hi_x + s - 1) / s) as usize }.min(o.x1);
            let (lo, hi) = (lo.min(o.x1), hi.max(lo.min(o.x1)));
            let first = if lo < hi { lo * g.stride + kx - g.pad - iw.x0 } else { 0 };
            spans.push((lo - o.x0, hi - o.x0, first));
        }
        for ci in 0..g.c_in {
            for ky in 0..g.kh {
                for (q, oy) in (o.y0..o.y1).enumerate() {
                    let iy = oy as isize * s + ky as isize - p;
                    let src = (iy >= iw.y0 as isize && iy < iw.y1 as isize)
                        .then(|| &xr.data[(ci * ih + iy as usize - iw.y0) * iwd..][..iwd]);
                    for (kx, &(lo, hi, first)) in spans.iter().enumerate() {
                        let r = (ci * g.kh + ky) * g.kw + kx;
                        let dst = &mut col[r * cols + start + q * ow..][..ow];
                        let Some(src) = src else {
                            dst.iter_mut().for_each(|v| *v = 0.0);
                            continue;
                        };
                        dst[..lo].iter_mut().for_each(|v| *v = 0.0);
                        dst[hi..].iter_mut().for_each(|v| *v = 0.0);
                        if g.stride == 1 {
                            dst[lo..hi].iter_mut().zip(&src[first..]).for_each(|(d, v)| *d = *v);
                        } else {
                            dst[lo..hi]
                                .iter_mut()
                                .zip(src[first..].iter().step_by(g.stride))
                                .for_each(|(d, v)| *d = *v);
                        }
                    }
                }
            }
        }
        start += area;
    }
}

/// The transposed convolution: `dx = Wᵀ dy` for the `g.n` images of `dy: [n, c_out, oh, ow]`
/// into `dx: [n, c_in, h, w]`, the input gradient of [`conv2d`] (no bias). One GEMM
/// `Col[K, oh·ow] = Wᵀ[K, c_out] · dY[c_out, oh·ow]` per image, then col2im, images in parallel.
///
/// The caller has checked the lengths: `dy.len() = g.output().numel()`, `w.len() = g.weight_len()`,
/// `dx.len() = g.input().numel()`.
pub fn conv2d_bwd_input(g: &Conv2dGeom, dy: &[f64], w: &[f64], dx: &mut [f64]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let ohw = oh * ow;
    let kk = g.c_in * g.kh * g.kw;
    let in_img = g.c_in * g.h * g.w;
    let out_img = g.c_out * ohw;
    if g.n == 0 || in_img == 0 {
        return;
    }
    let direct = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
    let outer = g.n >= rayon::current_num_threads();
    let par = if outer {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    // `dst (K×ohw) = Wᵀ dyi`, Wᵀ being K×c_out (row stride 1, column stride K).
    let wt_times = |dst: &mut [f64], dyi: &[f64]| {
        debug_assert!(dst.len() >= kk * ohw && dyi.len() == g.c_out * ohw);
        // SAFETY: dst holds K×ohw, w c_out×K, dyi c_out×ohw, all in bounds and disjoint.
        unsafe {
            mep_tensor::cpu::gemm::gemm_fixed_order(
                kk,
                ohw,
                g.c_out,
                dst.as_mut_ptr(),
                ohw,
                1,
                false,
                w.as_ptr(),
                1,
                kk,
                dyi.as_ptr(),
                ohw,
                1,
                par,
            )
        };
    };
    let run = |col: &mut Vec<f64>, (img, dxi): (usize, &mut [f64])| {
        let dyi = &dy[img * out_img..(img + 1) * out_img];
        if direct {
            // K = c_in and ohw = h·w: the product is the input gradient itself.
            wt_times(dxi, dyi);
            return;
        }
        col.resize(kk * ohw, 0.0);
        wt_times(col, dyi);
        dxi.fill(0.0);
        for ci in 0..g.c_in {
            let plane = &mut dxi[ci * g.h * g.w..][..g.h * g.w];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = &col[((ci * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                    for oy in 0..oh {
                        let iy = (oy * g.stride + ky).wrapping_sub(g.pad);
                        if iy >= g.h {
                            continue;
                        }
                        for ox in 0..ow {
                            let ix = (ox * g.stride + kx).wrapping_sub(g.pad);
                            if ix < g.w {
                                plane[iy * g.w + ix] += row[oy * ow + ox];
                            }
                        }
                    }
                }
            }
        }
    };
    if outer {
        dx.par_chunks_mut(in_img).enumerate().for_each_init(Vec::new, run);
    } else {
        let mut col = Vec::new();
        dx.chunks_mut(in_img).enumerate().for_each(|x| run(&mut col, x));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mep_tensor::cpu::reference::conv as reference;
    use mep_tensor::Nchw;

    pub(crate) fn lcg(seed: u64, len: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    /// `count` rows of `c_in` channels with random values, on the [`windows`] in turn.
    pub(crate) fn random_rows(c_in: usize, h: usize, w: usize, count: usize, seed: u64) -> Vec<Row> {
        let wins = windows(h, w);
        (0..count)
            .map(|q| {
                let win = wins[q % wins.len()];
                Row {
                    win,
                    data: lcg(seed + q as u64, c_in * win.area()),
                }
            })
            .collect()
    }

    /// `(c_in, h, w, c_out, k, stride, pad)`: the convolutions of the networks (3×3 at
    /// stride 1 and 2, 1×1 projections at stride 1 and 2, the 7×7 stem) at small sizes, with
    /// channel counts around the kernels' register blocks (8 and 16 output channels).
    pub(crate) const GEOMETRIES: [(usize, usize, usize, usize, usize, usize, usize); 7] = [
        (3, 9, 9, 16, 3, 1, 1),
        (16, 8, 8, 32, 3, 2, 1),
        (5, 7, 7, 3, 1, 1, 0),
        (8, 8, 8, 12, 1, 2, 0),
        (2, 12, 12, 9, 7, 2, 3),
        (16, 16, 16, 16, 3, 1, 1),
        (32, 6, 6, 24, 3, 1, 1),
    ];

    /// [`GEOMETRIES`] as convolutions of one image.
    pub(crate) fn geometries() -> impl Iterator<Item = (usize, Conv2dGeom)> {
        GEOMETRIES
            .iter()
            .enumerate()
            .map(|(i, &(c_in, h, w, c_out, k, stride, pad))| {
                let input = mep_tensor::Nchw { n: 1, c: c_in, h, w };
                (
                    i,
                    Conv2dGeom::square("test", input, c_out, k, stride, pad).expect("a valid geometry"),
                )
            })
    }

    /// Windows of every kind on an `h × w` plane (`h, w ≥ 5`): empty, a corner pixel, an
    /// edge pixel, a strip, the bottom rows, an inner block and the whole plane.
    pub(crate) fn windows(h: usize, w: usize) -> Vec<Window> {
        vec![
            Window::EMPTY,
            Window::pixel(0, 0),
            Window::pixel(h / 2, w - 1),
            Window {
                y0: 1,
                y1: h - 1,
                x0: 2,
                x1: 3,
            },
            Window {
                y0: h - 2,
                y1: h,
                x0: 0,
                x1: w,
            },
            Window {
                y0: 2,
                y1: h - 3,
                x0: 1,
                x1: w - 2,
            },
            Window::full(h, w),
        ]
    }

    // Every path (grouped, single image, direct 1×1, strided, 7×7 stem) against the direct
    // loop nest of mep-tensor's f64 reference: they must agree to rounding, |Δ| ≤ 1e-12·(1 + |ref|).
    #[test]
    fn fast_conv_matches_the_reference_loop_nest() {
        let cases = [
            // (n, c_in, h, w, c_out, k, stride, pad)
            (5, 3, 8, 8, 4, 3, 1, 1),
            (3, 4, 32, 32, 6, 3, 1, 1),
            (7, 8, 5, 7, 16, 3, 2, 1),
            (4, 8, 4, 4, 32, 1, 1, 0),
            (2, 16, 20, 20, 8, 1, 1, 0),
            (3, 8, 9, 9, 16, 1, 2, 0),
            (2, 3, 32, 32, 4, 7, 2, 3),
            (1, 2, 3, 3, 2, 3, 1, 1),
        ];
        for (i, &(n, c_in, h, w, c_out, k, stride, pad)) in cases.iter().enumerate() {
            let g = Conv2dGeom::square("test", Nchw { n, c: c_in, h, w }, c_out, k, stride, pad).unwrap();
            let x = lcg(3 * i as u64, g.input().numel());
            let wt = lcg(3 * i as u64 + 1, g.weight_len());
            let b = lcg(3 * i as u64 + 2, c_out);
            let want = reference::conv2d(&g, &x, &wt, Some(&b));
            let mut got = vec![f64::NAN; g.output().numel()];
            conv2d(&g, &x, &wt, &b, &mut got);
            for (j, (a, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - r).abs() <= 1e-12 * (1.0 + r.abs()),
                    "case {i} {g:?}: y[{j}] = {a}, reference {r}"
                );
            }
            let dy = lcg(3 * i as u64 + 7, g.output().numel());
            let want = reference::conv2d_bwd_input(&g, &dy, &wt);
            let mut got = vec![f64::NAN; g.input().numel()];
            conv2d_bwd_input(&g, &dy, &wt, &mut got);
            for (j, (a, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - r).abs() <= 1e-12 * (1.0 + r.abs()),
                    "case {i} {g:?}: dx[{j}] = {a}, reference {r}"
                );
            }
        }
    }

    // Windowed rows (empty, one pixel, a border strip, the whole plane) give the dense
    // convolution's numbers inside their output windows and zeros outside them.
    #[test]
    fn windowed_rows_match_the_dense_convolution() {
        let cases = [
            // (c_in, h, w, c_out, k, stride, pad)
            (3, 9, 9, 4, 3, 1, 1),
            (4, 8, 8, 6, 3, 2, 1),
            (5, 7, 7, 3, 1, 1, 0),
            (5, 8, 8, 3, 1, 2, 0),
            (2, 12, 12, 3, 7, 2, 3),
        ];
        for (i, &(c_in, h, w, c_out, k, stride, pad)) in cases.iter().enumerate() {
            let g = Conv2dGeom::square("test", Nchw { n: 1, c: c_in, h, w }, c_out, k, stride, pad).unwrap();
            let wt = lcg(100 + i as u64, g.weight_len());
            // Repeated so that chunks hold several rows and rows start mid-chunk.
            let rows = random_rows(c_in, h, w, 60, 0);
            let got = conv2d_rows(&g, &wt, &rows.iter().collect::<Vec<_>>());
            let dims = [c_in, h, w];
            let out_dims = [c_out, g.out_h(), g.out_w()];
            for (q, (x, y)) in rows.iter().zip(&got).enumerate() {
                let mut want = vec![0.0; g.output().numel()];
                conv2d(&g, &x.dense(dims), &wt, &vec![0.0; c_out], &mut want);
                let y = y.dense(out_dims);
                for (j, (a, r)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - r).abs() <= 1e-12 * (1.0 + r.abs()),
                        "case {i} row {q}: y[{j}] = {a}, dense {r}"
                    );
                }
            }
        }
    }
}
