//! Reference batch norm, activations, pooling, resampling, loss and optimiser steps, in f64.
//!
//! Each function is the plain textbook loop with PyTorch's semantics, written for reading
//! rather than speed. Buffers use the same layouts as the fast kernels (NCHW images,
//! row-major `[n, c]` logits, per-channel vectors of length `c`); lengths are assumed right.
// Index loops mirror the formulas (x[n, c, h, w]) and read better than iterator chains here.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use crate::backend::{Act, AdamParams, SgdParams};
use crate::shape::{Nchw, Pool2dGeom};

/// Flat index of `[n, c, h, w]` in an NCHW buffer of shape `s`.
fn at(s: &Nchw, n: usize, c: usize, h: usize, w: usize) -> usize {
    ((n * s.c + c) * s.h + h) * s.w + w
}

/// `act(v)`.
pub fn act(a: Act, v: f64) -> f64 {
    match a {
        Act::Identity => v,
        Act::Relu => crate::float::relu(v),
        Act::LeakyRelu(slope) => {
            if v > 0.0 {
                v
            } else {
                slope as f64 * v
            }
        }
        Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
    }
}

/// `act'(x)` expressed through the output `y = act(x)`.
pub fn act_grad_from_output(a: Act, y: f64) -> f64 {
    match a {
        Act::Identity => 1.0,
        // PyTorch's threshold_backward: `y <= 0 ? 0 : 1`, so a NaN output passes the gradient.
        Act::Relu => {
            if y <= 0.0 {
                0.0
            } else {
                1.0
            }
        }
        Act::LeakyRelu(slope) => {
            if y > 0.0 {
                1.0
            } else {
                slope as f64
            }
        }
        Act::Sigmoid => y * (1.0 - y),
    }
}

/// `y_i = act(x_i)`.
pub fn activation(a: Act, x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| act(a, v)).collect()
}

/// `dx_i = dy_i · act'` read from the output `y_i`.
pub fn activation_bwd(a: Act, y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(dy)
        .map(|(&y, &g)| g * act_grad_from_output(a, y))
        .collect()
}

/// `y_i = a_i + b_i`.
pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// `y[n,c,h,w] = act(gamma[c] (x − mean[c]) / sqrt(var[c] + eps) + beta[c])`.
pub fn batch_norm_infer(
    s: &Nchw,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
    a: Act,
) -> Vec<f64> {
    let mut y = vec![0.0; s.numel()];
    for n in 0..s.n {
        for c in 0..s.c {
            for h in 0..s.h {
                for w in 0..s.w {
                    let i = at(s, n, c, h, w);
                    y[i] = act(a, gamma[c] * (x[i] - mean[c]) / (var[c] + eps).sqrt() + beta[c]);
                }
            }
        }
    }
    y
}

/// Backward of inference batch norm (no activation): `(dx, dgamma, dbeta)` with
/// `dx = dy γ/sqrt(var+eps)`, `dγ = Σ dy (x−mean)/sqrt(var+eps)`, `dβ = Σ dy`.
pub fn batch_norm_infer_bwd(
    s: &Nchw,
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; s.numel()], vec![0.0; s.c], vec![0.0; s.c]);
    for n in 0..s.n {
        for c in 0..s.c {
            let invstd = 1.0 / (var[c] + eps).sqrt();
            for h in 0..s.h {
                for w in 0..s.w {
                    let i = at(s, n, c, h, w);
                    dx[i] = dy[i] * gamma[c] * invstd;
                    dgamma[c] += dy[i] * (x[i] - mean[c]) * invstd;
                    dbeta[c] += dy[i];
                }
            }
        }
    }
    (dx, dgamma, dbeta)
}

/// Everything training-mode batch norm produces.
#[derive(Clone, Debug)]
pub struct BnTrain {
    pub y: Vec<f64>,
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
    pub save_mean: Vec<f64>,
    pub save_invstd: Vec<f64>,
}

