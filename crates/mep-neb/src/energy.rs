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
    /// Called by the NEB before every `evaluate` with a seed derived from
    /// [`NebConfig::seed`](crate::NebConfig::seed), the step and the call, so that a stochastic
    /// energy (dropout, sampled data) is reproducible. Deterministic energies ignore it.
    fn reseed(&mut self, seed: u64) {
        let _ = seed;
    }
}
