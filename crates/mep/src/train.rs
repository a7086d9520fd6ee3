//! `mep train`: train or fine-tune a ResNet with our own engine, batch norm in training
//! mode, Adam (the paper's choice) or SGD with momentum, cosine learning-rate decay, a
//! checkpoint after every epoch and `--resume` from the last one.

use crate::data::{eval_transform, image_size, open_dataset, transform_metadata};
use crate::device::Device;
use crate::eval::{argmax_rows, evaluate, EvalReport};
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_data::{Augment, Loader, Transform};
use mep_nn::{Adam, Optimizer, OptimizerState, Sgd};
use mep_resnet::{Arch, Checkpoint, FoldedResNet, ResNet, TrainStepOutput};
use mep_tensor::{AdamParams, Backend, SgdParams, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// What `mep train` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainArgs {
    pub arch: String,
    /// A checkpoint to start from (e.g. ImageNet weights); its classifier is replaced when
    /// the class count differs.
    pub init: Option<PathBuf>,
    pub data: String,
    /// Input resolution (images are resized to size×size); default: the images' own.
    pub size: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// Random crop (padding 4) and horizontal flip during training.
    pub augment: bool,
    /// Stem width of a network trained from scratch (default: the architecture's).
    pub width: Option<usize>,
    pub seed: u64,
    /// Where checkpoints and the report go.
    pub out: PathBuf,
    /// Continue from `out/checkpoint.safetensors`; refused when the run there was
    /// started with other settings ([`TrainSettings`]).
    pub resume: bool,
    /// Replace the run already in `out` (its checkpoint, model and report). Without it or
    /// `resume`, a folder holding a run is refused.
    #[serde(default)]
    pub overwrite: bool,
    /// Stop after this many epochs in this run (for time-limited jobs; continue with
    /// `resume`). The schedule still spans `epochs`.
    #[serde(default)]
    pub stop_after: Option<usize>,
    /// Stop after this many optimizer steps in this run, inside an epoch if need be: for
    /// checking that a recipe reproduces a run's first steps ([`TrainReport::first_step_losses`]).
    /// A stop inside an epoch saves nothing (no checkpoint, model or report), because a run
    /// resumes only from a whole epoch.
    #[serde(default)]
    pub stop_after_steps: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
    /// Where it computes (not part of the run's identity: a run may resume on another device).
    #[serde(skip)]
    pub device: Device,
    /// Worker threads that make the training batches (default: [`mep_data::loader::default_threads`]).
    /// The batches are the same for every count, so it is not part of the run's identity.
    #[serde(skip)]
    pub loader_threads: Option<usize>,
    /// The arithmetic of convolutions and linear layers (`--precision`; fp32 by default;
    /// batch norm, losses and the optimiser stay fp32 on fp32 weights). A backend without
    /// kernels for it refuses it before any work.
    #[serde(default, with = "crate::precision_name")]
    pub precision: crate::Precision,
}

/// One epoch's numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub lr_end: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

/// The final report, also written as `out/report.json`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub arch: String,
    pub data: String,
    pub classes: Vec<String>,
    pub input_size: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub params: usize,
    pub epochs: Vec<EpochStats>,
    pub test: EvalReport,
    pub checkpoint: PathBuf,
    pub model: PathBuf,
    pub seconds: f64,
    /// The settings the run was trained with (what `--resume` compares).
    pub settings: TrainSettings,
    /// The mean cross-entropy of each of the run's first [`FIRST_STEPS`] batches, as
    /// computed (f32 losses summed in f64): training is bit-identical on every CPU, so a
    /// recipe is checked by retraining these few steps and comparing them exactly.
    #[serde(default)]
    pub first_step_losses: Vec<f64>,
    /// Stopped inside an epoch by [`TrainArgs::stop_after_steps`]: nothing was saved.
    #[serde(default)]
    pub stopped_inside_epoch: bool,
}

/// How many of a run's first batch losses its report keeps ([`TrainReport::first_step_losses`]).
pub const FIRST_STEPS: usize = 16;

