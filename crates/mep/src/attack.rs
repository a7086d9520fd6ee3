//! `mep attack`: projected gradient descent (Madry et al. 2018) on the network's own input
//! gradient, L∞ or L2, untargeted or targeted, in the pixel space `[0, 1]` of the image the
//! network sees; the adversarial images written, with the natural images they came from,
//! as an image folder that `--data` reads, and a pairs file for `mep connect`.
//!
//! The folder `OUT` holds:
//! - `OUT/<class>/nat_NNNNNN.png`: each natural image under its label (`NNNNNN` its index
//!   in the test split of `--data`), the attacked ones and, per class, a few more
//!   correctly classified ones that the pairs need;
//! - `OUT/<class>/adv_NNNNNN_from_<true class>.png`: each adversarial image under the class
//!   the model puts it in after it was rounded to 8 bits (a failed attack stays in its
//!   true class);
//! - `OUT/attack.jsonl`: one [`AttackRecord`] per attacked image;
//! - `OUT/attack.json`: the [`AttackReport`] (settings and summary);
//! - `OUT/pairs.csv`: for `mep connect --data OUT --pairs-file OUT/pairs.csv`, each
//!   successful adversarial image with a natural image of its adversarial class
//!   (`i,j,adversarial`), and as many natural pairs of the same classes (`i,j`).
//!
//! Class folders are named by the model's class names when those sort in the model's
//! order (CIFAR-10's do); otherwise by `NN_name`, so that the folder's class numbers, which
//! come from the sorted folder names, are the model's.

use crate::data::{open_dataset, resolve_transform};
use crate::eval::class_rows;
use crate::{MepError, Result};
use mep_data::{Dataset, Rng, Split, Transform};
use mep_resnet::{Arch, Cut, FoldedResNet};
use mep_tensor::{Backend, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// The per-image records, one JSON object a line.
pub const RECORDS: &str = "attack.jsonl";
/// The settings and summary.
pub const SUMMARY: &str = "attack.json";
/// The pairs for `mep connect --pairs-file`.
pub const PAIRS: &str = "pairs.csv";

/// The ball the perturbation is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `max |p − p0| ≤ eps`; steps move every pixel by `step` along the gradient's sign.
    Linf,
    /// `‖p − p0‖₂ ≤ eps` per image; steps of length `step` along the gradient.
    L2,
}

impl Norm {
    /// The default radius: 8/255 (L∞, the CIFAR-10 convention) or 0.5 (L2).
    pub fn default_eps(self) -> f64 {
        match self {
            Norm::Linf => 8.0 / 255.0,
            Norm::L2 => 0.5,
        }
    }

    /// The default step: 2/255 (L∞) or 0.1 (L2).
    pub fn default_step(self) -> f64 {
        match self {
            Norm::Linf => 2.0 / 255.0,
            Norm::L2 => 0.1,
        }
    }
}

impl FromStr for Norm {
    type Err = MepError;
    fn from_str(s: &str) -> Result<Norm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l-inf" | "l∞" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            _ => Err(MepError::option("--norm", s, "expected linf or l2")),
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::Linf => "linf",
            Norm::L2 => "l2",
        })
    }
}

/// What `mep attack` reads. [`AttackArgs::new`] gives the command's defaults.
#[derive(Clone, Debug)]
pub struct AttackArgs {
    /// The architecture (`resnet20`, `resnet50`, ...).
    pub arch: String,
    /// The checkpoint (safetensors, torchvision key names).
    pub weights: PathBuf,
    /// The dataset, as [`open_dataset`] reads it; sources come from its test split.
    pub data: String,
    /// Input size, overriding the one the checkpoint records (the images are written at it).
    pub size: Option<usize>,
    /// The ball of the perturbation.
    pub norm: Norm,
    /// Its radius in pixel units (`[0, 1]` images); `None` is [`Norm::default_eps`].
    pub eps: Option<f64>,
    /// The step (α); `None` is [`Norm::default_step`].
    pub step: Option<f64>,
    /// Gradient steps per image.
    pub steps: usize,
    /// Start at a random point of the ball (seeded per image) instead of the image.
    pub random_start: bool,
    /// Targeted: the class (name or number) every image is pushed into; `None` is untargeted.
    pub target: Option<String>,
    /// How many correctly classified test images to attack.
    pub images: usize,
    /// Attack only images of these classes (names or numbers).
    pub classes: Vec<String>,
    /// Seed of the choice of images and of the random starts.
    pub seed: u64,
    /// Images per network call.
    pub batch: usize,
    /// The output folder; must be new or empty.
    pub out: PathBuf,
    /// Where the network runs.
    pub device: crate::device::Device,
    /// No progress messages.
    pub quiet: bool,
}

impl AttackArgs {
    /// The command's defaults: untargeted L∞ PGD, eps 8/255, step 2/255, 10 steps, 100
    /// images, batch 64.
    pub fn new(
        arch: impl Into<String>,
        weights: impl Into<PathBuf>,
        data: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        AttackArgs {
            arch: arch.into(),
            weights: weights.into(),
            data: data.into(),
            size: None,
            norm: Norm::Linf,
            eps: None,
            step: None,
            steps: 10,
            random_start: false,
            target: None,
            images: 100,
            classes: Vec::new(),
            seed: 0,
            batch: 64,
            out: out.into(),
            device: Default::default(),
            quiet: false,
        }
    }

    /// The radius in use.
    pub fn eps(&self) -> f64 {
        self.eps.unwrap_or(self.norm.default_eps())
    }

    /// The step in use.
    pub fn step(&self) -> f64 {
        self.step.unwrap_or(self.norm.default_step())
    }

