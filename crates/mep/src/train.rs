//! `mep train`: train or fine-tune a ResNet with our own engine, batch norm in training
//! mode, Adam (the paper's choice) or SGD with momentum, cosine learning-rate decay, a
//! checkpoint after every epoch and `--resume` from the last one.

use crate::data::{eval_transform, image_size, open_dataset, transform_metadata};
use crate::device::Device;
use crate::eval::{argmax_rows, evaluate, EvalReport};
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_data::{Augment, Loader, Transform};
use mep_nn::{Adam, Grads, Optimizer, OptimizerState, Sgd};
use mep_resnet::{Arch, Checkpoint, Network, ResNet};
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
    /// Continue from `out/checkpoint.safetensors`.
    pub resume: bool,
    /// Stop after this many epochs in this run (for time-limited jobs; continue with
    /// `resume`). The schedule still spans `epochs`.
    #[serde(default)]
    pub stop_after: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
    /// Where it computes (not part of the run's identity: a run may resume on another device).
    #[serde(skip)]
    pub device: Device,
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
}

/// What a checkpoint records besides the weights, to resume exactly.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainState {
    epochs_done: usize,
    steps_done: usize,
    history: Vec<EpochStats>,
    args: TrainArgs,
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
        serde_json::to_string(state).map_err(|e| MepError::Usage(format!("cannot encode the training state: {e}")))?,
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
        .ok_or_else(|| {
            MepError::Usage(format!(
                "{}: not a checkpoint written by `mep train` (no training state in its metadata)",
                path.display()
            ))
        })?;
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
                bufs.push(opt_tensors.remove(&k).ok_or_else(|| {
                    MepError::Usage(format!(
                        "{}: optimiser state `{k}` is missing (was the run started with another --optimizer?)",
                        path.display()
                    ))
                })?);
            }
            buffers.push(bufs);
        }
    }
    Ok((model, OptimizerState { step, buffers }, state))
}

/// Trains as `args` says, on the backend `args.device` names.
pub fn train(args: &TrainArgs) -> Result<TrainReport> {
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
    let arch: Arch = args.arch.parse()?;
    if args.epochs == 0 || args.batch_size == 0 {
        return Err(MepError::Usage("--epochs and --batch-size must be positive".into()));
    }
    if args.batch_size < 2 {
        return Err(MepError::Usage(
            "--batch-size must be at least 2: batch norm trains on batch statistics".into(),
        ));
    }
    let train_split = Arc::new(
        data.train
            .clone()
            .ok_or_else(|| MepError::Usage(format!("--data {}: the dataset has no train split", args.data)))?,
    );
    let test_split = Arc::new(data.test.clone());
    let size = image_size(&train_split, args.size)?;
    let test_t = eval_transform(size);
    let train_t = Transform {
        augment: args.augment.then_some(Augment {
            crop_padding: 4,
            hflip: true,
        }),
        ..test_t.clone()
    };
    let meta = transform_metadata(&test_t, &data.classes);
    std::fs::create_dir_all(&args.out).map_err(|e| MepError::Usage(format!("{}: {e}", args.out.display())))?;
    let ck_path = args.out.join("checkpoint.safetensors");
    let model_path = args.out.join("model.safetensors");

    let mut opt = make_optimizer(args);
    let (mut model, mut state) = if args.resume && ck_path.exists() {
        let (model, os, state) = load_checkpoint(b, arch, &ck_path, opt.buffers_per_param())?;
        if os.step > 0 {
            opt.import_state(b, &os)?;
        }
        eprintln!("resuming {} after epoch {}", ck_path.display(), state.epochs_done);
        (model, state)
    } else {
        if args.resume {
            eprintln!("no checkpoint at {}: starting afresh", ck_path.display());
        }
        let k = data.classes.len();
        let model = match &args.init {
            Some(init) => {
                let mut m = ResNet::load(b, arch, init)?;
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
        };
        (model, state)
    };
    let params = model.num_params();
    let n_train = train_split.len();
    let steps_per_epoch = n_train / args.batch_size;
    if steps_per_epoch == 0 {
        return Err(MepError::Usage(format!(
            "the train split has {n_train} images, fewer than one batch of {}",
            args.batch_size
        )));
    }
    let total_steps = steps_per_epoch * args.epochs;
    let k = data.classes.len();

    let last_epoch = match args.stop_after {
        Some(n) => (state.epochs_done + n).min(args.epochs),
        None => args.epochs,
    };
    for epoch in state.epochs_done..last_epoch {
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
        let loader = Loader::new(
            train_split.clone(),
            train_t.clone(),
            args.batch_size,
            true,
            args.seed,
            true,
        )?;
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = args.lr;
        for batch in loader.epoch(epoch as u64) {
            let batch = batch?;
            let n = batch.labels.len();
            lr = cosine_lr(args.lr, state.steps_done, total_steps);
            opt.set_lr(lr);
            let x = Tensor::from_vec(b, batch.shape, batch.x)?;
            let (logits, tape) = model.forward_train(b, x)?;
            let mut probs = b.alloc(n * k)?;
            let mut losses = b.alloc(n)?;
            b.softmax_cross_entropy(n, k, &logits.buf, &batch.labels, &mut probs, &mut losses)?;
            let mut dlogits = Tensor::alloc(b, [n, k])?;
            b.softmax_cross_entropy_bwd(n, k, &probs, &batch.labels, 1.0 / n as f32, &mut dlogits.buf)?;
            model.backward(b, tape, &dlogits, Grads::WEIGHTS)?;
            opt.step(b, &mut model.params_mut())?;
            state.steps_done += 1;

            let batch_loss: f64 = b.download(&losses)?.iter().map(|&l| l as f64).sum();
            if !batch_loss.is_finite() {
                return Err(MepError::Usage(format!(
                    "the loss became {batch_loss} in epoch {}; lower --lr (now {})",
                    epoch + 1,
                    args.lr
                )));
            }
            loss_sum += batch_loss;
            let preds = argmax_rows(&b.download(&probs)?, k);
            correct += preds.iter().zip(&batch.labels).filter(|(p, l)| p == l).count();
            seen += n;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4} acc {:.1}% {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64()
            ));
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let net = Network::fold(b, &model)?;
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

    let net = Network::fold(b, &model)?;
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
    };
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| MepError::Usage(format!("cannot encode the report: {e}")))?;
    let report_path = args.out.join("report.json");
    std::fs::write(&report_path, json).map_err(|e| MepError::Usage(format!("{}: {e}", report_path.display())))?;
    Ok(report)
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
        writeln!(f, "model: {}", self.model.display())
    }
}
