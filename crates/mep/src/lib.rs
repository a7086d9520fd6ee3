#![doc = include_str!("../README.md")]

pub mod attack;
pub mod certify;
pub mod connect;
pub mod data;
pub mod decoder;
pub mod device;
pub mod eval;
pub mod figures;
pub mod forward;
pub mod graph;
pub mod lock;
pub mod memory;
pub mod report;
pub mod study;
pub mod train;

use mep_resnet::ResNetError;
pub use mep_tensor::precision::Precision;
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
    /// A command-line option (or an environment setting) has a value the command cannot
    /// use: `--pivots 1: a path needs at least 2 (its endpoints)`.
    #[error("{option}{}: {reason}", value.as_deref().map(|v| format!(" {v}")).unwrap_or_default())]
    Option {
        /// The option as typed (`--pivots`), or `NAME=value` for an environment setting.
        option: String,
        /// Its value, when the message shows it.
        value: Option<String>,
        /// What is wrong with it, and what to do.
        reason: String,
    },
    /// A model and a dataset (or a study) disagree on the number of classes.
    #[error("{model} has {model_classes} classes but {data} has {data_classes}")]
    ClassMismatch {
        /// The model, as the message names it (`model.safetensors: the model`).
        model: String,
        model_classes: usize,
        /// The dataset or study, as the message names it (`the dataset synthetic`).
        data: String,
        data_classes: usize,
    },
    /// Something a command needs is not where it looks: a manifest, results, a decoder, a
    /// tensor of a file, a training state.
    #[error("{}: {what}{}", path.display(), hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Missing {
        /// Where it was looked for.
        path: std::path::PathBuf,
        /// What is missing.
        what: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// What a folder or file already holds disagrees with what was asked: another run,
    /// certificates made with other settings, another checkpoint or dataset.
    #[error("{}: {reason}", path.display())]
    Conflict {
        /// The folder or file.
        path: std::path::PathBuf,
        /// What disagrees, and what to do.
        reason: String,
    },
    /// An input cannot be used as given: images of unequal sizes, an empty tensor, a figure
    /// asked with too few points, a pair list the model leaves empty.
    #[error("{what}: {reason}")]
    Unusable {
        /// The input (`test image 7`, `a loss plot`).
        what: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Training left finite numbers: the loss became NaN or infinite.
    #[error("the {loss} became {value} in epoch {epoch} (step {step} of {steps}); lower --lr (now {lr})")]
    Diverged {
        /// Which loss (`loss`, `reconstruction loss`).
        loss: &'static str,
        value: f64,
        /// The epoch, counted from 1.
        epoch: usize,
        /// The step of the epoch whose loss it was, counted from 1.
        step: usize,
        /// The steps of a whole epoch.
        steps: usize,
        /// The learning rate it diverged at.
        lr: f32,
    },
    /// A record could not be encoded as JSON.
    #[error("{what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A decoder was refused: made for another network, cut or input size, or malformed.
    #[error(transparent)]
    Decoder(#[from] mep_decoder::DecoderError),
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

impl MepError {
    /// [`MepError::Option`]: `option` set to `value` is wrong because of `reason`.
    ///
    /// ```
    /// let e = mep::MepError::option("--pivots", 1, "a path needs at least 2 (its endpoints)");
    /// assert_eq!(e.to_string(), "--pivots 1: a path needs at least 2 (its endpoints)");
    /// ```
    pub fn option(option: impl Into<String>, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        MepError::Option {
            option: option.into(),
            value: Some(value.to_string()),
            reason: reason.into(),
        }
    }

    /// [`MepError::Option`] whose message names the option without a value.
    pub fn option_unset(option: impl Into<String>, reason: impl Into<String>) -> Self {
        MepError::Option {
            option: option.into(),
            value: None,
            reason: reason.into(),
        }
    }

    /// [`MepError::Unusable`]: `what` cannot be used because of `reason`.
    pub fn unusable(what: impl Into<String>, reason: impl Into<String>) -> Self {
        MepError::Unusable {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of `mep`.
pub type Result<T> = std::result::Result<T, MepError>;

/// A [`crate::Precision`] in files: its name (`fp32`, `tf32`, `bf16`).
pub(crate) mod precision_name {
    use crate::Precision;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}