    fn validate(&self) -> Result<Arch> {
        let arch: Arch = self.arch.parse()?;
        let (eps, step) = (self.eps(), self.step());
        if !(eps.is_finite() && eps > 0.0) {
            return Err(MepError::option(
                "--eps",
                eps,
                "must be a positive number (pixel units, images in [0, 1])",
            ));
        }
        if self.norm == Norm::Linf && eps > 1.0 {
            return Err(MepError::option(
                "--eps",
                eps,
                "an L∞ radius above 1 allows any image in [0, 1]; give at most 1",
            ));
        }
        if !(step.is_finite() && step > 0.0) {
            return Err(MepError::option("--step", step, "must be a positive number"));
        }
        if self.steps == 0 {
            return Err(MepError::option("--steps", 0, "must be at least 1"));
        }
        if self.steps > 1_000_000 {
            return Err(MepError::option("--steps", self.steps, "must be at most 1000000"));
        }
        if self.images == 0 {
            return Err(MepError::option("--images", 0, "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(MepError::option("--batch", 0, "must be at least 1"));
        }
        crate::data::check_size(self.size)?;
        Ok(arch)
    }
}

/// The settings and summary of an attack (`OUT/attack.json`), and what the command prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttackReport {
    /// `mep` and its version.
    pub tool: String,
    pub arch: String,
    pub weights: PathBuf,
    /// The dataset the images came from (`--data`).
    pub data: String,
    /// The side of the images the network sees and the folder holds.
    pub input_size: usize,
    /// The normalisation after `[0, 1]` pixels.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub norm: Norm,
    pub eps: f64,
    pub step: f64,
    pub steps: usize,
    pub random_start: bool,
    /// The target class of a targeted attack.
    pub target: Option<usize>,
    /// The classes the images were drawn from (every class when empty).
    pub class_filter: Vec<usize>,
    pub seed: u64,
    pub batch: usize,
    /// The backend (`cpu`, `cuda`).
    pub device: String,
    /// The model's class names, and the folder of each in `out`.
    pub classes: Vec<String>,
    pub folders: Vec<String>,
    /// Images attacked (fewer than `--images` when the split has no more correct ones).
    pub images: usize,
    /// Successful before rounding to 8 bits, and after (what the folder holds).
    pub success_float: usize,
    pub success: usize,
    /// `success / images`.
    pub success_rate: f64,
    /// Medians over the successful images (after rounding) of the perturbation's L∞ and L2
    /// norms in pixel units; `None` without a success.
    pub median_linf: Option<f64>,
    pub median_l2: Option<f64>,
    /// Natural images written (the attacked ones and those the pairs need).
    pub natural_images: usize,
    /// Lines of `pairs.csv`: adversarial–natural, and natural–natural.
    pub pairs_adversarial: usize,
    pub pairs_natural: usize,
    /// The PGD alone (every step of every batch), and images attacked per second in it.
    pub attack_seconds: f64,
    pub images_per_second: f64,
    /// The whole command.
    pub seconds: f64,
    pub out: PathBuf,
}

impl fmt::Display for AttackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.target {
            Some(t) => format!("targeted at {}", self.classes[t]),
            None => "untargeted".to_string(),
        };
        writeln!(
            f,
            "PGD {} eps {:.5} step {:.5} x {} steps, {kind}: {} of {} images adversarial after rounding to 8 bits ({} before), {:.1} %",
            self.norm,
            self.eps,
            self.step,
            self.steps,
            self.success,
            self.images,
            self.success_float,
            100.0 * self.success_rate
        )?;
        if let (Some(a), Some(b)) = (self.median_linf, self.median_l2) {
            writeln!(
                f,
                "median perturbation of the successes: L∞ {a:.5} ({:.2}/255), L2 {b:.4}",
                a * 255.0
            )?;
        }
        writeln!(
            f,
            "PGD {:.2} s ({:.1} images/s); {:.2} s in all on {}",
            self.attack_seconds, self.images_per_second, self.seconds, self.device
        )?;
        writeln!(
            f,
            "{} natural images; {} adversarial and {} natural pairs in {}",
            self.natural_images, self.pairs_adversarial, self.pairs_natural, PAIRS
        )?;
        writeln!(f, "wrote {}", self.out.display())
    }
}

/// A number of attack.jsonl: `null` when not finite, NaN when read back from `null`, so a
/// record with a NaN loss is written, read and shown as one (pandas reads `null` as NaN).
mod non_finite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// One attacked image (a line of `OUT/attack.jsonl`). Norms are in pixel units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    /// Its index in the test split of `--data`.
    pub source: usize,
    pub true_class: usize,
    /// The target of a targeted attack.
    pub target: Option<usize>,
    /// The model's class for the adversarial image before rounding, and after (the folder
    /// it is in); `None` when a logit is not finite.
    pub predicted_float: Option<usize>,
    pub adversarial_class: Option<usize>,
    /// Untargeted: the class changed; targeted: it is the target.
    pub success_float: bool,
    pub success: bool,
    /// The perturbation before rounding, and after.
    pub linf_float: f64,
    pub l2_float: f64,
    pub linf: f64,
    pub l2: f64,
    /// The cross-entropy the attack moves (of the true class untargeted, of the target
    /// targeted) and the softmax probability of that class: of the natural image, of the
    /// adversarial one before rounding and after. A value that is not finite is written
    /// as `null` (JSON has no NaN) and read back as NaN, never as a number.
    #[serde(with = "non_finite_as_null")]
    pub loss_natural: f64,
    #[serde(with = "non_finite_as_null")]
    pub loss_float: f64,
    #[serde(with = "non_finite_as_null")]
    pub loss: f64,
    #[serde(with = "non_finite_as_null")]
    pub prob_natural: f64,
    #[serde(with = "non_finite_as_null")]
    pub prob: f64,
    /// The files in `out` and their indices in its test split.
    pub natural_file: String,
    pub natural_index: usize,
    pub adversarial_file: String,
    pub adversarial_index: usize,
}

/// A classifier seen from pixel space: `[n, 3, H, W]` images in `[0, 1]`, normalised by
/// `(p − mean) / std` per channel (as [`Transform::apply`] does) before the network.
pub struct PixelNet<'a, B: Backend> {
    pub b: &'a B,
    pub net: &'a FoldedResNet<B>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub height: usize,
    pub width: usize,
}

