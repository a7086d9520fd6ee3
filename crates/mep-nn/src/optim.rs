//! Optimisers acting on a list of parameters, with PyTorch's update rules so that a
//! training run here and one in PyTorch take the same steps.

use crate::error::{NnError, Result};
use crate::param::Param;
use mep_tensor::{AdamParams, Backend, SgdParams};

/// An optimiser's state on the host, for checkpoints: the number of steps taken and,
/// per parameter, its buffers (Adam: `m`, `v`; SGD: the momentum buffer).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState {
    pub step: u32,
    pub buffers: Vec<Vec<Vec<f32>>>,
}

/// Something that updates parameters from their gradients.
pub trait Optimizer<B: Backend> {
    /// One step on `params` (always the same parameters, in the same order). Parameters
    /// without a gradient are left as they are.
    fn step(&mut self, backend: &B, params: &mut [&mut Param<B>]) -> Result<()>;
    /// Sets the learning rate (for schedules).
    fn set_lr(&mut self, lr: f32);
    /// The learning rate.
    fn lr(&self) -> f32;
    /// The state to checkpoint (empty buffers before the first step).
    fn export_state(&self, backend: &B) -> Result<OptimizerState>;
    /// Restores a checkpointed state; the next step continues where it left off.
    fn import_state(&mut self, backend: &B, state: &OptimizerState) -> Result<()>;
    /// Buffers per parameter (2 for Adam, 1 for SGD).
    fn buffers_per_param(&self) -> usize;
}

fn export<B: Backend>(backend: &B, step: u32, state: &[Vec<B::Buf>]) -> Result<OptimizerState> {
    let buffers = state
        .iter()
        .map(|bufs| {
            bufs.iter()
                .map(|b| backend.download(b))
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(OptimizerState { step, buffers })
}

fn import<B: Backend>(backend: &B, s: &OptimizerState, per_param: usize) -> Result<Vec<Vec<B::Buf>>> {
    s.buffers
        .iter()
        .enumerate()
        .map(|(i, bufs)| {
            if bufs.len() != per_param {
                return Err(NnError::Optimizer(format!(
                    "parameter {i} has {} state buffers, expected {per_param}",
                    bufs.len()
                )));
            }
            bufs.iter().map(|b| Ok(backend.upload(b)?)).collect()
        })
        .collect()
}

fn state_for<B: Backend>(
    backend: &B,
    state: &mut Vec<Vec<B::Buf>>,
    params: &[&mut Param<B>],
    per_param: usize,
) -> Result<()> {
    if state.is_empty() {
        for p in params {
            let mut bufs = Vec::with_capacity(per_param);
            for _ in 0..per_param {
                bufs.push(backend.zeros(p.numel())?);
            }
            state.push(bufs);
        }
    }
    if state.len() != params.len() {
        return Err(NnError::Optimizer(format!(
            "given {} parameters, but the state was made for {}",
            params.len(),
            state.len()
        )));
    }
    Ok(())
}

/// Adam (Kingma & Ba 2015) as `torch.optim.Adam`; AdamW with `decoupled`.
pub struct Adam<B: Backend> {
    /// Hyper-parameters; `step` is the count of steps taken so far.
    pub h: AdamParams,
    state: Vec<Vec<B::Buf>>,
}

impl<B: Backend> Adam<B> {
    /// Adam with the given hyper-parameters (`h.step` is ignored: counting starts at 1).
    pub fn new(h: AdamParams) -> Self {
        Adam {
            h: AdamParams { step: 0, ..h },
            state: Vec::new(),
        }
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self, backend: &B, params: &mut [&mut Param<B>]) -> Result<()> {
        state_for(backend, &mut self.state, params, 2)?;
        self.h.step += 1;
        for (p, st) in params.iter_mut().zip(self.state.iter_mut()) {
            if let Some(g) = p.grad.as_ref() {
                let (m, v) = st.split_at_mut(1);
                backend.adam_step(&self.h, &mut p.value.buf, &g.buf, &mut m[0], &mut v[0])?;
            }
        }
        Ok(())
    }
    fn set_lr(&mut self, lr: f32) {
        self.h.lr = lr;
    }
    fn lr(&self) -> f32 {
        self.h.lr
    }
    fn export_state(&self, backend: &B) -> Result<OptimizerState> {
        export(backend, self.h.step, &self.state)
    }
    fn import_state(&mut self, backend: &B, state: &OptimizerState) -> Result<()> {
        self.state = import(backend, state, 2)?;
        self.h.step = state.step;
        Ok(())
    }
    fn buffers_per_param(&self) -> usize {
        2
    }
}

/// SGD with momentum as `torch.optim.SGD` (dampening 0).
pub struct Sgd<B: Backend> {
    /// Hyper-parameters; `step` is the count of steps taken so far.
    pub h: SgdParams,
    state: Vec<Vec<B::Buf>>,
}

impl<B: Backend> Sgd<B> {
    /// SGD with the given hyper-parameters (`h.step` is ignored: counting starts at 1).
    pub fn new(h: SgdParams) -> Self {
        Sgd {
            h: SgdParams { step: 0, ..h },
            state: Vec::new(),
        }
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self, backend: &B, params: &mut [&mut Param<B>]) -> Result<()> {
        state_for(backend, &mut self.state, params, 1)?;
        self.h.step += 1;
        for (p, st) in params.iter_mut().zip(self.state.iter_mut()) {
            if let Some(g) = p.grad.as_ref() {
                backend.sgd_step(&self.h, &mut p.value.buf, &g.buf, &mut st[0])?;
            }
        }
        Ok(())
    }
    fn set_lr(&mut self, lr: f32) {
        self.h.lr = lr;
    }
    fn lr(&self) -> f32 {
        self.h.lr
    }
    fn export_state(&self, backend: &B) -> Result<OptimizerState> {
        export(backend, self.h.step, &self.state)
    }
    fn import_state(&mut self, backend: &B, state: &OptimizerState) -> Result<()> {
        self.state = import(backend, state, 1)?;
        self.h.step = state.step;
        Ok(())
    }
    fn buffers_per_param(&self) -> usize {
        1
    }
}
