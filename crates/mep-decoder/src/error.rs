//! The one error enum of mep-decoder.

use mep_nn::NnError;
use mep_resnet::ResNetError;
use mep_tensor::TensorError;
use std::path::PathBuf;

/// Everything that can go wrong building, running, saving or loading a decoder.
#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    /// A configuration that describes no decoder (F not divisible by 16, a size that 2×
    /// upsampling cannot reach, zero filters, ...).
    #[error("decoder config: {0}")]
    Config(String),
    /// A file that is a safetensors checkpoint but not a decoder (a classifier, say).
    #[error("{path}: not a decoder checkpoint: {why}")]
    NotADecoder { path: PathBuf, why: String },
    /// A decoder made for another network, input size or cut than the one asked for.
    #[error("{path}: this decoder was made for {what} {found}, but {what} {expected} was asked for")]
    Mismatch {
        path: PathBuf,
        /// What differs: `arch`, `cut`, `input size` or `feature shape`.
        what: &'static str,
        expected: String,
        found: String,
    },
    /// A point or target of the wrong shape.
    #[error("{what} has shape {found}, expected {expected}")]
    Input {
        what: &'static str,
        expected: String,
        found: String,
    },
    /// Reading or writing the checkpoint failed (I/O, corrupt file, missing tensor, shape).
    #[error(transparent)]
    Checkpoint(#[from] ResNetError),
    /// A layer or the optimiser rejected its input.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// Result alias of mep-decoder.
pub type Result<T> = std::result::Result<T, DecoderError>;
