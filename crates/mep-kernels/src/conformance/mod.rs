//! The backend test suite: every Backend operation on small, awkward shapes (sizes that are
//! not multiples of a block or a tile, one and several blocks, odd channel counts), compared
//! with [`CpuBackend`], the reference. CI runs it on the CPU emulation with both kernel sets;
//! `cargo xtask gpu-check` runs it on a GPU.
//!
//! ```
//! use mep_kernels::conformance::{run_family, Family};
//! // The CPU backend against itself passes trivially; other backends are what this is for.
//! run_family(&mep_tensor::CpuBackend::new(), Family::Elementwise).unwrap();
//! ```

mod batch_norm;
pub(crate) mod conv;
mod elementwise;
mod linear;
mod neb;
mod network;
mod nonfinite;
mod optim;
mod pool;
mod precision;
mod reduce;
mod softmax;

pub use network::{networks, networks_in_precision, within_f32_noise, NetScale, GRAD_FACTOR, GRAD_FLOOR};
pub use precision::{mma_probes, run_precision};

use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, CpuBuf, Nchw, Result};

/// An NCHW shape.
pub(crate) fn nchw(n: usize, c: usize, h: usize, w: usize) -> Nchw {
    Nchw { n, c, h, w }
}

/// A group of operations, checked together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Activations, add, axpy, scale (and the memory ops fill, copy, zeros).
    Elementwise,
    /// Dot and norm.
    Reduce,
    /// Adam and SGD steps.
    Optim,
    /// Softmax + cross-entropy and its backward.
    Softmax,
    /// The path operations of the NEB.
    Neb,
    /// Convolution and transposed convolution, forward and both gradients.
    Conv,
    /// Linear layers, forward and both gradients.
    Linear,
    /// Batch norm, inference and training, forward and backward.
    BatchNorm,
    /// Max pool, global average pool, upsampling, the option-A shortcut.
    Pool,
    /// NaN and ±∞ through every family, checked against PyTorch's results (not only against
    /// the CPU backend, which could share a mistake).
    NonFinite,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 10] = [
        Family::Elementwise,
        Family::Reduce,
        Family::Optim,
        Family::Softmax,
        Family::Neb,
        Family::Conv,
        Family::Linear,
        Family::BatchNorm,
        Family::Pool,
        Family::NonFinite,
    ];
}

