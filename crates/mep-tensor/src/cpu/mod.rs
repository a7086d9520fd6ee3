//! The CPU backend: the reference every other backend is checked against, and fast
//! enough to run the experiment on a laptop.
//!
//! Buffers come from a pool so that a forward pass reuses the memory of the previous
//! one instead of page-faulting fresh allocations; GEMMs go through the `gemm` crate
//! (AVX-512 where the CPU has it, with the same bits as AVX2: see `gemm::gemm_fixed_order`) and
//! everything else is parallel over rayon.
//!
//! TF32 and bf16 ([`crate::precision`]) run on the same f32 kernels: the backend rounds copies
//! of the two GEMM operands of each convolution and linear layer, runs the f32 op on them,
//! and (bf16) rounds what it wrote, the bias included: a fused residual and activation run
//! after that rounding, in f32, as the tensor-core kernels' epilogue does. The sums stay f32,
//! as on a tensor core; the bias gradient (a reduction) sees the unrounded values.

pub mod conv;
pub mod direct;
pub mod gemm;
pub mod linear;
pub mod neb;
pub mod ops;
pub mod reference;
pub(crate) mod sums;
pub mod winograd;

pub use direct::ConvPath;

use crate::backend::neb::{climbing_image, f64_to_words, redistribution_plan};
use crate::backend::{
    Act, AdamParams, BatchNorm, Checked, Conv, Elementwise, Lerp, Linear, Memory, Neb, NebForceParams, Optim, Reduce,
    SgdParams, Softmax,
};
use crate::error::Result;
use crate::precision::Precision;
use crate::shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
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
        let best = gemm::best_fit(&free, len, Vec::capacity);
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

/// The CPU backend. Cheap to clone: clones share the buffer pool, the GEMM workspace and
/// the precision ([`Memory::set_precision`] on one clone switches them all, as on one device).
///
/// ```
/// use mep_tensor::prelude::*;
/// use mep_tensor::CpuBackend;
/// let cpu = CpuBackend::new();
/// let a = cpu.upload(&[1.0, 2.0]).unwrap();
/// assert_eq!(cpu.dot(&a, &a).unwrap(), 5.0);
/// ```
#[derive(Clone, Default)]
pub struct CpuBackend {
    pool: Arc<Pool>,
    ws: Arc<gemm::Workspace>,
    conv_path: ConvPath,
    /// [`Precision::ALL`]'s index of the current precision (0, fp32, by default).
    precision: Arc<AtomicU8>,
}

/// Values per rayon task when rounding operands: rounding is a few instructions a value, so
/// only large buffers are worth splitting.
const ROUND_CHUNK: usize = 1 << 16;

/// `v` with every value rounded by `f`, in parallel over chunks (each value on its own, so
/// the split does not change the result).
fn round_in_place(v: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    v.par_chunks_mut(ROUND_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|x| *x = f(*x)));
}

impl CpuBackend {
    /// A CPU backend using rayon's global thread pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        Self::default()
    }

    /// This backend with its convolutions (forward, input and weight gradients) held to `path`, for
    /// tests and benchmarks of each path; [`ConvPath::Auto`] (the default) picks by shape.
    pub fn with_conv_path(mut self, path: ConvPath) -> Self {
        self.conv_path = path;
        self
    }

    /// The convolution path this backend was built with.
    pub fn conv_path(&self) -> ConvPath {
        self.conv_path
    }

    fn wrap(&self, data: Vec<f32>) -> CpuBuf {
        CpuBuf {
            data,
            pool: self.pool.clone(),
        }
    }

    /// The precision as a value (the atomic holds its index in [`Precision::ALL`]).
    fn current_precision(&self) -> Precision {
        Precision::ALL[usize::from(self.precision.load(Ordering::Relaxed))]
    }

    /// A pooled copy of `src` rounded as GEMM operands of precision `p` are.
    fn rounded(&self, p: Precision, src: &[f32]) -> CpuBuf {
        let mut v = self.pool.take(src.len());
        v.copy_from_slice(src);
        round_in_place(&mut v, |x| p.round_operand(x));
        self.wrap(v)
    }

    /// Runs `op` on the operands `(a, b)` of one GEMM family op: in fp32 on them as they are
    /// (the existing path, bit for bit); otherwise on rounded copies, rounding the result
    /// `out` afterwards when `p` stores results rounded (bf16).
    fn gemm_op(&self, a: &[f32], b: &[f32], out: &mut [f32], op: impl FnOnce(&[f32], &[f32], &mut [f32])) {
        let p = self.current_precision();
        if p == Precision::Fp32 {
            return op(a, b, out);
        }
        let (ar, br) = (self.rounded(p, a), self.rounded(p, b));
        op(&ar.data, &br.data, out);
        if p == Precision::Bf16 {
            round_in_place(out, |x| p.round_result(x));
        }
    }
}

