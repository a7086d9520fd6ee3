//! The network folded for inference: every batch norm merged into the convolution before
//! it (exact up to rounding), bias, residual add and ReLU fused into the convolution's
//! epilogue. This is what the experiment runs: `encode`, `head` and the gradient of a
//! loss of the head with respect to the point `z` at a cut, without weight gradients.

use crate::arch::{Arch, Cut};
use crate::error::{ResNetError, Result};
use crate::model::{nchw_of, pool_geom, ConvBn, ResNet, Shortcut};
use mep_tensor::{Act, Backend, Conv2dGeom, Nchw, Shape, Tensor};

/// A convolution with batch norm folded in: `act(conv(x, w) + bias [+ residual])`.
struct FoldedConvWeights<B: Backend> {
    w: Tensor<B>,
    bias: Tensor<B>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl<B: Backend> FoldedConvWeights<B> {
    // BN(conv(x)) = a ⊙ conv(x) + shift = conv_{a⊙w}(x) + shift, per output channel.
    fn fold(b: &B, u: &ConvBn<B>) -> Result<Self> {
        let (a, shift) = u.bn.affine(b)?;
        let w = u.conv.weight.value.to_vec(b)?;
        let per = w.len() / u.conv.c_out;
        let wf: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, &v)| (v as f64 * a[i / per]) as f32)
            .collect();
        let bias: Vec<f32> = shift.iter().map(|&s| s as f32).collect();
        Ok(FoldedConvWeights {
            w: Tensor::from_vec(b, u.conv.weight.value.shape.clone(), wf)?,
            bias: Tensor::from_vec(b, [u.conv.c_out], bias)?,
            c_in: u.conv.c_in,
            c_out: u.conv.c_out,
            k: u.conv.k,
            stride: u.conv.stride,
            pad: u.conv.pad,
        })
    }

    fn geom(&self, s: &Nchw) -> Result<Conv2dGeom> {
        if s.c != self.c_in {
            return Err(ResNetError::Input {
                expected: format!("[N, {}, H, W]", self.c_in),
                found: s.shape().to_string(),
            });
        }
        Ok(Conv2dGeom::square(
            "resnet conv",
            *s,
            self.c_out,
            self.k,
            self.stride,
            self.pad,
        )?)
    }

    fn forward(&self, b: &B, x: &Tensor<B>, residual: Option<&Tensor<B>>, act: Act) -> Result<Tensor<B>> {
        let g = self.geom(&nchw_of(x)?)?;
        let mut y = Tensor::alloc(b, g.output().shape())?;
        b.conv2d(
            &g,
            &x.buf,
            &self.w.buf,
            Some(&self.bias.buf),
            residual.map(|r| &r.buf),
            act,
            &mut y.buf,
        )?;
        Ok(y)
    }

    /// Input gradient from the gradient at the pre-activation: only the input's shape is
    /// needed, never its values.
    fn backward_input(&self, b: &B, x_shape: &Shape, dpre: &Tensor<B>) -> Result<Tensor<B>> {
        let g = self.geom(&x_shape.nchw("resnet conv")?)?;
        let mut dx = Tensor::alloc(b, x_shape.clone())?;
        b.conv2d_bwd_input(&g, &dpre.buf, &self.w.buf, &mut dx.buf)?;
        Ok(dx)
    }
}

enum FoldedShortcutWeights<B: Backend> {
    Identity,
    Projection(FoldedConvWeights<B>),
    PadA { pad: usize, subsample: bool },
}

struct FoldedBlockWeights<B: Backend> {
    convs: Vec<FoldedConvWeights<B>>,
    shortcut: FoldedShortcutWeights<B>,
}

/// What a taped forward keeps of one segment: its input's shape, its output, and the
/// outputs of its inner convolutions (the ReLU masks the backward needs).
struct SegRec<B: Backend> {
    seg: usize,
    in_shape: Shape,
    out: Tensor<B>,
    inner: Vec<Tensor<B>>,
}

