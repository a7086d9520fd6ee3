//! The trainable ResNet: PyTorch's module tree with its key names, loaded from and saved
//! to safetensors, with a training-mode forward and an explicit backward.

use crate::arch::{Arch, BlockKind};
use crate::checkpoint::{save_with_counters, Checkpoint};
use crate::error::{ResNetError, Result};
use mep_nn::init::{kaiming_normal_fan_out, uniform_fan_in, Rng};
use mep_nn::{BatchNorm2d, BnCache, Conv2d, Grads, Linear, Optimizer, Param};
use mep_tensor::{Act, Backend, Nchw, Pool2dGeom, Shape, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// A convolution without bias followed by batch norm: every convolution of a ResNet.
pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm2d<B>,
}

/// How a block's input reaches its output.
pub enum Shortcut<B: Backend> {
    /// The input itself.
    Identity,
    /// torchvision's `downsample`: 1×1 convolution with the block's stride, then batch norm.
    Projection(Box<ConvBn<B>>),
    /// The CIFAR ResNets' option A: subsample by 2 (when `subsample`) and pad `pad` zero
    /// channels on each side; no parameters.
    PadA { pad: usize, subsample: bool },
}

/// A residual block: its convolutions in order and its shortcut.
pub struct Block<B: Backend> {
    pub units: Vec<ConvBn<B>>,
    pub shortcut: Shortcut<B>,
}

/// A ResNet with separate convolutions and batch norms, as trained.
pub struct ResNet<B: Backend> {
    pub arch: Arch,
    /// Channels of the stem (64 in torchvision's models; smaller in test models).
    pub width: usize,
    pub num_classes: usize,
    /// `fc` (torchvision) or `linear` (the CIFAR reimplementations).
    pub classifier_key: String,
    pub stem: ConvBn<B>,
    pub stages: Vec<Vec<Block<B>>>,
    pub fc: Linear<B>,
    /// Training-mode forward passes taken since loading (PyTorch's `num_batches_tracked`
    /// as written on save; the loaded value is not kept, as no rule here depends on it).
    pub bn_steps: u64,
}

/// The shape of one convolution of the network, and where PyTorch keeps it.
#[derive(Clone, Debug)]
pub(crate) struct UnitSpec {
    pub prefix: String,
    pub bn_prefix: String,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

pub(crate) enum ShortcutSpec {
    Identity,
    Projection(UnitSpec),
    PadA { pad: usize, subsample: bool },
}

pub(crate) struct BlockSpec {
    pub units: Vec<UnitSpec>,
    pub shortcut: ShortcutSpec,
}

/// The whole topology of `arch` at stem width `width`, with PyTorch's key prefixes.
pub(crate) fn topology(arch: Arch, width: usize) -> (UnitSpec, Vec<Vec<BlockSpec>>, usize) {
    let unit = |prefix: String, bn_prefix: String, c_in, c_out, k, stride| UnitSpec {
        prefix,
        bn_prefix,
        c_in,
        c_out,
        k,
        stride,
        pad: k / 2,
    };
    let stem = if arch.is_cifar() {
        unit("conv1".into(), "bn1".into(), 3, width, 3, 1)
    } else {
        unit("conv1".into(), "bn1".into(), 3, width, 7, 2)
    };
    let exp = arch.block().expansion();
    let mut in_ch = width;
    let mut stages = Vec::new();
    for (s, &nblocks) in arch.layers().iter().enumerate() {
        let planes = width << s;
        let mut blocks = Vec::new();
        for j in 0..nblocks {
            let stride = if s > 0 && j == 0 { 2 } else { 1 };
            let p = format!("layer{}.{j}", s + 1);
            let out = planes * exp;
            let units = match arch.block() {
                BlockKind::Basic => vec![
                    unit(format!("{p}.conv1"), format!("{p}.bn1"), in_ch, planes, 3, stride),
                    unit(format!("{p}.conv2"), format!("{p}.bn2"), planes, planes, 3, 1),
                ],
                BlockKind::Bottleneck => vec![
                    unit(format!("{p}.conv1"), format!("{p}.bn1"), in_ch, planes, 1, 1),
                    unit(format!("{p}.conv2"), format!("{p}.bn2"), planes, planes, 3, stride),
                    unit(format!("{p}.conv3"), format!("{p}.bn3"), planes, out, 1, 1),
                ],
            };
            let shortcut = if stride == 1 && in_ch == out {
                ShortcutSpec::Identity
            } else if arch.is_cifar() {
                // akamaster/pytorch_resnet_cifar10: F.pad(x[:, :, ::2, ::2], (0,0,0,0, planes//4, planes//4)).
                ShortcutSpec::PadA {
                    pad: planes / 4,
                    subsample: stride == 2,
                }
            } else {
                ShortcutSpec::Projection(unit(
                    format!("{p}.downsample.0"),
                    format!("{p}.downsample.1"),
                    in_ch,
                    out,
                    1,
                    stride,
                ))
            };
            blocks.push(BlockSpec { units, shortcut });
            in_ch = out;
        }
        stages.push(blocks);
    }
    (stem, stages, in_ch)
}

impl<B: Backend> ConvBn<B> {
    fn load(backend: &B, ck: &mut Checkpoint, u: &UnitSpec, arch: &str) -> Result<Self> {
        let w = ck.take(&format!("{}.weight", u.prefix), &[u.c_out, u.c_in, u.k, u.k], arch)?;
        let conv = Conv2d::from_host(backend, u.c_out, u.c_in, u.k, u.stride, u.pad, w.data, None)?;
        let mut t = |name: &str| {
            ck.take(&format!("{}.{name}", u.bn_prefix), &[u.c_out], arch)
                .map(|t| t.data)
        };
        let bn = BatchNorm2d::from_host(backend, t("weight")?, t("bias")?, t("running_mean")?, t("running_var")?)?;
        Ok(ConvBn { conv, bn })
    }

