//! The Backend trait: every operation a ResNet, a decoder or the NEB needs, on
//! backend-owned buffers of f32.
//!
//! Buffers are flat; the geometry arguments say how to read them (NCHW for images,
//! row-major `[rows, cols]` for matrices, PyTorch's weight layouts). Outputs are
//! overwritten unless the method says it accumulates. Lengths are checked and a wrong
//! one is a [`TensorError::Len`](crate::TensorError::Len), never a panic.

use crate::error::Result;
use crate::shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom};

/// A pointwise non-linearity. Backward passes take the activation's *output*, from
/// which each derivative here can be recovered.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Act {
    /// f(x) = x.
    #[default]
    Identity,
    /// f(x) = max(x, 0).
    Relu,
    /// f(x) = x for x > 0, slope·x otherwise; slope must be positive.
    LeakyRelu(f32),
    /// f(x) = 1 / (1 + e^-x).
    Sigmoid,
}

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

/// One row of a gather-and-interpolate ([`Backend::lerp_rows`]):
/// `dst row = (1 - t) · src[a] + t · src[b]`.
///
/// `t = 0` copies row `a` exactly and `t = 1` row `b`; `t` outside `[0, 1]` extrapolates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lerp {
    /// The row weighted by `1 - t`.
    pub a: usize,
    /// The row weighted by `t`.
    pub b: usize,
    /// The interpolation parameter.
    pub t: f32,
}

/// Parameters of the NEB force computation ([`Backend::neb_forces`]) on `pivots` rows of
/// `dim` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NebForceParams {
    /// P, the number of pivots, endpoints included.
    pub pivots: usize,
    /// D, the number of coordinates of one pivot.
    pub dim: usize,
    /// Spring constant k (Henkelman & Jónsson 2000, eq. 12); `None` = no spring term
    /// (k = ∞, handled by redistributing the pivots to equal arc length).
    pub spring: Option<f32>,
    /// Index of the climbing image, if any (Henkelman, Uberuaga & Jónsson 2000); must be an
    /// interior pivot.
    pub climbing: Option<usize>,
}