/// Steps whose losses and predictions stay on the device before they are read back together.
/// Reading a result back waits for the device to finish everything queued before it, so a
/// read every step would leave a GPU idle while the host queues the next step; every
/// `SYNC_EVERY` steps (and at the end of an epoch) it costs one wait in many.
pub const SYNC_EVERY: usize = 16;

/// What a checkpoint records besides the weights, to resume exactly.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    steps_done: usize,
    history: Vec<EpochStats>,
    args: TrainArgs,
    /// What `--resume` must find again (absent in checkpoints of earlier versions).
    #[serde(default)]
    settings: Option<TrainSettings>,
    /// See [`TrainReport::first_step_losses`] (absent in checkpoints of earlier versions).
    #[serde(default)]
    first_step_losses: Vec<f64>,
}

/// Every setting that changes a run's results. `--resume` continues a run only with the
/// settings it was started with; `--stop-after`, `--quiet`, `--device`, `--threads` and
/// `--loader-threads` are not among them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub arch: String,
    /// SHA-256 of the `--init` checkpoint (its path may change; its bytes may not).
    pub init_sha256: Option<String>,
    pub data: String,
    pub size: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Only SGD has momentum: `None` under Adam, where `--momentum` changes nothing.
    pub momentum: Option<f64>,
    pub weight_decay: f64,
    pub augment: bool,
    /// The stem width of a network trained from scratch (the architecture's when not
    /// given); `None` with `--init`, whose checkpoint fixes it.
    pub width: Option<usize>,
    pub seed: u64,
    /// `--precision`: a run continues in the arithmetic it started in. Runs recorded before
    /// it read as fp32.
    #[serde(default, with = "crate::precision_name")]
    pub precision: crate::Precision,
}

/// The files of a run in its `--out` folder: any of them means a run is there.
const CHECKPOINT: &str = "checkpoint.safetensors";
const MODEL: &str = "model.safetensors";
const REPORT: &str = "report.json";
const RUN_FILES: [&str; 3] = [CHECKPOINT, MODEL, REPORT];

/// The narrowest stem of `arch` that trains: the CIFAR ResNets' option-A shortcut pads
/// planes/4 zero channels on each side when the channels double, so their width must be
/// even; the ImageNet ResNets' projections take any width.
fn width_ok(arch: Arch, width: usize) -> bool {
    if arch.is_cifar() {
        width >= 2 && width.is_multiple_of(2)
    } else {
        width >= 1
    }
}

// The `--size` bound lives with the input transform (eval and decoder train check it too).
pub(crate) use crate::data::check_size;
pub use crate::data::MIN_SIZE;

/// Optimiser steps per epoch and in all for `n_train` images in batches of `batch_size`:
/// refused when not one batch fits, or when the steps exceed the optimisers' u32 counter
/// (as checkpoints record it).
pub(crate) fn step_counts(n_train: usize, batch_size: usize, epochs: usize) -> Result<(usize, usize)> {
    let per_epoch = n_train / batch_size;
    if per_epoch == 0 {
        return Err(MepError::option(
            "--batch-size",
            batch_size,
            format!("the train split has only {n_train} images, fewer than one batch"),
        ));
    }
    let total = per_epoch
        .checked_mul(epochs)
        .filter(|&t| t <= u32::MAX as usize)
        .ok_or_else(|| {
            MepError::option(
                "--epochs",
                epochs,
                format!(
                    "{per_epoch} steps per epoch make more steps than the optimiser counts ({})",
                    u32::MAX
                ),
            )
        })?;
    Ok((per_epoch, total))
}