    fn init(backend: &B, u: &UnitSpec, rng: &mut Rng) -> Result<Self> {
        let w = kaiming_normal_fan_out(rng, u.c_out, u.c_in, u.k);
        Ok(ConvBn {
            conv: Conv2d::from_host(backend, u.c_out, u.c_in, u.k, u.stride, u.pad, w, None)?,
            bn: BatchNorm2d::new(backend, u.c_out)?,
        })
    }

    /// Convolution weight, then batch norm γ and β.
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut v = self.conv.params_mut();
        v.extend(self.bn.params_mut());
        v
    }

    fn push_tensors(&self, b: &B, u: &UnitSpec, out: &mut Vec<(String, Tensor<B>)>) -> Result<()> {
        out.push((format!("{}.weight", u.prefix), self.conv.weight.value.duplicate(b)?));
        out.push((format!("{}.weight", u.bn_prefix), self.bn.weight.value.duplicate(b)?));
        out.push((format!("{}.bias", u.bn_prefix), self.bn.bias.value.duplicate(b)?));
        out.push((
            format!("{}.running_mean", u.bn_prefix),
            self.bn.running_mean.duplicate(b)?,
        ));
        out.push((
            format!("{}.running_var", u.bn_prefix),
            self.bn.running_var.duplicate(b)?,
        ));
        Ok(())
    }
}

/// A network's stages, each a list of blocks.
type Stages<B> = Vec<Vec<Block<B>>>;

/// The stem and the stages of a topology, each convolution made by `unit` in PyTorch's
/// order (stem; per block its convolutions, then its projection): loading and
/// initialising walk the network the same way and differ only in where a unit comes from.
fn assemble<B: Backend>(
    stem_spec: &UnitSpec,
    stage_specs: &[Vec<BlockSpec>],
    mut unit: impl FnMut(&UnitSpec) -> Result<ConvBn<B>>,
) -> Result<(ConvBn<B>, Stages<B>)> {
    let stem = unit(stem_spec)?;
    let mut stages = Vec::new();
    for specs in stage_specs {
        let mut blocks = Vec::new();
        for spec in specs {
            let units = spec.units.iter().map(&mut unit).collect::<Result<Vec<_>>>()?;
            let shortcut = match &spec.shortcut {
                ShortcutSpec::Identity => Shortcut::Identity,
                ShortcutSpec::Projection(u) => Shortcut::Projection(Box::new(unit(u)?)),
                &ShortcutSpec::PadA { pad, subsample } => Shortcut::PadA { pad, subsample },
            };
            blocks.push(Block { units, shortcut });
        }
        stages.push(blocks);
    }
    Ok((stem, stages))
}

