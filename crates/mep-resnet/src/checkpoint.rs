//! Safetensors checkpoints with PyTorch / torchvision / timm key names.
//!
//! [`Checkpoint::load`] reads a whole `.safetensors` file into f32 tensors keyed by name: a
//! `module.` prefix (left by `DataParallel`) is stripped from every key, `*num_batches_tracked`
//! buffers are dropped, and F32, F16 and BF16 data is converted to f32. A model then
//! [`take`](Checkpoint::take)s each tensor it needs, checking its shape, and calls
//! [`finish`](Checkpoint::finish) to reject leftovers. [`save`] writes f32 tensors back in the same
//! format, atomically.
//!
//! ```
//! use mep_resnet::checkpoint::{save, Checkpoint};
//! use mep_tensor::Shape;
//! use std::collections::BTreeMap;
//!
//! let dir = std::env::temp_dir().join(format!("mep-ckpt-doctest-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("tiny.safetensors");
//!
//! let shape = Shape::new([2, 3]);
//! let weight = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let meta = BTreeMap::from([("arch".to_string(), "tiny".to_string())]);
//! save(&path, &[("fc.weight", &shape, &weight)], Some(&meta)).unwrap();
//!
//! let mut ckpt = Checkpoint::load(&path).unwrap();
//! assert_eq!(ckpt.metadata().get("arch").map(String::as_str), Some("tiny"));
//! let t = ckpt.take("fc.weight", &[2, 3], "tiny").unwrap();
//! assert_eq!(t.data, weight);
//! ckpt.finish("tiny").unwrap();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::error::{ResNetError, Result};
use mep_tensor::Shape;
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The prefix `torch.nn.DataParallel` puts in front of every key; stripped on load.
const DATA_PARALLEL_PREFIX: &str = "module.";
/// Keys with this suffix (BatchNorm's step counter) are dropped on load.
const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// One tensor of a checkpoint, converted to f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    /// The tensor's dimensions (`[]` for a 0-dim tensor, which holds one value).
    pub shape: Shape,
    /// The values, row-major; `data.len() == shape.numel()`.
    pub data: Vec<f32>,
}

/// The tensors of a safetensors checkpoint, as f32, keyed by PyTorch name.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: BTreeMap<String, TensorData>,
    metadata: BTreeMap<String, String>,
}

/// Refuses NaN or ±∞ anywhere, and a negative value in a batch norm's `running_var`: PyTorch
/// would carry either into NaN logits, which no later step can tell from a model's answer.
fn check_values(path: &Path, key: &str, data: &[f32]) -> Result<()> {
    let bad = |ok: &dyn Fn(f32) -> bool| {
        let mut it = data.iter().enumerate().filter(|(_, v)| !ok(**v));
        it.next().map(|(index, &value)| (index, value, 1 + it.count()))
    };
    if let Some((index, value, count)) = bad(&|v: f32| v.is_finite()) {
        return Err(ResNetError::NonFinite {
            path: path.to_path_buf(),
            key: key.to_string(),
            value,
            index,
            count,
            len: data.len(),
        });
    }
    if key == "running_var" || key.ends_with(".running_var") {
        if let Some((index, value, count)) = bad(&|v: f32| v >= 0.0) {
            return Err(ResNetError::NegativeVariance {
                path: path.to_path_buf(),
                key: key.to_string(),
                value,
                index,
                count,
                len: data.len(),
            });
        }
    }
    Ok(())
}