fn opt(b: Option<&CpuBuf>) -> Option<&[f32]> {
    b.map(|b| b.as_slice())
}

fn opt_mut(b: Option<&mut CpuBuf>) -> Option<&mut [f32]> {
    b.map(|b| b.as_mut_slice())
}

// The family traits have checked every argument before a `run_*` method is called.

impl Memory for CpuBackend {
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
    fn fill(&self, buf: &mut CpuBuf, value: f32) -> Result<()> {
        buf.data.fill(value);
        Ok(())
    }
    fn run_copy(&self, _: Checked, src: &CpuBuf, dst: &mut CpuBuf) -> Result<()> {
        dst.data.copy_from_slice(&src.data);
        Ok(())
    }
    fn precision(&self) -> Precision {
        self.current_precision()
    }
    /// Every precision runs here (on rounded operands; see the module docs).
    fn set_precision(&self, p: Precision) -> Result<()> {
        self.precision.store(p.index() as u8, Ordering::Relaxed);
        Ok(())
    }
}

impl Elementwise for CpuBackend {
    fn run_activation(&self, _: Checked, act: Act, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::activation(act, &x.data, &mut y.data);
        Ok(())
    }
    fn run_activation_bwd(&self, _: Checked, act: Act, y: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        ops::activation_bwd(act, &y.data, &dy.data, &mut dx.data);
        Ok(())
    }
    fn run_add(&self, _: Checked, a: &CpuBuf, b: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::add(&a.data, &b.data, &mut y.data);
        Ok(())
    }
    fn run_add_assign(&self, _: Checked, y: &mut CpuBuf, x: &CpuBuf) -> Result<()> {
        ops::axpy(1.0, &x.data, &mut y.data);
        Ok(())
    }
    fn run_axpy(&self, _: Checked, alpha: f32, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::axpy(alpha, &x.data, &mut y.data);
        Ok(())
    }
    fn run_scale(&self, _: Checked, alpha: f32, x: &mut CpuBuf) -> Result<()> {
        ops::scale(alpha, &mut x.data);
        Ok(())
    }
}

impl Reduce for CpuBackend {
    fn run_dot(&self, _: Checked, x: &CpuBuf, y: &CpuBuf) -> Result<f64> {
        Ok(ops::dot(&x.data, &y.data))
    }
    fn run_norm(&self, _: Checked, x: &CpuBuf) -> Result<f64> {
        Ok(ops::dot(&x.data, &x.data).sqrt())
    }
}