/// Logits, per-row cross-entropy and softmax, and the gradient of the summed loss.
pub struct PixelLossGrad {
    /// `[n, classes]`.
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    pub losses: Vec<f32>,
    /// `d Σ loss / d p`, `[n, 3, H, W]`.
    pub grad: Vec<f32>,
}

impl<B: Backend> PixelNet<'_, B> {
    fn plane(&self) -> usize {
        self.height * self.width
    }

    fn rows(&self, p: &[f32]) -> Result<usize> {
        let d = 3 * self.plane();
        if d == 0 || !p.len().is_multiple_of(d) {
            return Err(MepError::unusable(
                "a batch of pixel images",
                format!(
                    "{} values are not a whole number of 3x{}x{} images",
                    p.len(),
                    self.height,
                    self.width
                ),
            ));
        }
        Ok(p.len() / d)
    }

    /// The network's input: the operations of `Transform::apply`, in its order, so that an
    /// image on the 8-bit grid gives the bits the folder gives when read back.
    fn normalise(&self, p: &[f32]) -> Result<Tensor<B>> {
        let n = self.rows(p)?;
        let plane = self.plane();
        let mut x = Vec::with_capacity(p.len());
        for img in p.chunks(3 * plane) {
            for c in 0..3 {
                let (m, s) = (self.mean[c], self.std[c]);
                x.extend(img[c * plane..(c + 1) * plane].iter().map(|&v| (v - m) / s));
            }
        }
        Ok(Tensor::from_vec(self.b, [n, 3, self.height, self.width], x)?)
    }

    /// The logits of images `p`.
    pub fn logits(&self, p: &[f32]) -> Result<Vec<f32>> {
        let x = self.normalise(p)?;
        Ok(self.net.head(self.b, &x, Cut::Input)?.to_vec(self.b)?)
    }

    /// Cross-entropy of each image against its target and the gradient of their sum with
    /// respect to the pixels: the network's input gradient (`head_loss_grad` at the input)
    /// divided by the channel's std.
    pub fn loss_grad(&self, p: &[f32], targets: &[usize]) -> Result<PixelLossGrad> {
        let x = self.normalise(p)?;
        let hg = self.net.head_loss_grad(self.b, &x, Cut::Input, targets, 1.0)?;
        let mut grad = hg.grad.to_vec(self.b)?;
        let plane = self.plane();
        for img in grad.chunks_mut(3 * plane) {
            for c in 0..3 {
                let s = self.std[c];
                img[c * plane..(c + 1) * plane].iter_mut().for_each(|g| *g /= s);
            }
        }
        Ok(PixelLossGrad {
            logits: hg.logits.to_vec(self.b)?,
            probs: hg.probs.to_vec(self.b)?,
            losses: hg.losses,
            grad,
        })
    }
}

/// What the records say of a batch of logits: each row's cross-entropy against its target
/// and the target's softmax probability (in f64, from the log-sum-exp).
struct Scores {
    logits: Vec<f32>,
    losses: Vec<f64>,
    probs: Vec<f64>,
}

impl Scores {
    fn of(logits: &[f32], k: usize, targets: &[usize]) -> Scores {
        let (mut losses, mut probs) = (Vec::new(), Vec::new());
        for (row, &t) in logits.chunks(k).zip(targets) {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            let loss = lse - row[t] as f64;
            losses.push(loss);
            probs.push((-loss).exp());
        }
        Scores {
            logits: logits.to_vec(),
            losses,
            probs,
        }
    }
}

/// The settings of one PGD run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pgd {
    pub norm: Norm,
    pub eps: f32,
    pub step: f32,
    pub steps: usize,
    pub random_start: bool,
    /// Descend the targets' loss (targeted) instead of ascending it (untargeted).
    pub targeted: bool,
}

