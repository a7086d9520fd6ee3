//! The one error enum of mep-data.

use std::path::PathBuf;

/// Everything that can go wrong reading or transforming a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file has the wrong size or content for its format (truncated CIFAR batch, bad MD5,
    /// undecodable image).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A folder holds no usable images, or its layout is not `root/<class>/<image>`.
    #[error("{path}: {msg}")]
    Layout { path: PathBuf, msg: String },
    /// Images of different sizes where one size is needed (give `--size` to resize them).
    #[error("{path}: image is {found}, but earlier images are {expected}; pass --size to resize all images")]
    MixedSizes {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A request outside the dataset (index, split, class) or a bad transform setting.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of mep-data.
pub type Result<T> = std::result::Result<T, DataError>;