/// The widest stem a checkpoint may declare: far above any ResNet's (64; 128 for the wide
/// variants), and small enough that no layer width computed from it overflows.
pub const MAX_STEM_WIDTH: usize = 1 << 20;

impl<B: Backend> ResNet<B> {
    /// Loads a checkpoint with torchvision/timm key names (a `module.` prefix is accepted;
    /// the classifier may be `fc` or `linear`). The stem width and the class count are read
    /// from `conv1.weight` and the classifier; every other tensor must have the shape the
    /// architecture implies, and no tensor may be left over.
    pub fn load(backend: &B, arch: Arch, path: impl AsRef<Path>) -> Result<Self> {
        Self::from_checkpoint(backend, arch, Checkpoint::load(path)?)
    }

    /// As [`ResNet::load`], from an already-read checkpoint.
    pub fn from_checkpoint(backend: &B, arch: Arch, mut ck: Checkpoint) -> Result<Self> {
        let name = arch.name();
        let width = match ck.get("conv1.weight") {
            Some(t) if t.shape.rank() == 4 && (1..=MAX_STEM_WIDTH).contains(&t.shape.dims()[0]) => t.shape.dims()[0],
            Some(t) => {
                // An empty tensor ([2^62, 0, 3, 3]) can declare any width: bound it before
                // the layer widths (up to 32 × the stem's) are computed from it.
                return Err(ResNetError::Shape {
                    path: ck.path().to_path_buf(),
                    key: "conv1.weight".into(),
                    expected: format!("[width, 3, k, k] with a width of 1 to {MAX_STEM_WIDTH}"),
                    found: t.shape.to_string(),
                });
            }
            None => {
                return Err(ResNetError::MissingKey {
                    path: ck.path().to_path_buf(),
                    key: "conv1.weight".into(),
                    arch: name.into(),
                })
            }
        };
        let classifier_key = if ck.contains("fc.weight") || !ck.contains("linear.weight") {
            "fc"
        } else {
            "linear"
        };
        let (stem_spec, stage_specs, features) = topology(arch, width);
        let fc_key = format!("{classifier_key}.weight");
        let num_classes = match ck.get(&fc_key) {
            Some(t) if t.shape.rank() == 2 => t.shape.dims()[0],
            _ => 0, // `take` below reports the missing key or wrong shape.
        };
        let (stem, stages) = assemble(&stem_spec, &stage_specs, |u| ConvBn::load(backend, &mut ck, u, name))?;
        let w = ck.take(&fc_key, &[num_classes.max(1), features], name)?;
        let b = ck.take(&format!("{classifier_key}.bias"), &[num_classes], name)?;
        let fc = Linear::from_host(backend, num_classes, features, w.data, Some(b.data))?;
        ck.finish(name)?;
        Ok(ResNet {
            arch,
            width,
            num_classes,
            classifier_key: classifier_key.into(),
            stem,
            stages,
            fc,
            bn_steps: 0,
        })
    }

    /// A freshly initialised network as torchvision initialises it (Kaiming-normal
    /// convolutions, unit batch norms, uniform classifier), deterministic from `seed`.
    pub fn init(backend: &B, arch: Arch, width: usize, num_classes: usize, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let (stem_spec, stage_specs, features) = topology(arch, width);
        let (stem, stages) = assemble(&stem_spec, &stage_specs, |u| ConvBn::init(backend, u, &mut rng))?;
        let w = uniform_fan_in(&mut rng, num_classes * features, features);
        let b = uniform_fan_in(&mut rng, num_classes, features);
        let fc = Linear::from_host(backend, num_classes, features, w, Some(b))?;
        Ok(ResNet {
            arch,
            width,
            num_classes,
            classifier_key: if arch.is_cifar() { "linear" } else { "fc" }.into(),
            stem,
            stages,
            fc,
            bn_steps: 0,
        })
    }

