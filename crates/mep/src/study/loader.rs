//! [`Study`]: a study folder opened for reading, with its network, so that a saved path can
//! be read back and checked against the space it belongs to.

use super::{read_results, Manifest, PairResult, MANIFEST, RESULTS};
use crate::data::open_dataset;
use crate::{MepError, Result};
use mep_data::{Dataset, Rng, Split, Transform};
use mep_resnet::{Arch, Checkpoint, Cut, FoldedResNet};
use mep_tensor::{Backend, CpuBackend, Tensor};
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shape of one point at `cut` of `net` fed `input_size`² images (`[F]` at `pool`,
/// `[C, H, W]` elsewhere), found by encoding a blank image: what a saved path's points and
/// a decoder's inputs have.
pub fn point_shape<B: Backend>(b: &B, net: &FoldedResNet<B>, cut: Cut, input_size: usize) -> Result<Vec<usize>> {
    let probe = Tensor::zeros(b, [1, 3, input_size, input_size])?;
    let z = net.encode(b, &probe, cut)?;
    Ok(z.shape.dims()[1..].to_vec())
}

/// The final path of a (pair, space) as `mep connect` saved it: `pivots` points of
/// `point_shape` (the space's own coordinates: the normalised image for `input`),
/// endpoints included.
#[derive(Clone, Debug)]
pub struct PathPivots {
    /// The path file.
    pub file: PathBuf,
    /// The space.
    pub cut: Cut,
    /// P, the number of points (2 for a `linear` result: the straight line's endpoints).
    pub pivots: usize,
    /// The shape of one point.
    pub point_shape: Vec<usize>,
    /// `pivots · dim` values, row-major.
    pub data: Vec<f32>,
}

impl PathPivots {
    /// D, the number of coordinates of a point.
    pub fn dim(&self) -> usize {
        self.point_shape.iter().product()
    }

    /// Point `p` of the path.
    pub fn pivot(&self, p: usize) -> &[f32] {
        let d = self.dim();
        &self.data[p * d..(p + 1) * d]
    }
}

/// A study folder opened for reading: the backend, the folded network, the manifest and
/// folder, and (opened when first needed) the dataset. What `mep certify` and the figures
/// read a study through; [`crate::figures::FigureContext`] adds the decoders.
pub struct Study<B: Backend> {
    pub backend: B,
    pub net: FoldedResNet<B>,
    pub manifest: Manifest,
    /// The study folder (path files are relative to it).
    pub dir: PathBuf,
    dataset: OnceCell<Dataset>,
    shapes: RefCell<BTreeMap<Cut, Vec<usize>>>,
}

impl Study<CpuBackend> {
    /// Opens the study folder `dir` of `mep connect` on the CPU backend: its manifest and
    /// the network (the manifest's checkpoint, as recorded or else in `dir`, checked against
    /// the recorded SHA-256). The dataset (the manifest's `data`) is opened when first
    /// needed.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| MepError::Missing {
            path: dir.to_path_buf(),
            what: "no manifest.json here".into(),
            hint: Some("figures need a folder that `mep connect --out` wrote".into()),
        })?;
        let arch: Arch = manifest.settings.arch.parse()?;
        let weights = find_weights(dir, &manifest)?;
        let b = CpuBackend::new();
        let net = FoldedResNet::load(&b, arch, &weights)?;
        Study::new(b, net, manifest, dir)
    }
}

