#![doc = include_str!("../README.md")]

use std::os::raw::{c_int, c_uint};

mod launcher;
pub use launcher::{EmuLauncher, EmuMem};
pub use mep_kernels::AdamScalars;

/// Errors of the emulated kernels: a launch the harness refused, or arguments that do not fit
/// the kernel.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EmuError {
    /// The harness refused the launch configuration (`code` is cuda_emu.h's `EmuStatus`).
    #[error("kernel {kernel}: launch with grid {grid}, block {block} refused: {reason}")]
    Launch {
        kernel: &'static str,
        grid: u32,
        block: u32,
        reason: &'static str,
    },
    /// A buffer has the wrong number of elements.
    #[error("kernel {kernel}: {arg} has {found} elements, expected {expected}")]
    Len {
        kernel: &'static str,
        arg: &'static str,
        expected: usize,
        found: usize,
    },
    /// Any other argument the kernel cannot take.
    #[error("kernel {kernel}: {msg}")]
    Invalid { kernel: &'static str, msg: String },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, EmuError>;

/// A 1-D launch configuration: `grid` blocks of `block` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Number of blocks.
    pub grid: u32,
    /// Threads per block (1..=1024).
    pub block: u32,
}

impl Launch {
    /// `grid` blocks of `block` threads.
    pub fn new(grid: u32, block: u32) -> Launch {
        Launch { grid, block }
    }
    /// Enough blocks of `block` threads for one thread per element of `n` (at least one block).
    pub fn cover(n: usize, block: u32) -> Launch {
        let grid = n.div_ceil(block.max(1) as usize).max(1);
        Launch {
            grid: u32::try_from(grid).unwrap_or(u32::MAX),
            block,
        }
    }
}

/// Which version of a kernel runs (see the header comment of its kernels/*.cu file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The simple one: usually one thread per output.
    V1,
    /// The fast one: grid-stride, vectorised or with block reductions.
    V2,
}

impl Version {
    /// Both versions, for tests that run each.
    pub const ALL: [Version; 2] = [Version::V1, Version::V2];
}

/// A pointwise non-linearity, as the kernels encode it (mirrors `mep_tensor::Act`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// f(x) = x.
    #[default]
    Identity,
    /// f(x) = max(x, 0), NaN propagating.
    Relu,
    /// f(x) = x for x > 0, slope·x otherwise.
    LeakyRelu(f32),
    /// f(x) = 1 / (1 + e^-x).
    Sigmoid,
}

impl Activation {
    /// The `(act, slope)` pair that elementwise.cu takes.
    fn code(self) -> (c_int, f32) {
        match self {
            Activation::Identity => (0, 0.0),
            Activation::Relu => (1, 0.0),
            Activation::LeakyRelu(s) => (2, s),
            Activation::Sigmoid => (3, 0.0),
        }
    }
}

/// SGD-with-momentum scalars (`torch.optim.SGD`, dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdScalars {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// The first step sets the momentum buffer to the gradient.
    pub first: bool,
}

