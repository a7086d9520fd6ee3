//! The one error enum of mep-tensor.

/// Everything a backend operation can reject.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// A buffer handed to an operation does not hold the number of elements its geometry needs.
    #[error("{op}: buffer `{arg}` has {found} elements, expected {expected}")]
    Len {
        op: &'static str,
        arg: &'static str,
        expected: usize,
        found: usize,
    },
    /// A tensor has the wrong shape.
    #[error("{op}: `{arg}` has shape {found}, expected {expected}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        expected: String,
        found: String,
    },
    /// A geometry or hyper-parameter is out of range (zero stride, kernel larger than input, ...).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A class index is outside `0..classes`.
    #[error("{op}: target {target} of sample {sample} is outside 0..{classes}")]
    Target {
        op: &'static str,
        sample: usize,
        target: usize,
        classes: usize,
    },
    /// The backend's device ran out of memory. `source` is the backend's own error (for
    /// mep-kernels a `KernelError`, reachable by downcasting).
    #[error("backend {backend}: {source}")]
    OutOfMemory {
        backend: &'static str,
        /// The size of the allocation that failed, when known.
        bytes: Option<usize>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend's device failed otherwise (device lost, a launch failed, driver missing).
    /// `source` is the backend's own error.
    #[error("backend {backend}: {source}")]
    Device {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TensorError {
    /// Whether the device ran out of memory (a smaller batch may fit).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, TensorError::OutOfMemory { .. })
    }
}

/// Result alias of mep-tensor.
pub type Result<T> = std::result::Result<T, TensorError>;

/// Checks that a buffer of `found` elements is the `expected` size for argument `arg` of `op`.
pub fn check_len(op: &'static str, arg: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(TensorError::Len {
            op,
            arg,
            expected,
            found,
        })
    }
}