impl Conv for CpuBackend {
    fn run_conv2d(
        &self,
        _: Checked,
        g: &Conv2dGeom,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        residual: Option<&CpuBuf>,
        act: Act,
        y: &mut CpuBuf,
    ) -> Result<()> {
        let split = self.current_precision() == Precision::Bf16 && (residual.is_some() || act != Act::Identity);
        if !split {
            self.gemm_op(&x.data, &w.data, &mut y.data, |x, w, y| {
                conv::conv2d_on(self.conv_path, &self.ws, g, x, w, opt(bias), opt(residual), act, y)
            });
            return Ok(());
        }
        // bf16 rounds the convolution's output with its bias, as the tensor-core kernels
        // store it; the residual and the activation then run in f32.
        self.gemm_op(&x.data, &w.data, &mut y.data, |x, w, y| {
            conv::conv2d_on(self.conv_path, &self.ws, g, x, w, opt(bias), None, Act::Identity, y)
        });
        let plane = g.out_h() * g.out_w();
        let res = opt(residual);
        y.data
            .par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, row)| conv::epilogue(row, None, res.map(|r| &r[i * plane..(i + 1) * plane]), act));
        Ok(())
    }
    fn run_conv2d_bwd_input(&self, _: Checked, g: &Conv2dGeom, dy: &CpuBuf, w: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        self.gemm_op(&dy.data, &w.data, &mut dx.data, |dy, w, dx| {
            conv::conv2d_bwd_input_on(self.conv_path, &self.ws, g, dy, w, dx)
        });
        Ok(())
    }
    fn run_conv2d_bwd_weight(
        &self,
        _: Checked,
        g: &Conv2dGeom,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        if self.current_precision() == Precision::Fp32 {
            conv::conv2d_bwd_weight_on(
                self.conv_path,
                &self.ws,
                g,
                &x.data,
                &dy.data,
                &mut dw.data,
                opt_mut(db),
            );
            return Ok(());
        }
        self.gemm_op(&x.data, &dy.data, &mut dw.data, |x, dy, dw| {
            conv::conv2d_bwd_weight_on(self.conv_path, &self.ws, g, x, dy, dw, None)
        });
        if let Some(db) = db {
            conv::channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), &dy.data, &mut db.data);
        }
        Ok(())
    }
    fn run_conv_transpose2d(
        &self,
        _: Checked,
        g: &ConvT2dGeom,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        y: &mut CpuBuf,
    ) -> Result<()> {
        self.gemm_op(&x.data, &w.data, &mut y.data, |x, w, y| {
            conv::conv_transpose2d(&self.ws, g, x, w, opt(bias), y)
        });
        Ok(())
    }
    fn run_conv_transpose2d_bwd_input(
        &self,
        _: Checked,
        g: &ConvT2dGeom,
        dy: &CpuBuf,
        w: &CpuBuf,
        dx: &mut CpuBuf,
    ) -> Result<()> {
        self.gemm_op(&dy.data, &w.data, &mut dx.data, |dy, w, dx| {
            conv::conv_transpose2d_bwd_input(&self.ws, g, dy, w, dx)
        });
        Ok(())
    }
    fn run_conv_transpose2d_bwd_weight(
        &self,
        _: Checked,
        g: &ConvT2dGeom,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        if self.current_precision() == Precision::Fp32 {
            conv::conv_transpose2d_bwd_weight(&self.ws, g, &x.data, &dy.data, &mut dw.data, opt_mut(db));
            return Ok(());
        }
        self.gemm_op(&x.data, &dy.data, &mut dw.data, |x, dy, dw| {
            conv::conv_transpose2d_bwd_weight(&self.ws, g, x, dy, dw, None)
        });
        if let Some(db) = db {
            conv::channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), &dy.data, &mut db.data);
        }
        Ok(())
    }
}

