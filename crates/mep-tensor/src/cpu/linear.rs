//! Linear layers of the CPU backend: three GEMMs, `y = x·wᵀ + b` and its gradients.
//!
//! Callers ([`CpuBackend`](super::CpuBackend)) have checked every length.

use super::conv::channel_sums;
use super::gemm::sgemm_into;
use gemm::Parallelism;

/// `y[n, m] = x[n, k]·w[m, k]ᵀ + bias`.
pub fn linear(n: usize, k: usize, m: usize, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    sgemm_into((n, m, k), y, (x, k, 1), (w, 1, k), Parallelism::Rayon(0));
    if let (Some(b), true) = (bias, m > 0) {
        for row in y.chunks_exact_mut(m) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += *b);
        }
    }
}

/// `dx[n, k] = dy[n, m]·w[m, k]`.
pub fn linear_bwd_input(n: usize, k: usize, m: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    sgemm_into((n, k, m), dx, (dy, m, 1), (w, k, 1), Parallelism::Rayon(0));
}

/// `dw[m, k] = dy[n, m]ᵀ·x[n, k]` and, when given, `db = Σ_n dy`.
pub fn linear_bwd_weight(n: usize, k: usize, m: usize, x: &[f32], dy: &[f32], dw: &mut [f32], db: Option<&mut [f32]>) {
    sgemm_into((m, k, n), dw, (dy, 1, m), (x, k, 1), Parallelism::Rayon(0));
    if let Some(db) = db {
        channel_sums(n, m, 1, dy, db);
    }
}
