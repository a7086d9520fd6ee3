//! The one error enum of mep-neb.

use mep_tensor::TensorError;

/// Everything the nudged elastic band can reject or run into.
#[derive(Debug, thiserror::Error)]
pub enum NebError {
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The user's energy failed.
    #[error("energy: {0}")]
    Energy(Box<dyn std::error::Error + Send + Sync>),
    /// An energy or gradient is NaN or infinite. `what` says which quantity ("energy",
    /// "gradient", "dense energy"), `index` the pivot or dense point, `step` the NEB step.
    #[error("non-finite {what} at point {index} in step {step}")]
    NonFinite {
        what: &'static str,
        index: usize,
        step: usize,
    },
    /// A configuration value is out of range.
    #[error("config: `{field}` {msg}")]
    Config { field: &'static str, msg: String },
    /// A path, a buffer or an energy's answer has the wrong size.
    #[error("{what}: expected {expected}, found {found}")]
    Size {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

/// Result alias of mep-neb.
pub type Result<T> = std::result::Result<T, NebError>;
