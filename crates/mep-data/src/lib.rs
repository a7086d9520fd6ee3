#![doc = include_str!("../README.md")]

pub mod cifar;
mod error;
pub mod folder;
pub mod loader;
pub mod synthetic;
pub mod transform;

pub use cifar::{load_cifar10_archive, load_cifar10_dir, CIFAR10_MD5};
pub use error::{DataError, Result};
pub use folder::{check_uniform_size, load_image_folder};
pub use loader::{Batch, Epoch, Loader};
pub use synthetic::{synthetic, SyntheticConfig};
pub use transform::{Augment, Rng, Transform, IMAGENET_MEAN, IMAGENET_STD};

use std::path::{Path, PathBuf};

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

impl Image {
    /// The byte offset of channel `c` of pixel (`y`, `x`) in [`Image::data`].
    pub fn offset(&self, y: usize, x: usize, c: usize) -> usize {
        (y * self.width + x) * 3 + c
    }
}

impl Split {
    /// The first `n` images (all of them when `n` is larger): a smaller training set for
    /// quick runs. Interleaved labels (CIFAR-10's shuffled order, the synthetic set's
    /// `i % 10`) keep a prefix nearly balanced.
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        let samples = match &self.samples {
            Samples::InMemory { height, width, data } => Samples::InMemory {
                height: *height,
                width: *width,
                data: data[..n * height * width * 3].to_vec(),
            },
            Samples::Files(files) => Samples::Files(files[..n].to_vec()),
        };
        Split {
            samples,
            labels: self.labels[..n].to_vec(),
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The file behind sample `i`, for splits read from files.
    pub fn path(&self, i: usize) -> Option<&Path> {
        match &self.samples {
            Samples::Files(paths) => paths.get(i).map(PathBuf::as_path),
            Samples::InMemory { .. } => None,
        }
    }

    /// Image `i` as 8-bit RGB: copied out of memory, or read and decoded from its file
    /// (any PNG or JPEG, grey or with alpha, converted to RGB; an error names the file).
    pub fn image(&self, i: usize) -> Result<Image> {
        self.check_index(i)?;
        match &self.samples {
            Samples::InMemory { height, width, data } => {
                let n = height * width * 3;
                // The fields are public, so a hand-built split may be short: report it, don't panic.
                let bytes = data.get(i * n..(i + 1) * n).ok_or_else(|| {
                    DataError::Invalid(format!(
                        "in-memory split holds {} bytes, too few for image {i} of {height}x{width}",
                        data.len()
                    ))
                })?;
                Ok(Image {
                    width: *width,
                    height: *height,
                    data: bytes.to_vec(),
                })
            }
            Samples::Files(paths) => {
                let path = paths.get(i).ok_or_else(|| {
                    DataError::Invalid(format!(
                        "split has {} labels but only {} files",
                        self.len(),
                        paths.len()
                    ))
                })?;
                decode_image(path)
            }
        }
    }

    /// The class index of sample `i`.
    pub fn label(&self, i: usize) -> Result<usize> {
        self.check_index(i)?;
        Ok(self.labels[i])
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.len() {
            Ok(())
        } else {
            Err(DataError::Invalid(format!(
                "sample index {i} is out of range: the split has {} samples",
                self.len()
            )))
        }
    }
}

/// Reads an image file as RGB8. The format is sniffed from the content, not the extension,
/// so a mislabelled file still loads.
pub(crate) fn decode_image(path: &Path) -> Result<Image> {
    let reader = image::ImageReader::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_with(reader, path)
}

/// Decodes the bytes of an image file (PNG or JPEG, sniffed from the content) as RGB8, as
/// [`Split::image`] decodes a file; `path_for_messages` names it in errors. The `image`
/// crate's default limits apply, so a header claiming a huge size is refused before its
/// pixels are allocated.
pub fn decode_image_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<Image> {
    decode_with(image::ImageReader::new(std::io::Cursor::new(bytes)), path_for_messages)
}

fn decode_with<R: std::io::BufRead + std::io::Seek>(reader: image::ImageReader<R>, path: &Path) -> Result<Image> {
    let format_err = |e: image::ImageError| match e {
        image::ImageError::IoError(source) => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => DataError::Format {
            path: path.to_path_buf(),
            msg: format!("cannot decode image: {other}"),
        },
    };
    let reader = reader.with_guessed_format().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let rgb = reader.decode().map_err(format_err)?.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(Image {
        width,
        height,
        data: rgb.into_raw(),
    })
}

impl Dataset {
    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The split called `name`: "train" or "test".
    pub fn split(&self, name: &str) -> Result<&Split> {
        match name {
            "train" => self
                .train
                .as_ref()
                .ok_or_else(|| DataError::Invalid(format!("dataset {} has no train split (only \"test\")", self.name))),
            "test" => Ok(&self.test),
            other => Err(DataError::Invalid(format!(
                "unknown split \"{other}\": expected \"train\" or \"test\""
            ))),
        }
    }
}