impl Checkpoint {
    /// An empty checkpoint; `path` is only used in error messages.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Checkpoint {
            path: path.into(),
            tensors: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// Reads and parses the whole safetensors file at `path` (see [`Checkpoint::from_bytes`]).
    ///
    /// Errors: [`ResNetError::Io`] if the file cannot be read, otherwise as `from_bytes`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ResNetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses the bytes of a safetensors file; `path_for_messages` names it in errors.
    ///
    /// A `module.` key prefix is stripped, `*num_batches_tracked` tensors are dropped, F32, F16
    /// and BF16 are converted to f32. Errors: [`ResNetError::Corrupt`] for anything that is not a
    /// well-formed safetensors file (or two keys that are equal once the prefix is stripped),
    /// [`ResNetError::Dtype`] for a tensor of any other dtype. Never panics.
    pub fn from_bytes(path_for_messages: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self> {
        let path = path_for_messages.into();
        let corrupt = |msg: String| ResNetError::Corrupt {
            path: path.clone(),
            msg,
        };
        precheck_offsets(bytes).map_err(&corrupt)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();

        // Sort by name so the dtype error (if several) and the duplicate error are deterministic.
        let mut views = st.tensors();
        views.sort_by(|a, b| a.0.cmp(&b.0));

        let mut tensors = BTreeMap::new();
        for (raw_key, view) in views {
            let key = raw_key.strip_prefix(DATA_PARALLEL_PREFIX).unwrap_or(&raw_key);
            if key.ends_with(NUM_BATCHES_TRACKED) {
                continue;
            }
            let data = to_f32(view.dtype(), view.data()).ok_or_else(|| ResNetError::Dtype {
                path: path.clone(),
                key: raw_key.clone(),
                dtype: view.dtype().to_string(),
            })?;
            let shape = Shape::new(view.shape());
            if data.len() != shape.numel() {
                return Err(corrupt(format!(
                    "tensor `{raw_key}` has shape {shape} but {} values",
                    data.len()
                )));
            }
            if tensors.contains_key(key) {
                return Err(corrupt(format!(
                    "tensor `{key}` appears twice (with and without the `{DATA_PARALLEL_PREFIX}` prefix)"
                )));
            }
            tensors.insert(key.to_string(), TensorData { shape, data });
        }
        Ok(Checkpoint {
            path,
            tensors,
            metadata,
        })
    }

    /// The file this checkpoint came from (or the name given to [`Checkpoint::new`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The string metadata of the file's header (`__metadata__`), empty if it had none.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The keys still present, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors still present.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensors are left.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&TensorData> {
        self.tensors.get(key)
    }

    /// Whether a tensor is stored under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Removes and returns the tensor under `key`, checking that its shape is `expected` and
    /// that its values are usable weights: finite, and not negative in a batch norm's
    /// `running_var`. Every model (classifier, decoder, optimiser state) loads through here.
    ///
    /// Errors: [`ResNetError::MissingKey`] (naming the path, the key and `arch`) if absent,
    /// [`ResNetError::Shape`] (naming the path, the key, expected and found shapes) if the shape
    /// differs, [`ResNetError::NonFinite`] or [`ResNetError::NegativeVariance`] (naming the
    /// path, the key, the first bad value and its index) for bad values; in those cases the
    /// tensor stays in the checkpoint.
    pub fn take(&mut self, key: &str, expected: &[usize], arch: &str) -> Result<TensorData> {
        let Some(t) = self.tensors.get(key) else {
            return Err(ResNetError::MissingKey {
                path: self.path.clone(),
                key: key.to_string(),
                arch: arch.to_string(),
            });
        };
        if t.shape.dims() != expected {
            return Err(ResNetError::Shape {
                path: self.path.clone(),
                key: key.to_string(),
                expected: format!("{} (for {arch})", Shape::from(expected)),
                found: t.shape.to_string(),
            });
        }
        check_values(&self.path, key, &t.data)?;
        Ok(self.tensors.remove(key).expect("present: checked above"))
    }

    /// Checks that the model took every tensor: [`ResNetError::UnexpectedKey`] naming the first
    /// leftover key (sorted order) and how many are left, `Ok` if none.
    pub fn finish(self, arch: &str) -> Result<()> {
        let count = self.tensors.len();
        match self.tensors.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(ResNetError::UnexpectedKey {
                path: self.path,
                key,
                arch: arch.to_string(),
                count,
            }),
        }
    }

    /// Stores `tensor` under `key` (replacing any previous one), for building checkpoints in code.
    pub fn insert(&mut self, key: impl Into<String>, tensor: TensorData) {
        self.tensors.insert(key.into(), tensor);
    }
}