    /// Every tensor of the state dict under its PyTorch key, in PyTorch's order (copies).
    pub fn state_dict(&self, backend: &B) -> Result<Vec<(String, Tensor<B>)>> {
        let (stem_spec, stage_specs, _) = topology(self.arch, self.width);
        let mut out = Vec::new();
        self.stem.push_tensors(backend, &stem_spec, &mut out)?;
        for (blocks, specs) in self.stages.iter().zip(&stage_specs) {
            for (block, spec) in blocks.iter().zip(specs) {
                for (u, us) in block.units.iter().zip(&spec.units) {
                    u.push_tensors(backend, us, &mut out)?;
                }
                if let (Shortcut::Projection(u), ShortcutSpec::Projection(us)) = (&block.shortcut, &spec.shortcut) {
                    u.push_tensors(backend, us, &mut out)?;
                }
            }
        }
        let k = &self.classifier_key;
        out.push((format!("{k}.weight"), self.fc.weight.value.duplicate(backend)?));
        if let Some(b) = &self.fc.bias {
            out.push((format!("{k}.bias"), b.value.duplicate(backend)?));
        }
        Ok(out)
    }

    /// Writes the state dict as safetensors with PyTorch's key names (f32), atomically.
    /// The architecture is recorded in the metadata under `arch`.
    pub fn save(&self, backend: &B, path: impl AsRef<Path>) -> Result<()> {
        self.save_with(backend, path, &[], &BTreeMap::new())
    }

    /// As [`ResNet::save`], with extra f32 tensors (e.g. an optimiser's state under keys
    /// that PyTorch's model will not ask for) and extra metadata.
    pub fn save_with(
        &self,
        backend: &B,
        path: impl AsRef<Path>,
        extra: &[(String, Shape, Vec<f32>)],
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        let sd = self.state_dict(backend)?;
        let host = sd
            .iter()
            .map(|(k, t)| Ok((k.as_str(), &t.shape, t.to_vec(backend)?)))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = host
            .iter()
            .map(|(k, s, d)| (*k, *s, d.as_slice()))
            .chain(extra.iter().map(|(k, s, d)| (k.as_str(), s, d.as_slice())))
            .collect();
        // PyTorch's BatchNorm2d keeps a step counter that strict loading insists on.
        let counters: Vec<String> = sd
            .iter()
            .filter_map(|(k, _)| k.strip_suffix(".running_mean"))
            .map(|p| format!("{p}.num_batches_tracked"))
            .collect();
        let counters: Vec<(&str, i64)> = counters.iter().map(|k| (k.as_str(), self.bn_steps as i64)).collect();
        let mut meta = metadata.clone();
        meta.insert("arch".to_string(), self.arch.name().to_string());
        save_with_counters(path, &views, &counters, Some(&meta))
    }

    /// Replaces the classifier by a freshly initialised one for `num_classes` classes
    /// (fine-tuning ImageNet weights on another dataset), deterministic from `seed`.
    pub fn replace_classifier(&mut self, backend: &B, num_classes: usize, seed: u64) -> Result<()> {
        let mut rng = Rng::new(seed);
        let features = self.fc.in_features;
        let w = uniform_fan_in(&mut rng, num_classes * features, features);
        let b = uniform_fan_in(&mut rng, num_classes, features);
        self.fc = Linear::from_host(backend, num_classes, features, w, Some(b))?;
        self.num_classes = num_classes;
        Ok(())
    }

    /// Every trainable parameter, in the state dict's order.
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut v = self.stem.params_mut();
        for block in self.stages.iter_mut().flatten() {
            for u in &mut block.units {
                v.extend(u.params_mut());
            }
            if let Shortcut::Projection(u) = &mut block.shortcut {
                v.extend(u.params_mut());
            }
        }
        v.extend(self.fc.params_mut());
        v
    }

    /// Every trainable parameter with its PyTorch key, in the state dict's order.
    pub fn named_params_mut(&mut self) -> Vec<(String, &mut Param<B>)> {
        let (stem_spec, stage_specs, _) = topology(self.arch, self.width);
        let mut keys = Vec::new();
        let mut unit_keys = |u: &UnitSpec| {
            keys.push(format!("{}.weight", u.prefix));
            keys.push(format!("{}.weight", u.bn_prefix));
            keys.push(format!("{}.bias", u.bn_prefix));
        };
        unit_keys(&stem_spec);
        for spec in stage_specs.iter().flatten() {
            spec.units.iter().for_each(&mut unit_keys);
            if let ShortcutSpec::Projection(u) = &spec.shortcut {
                unit_keys(u);
            }
        }
        keys.push(format!("{}.weight", self.classifier_key));
        if self.fc.bias.is_some() {
            keys.push(format!("{}.bias", self.classifier_key));
        }
        keys.into_iter().zip(self.params_mut()).collect()
    }

    /// Number of trainable scalars.
    pub fn num_params(&mut self) -> usize {
        self.params_mut().iter().map(|p| p.numel()).sum()
    }
}

