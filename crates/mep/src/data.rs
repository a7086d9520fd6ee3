//! Opening the dataset a command names with `--data`, and the transform a model was
//! trained with.

use crate::{MepError, Result};
use mep_data::{Dataset, Split, Transform, IMAGENET_MEAN, IMAGENET_STD};
use std::collections::BTreeMap;
use std::path::Path;

/// How `--data` names a dataset:
/// - `synthetic` (or `synthetic:SEED`): the project's own demo set, made on the spot;
/// - `cifar10`: CIFAR-10 from the download cache (`cargo xtask fetch cifar-10-binary`),
///   checked against its published MD5;
/// - a path: `cifar-10-binary.tar.gz`, an extracted `cifar-10-batches-bin/` folder, or an
///   image folder in torchvision's ImageFolder layout (with or without `train/`/`test/`).
pub fn open_dataset(spec: &str) -> Result<Dataset> {
    if spec == "synthetic" || spec.starts_with("synthetic:") {
        let mut cfg = mep_data::SyntheticConfig::default();
        if let Some(seed) = spec.strip_prefix("synthetic:") {
            cfg.seed = seed
                .parse()
                .map_err(|_| MepError::option("--data", spec, format!("the seed `{seed}` is not an integer")))?;
        }
        return Ok(mep_data::synthetic(&cfg));
    }
    if spec == "cifar10" {
        let manifest = mep_fetch::Manifest::builtin();
        let entry = manifest.get("cifar-10-binary")?;
        let path = mep_fetch::cache_dir().join(&entry.file);
        if !path.exists() {
            return Err(MepError::option(
                "--data",
                spec,
                format!(
                    "{} is not in the cache yet; run `cargo xtask fetch cifar-10-binary` \
                     (or download {} yourself and put it there)",
                    path.display(),
                    entry.url
                ),
            ));
        }
        return Ok(mep_data::load_cifar10_archive(&path, true)?);
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(MepError::option(
            "--data",
            spec,
            format!("no such file or folder; {DATA_ACCEPTS}"),
        ));
    }
    if path.is_file() {
        // The only file `--data` takes is the gzip'd CIFAR-10 archive: anything else (an
        // image, a CSV) would otherwise be blamed on a corrupt download by the MD5 check.
        if !starts_with_gzip_magic(path)? {
            let what = match sniff_image(path) {
                Some(kind) => format!("{kind} image, not a dataset"),
                None => "not a dataset (the only file --data reads is a gzip'd CIFAR-10 archive)".to_string(),
            };
            return Err(MepError::option("--data", spec, format!("{what}; {DATA_ACCEPTS}")));
        }
        return Ok(mep_data::load_cifar10_archive(path, true)?);
    }
    if path.join("cifar-10-batches-bin").is_dir() {
        return Ok(mep_data::load_cifar10_dir(path.join("cifar-10-batches-bin"))?);
    }
    if path.join("data_batch_1.bin").is_file() {
        return Ok(mep_data::load_cifar10_dir(path)?);
    }
    Ok(mep_data::load_image_folder(path)?)
}

/// What `--data` takes, for error messages.
const DATA_ACCEPTS: &str = "--data takes `synthetic`, `cifar10`, the CIFAR-10 archive cifar-10-binary.tar.gz, \
     its extracted cifar-10-batches-bin/ folder, or a folder of images in torchvision's layout \
     (root/<class>/<image>, or root/train/<class>/<image> and root/test/<class>/<image>)";

/// Whether the file at `path` begins with the two bytes of a gzip stream.
fn starts_with_gzip_magic(path: &Path) -> Result<bool> {
    use std::io::Read;
    let io = |source| MepError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(2);
    std::fs::File::open(path)
        .map_err(io)?
        .take(2)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(head == [0x1f, 0x8b])
}

