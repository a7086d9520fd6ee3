//! [`KernelBackend`]: the Backend trait on any [`Launcher`], one kernel launch (or a few) per
//! operation. The per-family host code lives in `ops/`.

use crate::error::KernelError;
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops;
use mep_tensor::{
    check_len, Act, AdamParams, Backend, Conv2dGeom, ConvT2dGeom, Lerp, Nchw, NebForceParams, Pool2dGeom, Result,
    SgdParams, TensorError,
};

/// Which version of each kernel runs (see the header comment of each kernels/*.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fast versions (tiled, grid-stride, vectorised); the default.
    #[default]
    Fast,
    /// The simple v1 versions, the readable specification; tests run both.
    Simple,
}

/// A buffer of f32 in a launcher's memory.
pub struct DevBuf<M> {
    pub(crate) mem: M,
    pub(crate) len: usize,
}

impl<M> DevBuf<M> {
    /// The launcher's allocation (e.g. to hand its address to a kernel of your own).
    pub fn mem(&self) -> &M {
        &self.mem
    }
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The Backend of the hand-written kernels, on the device behind `L`.
///
/// ```
/// # fn demo<L: mep_kernels::Launcher>(launcher: L) -> mep_tensor::Result<()> {
/// use mep_kernels::KernelBackend;
/// use mep_tensor::Backend;
/// let b = KernelBackend::new(launcher);
/// let x = b.upload(&[1.0, 2.0])?;
/// let mut y = b.upload(&[10.0, 20.0])?;
/// b.axpy(2.0, &x, &mut y)?;
/// assert_eq!(b.download(&y)?, vec![12.0, 24.0]);
/// # Ok(()) }
/// ```
pub struct KernelBackend<L: Launcher> {
    launcher: L,
    kernels: Kernels,
}

impl<L: Launcher> KernelBackend<L> {
    /// The fast kernels on `launcher`.
    pub fn new(launcher: L) -> Self {
        KernelBackend {
            launcher,
            kernels: Kernels::Fast,
        }
    }
    /// The given kernel versions on `launcher`.
    pub fn with_kernels(launcher: L, kernels: Kernels) -> Self {
        KernelBackend { launcher, kernels }
    }
    /// The launcher.
    pub fn launcher(&self) -> &L {
        &self.launcher
    }
    /// Which kernel versions run.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }
    /// Whether the fast versions run.
    pub(crate) fn fast(&self) -> bool {
        self.kernels == Kernels::Fast
    }

    /// A launcher error as the Backend's error.
    pub(crate) fn err(&self, e: KernelError) -> TensorError {
        TensorError::Backend {
            backend: self.launcher.name(),
            msg: e.to_string(),
        }
    }
    /// Launches `kernel` (full name, e.g. `axpy_f32_v2`).
    pub(crate) fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> Result<()> {
        self.launcher.launch(kernel, grid, block, args).map_err(|e| self.err(e))
    }
    /// The device address of `b`'s first element.
    pub(crate) fn ptr(&self, b: &DevBuf<L::Mem>) -> Arg {
        Arg::Ptr(self.launcher.ptr(&b.mem))
    }
    /// The device address of element `offset` of `b` (f32 elements).
    pub(crate) fn ptr_at(&self, b: &DevBuf<L::Mem>, offset: usize) -> Arg {
        Arg::Ptr(self.launcher.ptr(&b.mem) + 4 * offset as u64)
    }
    /// A device copy of `bytes` (small host arguments: targets, plans), freed when dropped.
    pub(crate) fn temp_bytes(&self, bytes: &[u8]) -> Result<L::Mem> {
        let mut m = self.launcher.alloc(bytes.len()).map_err(|e| self.err(e))?;
        self.launcher.write(&mut m, 0, bytes).map_err(|e| self.err(e))?;
        Ok(m)
    }
    /// A device array of `n` f64 zeros (accumulators the kernels add into).
    pub(crate) fn temp_f64_zeros(&self, n: usize) -> Result<L::Mem> {
        self.temp_bytes(&vec![0u8; 8 * n])
    }
    /// A device array of `n` f64 of unspecified contents (for kernels that write every one):
    /// no host copy, which on a GPU would also wait for the stream.
    pub(crate) fn temp_f64(&self, n: usize) -> Result<L::Mem> {
        self.launcher.alloc(8 * n).map_err(|e| self.err(e))
    }
    /// Reads `n` f64 from `mem`.
    pub(crate) fn read_f64(&self, mem: &L::Mem, n: usize) -> Result<Vec<f64>> {
        let mut bytes = vec![0u8; 8 * n];
        self.launcher.read(mem, 0, &mut bytes).map_err(|e| self.err(e))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().expect("8-byte chunks")))
            .collect())
    }
    /// The device address of a launcher allocation.
    pub(crate) fn mem_ptr(&self, m: &L::Mem) -> Arg {
        Arg::Ptr(self.launcher.ptr(m))
    }
}

