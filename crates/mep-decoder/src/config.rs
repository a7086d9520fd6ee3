//! What a decoder is: the point it decodes (network, input size, cut, shape), the layers
//! (filters per group, blocks per group, activation), the output size, and how the paper
//! trains it. Stored as a checkpoint's metadata so a decoder file describes itself.

use crate::error::{DecoderError, Result};
use mep_resnet::{Arch, Cut};
use mep_tensor::Act;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The paper's `pool` decoder (Table 3): filters of the four groups.
pub const POOL_FILTERS: [usize; 4] = [512, 256, 256, 256];
/// Blocks of [ConvTranspose, activation, BatchNorm] per group (Table 3: three).
pub const BLOCKS_PER_GROUP: usize = 3;
/// The filters of every block of the spatial decoder (Table 2's 256).
pub const SPATIAL_FILTERS: usize = 256;
/// The LeakyReLU slope of Table 3 (Keras' default, 0.3).
pub const POOL_LEAKY_SLOPE: f32 = 0.3;
/// The side of the square a pooled feature vector is reshaped to: `F → (F/16, 4, 4)`.
pub const POOL_SEED_SIDE: usize = 4;
/// The `pool` decoder's output side: 4 · 2³ after three upsamplings (Table 3).
pub const POOL_OUT_SIZE: usize = 32;

/// The metadata key that marks a decoder checkpoint (value `1`).
pub const META_DECODER: &str = "mep.decoder";
const META_ARCH: &str = "mep.decoder.arch";
const META_CUT: &str = "mep.decoder.cut";
const META_INPUT_SIZE: &str = "mep.decoder.input_size";
const META_IN_SHAPE: &str = "mep.decoder.in_shape";
const META_OUT_SIZE: &str = "mep.decoder.out_size";
const META_FILTERS: &str = "mep.decoder.filters";
const META_BLOCKS: &str = "mep.decoder.blocks_per_group";
const META_ACT: &str = "mep.decoder.activation";

/// The point a decoder decodes: a point at `cut` of `arch` fed `input_size`² images,
/// of shape `in_shape` per image (`[F]` at `pool`, `[C, H, W]` elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub arch: Arch,
    pub cut: Cut,
    /// The side of the (square) images the network takes.
    pub input_size: usize,
    /// The shape of one point at the cut, without the batch dimension.
    pub in_shape: Vec<usize>,
}

/// The training hyper-parameters the paper gives (Table 4 for `pool`; ours for spatial cuts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainHyper {
    pub lr: f32,
    pub batch_size: usize,
    pub epochs: usize,
}

impl TrainHyper {
    /// Table 4 for `pool` (lr 1e-3, batch 128, 5 epochs); lr 1e-3, batch 32, 10 epochs for
    /// the spatial decoders (Table 2's training, as far as the print can be read).
    pub fn paper(cut: Cut) -> TrainHyper {
        match cut {
            Cut::Pool => TrainHyper {
                lr: 1e-3,
                batch_size: 128,
                epochs: 5,
            },
            _ => TrainHyper {
                lr: 1e-3,
                batch_size: 32,
                epochs: 10,
            },
        }
    }
}

/// A decoder's architecture.
///
/// Groups of `blocks_per_group` blocks [ConvTranspose 3×3 (padding 1) → `act` → BatchNorm],
/// `filters[g]` filters in group `g`, with a nearest 2× upsampling between groups; then a
/// 3×3 convolution to 3 channels and a sigmoid. At `pool` the feature vector is first
/// reshaped to `(F/16, 4, 4)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    pub arch: Arch,
    pub cut: Cut,
    /// The side of the images the network takes (the encoder's input size).
    pub input_size: usize,
    /// The shape of one point at the cut: `[F]` at `pool`, `[C, H, W]` elsewhere.
    pub in_shape: Vec<usize>,
    /// The side of the decoded images.
    pub out_size: usize,
    /// Filters of every block of each group; one entry per group.
    pub filters: Vec<usize>,
    pub blocks_per_group: usize,
    /// `LeakyRelu(0.3)` at `pool` (Table 3), `Relu` elsewhere (Table 2).
    pub act: Act,
}