mod ffi {
    use std::os::raw::{c_int, c_uint};
    macro_rules! entries {
        ($($name:ident($($p:ident: $t:ty),*);)*) => {
            extern "C" {
                $(pub fn $name(grid: c_uint, block: c_uint, $($p: $t),*) -> c_int;)*
            }
        };
    }
    entries! {
        emu_act_fwd_f32_v1(n: i64, act: c_int, slope: f32, x: *const f32, y: *mut f32);
        emu_act_fwd_f32_v2(n: i64, act: c_int, slope: f32, x: *const f32, y: *mut f32);
        emu_act_bwd_f32_v1(n: i64, act: c_int, slope: f32, y: *const f32, dy: *const f32, dx: *mut f32);
        emu_act_bwd_f32_v2(n: i64, act: c_int, slope: f32, y: *const f32, dy: *const f32, dx: *mut f32);
        emu_add_f32_v1(n: i64, a: *const f32, b: *const f32, y: *mut f32);
        emu_add_f32_v2(n: i64, a: *const f32, b: *const f32, y: *mut f32);
        emu_add_assign_f32_v1(n: i64, y: *mut f32, x: *const f32);
        emu_add_assign_f32_v2(n: i64, y: *mut f32, x: *const f32);
        emu_axpy_f32_v1(n: i64, alpha: f32, x: *const f32, y: *mut f32);
        emu_axpy_f32_v2(n: i64, alpha: f32, x: *const f32, y: *mut f32);
        emu_scale_f32_v1(n: i64, alpha: f32, x: *mut f32);
        emu_scale_f32_v2(n: i64, alpha: f32, x: *mut f32);
        emu_fill_f32_v1(n: i64, value: f32, y: *mut f32);
        emu_fill_f32_v2(n: i64, value: f32, y: *mut f32);
        emu_dot_f32_v1(n: i64, x: *const f32, y: *const f32, out: *mut f64);
        emu_dot_f32_v2(n: i64, x: *const f32, y: *const f32, out: *mut f64);
        emu_sumsq_f32_v1(n: i64, x: *const f32, out: *mut f64);
        emu_sumsq_f32_v2(n: i64, x: *const f32, out: *mut f64);
        emu_adam_step_f32_v1(n: i64, beta1: f32, beta2: f32, c1: f32, c2: f32, eps: f32, step_size: f32,
            bc2_sqrt: f32, l2: f32, decay: f32, p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32);
        emu_adam_step_f32_v2(n: i64, beta1: f32, beta2: f32, c1: f32, c2: f32, eps: f32, step_size: f32,
            bc2_sqrt: f32, l2: f32, decay: f32, p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32);
        emu_sgd_step_f32_v1(n: i64, lr: f32, mu: f32, wd: f32, nesterov: c_int, first: c_int, p: *mut f32,
            g: *const f32, buf: *mut f32);
        emu_sgd_step_f32_v2(n: i64, lr: f32, mu: f32, wd: f32, nesterov: c_int, first: c_int, p: *mut f32,
            g: *const f32, buf: *mut f32);
        emu_softmax_xent_f32_v1(n: i64, c: c_int, logits: *const f32, targets: *const c_int, probs: *mut f32,
            losses: *mut f32);
        emu_softmax_xent_f32_v2(n: i64, c: c_int, logits: *const f32, targets: *const c_int, probs: *mut f32,
            losses: *mut f32);
        emu_softmax_xent_bwd_f32_v1(n: i64, c: c_int, probs: *const f32, targets: *const c_int, scale: f32,
            dlogits: *mut f32);
        emu_lerp_rows_f32_v1(rows: i64, dim: i64, src: *const f32, ab: *const c_int, t: *const f32, dst: *mut f32);
        emu_copy_rows_f32_v1(n: i64, src: *const f32, dst: *mut f32);
        emu_row_distances_f32_v1(rows: i64, dim: i64, x: *const f32, out: *mut f64);
        emu_row_distances_f32_v2(rows: i64, dim: i64, x: *const f32, out: *mut f64);
        emu_neb_forces_f32_v1(pivots: i64, d: i64, x: *const f32, g: *const f32, e: *const f64, has_spring: c_int,
            k: f32, climbing: c_int, forces: *mut f32, norms: *mut f64);
    }
}

/// Turns a launch status into a result.
/// What cuda_emu.h's `EmuStatus` `code` means; `None` for `EMU_OK`.
pub(crate) fn refusal(code: c_int) -> Option<&'static str> {
    match code {
        0 => None,
        1 => Some("the grid is empty or too large"),
        2 => Some("the block is empty or has more than 1024 threads"),
        3 => Some("the operating system could not start the block's threads"),
        _ => Some("unknown status"),
    }
}

fn status(kernel: &'static str, l: Launch, code: c_int) -> Result<()> {
    let Some(reason) = refusal(code) else {
        return Ok(());
    };
    Err(EmuError::Launch {
        kernel,
        grid: l.grid,
        block: l.block,
        reason,
    })
}

fn check_len(kernel: &'static str, arg: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(EmuError::Len {
            kernel,
            arg,
            expected,
            found,
        })
    }
}

