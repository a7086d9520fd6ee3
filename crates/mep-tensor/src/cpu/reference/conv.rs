//! Reference convolution, transposed convolution and linear (f64).
//!
//! Direct loop nests over the definitions, in f64: the readable specification of the
//! GEMM kernels in [`crate::cpu::conv`] and [`crate::cpu::linear`], what they are tested against, and the forward
//! passes that finite differences check every backward against. Layouts are NCHW and
//! PyTorch's weight layouts; every function returns a fresh vector.

use crate::backend::Act;
use crate::shape::{Conv2dGeom, ConvT2dGeom};

/// Calls `f(n, o, oy, ox, i, a, b, iy, ix)` for every term `x[n,i,iy,ix]·w[o,i,a,b]` of the
/// convolution sum at output `(n, o, oy, ox)`, skipping taps that fall in the zero padding.
fn for_each_tap(g: &Conv2dGeom, mut f: impl FnMut([usize; 9])) {
    for n in 0..g.n {
        for o in 0..g.c_out {
            for oy in 0..g.out_h() {
                for ox in 0..g.out_w() {
                    for i in 0..g.c_in {
                        for a in 0..g.kh {
                            for b in 0..g.kw {
                                let iy = (oy * g.stride + a).wrapping_sub(g.pad);
                                let ix = (ox * g.stride + b).wrapping_sub(g.pad);
                                if iy < g.h && ix < g.w {
                                    f([n, o, oy, ox, i, a, b, iy, ix]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn x_index(g: &Conv2dGeom, n: usize, i: usize, iy: usize, ix: usize) -> usize {
    ((n * g.c_in + i) * g.h + iy) * g.w + ix
}

fn y_index(g: &Conv2dGeom, n: usize, o: usize, oy: usize, ox: usize) -> usize {
    ((n * g.c_out + o) * g.out_h() + oy) * g.out_w() + ox
}

fn w_index(g: &Conv2dGeom, o: usize, i: usize, a: usize, b: usize) -> usize {
    ((o * g.c_in + i) * g.kh + a) * g.kw + b
}

/// `y[n,o,oy,ox] = bias[o] + Σ_{i,a,b} x[n, i, oy·s + a - p, ox·s + b - p]·w[o,i,a,b]`,
/// with zero padding; `x: [n, c_in, h, w]`, `w: [c_out, c_in, kh, kw]`.
pub fn conv2d(g: &Conv2dGeom, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; g.output().numel()];
    for_each_tap(g, |[n, o, oy, ox, i, a, b, iy, ix]| {
        y[y_index(g, n, o, oy, ox)] += x[x_index(g, n, i, iy, ix)] * w[w_index(g, o, i, a, b)];
    });
    if let Some(bias) = bias {
        add_channel_bias(g.c_out, g.out_h() * g.out_w(), bias, &mut y);
    }
    y
}

/// The fused forward of the backend: `act(conv2d(x, w) + bias + residual)`.
pub fn conv2d_fused(
    g: &Conv2dGeom,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
    residual: Option<&[f64]>,
    act: Act,
) -> Vec<f64> {
    let mut y = conv2d(g, x, w, bias);
    for (k, v) in y.iter_mut().enumerate() {
        *v = super::ops::act(act, *v + residual.map_or(0.0, |r| r[k]));
    }
    y
}

/// Gradient of [`conv2d`] with respect to `x`: each output gradient flows back to every
/// input it was computed from, `dx[n,i,iy,ix] = Σ dy[n,o,oy,ox]·w[o,i,a,b]` over the taps.
pub fn conv2d_bwd_input(g: &Conv2dGeom, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.input().numel()];
    for_each_tap(g, |[n, o, oy, ox, i, a, b, iy, ix]| {
        dx[x_index(g, n, i, iy, ix)] += dy[y_index(g, n, o, oy, ox)] * w[w_index(g, o, i, a, b)];
    });
    dx
}

/// Gradient of [`conv2d`] with respect to `w`: `dw[o,i,a,b] = Σ dy[n,o,oy,ox]·x[n,i,iy,ix]`.
pub fn conv2d_bwd_weight(g: &Conv2dGeom, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.weight_len()];
    for_each_tap(g, |[n, o, oy, ox, i, a, b, iy, ix]| {
        dw[w_index(g, o, i, a, b)] += dy[y_index(g, n, o, oy, ox)] * x[x_index(g, n, i, iy, ix)];
    });
    dw
}

/// The gradient of a per-channel bias: `db[c] = Σ_{n, p} dy[n, c, p]` over `n` images of
/// `c` channels of `hw` pixels.
pub fn channel_sums(n: usize, c: usize, hw: usize, dy: &[f64]) -> Vec<f64> {
    let mut db = vec![0.0; c];
    for img in 0..n {
        for (ch, d) in db.iter_mut().enumerate() {
            *d += dy[(img * c + ch) * hw..][..hw].iter().sum::<f64>();
        }
    }
    db
}

fn add_channel_bias(c: usize, hw: usize, bias: &[f64], y: &mut [f64]) {
    for (k, v) in y.iter_mut().enumerate() {
        *v += bias[(k / hw) % c];
    }
}

/// Calls `f(n, i, iy, ix, o, a, b, oy, ox)` for every term of PyTorch's transposed
/// convolution: input pixel `(iy, ix)` scattered through tap `(a, b)` lands on output pixel
/// `(iy·s + a - p, ix·s + b - p)` when that is inside the output.
fn for_each_tap_t(g: &ConvT2dGeom, mut f: impl FnMut([usize; 9])) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for n in 0..g.n {
        for i in 0..g.c_in {
            for iy in 0..g.h {
                for ix in 0..g.w {
                    for o in 0..g.c_out {
                        for a in 0..g.kh {
                            for b in 0..g.kw {
                                let oy = (iy * g.stride + a).wrapping_sub(g.pad);
                                let ox = (ix * g.stride + b).wrapping_sub(g.pad);
                                if oy < oh && ox < ow {
                                    f([n, i, iy, ix, o, a, b, oy, ox]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn xt_index(g: &ConvT2dGeom, n: usize, i: usize, iy: usize, ix: usize) -> usize {
    ((n * g.c_in + i) * g.h + iy) * g.w + ix
}

fn yt_index(g: &ConvT2dGeom, n: usize, o: usize, oy: usize, ox: usize) -> usize {
    ((n * g.c_out + o) * g.out_h() + oy) * g.out_w() + ox
}

fn wt_index(g: &ConvT2dGeom, i: usize, o: usize, a: usize, b: usize) -> usize {
    ((i * g.c_out + o) * g.kh + a) * g.kw + b
}

/// PyTorch's `ConvTranspose2d`: `y[n, o, iy·s + a - p, ix·s + b - p] += x[n,i,iy,ix]·w[i,o,a,b]`
/// (scatter form), plus `bias[o]`; `w: [c_in, c_out, kh, kw]`.
pub fn conv_transpose2d(g: &ConvT2dGeom, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; g.output().numel()];
    for_each_tap_t(g, |[n, i, iy, ix, o, a, b, oy, ox]| {
        y[yt_index(g, n, o, oy, ox)] += x[xt_index(g, n, i, iy, ix)] * w[wt_index(g, i, o, a, b)];
    });
    if let Some(bias) = bias {
        add_channel_bias(g.c_out, g.out_h() * g.out_w(), bias, &mut y);
    }
    y
}

/// Gradient of [`conv_transpose2d`] with respect to `x`.
pub fn conv_transpose2d_bwd_input(g: &ConvT2dGeom, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.input().numel()];
    for_each_tap_t(g, |[n, i, iy, ix, o, a, b, oy, ox]| {
        dx[xt_index(g, n, i, iy, ix)] += dy[yt_index(g, n, o, oy, ox)] * w[wt_index(g, i, o, a, b)];
    });
    dx
}

/// Gradient of [`conv_transpose2d`] with respect to `w` (`[c_in, c_out, kh, kw]`).
pub fn conv_transpose2d_bwd_weight(g: &ConvT2dGeom, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.weight_len()];
    for_each_tap_t(g, |[n, i, iy, ix, o, a, b, oy, ox]| {
        dw[wt_index(g, i, o, a, b)] += dy[yt_index(g, n, o, oy, ox)] * x[xt_index(g, n, i, iy, ix)];
    });
    dw
}

/// PyTorch's `Linear`: `y[r, j] = bias[j] + Σ_t x[r, t]·w[j, t]`, `x: [n, k]`, `w: [m, k]`.
pub fn linear(n: usize, k: usize, m: usize, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; n * m];
    for r in 0..n {
        for j in 0..m {
            let dot: f64 = (0..k).map(|t| x[r * k + t] * w[j * k + t]).sum();
            y[r * m + j] = dot + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// Gradient of [`linear`] with respect to `x`: `dx[r, t] = Σ_j dy[r, j]·w[j, t]`.
pub fn linear_bwd_input(n: usize, k: usize, m: usize, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; n * k];
    for r in 0..n {
        for t in 0..k {
            dx[r * k + t] = (0..m).map(|j| dy[r * m + j] * w[j * k + t]).sum();
        }
    }
    dx
}

/// Gradient of [`linear`] with respect to `w`: `dw[j, t] = Σ_r dy[r, j]·x[r, t]`; the bias
/// gradient is [`channel_sums`]`(n, m, 1, dy)`.
pub fn linear_bwd_weight(n: usize, k: usize, m: usize, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; m * k];
    for j in 0..m {
        for t in 0..k {
            dw[j * k + t] = (0..n).map(|r| dy[r * m + j] * x[r * k + t]).sum();
        }
    }
    dw
}