// ---- training-mode forward and backward -------------------------------------------------

/// What the backward of one conv+BN(+activation) needs: indices into the tape's
/// activations and the batch norm's saved statistics.
struct UnitRec<B: Backend> {
    x: usize,
    c: usize,
    a: usize,
    cache: BnCache<B>,
}

struct BlockRec<B: Backend> {
    x: usize,
    units: Vec<UnitRec<B>>,
    projection: Option<UnitRec<B>>,
    y: usize,
}

/// The activations a training-mode forward keeps for its backward.
pub struct Tape<B: Backend> {
    acts: Vec<Tensor<B>>,
    stem: UnitRec<B>,
    blocks: Vec<BlockRec<B>>,
    last: usize,
    pooled: usize,
}

fn push<B: Backend>(acts: &mut Vec<Tensor<B>>, t: Tensor<B>) -> usize {
    acts.push(t);
    acts.len() - 1
}

impl<B: Backend> ConvBn<B> {
    /// conv → BN (batch statistics) → (+ residual) → act.
    fn forward_train(
        &mut self,
        b: &B,
        acts: &mut Vec<Tensor<B>>,
        x: usize,
        residual: Option<usize>,
        act: Act,
    ) -> Result<UnitRec<B>> {
        let c = self.conv.forward(b, &acts[x], None, Act::Identity)?;
        // Without a residual the activation fuses into batch norm; with one it follows the sum.
        let fused = if residual.is_none() { act } else { Act::Identity };
        let (mut n, cache) = self.bn.forward_train(b, &c, fused)?;
        let a = match residual {
            None => n,
            Some(r) => {
                b.add_assign(&mut n.buf, &acts[r].buf)?;
                if act == Act::Identity {
                    n
                } else {
                    let mut a = Tensor::alloc(b, n.shape.clone())?;
                    b.activation(act, &n.buf, &mut a.buf)?;
                    a
                }
            }
        };
        let c = push(acts, c);
        let a = push(acts, a);
        Ok(UnitRec { x, c, a, cache })
    }

    /// From the gradient at the BN output (after the activation's backward) to the input.
    fn backward(
        &mut self,
        b: &B,
        acts: &[Tensor<B>],
        rec: &UnitRec<B>,
        dn: &Tensor<B>,
        grads: Grads,
    ) -> Result<Option<Tensor<B>>> {
        let dc = self.bn.backward_train(b, &acts[rec.c], dn, &rec.cache, grads)?;
        Ok(self.conv.backward(b, &acts[rec.x], &dc, grads)?)
    }
}

fn act_bwd<B: Backend>(b: &B, act: Act, y: &Tensor<B>, dy: &Tensor<B>) -> Result<Tensor<B>> {
    let mut dx = Tensor::alloc(b, dy.shape.clone())?;
    b.activation_bwd(act, &y.buf, &dy.buf, &mut dx.buf)?;
    Ok(dx)
}

impl<B: Backend> ResNet<B> {
    fn check_input(&self, x: &Tensor<B>) -> Result<Nchw> {
        match x.shape.dims() {
            &[n, 3, h, w] if n > 0 && h >= 8 && w >= 8 => Ok(Nchw { n, c: 3, h, w }),
            _ => Err(ResNetError::Input {
                expected: "[N, 3, H, W] with N ≥ 1 and H, W ≥ 8".into(),
                found: x.shape.to_string(),
            }),
        }
    }