/// Kernels with block reductions need whole warps.
fn check_warps(kernel: &'static str, block: u32) -> Result<()> {
    if block == 0 || !block.is_multiple_of(32) || block > 1024 {
        return Err(EmuError::Invalid {
            kernel,
            msg: format!("block of {block} threads; block reductions need a multiple of 32 up to 1024"),
        });
    }
    Ok(())
}

fn to_i64(kernel: &'static str, what: &str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| EmuError::Invalid {
        kernel,
        msg: format!("{what} = {v} does not fit in i64"),
    })
}

fn to_int(kernel: &'static str, what: &str, v: usize) -> Result<c_int> {
    c_int::try_from(v).map_err(|_| EmuError::Invalid {
        kernel,
        msg: format!("{what} = {v} does not fit in i32"),
    })
}

fn grid_of(kernel: &'static str, blocks: usize, block: u32) -> Result<Launch> {
    let grid = u32::try_from(blocks.max(1)).map_err(|_| EmuError::Invalid {
        kernel,
        msg: format!("{blocks} blocks do not fit a grid"),
    })?;
    Ok(Launch { grid, block })
}

macro_rules! pick {
    ($v:expr, $v1:ident, $v2:ident) => {
        match $v {
            Version::V1 => (stringify!($v1).trim_start_matches("emu_"), ffi::$v1 as _),
            Version::V2 => (stringify!($v2).trim_start_matches("emu_"), ffi::$v2 as _),
        }
    };
}

// ---- elementwise.cu ------------------------------------------------------------------------

/// `y = act(x)` (`act_fwd_f32_v1/v2`).
pub fn act_fwd(v: Version, l: Launch, act: Activation, x: &[f32], y: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, c_int, f32, *const f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_act_fwd_f32_v1, emu_act_fwd_f32_v2);
    check_len("act_fwd_f32", "y", x.len(), y.len())?;
    let (code, slope) = act.code();
    let n = to_i64("act_fwd_f32", "n", x.len())?;
    // SAFETY: x and y hold n elements each; the kernel touches indices below n only.
    status(name, l, unsafe {
        f(l.grid, l.block, n, code, slope, x.as_ptr(), y.as_mut_ptr())
    })
}

/// `dx = dy · act'(·)` read off the output `y` (`act_bwd_f32_v1/v2`).
pub fn act_bwd(v: Version, l: Launch, act: Activation, y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, c_int, f32, *const f32, *const f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_act_bwd_f32_v1, emu_act_bwd_f32_v2);
    check_len("act_bwd_f32", "dy", y.len(), dy.len())?;
    check_len("act_bwd_f32", "dx", y.len(), dx.len())?;
    let (code, slope) = act.code();
    let n = to_i64("act_bwd_f32", "n", y.len())?;
    // SAFETY: all three buffers hold n elements.
    status(name, l, unsafe {
        f(
            l.grid,
            l.block,
            n,
            code,
            slope,
            y.as_ptr(),
            dy.as_ptr(),
            dx.as_mut_ptr(),
        )
    })
}

/// `y = a + b` (`add_f32_v1/v2`).
pub fn add(v: Version, l: Launch, a: &[f32], b: &[f32], y: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, *const f32, *const f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_add_f32_v1, emu_add_f32_v2);
    check_len("add_f32", "b", a.len(), b.len())?;
    check_len("add_f32", "y", a.len(), y.len())?;
    let n = to_i64("add_f32", "n", a.len())?;
    // SAFETY: all three buffers hold n elements.
    status(name, l, unsafe {
        f(l.grid, l.block, n, a.as_ptr(), b.as_ptr(), y.as_mut_ptr())
    })
}

/// `y += x` (`add_assign_f32_v1/v2`).
pub fn add_assign(v: Version, l: Launch, y: &mut [f32], x: &[f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, *mut f32, *const f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_add_assign_f32_v1, emu_add_assign_f32_v2);
    check_len("add_assign_f32", "x", y.len(), x.len())?;
    let n = to_i64("add_assign_f32", "n", y.len())?;
    // SAFETY: both buffers hold n elements.
    status(name, l, unsafe { f(l.grid, l.block, n, y.as_mut_ptr(), x.as_ptr()) })
}

