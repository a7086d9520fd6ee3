#![doc = include_str!("../README.md")]

pub mod forward;

use mep_resnet::ResNetError;
use mep_tensor::TensorError;

/// The one error enum of the `mep` crate.
#[derive(Debug, thiserror::Error)]
pub enum MepError {
    /// Loading or running the network failed.
    #[error(transparent)]
    ResNet(#[from] ResNetError),
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The command line or an input file is wrong in a way the other variants don't cover.
    #[error("{0}")]
    Usage(String),
}

/// Result alias of `mep`.
pub type Result<T> = std::result::Result<T, MepError>;