/// A uniform draw in `[0, 1)` (24 bits, exact in f32).
fn unit(rng: &mut Rng) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f32 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn l2_norm(v: impl Iterator<Item = f32>) -> f32 {
    v.map(|x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32
}

/// Puts `p` back in the ball of radius `eps` around `p0` and in `[0, 1]`, as torchattacks'
/// PGD and PGDL2 do: clip (L∞) or scale (L2) the perturbation, then clamp the image.
fn project(norm: Norm, eps: f32, p0: &[f32], p: &mut [f32]) {
    match norm {
        Norm::Linf => {
            for (v, &o) in p.iter_mut().zip(p0) {
                *v = (o + (*v - o).clamp(-eps, eps)).clamp(0.0, 1.0);
            }
        }
        Norm::L2 => {
            let n = l2_norm(p.iter().zip(p0).map(|(v, o)| v - o));
            let factor = if n > eps { eps / n } else { 1.0 };
            for (v, &o) in p.iter_mut().zip(p0) {
                *v = (o + (*v - o) * factor).clamp(0.0, 1.0);
            }
        }
    }
}

/// PGD from the images `p0` (`[n, 3, H, W]` in `[0, 1]`), each pushed away from its
/// target's class (untargeted) or into it (targeted) for `pgd.steps` steps, kept in the
/// ball and in `[0, 1]` after each. `rngs` (one per image) draw the random starts, so an
/// image's start does not depend on its batch. Returns the final images.
pub fn pgd<B: Backend>(
    net: &PixelNet<'_, B>,
    p0: &[f32],
    targets: &[usize],
    pgd: &Pgd,
    rngs: &mut [Rng],
) -> Result<Vec<f32>> {
    let n = net.rows(p0)?;
    let d = p0.len() / n.max(1);
    if targets.len() != n || rngs.len() != n {
        return Err(MepError::unusable(
            "PGD",
            format!(
                "{n} images with {} targets and {} generators",
                targets.len(),
                rngs.len()
            ),
        ));
    }
    let mut p = p0.to_vec();
    if pgd.random_start {
        for ((row, o), rng) in p.chunks_mut(d).zip(p0.chunks(d)).zip(rngs.iter_mut()) {
            match pgd.norm {
                Norm::Linf => row.iter_mut().for_each(|v| *v += (2.0 * unit(rng) - 1.0) * pgd.eps),
                Norm::L2 => {
                    // A Gaussian direction at a uniform fraction of the radius (torchattacks' PGDL2).
                    let dir: Vec<f32> = (0..d).map(|_| normal(rng)).collect();
                    let len = l2_norm(dir.iter().copied()).max(f32::MIN_POSITIVE);
                    let r = unit(rng) * pgd.eps / len;
                    row.iter_mut().zip(&dir).for_each(|(v, g)| *v += g * r);
                }
            }
            project(pgd.norm, pgd.eps, o, row);
        }
    }
    let sign = if pgd.targeted { -1.0 } else { 1.0 };
    for _ in 0..pgd.steps {
        let g = net.loss_grad(&p, targets)?.grad;
        for ((row, grow), o) in p.chunks_mut(d).zip(g.chunks(d)).zip(p0.chunks(d)) {
            match pgd.norm {
                Norm::Linf => {
                    let a = sign * pgd.step;
                    // sign(0) = 0, as torch.sign.
                    row.iter_mut().zip(grow).for_each(|(v, &g)| {
                        if g != 0.0 {
                            *v += a * g.signum()
                        }
                    });
                }
                Norm::L2 => {
                    let a = sign * pgd.step / (l2_norm(grow.iter().copied()) + 1e-10);
                    row.iter_mut().zip(grow).for_each(|(v, &g)| *v += a * g);
                }
            }
            project(pgd.norm, pgd.eps, o, row);
        }
    }
    Ok(p)
}

/// The 8-bit image nearest `p` whose perturbation from `q0` (8-bit) stays in the ball:
/// each value rounded to the nearest grid point; for L∞ clipped to the grid points within
/// `eps` of `q0`. For L2, rounding away from `q0` can lengthen the perturbation past `eps`
/// (a value 0.6 grid steps from `q0` becomes 1 step), so while it is too long the values
/// rounded away by the most are rounded towards `q0` instead; with every value rounded
/// towards `q0` it is no longer than `p − q0`, so this ends inside the ball.
pub fn quantise(norm: Norm, eps: f32, q0: &[u8], p: &[f32]) -> Vec<u8> {
    let round = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    match norm {
        Norm::Linf => {
            // The most grid steps within eps (the slack absorbs eps = k/255 in f32).
            let m = (eps as f64 * 255.0 + 1e-3).floor() as i32;
            q0.iter()
                .zip(p)
                .map(|(&o, &v)| (round(v) as i32).clamp(o as i32 - m, o as i32 + m).clamp(0, 255) as u8)
                .collect()
        }
        Norm::L2 => {
            let mut q: Vec<u8> = p.iter().map(|&v| round(v)).collect();
            // Squared length in grid steps, against eps in grid steps.
            let limit = (eps as f64 * 255.0).powi(2);
            let steps = |a: u8, o: u8| (a as f64 - o as f64).abs();
            let mut len2: f64 = q.iter().zip(q0).map(|(&a, &o)| steps(a, o).powi(2)).sum();
            if len2 <= limit {
                return q;
            }
            // Each value rounded away from q0, by how far it overshoots |p − q0|.
            let mut away: Vec<(f64, usize)> = q
                .iter()
                .zip(q0)
                .zip(p)
                .enumerate()
                .filter_map(|(k, ((&a, &o), &v))| {
                    let over = steps(a, o) - (v as f64 * 255.0 - o as f64).abs();
                    (over > 0.0).then_some((over, k))
                })
                .collect();
            away.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (_, k) in away {
                if len2 <= limit {
                    break;
                }
                let d = steps(q[k], q0[k]);
                len2 -= d * d - (d - 1.0) * (d - 1.0);
                q[k] = if q[k] > q0[k] { q[k] - 1 } else { q[k] + 1 };
            }
            q
        }
    }
}

/// The pixels of 8-bit CHW values.
fn to_pixels(q: &[u8]) -> Vec<f32> {
    q.iter().map(|&v| v as f32 / 255.0).collect()
}

/// The perturbation's L∞ and L2 norms.
fn norms(a: &[f32], b: &[f32]) -> (f64, f64) {
    let mut linf = 0f64;
    let mut l2 = 0f64;
    for (x, y) in a.iter().zip(b) {
        let d = (*x as f64 - *y as f64).abs();
        linf = linf.max(d);
        l2 += d * d;
    }
    (linf, l2.sqrt())
}

/// The test images `idx` as 8-bit CHW at the network's size: the transform's resize with no
/// normalisation, rounded to the 8-bit grid (a no-op without a resize).
fn source_pixels(split: &Split, transform: &Transform, idx: &[usize]) -> Result<(Vec<u8>, (usize, usize))> {
    let plain = Transform {
        size: transform.size,
        mean: [0.0; 3],
        std: [1.0; 3],
        augment: None,
    };
    let mut out = Vec::new();
    let mut hw = None;
    let mut buf = Vec::new();
    for &i in idx {
        let img = split.image(i)?;
        let (h, w) = plain.output_hw(&img);
        if *hw.get_or_insert((h, w)) != (h, w) {
            return Err(MepError::unusable(
                format!("test image {i}"),
                format!("{h}x{w} after the transform, others {hw:?}; pass --size to resize all images"),
            ));
        }
        buf.resize(3 * h * w, 0.0);
        plain.apply(&img, &mut Rng::new(0), &mut buf)?;
        out.extend(buf.iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8));
    }
    Ok((out, hw.unwrap_or((0, 0))))
}

/// Folder names for `classes` that sort in the classes' order: the names themselves when
/// they do and are plain file names, else `NN_name` with unsafe characters replaced.
pub fn class_folders(classes: &[String]) -> Vec<String> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' ' | '+'))
    };
    if classes.iter().all(|c| plain(c)) && classes.windows(2).all(|w| w[0] < w[1]) {
        return classes.to_vec();
    }
    let digits = classes.len().saturating_sub(1).to_string().len();
    classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i:0digits$}_{}", crate::study::file_safe(c)))
        .collect()
}

/// Resolves `--target` (a class name or number).
fn parse_target(target: &str, classes: &[String]) -> Result<usize> {
    crate::connect::pairs::parse_class("--target", target, classes)
}

