//! The decoder: its layers, forward in training and inference mode, the explicit backward,
//! the MSE loss, and safetensors checkpoints that carry the decoder's configuration.

use crate::config::{DecoderConfig, Source};
use crate::error::{DecoderError, Result};
use crate::layers::ConvTranspose2d;
use mep_nn::init::{uniform_fan_in, Rng};
use mep_nn::{BatchNorm2d, BnCache, Conv2d, Grads, Param};
use mep_resnet::{save_with_counters, Checkpoint};
use mep_tensor::{Act, Backend, Nchw, Shape, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// One block: ConvTranspose 3×3 (padding 1) → activation → BatchNorm (Table 3's order).
pub struct DecoderBlock<B: Backend> {
    pub convt: ConvTranspose2d<B>,
    pub bn: BatchNorm2d<B>,
}

/// Whether batch norm uses the batch statistics (and updates the running ones) or the
/// running statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A decoder from a cut point of a ResNet to images `[N, 3, S, S]` in [0, 1].
///
/// PyTorch key names: `groups.{g}.{i}.convt.{weight,bias}`, `groups.{g}.{i}.bn.{weight,
/// bias,running_mean,running_var}`, `out.{weight,bias}`; `tools/make_decoder_fixtures.py`
/// defines the same module.
pub struct Decoder<B: Backend> {
    pub config: DecoderConfig,
    /// `groups[g][i]`: block `i` of group `g`; a nearest 2× upsampling precedes every group
    /// but the first.
    pub groups: Vec<Vec<DecoderBlock<B>>>,
    /// The final 3×3 convolution to 3 channels (its sigmoid is fused).
    pub out: Conv2d<B>,
    /// Training-mode forward passes taken (written as `num_batches_tracked`).
    pub bn_steps: u64,
}

/// What a block's backward needs: its input, its activation's output and, in training
/// mode, the batch statistics.
struct BlockRec<B: Backend> {
    x: Tensor<B>,
    a: Tensor<B>,
    cache: Option<BnCache<B>>,
}

/// What [`Decoder::backward`] needs from a forward pass.
pub struct Tape<B: Backend> {
    mode: Mode,
    z_shape: Shape,
    blocks: Vec<BlockRec<B>>,
    /// The input of the final convolution and the decoder's output.
    last_in: Tensor<B>,
    y: Tensor<B>,
}

impl<B: Backend> Tape<B> {
    /// The decoded images of the forward pass that made this tape.
    pub fn output(&self) -> &Tensor<B> {
        &self.y
    }
}

fn nchw_of<B: Backend>(t: &Tensor<B>) -> Result<Nchw> {
    Ok(t.shape.nchw("decoder")?)
}

fn key(g: usize, i: usize, rest: &str) -> String {
    format!("groups.{g}.{i}.{rest}")
}

impl<B: Backend> Decoder<B> {
    /// A freshly initialised decoder (PyTorch's default initialisation, from `seed`):
    /// convolution weights and biases uniform in ±1/√fan_in, batch norm γ = 1, β = 0.
    pub fn init(b: &B, config: DecoderConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (inputs, last) = config.group_inputs()?;
        let mut rng = Rng::new(seed);
        let mut groups = Vec::new();
        for ((c_in, _), &f) in inputs.iter().zip(&config.filters) {
            let mut blocks = Vec::new();
            let mut c = *c_in;
            for _ in 0..config.blocks_per_group {
                blocks.push(DecoderBlock {
                    convt: ConvTranspose2d::init(b, &mut rng, c, f, 3, 1, 1)?,
                    bn: BatchNorm2d::new(b, f)?,
                });
                c = f;
            }
            groups.push(blocks);
        }
        let fan_in = last * 9;
        let w = uniform_fan_in(&mut rng, 3 * fan_in, fan_in);
        let bias = uniform_fan_in(&mut rng, 3, fan_in);
        let out = Conv2d::from_host(b, 3, last, 3, 1, 1, w, Some(bias))?;
        Ok(Decoder {
            config,
            groups,
            out,
            bn_steps: 0,
        })
    }

    /// Reads a decoder written by [`Decoder::save`] (or by PyTorch with the same module and
    /// metadata). A file that is not a decoder is [`DecoderError::NotADecoder`]; a missing,
    /// extra or misshapen tensor is the checkpoint's error naming the key.
    pub fn load(b: &B, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ck = Checkpoint::load(path)?;
        let config = DecoderConfig::from_metadata(path, ck.metadata())?;
        Self::from_checkpoint(b, config, ck)
    }

    /// As [`Decoder::load`], and checks that the decoder decodes `want` (the same arch,
    /// cut, input size and feature shape): [`DecoderError::Mismatch`] names what differs.
    pub fn load_for(b: &B, path: impl AsRef<Path>, want: &Source) -> Result<Self> {
        let path = path.as_ref();
        let ck = Checkpoint::load(path)?;
        let config = DecoderConfig::from_metadata(path, ck.metadata())?;
        config.check_source(path, want)?;
        Self::from_checkpoint(b, config, ck)
    }

    /// The decoder `config` describes, with its tensors taken from `ck` (every one must be
    /// used).
    pub fn from_checkpoint(b: &B, config: DecoderConfig, mut ck: Checkpoint) -> Result<Self> {
        config.validate()?;
        let (inputs, last) = config.group_inputs()?;
        let what = format!("the decoder for `{}` of {}", config.cut, config.arch);
        let mut groups = Vec::new();
        for (g, ((c_in, _), &f)) in inputs.iter().zip(&config.filters).enumerate() {
            let mut blocks = Vec::new();
            let mut c = *c_in;
            for i in 0..config.blocks_per_group {
                let w = ck.take(&key(g, i, "convt.weight"), &[c, f, 3, 3], &what)?;
                let bias = ck.take(&key(g, i, "convt.bias"), &[f], &what)?;
                let mut bn_t = Vec::new();
                for k in ["weight", "bias", "running_mean", "running_var"] {
                    bn_t.push(ck.take(&key(g, i, &format!("bn.{k}")), &[f], &what)?.data);
                }
                let [gamma, beta, mean, var]: [Vec<f32>; 4] = bn_t.try_into().expect("four tensors taken");
                blocks.push(DecoderBlock {
                    convt: ConvTranspose2d::from_host(b, c, f, 3, 1, 1, w.data, bias.data)?,
                    bn: BatchNorm2d::from_host(b, gamma, beta, mean, var)?,
                });
                c = f;
            }
            groups.push(blocks);
        }
        let w = ck.take("out.weight", &[3, last, 3, 3], &what)?;
        let bias = ck.take("out.bias", &[3], &what)?;
        ck.finish(&what)?;
        let out = Conv2d::from_host(b, 3, last, 3, 1, 1, w.data, Some(bias.data))?;
        Ok(Decoder {
            config,
            groups,
            out,
            bn_steps: 0,
        })
    }

    /// The tensors under their PyTorch names, parameters and running statistics.
    pub fn state_dict(&self, b: &B) -> Result<Vec<(String, Shape, Vec<f32>)>> {
        let mut v = Vec::new();
        let mut push = |k: String, t: &Tensor<B>| -> Result<()> {
            v.push((k, t.shape.clone(), t.to_vec(b)?));
            Ok(())
        };
        for (g, blocks) in self.groups.iter().enumerate() {
            for (i, blk) in blocks.iter().enumerate() {
                push(key(g, i, "convt.weight"), &blk.convt.weight.value)?;
                push(key(g, i, "convt.bias"), &blk.convt.bias.value)?;
                push(key(g, i, "bn.weight"), &blk.bn.weight.value)?;
                push(key(g, i, "bn.bias"), &blk.bn.bias.value)?;
                push(key(g, i, "bn.running_mean"), &blk.bn.running_mean)?;
                push(key(g, i, "bn.running_var"), &blk.bn.running_var)?;
            }
        }
        push("out.weight".into(), &self.out.weight.value)?;
        if let Some(bias) = &self.out.bias {
            push("out.bias".into(), &bias.value)?;
        }
        Ok(v)
    }

    /// Writes the decoder as safetensors, atomically, with its configuration as metadata
    /// (plus `extra_meta`) and `num_batches_tracked` counters, so PyTorch's
    /// `load_state_dict(strict=True)` takes it as well.
    pub fn save(&self, b: &B, path: impl AsRef<Path>, extra_meta: &BTreeMap<String, String>) -> Result<()> {
        let sd = self.state_dict(b)?;
        let tensors: Vec<(&str, &Shape, &[f32])> = sd.iter().map(|(k, s, d)| (k.as_str(), s, d.as_slice())).collect();
        let counter_keys: Vec<String> = (0..self.groups.len())
            .flat_map(|g| (0..self.config.blocks_per_group).map(move |i| key(g, i, "bn.num_batches_tracked")))
            .collect();
        let counters: Vec<(&str, i64)> = counter_keys
            .iter()
            .map(|k| (k.as_str(), self.bn_steps as i64))
            .collect();
        let mut meta = extra_meta.clone();
        meta.extend(self.config.to_metadata());
        save_with_counters(path, &tensors, &counters, Some(&meta))?;
        Ok(())
    }

    /// The trainable parameters, in PyTorch's `named_parameters()` order.
    pub fn named_params_mut(&mut self) -> Vec<(String, &mut Param<B>)> {
        let mut v = Vec::new();
        for (g, blocks) in self.groups.iter_mut().enumerate() {
            for (i, blk) in blocks.iter_mut().enumerate() {
                v.push((key(g, i, "convt.weight"), &mut blk.convt.weight));
                v.push((key(g, i, "convt.bias"), &mut blk.convt.bias));
                v.push((key(g, i, "bn.weight"), &mut blk.bn.weight));
                v.push((key(g, i, "bn.bias"), &mut blk.bn.bias));
            }
        }
        let mut out = self.out.params_mut().into_iter();
        v.push(("out.weight".into(), out.next().expect("out has a weight")));
        if let Some(bias) = out.next() {
            v.push(("out.bias".into(), bias));
        }
        v
    }

    /// The trainable parameters, in PyTorch's order (for the optimiser).
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        self.named_params_mut().into_iter().map(|(_, p)| p).collect()
    }

    /// Number of trainable scalars.
    pub fn num_params(&mut self) -> usize {
        self.params_mut().iter().map(|p| p.numel()).sum()
    }

    /// The seed `[N, C, h, h]` of a batch of points `z`: `[N, F]` reshaped to
    /// `[N, F/16, 4, 4]` at `pool`, `[N, C, H, W]` as it is elsewhere.
    fn seed_shape_of(&self, z: &Tensor<B>) -> Result<Shape> {
        let want = &self.config.in_shape;
        let ok = z.shape.rank() == want.len() + 1 && z.shape.dims()[1..] == want[..] && z.shape.dims()[0] > 0;
        if !ok {
            let mut expected = vec!["N".to_string()];
            expected.extend(want.iter().map(|d| d.to_string()));
            return Err(DecoderError::Input {
                what: "the points to decode",
                expected: format!(
                    "[{}] (cut `{}` of {})",
                    expected.join(", "),
                    self.config.cut,
                    self.config.arch
                ),
                found: z.shape.to_string(),
            });
        }
        let [c, h, w] = self.config.seed_shape()?;
        Ok(Shape::new([z.shape.dims()[0], c, h, w]))
    }

    /// Decodes `z` (`[N, F]` at `pool`, `[N, C, H, W]` elsewhere) to images
    /// `[N, 3, S, S]` in [0, 1], batch norm in inference mode.
    pub fn decode(&self, b: &B, z: &Tensor<B>) -> Result<Tensor<B>> {
        let mut x = z.duplicate(b)?.reshape(self.seed_shape_of(z)?)?;
        for (g, blocks) in self.groups.iter().enumerate() {
            if g > 0 {
                x = upsample(b, &x)?;
            }
            for blk in blocks {
                let u = blk.convt.forward(b, &x)?;
                let mut a = Tensor::alloc(b, u.shape.clone())?;
                b.activation(self.config.act, &u.buf, &mut a.buf)?;
                x = blk.bn.forward_eval(b, &a, Act::Identity)?;
            }
        }
        Ok(self.out.forward(b, &x, None, Act::Sigmoid)?)
    }

    /// Decodes `z` and keeps what [`Decoder::backward`] needs. In [`Mode::Train`] batch norm
    /// normalises with the batch statistics and updates the running ones.
    pub fn forward(&mut self, b: &B, z: &Tensor<B>, mode: Mode) -> Result<(Tensor<B>, Tape<B>)> {
        let mut x = z.duplicate(b)?.reshape(self.seed_shape_of(z)?)?;
        let act = self.config.act;
        let mut recs = Vec::new();
        for (g, blocks) in self.groups.iter_mut().enumerate() {
            if g > 0 {
                x = upsample(b, &x)?;
            }
            for blk in blocks.iter_mut() {
                let u = blk.convt.forward(b, &x)?;
                let mut a = Tensor::alloc(b, u.shape.clone())?;
                b.activation(act, &u.buf, &mut a.buf)?;
                drop(u);
                let (y, cache) = match mode {
                    Mode::Train => {
                        let (y, c) = blk.bn.forward_train(b, &a, Act::Identity)?;
                        (y, Some(c))
                    }
                    Mode::Eval => (blk.bn.forward_eval(b, &a, Act::Identity)?, None),
                };
                recs.push(BlockRec { x, a, cache });
                x = y;
            }
        }
        if mode == Mode::Train {
            self.bn_steps += 1;
        }
        let y = self.out.forward(b, &x, None, Act::Sigmoid)?;
        let tape = Tape {
            mode,
            z_shape: z.shape.clone(),
            blocks: recs,
            last_in: x,
            y: y.duplicate(b)?,
        };
        Ok((y, tape))
    }

    /// Backward from `dy`, the gradient of a loss with respect to the decoded images: the
    /// parameter gradients into `Param::grad` when `grads.weights`, and the gradient with
    /// respect to the points `z` (in their shape) when `grads.input`.
    pub fn backward(&mut self, b: &B, tape: Tape<B>, dy: &Tensor<B>, grads: Grads) -> Result<Option<Tensor<B>>> {
        if dy.shape != tape.y.shape {
            return Err(DecoderError::Input {
                what: "the output gradient",
                expected: tape.y.shape.to_string(),
                found: dy.shape.to_string(),
            });
        }
        let mut dpre = Tensor::alloc(b, dy.shape.clone())?;
        b.activation_bwd(Act::Sigmoid, &tape.y.buf, &dy.buf, &mut dpre.buf)?;
        let inner = Grads {
            input: true,
            weights: grads.weights,
        };
        let mut d = self
            .out
            .backward(b, &tape.last_in, &dpre, inner)?
            .expect("input gradient asked for");
        drop(dpre);
        let act = self.config.act;
        let mut recs = tape.blocks;
        let per = self.config.blocks_per_group;
        for g in (0..self.groups.len()).rev() {
            for i in (0..per).rev() {
                let rec = recs.pop().expect("one record per block");
                let blk = &mut self.groups[g][i];
                let da = match (tape.mode, &rec.cache) {
                    (Mode::Train, Some(c)) => blk.bn.backward_train(b, &rec.a, &d, c, grads)?,
                    _ => blk.bn.backward_eval(b, &rec.a, &d, grads)?,
                };
                let mut du = Tensor::alloc(b, da.shape.clone())?;
                b.activation_bwd(act, &rec.a.buf, &da.buf, &mut du.buf)?;
                drop(da);
                let first = g == 0 && i == 0;
                let gi = Grads {
                    input: !first || grads.input,
                    weights: grads.weights,
                };
                match blk.convt.backward(b, &rec.x, &du, gi)? {
                    Some(dx) => d = dx,
                    None => return Ok(None),
                }
            }
            if g > 0 {
                let s = nchw_of(&d)?;
                let small = Nchw {
                    h: s.h / 2,
                    w: s.w / 2,
                    ..s
                };
                let mut dx = Tensor::alloc(b, small.shape())?;
                b.upsample_nearest2x_bwd(&small, &d.buf, &mut dx.buf)?;
                d = dx;
            }
        }
        Ok(Some(d.reshape(tape.z_shape)?))
    }
}

fn upsample<B: Backend>(b: &B, x: &Tensor<B>) -> Result<Tensor<B>> {
    let s = nchw_of(x)?;
    let mut y = Tensor::alloc(b, [s.n, s.c, 2 * s.h, 2 * s.w])?;
    b.upsample_nearest2x(&s, &x.buf, &mut y.buf)?;
    Ok(y)
}

/// The mean squared error `L = (1/M) Σ (ŷ − t)²` over all `M` elements (PyTorch's
/// `MSELoss()`, Keras' `mse`), and its gradient `dL/dŷ = 2 (ŷ − t) / M`.
pub fn mse_loss<B: Backend>(b: &B, y: &Tensor<B>, target: &Tensor<B>) -> Result<(f64, Tensor<B>)> {
    if y.shape != target.shape {
        return Err(DecoderError::Input {
            what: "the target images",
            expected: y.shape.to_string(),
            found: target.shape.to_string(),
        });
    }
    let m = y.numel();
    let mut d = y.duplicate(b)?;
    b.axpy(-1.0, &target.buf, &mut d.buf)?;
    let loss = b.dot(&d.buf, &d.buf)? / m as f64;
    b.scale(2.0 / m as f32, &mut d.buf)?;
    Ok((loss, d))
}
