//! The energy of the path search: the cross-entropy of the head of the network at a
//! point `z` of a cut, against the pair's class.

use crate::eval::{argmax_rows, class_rows};
use crate::{MepError, Result};
use mep_neb::{Energy, Evaluation, NebError};
use mep_resnet::{Cut, FoldedResNet, ResNetError};
use mep_tensor::precision::Precision;
use mep_tensor::{Backend, Shape, Tensor};

/// What [`HeadEnergy`] reports about each point besides its energy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadAux {
    /// The class the network predicts at the point (argmax of the logits, as `torch.argmax`:
    /// a NaN's index when a logit is NaN).
    pub predicted: usize,
    /// Whether every logit at the point is finite; a point with NaN or ±∞ logits is in no
    /// class, whatever `predicted` says.
    pub finite: bool,
    /// The softmax probability of the target class at the point.
    pub target_prob: f64,
}

impl HeadAux {
    /// Whether the network puts the point in class `target`: finite logits whose argmax is
    /// `target`.
    pub fn in_class(&self, target: usize) -> bool {
        self.finite && self.predicted == target
    }
}

/// `L(z) = cross-entropy(target, head(z, cut))` on the points `z` of a cut, whose shape
/// (without the batch) is `point_shape`: the energy whose minimum energy paths the NEB
/// looks for (Gu & Borovykh 2023, §3). One `evaluate` is one batched call of
/// [`FoldedResNet::head`] (or [`FoldedResNet::head_loss_grad`] with scale 1 when gradients are asked
/// for): the per-row losses are the energies, the gradient rows their gradients.
///
/// Evaluations with gradients (what moves the NEB's pivots) run at the search precision of
/// [`HeadEnergy::with_search_precision`]; evaluations without (the dense checks of lines and
/// paths that decide a category, and the endpoints' energies) always run in fp32, whatever
/// the backend was set to, so that no verdict depends on TF32 or bf16.
pub struct HeadEnergy<'a, B: Backend> {
    net: &'a FoldedResNet<B>,
    cut: Cut,
    target: usize,
    point_shape: Vec<usize>,
    dim: usize,
    max_batch: usize,
    search: Precision,
}

impl<'a, B: Backend> HeadEnergy<'a, B> {
    /// The energy of class `target` at `cut`, for points of `point_shape` (e.g. `[16, 32, 32]`
    /// at `layer1` of a ResNet-20, `[64]` at `pool`: `encode(x, cut)`'s shape without its
    /// batch). At most 64 points per network call until [`HeadEnergy::with_max_batch`].
    pub fn new(net: &'a FoldedResNet<B>, cut: Cut, target: usize, point_shape: &[usize]) -> Result<Self> {
        net.arch.position(cut)?;
        if target >= net.num_classes {
            return Err(MepError::unusable(
                format!("target class {target}"),
                format!("out of range: the network has {} classes", net.num_classes),
            ));
        }
        let channels = net.channels(cut)?;
        let rank_ok = if cut == Cut::Pool {
            point_shape.len() == 1
        } else {
            point_shape.len() == 3
        };
        if !rank_ok || point_shape.first() != Some(&channels) || point_shape.contains(&0) {
            return Err(MepError::ResNet(ResNetError::Input {
                expected: if cut == Cut::Pool {
                    format!("a point shape [{channels}] at cut `{cut}`")
                } else {
                    format!("a point shape [{channels}, H, W] at cut `{cut}`")
                },
                found: format!("{point_shape:?}"),
            }));
        }
        Ok(HeadEnergy {
            net,
            cut,
            target,
            dim: point_shape.iter().product(),
            point_shape: point_shape.to_vec(),
            max_batch: 64,
            search: Precision::Fp32,
        })
    }

    /// The same energy with its gradient evaluations in precision `p` (fp32 until then); the
    /// backend must accept `p` ([`crate::device::check_precision`]).
    pub fn with_search_precision(mut self, p: Precision) -> Self {
        self.search = p;
        self
    }

    /// The same energy with at most `n` points (at least 1) per network call.
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// The cut the points live at.
    pub fn cut(&self) -> Cut {
        self.cut
    }