/// The test indices in an order fixed by `seed` (Fisher–Yates).
fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::from_parts(&[seed, 0x6174_7461_636b_0001]).shuffle(&mut order);
    order
}

/// Classifies test images on demand, `batch` at a time, remembering each answer.
struct Classifier<'a, B: Backend> {
    net: &'a PixelNet<'a, B>,
    split: &'a Split,
    transform: &'a Transform,
    batch: usize,
    known: HashMap<usize, Option<usize>>,
}

impl<B: Backend> Classifier<'_, B> {
    fn classify(&mut self, idx: &[usize]) -> Result<()> {
        let todo: Vec<usize> = idx.iter().copied().filter(|i| !self.known.contains_key(i)).collect();
        for chunk in todo.chunks(self.batch) {
            let (q, _) = source_pixels(self.split, self.transform, chunk)?;
            let logits = self.net.logits(&to_pixels(&q))?;
            self.known
                .extend(chunk.iter().copied().zip(class_rows(&logits, self.net.net.num_classes)));
        }
        Ok(())
    }

    /// The first `count` images of `candidates` (in order) that the model classifies
    /// correctly, classifying only as many as needed.
    fn first_correct(&mut self, candidates: &[usize], count: usize) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        let mut at = 0;
        while out.len() < count && at < candidates.len() {
            // Twice what is still missing (most images are classified correctly), at most a batch.
            let want = 2 * (count - out.len());
            let end = (at + want.min(self.batch)).min(candidates.len());
            self.classify(&candidates[at..end])?;
            for &i in &candidates[at..end] {
                if out.len() < count && self.known[&i] == Some(self.split.labels[i]) {
                    out.push(i);
                }
            }
            at = end;
        }
        Ok(out)
    }
}

/// An 8-bit CHW image as PNG bytes.
fn png(q: &[u8], h: usize, w: usize, path: &Path) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let plane = h * w;
    let mut hwc = vec![0u8; 3 * plane];
    for c in 0..3 {
        for k in 0..plane {
            hwc[3 * k + c] = q[c * plane + k];
        }
    }
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&hwc, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| MepError::Results {
            path: path.to_path_buf(),
            msg: format!("encoding the PNG failed: {e}"),
        })?;
    Ok(bytes)
}

/// The attacked images: one record each, and their natural and adversarial 8-bit pixels
/// (`[n, 3, H, W]`, CHW) in the records' order.
struct Attacked {
    records: Vec<AttackRecord>,
    natural: Vec<u8>,
    adversarial: Vec<u8>,
    /// The PGD alone.
    seconds: f64,
}

/// PGD on `sources` in batches of `args.batch`, each result rounded to 8 bits and
/// classified before and after; the records' files and indices are left to fill.
fn attack_images<B: Backend>(
    net: &PixelNet<'_, B>,
    split: &Split,
    transform: &Transform,
    sources: &[usize],
    target: Option<usize>,
    settings: &Pgd,
    args: &AttackArgs,
) -> Result<Attacked> {
    let (h, w, k) = (net.height, net.width, net.net.num_classes);
    let d = 3 * h * w;
    let mut q0_all = Vec::with_capacity(sources.len() * d);
    let mut q_all = Vec::with_capacity(sources.len() * d);
    let mut records = Vec::with_capacity(sources.len());
    let mut attack_seconds = 0.0;
    for chunk in sources.chunks(args.batch) {
        let (q0, _) = source_pixels(split, transform, chunk)?;
        let p0 = to_pixels(&q0);
        let targets: Vec<usize> = chunk.iter().map(|&i| target.unwrap_or(split.labels[i])).collect();
        let mut rngs: Vec<Rng> = chunk
            .iter()
            .map(|&i| Rng::from_parts(&[args.seed, i as u64, 0x7067_6400_0000_0002]))
            .collect();
        let t = Instant::now();
        let p = pgd(net, &p0, &targets, settings, &mut rngs)?;
        attack_seconds += t.elapsed().as_secs_f64();
        let q = quantise(args.norm, settings.eps, &q0, &p);
        let pq = to_pixels(&q);
        // Forward passes only: the scores need no gradient.
        let natural = Scores::of(&net.logits(&p0)?, k, &targets);
        let float = Scores::of(&net.logits(&p)?, k, &targets);
        let rounded = Scores::of(&net.logits(&pq)?, k, &targets);
        let class_float = class_rows(&float.logits, k);
        let class_rounded = class_rows(&rounded.logits, k);
        for (r, &i) in chunk.iter().enumerate() {
            let label = split.labels[i];
            let success = |c: Option<usize>| match target {
                Some(t) => c == Some(t),
                None => c.is_some_and(|c| c != label),
            };
            let row = r * d..(r + 1) * d;
            let (linf_float, l2_float) = norms(&p[row.clone()], &p0[row.clone()]);
            let (linf, l2) = norms(&pq[row.clone()], &p0[row]);
            records.push(AttackRecord {
                source: i,
                true_class: label,
                target,
                predicted_float: class_float[r],
                adversarial_class: class_rounded[r],
                success_float: success(class_float[r]),
                success: success(class_rounded[r]),
                linf_float,
                l2_float,
                linf,
                l2,
                loss_natural: natural.losses[r],
                loss_float: float.losses[r],
                loss: rounded.losses[r],
                prob_natural: natural.probs[r],
                prob: rounded.probs[r],
                natural_file: String::new(),
                natural_index: 0,
                adversarial_file: String::new(),
                adversarial_index: 0,
            });
        }
        q0_all.extend(q0);
        q_all.extend(q);
    }
    Ok(Attacked {
        records,
        natural: q0_all,
        adversarial: q_all,
        seconds: attack_seconds,
    })
}