/// The logits of `head(z, cut)`, the softmax, the per-row cross-entropy against the
/// targets, and the gradient of `scale · Σ losses` with respect to `z`.
pub struct HeadGrad<B: Backend> {
    pub logits: Tensor<B>,
    pub probs: Tensor<B>,
    pub losses: Vec<f32>,
    pub grad: Tensor<B>,
}

/// The activation at each cut point, in order from the input.
pub type CutActivations<B> = Vec<(Cut, Tensor<B>)>;

/// A ResNet folded for inference, split at cut points.
///
/// The segments, in order: the stem, each stage, the global average pool, the classifier.
/// A cut sits between two segments (see [`Arch::position`]).
pub struct FoldedResNet<B: Backend> {
    pub arch: Arch,
    pub num_classes: usize,
    stem: FoldedConvWeights<B>,
    maxpool: bool,
    stages: Vec<Vec<FoldedBlockWeights<B>>>,
    fc_w: Tensor<B>,
    fc_b: Tensor<B>,
    features: usize,
}

fn stage_channels<B: Backend>(stage: &[FoldedBlockWeights<B>]) -> usize {
    stage.last().and_then(|b| b.convs.last()).map_or(0, |c| c.c_out)
}

impl<B: Backend> FoldedResNet<B> {
    /// Folds a trained network's batch norms (with their running statistics) into its
    /// convolutions.
    pub fn fold(b: &B, model: &ResNet<B>) -> Result<Self> {
        let stem = FoldedConvWeights::fold(b, &model.stem)?;
        let mut stages = Vec::new();
        for blocks in &model.stages {
            let mut fb = Vec::new();
            for block in blocks {
                let convs = block
                    .units
                    .iter()
                    .map(|u| FoldedConvWeights::fold(b, u))
                    .collect::<Result<Vec<_>>>()?;
                let shortcut = match &block.shortcut {
                    Shortcut::Identity => FoldedShortcutWeights::Identity,
                    Shortcut::Projection(u) => FoldedShortcutWeights::Projection(FoldedConvWeights::fold(b, u)?),
                    &Shortcut::PadA { pad, subsample } => FoldedShortcutWeights::PadA { pad, subsample },
                };
                fb.push(FoldedBlockWeights { convs, shortcut });
            }
            stages.push(fb);
        }
        let fc_b = match &model.fc.bias {
            Some(p) => p.value.duplicate(b)?,
            None => Tensor::zeros(b, [model.num_classes])?,
        };
        Ok(FoldedResNet {
            arch: model.arch,
            num_classes: model.num_classes,
            stem,
            maxpool: !model.arch.is_cifar(),
            stages,
            fc_w: model.fc.weight.value.duplicate(b)?,
            fc_b,
            features: model.fc.in_features,
        })
    }

    /// Loads a checkpoint and folds it.
    pub fn load(b: &B, arch: Arch, path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::fold(b, &ResNet::load(b, arch, path)?)
    }

    fn segments(&self) -> usize {
        self.stages.len() + 3
    }

    /// The channels of the activation at `cut`.
    pub fn channels(&self, cut: Cut) -> Result<usize> {
        let p = self.arch.position(cut)?;
        Ok(match p {
            0 => 3,
            1 => self.stem.c_out,
            p if p <= self.stages.len() + 1 => stage_channels(&self.stages[p - 2]),
            _ => self.features,
        })
    }

    fn check_at(&self, z: &Tensor<B>, cut: Cut) -> Result<()> {
        let c = self.channels(cut)?;
        let ok = match (cut, z.shape.dims()) {
            (Cut::Pool, &[n, f]) => n > 0 && f == c,
            (Cut::Pool, _) => false,
            (_, &[n, zc, h, w]) => n > 0 && zc == c && h > 0 && w > 0,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            let expected = if cut == Cut::Pool {
                format!("[N, {c}] at cut `{cut}`")
            } else {
                format!("[N, {c}, H, W] at cut `{cut}`")
            };
            Err(ResNetError::Input {
                expected,
                found: z.shape.to_string(),
            })
        }
    }