impl TrainArgs {
    /// Checks every option that needs no file or data: numbers in range, options that go
    /// together. [`train`] calls it before it reads anything.
    pub fn validate(&self) -> Result<Arch> {
        let arch: Arch = self.arch.parse()?;
        let bad =
            |option: &str, value: &dyn std::fmt::Display, reason: &str| Err(MepError::option(option, value, reason));
        if self.epochs == 0 {
            return bad("--epochs", &0, "train at least one epoch");
        }
        if self.batch_size < 2 {
            return bad(
                "--batch-size",
                &self.batch_size,
                "must be at least 2, as batch norm trains on batch statistics",
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", &self.lr, "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("--weight-decay", &self.weight_decay, "must be a number at least 0");
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad("--momentum", &self.momentum, "must be in [0, 1)");
        }
        check_size(self.size)?;
        match (self.width, &self.init) {
            (Some(w), Some(init)) => {
                return bad(
                    "--width",
                    &w,
                    &format!(
                        "applies to a network trained from scratch; --init {} fixes the width",
                        init.display()
                    ),
                )
            }
            (Some(w), None) if !width_ok(arch, w) => {
                return bad(
                    "--width",
                    &w,
                    &if arch.is_cifar() {
                        format!(
                            "{} needs an even width of at least 2 (its shortcuts pad half the new channels on \
                             each side when the channels double)",
                            arch.name()
                        )
                    } else {
                        "must be at least 1".to_string()
                    },
                )
            }
            _ => {}
        }
        if self.stop_after == Some(0) {
            return bad("--stop-after", &0, "train at least one epoch in this run");
        }
        if self.stop_after_steps == Some(0) {
            return bad("--stop-after-steps", &0, "train at least one step in this run");
        }
        if let Some(t) = self.loader_threads {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let most = crate::device::MAX_THREADS_FLOOR.max(2 * cores);
            if t == 0 {
                return bad(
                    "--loader-threads",
                    &0,
                    "give at least 1, or omit it for one per core but one (at most 8)",
                );
            }
            if t > most {
                return bad(
                    "--loader-threads",
                    &t,
                    &format!("at most {most} on this machine ({cores} cores); more only queue for the cores"),
                );
            }
        }
        if self.resume && self.overwrite {
            return Err(MepError::option_unset(
                "--resume with --overwrite",
                "the first continues the run in --out, the second replaces it: pass one",
            ));
        }
        Ok(arch)
    }

    /// The settings this run records and `--resume` compares (hashes the `--init` file).
    pub fn settings(&self) -> Result<TrainSettings> {
        let init_sha256 = match &self.init {
            Some(p) => Some(
                mep_fetch::Checksum::of_file(p, mep_fetch::Algorithm::Sha256)?
                    .hex()
                    .to_string(),
            ),
            None => None,
        };
        self.settings_with(init_sha256)
    }

    /// The settings, with the `--init` file's hash given.
    fn settings_with(&self, init_sha256: Option<String>) -> Result<TrainSettings> {
        let arch: Arch = self.arch.parse()?;
        Ok(TrainSettings {
            arch: arch.name().into(),
            init_sha256,
            data: self.data.clone(),
            size: self.size,
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer,
            lr: decimal(self.lr),
            momentum: (self.optimizer == OptimizerKind::Sgd).then(|| decimal(self.momentum)),
            weight_decay: decimal(self.weight_decay),
            augment: self.augment,
            width: self.init.is_none().then(|| self.width.unwrap_or(arch.default_width())),
            seed: self.seed,
            precision: self.precision,
        })
    }
}

/// The f32 as its shortest decimal says it (`0.001`, not `0.0010000000474974513`), so that
/// a list of differences shows what the user typed; distinct f32s stay distinct.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Reads the training state a checkpoint of `mep train` records in its metadata.
fn read_state(path: &Path) -> Result<TrainState> {
    let ck = Checkpoint::load(path)?;
    ck.metadata()
        .get(META_STATE)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| no_state(path))
}

/// The error for a checkpoint at `path` without the training state `mep train` records.
fn no_state(path: &Path) -> MepError {
    MepError::Missing {
        path: path.to_path_buf(),
        what: "not a checkpoint written by `mep train` (no training state in its metadata)".into(),
        hint: None,
    }
}

