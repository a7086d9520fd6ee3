//! The CPU backend: the reference every other backend is checked against, and fast
//! enough to run the experiment on a laptop.
//!
//! Buffers come from a pool so that a forward pass reuses the memory of the previous
//! one instead of page-faulting fresh allocations; GEMMs go through the `gemm` crate
//! (AVX-512 where the CPU has it, with the same bits as AVX2: see `conv::gemm_fixed_order`) and
//! everything else is parallel over rayon.

pub mod conv;
pub mod neb;
pub mod ops;
pub mod reference;

use crate::backend::{Act, AdamParams, Backend, Lerp, NebForceParams, SgdParams};
use crate::error::{check_len, Result, TensorError};
use crate::shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom};
use std::sync::{Arc, Mutex};

/// Freed buffers kept for reuse, bounded so that a one-off large batch does not pin memory.
#[derive(Default)]
struct Pool {
    free: Mutex<Vec<Vec<f32>>>,
}

const POOL_MAX_BUFFERS: usize = 256;

impl Pool {
    fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        // Best fit: the smallest free buffer that is large enough.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) if free[i].capacity() <= 2 * len.max(1024) => {
                let mut v = free.swap_remove(i);
                // SAFETY-free resize: truncating or growing within capacity keeps old values,
                // which `alloc` documents as unspecified contents.
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, 0.0);
                }
                v
            }
            _ => vec![0.0; len],
        }
    }

    fn give(&self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX_BUFFERS {
            free.push(v);
        }
    }
}

/// A buffer of the CPU backend: a `Vec<f32>` that goes back to its backend's pool when dropped.
pub struct CpuBuf {
    data: Vec<f32>,
    pool: Arc<Pool>,
}

impl CpuBuf {
    /// The elements.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    /// The elements, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Drop for CpuBuf {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.data));
    }
}

impl std::fmt::Debug for CpuBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuBuf(len {})", self.data.len())
    }
}

/// The CPU backend. Cheap to clone: clones share the buffer pool and GEMM workspace.
///
/// ```
/// use mep_tensor::{Backend, CpuBackend};
/// let cpu = CpuBackend::new();
/// let a = cpu.upload(&[1.0, 2.0]).unwrap();
/// assert_eq!(cpu.dot(&a, &a).unwrap(), 5.0);
/// ```
#[derive(Clone, Default)]
pub struct CpuBackend {
    pool: Arc<Pool>,
    ws: Arc<conv::Workspace>,
}

impl CpuBackend {
    /// A CPU backend using rayon's global thread pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        Self::default()
    }

    fn wrap(&self, data: Vec<f32>) -> CpuBuf {
        CpuBuf {
            data,
            pool: self.pool.clone(),
        }
    }
}

fn opt(b: Option<&CpuBuf>) -> Option<&[f32]> {
    b.map(|b| b.as_slice())
}

fn opt_mut(b: Option<&mut CpuBuf>) -> Option<&mut [f32]> {
    b.map(|b| b.as_mut_slice())
}

fn check_opt(op: &'static str, arg: &'static str, expected: usize, b: Option<&CpuBuf>) -> Result<()> {
    check_opt_len(op, arg, expected, b.map(|b| b.data.len()))
}

/// [`check_len`] for an optional buffer of `found` elements (every backend's rule).
pub fn check_opt_len(op: &'static str, arg: &'static str, expected: usize, found: Option<usize>) -> Result<()> {
    found.map_or(Ok(()), |f| check_len(op, arg, expected, f))
}

/// Training-mode batch norm needs batch statistics of more than one value per channel
/// (every backend's rule).
pub fn check_batch_stats(op: &'static str, s: &Nchw) -> Result<()> {
    if s.n * s.h * s.w < 2 {
        return Err(TensorError::Invalid {
            op,
            msg: format!("training-mode batch norm needs more than one value per channel, got input {s:?}"),
        });
    }
    Ok(())
}