/// `y += alpha x` (`axpy_f32_v1/v2`).
pub fn axpy(v: Version, l: Launch, alpha: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, f32, *const f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_axpy_f32_v1, emu_axpy_f32_v2);
    check_len("axpy_f32", "y", x.len(), y.len())?;
    let n = to_i64("axpy_f32", "n", x.len())?;
    // SAFETY: both buffers hold n elements.
    status(name, l, unsafe {
        f(l.grid, l.block, n, alpha, x.as_ptr(), y.as_mut_ptr())
    })
}

/// `x *= alpha` (`scale_f32_v1/v2`).
pub fn scale(v: Version, l: Launch, alpha: f32, x: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_scale_f32_v1, emu_scale_f32_v2);
    let n = to_i64("scale_f32", "n", x.len())?;
    // SAFETY: x holds n elements.
    status(name, l, unsafe { f(l.grid, l.block, n, alpha, x.as_mut_ptr()) })
}

/// `y = value` (`fill_f32_v1/v2`).
pub fn fill(v: Version, l: Launch, value: f32, y: &mut [f32]) -> Result<()> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, f32, *mut f32) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_fill_f32_v1, emu_fill_f32_v2);
    let n = to_i64("fill_f32", "n", y.len())?;
    // SAFETY: y holds n elements.
    status(name, l, unsafe { f(l.grid, l.block, n, value, y.as_mut_ptr()) })
}

// ---- reduce.cu -----------------------------------------------------------------------------

/// `Σ x_i y_i` in f64 (`dot_f32_v1/v2`; v2 needs whole warps).
pub fn dot(v: Version, l: Launch, x: &[f32], y: &[f32]) -> Result<f64> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, *const f32, *const f32, *mut f64) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_dot_f32_v1, emu_dot_f32_v2);
    check_len("dot_f32", "y", x.len(), y.len())?;
    if v == Version::V2 {
        check_warps("dot_f32_v2", l.block)?;
    }
    let n = to_i64("dot_f32", "n", x.len())?;
    let mut out = 0.0f64;
    // SAFETY: x and y hold n elements; out is one f64.
    status(name, l, unsafe {
        f(l.grid, l.block, n, x.as_ptr(), y.as_ptr(), &mut out)
    })?;
    Ok(out)
}

