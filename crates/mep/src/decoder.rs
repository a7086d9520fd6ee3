//! `mep decoder train`: a decoder from a cut point of a trained classifier back to the
//! image (Gu & Borovykh 2023, Tables 2–4), trained with the MSE and Adam on pairs
//! (`encode(x, cut)`, `x`) from the training split, the classifier frozen; and [`decode`],
//! which maps points at the cut to images for the figures.

use crate::data::{open_dataset, resolve_transform, transform_from_metadata};
use crate::device::Device;
use crate::{MepError, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mep_data::{Dataset, Loader, Split, Transform};
use mep_decoder::{mse_loss, Decoder, DecoderConfig, DecoderError, Mode, Source, TrainHyper};
use mep_nn::{Adam, Grads, Optimizer};
use mep_resnet::{Arch, Checkpoint, Cut, FoldedResNet, ResNet};
use mep_tensor::{AdamParams, Backend, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Points decoded per forward pass in [`decode`] (bounds the memory of large decoders).
pub const DECODE_CHUNK: usize = 32;

/// What `mep decoder train` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecoderTrainArgs {
    /// The classifier's architecture (`resnet50`, `resnet20`, ...).
    pub arch: String,
    /// The classifier checkpoint; its weights stay frozen.
    pub weights: PathBuf,
    /// `synthetic`, `cifar10`, a CIFAR-10 archive or folder, or an image folder.
    pub data: String,
    /// The cut whose points the decoder maps back to images (`pool`, `layer1`, ...).
    pub cut: String,
    /// The network's input size; default: the one the checkpoint records, else the images'.
    pub size: Option<usize>,
    /// Default: the paper's (5 at `pool`, Table 4; 10 elsewhere).
    pub epochs: Option<usize>,
    /// Default: the paper's (128 at `pool`, 32 elsewhere).
    pub batch_size: Option<usize>,
    /// Adam's learning rate; default: the paper's 1e-3.
    pub lr: Option<f32>,
    /// Multiplies every filter count of the paper's decoder (1 = the paper; 0.125 makes a
    /// CPU demo about 60 times cheaper).
    pub filters_scale: f32,
    pub seed: u64,
    /// Train on the first N images of the train split only (default: all); a quick decoder
    /// for a demo. The held-out MSE is still measured on the whole test split.
    #[serde(default)]
    pub train_images: Option<usize>,
    /// The decoder checkpoint to write (safetensors), replaced after every epoch.
    pub out: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// Where it computes.
    #[serde(skip)]
    pub device: Device,
    /// The arithmetic of convolutions and linear layers (`--precision`; fp32 by default;
    /// batch norm, losses and the optimiser stay fp32 on fp32 weights). A backend without
    /// kernels for it refuses it before any work.
    #[serde(default, with = "crate::precision_name")]
    pub precision: crate::Precision,
}

/// One epoch's numbers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DecoderEpoch {
    pub epoch: usize,
    /// Mean training MSE over the epoch's batches (training-mode batch norm).
    pub train_mse: f64,
    /// Reconstruction MSE on the test split after the epoch (inference mode).
    pub test_mse: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

/// What `mep decoder train` did.
#[derive(Clone, Debug, Serialize)]
pub struct DecoderTrainReport {
    pub arch: String,
    pub cut: String,
    pub data: String,
    /// The network's input side.
    pub input_size: usize,
    /// The shape of one point at the cut.
    pub in_shape: Vec<usize>,
    /// The side of the decoded images.
    pub out_size: usize,
    pub filters: Vec<usize>,
    pub blocks_per_group: usize,
    pub params: usize,
    /// Forward FLOPs of the decoder per image (2 × multiply-adds).
    pub gflop_per_image: f64,
    pub train_images: usize,
    pub test_images: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub epochs: Vec<DecoderEpoch>,
    /// The test MSE of the best constant image, the mean training image: the score a
    /// decoder that ignores its input would reach.
    pub mean_image_mse: f64,
    pub out: PathBuf,
    pub seconds: f64,
}

/// The decoder's errors as the crate's: checkpoint, layer and backend errors keep their
/// variant, the decoder's own become [`MepError::Decoder`].
fn dec_err(e: DecoderError) -> MepError {
    match e {
        DecoderError::Checkpoint(e) => MepError::ResNet(e),
        DecoderError::Nn(e) => MepError::Nn(e),
        DecoderError::Tensor(e) => MepError::Tensor(e),
        other => MepError::Decoder(other),
    }
}

/// The shape of a point at a cut: a decoder's input (the study module owns it, as the shape
/// a saved path's points must have).
pub use crate::study::point_shape;

/// Loads the decoder at `path`, refusing one made for another architecture, cut, input
/// size or width of network than `net` at `cut` with `input_size`² inputs (the error names
/// what differs).
pub fn load_decoder<B: Backend>(
    b: &B,
    path: impl AsRef<Path>,
    net: &FoldedResNet<B>,
    cut: Cut,
    input_size: usize,
) -> Result<Decoder<B>> {
    let source = Source {
        arch: net.arch,
        cut,
        input_size,
        in_shape: point_shape(b, net, cut, input_size)?,
    };
    Decoder::load_for(b, path, &source).map_err(dec_err)
}

/// Maps points `z` at the decoder's cut (`[n, F]` or `[n, C, H, W]`) to images
/// `[n, 3, S, S]` in [0, 1], [`DECODE_CHUNK`] points per forward pass (inference mode).
pub fn decode<B: Backend>(b: &B, decoder: &Decoder<B>, z: &Tensor<B>) -> Result<Tensor<B>> {
    let n = z.shape.dims().first().copied().unwrap_or(0);
    if n <= DECODE_CHUNK {
        return decoder.decode(b, z).map_err(dec_err);
    }
    let per = z.numel() / n;
    let host = z.to_vec(b)?;
    let mut out = Vec::new();
    let mut rest_dims = z.shape.dims().to_vec();
    for chunk in host.chunks(DECODE_CHUNK * per) {
        rest_dims[0] = chunk.len() / per;
        let zc = Tensor::from_slice(b, rest_dims.as_slice(), chunk)?;
        out.extend(decoder.decode(b, &zc).map_err(dec_err)?.to_vec(b)?);
    }
    let s = decoder.config.out_size;
    Ok(Tensor::from_vec(b, [n, 3, s, s], out)?)
}

/// Batches of (network input, target image) from `split`, in the same order: the
/// network's transform and the raw [0, 1] image at the decoder's output size. With
/// `shuffle` (training) the order is fixed by (`seed`, `epoch`) and a last partial batch
/// is dropped; without, every image comes in index order.
fn paired_batches(
    split: &Arc<Split>,
    input_t: &Transform,
    target_t: &Transform,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
) -> Result<impl Iterator<Item = Result<(mep_data::Batch, mep_data::Batch)>>> {
    let x = Loader::new(split.clone(), input_t.clone(), batch_size, shuffle, seed, shuffle)?;
    let t = Loader::new(split.clone(), target_t.clone(), batch_size, shuffle, seed, shuffle)?;
    Ok(x.epoch(epoch).zip(t.epoch(epoch)).map(|(x, t)| {
        let (x, t) = (x?, t?);
        if x.indices != t.indices {
            return Err(MepError::unusable(
                "the input and target loaders",
                "disagree on the order",
            ));
        }
        Ok((x, t))
    }))
}

/// The reconstruction MSE on a whole split, batch norm in inference mode.
fn held_out_mse<B: Backend>(
    b: &B,
    net: &FoldedResNet<B>,
    decoder: &Decoder<B>,
    split: &Arc<Split>,
    input_t: &Transform,
    target_t: &Transform,
    batch_size: usize,
) -> Result<f64> {
    let (mut sum, mut count) = (0.0f64, 0usize);
    for pair in paired_batches(split, input_t, target_t, batch_size, false, 0, 0)? {
        let (x, t) = pair?;
        let x = Tensor::from_vec(b, x.shape, x.x)?;
        let z = net.encode(b, &x, decoder.config.cut)?;
        let y = decoder.decode(b, &z).map_err(dec_err)?;
        let t = Tensor::from_vec(b, t.shape, t.x)?;
        let (mse, _) = mse_loss(b, &y, &t).map_err(dec_err)?;
        sum += mse * t.numel() as f64;
        count += t.numel();
    }
    Ok(sum / count.max(1) as f64)
}

/// The MSE on `test` of the mean image of `train` (both through `target_t`).
fn mean_image_mse(train: &Arc<Split>, test: &Arc<Split>, target_t: &Transform) -> Result<f64> {
    let mut mean: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for batch in Loader::new(train.clone(), target_t.clone(), 256, false, 0, false)?.epoch(0) {
        let batch = batch?;
        let px = batch.x.len() / batch.labels.len();
        mean.resize(px, 0.0);
        for img in batch.x.chunks(px) {
            mean.iter_mut().zip(img).for_each(|(m, v)| *m += *v as f64);
        }
        n += batch.labels.len();
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let (mut sum, mut count) = (0.0f64, 0usize);
    for batch in Loader::new(test.clone(), target_t.clone(), 256, false, 0, false)?.epoch(0) {
        let batch = batch?;
        for img in batch.x.chunks(mean.len().max(1)) {
            sum += img.iter().zip(&mean).map(|(v, m)| (*v as f64 - m).powi(2)).sum::<f64>();
            count += img.len();
        }
    }
    Ok(sum / count.max(1) as f64)
}

/// The hyperparameters a run uses: the paper's where an option is not given.
struct Hyper {
    arch: Arch,
    cut: Cut,
    epochs: usize,
    batch_size: usize,
    lr: f32,
}

impl DecoderTrainArgs {
    /// Checks every option that needs no file or data (numbers in range, a known
    /// architecture and cut) and fills in the paper's defaults; [`train_decoder`] calls it
    /// before it reads anything.
    fn validate(&self) -> Result<Hyper> {
        let arch: Arch = self.arch.parse()?;
        let cut: Cut = self.cut.parse()?;
        arch.position(cut)?;
        let paper = TrainHyper::paper(cut);
        let epochs = self.epochs.unwrap_or(paper.epochs);
        let batch_size = self.batch_size.unwrap_or(paper.batch_size);
        let lr = self.lr.unwrap_or(paper.lr);
        if epochs == 0 {
            return Err(MepError::option("--epochs", 0, "train at least one epoch"));
        }
        if batch_size < 2 {
            return Err(MepError::option(
                "--batch-size",
                batch_size,
                "must be at least 2, as the decoder's batch norm trains on batch statistics",
            ));
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(MepError::option("--lr", lr, "must be a positive number"));
        }
        if !(self.filters_scale.is_finite() && self.filters_scale > 0.0) {
            return Err(MepError::option(
                "--filters-scale",
                self.filters_scale,
                "must be a positive number (1 = the paper's widths)",
            ));
        }
        if self.train_images == Some(0) {
            return Err(MepError::option(
                "--train-images",
                0,
                "train on at least one batch of images",
            ));
        }
        crate::data::check_size(self.size)?;
        Ok(Hyper {
            arch,
            cut,
            epochs,
            batch_size,
            lr,
        })
    }
}

/// Trains a decoder as `args` says, on the backend `args.device` names.
pub fn train_decoder(args: &DecoderTrainArgs) -> Result<DecoderTrainReport> {
    args.validate()?;
    let data = open_dataset(&args.data)?;
    train_decoder_on(args, data)
}

/// As [`train_decoder`], on a dataset already in hand (`args.data` only names it).
pub fn train_decoder_on(args: &DecoderTrainArgs, data: Dataset) -> Result<DecoderTrainReport> {
    crate::on_device!(args.device, |b| train_decoder_with(b, args, data))
}

/// As [`train_decoder_on`], on backend `b`.
pub fn train_decoder_with<B: Backend>(b: &B, args: &DecoderTrainArgs, data: Dataset) -> Result<DecoderTrainReport> {
    let started = Instant::now();
    let Hyper {
        arch,
        cut,
        epochs,
        batch_size,
        lr,
    } = args.validate()?;
    crate::device::use_precision(b, args.precision)?;

    let train = data
        .train
        .as_ref()
        .ok_or_else(|| MepError::option("--data", &args.data, "the dataset has no train split"))?;
    let train = Arc::new(match args.train_images {
        Some(n) => train.head(n),
        None => train.clone(),
    });
    let test = Arc::new(data.test.clone());
    let ck = Checkpoint::load(&args.weights)?;
    if ck.metadata().contains_key(mep_decoder::config::META_DECODER) {
        return Err(MepError::option(
            "--weights",
            args.weights.display(),
            "this is a decoder checkpoint; --weights takes the classifier whose points it decodes",
        ));
    }
    let recorded = transform_from_metadata(ck.metadata());
    let classifier = ResNet::from_checkpoint(b, arch, ck)?;
    let width = classifier.width;
    let net = FoldedResNet::fold(b, &classifier)?;
    drop(classifier);
    let mut input_t = resolve_transform(recorded, args.size, &train)?;
    let input_size = crate::data::image_size(&train, input_t.size)?;
    input_t.size = Some(input_size);
    let (steps, _) = crate::train::step_counts(train.len(), batch_size, epochs)?;
    // The classifier's share first: the shape of a point is found by encoding an image.
    let eval_batch = batch_size.max(64).min(test.len().max(1));
    let classifier_fp = crate::memory::resnet_footprint(arch, width, input_size, net.num_classes);
    let what = |batch: usize| {
        format!(
            "a decoder at `{cut}` of {} (--filters-scale {}) with --batch-size {batch} at --size {input_size}",
            arch.name(),
            args.filters_scale
        )
    };
    let lower = "--batch-size, --size or --filters-scale";
    crate::memory::ensure_fits(
        classifier_fp.inference_bytes(batch_size.max(eval_batch)),
        &what(batch_size),
        lower,
    )?;

    let source = Source {
        arch,
        cut,
        input_size,
        in_shape: point_shape(b, &net, cut, input_size)?,
    };
    let config = DecoderConfig::paper(&source)
        .map_err(dec_err)?
        .scaled(args.filters_scale);
    let decoder_fp = crate::memory::decoder_footprint(
        config.seed_shape().map_err(dec_err)?,
        &config.filters,
        config.blocks_per_group,
        config.out_size,
    );
    let needed = if b.name() == "cpu" {
        (classifier_fp.inference_bytes(batch_size) + decoder_fp.training_bytes(batch_size, 2))
            .max(classifier_fp.inference_bytes(eval_batch) + decoder_fp.inference_bytes(eval_batch))
    } else {
        classifier_fp.host_bytes(batch_size, 0) + decoder_fp.host_bytes(batch_size, 2)
    };
    crate::memory::ensure_fits(needed, &what(batch_size), lower)?;
    let target_t = Transform::new(Some(config.out_size), [0.0; 3], [1.0; 3]);
    let gflop_per_image = 2.0 * config.macs_per_image().map_err(dec_err)? as f64 / 1e9;
    let mut decoder = Decoder::init(b, config, args.seed).map_err(dec_err)?;
    let params = decoder.num_params();
    let mean_mse = mean_image_mse(&train, &test, &target_t)?;
    let extra_meta = BTreeMap::from([
        ("mep.decoder.data".to_string(), args.data.clone()),
        ("mep.decoder.classifier".to_string(), args.weights.display().to_string()),
        ("mep.decoder.lr".to_string(), lr.to_string()),
        ("mep.decoder.batch_size".to_string(), batch_size.to_string()),
    ]);
    // ---- The output: everything above only reads; from here on the run writes. ----
    // One writer per decoder file (creates its folder): two trainings of one `--out`
    // would save over each other; other decoders of the same folder are not held up.
    let _lock = crate::lock::FolderLock::acquire_file(&args.out, "mep decoder train")?;

    let mut adam = Adam::new(AdamParams {
        lr,
        ..AdamParams::default()
    });
    let mut history = Vec::new();
    for epoch in 0..epochs {
        let t0 = Instant::now();
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(steps as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("decoder epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for (step, pair) in
            paired_batches(&train, &input_t, &target_t, batch_size, true, args.seed, epoch as u64)?.enumerate()
        {
            let (x, t) = pair?;
            let n = x.labels.len();
            let x = Tensor::from_vec(b, x.shape, x.x)?;
            let z = net.encode(b, &x, cut)?;
            let t = Tensor::from_vec(b, t.shape, t.x)?;
            let (y, tape) = decoder.forward(b, &z, Mode::Train).map_err(dec_err)?;
            let (mse, dy) = mse_loss(b, &y, &t).map_err(dec_err)?;
            if !mse.is_finite() {
                return Err(MepError::Diverged {
                    loss: "reconstruction loss",
                    value: mse,
                    epoch: epoch + 1,
                    step: step + 1,
                    steps,
                    lr,
                });
            }
            decoder.backward(b, tape, &dy, Grads::WEIGHTS).map_err(dec_err)?;
            adam.step(b, &mut decoder.params_mut())?;
            loss_sum += mse * n as f64;
            seen += n;
            bar.inc(1);
            bar.set_message(format!(
                "mse {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64()
            ));
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let test_mse = held_out_mse(b, &net, &decoder, &test, &input_t, &target_t, batch_size.max(64))?;
        let stats = DecoderEpoch {
            epoch: epoch + 1,
            train_mse: loss_sum / seen.max(1) as f64,
            test_mse,
            images_per_s: seen as f64 / train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if !args.quiet {
            eprintln!(
                "decoder epoch {}/{epochs}: train MSE {:.5}, test MSE {:.5} (mean image {:.5}), {:.0} images/s, {:.1} s",
                stats.epoch, stats.train_mse, stats.test_mse, mean_mse, stats.images_per_s, stats.seconds
            );
        }
        history.push(stats);
        let mut meta = extra_meta.clone();
        meta.insert("mep.decoder.epochs_done".into(), (epoch + 1).to_string());
        decoder.save(b, &args.out, &meta).map_err(dec_err)?;
    }
    let config = &decoder.config;
    let report = DecoderTrainReport {
        arch: arch.name().into(),
        cut: cut.to_string(),
        data: args.data.clone(),
        input_size,
        in_shape: config.in_shape.clone(),
        out_size: config.out_size,
        filters: config.filters.clone(),
        blocks_per_group: config.blocks_per_group,
        params,
        gflop_per_image,
        train_images: train.len(),
        test_images: test.len(),
        batch_size,
        lr,
        epochs: history,
        mean_image_mse: mean_mse,
        out: args.out.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    // Beside the checkpoint, written last: its presence says the training finished (the
    // checkpoint itself is replaced after every epoch), and the report shows the MSE.
    let json_path = args.out.with_extension("json");
    let json = serde_json::to_string_pretty(&report).map_err(|source| MepError::Encode {
        what: "decoder report".into(),
        source,
    })?;
    crate::study::write_atomic(&json_path, (json + "\n").as_bytes())?;
    Ok(report)
}

impl fmt::Display for DecoderTrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
        writeln!(
            f,
            "decoder for {} at `{}` ({}×{} input, points {} → 3×{}×{}) on {}: filters {:?} × {} blocks, \
             {} parameters, {:.3} GFLOP/image",
            self.arch,
            self.cut,
            self.input_size,
            self.input_size,
            list(&self.in_shape),
            self.out_size,
            self.out_size,
            self.data,
            self.filters,
            self.blocks_per_group,
            self.params,
            self.gflop_per_image
        )?;
        writeln!(
            f,
            "{} train / {} test images, batch {}, lr {}, {:.1} s",
            self.train_images, self.test_images, self.batch_size, self.lr, self.seconds
        )?;
        writeln!(f, "epoch  train MSE   test MSE   images/s   seconds")?;
        for e in &self.epochs {
            writeln!(
                f,
                "{:>5} {:>10.5} {:>10.5} {:>10.0} {:>9.1}",
                e.epoch, e.train_mse, e.test_mse, e.images_per_s, e.seconds
            )?;
        }
        writeln!(f, "test MSE of the mean training image: {:.5}", self.mean_image_mse)?;
        writeln!(f, "decoder: {}", self.out.display())
    }
}