    /// Training-mode forward (batch statistics; running statistics are updated): the
    /// logits and the tape for [`ResNet::backward`].
    pub fn forward_train(&mut self, b: &B, x: Tensor<B>) -> Result<(Tensor<B>, Tape<B>)> {
        self.check_input(&x)?;
        self.bn_steps += 1;
        let mut acts = vec![x];
        let stem = self.stem.forward_train(b, &mut acts, 0, None, Act::Relu)?;
        let stem_out = if self.arch.is_cifar() {
            stem.a
        } else {
            let g = pool_geom(&acts[stem.a])?;
            let mut y = Tensor::alloc(b, g.output().shape())?;
            b.max_pool2d(&g, &acts[stem.a].buf, &mut y.buf)?;
            push(&mut acts, y)
        };
        let mut cur = stem_out;
        let mut blocks = Vec::new();
        for block in self.stages.iter_mut().flatten() {
            let x = cur;
            let (s, projection) = match &mut block.shortcut {
                Shortcut::Identity => (x, None),
                Shortcut::Projection(u) => {
                    let r = u.forward_train(b, &mut acts, x, None, Act::Identity)?;
                    (r.a, Some(r))
                }
                &mut Shortcut::PadA { pad, subsample } => {
                    let s = nchw_of(&acts[x])?;
                    let out = s.shortcut_pad(subsample, pad);
                    let mut y = Tensor::alloc(b, out.shape())?;
                    b.shortcut_pad(&s, subsample, pad, &acts[x].buf, &mut y.buf)?;
                    (push(&mut acts, y), None)
                }
            };
            let last = block.units.len() - 1;
            let mut units = Vec::new();
            let mut u_in = x;
            for (i, u) in block.units.iter_mut().enumerate() {
                let rec = u.forward_train(b, &mut acts, u_in, (i == last).then_some(s), Act::Relu)?;
                u_in = rec.a;
                units.push(rec);
            }
            cur = u_in;
            blocks.push(BlockRec {
                x,
                units,
                projection,
                y: cur,
            });
        }
        let s = nchw_of(&acts[cur])?;
        let mut pooled = Tensor::alloc(b, [s.n, s.c])?;
        b.global_avg_pool(&s, &acts[cur].buf, &mut pooled.buf)?;
        let logits = self.fc.forward(b, &pooled)?;
        let pooled = push(&mut acts, pooled);
        Ok((
            logits,
            Tape {
                acts,
                stem,
                blocks,
                last: cur,
                pooled,
            },
        ))
    }

    /// Backward of [`ResNet::forward_train`] from the gradient of the logits: parameter
    /// gradients into each `Param::grad` when `grads.weights`, and the input gradient when
    /// `grads.input`.
    pub fn backward(&mut self, b: &B, tape: Tape<B>, dlogits: &Tensor<B>, grads: Grads) -> Result<Option<Tensor<B>>> {
        let inner = Grads {
            input: true,
            weights: grads.weights,
        };
        let acts = &tape.acts;
        let dpooled = self
            .fc
            .backward(b, &acts[tape.pooled], dlogits, inner)?
            .expect("input gradient requested");
        let s = nchw_of(&acts[tape.last])?;
        let mut dy = Tensor::alloc(b, s.shape())?;
        b.global_avg_pool_bwd(&s, &dpooled.buf, &mut dy.buf)?;
        let blocks: Vec<&mut Block<B>> = self.stages.iter_mut().flatten().collect();
        for (block, rec) in blocks.into_iter().zip(&tape.blocks).rev() {
            // The block's output is relu(main + shortcut): one gradient feeds both.
            let ds = act_bwd(b, Act::Relu, &acts[rec.y], &dy)?;
            let mut d: Option<Tensor<B>> = None;
            for (i, (u, ur)) in block.units.iter_mut().zip(&rec.units).enumerate().rev() {
                if i + 1 < rec.units.len() {
                    d = Some(act_bwd(b, Act::Relu, &acts[ur.a], d.as_ref().unwrap_or(&ds))?);
                }
                let dx = u.backward(b, acts, ur, d.as_ref().unwrap_or(&ds), inner)?;
                d = Some(dx.expect("input gradient requested"));
            }
            let mut d = d.expect("a block has convolutions");
            match (&mut block.shortcut, &rec.projection) {
                (Shortcut::Identity, _) => b.add_assign(&mut d.buf, &ds.buf)?,
                (Shortcut::Projection(u), Some(pr)) => {
                    let dxs = u.backward(b, acts, pr, &ds, inner)?.expect("input gradient requested");
                    b.add_assign(&mut d.buf, &dxs.buf)?;
                }
                (&mut Shortcut::PadA { pad, subsample }, _) => {
                    let sx = nchw_of(&acts[rec.x])?;
                    let mut dxs = Tensor::alloc(b, sx.shape())?;
                    b.shortcut_pad_bwd(&sx, subsample, pad, &ds.buf, &mut dxs.buf)?;
                    b.add_assign(&mut d.buf, &dxs.buf)?;
                }
                (Shortcut::Projection(_), None) => unreachable!("forward records every projection"),
            }
            dy = d;
        }
        if !self.arch.is_cifar() {
            let g = pool_geom(&acts[tape.stem.a])?;
            let mut da = Tensor::alloc(b, acts[tape.stem.a].shape.clone())?;
            b.max_pool2d_bwd(&g, &acts[tape.stem.a].buf, &dy.buf, &mut da.buf)?;
            dy = da;
        }
        let dn = act_bwd(b, Act::Relu, &acts[tape.stem.a], &dy)?;
        self.stem.backward(b, acts, &tape.stem, &dn, grads)
    }
}

