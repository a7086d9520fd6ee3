//! The energy a path is relaxed on: a batch of points in, energies and gradients out.

use crate::error::Result;
use mep_tensor::Backend;

/// The energies (and per-point extra information) of a batch of points.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation<A> {
    /// One energy per point.
    pub energies: Vec<f64>,
    /// One aux value per point (`vec![(); n]` when the energy has none).
    pub aux: Vec<A>,
}

/// An energy on R^D, evaluated on a batch of points in one call. Implement it to relax a
/// path on your own landscape; [`crate::potentials`] has analytic ones.
pub trait Energy<B: Backend> {
    /// Per-point information besides the energy (e.g. the predicted class). `()` if none.
    type Aux: Clone + std::fmt::Debug + Send;
    /// D, the number of coordinates of one point.
    fn dim(&self) -> usize;
    /// The most points one `evaluate` call may receive (memory); the NEB splits larger batches.
    fn max_batch(&self) -> usize {
        64
    }
    /// Energies (and aux) of the `n` points in the rows of `points` (`[n, dim]`, exactly
    /// `n·dim` values); when `grads` is given (length `n·dim`) also writes dE/dz of each point
    /// into its row.
    fn evaluate(
        &mut self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: Option<&mut B::Buf>,
    ) -> Result<Evaluation<Self::Aux>>;
    /// Whether [`evaluate_on_device`](Self::evaluate_on_device) works: then
    /// [`Neb::step_on_device`](crate::Neb::step_on_device) can run a whole step without a host
    /// copy (and be captured in a CUDA graph). False by default.
    fn evaluates_on_device(&self) -> bool {
        false
    }
    /// The energies of the `n` points in `points` into `energies` (`n` values on the backend,
    /// the same values [`evaluate`](Self::evaluate) returns, rounded to f32) and their
    /// gradients into `grads`, with no copy to or from the host, no host decision and the same
    /// allocations on every call. Only called when
    /// [`evaluates_on_device`](Self::evaluates_on_device) says so; the default refuses.
    fn evaluate_on_device(
        &mut self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: &mut B::Buf,
        energies: &mut B::Buf,
    ) -> Result<()> {
        let _ = (b, points, n, grads, energies);
        Err(crate::NebError::Config {
            field: "Energy::evaluate_on_device",
            msg: "this energy evaluates on the host only; step with Neb::step".into(),
        })
    }
    /// Called by the NEB before every `evaluate` with a seed derived from
    /// [`NebConfig::seed`](crate::NebConfig::seed), the step and the call, so that a stochastic
    /// energy (dropout, sampled data) is reproducible. Deterministic energies ignore it.
    fn reseed(&mut self, seed: u64) {
        let _ = seed;
    }
}
