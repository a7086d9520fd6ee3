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