/// A compute backend: owns buffers and runs every operation on them.
///
/// The CPU backend is the reference; any other backend must agree with it.
///
/// ```
/// use mep_tensor::{Backend, CpuBackend};
/// let cpu = CpuBackend::new();
/// let x = cpu.upload(&[1.0, -2.0, 3.0]).unwrap();
/// let mut y = cpu.alloc(3).unwrap();
/// cpu.activation(mep_tensor::Act::Relu, &x, &mut y).unwrap();
/// assert_eq!(cpu.download(&y).unwrap(), vec![1.0, 0.0, 3.0]);
/// ```
pub trait Backend: Send + Sync + 'static {
    /// A buffer of f32 owned by this backend.
    type Buf: Send + Sync;

    /// A short name for messages ("cpu", "cuda").
    fn name(&self) -> &'static str;

    // ---- memory ---------------------------------------------------------------------
    /// A buffer of `len` elements whose contents are unspecified (reused memory).
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer holding a copy of `data`.
    fn upload(&self, data: &[f32]) -> Result<Self::Buf>;
    /// The buffer's contents, copied to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Number of elements in `buf`.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// `dst = src`; lengths must agree.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    /// Every element of `buf` set to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;

    // ---- convolution ----------------------------------------------------------------
    /// `y = act(conv2d(x, w) + bias + residual)`, bias per output channel, residual of the
    /// output's shape; the fused epilogue of a folded conv+BN(+add)+ReLU.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        residual: Option<&Self::Buf>,
        act: Act,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// Gradient of `conv2d` (no bias, no activation) with respect to its input.
    fn conv2d_bwd_input(&self, g: &Conv2dGeom, dy: &Self::Buf, w: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// Gradients with respect to the weight and, when given, the bias (sum of `dy` per channel).
    fn conv2d_bwd_weight(
        &self,
        g: &Conv2dGeom,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// `y = conv_transpose2d(x, w) + bias`.
    fn conv_transpose2d(
        &self,
        g: &ConvT2dGeom,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// Gradient of `conv_transpose2d` with respect to its input.
    fn conv_transpose2d_bwd_input(
        &self,
        g: &ConvT2dGeom,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
    /// Gradients of `conv_transpose2d` with respect to its weight and, when given, bias.
    fn conv_transpose2d_bwd_weight(
        &self,
        g: &ConvT2dGeom,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;

    // ---- batch norm -----------------------------------------------------------------
    /// Inference-mode batch norm with running statistics, then `act`:
    /// `y = act(gamma (x - mean) / sqrt(var + eps) + beta)`.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;
    /// Backward of inference-mode batch norm (no activation): `dx`, and when given the
    /// accumulated-over-the-batch `dgamma`, `dbeta` (overwritten).
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;
    /// Training-mode batch norm, then `act`: normalise with the batch statistics (biased
    /// variance), update the running statistics as PyTorch does (`r = (1 - momentum) r +
    /// momentum s`, unbiased variance), and save the batch mean and `1/sqrt(var + eps)` for
    /// backward. The fused activation spares a pass; its backward needs only `y`.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;
    /// Backward of training-mode batch norm: `dx`, `dgamma`, `dbeta` (all overwritten).
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<()>;

    // ---- pointwise ------------------------------------------------------------------
    /// `y = act(x)`.
    fn activation(&self, act: Act, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `dx = dy · act'(·)`, the derivative recovered from the activation's output `y`.
    fn activation_bwd(&self, act: Act, y: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// `y = a + b`.
    fn add(&self, a: &Self::Buf, b: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `y += x`.
    fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf) -> Result<()>;

    // ---- pooling and resampling -----------------------------------------------------
    /// Max pool; padding counts as -inf.
    fn max_pool2d(&self, g: &Pool2dGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// Backward of max pool: each `dy` goes to the first maximum of its window (PyTorch's
    /// tie rule), recomputed from `x`.
    fn max_pool2d_bwd(&self, g: &Pool2dGeom, x: &Self::Buf, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// Mean over each channel plane: `[n, c, h, w] -> [n, c]`.
    fn global_avg_pool(&self, s: &Nchw, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// Backward of global average pool.
    fn global_avg_pool_bwd(&self, s: &Nchw, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// Nearest-neighbour 2x upsampling: `[n, c, h, w] -> [n, c, 2h, 2w]`.
    fn upsample_nearest2x(&self, s: &Nchw, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// Backward of nearest 2x upsampling (sum of each 2x2 block).
    fn upsample_nearest2x_bwd(&self, s: &Nchw, dy: &Self::Buf, dx: &mut Self::Buf) -> Result<()>;
    /// The option-A shortcut of the CIFAR ResNets: `x[:, :, ::2, ::2]` (when `subsample`),
    /// then `pad` zero channels before and after, giving `c + 2 pad` channels
    /// ([`Nchw::shortcut_pad`] gives the output's shape).
    fn shortcut_pad(&self, s: &Nchw, subsample: bool, pad: usize, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// Backward of [`Backend::shortcut_pad`].
    fn shortcut_pad_bwd(&self, s: &Nchw, subsample: bool, pad: usize, dy: &Self::Buf, dx: &mut Self::Buf)
        -> Result<()>;

    // ---- dense layers and the loss --------------------------------------------------
    /// `y = x wᵀ + bias` with `x: [n, k]`, `w: [m, k]` (PyTorch's `Linear`), `y: [n, m]`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &Self::Buf,
        w: &Self::Buf,
        bias: Option<&Self::Buf>,
        y: &mut Self::Buf,
    ) -> Result<()>;
    /// `dx = dy w`.
    fn linear_bwd_input(
        &self,
        n: usize,
        k: usize,
        m: usize,
        dy: &Self::Buf,
        w: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
    /// `dw = dyᵀ x` and, when given, `db = Σ_n dy` (overwritten).
    #[allow(clippy::too_many_arguments)]
    fn linear_bwd_weight(
        &self,
        n: usize,
        k: usize,
        m: usize,
        x: &Self::Buf,
        dy: &Self::Buf,
        dw: &mut Self::Buf,
        db: Option<&mut Self::Buf>,
    ) -> Result<()>;
    /// Row-wise softmax of `logits: [n, c]` into `probs`, and the cross-entropy of each row
    /// against its target class into `losses: [n]` (computed stably, log-sum-exp).
    fn softmax_cross_entropy(
        &self,
        n: usize,
        c: usize,
        logits: &Self::Buf,
        targets: &[usize],
        probs: &mut Self::Buf,
        losses: &mut Self::Buf,
    ) -> Result<()>;
    /// `dlogits = scale · (probs - onehot(targets))`; `scale = 1/n` for the mean loss,
    /// 1 for per-row energies.
    fn softmax_cross_entropy_bwd(
        &self,
        n: usize,
        c: usize,
        probs: &Self::Buf,
        targets: &[usize],
        scale: f32,
        dlogits: &mut Self::Buf,
    ) -> Result<()>;

    // ---- vector and optimiser ops ---------------------------------------------------
    /// `y += alpha x`.
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `x *= alpha`.
    fn scale(&self, alpha: f32, x: &mut Self::Buf) -> Result<()>;
    /// `Σ x_i y_i`, accumulated in f64.
    fn dot(&self, x: &Self::Buf, y: &Self::Buf) -> Result<f64>;
    /// `sqrt(Σ x_i²)`, accumulated in f64.
    fn norm(&self, x: &Self::Buf) -> Result<f64>;
    /// One Adam step on `param` with gradient `grad` and moment buffers `m`, `v`.
    fn adam_step(
        &self,
        h: &AdamParams,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
    ) -> Result<()>;
    /// One SGD-with-momentum step on `param`, with momentum buffer `buf`.
    fn sgd_step(&self, h: &SgdParams, param: &mut Self::Buf, grad: &Self::Buf, buf: &mut Self::Buf) -> Result<()>;

    // ---- path ops (nudged elastic band) ---------------------------------------------
    /// `dst` row r = `(1 - t) src[a] + t src[b]` with `(a, b, t) = plan[r]`; rows have `dim`
    /// values, `src` holds whole rows and `dst` has `plan.len()` rows.
    fn lerp_rows(&self, dim: usize, src: &Self::Buf, plan: &[Lerp], dst: &mut Self::Buf) -> Result<()>;
    /// Copies `rows` rows of `dim` values from `src` (starting at row `src_row`) into `dst`
    /// (starting at row `dst_row`).
    fn copy_rows(
        &self,
        dim: usize,
        src: &Self::Buf,
        src_row: usize,
        dst: &mut Self::Buf,
        dst_row: usize,
        rows: usize,
    ) -> Result<()>;
    /// Euclidean distances between consecutive rows, `|x[i+1] - x[i]|` for `i` in
    /// `0..rows-1`, accumulated in f64.
    fn row_distances(&self, dim: usize, rows: usize, x: &Self::Buf) -> Result<Vec<f64>>;
    /// NEB forces on every interior pivot (endpoint rows of `forces` set to 0), from the
    /// `pivots`, the energy gradients at the pivots (`grads`, rows 0 and P-1 ignored) and the
    /// `energies` at the pivots (host scalars, all finite).
    ///
    /// Improved tangent (Henkelman & Jónsson 2000, eqs. 8–11) from the raw neighbour vectors
    /// `τ+ = R[i+1] - R[i]`, `τ- = R[i] - R[i-1]`; where `E[i+1] = E[i-1]` (ties, flat
    /// energy) the bisector `τ+/|τ+| + τ-/|τ-|` instead, and where a tangent has zero length
    /// to rounding (zero-length segments, a path folding back) the bisector, then `τ+` or
    /// `τ-`, then no tangent at all (never NaN). The force is the perpendicular true force `-∇E + (∇E·τ̂)τ̂` plus the spring
    /// force along the tangent `k(|τ+| - |τ-|)τ̂` (eq. 12); the climbing image gets
    /// `-∇E + 2(∇E·τ̂)τ̂` and no spring.
    ///
    /// Returns, per pivot (0 for endpoints), the norm of the perpendicular true force; for the
    /// climbing image the norm of its whole force (`|∇E|`), since it must also reach the
    /// saddle along the tangent.
    fn neb_forces(
        &self,
        p: &NebForceParams,
        pivots: &Self::Buf,
        grads: &Self::Buf,
        energies: &[f64],
        forces: &mut Self::Buf,
    ) -> Result<Vec<f64>>;
}