fn dims(v: &[usize]) -> String {
    format!("[{}]", v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

impl DecoderConfig {
    /// The paper's decoder for `source`.
    ///
    /// At `pool`: Table 3, filters 512, 256, 256, 256 in groups of three, LeakyReLU 0.3,
    /// 32×32 output; F must be divisible by 16. Elsewhere: groups of three blocks of 256
    /// filters with ReLU, one group per resolution from the cut's `H` up to `input_size`,
    /// which must be `H · 2^k`.
    pub fn paper(source: &Source) -> Result<DecoderConfig> {
        let (filters, act, out_size) = if source.cut == Cut::Pool {
            (POOL_FILTERS.to_vec(), Act::LeakyRelu(POOL_LEAKY_SLOPE), POOL_OUT_SIZE)
        } else {
            let h = match source.in_shape[..] {
                [_, h, _] if h > 0 => h,
                _ => {
                    return Err(DecoderError::Config(format!(
                        "a point at cut `{}` has shape {}; the spatial decoder needs [C, H, W]",
                        source.cut,
                        dims(&source.in_shape)
                    )))
                }
            };
            let groups = upsamplings(h, source.input_size).ok_or_else(|| {
                DecoderError::Config(format!(
                    "the {h}×{h} points at cut `{}` cannot be brought to the {s}×{s} input size by 2× upsampling \
                     ({s} is not {h}·2^k)",
                    source.cut,
                    s = source.input_size
                ))
            })? + 1;
            (vec![SPATIAL_FILTERS; groups], Act::Relu, source.input_size)
        };
        let c = DecoderConfig {
            arch: source.arch,
            cut: source.cut,
            input_size: source.input_size,
            in_shape: source.in_shape.clone(),
            out_size,
            filters,
            blocks_per_group: BLOCKS_PER_GROUP,
            act,
        };
        c.validate()?;
        Ok(c)
    }

    /// The same decoder with every filter count multiplied by `scale` (rounded, at least 1):
    /// `scaled(1.0 / 8.0)` turns Table 3's 512, 256, 256, 256 into 64, 32, 32, 32.
    pub fn scaled(&self, scale: f32) -> DecoderConfig {
        DecoderConfig {
            filters: self
                .filters
                .iter()
                .map(|&f| ((f as f64 * scale as f64).round() as usize).max(1))
                .collect(),
            ..self.clone()
        }
    }

    /// What this decoder decodes.
    pub fn source(&self) -> Source {
        Source {
            arch: self.arch,
            cut: self.cut,
            input_size: self.input_size,
            in_shape: self.in_shape.clone(),
        }
    }

    /// The `[C, H, W]` the first group receives: `(F/16, 4, 4)` at `pool`, the point's own
    /// shape elsewhere.
    pub fn seed_shape(&self) -> Result<[usize; 3]> {
        match (self.cut, &self.in_shape[..]) {
            (Cut::Pool, &[f]) => {
                let area = POOL_SEED_SIDE * POOL_SEED_SIDE;
                if f == 0 || f % area != 0 {
                    return Err(DecoderError::Config(format!(
                        "the pool decoder reshapes the F = {f} features to (F/16, 4, 4), so F must be a positive \
                         multiple of 16"
                    )));
                }
                Ok([f / area, POOL_SEED_SIDE, POOL_SEED_SIDE])
            }
            (Cut::Pool, s) => Err(DecoderError::Config(format!(
                "a point at cut `pool` is a feature vector [F], not {}",
                dims(s)
            ))),
            (_, &[c, h, w]) if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
            (cut, s) => Err(DecoderError::Config(format!(
                "a point at cut `{cut}` has shape {}; expected [C, H, W] with positive sides",
                dims(s)
            ))),
        }
    }

    /// Checks that the layers fit together: a valid seed shape, at least one group of at
    /// least one block with positive filters, a ReLU-family activation, and an output size
    /// equal to the seed's side after one 2× upsampling between each pair of groups.
    pub fn validate(&self) -> Result<()> {
        let [_, h, w] = self.seed_shape()?;
        if h != w {
            return Err(DecoderError::Config(format!(
                "points at cut `{}` are {h}×{w}; the decoder needs a square",
                self.cut
            )));
        }
        if self.filters.is_empty() || self.filters.contains(&0) || self.blocks_per_group == 0 {
            return Err(DecoderError::Config(format!(
                "filters {} and {} blocks per group: need at least one group, one block and one filter",
                dims(&self.filters),
                self.blocks_per_group
            )));
        }
        match self.act {
            Act::Relu => {}
            Act::LeakyRelu(s) if s > 0.0 && s.is_finite() => {}
            other => {
                return Err(DecoderError::Config(format!(
                    "activation {other:?}: the decoder takes ReLU or LeakyReLU with a positive slope"
                )))
            }
        }
        if self.input_size == 0 {
            return Err(DecoderError::Config("the input size must be positive".into()));
        }
        let reached = h.checked_shl(self.filters.len() as u32 - 1).unwrap_or(0);
        if reached != self.out_size {
            return Err(DecoderError::Config(format!(
                "{} groups take the {h}×{h} seed to {reached}×{reached}, not the output size {o}×{o}",
                self.filters.len(),
                o = self.out_size
            )));
        }
        Ok(())
    }

    /// The `[C, side]` at the input of each group, and the channels of the last group.
    pub(crate) fn group_inputs(&self) -> Result<(Vec<(usize, usize)>, usize)> {
        let [mut c, side, _] = self.seed_shape()?;
        let mut v = Vec::new();
        for (g, &f) in self.filters.iter().enumerate() {
            v.push((c, side << g));
            c = f;
        }
        Ok((v, c))
    }

    /// Multiply-adds of one forward pass per image (the backward of training costs about
    /// twice as much again). Upsampling, activations and batch norm are not counted.
    pub fn macs_per_image(&self) -> Result<u64> {
        let (groups, last) = self.group_inputs()?;
        let mut macs = 0u64;
        for ((c_in, side), &f) in groups.iter().zip(&self.filters) {
            let px = (side * side) as u64;
            macs += 9 * px * (*c_in as u64) * f as u64;
            macs += 9 * px * (f as u64) * (f as u64) * (self.blocks_per_group as u64 - 1);
        }
        Ok(macs + 9 * (self.out_size * self.out_size) as u64 * last as u64 * 3)
    }

    /// The checkpoint metadata that describes this decoder.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let list = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        BTreeMap::from([
            (META_DECODER.to_string(), "1".to_string()),
            (META_ARCH.to_string(), self.arch.name().to_string()),
            (META_CUT.to_string(), self.cut.to_string()),
            (META_INPUT_SIZE.to_string(), self.input_size.to_string()),
            (META_IN_SHAPE.to_string(), list(&self.in_shape)),
            (META_OUT_SIZE.to_string(), self.out_size.to_string()),
            (META_FILTERS.to_string(), list(&self.filters)),
            (META_BLOCKS.to_string(), self.blocks_per_group.to_string()),
            (META_ACT.to_string(), act_name(self.act)),
        ])
    }

    /// The decoder a checkpoint's metadata describes; `path` names the file in errors.
    /// A file without [`META_DECODER`] is [`DecoderError::NotADecoder`].
    pub fn from_metadata(path: &Path, meta: &BTreeMap<String, String>) -> Result<DecoderConfig> {
        let not = |why: String| DecoderError::NotADecoder {
            path: path.to_path_buf(),
            why,
        };
        if !meta.contains_key(META_DECODER) {
            let hint = if meta.contains_key("mep.input_size") {
                " (it looks like a classifier written by `mep train`)"
            } else {
                ""
            };
            return Err(not(format!("its metadata has no `{META_DECODER}` key{hint}")));
        }
        let get = |k: &str| meta.get(k).ok_or_else(|| not(format!("its metadata lacks `{k}`")));
        let num = |k: &str| -> Result<usize> {
            let v = get(k)?;
            v.trim()
                .parse()
                .map_err(|_| not(format!("`{k}` = `{v}` is not a number")))
        };
        let list = |k: &str| -> Result<Vec<usize>> {
            let v = get(k)?;
            v.split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| not(format!("`{k}` = `{v}` is not a comma-separated list of numbers")))
        };
        let arch: Arch = get(META_ARCH)?
            .parse()
            .map_err(|e| not(format!("`{META_ARCH}`: {e}")))?;
        let cut: Cut = get(META_CUT)?.parse().map_err(|e| not(format!("`{META_CUT}`: {e}")))?;
        let act_s = get(META_ACT)?;
        let act =
            parse_act(act_s).ok_or_else(|| not(format!("`{META_ACT}` = `{act_s}` is not relu or leaky_relu:SLOPE")))?;
        let c = DecoderConfig {
            arch,
            cut,
            input_size: num(META_INPUT_SIZE)?,
            in_shape: list(META_IN_SHAPE)?,
            out_size: num(META_OUT_SIZE)?,
            filters: list(META_FILTERS)?,
            blocks_per_group: num(META_BLOCKS)?,
            act,
        };
        c.validate().map_err(|e| not(e.to_string()))?;
        Ok(c)
    }

    /// Checks that this decoder decodes `want`: the first field that differs (arch, cut,
    /// input size, feature shape) becomes [`DecoderError::Mismatch`] naming `path`.
    pub fn check_source(&self, path: &Path, want: &Source) -> Result<()> {
        let mismatch = |what, expected: String, found: String| {
            Err(DecoderError::Mismatch {
                path: path.to_path_buf(),
                what,
                expected,
                found,
            })
        };
        if self.arch != want.arch {
            return mismatch("arch", format!("`{}`", want.arch), format!("`{}`", self.arch));
        }
        if self.cut != want.cut {
            return mismatch("cut", format!("`{}`", want.cut), format!("`{}`", self.cut));
        }
        if self.input_size != want.input_size {
            return mismatch(
                "input size",
                format!("{}×{}", want.input_size, want.input_size),
                format!("{}×{}", self.input_size, self.input_size),
            );
        }
        if self.in_shape != want.in_shape {
            return mismatch("feature shape", dims(&want.in_shape), dims(&self.in_shape));
        }
        Ok(())
    }
}

