//! Asking for a GPU never panics: on a machine without one (or a build without the `cuda`
//! feature) the error says why; on a GPU machine the backend opens.

use mep_cuda::{cuda_backend, CudaLauncher, KernelError};

/// The reasons `CudaLauncher::new` gives for an unusable GPU.
const REASONS: &[&str] = &[
    "without CUDA support",
    "no NVIDIA driver",
    "no GPU",
    "the driver sees",
    "NVRTC",
    "failed to initialise",
];

#[test]
fn first_gpu_opens_or_says_why() {
    match cuda_backend(0) {
        Ok(b) => eprintln!("GPU present: {} ({})", b.launcher().device_name(), b.launcher().arch()),
        Err(KernelError::Unavailable(msg)) => {
            assert!(REASONS.iter().any(|r| msg.contains(r)), "unhelpful message: {msg}");
            eprintln!("no GPU backend, as expected here: {msg}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn an_absurd_ordinal_is_an_error_not_a_panic() {
    let e = CudaLauncher::new(1 << 20).err().expect("no machine has 2^20 GPUs");
    let msg = e.to_string();
    assert!(matches!(e, KernelError::Unavailable(_)), "{e:?}");
    assert!(REASONS.iter().any(|r| msg.contains(r)), "unhelpful message: {msg}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_the_message_says_how_to_get_cuda() {
    let msg = cuda_backend(0).err().unwrap().to_string();
    assert!(msg.contains("--features cuda"), "{msg}");
}