/// Converts little-endian F32 / F16 / BF16 bytes to f32; `None` for any other dtype.
/// Makes no alignment assumption about `bytes`.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Rejects data offsets past the end of the buffer before the safetensors crate sees them: its
/// size check (`end + 8 + header_len == file_len`) can overflow, and panic, on crafted offsets
/// near `usize::MAX`. Anything this cannot parse is left for the safetensors crate to report.
fn precheck_offsets(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(len_bytes) = bytes.get(..8) else {
        return Ok(());
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let Some(header) = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
    else {
        return Ok(());
    };
    let data_len = bytes.len() - 8 - header.len();
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice::<serde_json::Value>(header) else {
        return Ok(());
    };
    for (name, info) in &entries {
        let Some(offsets) = info.get("data_offsets").and_then(|o| o.as_array()) else {
            continue;
        };
        for o in offsets {
            if let Some(o) = o.as_u64() {
                if o > data_len as u64 {
                    return Err(format!(
                        "tensor `{name}` has data offset {o} past the end of the data ({data_len} bytes)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A tensor borrowed for serialization: f32 data, or an int64 scalar (PyTorch's
/// `num_batches_tracked` counters).
enum OutView<'a> {
    F32 { shape: &'a [usize], data: &'a [f32] },
    I64Scalar(i64),
}

impl View for OutView<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            OutView::F32 { .. } => Dtype::F32,
            OutView::I64Scalar(_) => Dtype::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            OutView::F32 { shape, .. } => shape,
            OutView::I64Scalar(_) => &[],
        }
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            OutView::F32 { data, .. } => Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            OutView::I64Scalar(v) => Cow::Owned(v.to_le_bytes().to_vec()),
        }
    }
    fn data_len(&self) -> usize {
        match self {
            OutView::F32 { data, .. } => data.len() * 4,
            OutView::I64Scalar(_) => 8,
        }
    }
}

/// `bytes` (a safetensors file) with its JSON header's keys in sorted order. safetensors
/// writes `__metadata__` from a `HashMap`, so two saves of the same tensors and metadata
/// would differ in the order of the metadata keys, and so in their bytes and SHA-256 (which
/// a study's manifest records). serde_json's map is sorted; the data section is untouched
/// and its offsets stay right, since they count from the end of the header.
fn canonical_header(bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let bad = |what: &str| format!("serialized file unreadable ({what})");
    let size: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("no header size"))?;
    let end = usize::try_from(u64::from_le_bytes(size))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("header size"))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(&e.to_string()))?;
    let mut text = serde_json::to_string(&header).map_err(|e| bad(&e.to_string()))?;
    // safetensors pads the header with spaces so that the data starts 8-byte aligned.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// Writes f32 tensors as a safetensors file with the given (PyTorch) key names and optional
/// string metadata (e.g. `{"arch": "resnet50"}`).
///
/// The write is atomic ([`mep_fs::write_atomic`]): the bytes go to a temporary in the same
/// directory, are synced, and the file is then renamed over `path`, so a crash never leaves a
/// half-written file under the final name; an existing file is replaced. Errors: [`ResNetError::Shape`] if a tensor's value count
/// does not match its shape, [`ResNetError::Config`] for a repeated key,
/// [`ResNetError::Corrupt`] if serialization fails, [`ResNetError::Io`] (with the path) for I/O.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Shape, &[f32])],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    save_with_counters(path, tensors, &[], metadata)
}

/// As [`save`], plus int64 scalars (`*.num_batches_tracked`), so that PyTorch's
/// `load_state_dict(strict=True)` accepts the file as it is.
pub fn save_with_counters(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Shape, &[f32])],
    counters: &[(&str, i64)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = std::collections::BTreeSet::new();
    for (key, _) in counters {
        if !seen.insert(*key) {
            return Err(ResNetError::Config(format!(
                "{}: tensor `{key}` given twice to save",
                path.display()
            )));
        }
    }
    for (key, shape, data) in tensors {
        if shape.numel() != data.len() {
            return Err(ResNetError::Shape {
                path: path.to_path_buf(),
                key: key.to_string(),
                expected: format!("{} values for shape {shape}", shape.numel()),
                found: format!("{} values", data.len()),
            });
        }
        if !seen.insert(*key) {
            return Err(ResNetError::Config(format!(
                "{}: tensor `{key}` given twice to save",
                path.display()
            )));
        }
    }
    let views = tensors
        .iter()
        .map(|(key, shape, data)| {
            (
                *key,
                OutView::F32 {
                    shape: shape.dims(),
                    data,
                },
            )
        })
        .chain(counters.iter().map(|(key, v)| (*key, OutView::I64Scalar(*v))));
    let info: Option<HashMap<String, String>> =
        metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let bytes = safetensors::tensor::serialize(views, info).map_err(|e| ResNetError::Corrupt {
        path: path.to_path_buf(),
        msg: format!("cannot serialize: {e}"),
    })?;
    let bytes = canonical_header(bytes).map_err(|msg| ResNetError::Corrupt {
        path: path.to_path_buf(),
        msg,
    })?;

    mep_fs::write_atomic(path, &bytes).map_err(|e| ResNetError::Io {
        path: e.path,
        source: e.source,
    })
}