    fn segment_forward(&self, b: &B, seg: usize, x: &Tensor<B>, keep: bool) -> Result<(Tensor<B>, Vec<Tensor<B>>)> {
        let stages = self.stages.len();
        if seg == 0 {
            let a = self.stem.forward(b, x, None, Act::Relu)?;
            if !self.maxpool {
                return Ok((a, Vec::new()));
            }
            let g = pool_geom(&a)?;
            let mut y = Tensor::alloc(b, g.output().shape())?;
            b.max_pool2d(&g, &a.buf, &mut y.buf)?;
            return Ok((y, if keep { vec![a] } else { Vec::new() }));
        }
        if seg <= stages {
            // inner: the outputs of block 0's non-final convs, block 0's output, block 1's
            // non-final convs, ..., and out is the last block's output.
            let blocks = &self.stages[seg - 1];
            let mut inner = Vec::new();
            let mut cur: Option<Tensor<B>> = None;
            for (i, blk) in blocks.iter().enumerate() {
                if keep && i > 0 {
                    inner.push(cur.take().expect("previous block ran"));
                }
                let input = match (i, keep) {
                    (0, _) => x,
                    (_, true) => inner.last().expect("pushed above"),
                    (_, false) => cur.as_ref().expect("previous block ran"),
                };
                let (y, mids) = self.block_forward(b, blk, input, keep)?;
                inner.extend(mids);
                cur = Some(y);
            }
            return Ok((cur.expect("a stage has at least one block"), inner));
        }
        if seg == stages + 1 {
            let s = nchw_of(x)?;
            let mut y = Tensor::alloc(b, [s.n, s.c])?;
            b.global_avg_pool(&s, &x.buf, &mut y.buf)?;
            return Ok((y, Vec::new()));
        }
        let n = x.shape.dims()[0];
        let mut y = Tensor::alloc(b, [n, self.num_classes])?;
        b.linear(
            n,
            self.features,
            self.num_classes,
            &x.buf,
            &self.fc_w.buf,
            Some(&self.fc_b.buf),
            &mut y.buf,
        )?;
        Ok((y, Vec::new()))
    }

    /// One block: its output and, with `keep`, the outputs of its non-final convolutions.
    fn block_forward(
        &self,
        b: &B,
        blk: &FoldedBlockWeights<B>,
        x: &Tensor<B>,
        keep: bool,
    ) -> Result<(Tensor<B>, Vec<Tensor<B>>)> {
        let mut inner = Vec::new();
        let owned;
        let s = match &blk.shortcut {
            FoldedShortcutWeights::Identity => x,
            FoldedShortcutWeights::Projection(c) => {
                owned = c.forward(b, x, None, Act::Identity)?;
                &owned
            }
            &FoldedShortcutWeights::PadA { pad, subsample } => {
                let sx = nchw_of(x)?;
                let out = sx.shortcut_pad(subsample, pad);
                let mut y = Tensor::alloc(b, out.shape())?;
                b.shortcut_pad(&sx, subsample, pad, &x.buf, &mut y.buf)?;
                owned = y;
                &owned
            }
        };
        let last = blk.convs.len() - 1;
        let mut cur: Option<Tensor<B>> = None;
        for (i, c) in blk.convs.iter().enumerate() {
            let input = cur.as_ref().unwrap_or(x);
            let y = c.forward(b, input, (i == last).then_some(s), Act::Relu)?;
            if let Some(prev) = cur.replace(y) {
                if keep {
                    inner.push(prev);
                }
            }
        }
        Ok((cur.expect("a block has convolutions"), inner))
    }

