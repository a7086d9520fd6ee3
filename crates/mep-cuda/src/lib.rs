#![doc = include_str!("../README.md")]

pub mod cache;
mod launcher;
pub mod nvrtc;
pub mod ptxas;

pub use launcher::{CudaLauncher, CudaMem, Graph, SYNC_ENV};
pub use mep_kernels::{CertifyOn, KernelError, Kernels};

/// The CUDA Backend: the hand-written kernels of kernels/*.cu on an NVIDIA GPU.
pub type CudaBackend = mep_kernels::KernelBackend<CudaLauncher>;

/// The CUDA Backend on GPU `ordinal`, with the fast kernels.
///
/// Never panics: without a usable GPU it returns [`KernelError::Unavailable`] saying why (no
/// NVIDIA driver, no GPU, ordinal out of range, no NVRTC, or built without the `cuda` feature).
///
/// ```
/// use mep_tensor::prelude::*;
/// match mep_cuda::cuda_backend(0) {
///     Ok(gpu) => {
///         let x = gpu.upload(&[1.0, 2.0]).unwrap();
///         assert_eq!(gpu.download(&x).unwrap(), vec![1.0, 2.0]);
///     }
///     Err(why) => eprintln!("no GPU backend: {why}"),
/// }
/// ```
pub fn cuda_backend(ordinal: usize) -> Result<CudaBackend, KernelError> {
    cuda_backend_with(ordinal, Kernels::Fast)
}

/// The CUDA Backend on GPU `ordinal` with the given kernel versions (`Kernels::Simple` runs
/// the v1 specification kernels).
pub fn cuda_backend_with(ordinal: usize, kernels: Kernels) -> Result<CudaBackend, KernelError> {
    Ok(mep_kernels::KernelBackend::with_kernels(
        CudaLauncher::new(ordinal)?,
        kernels,
    ))
}

/// The error of every entry point in a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub(crate) fn not_built() -> KernelError {
    KernelError::Unavailable(
        "mep was built without CUDA support; rebuild with `--features cuda` (cargo build -p mep-cuda --features cuda)"
            .into(),
    )
}
