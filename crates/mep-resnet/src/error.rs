//! The one error enum of mep-resnet.

use mep_tensor::TensorError;
use std::path::PathBuf;

/// Everything that can go wrong loading, saving or running a ResNet.
#[derive(Debug, thiserror::Error)]
pub enum ResNetError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, bad header, offsets out of range).
    #[error("{path}: not a valid safetensors file: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// A tensor's dtype is not one we read (f32, f16, bf16).
    #[error("{path}: tensor `{key}` has dtype {dtype}; supported are F32, F16 and BF16")]
    Dtype { path: PathBuf, key: String, dtype: String },
    /// A tensor the architecture needs is absent.
    #[error("{path}: missing tensor `{key}` (needed by {arch})")]
    MissingKey { path: PathBuf, key: String, arch: String },
    /// The checkpoint holds tensors the architecture does not use.
    #[error("{path}: unexpected tensor `{key}` for {arch} ({count} unexpected in all)")]
    UnexpectedKey {
        path: PathBuf,
        key: String,
        arch: String,
        count: usize,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{key}` has shape {found}, expected {expected}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: String,
        found: String,
    },
    /// A tensor holds NaN or ±∞: a model's weights and statistics must be finite (PyTorch would
    /// carry the NaN into every logit; refused at load instead).
    #[error(
        "{path}: tensor `{key}` holds {value} at index {index} ({count} non-finite values of {len}); \
         the checkpoint is damaged or was saved after training diverged"
    )]
    NonFinite {
        path: PathBuf,
        key: String,
        /// The first non-finite value (NaN, inf or -inf).
        value: f32,
        /// Its flat index.
        index: usize,
        /// How many values of the tensor are not finite.
        count: usize,
        /// The tensor's number of values.
        len: usize,
    },
    /// A batch norm's running variance is negative (its square root would be NaN).
    #[error(
        "{path}: tensor `{key}` holds the negative variance {value} at index {index} \
         ({count} negative values of {len}); a running variance is never below 0"
    )]
    NegativeVariance {
        path: PathBuf,
        key: String,
        /// The first negative value.
        value: f32,
        /// Its flat index.
        index: usize,
        /// How many values are negative.
        count: usize,
        /// The tensor's number of values.
        len: usize,
    },
    /// An unknown architecture name or cut point, or a cut the architecture does not have.
    #[error("{0}")]
    Config(String),
    /// An input of the wrong shape.
    #[error("input has shape {found}, expected {expected}")]
    Input { expected: String, found: String },
    /// A backend operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A layer rejected its input.
    #[error(transparent)]
    Nn(#[from] mep_nn::NnError),
}

/// Result alias of mep-resnet.
pub type Result<T> = std::result::Result<T, ResNetError>;