/// `log2(to / from)` when `to = from · 2^k`.
fn upsamplings(from: usize, to: usize) -> Option<usize> {
    if from == 0 || to < from || !to.is_multiple_of(from) || !(to / from).is_power_of_two() {
        return None;
    }
    Some((to / from).trailing_zeros() as usize)
}

fn act_name(act: Act) -> String {
    match act {
        Act::LeakyRelu(s) => format!("leaky_relu:{s}"),
        Act::Relu => "relu".into(),
        Act::Identity => "identity".into(),
        Act::Sigmoid => "sigmoid".into(),
    }
}

fn parse_act(s: &str) -> Option<Act> {
    match s {
        "relu" => Some(Act::Relu),
        _ => s.strip_prefix("leaky_relu:")?.parse().ok().map(Act::LeakyRelu),
    }
}

impl fmt::Display for DecoderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decoder for {} at `{}` ({}×{} input), point {} → 3×{}×{}, filters {} × {} blocks, {}",
            self.arch,
            self.cut,
            self.input_size,
            self.input_size,
            dims(&self.in_shape),
            self.out_size,
            self.out_size,
            dims(&self.filters),
            self.blocks_per_group,
            act_name(self.act)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(cut: Cut, in_shape: &[usize], input_size: usize) -> Source {
        Source {
            arch: Arch::ResNet50,
            cut,
            input_size,
            in_shape: in_shape.to_vec(),
        }
    }

    #[test]
    fn paper_pool_decoder_is_table_3() {
        let c = DecoderConfig::paper(&source(Cut::Pool, &[2048], 224)).unwrap();
        assert_eq!(c.seed_shape().unwrap(), [128, 4, 4]);
        assert_eq!(c.filters, vec![512, 256, 256, 256]);
        assert_eq!(c.out_size, 32);
        assert_eq!(c.act, Act::LeakyRelu(0.3));
        assert_eq!(c.scaled(1.0 / 8.0).filters, vec![64, 32, 32, 32]);
    }

    #[test]
    fn spatial_decoder_upsamples_to_the_input_size() {
        // ResNet-50's layer1 at 224×224 is 256×56×56: two upsamplings, three groups.
        let c = DecoderConfig::paper(&source(Cut::Layer(1), &[256, 56, 56], 224)).unwrap();
        assert_eq!(c.filters, vec![256; 3]);
        assert_eq!(c.out_size, 224);
        // ResNet-20's layer1 at 32×32 is 16×32×32: no upsampling, one group.
        let c = DecoderConfig::paper(&source(Cut::Layer(1), &[16, 32, 32], 32)).unwrap();
        assert_eq!(c.filters, vec![256]);
        let e = DecoderConfig::paper(&source(Cut::Layer(2), &[32, 13, 13], 100)).unwrap_err();
        assert!(e.to_string().contains("13×13"), "{e}");
    }

    #[test]
    fn metadata_round_trips_and_macs_are_counted() {
        let c = DecoderConfig::paper(&source(Cut::Pool, &[2048], 224)).unwrap();
        let back = DecoderConfig::from_metadata(Path::new("x"), &c.to_metadata()).unwrap();
        assert_eq!(back, c);
        // 128→512 and 2×512→512 at 4×4, 512→256 and 2×256→256 at 8×8, 3×256→256 at 16×16 and
        // 32×32, 256→3 at 32×32; 9 taps each.
        let px = |s: u64| s * s * 9;
        let want = px(4) * (128 * 512 + 2 * 512 * 512)
            + px(8) * (512 * 256 + 2 * 256 * 256)
            + (px(16) + px(32)) * 3 * 256 * 256
            + px(32) * 256 * 3;
        assert_eq!(c.macs_per_image().unwrap(), want);
    }
}
