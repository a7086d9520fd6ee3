//! The one error enum of mep-kernels.

/// What a launcher or the kernel backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The device could not be used at all (no driver, no GPU, built without CUDA).
    #[error("{0}")]
    Unavailable(String),
    /// A kernel failed to compile (NVRTC's log is in `log`).
    #[error("compiling {family}.cu for {arch} failed:\n{log}")]
    Compile { family: String, arch: String, log: String },
    /// A launch was refused or failed.
    #[error("kernel {kernel}: {msg}")]
    Launch { kernel: String, msg: String },
    /// An allocation or copy failed.
    #[error("device memory: {0}")]
    Memory(String),
    /// The launcher knows no kernel of this name.
    #[error("no kernel named {0} (kernels/*.cu and the launcher's table disagree)")]
    UnknownKernel(String),
}

/// Result alias of mep-kernels.
pub type Result<T> = std::result::Result<T, KernelError>;
