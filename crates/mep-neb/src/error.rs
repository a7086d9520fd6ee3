//! The one error enum of mep-neb.

use mep_tensor::TensorError;

/// Everything the nudged elastic band can reject or run into.
#[derive(Debug, thiserror::Error)]
pub enum NebError {
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The user's energy failed; its own error is the source, and
    /// [`NebError::energy_error`] gives it back with its type (e.g. mep's `ResNetError`).
    #[error("energy: {0}")]
    Energy(#[source] Box<dyn std::error::Error + Send + Sync>),
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

impl NebError {
    /// The energy's error as its own type `E`, when this is an [`NebError::Energy`] holding
    /// one: a caller can tell, say, a checkpoint problem from a bad path without parsing
    /// messages.
    ///
    /// ```
    /// use mep_neb::NebError;
    /// let e = NebError::Energy(Box::new(std::io::Error::other("disk gone")));
    /// assert!(e.energy_error::<std::io::Error>().is_some());
    /// assert!(e.energy_error::<std::fmt::Error>().is_none());
    /// ```
    pub fn energy_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            NebError::Energy(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// Result alias of mep-neb.
pub type Result<T> = std::result::Result<T, NebError>;
