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
            // SAFETY: w is c_out×K, xg is K×ohw, yg is c_out×ohw, all in bounds and disjoint.
            unsafe {
                dgemm(
                    g.c_out,
                    ohw,
                    kk,
                    yg.as_mut_ptr(),
                    ohw,
                    w.as_ptr(),
                    kk,
                    xg.as_ptr(),
                    ohw,
                    par,
                )
            };
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
                // SAFETY: as above, with Col (K×ohw) in scratch.
                unsafe {
                    dgemm(
                        g.c_out,
                        ohw,
                        kk,
                        yg.as_mut_ptr(),
                        ohw,
                        w.as_ptr(),
                        kk,
                        col.as_ptr(),
                        ohw,
                        par,
                    )
                };
            } else {
                let out = &mut out[..g.c_out * cols];
                // SAFETY: out is c_out×cols, Col is K×cols, disjoint halves of scratch.
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
mod tests {
    use super::*;
    use mep_tensor::cpu::reference::conv as reference;
    use mep_tensor::Nchw;

    fn lcg(seed: u64, len: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
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
}
