//! mep-data: the datasets the experiment runs on, as PyTorch users know them.
//!
//! A [`Dataset`] has class names and a test split, and usually a train split. Samples are
//! 8-bit RGB images and class indices, numbered as torchvision numbers them, so an index
//! means the same image here and in a PyTorch script. [`Transform`] turns an image into
//! the normalised CHW floats a network takes; [`Loader`] batches a split on a background
//! thread so the engine never waits for data.

mod error;

pub use error::{DataError, Result};

use std::path::PathBuf;

/// An 8-bit RGB image, row-major HWC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// `height · width · 3` bytes.
    pub data: Vec<u8>,
}

/// Where a split's images live.
#[derive(Clone, Debug)]
pub enum Samples {
    /// All images of one size in memory, `n · height · width · 3` bytes (CIFAR-10, synthetic).
    InMemory { height: usize, width: usize, data: Vec<u8> },
    /// One file per image, decoded when asked for (image folders).
    Files(Vec<PathBuf>),
}

/// One split of a dataset: its images and their class indices.
#[derive(Clone, Debug)]
pub struct Split {
    pub samples: Samples,
    pub labels: Vec<usize>,
}

/// A classification dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// A short name for reports ("cifar10", "synthetic", the folder's path).
    pub name: String,
    /// Class names, indexed by class.
    pub classes: Vec<String>,
    /// The training split, when the dataset has one.
    pub train: Option<Split>,
    /// The test split (for a folder without splits, the whole folder).
    pub test: Split,
}