/// Rejects a LeakyReLU slope that is not positive (every backend's rule).
pub fn check_act(op: &'static str, act: Act) -> Result<()> {
    match act {
        // NaN slopes are rejected too, hence not `s <= 0.0`.
        Act::LeakyRelu(s) if s.is_nan() || s <= 0.0 => Err(TensorError::Invalid {
            op,
            msg: format!("LeakyReLU slope {s} must be positive (its backward reads the output)"),
        }),
        _ => Ok(()),
    }
}

/// Checks that there are `n` targets, each in `0..c` (every backend's rule).
pub fn check_targets(op: &'static str, n: usize, c: usize, targets: &[usize]) -> Result<()> {
    check_len(op, "targets", n, targets.len())?;
    match targets.iter().enumerate().find(|(_, &t)| t >= c) {
        Some((sample, &target)) => Err(TensorError::Target {
            op,
            sample,
            target,
            classes: c,
        }),
        None => Ok(()),
    }
}

impl Backend for CpuBackend {
    type Buf = CpuBuf;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn alloc(&self, len: usize) -> Result<CpuBuf> {
        Ok(self.wrap(self.pool.take(len)))
    }
    fn zeros(&self, len: usize) -> Result<CpuBuf> {
        let mut v = self.pool.take(len);
        v.fill(0.0);
        Ok(self.wrap(v))
    }
    fn upload(&self, data: &[f32]) -> Result<CpuBuf> {
        let mut v = self.pool.take(data.len());
        v.copy_from_slice(data);
        Ok(self.wrap(v))
    }
    fn download(&self, buf: &CpuBuf) -> Result<Vec<f32>> {
        Ok(buf.data.clone())
    }
    fn len(&self, buf: &CpuBuf) -> usize {
        buf.data.len()
    }
    fn copy(&self, src: &CpuBuf, dst: &mut CpuBuf) -> Result<()> {
        check_len("copy", "dst", src.data.len(), dst.data.len())?;
        dst.data.copy_from_slice(&src.data);
        Ok(())
    }
    fn fill(&self, buf: &mut CpuBuf, value: f32) -> Result<()> {
        buf.data.fill(value);
        Ok(())
    }

    fn conv2d(
        &self,
        g: &Conv2dGeom,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        residual: Option<&CpuBuf>,
        act: Act,
        y: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "conv2d";
        g.validate(OP)?;
        check_act(OP, act)?;
        check_len(OP, "x", g.input().numel(), x.data.len())?;
        check_len(OP, "w", g.weight_len(), w.data.len())?;
        check_opt(OP, "bias", g.c_out, bias)?;
        check_opt(OP, "residual", g.output().numel(), residual)?;
        check_len(OP, "y", g.output().numel(), y.data.len())?;
        conv::conv2d(
            &self.ws,
            g,
            &x.data,
            &w.data,
            opt(bias),
            opt(residual),
            act,
            &mut y.data,
        );
        Ok(())
    }
    fn conv2d_bwd_input(&self, g: &Conv2dGeom, dy: &CpuBuf, w: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        const OP: &str = "conv2d_bwd_input";
        g.validate(OP)?;
        check_len(OP, "dy", g.output().numel(), dy.data.len())?;
        check_len(OP, "w", g.weight_len(), w.data.len())?;
        check_len(OP, "dx", g.input().numel(), dx.data.len())?;
        conv::conv2d_bwd_input(&self.ws, g, &dy.data, &w.data, &mut dx.data);
        Ok(())
    }
    fn conv2d_bwd_weight(
        &self,
        g: &Conv2dGeom,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        const OP: &str = "conv2d_bwd_weight";
        g.validate(OP)?;
        check_len(OP, "x", g.input().numel(), x.data.len())?;
        check_len(OP, "dy", g.output().numel(), dy.data.len())?;
        check_len(OP, "dw", g.weight_len(), dw.data.len())?;
        check_opt(OP, "db", g.c_out, db.as_deref())?;
        conv::conv2d_bwd_weight(&self.ws, g, &x.data, &dy.data, &mut dw.data, opt_mut(db));
        Ok(())
    }
    fn conv_transpose2d(
        &self,
        g: &ConvT2dGeom,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        y: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "conv_transpose2d";
        g.validate(OP)?;
        check_len(OP, "x", g.input().numel(), x.data.len())?;
        check_len(OP, "w", g.weight_len(), w.data.len())?;
        check_opt(OP, "bias", g.c_out, bias)?;
        check_len(OP, "y", g.output().numel(), y.data.len())?;
        conv::conv_transpose2d(&self.ws, g, &x.data, &w.data, opt(bias), &mut y.data);
        Ok(())
    }
    fn conv_transpose2d_bwd_input(&self, g: &ConvT2dGeom, dy: &CpuBuf, w: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        const OP: &str = "conv_transpose2d_bwd_input";
        g.validate(OP)?;
        check_len(OP, "dy", g.output().numel(), dy.data.len())?;
        check_len(OP, "w", g.weight_len(), w.data.len())?;
        check_len(OP, "dx", g.input().numel(), dx.data.len())?;
        conv::conv_transpose2d_bwd_input(&self.ws, g, &dy.data, &w.data, &mut dx.data);
        Ok(())
    }
    fn conv_transpose2d_bwd_weight(
        &self,
        g: &ConvT2dGeom,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        const OP: &str = "conv_transpose2d_bwd_weight";
        g.validate(OP)?;
        check_len(OP, "x", g.input().numel(), x.data.len())?;
        check_len(OP, "dy", g.output().numel(), dy.data.len())?;
        check_len(OP, "dw", g.weight_len(), dw.data.len())?;
        check_opt(OP, "db", g.c_out, db.as_deref())?;
        conv::conv_transpose2d_bwd_weight(&self.ws, g, &x.data, &dy.data, &mut dw.data, opt_mut(db));
        Ok(())
    }

