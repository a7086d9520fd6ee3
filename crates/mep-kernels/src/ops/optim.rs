//! optim.cu.

use crate::backend::{i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Launcher};
use crate::ops::elementwise::launch_n;
use crate::ops::ptrs;
use mep_tensor::{AdamParams, Checked, Optim, Result, SgdParams};

/// The f32 scalars of one Adam step, computed by the host as PyTorch computes them (in f64,
/// rounded once): what `adam_step_f32_*` takes besides the buffers.
///
/// ```
/// let s = mep_kernels::AdamScalars::new(1e-3, 0.9, 0.999, 1e-8, 0.0, false, 1);
/// assert!((s.step_size - 1e-2).abs() < 1e-8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamScalars {
    pub beta1: f32,
    pub beta2: f32,
    /// 1 − β₁.
    pub c1: f32,
    /// 1 − β₂.
    pub c2: f32,
    pub eps: f32,
    /// lr / (1 − β₁ᵗ).
    pub step_size: f32,
    /// sqrt(1 − β₂ᵗ).
    pub bc2_sqrt: f32,
    /// The L2 weight decay added to the gradient (Adam), 0 for AdamW.
    pub l2: f32,
    /// The decoupled decay factor 1 − lr·wd (AdamW), 1 for Adam.
    pub decay: f32,
}

impl AdamScalars {
    /// `torch.optim.Adam` (or `AdamW` when `decoupled`) at 1-based step `step`; Kingma & Ba 2015,
    /// Algorithm 1 with bias correction; Loshchilov & Hutter 2019 for the decoupled decay.
    pub fn new(lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, decoupled: bool, step: u32) -> Self {
        let (b1, b2) = (beta1 as f64, beta2 as f64);
        let h = AdamParams {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            step,
        };
        let [step_size, bc2_sqrt] = h.bias_terms();
        let (l2, decay) = match (weight_decay != 0.0, decoupled) {
            (false, _) => (0.0, 1.0),
            (true, false) => (weight_decay, 1.0),
            (true, true) => (0.0, (1.0 - lr as f64 * weight_decay as f64) as f32),
        };
        AdamScalars {
            beta1,
            beta2,
            c1: (1.0 - b1) as f32,
            c2: (1.0 - b2) as f32,
            eps,
            step_size,
            bc2_sqrt,
            l2,
            decay,
        }
    }

    /// The scalars as `adam_step_f32_*` takes them, all nine in its argument order.
    pub fn args(&self) -> [Arg; 9] {
        let AdamScalars {
            beta1,
            beta2,
            c1,
            c2,
            eps,
            step_size,
            bc2_sqrt,
            l2,
            decay,
        } = *self;
        [beta1, beta2, c1, c2, eps, step_size, bc2_sqrt, l2, decay].map(Arg::F32)
    }

    /// The scalars of the Backend's [`AdamParams`].
    pub fn of(h: &AdamParams) -> Self {
        AdamScalars::new(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled, h.step)
    }
}

impl<L: Launcher> Optim for KernelBackend<L> {
    fn run_adam_step(
        &self,
        _: Checked,
        h: &AdamParams,
        param: &mut DevBuf<L::Mem>,
        grad: &DevBuf<L::Mem>,
        m: &mut DevBuf<L::Mem>,
        v: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        let len = param.len;
        let s = AdamScalars::of(h);
        let args = [&[i64_of(len)][..], &s.args(), &ptrs(self, [param, grad, m, v])].concat();
        launch_n(self, "adam_step_f32", len, &args)
    }

    fn run_adam_step_indirect(
        &self,
        _: Checked,
        h: &AdamParams,
        bias: &DevBuf<L::Mem>,
        param: &mut DevBuf<L::Mem>,
        grad: &DevBuf<L::Mem>,
        m: &mut DevBuf<L::Mem>,
        v: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        let len = param.len;
        // adam_step's nine scalars with the two bias terms replaced by their device pointer.
        let mut s: Vec<Arg> = AdamScalars::of(&AdamParams { step: 1, ..*h }).args().to_vec();
        s.splice(5..7, [self.ptr(bias)]);
        let args = [&[i64_of(len)][..], &s, &ptrs(self, [param, grad, m, v])].concat();
        launch_n(self, "adam_step_indirect_f32", len, &args)
    }

    fn run_sgd_step(
        &self,
        _: Checked,
        h: &SgdParams,
        param: &mut DevBuf<L::Mem>,
        grad: &DevBuf<L::Mem>,
        buf: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        let len = param.len;
        let scalars = [h.lr, h.momentum, h.weight_decay].map(Arg::F32);
        let flags = [h.nesterov, h.step == 1].map(|b| Arg::I32(b as i32));
        let args = [&[i64_of(len)][..], &scalars, &flags, &ptrs(self, [param, grad, buf])].concat();
        launch_n(self, "sgd_step_f32", len, &args)
    }
}