    /// The target class.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The shape of one point.
    pub fn point_shape(&self) -> &[usize] {
        &self.point_shape
    }

    /// [`Energy::evaluate_on_device`] at whatever precision the backend is at:
    /// [`FoldedResNet::head_loss_grad`]'s launches without its host reads, the losses going
    /// straight into `energies`.
    fn evaluate_on_device_here(
        &self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: &mut B::Buf,
        energies: &mut B::Buf,
    ) -> mep_neb::Result<()> {
        let z = self.points(b, points, n)?;
        let (_, _, grad) = self
            .net
            .head_loss_grad_into(b, &z, self.cut, &vec![self.target; n], 1.0, energies)
            .map_err(energy_err)?;
        b.copy(&grad.buf, grads)?;
        Ok(())
    }

    /// The `n` points in the rows of `points` as a `[n, point_shape]` tensor.
    fn points(&self, b: &B, points: &B::Buf, n: usize) -> mep_tensor::Result<Tensor<B>> {
        let mut shape = Vec::with_capacity(self.point_shape.len() + 1);
        shape.push(n);
        shape.extend_from_slice(&self.point_shape);
        let mut z = Tensor::alloc(b, Shape::new(shape))?;
        b.copy(points, &mut z.buf)?;
        Ok(z)
    }
}

fn energy_err(e: ResNetError) -> NebError {
    NebError::Energy(Box::new(e))
}

impl<B: Backend> Energy<B> for HeadEnergy<'_, B> {
    type Aux = HeadAux;

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn evaluates_on_device(&self) -> bool {
        true
    }

    fn evaluate_on_device(
        &mut self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: &mut B::Buf,
        energies: &mut B::Buf,
    ) -> mep_neb::Result<()> {
        // Gradients move pivots: the search precision, as `evaluate` with gradients. The
        // switch is host state, so a capture records the kernels of that precision.
        crate::device::at_precision(b, self.search, || {
            self.evaluate_on_device_here(b, points, n, grads, energies)
        })?
    }

    fn evaluate(
        &mut self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: Option<&mut B::Buf>,
    ) -> mep_neb::Result<Evaluation<HeadAux>> {
        let p = if grads.is_some() { self.search } else { Precision::Fp32 };
        crate::device::at_precision(b, p, || self.evaluate_here(b, points, n, grads))?
    }
}

impl<B: Backend> HeadEnergy<'_, B> {
    /// [`Energy::evaluate`] at whatever precision the backend is at.
    fn evaluate_here(
        &self,
        b: &B,
        points: &B::Buf,
        n: usize,
        grads: Option<&mut B::Buf>,
    ) -> mep_neb::Result<Evaluation<HeadAux>> {
        let c = self.net.num_classes;
        let z = self.points(b, points, n)?;
        let targets = vec![self.target; n];
        let (logits, probs, losses) = match grads {
            Some(g) => {
                let hg = self
                    .net
                    .head_loss_grad(b, &z, self.cut, &targets, 1.0)
                    .map_err(energy_err)?;
                b.copy(&hg.grad.buf, g)?;
                (hg.logits.to_vec(b)?, hg.probs.to_vec(b)?, hg.losses)
            }
            None => {
                let logits = self.net.head(b, &z, self.cut).map_err(energy_err)?;
                let mut probs = b.alloc(n * c)?;
                let mut losses = b.alloc(n)?;
                b.softmax_cross_entropy(n, c, &logits.buf, &targets, &mut probs, &mut losses)?;
                (logits.to_vec(b)?, b.download(&probs)?, b.download(&losses)?)
            }
        };
        let aux = argmax_rows(&logits, c)
            .into_iter()
            .zip(class_rows(&logits, c))
            .enumerate()
            .map(|(r, (predicted, class))| HeadAux {
                predicted,
                finite: class.is_some(),
                target_prob: probs[r * c + self.target] as f64,
            })
            .collect();
        Ok(Evaluation {
            energies: losses.into_iter().map(f64::from).collect(),
            aux,
        })
    }
}