    fn batch_norm_infer(
        &self,
        s: &Nchw,
        x: &CpuBuf,
        gamma: &CpuBuf,
        beta: &CpuBuf,
        mean: &CpuBuf,
        var: &CpuBuf,
        eps: f32,
        act: Act,
        y: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "batch_norm_infer";
        check_act(OP, act)?;
        check_len(OP, "x", s.numel(), x.data.len())?;
        for (arg, b) in [("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)] {
            check_len(OP, arg, s.c, b.data.len())?;
        }
        check_len(OP, "y", s.numel(), y.data.len())?;
        ops::batch_norm_infer(
            s,
            &x.data,
            &gamma.data,
            &beta.data,
            &mean.data,
            &var.data,
            eps,
            act,
            &mut y.data,
        );
        Ok(())
    }
    fn batch_norm_infer_bwd(
        &self,
        s: &Nchw,
        x: &CpuBuf,
        dy: &CpuBuf,
        gamma: &CpuBuf,
        mean: &CpuBuf,
        var: &CpuBuf,
        eps: f32,
        dx: &mut CpuBuf,
        dgamma: Option<&mut CpuBuf>,
        dbeta: Option<&mut CpuBuf>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_infer_bwd";
        check_len(OP, "x", s.numel(), x.data.len())?;
        check_len(OP, "dy", s.numel(), dy.data.len())?;
        for (arg, b) in [("gamma", gamma), ("mean", mean), ("var", var)] {
            check_len(OP, arg, s.c, b.data.len())?;
        }
        check_len(OP, "dx", s.numel(), dx.data.len())?;
        check_opt(OP, "dgamma", s.c, dgamma.as_deref())?;
        check_opt(OP, "dbeta", s.c, dbeta.as_deref())?;
        ops::batch_norm_infer_bwd(
            s,
            &x.data,
            &dy.data,
            &gamma.data,
            &mean.data,
            &var.data,
            eps,
            &mut dx.data,
            opt_mut(dgamma),
            opt_mut(dbeta),
        );
        Ok(())
    }
    fn batch_norm_train(
        &self,
        s: &Nchw,
        x: &CpuBuf,
        gamma: &CpuBuf,
        beta: &CpuBuf,
        running_mean: &mut CpuBuf,
        running_var: &mut CpuBuf,
        momentum: f32,
        eps: f32,
        act: Act,
        y: &mut CpuBuf,
        save_mean: &mut CpuBuf,
        save_invstd: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train";
        check_act(OP, act)?;
        check_len(OP, "x", s.numel(), x.data.len())?;
        check_batch_stats(OP, s)?;
        for (arg, b) in [("gamma", gamma), ("beta", beta)] {
            check_len(OP, arg, s.c, b.data.len())?;
        }
        for (arg, b) in [
            ("running_mean", &*running_mean),
            ("running_var", &*running_var),
            ("save_mean", &*save_mean),
            ("save_invstd", &*save_invstd),
        ] {
            check_len(OP, arg, s.c, b.data.len())?;
        }
        check_len(OP, "y", s.numel(), y.data.len())?;
        ops::batch_norm_train(
            s,
            &x.data,
            &gamma.data,
            &beta.data,
            &mut running_mean.data,
            &mut running_var.data,
            momentum,
            eps,
            act,
            &mut y.data,
            &mut save_mean.data,
            &mut save_invstd.data,
        );
        Ok(())
    }
    fn batch_norm_train_bwd(
        &self,
        s: &Nchw,
        x: &CpuBuf,
        dy: &CpuBuf,
        gamma: &CpuBuf,
        save_mean: &CpuBuf,
        save_invstd: &CpuBuf,
        dx: &mut CpuBuf,
        dgamma: &mut CpuBuf,
        dbeta: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train_bwd";
        check_len(OP, "x", s.numel(), x.data.len())?;
        check_len(OP, "dy", s.numel(), dy.data.len())?;
        for (arg, b) in [("gamma", gamma), ("save_mean", save_mean), ("save_invstd", save_invstd)] {
            check_len(OP, arg, s.c, b.data.len())?;
        }
        check_len(OP, "dx", s.numel(), dx.data.len())?;
        check_len(OP, "dgamma", s.c, dgamma.data.len())?;
        check_len(OP, "dbeta", s.c, dbeta.data.len())?;
        ops::batch_norm_train_bwd(
            s,
            &x.data,
            &dy.data,
            &gamma.data,
            &save_mean.data,
            &save_invstd.data,
            &mut dx.data,
            &mut dgamma.data,
            &mut dbeta.data,
        );
        Ok(())
    }

    fn activation(&self, act: Act, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        check_act("activation", act)?;
        check_len("activation", "y", x.data.len(), y.data.len())?;
        ops::activation(act, &x.data, &mut y.data);
        Ok(())
    }
    fn activation_bwd(&self, act: Act, y: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        check_act("activation_bwd", act)?;
        check_len("activation_bwd", "dy", y.data.len(), dy.data.len())?;
        check_len("activation_bwd", "dx", y.data.len(), dx.data.len())?;
        ops::activation_bwd(act, &y.data, &dy.data, &mut dx.data);
        Ok(())
    }
    fn add(&self, a: &CpuBuf, b: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        check_len("add", "b", a.data.len(), b.data.len())?;
        check_len("add", "y", a.data.len(), y.data.len())?;
        ops::add(&a.data, &b.data, &mut y.data);
        Ok(())
    }
    fn add_assign(&self, y: &mut CpuBuf, x: &CpuBuf) -> Result<()> {
        check_len("add_assign", "x", y.data.len(), x.data.len())?;
        ops::axpy(1.0, &x.data, &mut y.data);
        Ok(())
    }

    fn max_pool2d(&self, g: &Pool2dGeom, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        const OP: &str = "max_pool2d";
        g.validate(OP)?;
        check_len(OP, "x", g.input.numel(), x.data.len())?;
        check_len(OP, "y", g.output().numel(), y.data.len())?;
        ops::max_pool2d(g, &x.data, &mut y.data);
        Ok(())
    }
    fn max_pool2d_bwd(&self, g: &Pool2dGeom, x: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        const OP: &str = "max_pool2d_bwd";
        g.validate(OP)?;
        check_len(OP, "x", g.input.numel(), x.data.len())?;
        check_len(OP, "dy", g.output().numel(), dy.data.len())?;
        check_len(OP, "dx", g.input.numel(), dx.data.len())?;
        ops::max_pool2d_bwd(g, &x.data, &dy.data, &mut dx.data);
        Ok(())
    }
    fn global_avg_pool(&self, s: &Nchw, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        check_len("global_avg_pool", "x", s.numel(), x.data.len())?;
        check_len("global_avg_pool", "y", s.n * s.c, y.data.len())?;
        ops::global_avg_pool(s, &x.data, &mut y.data);
        Ok(())
    }
    fn global_avg_pool_bwd(&self, s: &Nchw, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        check_len("global_avg_pool_bwd", "dy", s.n * s.c, dy.data.len())?;
        check_len("global_avg_pool_bwd", "dx", s.numel(), dx.data.len())?;
        ops::global_avg_pool_bwd(s, &dy.data, &mut dx.data);
        Ok(())
    }
    fn upsample_nearest2x(&self, s: &Nchw, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        check_len("upsample_nearest2x", "x", s.numel(), x.data.len())?;
        check_len("upsample_nearest2x", "y", 4 * s.numel(), y.data.len())?;
        ops::upsample_nearest2x(s, &x.data, &mut y.data);
        Ok(())
    }
    fn upsample_nearest2x_bwd(&self, s: &Nchw, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        check_len("upsample_nearest2x_bwd", "dy", 4 * s.numel(), dy.data.len())?;
        check_len("upsample_nearest2x_bwd", "dx", s.numel(), dx.data.len())?;
        ops::upsample_nearest2x_bwd(s, &dy.data, &mut dx.data);
        Ok(())
    }
    fn shortcut_pad(&self, s: &Nchw, subsample: bool, pad: usize, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        let out = s.shortcut_pad(subsample, pad);
        check_len("shortcut_pad", "x", s.numel(), x.data.len())?;
        check_len("shortcut_pad", "y", out.numel(), y.data.len())?;
        ops::shortcut_pad(s, subsample, pad, &x.data, &mut y.data);
        Ok(())
    }
    fn shortcut_pad_bwd(&self, s: &Nchw, subsample: bool, pad: usize, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        let out = s.shortcut_pad(subsample, pad);
        check_len("shortcut_pad_bwd", "dy", out.numel(), dy.data.len())?;
        check_len("shortcut_pad_bwd", "dx", s.numel(), dx.data.len())?;
        ops::shortcut_pad_bwd(s, subsample, pad, &dy.data, &mut dx.data);
        Ok(())
    }

    fn linear(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        y: &mut CpuBuf,
    ) -> Result<()> {
        check_len("linear", "x", n * k, x.data.len())?;
        check_len("linear", "w", m * k, w.data.len())?;
        check_opt("linear", "bias", m, bias)?;
        check_len("linear", "y", n * m, y.data.len())?;
        conv::linear(n, k, m, &x.data, &w.data, opt(bias), &mut y.data);
        Ok(())
    }
    fn linear_bwd_input(&self, n: usize, k: usize, m: usize, dy: &CpuBuf, w: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        check_len("linear_bwd_input", "dy", n * m, dy.data.len())?;
        check_len("linear_bwd_input", "w", m * k, w.data.len())?;
        check_len("linear_bwd_input", "dx", n * k, dx.data.len())?;
        conv::linear_bwd_input(n, k, m, &dy.data, &w.data, &mut dx.data);
        Ok(())
    }
    fn linear_bwd_weight(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        check_len("linear_bwd_weight", "x", n * k, x.data.len())?;
        check_len("linear_bwd_weight", "dy", n * m, dy.data.len())?;
        check_len("linear_bwd_weight", "dw", m * k, dw.data.len())?;
        check_opt("linear_bwd_weight", "db", m, db.as_deref())?;
        conv::linear_bwd_weight(n, k, m, &x.data, &dy.data, &mut dw.data, opt_mut(db));
        Ok(())
    }
    fn softmax_cross_entropy(
        &self,
        n: usize,
        c: usize,
        logits: &CpuBuf,
        targets: &[usize],
        probs: &mut CpuBuf,
        losses: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy";
        check_targets(OP, n, c, targets)?;
        check_len(OP, "logits", n * c, logits.data.len())?;
        check_len(OP, "probs", n * c, probs.data.len())?;
        check_len(OP, "losses", n, losses.data.len())?;
        ops::softmax_cross_entropy(n, c, &logits.data, targets, &mut probs.data, &mut losses.data);
        Ok(())
    }
    fn softmax_cross_entropy_bwd(
        &self,
        n: usize,
        c: usize,
        probs: &CpuBuf,
        targets: &[usize],
        scale: f32,
        dlogits: &mut CpuBuf,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy_bwd";
        check_targets(OP, n, c, targets)?;
        check_len(OP, "probs", n * c, probs.data.len())?;
        check_len(OP, "dlogits", n * c, dlogits.data.len())?;
        ops::softmax_cross_entropy_bwd(n, c, &probs.data, targets, scale, &mut dlogits.data);
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        check_len("axpy", "y", x.data.len(), y.data.len())?;
        ops::axpy(alpha, &x.data, &mut y.data);
        Ok(())
    }
    fn scale(&self, alpha: f32, x: &mut CpuBuf) -> Result<()> {
        ops::scale(alpha, &mut x.data);
        Ok(())
    }
    fn dot(&self, x: &CpuBuf, y: &CpuBuf) -> Result<f64> {
        check_len("dot", "y", x.data.len(), y.data.len())?;
        Ok(ops::dot(&x.data, &y.data))
    }
    fn norm(&self, x: &CpuBuf) -> Result<f64> {
        Ok(ops::dot(&x.data, &x.data).sqrt())
    }
    fn adam_step(
        &self,
        h: &AdamParams,
        param: &mut CpuBuf,
        grad: &CpuBuf,
        m: &mut CpuBuf,
        v: &mut CpuBuf,
    ) -> Result<()> {
        let len = param.data.len();
        check_len("adam_step", "grad", len, grad.data.len())?;
        check_len("adam_step", "m", len, m.data.len())?;
        check_len("adam_step", "v", len, v.data.len())?;
        if h.step == 0 {
            return Err(TensorError::Invalid {
                op: "adam_step",
                msg: "step counts from 1".into(),
            });
        }
        ops::adam_step(h, &mut param.data, &grad.data, &mut m.data, &mut v.data);
        Ok(())
    }
    fn sgd_step(&self, h: &SgdParams, param: &mut CpuBuf, grad: &CpuBuf, buf: &mut CpuBuf) -> Result<()> {
        let len = param.data.len();
        check_len("sgd_step", "grad", len, grad.data.len())?;
        check_len("sgd_step", "buf", len, buf.data.len())?;
        if h.step == 0 {
            return Err(TensorError::Invalid {
                op: "sgd_step",
                msg: "step counts from 1".into(),
            });
        }
        ops::sgd_step(h, &mut param.data, &grad.data, &mut buf.data);
        Ok(())
    }

    fn lerp_rows(&self, dim: usize, src: &CpuBuf, plan: &[Lerp], dst: &mut CpuBuf) -> Result<()> {
        neb::check_lerp_rows(dim, src.data.len(), plan, dst.data.len())?;
        neb::lerp_rows(dim, &src.data, plan, &mut dst.data);
        Ok(())
    }
    fn copy_rows(
        &self,
        dim: usize,
        src: &CpuBuf,
        src_row: usize,
        dst: &mut CpuBuf,
        dst_row: usize,
        rows: usize,
    ) -> Result<()> {
        neb::check_copy_rows(dim, src.data.len(), src_row, dst.data.len(), dst_row, rows)?;
        neb::copy_rows(dim, &src.data, src_row, &mut dst.data, dst_row, rows);
        Ok(())
    }
    fn row_distances(&self, dim: usize, rows: usize, x: &CpuBuf) -> Result<Vec<f64>> {
        neb::check_row_distances(dim, rows, x.data.len())?;
        Ok(neb::row_distances(dim, rows, &x.data))
    }
    fn neb_forces(
        &self,
        p: &NebForceParams,
        pivots: &CpuBuf,
        grads: &CpuBuf,
        energies: &[f64],
        forces: &mut CpuBuf,
    ) -> Result<Vec<f64>> {
        neb::check_neb_forces(p, pivots.data.len(), grads.data.len(), energies, forces.data.len())?;
        Ok(neb::neb_forces(
            p,
            &pivots.data,
            &grads.data,
            energies,
            &mut forces.data,
        ))
    }
}