/// Training-mode batch norm as `torch.nn.functional.batch_norm(training=True)`: per channel,
/// over `m = n h w` values, `μ = Σx/m`, `σ² = Σ(x−μ)²/m` (biased, used to normalise),
/// `y = γ (x−μ)/sqrt(σ²+eps) + β`; running stats `r ← (1−momentum) r + momentum · stat` with the
/// unbiased `σ² m/(m−1)` for the variance; saves `μ` and `1/sqrt(σ²+eps)`.
pub fn batch_norm_train(
    s: &Nchw,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    momentum: f64,
    eps: f64,
) -> BnTrain {
    let m = (s.n * s.h * s.w) as f64;
    let mut out = BnTrain {
        y: vec![0.0; s.numel()],
        running_mean: vec![0.0; s.c],
        running_var: vec![0.0; s.c],
        save_mean: vec![0.0; s.c],
        save_invstd: vec![0.0; s.c],
    };
    for c in 0..s.c {
        let values = || (0..s.n).flat_map(move |n| (0..s.h).flat_map(move |h| (0..s.w).map(move |w| (n, h, w))));
        let mean = values().map(|(n, h, w)| x[at(s, n, c, h, w)]).sum::<f64>() / m;
        let var = values()
            .map(|(n, h, w)| (x[at(s, n, c, h, w)] - mean).powi(2))
            .sum::<f64>()
            / m;
        let invstd = 1.0 / (var + eps).sqrt();
        for (n, h, w) in values() {
            let i = at(s, n, c, h, w);
            out.y[i] = gamma[c] * (x[i] - mean) * invstd + beta[c];
        }
        out.running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean;
        out.running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var * m / (m - 1.0);
        out.save_mean[c] = mean;
        out.save_invstd[c] = invstd;
    }
    out
}

/// Backward of training-mode batch norm, `(dx, dgamma, dbeta)`: with `x̂ = (x−μ) invstd`,
/// `dx = γ invstd/m (m dy − Σdy − x̂ Σ(dy x̂))`, `dγ = Σ dy x̂`, `dβ = Σ dy`.
pub fn batch_norm_train_bwd(
    s: &Nchw,
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    save_mean: &[f64],
    save_invstd: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (s.n * s.h * s.w) as f64;
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; s.numel()], vec![0.0; s.c], vec![0.0; s.c]);
    for c in 0..s.c {
        let xhat = |i: usize| (x[i] - save_mean[c]) * save_invstd[c];
        for n in 0..s.n {
            for h in 0..s.h {
                for w in 0..s.w {
                    let i = at(s, n, c, h, w);
                    dbeta[c] += dy[i];
                    dgamma[c] += dy[i] * xhat(i);
                }
            }
        }
        for n in 0..s.n {
            for h in 0..s.h {
                for w in 0..s.w {
                    let i = at(s, n, c, h, w);
                    dx[i] = gamma[c] * save_invstd[c] / m * (m * dy[i] - dbeta[c] - xhat(i) * dgamma[c]);
                }
            }
        }
    }
    (dx, dgamma, dbeta)
}

/// Flat index (within the `[h, w]` plane) of the maximum of output cell `(oh, ow)`'s window,
/// PyTorch's rule: scan row-major from the first in-bounds element, a strictly larger value
/// or a NaN takes over (so ties keep the first maximum); padding is −∞ and never chosen.
pub fn max_pool2d_argmax(g: &Pool2dGeom, plane: &[f64], oh: usize, ow: usize) -> usize {
    let (h, w) = (g.input.h as isize, g.input.w as isize);
    let mut best = f64::NEG_INFINITY;
    let mut arg = None;
    for kh in 0..g.k {
        for kw in 0..g.k {
            let ih = (oh * g.stride + kh) as isize - g.pad as isize;
            let iw = (ow * g.stride + kw) as isize - g.pad as isize;
            if ih < 0 || iw < 0 || ih >= h || iw >= w {
                continue;
            }
            let i = (ih * w + iw) as usize;
            let v = plane[i];
            if arg.is_none() {
                arg = Some(i);
            }
            if v > best || v.is_nan() {
                best = v;
                arg = Some(i);
            }
        }
    }
    arg.expect("a validated pool window overlaps the input")
}

