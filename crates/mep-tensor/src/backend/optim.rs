//! Optimiser steps: Adam and SGD with momentum, PyTorch's semantics.

use super::Memory;
use crate::error::{check_len, Result, TensorError};

/// Adam hyper-parameters and the 1-based step count, with PyTorch's semantics
/// (`torch.optim.Adam`: L2 weight decay added to the gradient; `AdamW` when `decoupled`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    /// The step being taken, starting at 1 (bias correction uses it).
    pub step: u32,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            step: 1,
        }
    }
}

impl AdamParams {
    /// The two terms of bias correction at `step`, `[lr / (1 − β₁ᵗ), sqrt(1 − β₂ᵗ)]`, computed
    /// in f64 as PyTorch does in Python and rounded once to f32: what
    /// [`Optim::adam_step_indirect`] reads from its device buffer, and what every backend's
    /// [`Optim::adam_step`] uses.
    pub fn bias_terms(&self) -> [f32; 2] {
        let (b1, b2, t) = (self.beta1 as f64, self.beta2 as f64, self.step as f64);
        [
            (self.lr as f64 / (1.0 - b1.powf(t))) as f32,
            (1.0 - b2.powf(t)).sqrt() as f32,
        ]
    }
}

/// SGD with momentum, PyTorch's semantics (`torch.optim.SGD`, dampening 0: the first step
/// sets the momentum buffer to the gradient).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// The step being taken, starting at 1 (the first step initialises the buffer).
    pub step: u32,
}

/// Steps count from 1.
fn check_step(op: &'static str, step: u32) -> Result<()> {
    if step == 0 {
        return Err(TensorError::Invalid {
            op,
            msg: "step counts from 1".into(),
        });
    }
    Ok(())
}

/// Optimiser steps on a parameter buffer and its state buffers, all of one length.
///
/// Implementors provide the `run_*` methods, which may assume equal lengths and a step of
/// at least 1.
pub trait Optim: Memory {
    checked_ops! {
        /// One Adam step on `param` with gradient `grad` and moment buffers `m`, `v`.
        fn adam_step(
            &self,
            h: &AdamParams,
            param: &mut Self::Buf,
            grad: &Self::Buf,
            m: &mut Self::Buf,
            v: &mut Self::Buf,
        ) -> Result<()> => run_adam_step {
            let len = self.len(param);
            check_len("adam_step", "grad", len, self.len(grad))?;
            check_len("adam_step", "m", len, self.len(m))?;
            check_len("adam_step", "v", len, self.len(v))?;
            check_step("adam_step", h.step)?;
        }
        /// [`adam_step`](Self::adam_step) with the bias terms of the step read from `bias`
        /// (2 values, [`AdamParams::bias_terms`]) on the device, not from `h.step`: a step
        /// captured in a CUDA graph replays with whatever terms the host wrote there before.
        fn adam_step_indirect(
            &self,
            h: &AdamParams,
            bias: &Self::Buf,
            param: &mut Self::Buf,
            grad: &Self::Buf,
            m: &mut Self::Buf,
            v: &mut Self::Buf,
        ) -> Result<()> => run_adam_step_indirect {
            let len = self.len(param);
            check_len("adam_step_indirect", "bias", 2, self.len(bias))?;
            check_len("adam_step_indirect", "grad", len, self.len(grad))?;
            check_len("adam_step_indirect", "m", len, self.len(m))?;
            check_len("adam_step_indirect", "v", len, self.len(v))?;
        }
        /// One SGD-with-momentum step on `param`, with momentum buffer `buf`.
        fn sgd_step(
            &self,
            h: &SgdParams,
            param: &mut Self::Buf,
            grad: &Self::Buf,
            buf: &mut Self::Buf,
        ) -> Result<()> => run_sgd_step {
            let len = self.len(param);
            check_len("sgd_step", "grad", len, self.len(grad))?;
            check_len("sgd_step", "buf", len, self.len(buf))?;
            check_step("sgd_step", h.step)?;
        }
    }
}