/// "a PNG" or "a JPEG" when the file is such an image (by its content), "an" for another
/// image format, `None` when it is no image.
fn sniff_image(path: &Path) -> Option<&'static str> {
    let format = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .ok()?
        .format()?;
    Some(match format {
        image::ImageFormat::Png => "a PNG",
        image::ImageFormat::Jpeg => "a JPEG",
        _ => "an",
    })
}

/// The side of the square images the network sees: `--size` when given, else the
/// dataset's own size (which must then be the same for every image).
pub fn image_size(split: &Split, size: Option<usize>) -> Result<usize> {
    if let Some(s) = size {
        if s == 0 {
            return Err(MepError::option("--size", 0, "must be positive"));
        }
        return Ok(s);
    }
    let (h, w) = match &split.samples {
        mep_data::Samples::InMemory { height, width, .. } => (*height, *width),
        mep_data::Samples::Files(_) => mep_data::check_uniform_size(split)?,
    };
    if h != w {
        return Err(MepError::unusable(
            "the dataset's images",
            format!("{h}x{w}, not square; pass --size to resize them"),
        ));
    }
    Ok(h)
}

/// The metadata keys under which a checkpoint records how its inputs were prepared, so
/// that `mep eval` (and the path search) feed it what it was trained on.
pub const META_SIZE: &str = "mep.input_size";
pub const META_MEAN: &str = "mep.mean";
pub const META_STD: &str = "mep.std";
pub const META_CLASSES: &str = "mep.classes";

/// The evaluation transform (resize and normalise, no augmentation).
pub fn eval_transform(size: usize) -> Transform {
    Transform {
        size: Some(size),
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        augment: None,
    }
}

/// Metadata describing `t` and the class names.
pub fn transform_metadata(t: &Transform, classes: &[String]) -> BTreeMap<String, String> {
    let list = |v: &[f32; 3]| format!("{},{},{}", v[0], v[1], v[2]);
    BTreeMap::from([
        (META_SIZE.to_string(), t.size.map_or(String::new(), |s| s.to_string())),
        (META_MEAN.to_string(), list(&t.mean)),
        (META_STD.to_string(), list(&t.std)),
        (META_CLASSES.to_string(), classes.join("\n")),
    ])
}

/// The transform a checkpoint's inputs get: the one recorded in its metadata (`recorded`,
/// from [`transform_from_metadata`]) with its size replaced by `size` when given; without
/// a record, resize to `size` (else the images' own size) with ImageNet normalisation.
/// `mep eval` and `mep connect` both feed the network through this.
pub fn resolve_transform(recorded: Option<Transform>, size: Option<usize>, split: &Split) -> Result<Transform> {
    Ok(match (recorded, size) {
        (Some(t), None) => t,
        (Some(t), Some(s)) => Transform { size: Some(s), ..t },
        (None, size) => eval_transform(image_size(split, size)?),
    })
}

/// The transform recorded in a checkpoint's metadata, if it has one.
pub fn transform_from_metadata(meta: &BTreeMap<String, String>) -> Option<Transform> {
    let triple = |s: &str| -> Option<[f32; 3]> {
        let v: Vec<f32> = s.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
        <[f32; 3]>::try_from(v).ok()
    };
    Some(Transform {
        size: meta.get(META_SIZE)?.parse().ok(),
        mean: triple(meta.get(META_MEAN)?)?,
        std: triple(meta.get(META_STD)?)?,
        augment: None,
    })
}

/// The smallest input side a ResNet takes (`mep_resnet` refuses smaller).
pub const MIN_SIZE: usize = 8;

/// Refuses a `--size` below [`MIN_SIZE`] (train, eval and decoder train share the bound).
pub(crate) fn check_size(size: Option<usize>) -> Result<()> {
    match size.filter(|&s| s < MIN_SIZE) {
        Some(s) => Err(MepError::option(
            "--size",
            s,
            format!("the networks take inputs of at least {MIN_SIZE}×{MIN_SIZE}"),
        )),
        None => Ok(()),
    }
}