/// `y[n,c,oh,ow] = max of x[n,c] over the window`.
pub fn max_pool2d(g: &Pool2dGeom, x: &[f64]) -> Vec<f64> {
    let (o, hw) = (g.output(), g.input.hw());
    let mut y = vec![0.0; o.numel()];
    for p in 0..o.n * o.c {
        let plane = &x[p * hw..(p + 1) * hw];
        for oh in 0..o.h {
            for ow in 0..o.w {
                y[(p * o.h + oh) * o.w + ow] = plane[max_pool2d_argmax(g, plane, oh, ow)];
            }
        }
    }
    y
}

/// `dx[argmax of window] += dy[window]`.
pub fn max_pool2d_bwd(g: &Pool2dGeom, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let (o, hw) = (g.output(), g.input.hw());
    let mut dx = vec![0.0; x.len()];
    for p in 0..o.n * o.c {
        let plane = &x[p * hw..(p + 1) * hw];
        for oh in 0..o.h {
            for ow in 0..o.w {
                dx[p * hw + max_pool2d_argmax(g, plane, oh, ow)] += dy[(p * o.h + oh) * o.w + ow];
            }
        }
    }
    dx
}

/// `y[n, c] = (1/hw) Σ_{h,w} x[n,c,h,w]`.
pub fn global_avg_pool(s: &Nchw, x: &[f64]) -> Vec<f64> {
    let hw = s.hw();
    (0..s.n * s.c)
        .map(|p| x[p * hw..(p + 1) * hw].iter().sum::<f64>() / hw as f64)
        .collect()
}

/// `dx[n,c,h,w] = dy[n,c] / hw`.
pub fn global_avg_pool_bwd(s: &Nchw, dy: &[f64]) -> Vec<f64> {
    let hw = s.hw();
    (0..s.numel()).map(|i| dy[i / hw] / hw as f64).collect()
}

/// `y[n,c,i,j] = x[n,c,i/2,j/2]`, shape `[n, c, 2h, 2w]`.
pub fn upsample_nearest2x(s: &Nchw, x: &[f64]) -> Vec<f64> {
    let (oh, ow) = (2 * s.h, 2 * s.w);
    let mut y = vec![0.0; 4 * s.numel()];
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..oh {
                for j in 0..ow {
                    y[((n * s.c + c) * oh + i) * ow + j] = x[at(s, n, c, i / 2, j / 2)];
                }
            }
        }
    }
    y
}

/// `dx[n,c,i,j] = Σ_{a,b ∈ {0,1}} dy[n,c,2i+a,2j+b]`.
pub fn upsample_nearest2x_bwd(s: &Nchw, dy: &[f64]) -> Vec<f64> {
    let (oh, ow) = (2 * s.h, 2 * s.w);
    let mut dx = vec![0.0; s.numel()];
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..oh {
                for j in 0..ow {
                    dx[at(s, n, c, i / 2, j / 2)] += dy[((n * s.c + c) * oh + i) * ow + j];
                }
            }
        }
    }
    dx
}

/// `y[n, pad + c, i, j] = x[n, c, stride i, stride j]` (stride 2 when subsampling), every other
/// channel of `y` zero.
pub fn shortcut_pad(s: &Nchw, subsample: bool, pad: usize, x: &[f64]) -> Vec<f64> {
    let o = s.shortcut_pad(subsample, pad);
    let stride = if subsample { 2 } else { 1 };
    let mut y = vec![0.0; o.numel()];
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..o.h {
                for j in 0..o.w {
                    y[at(&o, n, c + pad, i, j)] = x[at(s, n, c, stride * i, stride * j)];
                }
            }
        }
    }
    y
}

/// `dx[n, c, stride i, stride j] = dy[n, pad + c, i, j]`, zero elsewhere.
pub fn shortcut_pad_bwd(s: &Nchw, subsample: bool, pad: usize, dy: &[f64]) -> Vec<f64> {
    let o = s.shortcut_pad(subsample, pad);
    let stride = if subsample { 2 } else { 1 };
    let mut dx = vec![0.0; s.numel()];
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..o.h {
                for j in 0..o.w {
                    dx[at(s, n, c, stride * i, stride * j)] = dy[at(&o, n, c + pad, i, j)];
                }
            }
        }
    }
    dx
}