/// The study's checkpoint: the manifest's path as recorded (relative to the working
/// folder), else relative to the study folder, else its file name in the study folder or
/// its `model/`; its SHA-256 must be the recorded one.
fn find_weights(dir: &Path, m: &Manifest) -> Result<PathBuf> {
    let mut candidates = vec![m.weights.clone()];
    if m.weights.is_relative() {
        candidates.push(dir.join(&m.weights));
    }
    if let Some(name) = m.weights.file_name() {
        candidates.push(dir.join(name));
        candidates.push(dir.join("model").join(name));
    }
    let found = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| MepError::Missing {
            path: dir.join(MANIFEST),
            what: format!("the study's checkpoint {} is not there", m.weights.display()),
            hint: Some(format!(
                "looked at {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })?;
    let sha = mep_fetch::Checksum::of_file(found, mep_fetch::Algorithm::Sha256)?;
    if sha.hex() != m.settings.weights_sha256 {
        return Err(MepError::Conflict {
            path: found.clone(),
            reason: format!(
                "SHA-256 {} but the study was run with a checkpoint of SHA-256 {} (recorded in {})",
                sha.hex(),
                m.settings.weights_sha256,
                dir.join(MANIFEST).display()
            ),
        });
    }
    Ok(found.clone())
}

impl<B: Backend> Study<B> {
    /// The study in `dir` described by `manifest`, drawn with `net` on
    /// `backend`; no decoders yet. Errors when the network is not the study's architecture
    /// or has another number of classes.
    pub fn new(backend: B, net: FoldedResNet<B>, manifest: Manifest, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let s = &manifest.settings;
        if net.arch.name() != s.arch {
            return Err(MepError::Conflict {
                path: dir,
                reason: format!(
                    "the network is a {} but the study here was run with a {}",
                    net.arch.name(),
                    s.arch
                ),
            });
        }
        if net.num_classes != s.classes.len() {
            return Err(MepError::ClassMismatch {
                model: "the network".into(),
                model_classes: net.num_classes,
                data: format!("the study in {} ({})", dir.display(), s.classes.join(", ")),
                data_classes: s.classes.len(),
            });
        }
        Ok(Study {
            backend,
            net,
            manifest,
            dir,
            dataset: OnceCell::new(),
            shapes: RefCell::new(BTreeMap::new()),
        })
    }

    /// The same study with `data` as the study's dataset (instead of opening the
    /// manifest's `data`). Errors when its classes or test split differ from the study's.
    pub fn with_dataset(self, data: Dataset) -> Result<Self> {
        self.check_dataset(&data, "the dataset given")?;
        let _ = self.dataset.set(data);
        Ok(self)
    }

    fn check_dataset(&self, d: &Dataset, what: &str) -> Result<()> {
        let s = &self.manifest.settings;
        if d.classes != s.classes || d.test.len() != s.test_images {
            return Err(MepError::Conflict {
                path: self.dir.clone(),
                reason: format!(
                    "{what} ({}: {} classes, {} test images) is not the study's ({}: {} classes, {} test images)",
                    d.name,
                    d.classes.len(),
                    d.test.len(),
                    s.dataset,
                    s.classes.len(),
                    s.test_images
                ),
            });
        }
        Ok(())
    }

    /// The study's dataset: the one given to [`Study::with_dataset`], else the
    /// manifest's `data` opened now.
    pub fn dataset(&self) -> Result<&Dataset> {
        if let Some(d) = self.dataset.get() {
            return Ok(d);
        }
        let d = open_dataset(&self.manifest.data)?;
        self.check_dataset(&d, &format!("--data {} (from {})", self.manifest.data, RESULTS))?;
        Ok(self.dataset.get_or_init(|| d))
    }

    /// The study's test split.
    pub fn test_split(&self) -> Result<&Split> {
        Ok(&self.dataset()?.test)
    }

    /// The side of the images the network sees: the manifest's input size, else the
    /// dataset's images'.
    pub fn input_size(&self) -> Result<usize> {
        match self.manifest.settings.input_size {
            Some(s) => Ok(s),
            None => crate::data::image_size(self.test_split()?, None),
        }
    }

    /// The transform that makes a test image a network input.
    pub fn transform(&self) -> Result<Transform> {
        let s = &self.manifest.settings;
        Ok(Transform::new(Some(self.input_size()?), s.mean, s.std))
    }

    /// The cut of a space of the study (`input` or a cut of the architecture).
    pub fn space_cut(&self, space: &str) -> Result<Cut> {
        let cut: Cut = space.parse()?;
        self.net.arch.position(cut)?;
        Ok(cut)
    }

    /// The shape of one point at `cut` (`[3, S, S]` at `input`).
    pub fn point_shape(&self, cut: Cut) -> Result<Vec<usize>> {
        if let Some(s) = self.shapes.borrow().get(&cut) {
            return Ok(s.clone());
        }
        let s = point_shape(&self.backend, &self.net, cut, self.input_size()?)?;
        self.shapes.borrow_mut().insert(cut, s.clone());
        Ok(s)
    }

    /// The study's results (`dir/results.jsonl`).
    pub fn results(&self) -> Result<Vec<PairResult>> {
        Ok(read_results(&self.dir.join(RESULTS), true)?.0)
    }

    /// The final path of `result`, read from its path file and checked: the file exists,
    /// holds a tensor `pivots` of shape `[P ≥ 2, …the space's point shape…]` with finite
    /// values.
    pub fn read_path(&self, result: &PairResult) -> Result<PathPivots> {
        let cut = self.space_cut(&result.space)?;
        let rel = result.path_file.as_ref().ok_or_else(|| MepError::Results {
            path: self.dir.join(RESULTS),
            msg: format!(
                "pair {} in space {} has no path file (category {}{})",
                result.pair,
                result.space,
                result.category,
                result.message.as_deref().map_or(String::new(), |m| format!(": {m}"))
            ),
        })?;
        let file = self.dir.join(rel);
        if !file.is_file() {
            return Err(MepError::Results {
                path: file.clone(),
                msg: format!(
                    "the path file of pair {} in space {} is missing (named in {})",
                    result.pair,
                    result.space,
                    self.dir.join(RESULTS).display()
                ),
            });
        }
        let mut ck = Checkpoint::load(&file)?;
        let point_shape = self.point_shape(cut)?;
        let t = ck.get("pivots").ok_or_else(|| MepError::Results {
            path: file.clone(),
            msg: format!(
                "no tensor `pivots` (it has {})",
                ck.keys().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let dims = t.shape.dims().to_vec();
        if dims.len() != point_shape.len() + 1 || dims[0] < 2 || dims[1..] != point_shape[..] {
            return Err(MepError::Results {
                path: file.clone(),
                msg: format!(
                    "tensor `pivots` has shape {dims:?}; a path in space `{}` of this study is [P ≥ 2, {}]",
                    result.space,
                    point_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let pivots = dims[0];
        let data = ck.take("pivots", &dims, &self.manifest.settings.arch)?.data;
        if let Some(k) = data.iter().position(|v| !v.is_finite()) {
            return Err(MepError::Results {
                path: file.clone(),
                msg: format!(
                    "tensor `pivots` holds {} at point {} of {pivots}",
                    data[k],
                    k / point_shape.iter().product::<usize>()
                ),
            });
        }
        Ok(PathPivots {
            file,
            cut,
            pivots,
            point_shape,
            data,
        })
    }

    /// Test images `indices` through the network's transform, as one `[n, 3, S, S]` batch.
    pub fn test_inputs(&self, indices: &[usize]) -> Result<Tensor<B>> {
        let t = self.transform()?;
        self.test_images(indices, &t)
    }

    /// Test images `indices` through `transform`, as one `[n, 3, H, W]` batch.
    pub fn test_images(&self, indices: &[usize], transform: &Transform) -> Result<Tensor<B>> {
        let split = self.test_split()?;
        let mut data = Vec::new();
        let mut hw = None;
        for &i in indices {
            if i >= split.len() {
                return Err(MepError::unusable(
                    format!("test image {i}"),
                    format!(
                        "out of range: the test split of {} has {} images",
                        self.manifest.settings.dataset,
                        split.len()
                    ),
                ));
            }
            let img = split.image(i)?;
            let (h, w) = transform.output_hw(&img);
            if *hw.get_or_insert((h, w)) != (h, w) {
                return Err(MepError::unusable(
                    format!("test image {i}"),
                    format!("{h}x{w} after the transform, the others {hw:?}"),
                ));
            }
            let start = data.len();
            data.resize(start + 3 * h * w, 0.0);
            transform.apply(&img, &mut Rng::new(0), &mut data[start..])?;
        }
        let (h, w) = hw.unwrap_or((0, 0));
        Ok(Tensor::from_vec(&self.backend, [indices.len(), 3, h, w], data)?)
    }
}