/// Blocks for one thread per element of `n` (at least one; capped at 2^31 − 1).
pub(crate) fn blocks_for(n: usize, block: u32) -> u32 {
    n.div_ceil(block as usize).clamp(1, i32::MAX as usize) as u32
}

/// `n` as a kernel's `long long`.
pub(crate) fn i64_of(n: usize) -> Arg {
    Arg::I64(n as i64)
}

/// `n` as a kernel's `int`; an error naming `what` when it does not fit.
pub(crate) fn i32_of(op: &'static str, what: &str, n: usize) -> Result<Arg> {
    i32::try_from(n).map(Arg::I32).map_err(|_| TensorError::Invalid {
        op,
        msg: format!("{what} = {n} does not fit the kernel's int"),
    })
}

fn f32_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

impl<L: Launcher> Backend for KernelBackend<L> {
    type Buf = DevBuf<L::Mem>;

    fn name(&self) -> &'static str {
        self.launcher.name()
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        let mem = self.launcher.alloc(4 * len).map_err(|e| self.err(e))?;
        Ok(DevBuf { mem, len })
    }
    fn zeros(&self, len: usize) -> Result<Self::Buf> {
        let mut b = self.alloc(len)?;
        self.fill(&mut b, 0.0)?;
        Ok(b)
    }
    fn upload(&self, data: &[f32]) -> Result<Self::Buf> {
        let mut b = self.alloc(data.len())?;
        self.launcher
            .write(&mut b.mem, 0, &f32_bytes(data))
            .map_err(|e| self.err(e))?;
        Ok(b)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; 4 * buf.len];
        self.launcher.read(&buf.mem, 0, &mut bytes).map_err(|e| self.err(e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().expect("4-byte chunks")))
            .collect())
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        buf.len
    }
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()> {
        check_len("copy", "dst", src.len, dst.len)?;
        self.launcher
            .copy(&src.mem, 0, &mut dst.mem, 0, 4 * src.len)
            .map_err(|e| self.err(e))
    }
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()> {
        ops::pointwise::fill(self, buf, value)
    }

    fn conv2d(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        residual: Option<&Self::Buf>,
        act: Act,
        y: &mut Self::Buf,
    ) -> Result<()> {
        ops::conv::conv2d(self, g, x, w, bias, residual, act, y)
    }
    fn conv2d_bwd_input(&self, g: &Conv2dGeom, dy: &Self::Buf, w: &Self::Buf, dx: &mut Self::Buf) -> Result<()> {
        ops::conv::conv2d_bwd_input(self, g, dy, w, dx)
    }
    fn conv2d_bwd_weight(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()> {
        ops::conv::conv2d_bwd_weight(self, g, x, dy, dw, db)
    }
    fn conv_transpose2d(
        &self,
        g: &ConvT2dGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        y: &mut Self::Buf,
    ) -> Result<()> {
        ops::conv::conv_transpose2d(self, g, x, w, bias, y)
    }
    fn conv_transpose2d_bwd_input(
        &self,
        g: &ConvT2dGeom,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        ops::conv::conv_transpose2d_bwd_input(self, g, dy, w, dx)
    }
    fn conv_transpose2d_bwd_weight(
        &self,
        g: &ConvT2dGeom,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()> {
        ops::conv::conv_transpose2d_bwd_weight(self, g, x, dy, dw, db)
    }

    fn batch_norm_infer(
        &self,
        s: &Nchw,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        mean: &Self::Buf,
        var: &Self::Buf,
        eps: f32,
        act: Act,
        y: &mut Self::Buf,
    ) -> Result<()> {
        ops::bn::batch_norm_infer(self, s, x, gamma, beta, mean, var, eps, act, y)
    }
    fn batch_norm_infer_bwd(
        &self,
        s: &Nchw,
        x: &Self::Buf,
        dy: &Self::Buf,
        gamma: &Self::Buf,
        mean: &Self::Buf,
        var: &Self::Buf,
        eps: f32,
        dx: &mut Self::Buf,
        dgamma: Option<&mut Self::Buf>,
        dbeta: Option<&mut Self::Buf>,
    ) -> Result<()> {
        ops::bn::batch_norm_infer_bwd(self, s, x, dy, gamma, mean, var, eps, dx, dgamma, dbeta)
    }
    fn batch_norm_train(
        &self,
        s: &Nchw,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        momentum: f32,
        eps: f32,
        act: Act,
        y: &mut Self::Buf,
        save_mean: &mut Self::Buf,
        save_invstd: &mut Self::Buf,
    ) -> Result<()> {
        ops::bn::batch_norm_train(
            self,
            s,
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            momentum,
            eps,
            act,
            y,
            save_mean,
            save_invstd,
        )
    }
    fn batch_norm_train_bwd(
        &self,
        s: &Nchw,
        x: &Self::Buf,
        dy: &Self::Buf,
        gamma: &Self::Buf,
        save_mean: &Self::Buf,
        save_invstd: &Self::Buf,
        dx: &mut Self::Buf,
        dgamma: &mut Self::Buf,
        dbeta: &mut Self::Buf,
    ) -> Result<()> {
        ops::bn::batch_norm_train_bwd(self, s, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta)
    }

    fn activation(&self, act: Act, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pointwise::activation(self, act, x, y)
    }
    fn activation_bwd(&self, act: Act, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()> {
        ops::pointwise::activation_bwd(self, act, y, dy, dx)
    }
    fn add(&self, a: &Self::Buf, b: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pointwise::add(self, a, b, y)
    }
    fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf) -> Result<()> {
        ops::pointwise::add_assign(self, y, x)
    }

    fn max_pool2d(&self, g: &Pool2dGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pool::max_pool2d(self, g, x, y)
    }
    fn max_pool2d_bwd(&self, g: &Pool2dGeom, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()> {
        ops::pool::max_pool2d_bwd(self, g, x, dy, dx)
    }
    fn global_avg_pool(&self, s: &Nchw, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pool::global_avg_pool(self, s, x, y)
    }
    fn global_avg_pool_bwd(&self, s: &Nchw, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()> {
        ops::pool::global_avg_pool_bwd(self, s, dy, dx)
    }
    fn upsample_nearest2x(&self, s: &Nchw, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pool::upsample_nearest2x(self, s, x, y)
    }
    fn upsample_nearest2x_bwd(&self, s: &Nchw, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()> {
        ops::pool::upsample_nearest2x_bwd(self, s, dy, dx)
    }
    fn shortcut_pad(&self, s: &Nchw, subsample: bool, pad: usize, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pool::shortcut_pad(self, s, subsample, pad, x, y)
    }
    fn shortcut_pad_bwd(
        &self,
        s: &Nchw,
        subsample: bool,
        pad: usize,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        ops::pool::shortcut_pad_bwd(self, s, subsample, pad, dy, dx)
    }

    fn linear(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        y: &mut Self::Buf,
    ) -> Result<()> {
        ops::linear::linear(self, n, k, m, x, w, bias, y)
    }
    fn linear_bwd_input(
        &self,
        n: usize,
        k: usize,
        m: usize,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()> {
        ops::linear::linear_bwd_input(self, n, k, m, dy, w, dx)
    }
    fn linear_bwd_weight(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()> {
        ops::linear::linear_bwd_weight(self, n, k, m, x, dy, dw, db)
    }
    fn softmax_cross_entropy(
        &self,
        n: usize,
        c: usize,
        logits: &Self::Buf,
        targets: &[usize],
        probs: &mut Self::Buf,
        losses: &mut Self::Buf,
    ) -> Result<()> {
        ops::softmax::softmax_cross_entropy(self, n, c, logits, targets, probs, losses)
    }
    fn softmax_cross_entropy_bwd(
        &self,
        n: usize,
        c: usize,
        probs: &Self::Buf,
        targets: &[usize],
        scale: f32,
        dlogits: &mut Self::Buf,
    ) -> Result<()> {
        ops::softmax::softmax_cross_entropy_bwd(self, n, c, probs, targets, scale, dlogits)
    }

    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> {
        ops::pointwise::axpy(self, alpha, x, y)
    }
    fn scale(&self, alpha: f32, x: &mut Self::Buf) -> Result<()> {
        ops::pointwise::scale(self, alpha, x)
    }
    fn dot(&self, x: &Self::Buf, y: &Self::Buf) -> Result<f64> {
        ops::pointwise::dot(self, x, y)
    }
    fn norm(&self, x: &Self::Buf) -> Result<f64> {
        ops::pointwise::norm(self, x)
    }
    fn adam_step(
        &self,
        h: &AdamParams,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()> {
        ops::optim::adam_step(self, h, param, grad, m, v)
    }
    fn sgd_step(&self, h: &SgdParams, param: &mut Self::Buf, grad: &Self::Buf, buf: &mut Self::Buf) -> Result<()> {
        ops::optim::sgd_step(self, h, param, grad, buf)
    }

    fn lerp_rows(&self, dim: usize, src: &Self::Buf, plan: &[Lerp], dst: &mut Self::Buf) -> Result<()> {
        ops::neb::lerp_rows(self, dim, src, plan, dst)
    }
    fn copy_rows(
        &self,
        dim: usize,
        src: &Self::Buf,
        src_row: usize,
        dst: &mut Self::Buf,
        dst_row: usize,
        rows: usize,
    ) -> Result<()> {
        ops::neb::copy_rows(self, dim, src, src_row, dst, dst_row, rows)
    }
    fn row_distances(&self, dim: usize, rows: usize, x: &Self::Buf) -> Result<Vec<f64>> {
        ops::neb::row_distances(self, dim, rows, x)
    }
    fn neb_forces(
        &self,
        p: &NebForceParams,
        pivots: &Self::Buf,
        grads: &Self::Buf,
        energies: &[f64],
        forces: &mut Self::Buf,
    ) -> Result<Vec<f64>> {
        ops::neb::neb_forces(self, p, pivots, grads, energies, forces)
    }
}
