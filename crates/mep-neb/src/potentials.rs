//! Analytic potentials with known stationary points, the truth the NEB is tested against.
//! They work on any backend: the points are downloaded, the energy is computed in f64 and
//! the gradients are uploaded.

use crate::energy::{Energy, Evaluation};
use crate::error::{NebError, Result};
use mep_tensor::Backend;

/// The Müller–Brown potential (Müller & Brown 1979, Theor. Chim. Acta 53, 75):
/// `V(x, y) = Σ_k A_k exp(a_k (x − x0_k)² + b_k (x − x0_k)(y − y0_k) + c_k (y − y0_k)²)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MullerBrown;

impl MullerBrown {
    /// `A_k`.
    pub const A: [f64; 4] = [-200.0, -100.0, -170.0, 15.0];
    /// `a_k`.
    pub const LA: [f64; 4] = [-1.0, -1.0, -6.5, 0.7];
    /// `b_k`.
    pub const LB: [f64; 4] = [0.0, 0.0, 11.0, 0.6];
    /// `c_k`.
    pub const LC: [f64; 4] = [-10.0, -10.0, -6.5, 0.7];
    /// `x0_k`.
    pub const X0: [f64; 4] = [1.0, 0.0, -0.5, -1.0];
    /// `y0_k`.
    pub const Y0: [f64; 4] = [0.0, 0.5, 1.5, 1.0];

    /// Minimum A, the deepest (E ≈ −146.70).
    pub const MINIMUM_A: [f64; 2] = [-0.558224, 1.441726];
    /// Minimum B (E ≈ −108.17).
    pub const MINIMUM_B: [f64; 2] = [0.623499, 0.028038];
    /// Minimum C, the shallowest (E ≈ −80.77).
    pub const MINIMUM_C: [f64; 2] = [-0.050011, 0.466694];
    /// The saddle point between minima A and C (E ≈ −40.66).
    pub const SADDLE_AC: [f64; 2] = [-0.822002, 0.624313];

    /// The energy and gradient at `(x, y)`, in f64.
    pub fn energy_grad(x: f64, y: f64) -> (f64, [f64; 2]) {
        let (mut e, mut gx, mut gy) = (0.0, 0.0, 0.0);
        for k in 0..4 {
            let (dx, dy) = (x - Self::X0[k], y - Self::Y0[k]);
            let (a, b, c) = (Self::LA[k], Self::LB[k], Self::LC[k]);
            let term = Self::A[k] * (a * dx * dx + b * dx * dy + c * dy * dy).exp();
            e += term;
            gx += term * (2.0 * a * dx + b * dy);
            gy += term * (b * dx + 2.0 * c * dy);
        }
        (e, [gx, gy])
    }

    /// The energy at `(x, y)`.
    pub fn energy(x: f64, y: f64) -> f64 {
        Self::energy_grad(x, y).0
    }
}

/// Evaluates a 2-D analytic potential `f` on the host for a batch on any backend.
fn evaluate_2d<B: Backend>(
    b: &B,
    points: &B::Buf,
    n: usize,
    grads: Option<&mut B::Buf>,
    f: impl Fn(f64, f64) -> (f64, [f64; 2]),
) -> Result<Evaluation<()>> {
    let len = b.len(points);
    if len != 2 * n {
        return Err(NebError::Size {
            what: "points of a 2-D potential (2·n values)",
            expected: 2 * n,
            found: len,
        });
    }
    let xs = b.download(points)?;
    let mut energies = Vec::with_capacity(n);
    let mut g = Vec::with_capacity(2 * n);
    for p in xs.chunks_exact(2) {
        let (e, d) = f(p[0] as f64, p[1] as f64);
        energies.push(e);
        g.extend([d[0] as f32, d[1] as f32]);
    }
    if let Some(grads) = grads {
        let glen = b.len(grads);
        if glen != 2 * n {
            return Err(NebError::Size {
                what: "gradients of a 2-D potential (2·n values)",
                expected: 2 * n,
                found: glen,
            });
        }
        let up = b.upload(&g)?;
        b.copy(&up, grads)?;
    }
    Ok(Evaluation {
        energies,
        aux: vec![(); n],
    })
}

impl<B: Backend> Energy<B> for MullerBrown {
    type Aux = ();
    fn dim(&self) -> usize {
        2
    }
    fn max_batch(&self) -> usize {
        4096
    }
    fn evaluate(&mut self, b: &B, points: &B::Buf, n: usize, grads: Option<&mut B::Buf>) -> Result<Evaluation<()>> {
        evaluate_2d(b, points, n, grads, MullerBrown::energy_grad)
    }
}
