#![doc = include_str!("../README.md")]

pub mod data;
pub mod eval;
pub mod forward;
pub mod train;

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
    /// A layer or optimiser rejected its input.
    #[error(transparent)]
    Nn(#[from] mep_nn::NnError),
    /// A dataset could not be read.
    #[error(transparent)]
    Data(#[from] mep_data::DataError),
    /// A download or checksum failed.
    #[error(transparent)]
    Fetch(#[from] mep_fetch::FetchError),
    /// The command line or an input file is wrong in a way the other variants don't cover.
    #[error("{0}")]
    Usage(String),
}

/// Result alias of `mep`.
pub type Result<T> = std::result::Result<T, MepError>;