/// The lines of `pairs.csv`: each successful adversarial image (`records`, indices filled)
/// with a natural image of its class in turn, then the next distinct natural pair of that
/// class, so that any prefix of the file is balanced; `naturals` holds each class's
/// correctly classified natural images by index in the folder. Also the counts of the two
/// kinds.
fn pair_lines(records: &[AttackRecord], naturals: &[Vec<usize>]) -> (Vec<String>, usize, usize) {
    let mut used_adv = vec![0usize; naturals.len()];
    let mut lines = vec![
        "# mep attack: adversarial image (i) and natural image (j) of the class the model puts i in,".to_string(),
        "# then a natural pair of that class; indices into this folder's images as mep and torchvision number them"
            .to_string(),
    ];
    let (mut pairs_adversarial, mut pairs_natural) = (0, 0);
    for (rec, c) in records
        .iter()
        .filter(|r| r.success)
        .filter_map(|r| Some((r, r.adversarial_class?)))
    {
        let nats = &naturals[c];
        if nats.is_empty() {
            continue;
        }
        let n = used_adv[c];
        used_adv[c] += 1;
        lines.push(format!(
            "{},{},adversarial",
            rec.adversarial_index,
            nats[n % nats.len()]
        ));
        pairs_adversarial += 1;
        // The n-th pair (a, b), a < b, ordered by b then a.
        let mut b = 1;
        while b * (b + 1) / 2 <= n {
            b += 1;
        }
        let a = n - b * (b - 1) / 2;
        if b < nats.len() {
            lines.push(format!("{},{}", nats[a], nats[b]));
            pairs_natural += 1;
        }
    }
    (lines, pairs_adversarial, pairs_natural)
}

/// The natural images per class (test indices): the attacked ones, then correct ones until
/// each class with adversarial images has enough for as many distinct natural pairs, and
/// every class has two (one at least: a folder class may not be empty; where the model
/// gets none of a class right, one misclassified image, in no pair). Also the images this
/// adds to the attacked ones.
fn naturals_for_pairs<B: Backend>(
    classifier: &mut Classifier<'_, B>,
    order: &[usize],
    sources: &[usize],
    records: &[AttackRecord],
    classes: &[String],
) -> Result<(Vec<Vec<usize>>, Vec<usize>)> {
    let split = classifier.split;
    let k = classes.len();
    let mut naturals: Vec<Vec<usize>> = vec![Vec::new(); k];
    for &i in sources {
        naturals[split.labels[i]].push(i);
    }
    let mut adversarial_in = vec![0usize; k];
    for c in records.iter().filter(|r| r.success).filter_map(|r| r.adversarial_class) {
        adversarial_in[c] += 1;
    }
    let used: HashSet<usize> = sources.iter().copied().collect();
    let mut extra_natural = Vec::new();
    for c in 0..k {
        // m naturals give m(m−1)/2 natural pairs and m partners for the adversarial ones.
        let mut want = 2usize;
        while want * (want - 1) / 2 < adversarial_in[c] {
            want += 1;
        }
        if naturals[c].len() >= want {
            continue;
        }
        let of_c: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| split.labels[*i] == c && !used.contains(i))
            .collect();
        let more = classifier.first_correct(&of_c, want - naturals[c].len())?;
        if naturals[c].is_empty() && more.is_empty() {
            // The folder needs an image of every class; a misclassified one is in no pair.
            match of_c.first() {
                Some(&i) => extra_natural.push(i),
                None => {
                    return Err(MepError::unusable(
                        format!("class {}", classes[c]),
                        "has no test image, and the folder needs one of every class",
                    ))
                }
            }
        }
        naturals[c].extend(&more);
        extra_natural.extend(more);
    }
    Ok((naturals, extra_natural))
}

/// Runs `mep attack` on the backend `args.device` names.
pub fn attack(args: &AttackArgs) -> Result<AttackReport> {
    args.validate()?;
    let data = open_dataset(&args.data)?;
    crate::on_device!(args.device, |b| attack_with(b, args, &data))
}

/// Refuses an output folder that holds anything but its lock file: images left there
/// would join the dataset and shift every index of the pairs file.
fn check_empty(out: &Path) -> Result<()> {
    let entries = std::fs::read_dir(out).map_err(|source| MepError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| MepError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        if e.file_name() != ".mep-lock" {
            return Err(MepError::Conflict {
                path: out.to_path_buf(),
                reason: format!(
                    "holds {} already; `mep attack` writes a dataset into a new or empty folder (its \
                     indices would shift with other files); use another --out or delete it",
                    e.file_name().to_string_lossy()
                ),
            });
        }
    }
    Ok(())
}

