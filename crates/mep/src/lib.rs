#![doc = include_str!("../README.md")]

pub mod certify;
pub mod connect;
pub mod data;
pub mod decoder;
pub mod device;
pub mod eval;
pub mod figures;
pub mod forward;
pub mod lock;
pub mod memory;
pub mod report;
pub mod study;
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
    /// Exact certification failed.
    #[error(transparent)]
    Certify(#[from] mep_certify::CertifyError),
    /// The path search failed.
    #[error(transparent)]
    Neb(#[from] mep_neb::NebError),
    /// The command line or an input file is wrong in a way the other variants don't cover.
    #[error("{0}")]
    Usage(String),
    /// A file or folder of a study could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a `--pairs-file` is wrong: malformed, out of range, a repeat, of two
    /// classes, or a pair of one image with itself.
    #[error("{path}:{line}: {msg}")]
    PairsFile {
        path: std::path::PathBuf,
        line: usize,
        msg: String,
    },
    /// A study folder already holds a study of another configuration.
    #[error(
        "{manifest} was written by another configuration; these settings differ \
         (recorded → now): {}. Use another --out, or delete the folder to start over",
        differences.join("; ")
    )]
    ConfigMismatch {
        manifest: std::path::PathBuf,
        differences: Vec<String>,
    },
    /// A results file (results.jsonl, manifest.json) is unreadable or inconsistent.
    #[error("{path}: {msg}")]
    Results { path: std::path::PathBuf, msg: String },
    /// Another process is writing the same output folder or file.
    #[error(
        "{} is in use by {holder}; wait for it to finish, or write elsewhere \
         (lock file {}; a lock left by a process that has died is taken over automatically)",
        what.display(),
        lock.display()
    )]
    Locked {
        what: std::path::PathBuf,
        holder: String,
        lock: std::path::PathBuf,
    },
    /// A configuration needs more memory than the machine has (see [`memory`]); refused
    /// before anything is created.
    #[error("{what} needs about {needed}; this machine has {available} available; lower {lower}")]
    Memory {
        /// The settings that decide the need (`--batch-size 128 at --size 100000`).
        what: String,
        /// The estimate, as text (`4.1 TiB`).
        needed: String,
        /// What the machine has, as text.
        available: String,
        /// What to lower (`--batch-size or --size`).
        lower: String,
    },
    /// Shards do not fit together: their manifests differ, or pairs are missing or repeated.
    #[error("mep merge: {0}")]
    Merge(String),
}

/// Result alias of `mep`.
pub type Result<T> = std::result::Result<T, MepError>;