/// What `--out` holds, checked against what the command asks: a folder with a run is
/// refused unless `--resume` (with the same settings) or `--overwrite`; `--resume` needs a
/// checkpoint to continue from when the folder holds anything of a run. Only reads.
/// Returns whether the run resumes from the checkpoint.
/// `now` gives this command's settings; called only to compare with a run to resume, since
/// it hashes the `--init` file.
fn check_run_folder(args: &TrainArgs, now: impl FnOnce() -> Result<TrainSettings>) -> Result<bool> {
    let found: Vec<&str> = RUN_FILES.into_iter().filter(|f| args.out.join(f).exists()).collect();
    if found.is_empty() || args.overwrite {
        return Ok(false);
    }
    if !args.resume {
        return Err(MepError::Conflict {
            path: args.out.clone(),
            reason: format!(
                "already holds a run of `mep train` ({}); pass --resume to continue it, --overwrite to \
                 replace it, or choose another --out",
                found.join(", ")
            ),
        });
    }
    let ck_path = args.out.join(CHECKPOINT);
    if !found.contains(&CHECKPOINT) {
        return Err(MepError::option_unset(
            "--resume",
            format!(
                "{} holds {} but no {CHECKPOINT} to continue from; pass --overwrite to replace the run",
                args.out.display(),
                found.join(", ")
            ),
        ));
    }
    let state = read_state(&ck_path)?;
    let now = now()?;
    // A checkpoint of an earlier version recorded only the arguments: compare what they
    // hold (the --init file's hash cannot be recovered from them, so it is taken as equal).
    let recorded = match state.settings {
        Some(s) => s,
        None => state.args.settings_with(now.init_sha256.clone())?,
    };
    let differences = crate::study::differences(&recorded, &now);
    if !differences.is_empty() {
        return Err(MepError::ConfigMismatch {
            manifest: ck_path,
            differences,
        });
    }
    Ok(true)
}

const META_STATE: &str = "mep.train_state";
const OPT_PREFIX: &str = "optim.";

/// The cosine schedule (Loshchilov & Hutter 2017, without restarts): `lr · ½(1 + cos πt/T)`.
pub fn cosine_lr(base: f32, step: usize, total: usize) -> f32 {
    if total == 0 {
        return base;
    }
    let t = (step as f64 / total as f64).min(1.0);
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
}

fn make_optimizer<B: Backend>(args: &TrainArgs) -> Box<dyn Optimizer<B>> {
    match args.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(AdamParams {
            lr: args.lr,
            weight_decay: args.weight_decay,
            ..AdamParams::default()
        })),
        OptimizerKind::Sgd => Box::new(Sgd::new(SgdParams {
            lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            nesterov: false,
            step: 0,
        })),
    }
}

/// Writes the resumable checkpoint (weights, optimiser state, progress) atomically.
fn save_checkpoint<B: Backend>(
    b: &B,
    model: &mut ResNet<B>,
    opt: &dyn Optimizer<B>,
    state: &TrainState,
    meta: &BTreeMap<String, String>,
    path: &Path,
) -> Result<()> {
    let os = opt.export_state(b)?;
    let keys: Vec<String> = model.named_params_mut().into_iter().map(|(k, _)| k).collect();
    let mut extra = Vec::new();
    for (key, bufs) in keys.iter().zip(&os.buffers) {
        for (i, buf) in bufs.iter().enumerate() {
            extra.push((format!("{OPT_PREFIX}{i}.{key}"), Shape::new([buf.len()]), buf.clone()));
        }
    }
    let mut meta = meta.clone();
    meta.insert(
        META_STATE.into(),
        serde_json::to_string(state).map_err(|source| MepError::Encode {
            what: "cannot encode the training state".into(),
            source,
        })?,
    );
    meta.insert("mep.optimizer_step".into(), os.step.to_string());
    model.save_with(b, path, &extra, &meta)?;
    Ok(())
}

