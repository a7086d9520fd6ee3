//! The one error enum of mep-nn.

use mep_tensor::TensorError;

/// What a layer or optimiser can reject.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor handed to a layer has the wrong shape.
    #[error("{layer}: input has shape {found}, expected {expected}")]
    Shape {
        layer: &'static str,
        expected: String,
        found: String,
    },
    /// An optimiser was given a different set of parameters than on its first step.
    #[error("optimiser: {0}")]
    Optimizer(String),
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// Result alias of mep-nn.
pub type Result<T> = std::result::Result<T, NnError>;