    /// Runs segments `from..to`; the output, and the records when taping.
    fn run(
        &self,
        b: &B,
        x: &Tensor<B>,
        from: usize,
        to: usize,
        tape: Option<&mut Vec<SegRec<B>>>,
    ) -> Result<Tensor<B>> {
        match tape {
            None => {
                let mut cur: Option<Tensor<B>> = None;
                for seg in from..to {
                    let (y, _) = self.segment_forward(b, seg, cur.as_ref().unwrap_or(x), false)?;
                    cur = Some(y);
                }
                match cur {
                    Some(y) => Ok(y),
                    None => Ok(x.duplicate(b)?),
                }
            }
            Some(tape) => {
                for seg in from..to {
                    let input = tape.last().map_or(x, |r| &r.out);
                    let in_shape = input.shape.clone();
                    let (out, inner) = self.segment_forward(b, seg, input, true)?;
                    tape.push(SegRec {
                        seg,
                        in_shape,
                        out,
                        inner,
                    });
                }
                let last = tape.last().ok_or_else(|| ResNetError::Config("empty forward".into()))?;
                Ok(last.out.duplicate(b)?)
            }
        }
    }

    /// `z = encode(x, cut)`: the activation at `cut` of the normalised input `x: [N, 3, H, W]`.
    pub fn encode(&self, b: &B, x: &Tensor<B>, cut: Cut) -> Result<Tensor<B>> {
        self.check_at(x, Cut::Input)?;
        let to = self.arch.position(cut)?;
        self.run(b, x, 0, to, None)
    }

    /// `head(z, cut)`: the logits `[N, classes]` of the partial network f_{l:L} at `z`.
    pub fn head(&self, b: &B, z: &Tensor<B>, cut: Cut) -> Result<Tensor<B>> {
        self.check_at(z, cut)?;
        let from = self.arch.position(cut)?;
        self.run(b, z, from, self.segments(), None)
    }

    /// The logits and the activation at every cut point (the input itself excluded).
    pub fn forward_all(&self, b: &B, x: &Tensor<B>) -> Result<(Tensor<B>, CutActivations<B>)> {
        self.check_at(x, Cut::Input)?;
        let mut tape = Vec::new();
        let logits = self.run(b, x, 0, self.segments(), Some(&mut tape))?;
        let mut acts = Vec::new();
        for cut in self.arch.cuts().into_iter().skip(1) {
            let p = self.arch.position(cut)?;
            acts.push((cut, tape[p - 1].out.duplicate(b)?));
        }
        Ok((logits, acts))
    }

    /// Gradient of a function of the logits with respect to `z`: `dlogits` receives the
    /// logits and returns the gradient of that function with respect to them.
    pub fn head_backward(
        &self,
        b: &B,
        z: &Tensor<B>,
        cut: Cut,
        dlogits: impl FnOnce(&Tensor<B>) -> Result<Tensor<B>>,
    ) -> Result<(Tensor<B>, Tensor<B>)> {
        self.check_at(z, cut)?;
        let from = self.arch.position(cut)?;
        let mut tape = Vec::new();
        let logits = self.run(b, z, from, self.segments(), Some(&mut tape))?;
        let mut dy = dlogits(&logits)?;
        for rec in tape.iter().rev() {
            dy = self.segment_backward(b, rec, dy)?;
        }
        Ok((logits, dy))
    }

    /// The energy of the path search and its gradient: per-row cross-entropy of
    /// `head(z, cut)` against `targets`, and the gradient of `scale · Σ losses` w.r.t. `z`
    /// (`scale = 1/N` gives the mean loss).
    pub fn head_loss_grad(&self, b: &B, z: &Tensor<B>, cut: Cut, targets: &[usize], scale: f32) -> Result<HeadGrad<B>> {
        let n = z.shape.dims().first().copied().unwrap_or(0);
        let mut losses = b.alloc(n)?;
        let (logits, probs, grad) = self.head_loss_grad_into(b, z, cut, targets, scale, &mut losses)?;
        Ok(HeadGrad {
            logits,
            probs,
            losses: b.download(&losses)?,
            grad,
        })
    }