/// Reads a checkpoint written by [`save_checkpoint`]: the model, the optimiser state and
/// the progress.
fn load_checkpoint<B: Backend>(
    b: &B,
    arch: Arch,
    path: &Path,
    buffers_per_param: usize,
) -> Result<(ResNet<B>, OptimizerState, TrainState)> {
    let mut ck = Checkpoint::load(path)?;
    let state: TrainState = ck
        .metadata()
        .get(META_STATE)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| no_state(path))?;
    let step: u32 = ck
        .metadata()
        .get("mep.optimizer_step")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let opt_keys: Vec<String> = ck
        .keys()
        .filter(|k| k.starts_with(OPT_PREFIX))
        .map(String::from)
        .collect();
    let mut opt_tensors = BTreeMap::new();
    for k in opt_keys {
        let len = ck.get(&k).map_or(0, |t| t.shape.numel());
        let t = ck.take(&k, &[len], arch.name())?;
        opt_tensors.insert(k, t.data);
    }
    let mut model = ResNet::from_checkpoint(b, arch, ck)?;
    let mut buffers = Vec::new();
    if step > 0 {
        for (key, _) in model.named_params_mut() {
            let mut bufs = Vec::new();
            for i in 0..buffers_per_param {
                let k = format!("{OPT_PREFIX}{i}.{key}");
                bufs.push(opt_tensors.remove(&k).ok_or_else(|| MepError::Missing {
                    path: path.to_path_buf(),
                    what: format!("optimiser state `{k}` is missing (was the run started with another --optimizer?)"),
                    hint: None,
                })?);
            }
            buffers.push(bufs);
        }
    }
    Ok((model, OptimizerState { step, buffers }, state))
}

/// Refuses a training configuration that cannot fit in memory (see [`crate::memory`]):
/// on the CPU the whole of it, on a GPU the host's share (the device's memory is not known
/// to the backend).
#[allow(clippy::too_many_arguments)]
fn ensure_training_fits<B: Backend>(
    b: &B,
    args: &TrainArgs,
    arch: Arch,
    width: usize,
    size: usize,
    classes: usize,
    optimizer_buffers: usize,
    test_images: usize,
) -> Result<()> {
    let f = crate::memory::resnet_footprint(arch, width, size, classes);
    let eval_batch = args.batch_size.max(64).min(test_images.max(1));
    let needed = if b.name() == "cpu" {
        f.training_bytes(args.batch_size, optimizer_buffers)
            .max(f.inference_bytes(eval_batch))
    } else {
        f.host_bytes(args.batch_size, optimizer_buffers)
    };
    // The estimates count the default loader's batches; more workers hold more at once.
    let default_threads = mep_data::loader::default_threads();
    let extra_batches = crate::memory::loader_batches(args.loader_threads.unwrap_or(default_threads))
        - crate::memory::loader_batches(default_threads);
    let needed = needed + extra_batches.max(0.0) * 4.0 * args.batch_size as f64 * f.input_per_image;
    let mut lower = "--batch-size or --size".to_string();
    if args.width.is_some() {
        lower = "--batch-size, --size or --width".into();
    }
    crate::memory::ensure_fits(
        needed,
        &format!(
            "training {} (width {width}) with --batch-size {} at --size {size}",
            arch.name(),
            args.batch_size
        ),
        &lower,
    )
}

/// Trains as `args` says, on the backend `args.device` names.
pub fn train(args: &TrainArgs) -> Result<TrainReport> {
    // Refusals that need no data come before the dataset is read (CIFAR-10 takes seconds);
    // `train_with` checks the folder again where it writes.
    args.validate()?;
    check_run_folder(args, || args.settings())?;
    let data = open_dataset(&args.data)?;
    train_on(args, data)
}

/// As [`train`], on a dataset already in hand (`args.data` only names it in the report).
pub fn train_on(args: &TrainArgs, data: mep_data::Dataset) -> Result<TrainReport> {
    crate::on_device!(args.device, |b| train_with(b, args, data))
}