/// `sqrt(Σ x_i²)` in f64 (`sumsq_f32_v1/v2`, then the square root; v2 needs whole warps).
pub fn norm(v: Version, l: Launch, x: &[f32]) -> Result<f64> {
    type F = unsafe extern "C" fn(c_uint, c_uint, i64, *const f32, *mut f64) -> c_int;
    let (name, f): (&'static str, F) = pick!(v, emu_sumsq_f32_v1, emu_sumsq_f32_v2);
    if v == Version::V2 {
        check_warps("sumsq_f32_v2", l.block)?;
    }
    let n = to_i64("sumsq_f32", "n", x.len())?;
    let mut out = 0.0f64;
    // SAFETY: x holds n elements; out is one f64.
    status(name, l, unsafe { f(l.grid, l.block, n, x.as_ptr(), &mut out) })?;
    Ok(out.sqrt())
}

// ---- optim.cu ------------------------------------------------------------------------------

/// One Adam step (`adam_step_f32_v1/v2`).
pub fn adam_step(
    v: Version,
    l: Launch,
    s: &AdamScalars,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    var: &mut [f32],
) -> Result<()> {
    const K: &str = "adam_step_f32";
    check_len(K, "grad", param.len(), grad.len())?;
    check_len(K, "m", param.len(), m.len())?;
    check_len(K, "v", param.len(), var.len())?;
    let n = to_i64(K, "n", param.len())?;
    let f = match v {
        Version::V1 => ffi::emu_adam_step_f32_v1,
        Version::V2 => ffi::emu_adam_step_f32_v2,
    };
    // SAFETY: all four buffers hold n elements.
    let code = unsafe {
        f(
            l.grid,
            l.block,
            n,
            s.beta1,
            s.beta2,
            s.c1,
            s.c2,
            s.eps,
            s.step_size,
            s.bc2_sqrt,
            s.l2,
            s.decay,
            param.as_mut_ptr(),
            grad.as_ptr(),
            m.as_mut_ptr(),
            var.as_mut_ptr(),
        )
    };
    status(K, l, code)
}

/// One SGD-with-momentum step (`sgd_step_f32_v1/v2`).
pub fn sgd_step(v: Version, l: Launch, s: &SgdScalars, param: &mut [f32], grad: &[f32], buf: &mut [f32]) -> Result<()> {
    const K: &str = "sgd_step_f32";
    check_len(K, "grad", param.len(), grad.len())?;
    check_len(K, "buf", param.len(), buf.len())?;
    let n = to_i64(K, "n", param.len())?;
    let f = match v {
        Version::V1 => ffi::emu_sgd_step_f32_v1,
        Version::V2 => ffi::emu_sgd_step_f32_v2,
    };
    let (nesterov, first) = (s.nesterov as c_int, s.first as c_int);
    // SAFETY: all three buffers hold n elements.
    let code = unsafe {
        f(
            l.grid,
            l.block,
            n,
            s.lr,
            s.momentum,
            s.weight_decay,
            nesterov,
            first,
            param.as_mut_ptr(),
            grad.as_ptr(),
            buf.as_mut_ptr(),
        )
    };
    status(K, l, code)
}

// ---- softmax.cu ----------------------------------------------------------------------------

fn check_targets(kernel: &'static str, n: usize, c: usize, targets: &[usize]) -> Result<Vec<c_int>> {
    check_len(kernel, "targets", n, targets.len())?;
    if let Some((i, t)) = targets.iter().enumerate().find(|(_, &t)| t >= c) {
        return Err(EmuError::Invalid {
            kernel,
            msg: format!("targets[{i}] = {t} is not a class of 0..{c}"),
        });
    }
    Ok(targets.iter().map(|&t| t as c_int).collect())
}

/// Row-wise softmax of `logits: [n, c]` into `probs` and per-row cross-entropy into `losses`
/// (`softmax_xent_f32_v1`: `l` as given, one thread per row; `v2`: one block of `l.block`
/// threads per row, the grid set to `n`).
pub fn softmax_cross_entropy(
    v: Version,
    l: Launch,
    c: usize,
    logits: &[f32],
    targets: &[usize],
    probs: &mut [f32],
    losses: &mut [f32],
) -> Result<()> {
    const K: &str = "softmax_xent_f32";
    let n = targets.len();
    let t = check_targets(K, n, c, targets)?;
    check_len(K, "logits", n * c, logits.len())?;
    check_len(K, "probs", n * c, probs.len())?;
    check_len(K, "losses", n, losses.len())?;
    let (ni, ci) = (to_i64(K, "n", n)?, to_int(K, "c", c)?);
    let (l, f): (Launch, unsafe extern "C" fn(_, _, _, _, _, _, _, _) -> _) = match v {
        Version::V1 => (l, ffi::emu_softmax_xent_f32_v1),
        Version::V2 => {
            check_warps("softmax_xent_f32_v2", l.block)?;
            (grid_of(K, n, l.block)?, ffi::emu_softmax_xent_f32_v2)
        }
    };
    // SAFETY: logits and probs hold n·c elements, targets and losses n, every target < c.
    let code = unsafe {
        f(
            l.grid,
            l.block,
            ni,
            ci,
            logits.as_ptr(),
            t.as_ptr(),
            probs.as_mut_ptr(),
            losses.as_mut_ptr(),
        )
    };
    status(K, l, code)
}

/// `dlogits = scale · (probs − onehot(targets))` (`softmax_xent_bwd_f32_v1`, one thread per element).
pub fn softmax_cross_entropy_bwd(
    l: Launch,
    c: usize,
    probs: &[f32],
    targets: &[usize],
    scale: f32,
    dlogits: &mut [f32],
) -> Result<()> {
    const K: &str = "softmax_xent_bwd_f32_v1";
    let n = targets.len();
    let t = check_targets(K, n, c, targets)?;
    check_len(K, "probs", n * c, probs.len())?;
    check_len(K, "dlogits", n * c, dlogits.len())?;
    let (ni, ci) = (to_i64(K, "n", n)?, to_int(K, "c", c)?);
    // SAFETY: probs and dlogits hold n·c elements, targets n, every target < c.
    let code = unsafe {
        ffi::emu_softmax_xent_bwd_f32_v1(
            l.grid,
            l.block,
            ni,
            ci,
            probs.as_ptr(),
            t.as_ptr(),
            scale,
            dlogits.as_mut_ptr(),
        )
    };
    status(K, l, code)
}

// ---- neb.cu --------------------------------------------------------------------------------

/// `dst` row r = `(1 − t) src[a] + t src[b]` for `(a, b, t) = plan[r]` (`lerp_rows_f32_v1`, one
/// thread per element of `dst`).
pub fn lerp_rows(l: Launch, dim: usize, src: &[f32], plan: &[(usize, usize, f32)], dst: &mut [f32]) -> Result<()> {
    const K: &str = "lerp_rows_f32_v1";
    if dim == 0 || !src.len().is_multiple_of(dim) {
        return Err(EmuError::Invalid {
            kernel: K,
            msg: format!("src of {} elements is not rows of {dim}", src.len()),
        });
    }
    let rows = src.len() / dim;
    check_len(K, "dst", plan.len() * dim, dst.len())?;
    let mut ab = Vec::with_capacity(2 * plan.len());
    for (r, &(a, b, t)) in plan.iter().enumerate() {
        if a >= rows || b >= rows || !t.is_finite() {
            return Err(EmuError::Invalid {
                kernel: K,
                msg: format!("plan[{r}] = ({a}, {b}, {t}) on a {rows}-row src"),
            });
        }
        ab.extend([to_int(K, "row", a)?, to_int(K, "row", b)?]);
    }
    let t: Vec<f32> = plan.iter().map(|p| p.2).collect();
    let (r, d) = (to_i64(K, "rows", plan.len())?, to_i64(K, "dim", dim)?);
    // SAFETY: dst holds plan.len()·dim elements, every a, b indexes a whole row of src.
    let code = unsafe {
        ffi::emu_lerp_rows_f32_v1(
            l.grid,
            l.block,
            r,
            d,
            src.as_ptr(),
            ab.as_ptr(),
            t.as_ptr(),
            dst.as_mut_ptr(),
        )
    };
    status(K, l, code)
}

/// Copies `rows` rows of `dim` values from `src` (from row `src_row`) into `dst` (from row
/// `dst_row`) (`copy_rows_f32_v1`, one thread per element copied).
pub fn copy_rows(
    l: Launch,
    dim: usize,
    src: &[f32],
    src_row: usize,
    dst: &mut [f32],
    dst_row: usize,
    rows: usize,
) -> Result<()> {
    const K: &str = "copy_rows_f32_v1";
    let end = |row: usize| row.checked_add(rows).and_then(|r| r.checked_mul(dim));
    match (end(src_row), end(dst_row)) {
        (Some(s), Some(d)) if s <= src.len() && d <= dst.len() => {}
        _ => {
            return Err(EmuError::Invalid {
                kernel: K,
                msg: format!(
                    "rows {src_row}..+{rows} of src ({} elements) into rows {dst_row}..+{rows} of dst ({} elements), \
                     rows of {dim}, are out of range",
                    src.len(),
                    dst.len()
                ),
            })
        }
    }
    let n = to_i64(K, "n", rows * dim)?;
    // SAFETY: both ranges were checked to lie inside their buffers.
    let code = unsafe {
        ffi::emu_copy_rows_f32_v1(
            l.grid,
            l.block,
            n,
            src.as_ptr().add(src_row * dim),
            dst.as_mut_ptr().add(dst_row * dim),
        )
    };
    status(K, l, code)
}

/// `|x[i+1] − x[i]|` for `i` in `0..rows-1`, in f64 (`row_distances_f32_v1`: `l` as given, one
/// thread per pair; `v2`: one block of `l.block` threads per pair, the grid set to `rows − 1`).
pub fn row_distances(v: Version, l: Launch, dim: usize, rows: usize, x: &[f32]) -> Result<Vec<f64>> {
    const K: &str = "row_distances_f32";
    if rows == 0 {
        return Err(EmuError::Invalid {
            kernel: K,
            msg: "rows must be at least 1".into(),
        });
    }
    check_len(K, "x", rows * dim, x.len())?;
    let mut out = vec![0.0f64; rows - 1];
    if rows == 1 {
        return Ok(out);
    }
    let (r, d) = (to_i64(K, "rows", rows)?, to_i64(K, "dim", dim)?);
    let (l, f): (Launch, unsafe extern "C" fn(_, _, _, _, _, _) -> _) = match v {
        Version::V1 => (l, ffi::emu_row_distances_f32_v1),
        Version::V2 => {
            check_warps("row_distances_f32_v2", l.block)?;
            (grid_of(K, rows - 1, l.block)?, ffi::emu_row_distances_f32_v2)
        }
    };
    // SAFETY: x holds rows·dim elements, out rows − 1.
    status(K, l, unsafe { f(l.grid, l.block, r, d, x.as_ptr(), out.as_mut_ptr()) })?;
    Ok(out)
}

/// NEB forces on every interior pivot and the per-pivot force norms (`neb_forces_f32_v1`: one
/// block of `block` threads per pivot). `pivots` and `grads` are `[p, dim]`, `energies` has `p`
/// finite values, `spring` is k (`None`: no spring term), `climbing` an interior pivot.
#[allow(clippy::too_many_arguments)]
pub fn neb_forces(
    block: u32,
    p: usize,
    dim: usize,
    pivots: &[f32],
    grads: &[f32],
    energies: &[f64],
    spring: Option<f32>,
    climbing: Option<usize>,
    forces: &mut [f32],
) -> Result<Vec<f64>> {
    const K: &str = "neb_forces_f32_v1";
    if p < 2 || dim == 0 {
        return Err(EmuError::Invalid {
            kernel: K,
            msg: format!("{p} pivots of {dim} values; a path needs 2 of at least 1"),
        });
    }
    check_warps(K, block)?;
    check_len(K, "pivots", p * dim, pivots.len())?;
    check_len(K, "grads", p * dim, grads.len())?;
    check_len(K, "forces", p * dim, forces.len())?;
    check_len(K, "energies", p, energies.len())?;
    if let Some(i) = energies.iter().position(|e| !e.is_finite()) {
        return Err(EmuError::Invalid {
            kernel: K,
            msg: format!("energy of pivot {i} is {}", energies[i]),
        });
    }
    if let Some(k) = spring.filter(|k| !(k.is_finite() && *k >= 0.0)) {
        return Err(EmuError::Invalid {
            kernel: K,
            msg: format!("spring constant {k} must be finite and non-negative"),
        });
    }
    let climb = match climbing {
        None => -1,
        Some(c) if c > 0 && c + 1 < p => to_int(K, "climbing", c)?,
        Some(c) => {
            return Err(EmuError::Invalid {
                kernel: K,
                msg: format!("climbing image {c} is not an interior pivot of 0..{p}"),
            })
        }
    };
    let l = grid_of(K, p, block)?;
    let (pi, d) = (to_i64(K, "pivots", p)?, to_i64(K, "dim", dim)?);
    let mut norms = vec![0.0f64; p];
    // SAFETY: pivots, grads, forces hold p·dim elements, energies and norms p.
    let code = unsafe {
        ffi::emu_neb_forces_f32_v1(
            l.grid,
            l.block,
            pi,
            d,
            pivots.as_ptr(),
            grads.as_ptr(),
            energies.as_ptr(),
            spring.is_some() as c_int,
            spring.unwrap_or(0.0),
            climb,
            forces.as_mut_ptr(),
            norms.as_mut_ptr(),
        )
    };
    status(K, l, code)?;
    Ok(norms)
}
