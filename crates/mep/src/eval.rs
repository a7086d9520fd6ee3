//! `mep eval`: accuracy and per-class accuracy of a checkpoint on a dataset split. The
//! same function scores the test split after each training epoch, so the two agree.

use crate::data::{open_dataset, resolve_transform, transform_from_metadata};
use crate::device::Device;
use crate::{MepError, Result};
use mep_data::{Loader, Split, Transform};
use mep_resnet::{Arch, Checkpoint, Cut, FoldedResNet, ResNet};
use mep_tensor::{Backend, Tensor};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Correct and total counts of one class.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassAccuracy {
    pub class: String,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
}

/// The score of a network on a split.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalReport {
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    pub per_class: Vec<ClassAccuracy>,
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "accuracy {:.2} % ({} of {})",
            100.0 * self.accuracy,
            self.correct,
            self.total
        )?;
        for c in &self.per_class {
            writeln!(
                f,
                "  {:<14} {:>6.2} %  ({} of {})",
                c.class,
                100.0 * c.accuracy,
                c.correct,
                c.total
            )?;
        }
        Ok(())
    }
}

/// The index of the largest value of each row of `[n, c]` logits, as `torch.argmax`: the
/// first maximum, or the first NaN of a row that holds one (NaN counts as the largest).
pub fn argmax_rows(logits: &[f32], c: usize) -> Vec<usize> {
    logits
        .chunks(c)
        .map(|row| match row.iter().position(|v| v.is_nan()) {
            Some(i) => i,
            None => {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                    )
                    .0
            }
        })
        .collect()
}

/// The class each row of `[n, c]` logits puts its point in: the argmax, or `None` when a
/// logit is NaN or ±∞. A point whose logits are not finite is in no class, so a path search
/// never counts it as joining its endpoints and an endpoint check never counts it correct.
pub fn class_rows(logits: &[f32], c: usize) -> Vec<Option<usize>> {
    argmax_rows(logits, c)
        .into_iter()
        .zip(logits.chunks(c))
        .map(|(p, row)| row.iter().all(|v| v.is_finite()).then_some(p))
        .collect()
}

/// Scores `net` on every image of `split`, batch by batch, in index order.
pub fn evaluate<B: Backend>(
    b: &B,
    net: &FoldedResNet<B>,
    split: &Arc<Split>,
    transform: &Transform,
    classes: &[String],
    batch_size: usize,
) -> Result<EvalReport> {
    let k = classes.len();
    if net.num_classes != k {
        return Err(MepError::ClassMismatch {
            model: "the model".into(),
            model_classes: net.num_classes,
            data: "the dataset".into(),
            data_classes: k,
        });
    }
    let mut correct = vec![0usize; k];
    let mut total = vec![0usize; k];
    let loader = Loader::new(split.clone(), transform.clone(), batch_size, false, 0, false)?;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = Tensor::from_vec(b, batch.shape, batch.x)?;
        let logits = net.head(b, &x, Cut::Input)?.to_vec(b)?;
        for (pred, &label) in argmax_rows(&logits, k).into_iter().zip(&batch.labels) {
            total[label] += 1;
            correct[label] += usize::from(pred == label);
        }
    }
    let frac = |c: usize, t: usize| if t == 0 { 0.0 } else { c as f64 / t as f64 };
    let (c_all, t_all) = (correct.iter().sum(), total.iter().sum());
    Ok(EvalReport {
        correct: c_all,
        total: t_all,
        accuracy: frac(c_all, t_all),
        per_class: classes
            .iter()
            .enumerate()
            .map(|(i, name)| ClassAccuracy {
                class: name.clone(),
                correct: correct[i],
                total: total[i],
                accuracy: frac(correct[i], total[i]),
            })
            .collect(),
    })
}

/// What `mep eval` reads.
#[derive(Clone, Debug)]
pub struct EvalArgs {
    pub arch: String,
    pub weights: PathBuf,
    pub data: String,
    /// `test` or `train`.
    pub split: String,
    /// Input size; by default the one recorded by `mep train`, else the images' own.
    pub size: Option<usize>,
    pub batch_size: usize,
    /// Where it computes.
    pub device: Device,
    /// The arithmetic of convolutions and linear layers (`--precision`; fp32 by default). A
    /// backend without kernels for it refuses it before any work.
    pub precision: crate::Precision,
}

impl EvalArgs {
    /// Checks the options that need no file: a known architecture, a batch size of at least
    /// one, a size the networks take.
    pub fn validate(&self) -> Result<Arch> {
        let arch: Arch = self.arch.parse()?;
        if self.batch_size == 0 {
            return Err(MepError::option("--batch-size", 0, "must be at least 1"));
        }
        crate::data::check_size(self.size)?;
        Ok(arch)
    }
}

/// Runs `mep eval` on the backend `args.device` names.
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    args.validate()?;
    crate::on_device!(args.device, |b| eval_with(b, args))
}

/// The classifier in `weights` (of `arch`) with its batch norms folded, its width, and the
/// input transform its metadata records: what eval and connect run.
pub(crate) fn load_folded<B: Backend>(
    b: &B,
    arch: Arch,
    weights: &Path,
) -> Result<(FoldedResNet<B>, usize, Option<Transform>)> {
    let ck = Checkpoint::load(weights)?;
    let recorded = transform_from_metadata(ck.metadata());
    let model = ResNet::from_checkpoint(b, arch, ck)?;
    let net = FoldedResNet::fold(b, &model)?;
    Ok((net, model.width, recorded))
}

/// Runs `mep eval` on backend `b`.
pub fn eval_with<B: Backend>(b: &B, args: &EvalArgs) -> Result<EvalReport> {
    let arch = args.validate()?;
    crate::device::use_precision(b, args.precision)?;
    let (net, width, recorded) = load_folded(b, arch, &args.weights)?;
    let data = open_dataset(&args.data)?;
    let split = Arc::new(data.split(&args.split)?.clone());
    let transform = resolve_transform(recorded, args.size, &split)?;
    let size = crate::data::image_size(&split, transform.size)?;
    // A batch never holds more images than the split.
    let batch = args.batch_size.min(split.len().max(1));
    let f = crate::memory::resnet_footprint(arch, width, size, net.num_classes);
    let needed = if b.name() == "cpu" {
        f.inference_bytes(batch)
    } else {
        f.host_bytes(batch, 0)
    };
    crate::memory::ensure_fits(
        needed,
        &format!(
            "evaluating {} (width {width}) with --batch-size {} at --size {size}",
            arch.name(),
            args.batch_size
        ),
        "--batch-size or --size",
    )?;
    evaluate(b, &net, &split, &transform, &data.classes, args.batch_size)
}