/// As [`train_on`], on backend `b`.
pub fn train_with<B: Backend>(b: &B, args: &TrainArgs, data: mep_data::Dataset) -> Result<TrainReport> {
    let started = Instant::now();
    let arch = args.validate()?;
    crate::device::use_precision(b, args.precision)?;
    let settings = args.settings()?;
    let train_split = Arc::new(
        data.train
            .clone()
            .ok_or_else(|| MepError::option("--data", &args.data, "the dataset has no train split"))?,
    );
    let test_split = Arc::new(data.test.clone());
    let n_train = train_split.len();
    let (steps_per_epoch, total_steps) = step_counts(n_train, args.batch_size, args.epochs)?;
    let size = image_size(&train_split, args.size)?;
    if size < MIN_SIZE {
        return Err(MepError::unusable(
            "the images",
            format!("{size}×{size}; the networks take at least {MIN_SIZE}×{MIN_SIZE}: pass --size"),
        ));
    }
    let k = data.classes.len();
    let mut opt = make_optimizer(args);
    // Read once: its stem width sizes the memory estimate, and a fresh run starts from it.
    let init = args.init.as_ref().map(Checkpoint::load).transpose()?;
    let width = match &init {
        Some(ck) => ck
            .get("conv1.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .unwrap_or(arch.default_width()),
        None => args.width.unwrap_or(arch.default_width()),
    };
    ensure_training_fits(b, args, arch, width, size, k, opt.buffers_per_param(), test_split.len())?;
    let test_t = eval_transform(size);
    let train_t = Transform {
        augment: args.augment.then_some(Augment {
            crop_padding: 4,
            hflip: true,
        }),
        ..test_t.clone()
    };
    let meta = transform_metadata(&test_t, &data.classes);

    // ---- The output folder: everything above only reads; from here on the run writes. ----
    // Locked before the check of what the folder holds, so that the check and the writes
    // below happen under it: a second `mep train` into this folder is refused.
    let _lock = crate::lock::FolderLock::acquire(&args.out, "mep train")?;
    let resuming = check_run_folder(args, || Ok(settings.clone()))?;
    if args.overwrite {
        for f in RUN_FILES {
            let p = args.out.join(f);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(MepError::Io { path: p, source: e });
                }
                _ => {}
            }
        }
    }
    let ck_path = args.out.join(CHECKPOINT);
    let model_path = args.out.join(MODEL);

    let (mut model, mut state) = if resuming {
        let (model, os, state) = load_checkpoint(b, arch, &ck_path, opt.buffers_per_param())?;
        if os.step > 0 {
            opt.import_state(b, &os)?;
        }
        eprintln!("resuming {} after epoch {}", ck_path.display(), state.epochs_done);
        (model, state)
    } else {
        if args.resume {
            eprintln!("no checkpoint in {}: starting afresh", args.out.display());
        }
        let model = match init {
            Some(ck) => {
                let mut m = ResNet::from_checkpoint(b, arch, ck)?;
                if m.num_classes != k {
                    m.replace_classifier(b, k, args.seed)?;
                }
                m
            }
            None => ResNet::init(b, arch, args.width.unwrap_or(arch.default_width()), k, args.seed)?,
        };
        let state = TrainState {
            epochs_done: 0,
            steps_done: 0,
            history: Vec::new(),
            args: args.clone(),
            settings: Some(settings.clone()),
            first_step_losses: Vec::new(),
        };
        (model, state)
    };
    let params = model.num_params();

    let mut steps_left = args.stop_after_steps.unwrap_or(usize::MAX);
    let mut stopped_inside = false;
    let last_epoch = match args.stop_after {
        Some(n) => state.epochs_done.saturating_add(n).min(args.epochs),
        None => args.epochs,
    };
    for epoch in state.epochs_done..last_epoch {
        if steps_left == 0 {
            // `stop_after_steps` ran out at the end of the last epoch, which was saved.
            break;
        }
        let t0 = Instant::now();
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(steps_per_epoch as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, args.epochs));
        // Each epoch has its own order and augmentation, fixed by (seed, epoch), so a
        // resumed run sees the batches the interrupted one would have.
        let mut loader = Loader::new(
            train_split.clone(),
            train_t.clone(),
            args.batch_size,
            true,
            args.seed,
            true,
        )?;
        if let Some(t) = args.loader_threads {
            loader = loader.with_threads(t)?;
        }
        let mut tally = Tally::default();
        let mut pending: Vec<PendingStep<B>> = Vec::with_capacity(SYNC_EVERY);
        let mut lr = args.lr;
        for (step, batch) in loader.epoch(epoch as u64).enumerate() {
            if steps_left == 0 {
                break;
            }
            steps_left -= 1;
            let batch = batch?;
            lr = cosine_lr(args.lr, state.steps_done, total_steps);
            opt.set_lr(lr);
            let x = Tensor::from_vec(b, batch.shape, batch.x)?;
            let TrainStepOutput { probs, losses } = model.train_step(b, x, &batch.labels, opt.as_mut())?;
            state.steps_done += 1;
            // The losses and probabilities stay on the device until a few steps are queued.
            pending.push(PendingStep {
                step: step + 1,
                run_step: state.steps_done,
                labels: batch.labels,
                losses,
                probs,
            });
            if pending.len() == SYNC_EVERY {
                tally
                    .read_back(b, &mut pending, k, &mut state.first_step_losses)
                    .map_err(|e| e.in_epoch(epoch + 1, steps_per_epoch, args.lr))?;
                bar.set_message(tally.message(t0));
            }
            bar.inc(1);
        }
        tally
            .read_back(b, &mut pending, k, &mut state.first_step_losses)
            .map_err(|e| e.in_epoch(epoch + 1, steps_per_epoch, args.lr))?;
        let Tally {
            loss_sum,
            correct,
            seen,
        } = tally;
        let train_seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if seen < steps_per_epoch * args.batch_size {
            // Stopped inside the epoch by `stop_after_steps`: a run resumes only from a
            // whole epoch, so nothing is saved.
            stopped_inside = true;
            break;
        }
        let net = FoldedResNet::fold(b, &model)?;
        let test = evaluate(b, &net, &test_split, &test_t, &data.classes, args.batch_size.max(64))?;
        let stats = EpochStats {
            epoch: epoch + 1,
            lr_end: lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_accuracy: test.accuracy,
            images_per_s: seen as f64 / train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {}/{}: loss {:.4}, train accuracy {:.2} %, test accuracy {:.2} %, {:.0} images/s, {:.1} s",
            stats.epoch,
            args.epochs,
            stats.train_loss,
            100.0 * stats.train_accuracy,
            100.0 * stats.test_accuracy,
            stats.images_per_s,
            stats.seconds
        );
        state.history.push(stats);
        state.epochs_done = epoch + 1;
        save_checkpoint(b, &mut model, opt.as_ref(), &state, &meta, &ck_path)?;
        model.save_with(b, &model_path, &[], &meta)?;
    }

    let net = FoldedResNet::fold(b, &model)?;
    let test = evaluate(b, &net, &test_split, &test_t, &data.classes, args.batch_size.max(64))?;
    let report = TrainReport {
        arch: arch.name().into(),
        data: args.data.clone(),
        classes: data.classes.clone(),
        input_size: size,
        train_images: n_train,
        test_images: test_split.len(),
        params,
        epochs: state.history.clone(),
        test,
        checkpoint: ck_path,
        model: model_path,
        seconds: started.elapsed().as_secs_f64(),
        settings,
        first_step_losses: state.first_step_losses.clone(),
        stopped_inside_epoch: stopped_inside,
    };
    if stopped_inside {
        return Ok(report);
    }
    let json = serde_json::to_string_pretty(&report).map_err(|source| MepError::Encode {
        what: "cannot encode the report".into(),
        source,
    })?;
    let report_path = args.out.join(REPORT);
    std::fs::write(&report_path, json).map_err(|source| MepError::Io {
        path: report_path.clone(),
        source,
    })?;
    Ok(report)
}