    /// [`head_loss_grad`](Self::head_loss_grad) with the losses left on the device in
    /// `losses` (N values) and nothing read back: what a NEB step captured in a CUDA graph
    /// runs. Returns the logits, the softmax probabilities and the gradient.
    #[allow(clippy::type_complexity)]
    pub fn head_loss_grad_into(
        &self,
        b: &B,
        z: &Tensor<B>,
        cut: Cut,
        targets: &[usize],
        scale: f32,
        losses: &mut B::Buf,
    ) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
        let n = z.shape.dims().first().copied().unwrap_or(0);
        let c = self.num_classes;
        let mut probs = Tensor::alloc(b, [n, c])?;
        let (logits, grad) = self.head_backward(b, z, cut, |logits| {
            b.softmax_cross_entropy(n, c, &logits.buf, targets, &mut probs.buf, losses)?;
            let mut d = Tensor::alloc(b, [n, c])?;
            b.softmax_cross_entropy_bwd(n, c, &probs.buf, targets, scale, &mut d.buf)?;
            Ok(d)
        })?;
        Ok((logits, probs, grad))
    }

    fn segment_backward(&self, b: &B, rec: &SegRec<B>, dy: Tensor<B>) -> Result<Tensor<B>> {
        let stages = self.stages.len();
        let relu_bwd = |y: &Tensor<B>, dy: &Tensor<B>| -> Result<Tensor<B>> {
            let mut dx = Tensor::alloc(b, dy.shape.clone())?;
            b.activation_bwd(Act::Relu, &y.buf, &dy.buf, &mut dx.buf)?;
            Ok(dx)
        };
        if rec.seg == 0 {
            let (a, da) = if self.maxpool {
                let a = &rec.inner[0];
                let g = pool_geom(a)?;
                let mut da = Tensor::alloc(b, a.shape.clone())?;
                b.max_pool2d_bwd(&g, &a.buf, &dy.buf, &mut da.buf)?;
                (a, da)
            } else {
                (&rec.out, dy)
            };
            let dpre = relu_bwd(a, &da)?;
            return self.stem.backward_input(b, &rec.in_shape, &dpre);
        }
        if rec.seg <= stages {
            // inner holds, block by block, the outputs of each block's non-final convs,
            // then (between blocks) the block output; walk it backwards.
            let blocks = &self.stages[rec.seg - 1];
            let mut inner = rec.inner.iter().collect::<Vec<_>>();
            let mut y = &rec.out;
            let mut dy = dy;
            for (bi, blk) in blocks.iter().enumerate().rev() {
                let n_mid = blk.convs.len() - 1;
                let mids: Vec<&Tensor<B>> = inner.split_off(inner.len() - n_mid);
                let x_shape = if bi == 0 {
                    rec.in_shape.clone()
                } else {
                    inner.last().expect("block input recorded").shape.clone()
                };
                // The gradient at the sum feeds the last conv and the shortcut alike.
                let dpre = relu_bwd(y, &dy)?;
                let mut d: Option<Tensor<B>> = None;
                for i in (0..blk.convs.len()).rev() {
                    if i < n_mid {
                        d = Some(relu_bwd(mids[i], d.as_ref().unwrap_or(&dpre))?);
                    }
                    let in_shape = if i == 0 {
                        x_shape.clone()
                    } else {
                        mids[i - 1].shape.clone()
                    };
                    d = Some(blk.convs[i].backward_input(b, &in_shape, d.as_ref().unwrap_or(&dpre))?);
                }
                let mut d = d.expect("a block has convolutions");
                match &blk.shortcut {
                    FoldedShortcutWeights::Identity => b.add_assign(&mut d.buf, &dpre.buf)?,
                    FoldedShortcutWeights::Projection(c) => {
                        let ds = c.backward_input(b, &x_shape, &dpre)?;
                        b.add_assign(&mut d.buf, &ds.buf)?;
                    }
                    &FoldedShortcutWeights::PadA { pad, subsample } => {
                        let sx = x_shape.nchw("resnet shortcut")?;
                        let mut ds = Tensor::alloc(b, x_shape.clone())?;
                        b.shortcut_pad_bwd(&sx, subsample, pad, &dpre.buf, &mut ds.buf)?;
                        b.add_assign(&mut d.buf, &ds.buf)?;
                    }
                }
                dy = d;
                if bi > 0 {
                    y = inner.pop().expect("block output recorded");
                }
            }
            return Ok(dy);
        }
        if rec.seg == stages + 1 {
            let s = rec.in_shape.nchw("global_avg_pool")?;
            let mut dx = Tensor::alloc(b, rec.in_shape.clone())?;
            b.global_avg_pool_bwd(&s, &dy.buf, &mut dx.buf)?;
            return Ok(dx);
        }
        let n = rec.in_shape.dims()[0];
        let mut dx = Tensor::alloc(b, rec.in_shape.clone())?;
        b.linear_bwd_input(n, self.features, self.num_classes, &dy.buf, &self.fc_w.buf, &mut dx.buf)?;
        Ok(dx)
    }
}