/// Per row `i` of `logits: [n, c]`: `probs_i = softmax(logits_i)` and
/// `losses[i] = −log probs_i[target_i] = logsumexp(logits_i) − logits_i[target_i]`, with the
/// row maximum subtracted before exponentiating.
pub fn softmax_cross_entropy(n: usize, c: usize, logits: &[f64], targets: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (mut probs, mut losses) = (vec![0.0; n * c], vec![0.0; n]);
    for i in 0..n {
        let row = &logits[i * c..(i + 1) * c];
        let mx = row.iter().copied().fold(f64::NEG_INFINITY, crate::float::max_nan);
        let sum: f64 = row.iter().map(|&v| (v - mx).exp()).sum();
        for j in 0..c {
            probs[i * c + j] = (row[j] - mx).exp() / sum;
        }
        losses[i] = mx + sum.ln() - row[targets[i]];
    }
    (probs, losses)
}

/// `dlogits[i, j] = scale (probs[i, j] − [j == target_i])`: the gradient of `scale Σ_i losses[i]`.
pub fn softmax_cross_entropy_bwd(n: usize, c: usize, probs: &[f64], targets: &[usize], scale: f64) -> Vec<f64> {
    let mut d = vec![0.0; n * c];
    for i in 0..n {
        for j in 0..c {
            let onehot = if j == targets[i] { 1.0 } else { 0.0 };
            d[i * c + j] = scale * (probs[i * c + j] - onehot);
        }
    }
    d
}

/// `y + alpha x`.
pub fn axpy(alpha: f64, x: &[f64], y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(x, y)| y + alpha * x).collect()
}

/// `alpha x`.
pub fn scale(alpha: f64, x: &[f64]) -> Vec<f64> {
    x.iter().map(|x| alpha * x).collect()
}

/// `Σ x_i y_i`.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(x, y)| x * y).sum()
}

/// One step of `torch.optim.Adam` (or `AdamW` when `h.decoupled`), returning the new
/// `(param, m, v)`. Per element, with `t = h.step`:
/// weight decay `g ← g + wd p` (Adam) or `p ← p (1 − lr wd)` (AdamW); `m ← β₁ m + (1−β₁) g`;
/// `v ← β₂ v + (1−β₂) g²`; `p ← p − lr/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + eps)`.
pub fn adam_step(h: &AdamParams, param: &[f64], grad: &[f64], m: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lr, b1, b2, eps, wd) = (
        h.lr as f64,
        h.beta1 as f64,
        h.beta2 as f64,
        h.eps as f64,
        h.weight_decay as f64,
    );
    let t = h.step as i32;
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let (mut p_out, mut m_out, mut v_out) = (param.to_vec(), m.to_vec(), v.to_vec());
    for i in 0..param.len() {
        let mut p = param[i];
        let mut g = grad[i];
        if wd != 0.0 {
            if h.decoupled {
                p *= 1.0 - lr * wd;
            } else {
                g += wd * p;
            }
        }
        m_out[i] = b1 * m[i] + (1.0 - b1) * g;
        v_out[i] = b2 * v[i] + (1.0 - b2) * g * g;
        p_out[i] = p - lr / bc1 * m_out[i] / (v_out[i].sqrt() / bc2.sqrt() + eps);
    }
    (p_out, m_out, v_out)
}

/// One step of `torch.optim.SGD` (dampening 0), returning the new `(param, buf)`. Per element:
/// `g ← g + wd p`; if momentum `μ ≠ 0`: `buf ← g` on step 1, else `buf ← μ buf + g`, and
/// `g ← g + μ buf` (nesterov) or `g ← buf`; then `p ← p − lr g`.
pub fn sgd_step(h: &SgdParams, param: &[f64], grad: &[f64], buf: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (lr, mu, wd) = (h.lr as f64, h.momentum as f64, h.weight_decay as f64);
    let (mut p_out, mut b_out) = (param.to_vec(), buf.to_vec());
    for i in 0..param.len() {
        let mut g = grad[i] + wd * param[i];
        if mu != 0.0 {
            b_out[i] = if h.step == 1 { g } else { mu * buf[i] + g };
            g = if h.nesterov { g + mu * b_out[i] } else { b_out[i] };
        }
        p_out[i] = param[i] - lr * g;
    }
    (p_out, b_out)
}
