//! Non-GEMM kernels of the CPU backend. STUB: to be written.
#![allow(unused_variables, clippy::too_many_arguments)]

use crate::backend::{Act, AdamParams, SgdParams};
use crate::shape::{Nchw, Pool2dGeom};

pub fn batch_norm_infer(s: &Nchw, x: &[f32], gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32, act: Act, y: &mut [f32]) { todo!() }
pub fn batch_norm_infer_bwd(s: &Nchw, x: &[f32], dy: &[f32], gamma: &[f32], mean: &[f32], var: &[f32], eps: f32, dx: &mut [f32], dgamma: Option<&mut [f32]>, dbeta: Option<&mut [f32]>) { todo!() }
pub fn batch_norm_train(s: &Nchw, x: &[f32], gamma: &[f32], beta: &[f32], running_mean: &mut [f32], running_var: &mut [f32], momentum: f32, eps: f32, y: &mut [f32], save_mean: &mut [f32], save_invstd: &mut [f32]) { todo!() }
pub fn batch_norm_train_bwd(s: &Nchw, x: &[f32], dy: &[f32], gamma: &[f32], save_mean: &[f32], save_invstd: &[f32], dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) { todo!() }
pub fn activation(act: Act, x: &[f32], y: &mut [f32]) { todo!() }
pub fn activation_bwd(act: Act, y: &[f32], dy: &[f32], dx: &mut [f32]) { todo!() }
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) { todo!() }
pub fn max_pool2d(g: &Pool2dGeom, x: &[f32], y: &mut [f32]) { todo!() }
pub fn max_pool2d_bwd(g: &Pool2dGeom, x: &[f32], dy: &[f32], dx: &mut [f32]) { todo!() }
pub fn global_avg_pool(s: &Nchw, x: &[f32], y: &mut [f32]) { todo!() }
pub fn global_avg_pool_bwd(s: &Nchw, dy: &[f32], dx: &mut [f32]) { todo!() }
pub fn upsample_nearest2x(s: &Nchw, x: &[f32], y: &mut [f32]) { todo!() }
pub fn upsample_nearest2x_bwd(s: &Nchw, dy: &[f32], dx: &mut [f32]) { todo!() }
/// Output shape of the option-A shortcut.
pub fn shortcut_pad_shape(s: &Nchw, subsample: bool, pad: usize) -> Nchw {
    let (h, w) = if subsample { (s.h.div_ceil(2), s.w.div_ceil(2)) } else { (s.h, s.w) };
    Nchw { n: s.n, c: s.c + 2 * pad, h, w }
}
pub fn shortcut_pad(s: &Nchw, subsample: bool, pad: usize, x: &[f32], y: &mut [f32]) { todo!() }
pub fn shortcut_pad_bwd(s: &Nchw, subsample: bool, pad: usize, dy: &[f32], dx: &mut [f32]) { todo!() }
pub fn softmax_cross_entropy(n: usize, c: usize, logits: &[f32], targets: &[usize], probs: &mut [f32], losses: &mut [f32]) { todo!() }
pub fn softmax_cross_entropy_bwd(n: usize, c: usize, probs: &[f32], targets: &[usize], scale: f32, dlogits: &mut [f32]) { todo!() }
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) { todo!() }
pub fn scale(alpha: f32, x: &mut [f32]) { todo!() }
pub fn dot(x: &[f32], y: &[f32]) -> f64 { todo!() }
pub fn adam_step(h: &AdamParams, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) { todo!() }
pub fn sgd_step(h: &SgdParams, param: &mut [f32], grad: &[f32], buf: &mut [f32]) { todo!() }