/// What one [`ResNet::train_step`] leaves on the device, for the caller to read when it wants
/// (reading is a device synchronisation).
pub struct TrainStepOutput<B: Backend> {
    /// Softmax probabilities, `[n, classes]`.
    pub probs: B::Buf,
    /// Per-example cross-entropies, `[n]`.
    pub losses: B::Buf,
}

impl<B: Backend> ResNet<B> {
    /// One training step on a batch: training-mode forward, mean softmax cross-entropy
    /// against `labels`, backward with weight gradients and `opt`'s step. The one home of a
    /// step, for `mep train` and the benchmarks alike. Nothing is read back to the host.
    ///
    /// ```
    /// use mep_nn::Adam;
    /// use mep_resnet::{Arch, ResNet};
    /// use mep_tensor::prelude::*;
    /// use mep_tensor::{AdamParams, CpuBackend, Tensor};
    /// let b = CpuBackend::new();
    /// let mut model = ResNet::init(&b, Arch::ResNet20, 4, 10, 1)?;
    /// let x = Tensor::from_vec(&b, [2, 3, 16, 16], vec![0.5; 2 * 3 * 16 * 16])?;
    /// let mut adam = Adam::new(AdamParams::default());
    /// let out = model.train_step(&b, x, &[3, 7], &mut adam)?;
    /// let losses = b.download(&out.losses)?;
    /// assert!(losses.len() == 2 && losses.iter().all(|l| l.is_finite()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn train_step(
        &mut self,
        b: &B,
        x: Tensor<B>,
        labels: &[usize],
        opt: &mut dyn Optimizer<B>,
    ) -> Result<TrainStepOutput<B>> {
        let n = labels.len();
        let (logits, tape) = self.forward_train(b, x)?;
        let k = logits.shape.dims().last().copied().unwrap_or(0);
        let mut probs = b.alloc(n * k)?;
        let mut losses = b.alloc(n)?;
        b.softmax_cross_entropy(n, k, &logits.buf, labels, &mut probs, &mut losses)?;
        let mut dlogits = Tensor::alloc(b, [n, k])?;
        b.softmax_cross_entropy_bwd(n, k, &probs, labels, 1.0 / n as f32, &mut dlogits.buf)?;
        self.backward(b, tape, &dlogits, Grads::WEIGHTS)?;
        opt.step(b, &mut self.params_mut())?;
        Ok(TrainStepOutput { probs, losses })
    }
}

/// The ImageNet stem's max-pool: 3×3, stride 2, padding 1.
pub(crate) fn pool_geom<B: Backend>(x: &Tensor<B>) -> Result<Pool2dGeom> {
    Ok(Pool2dGeom {
        input: nchw_of(x)?,
        k: 3,
        stride: 2,
        pad: 1,
    })
}

pub(crate) fn nchw_of<B: Backend>(x: &Tensor<B>) -> Result<Nchw> {
    Ok(x.shape.nchw("resnet")?)
}