/// As [`attack`], on backend `b` and a dataset already in hand (`args.data` is then only
/// recorded). The steps: the model and transform, refusals before the folder exists; the
/// images to attack (the first `--images` correctly classified ones in a seeded order);
/// [`attack_images`] (PGD in batches, rounding to 8 bits, classifying again);
/// [`naturals_for_pairs`]; the folder written and read back for its indices;
/// [`pair_lines`]; the records and the summary.
pub fn attack_with<B: Backend>(b: &B, args: &AttackArgs, data: &Dataset) -> Result<AttackReport> {
    let started = Instant::now();
    let arch = args.validate()?;
    let (folded, width, recorded) = crate::eval::load_folded(b, arch, &args.weights)?;
    let split = &data.test;
    let transform = resolve_transform(recorded, args.size, split)?;
    let k = data.classes.len();
    if folded.num_classes != k {
        return Err(MepError::ClassMismatch {
            model: format!("{}: the model", args.weights.display()),
            model_classes: folded.num_classes,
            data: format!("the dataset {}", data.name),
            data_classes: k,
        });
    }
    let class_filter = crate::connect::pairs::parse_classes(&args.classes, &data.classes)?;
    let target = args
        .target
        .as_deref()
        .map(|t| parse_target(t, &data.classes))
        .transpose()?;
    let size = crate::data::image_size(split, transform.size)?;
    let f = crate::memory::resnet_footprint(arch, width, size, k);
    let needed = if b.name() == "cpu" {
        f.training_bytes(args.batch, 0)
    } else {
        f.host_bytes(args.batch, 0)
    };
    crate::memory::ensure_fits(
        needed,
        &format!(
            "PGD on {} (width {width}) at --size {size} with --batch {}",
            arch.name(),
            args.batch
        ),
        "--batch or --size",
    )?;
    std::fs::create_dir_all(&args.out).map_err(|source| MepError::Io {
        path: args.out.clone(),
        source,
    })?;
    let _lock = crate::lock::FolderLock::acquire(&args.out, "mep attack")?;
    check_empty(&args.out)?;

    let (_, (h, w)) = source_pixels(split, &transform, &[0]).map_err(|e| match split.is_empty() {
        true => MepError::unusable("the test split", "has no images"),
        false => e,
    })?;
    let net = PixelNet {
        b,
        net: &folded,
        mean: transform.mean,
        std: transform.std,
        height: h,
        width: w,
    };
    let mut classifier = Classifier {
        net: &net,
        split,
        transform: &transform,
        batch: args.batch,
        known: HashMap::new(),
    };
    let order = seeded_order(split.len(), args.seed);
    let candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| {
            let l = split.labels[i];
            (class_filter.is_empty() || class_filter.contains(&l)) && Some(l) != target
        })
        .collect();
    let sources = classifier.first_correct(&candidates, args.images)?;
    if sources.is_empty() {
        return Err(MepError::unusable(
            "no image to attack",
            format!(
                "the model classifies none of the {} candidate test images correctly{}",
                candidates.len(),
                if target.is_some() {
                    " (images of the target class are left out)"
                } else {
                    ""
                }
            ),
        ));
    }
    if !args.quiet {
        eprintln!("attacking {} images on {}", sources.len(), b.name());
    }

    let settings = Pgd {
        norm: args.norm,
        eps: args.eps() as f32,
        step: args.step() as f32,
        steps: args.steps,
        random_start: args.random_start,
        targeted: target.is_some(),
    };
    let Attacked {
        mut records,
        natural,
        adversarial,
        seconds: attack_seconds,
    } = attack_images(&net, split, &transform, &sources, target, &settings, args)?;

    let (naturals, extra_natural) = naturals_for_pairs(&mut classifier, &order, &sources, &records, &data.classes)?;

    // Write the folder.
    let folders = class_folders(&data.classes);
    let out = &args.out;
    let write = |rel: &str, q: &[u8]| -> Result<()> {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MepError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        crate::study::write_atomic(&path, &png(q, h, w, &path)?)
    };
    let nat_file = |i: usize| format!("{}/nat_{i:06}.png", folders[split.labels[i]]);
    let d = 3 * h * w;
    for (r, rec) in records.iter_mut().enumerate() {
        let row = r * d..(r + 1) * d;
        rec.natural_file = nat_file(rec.source);
        write(&rec.natural_file, &natural[row.clone()])?;
        let home = rec.adversarial_class.unwrap_or(rec.true_class);
        rec.adversarial_file = format!(
            "{}/adv_{:06}_from_{}.png",
            folders[home],
            rec.source,
            crate::study::file_safe(&data.classes[rec.true_class])
        );
        write(&rec.adversarial_file, &adversarial[row])?;
    }
    for chunk in extra_natural.chunks(args.batch) {
        let (q, _) = source_pixels(split, &transform, chunk)?;
        for (r, &i) in chunk.iter().enumerate() {
            write(&nat_file(i), &q[r * d..(r + 1) * d])?;
        }
    }

    // Indices as mep-data numbers the folder.
    let written = mep_data::load_image_folder(out)?;
    if written.classes != folders {
        return Err(MepError::Conflict {
            path: out.clone(),
            reason: format!("read back with the classes {:?}, not {:?}", written.classes, folders),
        });
    }
    let index: HashMap<PathBuf, usize> = (0..written.test.len())
        .filter_map(|i| written.test.path(i).map(|p| (p.to_path_buf(), i)))
        .collect();
    let find = |rel: &str| -> Result<usize> {
        index.get(&out.join(rel)).copied().ok_or_else(|| MepError::Missing {
            path: out.join(rel),
            what: "written but not found when the folder was read back".into(),
            hint: None,
        })
    };
    for rec in &mut records {
        rec.natural_index = find(&rec.natural_file)?;
        rec.adversarial_index = find(&rec.adversarial_file)?;
    }

    // The pairs, by the folder's indices.
    let correct_naturals: Vec<Vec<usize>> = naturals
        .iter()
        .map(|list| list.iter().map(|&i| find(&nat_file(i))).collect::<Result<Vec<_>>>())
        .collect::<Result<_>>()?;
    let (lines, pairs_adversarial, pairs_natural) = pair_lines(&records, &correct_naturals);
    let mut jsonl = String::new();
    for rec in &records {
        jsonl.push_str(&serde_json::to_string(rec).map_err(|source| MepError::Encode {
            what: format!("the record of image {}", rec.source),
            source,
        })?);
        jsonl.push('\n');
    }
    crate::study::write_atomic(&out.join(RECORDS), jsonl.as_bytes())?;
    crate::study::write_atomic(&out.join(PAIRS), (lines.join("\n") + "\n").as_bytes())?;

    let success = records.iter().filter(|r| r.success).count();
    let successes = || records.iter().filter(|r| r.success);
    let report = AttackReport {
        tool: format!("mep {}", env!("CARGO_PKG_VERSION")),
        arch: arch.name().to_string(),
        weights: args.weights.clone(),
        data: args.data.clone(),
        input_size: h,
        mean: transform.mean,
        std: transform.std,
        norm: args.norm,
        eps: args.eps(),
        step: args.step(),
        steps: args.steps,
        random_start: args.random_start,
        target,
        class_filter,
        seed: args.seed,
        batch: args.batch,
        device: b.name().to_string(),
        classes: data.classes.clone(),
        folders,
        images: records.len(),
        success_float: records.iter().filter(|r| r.success_float).count(),
        success,
        success_rate: success as f64 / records.len() as f64,
        median_linf: crate::study::stats::median(&successes().map(|r| r.linf).collect::<Vec<_>>()),
        median_l2: crate::study::stats::median(&successes().map(|r| r.l2).collect::<Vec<_>>()),
        natural_images: sources.len() + extra_natural.len(),
        pairs_adversarial,
        pairs_natural,
        attack_seconds,
        images_per_second: records.len() as f64 / attack_seconds.max(1e-9),
        seconds: started.elapsed().as_secs_f64(),
        out: out.clone(),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|source| MepError::Encode {
        what: "the attack's summary".into(),
        source,
    })?;
    crate::study::write_atomic(&out.join(SUMMARY), (json + "\n").as_bytes())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nan_loss_is_written_as_null_and_read_back_as_nan() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct R {
            #[serde(with = "super::non_finite_as_null")]
            v: f64,
        }
        let text = serde_json::to_string(&R { v: f64::NAN }).unwrap();
        assert_eq!(text, r#"{"v":null}"#);
        let back: R = serde_json::from_str(&text).unwrap();
        assert!(back.v.is_nan());
        let back: R = serde_json::from_str(r#"{"v":0.25}"#).unwrap();
        assert_eq!(back.v, 0.25);
    }

    use super::*;

    #[test]
    fn folders_keep_the_model_order() {
        let sorted: Vec<String> = ["airplane", "bird", "cat"].map(String::from).to_vec();
        assert_eq!(class_folders(&sorted), sorted);
        let unsorted: Vec<String> = ["ring", "circle", "two dots/x"].map(String::from).to_vec();
        let f = class_folders(&unsorted);
        assert_eq!(f, ["0_ring", "1_circle", "2_two_dots_x"]);
        let mut s = f.clone();
        s.sort();
        assert_eq!(s, f);
    }

    #[test]
    fn quantisation_stays_in_the_ball() {
        let q0: Vec<u8> = (0..200).map(|i| (i % 256) as u8).collect();
        let mut rng = Rng::new(3);
        let p: Vec<f32> = q0
            .iter()
            .map(|&o| (o as f32 / 255.0 + (unit(&mut rng) - 0.5) * 0.2).clamp(0.0, 1.0))
            .collect();
        for (norm, eps) in [(Norm::Linf, 8.0 / 255.0), (Norm::Linf, 0.0314), (Norm::L2, 0.3)] {
            let mut pp = p.clone();
            project(norm, eps, &to_pixels(&q0), &mut pp);
            let q = quantise(norm, eps, &q0, &pp);
            let (linf, l2) = norms(&to_pixels(&q), &to_pixels(&q0));
            let r = if norm == Norm::Linf { linf } else { l2 };
            assert!(r <= eps as f64 + 1e-6, "{norm} {r} > {eps}");
            let (linf_p, l2_p) = norms(&pp, &to_pixels(&q0));
            let float = if norm == Norm::Linf { linf_p } else { l2_p };
            assert!(
                r > 0.9 * float,
                "{norm}: the rounding threw the perturbation away ({r} of {float})"
            );
        }
        // PGD's L2 perturbations spread over every pixel, most of them a fraction of a grid
        // step: rounding them up lengthened the perturbation by half, and scaling it down
        // until its rounding fit the ball once left a sixth of it.
        let q0 = vec![128u8; 3072];
        let p: Vec<f32> = (0..3072)
            .map(|k| (128.0 + if k % 50 == 0 { 6.0 } else { 0.7 }) / 255.0)
            .collect();
        let eps = norms(&p, &to_pixels(&q0)).1 as f32;
        let q = quantise(Norm::L2, eps, &q0, &p);
        let l2 = norms(&to_pixels(&q), &to_pixels(&q0)).1;
        assert!(l2 <= eps as f64 + 1e-6 && l2 > 0.85 * eps as f64, "{l2} of {eps}");
    }

    fn record(success: bool, class: usize, index: usize) -> AttackRecord {
        AttackRecord {
            source: index,
            true_class: 9,
            target: None,
            predicted_float: Some(class),
            adversarial_class: Some(class),
            success_float: success,
            success,
            linf_float: 0.0,
            l2_float: 0.0,
            linf: 0.0,
            l2: 0.0,
            loss_natural: 0.0,
            loss_float: 0.0,
            loss: 0.0,
            prob_natural: 0.0,
            prob: 0.0,
            natural_file: String::new(),
            natural_index: 0,
            adversarial_index: index,
            adversarial_file: String::new(),
        }
    }

    #[test]
    fn pairs_alternate_and_natural_pairs_never_repeat() {
        // Class 0 has three natural images (10, 11, 12), class 1 one, class 2 none.
        let naturals = vec![vec![10, 11, 12], vec![20], vec![]];
        let records = [
            record(true, 0, 100),
            record(false, 9, 101),
            record(true, 0, 102),
            record(true, 1, 103),
            record(true, 0, 104),
            record(true, 0, 105),
            record(true, 2, 106),
        ];
        let (lines, adversarial, natural) = pair_lines(&records, &naturals);
        let body: Vec<&str> = lines
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            body,
            [
                "100,10,adversarial",
                "10,11",
                "102,11,adversarial",
                "10,12",
                "103,20,adversarial",
                "104,12,adversarial",
                "11,12",
                "105,10,adversarial",
            ]
        );
        assert_eq!((adversarial, natural), (5, 3));
    }

    #[test]
    fn bad_options_name_themselves() {
        let mut a = AttackArgs::new("resnet20", "w", "synthetic", "out");
        a.eps = Some(-1.0);
        assert!(a.validate().unwrap_err().to_string().starts_with("--eps -1"));
        a.eps = None;
        a.steps = 0;
        assert!(a.validate().unwrap_err().to_string().starts_with("--steps 0"));
        a.steps = 3;
        a.step = Some(f64::NAN);
        assert!(a.validate().unwrap_err().to_string().starts_with("--step NaN"));
        a.step = None;
        a.images = 0;
        assert!(a.validate().unwrap_err().to_string().starts_with("--images 0"));
        assert!("l3".parse::<Norm>().unwrap_err().to_string().starts_with("--norm l3"));
        let classes: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(parse_target("b", &classes).unwrap(), 1);
        assert_eq!(parse_target("0", &classes).unwrap(), 0);
        assert!(parse_target("2", &classes)
            .unwrap_err()
            .to_string()
            .starts_with("--target 2"));
    }
}