/// A read-only view of one folded convolution: `conv(x, w) + bias`, batch norm merged into
/// `w: [c_out, c_in, k, k]` and `bias: [c_out]`, square kernel, zero padding `pad`.
pub struct FoldedConv<'a, B: Backend> {
    pub w: &'a Tensor<B>,
    pub bias: &'a Tensor<B>,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

/// A read-only view of a block's shortcut.
pub enum FoldedShortcut<'a, B: Backend> {
    /// The block's input itself.
    Identity,
    /// A folded 1×1 convolution with the block's stride (no activation).
    Projection(FoldedConv<'a, B>),
    /// Option A: subsample by 2 when `subsample`, then `pad` zero channels on each side.
    PadA { pad: usize, subsample: bool },
}

/// A read-only view of one residual block: `relu(conv_last(… relu(conv_0(x)) …) + shortcut(x))`,
/// every convolution but the last followed by a ReLU.
pub struct FoldedBlock<'a, B: Backend> {
    pub convs: Vec<FoldedConv<'a, B>>,
    pub shortcut: FoldedShortcut<'a, B>,
}

/// A read-only view of the whole folded network, in the order it runs: `relu(stem(x))`, then
/// (when `maxpool`) a 3×3 max-pool with stride 2 and padding 1, the stages' blocks, the global
/// average pool, and `logits = fc_w · features + fc_b` with `fc_w: [num_classes, features]`.
pub struct FoldedLayers<'a, B: Backend> {
    pub stem: FoldedConv<'a, B>,
    pub maxpool: bool,
    pub stages: Vec<Vec<FoldedBlock<'a, B>>>,
    pub fc_w: &'a Tensor<B>,
    pub fc_b: &'a Tensor<B>,
    pub features: usize,
    pub num_classes: usize,
}

impl<'a, B: Backend> From<&'a FoldedConvWeights<B>> for FoldedConv<'a, B> {
    fn from(c: &'a FoldedConvWeights<B>) -> Self {
        FoldedConv {
            w: &c.w,
            bias: &c.bias,
            c_in: c.c_in,
            c_out: c.c_out,
            k: c.k,
            stride: c.stride,
            pad: c.pad,
        }
    }
}

impl<B: Backend> FoldedResNet<B> {
    /// The folded layers, read-only: what an exact analysis of the network (such as
    /// mep-certify's linear restriction) needs to run it in its own arithmetic.
    pub fn layers(&self) -> FoldedLayers<'_, B> {
        let stages = self
            .stages
            .iter()
            .map(|blocks| {
                blocks
                    .iter()
                    .map(|blk| FoldedBlock {
                        convs: blk.convs.iter().map(FoldedConv::from).collect(),
                        shortcut: match &blk.shortcut {
                            FoldedShortcutWeights::Identity => FoldedShortcut::Identity,
                            FoldedShortcutWeights::Projection(c) => FoldedShortcut::Projection(c.into()),
                            &FoldedShortcutWeights::PadA { pad, subsample } => FoldedShortcut::PadA { pad, subsample },
                        },
                    })
                    .collect()
            })
            .collect();
        FoldedLayers {
            stem: (&self.stem).into(),
            maxpool: self.maxpool,
            stages,
            fc_w: &self.fc_w,
            fc_b: &self.fc_b,
            features: self.features,
            num_classes: self.num_classes,
        }
    }
}