/// One step's results still on the device: its batch losses and softmax probabilities.
struct PendingStep<B: Backend> {
    /// The step in its epoch, counted from 1.
    step: usize,
    /// The step in the run, counted from 1 ([`TrainState::steps_done`] after it).
    run_step: usize,
    labels: Vec<usize>,
    losses: B::Buf,
    probs: B::Buf,
}

/// An epoch's running loss and accuracy, from the steps read back so far.
#[derive(Default)]
struct Tally {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

/// Why reading back steps failed: the device, or a loss that left finite numbers.
enum ReadBackError {
    Mep(MepError),
    /// The first non-finite batch loss and its step in the epoch.
    Diverged {
        value: f64,
        step: usize,
    },
}

impl From<mep_tensor::TensorError> for ReadBackError {
    fn from(e: mep_tensor::TensorError) -> Self {
        ReadBackError::Mep(e.into())
    }
}

impl ReadBackError {
    /// The error `mep train` reports, naming the epoch (counted from 1), the step in it and
    /// the learning rate asked for.
    fn in_epoch(self, epoch: usize, steps: usize, lr: f32) -> MepError {
        match self {
            ReadBackError::Mep(e) => e,
            ReadBackError::Diverged { value, step } => MepError::Diverged {
                loss: "loss",
                value,
                epoch,
                step,
                steps,
                lr,
            },
        }
    }
}

impl Tally {
    /// Reads back the `pending` steps, in order, into the tally (and the run's first
    /// [`FIRST_STEPS`] losses into `first`): the same f32 losses summed in f64 in the same
    /// order as a read every step would, so the numbers do not change.
    fn read_back<B: Backend>(
        &mut self,
        b: &B,
        pending: &mut Vec<PendingStep<B>>,
        k: usize,
        first: &mut Vec<f64>,
    ) -> std::result::Result<(), ReadBackError> {
        for p in pending.drain(..) {
            let n = p.labels.len();
            let batch_loss: f64 = b.download(&p.losses)?.iter().map(|&l| l as f64).sum();
            if !batch_loss.is_finite() {
                return Err(ReadBackError::Diverged {
                    value: batch_loss,
                    step: p.step,
                });
            }
            self.loss_sum += batch_loss;
            if p.run_step <= FIRST_STEPS {
                first.push(batch_loss / n as f64);
            }
            let preds = argmax_rows(&b.download(&p.probs)?, k);
            self.correct += preds.iter().zip(&p.labels).filter(|(p, l)| p == l).count();
            self.seen += n;
        }
        Ok(())
    }