/// Runs every family on `b`; the error lists every failing case.
pub fn run_all<B: Backend>(b: &B) -> std::result::Result<(), String> {
    let failures: Vec<String> = Family::ALL.iter().filter_map(|&f| run_family(b, f).err()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Runs one family on `b`; the error lists every failing case.
pub fn run_family<B: Backend>(b: &B, family: Family) -> std::result::Result<(), String> {
    let mut c = Checker::new(b);
    match family {
        Family::Elementwise => elementwise::elementwise(&mut c),
        Family::Reduce => reduce::reduce(&mut c),
        Family::Optim => optim::optim(&mut c),
        Family::Softmax => softmax::softmax(&mut c),
        Family::Neb => neb::neb(&mut c),
        Family::Conv => conv::conv(&mut c),
        Family::Linear => linear::linear(&mut c),
        Family::BatchNorm => batch_norm::batch_norm(&mut c),
        Family::Pool => pool::pool(&mut c),
        Family::NonFinite => nonfinite::non_finite(&mut c),
    }
    c.finish(&format!("{family:?}"))
}

/// [`Checker::rand_pair`] when `present`.
pub(crate) fn rand_opt<B: Backend>(c: &mut Checker<B>, present: bool, len: usize) -> Result<Option<(B::Buf, CpuBuf)>> {
    if present {
        c.rand_pair(len).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) type Pair<B> = (<B as mep_tensor::Memory>::Buf, CpuBuf);

pub(crate) fn under_test<B: Backend>(p: &Option<Pair<B>>) -> Option<&B::Buf> {
    p.as_ref().map(|p| &p.0)
}

pub(crate) fn reference<B: Backend>(p: &Option<Pair<B>>) -> Option<&CpuBuf> {
    p.as_ref().map(|p| &p.1)
}

/// Absolute and relative tolerance: `|got − want| ≤ atol + rtol·|want|`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tol {
    pub atol: f32,
    pub rtol: f32,
}

impl Tol {
    /// Elementwise ops: the same formula, maybe contracted into an FMA on a GPU.
    pub const POINTWISE: Tol = Tol { atol: 1e-6, rtol: 1e-5 };
    /// The same launches on the same inputs: the same bits.
    pub const EXACT: Tol = Tol { atol: 0.0, rtol: 0.0 };
    /// Sums of `k` products in another order (convolutions, GEMMs, reductions).
    pub fn sum_of(k: usize) -> Tol {
        let s = (k.max(1) as f32).sqrt();
        Tol {
            atol: 2e-6 * s,
            rtol: 1e-4,
        }
    }
}

/// Runs cases on the backend under test and on the CPU reference, and collects mismatches.
pub(crate) struct Checker<'a, B: Backend> {
    pub b: &'a B,
    pub cpu: CpuBackend,
    rng: mep_rng::SplitMix64,
    case: String,
    failures: Vec<String>,
    cases: usize,
}

impl<'a, B: Backend> Checker<'a, B> {
    fn new(b: &'a B) -> Self {
        Checker {
            b,
            cpu: CpuBackend::new(),
            rng: mep_rng::SplitMix64::new(0x9E37_79B9_7F4A_7C15),
            case: String::new(),
            failures: Vec::new(),
            cases: 0,
        }
    }

    /// The verdict over the cases run; `what` names the suite in the message.
    fn finish(self, what: &str) -> std::result::Result<(), String> {
        if self.cases == 0 {
            return Err(format!("{what}: no case ran"));
        }
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{what} on {}: {} of {} cases failed:\n  {}",
                self.b.name(),
                self.failures.len(),
                self.cases,
                self.failures.join("\n  ")
            ))
        }
    }

    /// Runs case `name`; an error from either backend is a failure.
    pub fn case(&mut self, name: impl Into<String>, f: impl FnOnce(&mut Self) -> Result<()>) {
        self.case = name.into();
        self.cases += 1;
        if let Err(e) = f(self) {
            self.failures.push(format!("{}: error {e}", self.case));
        }
    }

    /// Records a failure of the current case.
    pub(crate) fn fail(&mut self, msg: String) {
        self.failures.push(format!("{}: {msg}", self.case));
    }

    /// `n` uniform values in [-1, 1) (SplitMix64; the same sequence on every run).
    pub fn rand(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * 2.0 - 1.0).collect()
    }

    /// `n` uniform values in [lo, hi).
    pub fn rand_in(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.uniform()).collect()
    }

    /// A uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn uniform(&mut self) -> f32 {
        self.rng.unit_f32()
    }

    /// `data` on both backends.
    pub fn upload(&self, data: &[f32]) -> Result<(B::Buf, CpuBuf)> {
        Ok((self.b.upload(data)?, self.cpu.upload(data)?))
    }

    /// `n` values in [-1, 1) ([`Checker::rand`]) on both backends.
    pub fn rand_pair(&mut self, n: usize) -> Result<(B::Buf, CpuBuf)> {
        let v = self.rand(n);
        self.upload(&v)
    }

    /// Buffers of `len` elements on both backends, filled with the same garbage (outputs must
    /// overwrite it).
    pub fn output(&mut self, len: usize) -> Result<(B::Buf, CpuBuf)> {
        let junk = self.rand_in(len, 7.0, 9.0);
        self.upload(&junk)
    }

    /// Compares buffer `arg` of the two backends.
    pub fn close(&mut self, arg: &str, got: &B::Buf, want: &CpuBuf, tol: Tol) -> Result<()> {
        let g = self.b.download(got)?;
        let w = self.cpu.download(want)?;
        self.close_slices(arg, &g, &w, tol);
        Ok(())
    }

    /// Compares two buffers of the backend under test (e.g. an op and its device-side twin).
    pub fn close_same(&mut self, arg: &str, got: &B::Buf, want: &B::Buf, tol: Tol) -> Result<()> {
        let (g, w) = (self.b.download(got)?, self.b.download(want)?);
        self.close_slices(arg, &g, &w, tol);
        Ok(())
    }

    /// Compares two host slices.
    pub fn close_slices(&mut self, arg: &str, got: &[f32], want: &[f32], tol: Tol) {
        if got.len() != want.len() {
            self.failures.push(format!(
                "{}: {arg} has {} elements, reference {}",
                self.case,
                got.len(),
                want.len()
            ));
            return;
        }
        let bad: Vec<usize> = (0..got.len())
            .filter(|&i| {
                let (g, w) = (got[i], want[i]);
                !(g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol.atol + tol.rtol * w.abs())
            })
            .collect();
        if let Some(&first) = bad.first() {
            let shown: Vec<String> = bad
                .iter()
                .take(4)
                .map(|&i| format!("[{i}] {} vs {}", got[i], want[i]))
                .collect();
            self.failures.push(format!(
                "{}: {arg}: {} of {} elements differ (first at {first}): {}",
                self.case,
                bad.len(),
                got.len(),
                shown.join(", ")
            ));
        }
    }

    /// Compares f64 results (reductions, norms) to `rtol` relative and `atol` absolute.
    pub fn close_f64(&mut self, arg: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
        let bad: Vec<String> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (g, w))| {
                let d = (*g - *w).abs();
                d.is_nan() || d > atol + rtol * w.abs()
            })
            .take(4)
            .map(|(i, (g, w))| format!("[{i}] {g} vs {w}"))
            .collect();
        if got.len() != want.len() || !bad.is_empty() {
            self.failures.push(format!(
                "{}: {arg}: {} vs {} values, differences {}",
                self.case,
                got.len(),
                want.len(),
                bad.join(", ")
            ));
        }
    }

    /// Both backends must refuse (bad lengths, bad arguments), with the same message.
    pub fn same_error(&mut self, what: &str, got: Result<()>, want: Result<()>) {
        match (got, want) {
            (Err(g), Err(w)) if g.to_string() == w.to_string() => {}
            (g, w) => self.failures.push(format!(
                "{}: {what}: backend gave {:?}, reference {:?}",
                self.case,
                g.map_err(|e| e.to_string()),
                w.map_err(|e| e.to_string())
            )),
        }
    }
}