impl BatchNorm for CpuBackend {
    fn run_batch_norm_infer(
        &self,
        _: Checked,
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
    fn run_batch_norm_infer_bwd(
        &self,
        _: Checked,
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
    fn run_batch_norm_train(
        &self,
        _: Checked,
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
    fn run_batch_norm_train_bwd(
        &self,
        _: Checked,
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
}

impl crate::backend::Pool for CpuBackend {
    fn run_max_pool2d(&self, _: Checked, g: &Pool2dGeom, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::max_pool2d(g, &x.data, &mut y.data);
        Ok(())
    }
    fn run_max_pool2d_bwd(&self, _: Checked, g: &Pool2dGeom, x: &CpuBuf, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        ops::max_pool2d_bwd(g, &x.data, &dy.data, &mut dx.data);
        Ok(())
    }
    fn run_global_avg_pool(&self, _: Checked, s: &Nchw, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::global_avg_pool(s, &x.data, &mut y.data);
        Ok(())
    }
    fn run_global_avg_pool_bwd(&self, _: Checked, s: &Nchw, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        ops::global_avg_pool_bwd(s, &dy.data, &mut dx.data);
        Ok(())
    }
    fn run_upsample_nearest2x(&self, _: Checked, s: &Nchw, x: &CpuBuf, y: &mut CpuBuf) -> Result<()> {
        ops::upsample_nearest2x(s, &x.data, &mut y.data);
        Ok(())
    }
    fn run_upsample_nearest2x_bwd(&self, _: Checked, s: &Nchw, dy: &CpuBuf, dx: &mut CpuBuf) -> Result<()> {
        ops::upsample_nearest2x_bwd(s, &dy.data, &mut dx.data);
        Ok(())
    }
    fn run_shortcut_pad(
        &self,
        _: Checked,
        s: &Nchw,
        subsample: bool,
        pad: usize,
        x: &CpuBuf,
        y: &mut CpuBuf,
    ) -> Result<()> {
        ops::shortcut_pad(s, subsample, pad, &x.data, &mut y.data);
        Ok(())
    }
    fn run_shortcut_pad_bwd(
        &self,
        _: Checked,
        s: &Nchw,
        subsample: bool,
        pad: usize,
        dy: &CpuBuf,
        dx: &mut CpuBuf,
    ) -> Result<()> {
        ops::shortcut_pad_bwd(s, subsample, pad, &dy.data, &mut dx.data);
        Ok(())
    }
}

impl Linear for CpuBackend {
    fn run_linear(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        x: &CpuBuf,
        w: &CpuBuf,
        bias: Option<&CpuBuf>,
        y: &mut CpuBuf,
    ) -> Result<()> {
        self.gemm_op(&x.data, &w.data, &mut y.data, |x, w, y| {
            linear::linear(n, k, m, x, w, opt(bias), y)
        });
        Ok(())
    }
    fn run_linear_bwd_input(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        dy: &CpuBuf,
        w: &CpuBuf,
        dx: &mut CpuBuf,
    ) -> Result<()> {
        self.gemm_op(&dy.data, &w.data, &mut dx.data, |dy, w, dx| {
            linear::linear_bwd_input(n, k, m, dy, w, dx)
        });
        Ok(())
    }
    fn run_linear_bwd_weight(
        &self,
        _: Checked,
        n: usize,
        k: usize,
        m: usize,
        x: &CpuBuf,
        dy: &CpuBuf,
        dw: &mut CpuBuf,
        db: Option<&mut CpuBuf>,
    ) -> Result<()> {
        if self.current_precision() == Precision::Fp32 {
            linear::linear_bwd_weight(n, k, m, &x.data, &dy.data, &mut dw.data, opt_mut(db));
            return Ok(());
        }
        self.gemm_op(&x.data, &dy.data, &mut dw.data, |x, dy, dw| {
            linear::linear_bwd_weight(n, k, m, x, dy, dw, None)
        });
        if let Some(db) = db {
            conv::channel_sums(n, m, 1, &dy.data, &mut db.data);
        }
        Ok(())
    }
}

impl Softmax for CpuBackend {
    fn run_softmax_cross_entropy(
        &self,
        _: Checked,
        n: usize,
        c: usize,
        logits: &CpuBuf,
        targets: &[usize],
        probs: &mut CpuBuf,
        losses: &mut CpuBuf,
    ) -> Result<()> {
        ops::softmax_cross_entropy(n, c, &logits.data, targets, &mut probs.data, &mut losses.data);
        Ok(())
    }
    fn run_softmax_cross_entropy_bwd(
        &self,
        _: Checked,
        n: usize,
        c: usize,
        probs: &CpuBuf,
        targets: &[usize],
        scale: f32,
        dlogits: &mut CpuBuf,
    ) -> Result<()> {
        ops::softmax_cross_entropy_bwd(n, c, &probs.data, targets, scale, &mut dlogits.data);
        Ok(())
    }
}

impl Optim for CpuBackend {
    fn run_adam_step(
        &self,
        _: Checked,
        h: &AdamParams,
        param: &mut CpuBuf,
        grad: &CpuBuf,
        m: &mut CpuBuf,
        v: &mut CpuBuf,
    ) -> Result<()> {
        ops::adam_step(h, &mut param.data, &grad.data, &mut m.data, &mut v.data);
        Ok(())
    }
    fn run_adam_step_indirect(
        &self,
        _: Checked,
        h: &AdamParams,
        bias: &CpuBuf,
        param: &mut CpuBuf,
        grad: &CpuBuf,
        m: &mut CpuBuf,
        v: &mut CpuBuf,
    ) -> Result<()> {
        let bias = [bias.data[0], bias.data[1]];
        ops::adam_step_with(h, bias, &mut param.data, &grad.data, &mut m.data, &mut v.data);
        Ok(())
    }
    fn run_sgd_step(
        &self,
        _: Checked,
        h: &SgdParams,
        param: &mut CpuBuf,
        grad: &CpuBuf,
        buf: &mut CpuBuf,
    ) -> Result<()> {
        ops::sgd_step(h, &mut param.data, &grad.data, &mut buf.data);
        Ok(())
    }
}

/// `values` into `words` as [`f64_to_words`] stores them.
fn write_words(values: &[f64], words: &mut [f32]) {
    for (w, &v) in words.chunks_exact_mut(2).zip(values) {
        w.copy_from_slice(&f64_to_words(v));
    }
}

impl Neb for CpuBackend {
    fn run_lerp_rows(&self, _: Checked, dim: usize, src: &CpuBuf, plan: &[Lerp], dst: &mut CpuBuf) -> Result<()> {
        neb::lerp_rows(dim, &src.data, plan, &mut dst.data);
        Ok(())
    }
    fn run_copy_rows(
        &self,
        _: Checked,
        dim: usize,
        src: &CpuBuf,
        src_row: usize,
        dst: &mut CpuBuf,
        dst_row: usize,
        rows: usize,
    ) -> Result<()> {
        neb::copy_rows(dim, &src.data, src_row, &mut dst.data, dst_row, rows);
        Ok(())
    }
    fn run_row_distances(&self, _: Checked, dim: usize, rows: usize, x: &CpuBuf) -> Result<Vec<f64>> {
        Ok(neb::row_distances(dim, rows, &x.data))
    }
    fn run_neb_forces_on_device(
        &self,
        _: Checked,
        p: &NebForceParams,
        climb: bool,
        pivots: &CpuBuf,
        grads: &CpuBuf,
        energies: &CpuBuf,
        forces: &mut CpuBuf,
        norms: &mut CpuBuf,
    ) -> Result<()> {
        let e: Vec<f64> = energies.data.iter().map(|&v| v as f64).collect();
        let p = NebForceParams {
            climbing: if climb { climbing_image(&e) } else { None },
            ..*p
        };
        let n = neb::neb_forces(&p, &pivots.data, &grads.data, &e, &mut forces.data);
        write_words(&n, &mut norms.data);
        Ok(())
    }
    fn run_redistribute_rows(
        &self,
        _: Checked,
        dim: usize,
        rows: usize,
        src: &CpuBuf,
        energies: Option<&CpuBuf>,
        dst: &mut CpuBuf,
        lengths: &mut CpuBuf,
    ) -> Result<()> {
        let dist = neb::row_distances(dim, rows, &src.data);
        let climbing = energies.and_then(|e| climbing_image(&e.data.iter().map(|&v| v as f64).collect::<Vec<_>>()));
        neb::lerp_rows(dim, &src.data, &redistribution_plan(&dist, climbing), &mut dst.data);
        write_words(&dist, &mut lengths.data);
        Ok(())
    }
    fn run_neb_forces(
        &self,
        _: Checked,
        p: &NebForceParams,
        pivots: &CpuBuf,
        grads: &CpuBuf,
        energies: &[f64],
        forces: &mut CpuBuf,
    ) -> Result<Vec<f64>> {
        Ok(neb::neb_forces(
            p,
            &pivots.data,
            &grads.data,
            energies,
            &mut forces.data,
        ))
    }
}