    /// The progress bar's message: loss, accuracy and speed so far.
    fn message(&self, t0: Instant) -> String {
        format!(
            "loss {:.4} acc {:.1}% {:.0} img/s",
            self.loss_sum / self.seen.max(1) as f64,
            100.0 * self.correct as f64 / self.seen.max(1) as f64,
            self.seen as f64 / t0.elapsed().as_secs_f64()
        )
    }
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} on {} ({} train / {} test images at {}×{}, {} parameters), {:.1} s",
            self.arch,
            self.data,
            self.train_images,
            self.test_images,
            self.input_size,
            self.input_size,
            self.params,
            self.seconds
        )?;
        writeln!(f, "epoch   loss   train %   test %   images/s")?;
        for e in &self.epochs {
            writeln!(
                f,
                "{:>5} {:>7.4} {:>8.2} {:>8.2} {:>10.0}",
                e.epoch,
                e.train_loss,
                100.0 * e.train_accuracy,
                100.0 * e.test_accuracy,
                e.images_per_s
            )?;
        }
        write!(f, "final test {}", self.test)?;
        if !self.first_step_losses.is_empty() {
            // Every digit, so that two runs can be compared exactly.
            let losses: Vec<String> = self.first_step_losses.iter().map(f64::to_string).collect();
            writeln!(f, "first step losses: {}", losses.join(" "))?;
        }
        if self.stopped_inside_epoch {
            writeln!(f, "stopped inside an epoch (--stop-after-steps): nothing saved")
        } else {
            writeln!(f, "model: {}", self.model.display())
        }
    }
}
