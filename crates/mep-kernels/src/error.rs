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
    /// An allocation of `bytes` bytes failed because the device is out of memory.
    #[error("device memory: {msg}")]
    OutOfMemory { bytes: usize, msg: String },
    /// An allocation or copy failed for another reason.
    #[error("device memory: {0}")]
    Memory(String),
    /// The launcher knows no kernel of this name.
    #[error("no kernel named {0} (kernels/*.cu and the launcher's table disagree)")]
    UnknownKernel(String),
}

impl KernelError {
    /// Whether the device ran out of memory (a smaller batch may fit).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, KernelError::OutOfMemory { .. })
    }
}

/// Result alias of mep-kernels.
pub type Result<T> = std::result::Result<T, KernelError>;
