//! Architecture names and cut points.

use crate::error::{ResNetError, Result};
use std::fmt;
use std::str::FromStr;

/// The residual block of an architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34 and the CIFAR ResNets).
    Basic,
    /// 1×1, 3×3 (carrying the stride: torchvision's v1.5), 1×1 with 4× expansion.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of `planes`.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A ResNet architecture: torchvision's ImageNet family or the CIFAR family of
/// He et al. 2016 §4.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
    ResNet20,
    ResNet32,
    ResNet44,
    ResNet56,
    ResNet110,
}

impl Arch {
    /// Every architecture, in the order `--arch` lists them.
    pub const ALL: [Arch; 10] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
        Arch::ResNet20,
        Arch::ResNet32,
        Arch::ResNet44,
        Arch::ResNet56,
        Arch::ResNet110,
    ];

    /// The name `--arch` takes (`resnet50`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::ResNet101 => "resnet101",
            Arch::ResNet152 => "resnet152",
            Arch::ResNet20 => "resnet20",
            Arch::ResNet32 => "resnet32",
            Arch::ResNet44 => "resnet44",
            Arch::ResNet56 => "resnet56",
            Arch::ResNet110 => "resnet110",
        }
    }

    /// Basic or bottleneck blocks.
    pub fn block(self) -> BlockKind {
        match self {
            Arch::ResNet50 | Arch::ResNet101 | Arch::ResNet152 => BlockKind::Bottleneck,
            _ => BlockKind::Basic,
        }
    }

    /// Blocks per stage.
    pub fn layers(self) -> &'static [usize] {
        match self {
            Arch::ResNet18 => &[2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => &[3, 4, 6, 3],
            Arch::ResNet101 => &[3, 4, 23, 3],
            Arch::ResNet152 => &[3, 8, 36, 3],
            Arch::ResNet20 => &[3, 3, 3],
            Arch::ResNet32 => &[5, 5, 5],
            Arch::ResNet44 => &[7, 7, 7],
            Arch::ResNet56 => &[9, 9, 9],
            Arch::ResNet110 => &[18, 18, 18],
        }
    }

    /// The CIFAR family: 3×3 stem, no max-pool, three stages, option-A shortcuts.
    pub fn is_cifar(self) -> bool {
        self.layers().len() == 3
    }

    /// Channels of the stem in the published models (64, or 16 for CIFAR).
    pub fn default_width(self) -> usize {
        if self.is_cifar() {
            16
        } else {
            64
        }
    }

    /// The cut points, from the input to the pooled features.
    pub fn cuts(self) -> Vec<Cut> {
        let mut v = vec![Cut::Input, Cut::Stem];
        v.extend((1..=self.layers().len() as u8).map(Cut::Layer));
        v.push(Cut::Pool);
        v
    }

    /// Where `cut` falls in the sequence of segments (stem, stages, pool, fc): the number
    /// of segments before it; an error if this architecture has no such cut.
    pub fn position(self, cut: Cut) -> Result<usize> {
        let stages = self.layers().len();
        match cut {
            Cut::Input => Ok(0),
            Cut::Stem => Ok(1),
            Cut::Layer(i) if (1..=stages).contains(&(i as usize)) => Ok(1 + i as usize),
            Cut::Pool => Ok(2 + stages),
            Cut::Layer(_) => Err(ResNetError::Config(format!(
                "{} has no cut `{cut}`; its cuts are {}",
                self.name(),
                self.cuts().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

impl FromStr for Arch {
    type Err = ResNetError;
    fn from_str(s: &str) -> Result<Self> {
        Arch::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                ResNetError::Config(format!(
                    "unknown architecture `{s}`; known: {}",
                    Arch::ALL.map(|a| a.name()).join(", ")
                ))
            })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point at which a ResNet is split into `encode` (input → cut) and `head` (cut → logits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cut {
    /// The input image itself (l = 0).
    Input,
    /// After the stem (conv, BN, ReLU and, for ImageNet ResNets, the max-pool).
    Stem,
    /// After stage `i` (1-based): `layer1` is the paper's "intermediate layer".
    Layer(u8),
    /// The pooled feature vector before the classifier: the paper's "last layer".
    Pool,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cut::Input => f.write_str("input"),
            Cut::Stem => f.write_str("stem"),
            Cut::Layer(i) => write!(f, "layer{i}"),
            Cut::Pool => f.write_str("pool"),
        }
    }
}

impl FromStr for Cut {
    type Err = ResNetError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "input" => Ok(Cut::Input),
            "stem" => Ok(Cut::Stem),
            "pool" => Ok(Cut::Pool),
            _ => s
                .strip_prefix("layer")
                .and_then(|i| i.parse::<u8>().ok())
                .filter(|i| (1..=4).contains(i))
                .map(Cut::Layer)
                .ok_or_else(|| {
                    ResNetError::Config(format!(
                        "unknown cut `{s}`; cuts are input, stem, layer1 … layer4, pool"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
            for c in a.cuts() {
                assert_eq!(c.to_string().parse::<Cut>().unwrap(), c);
            }
        }
        assert!("resnet19".parse::<Arch>().is_err());
        assert!("layer5".parse::<Cut>().is_err());
    }

    #[test]
    fn cifar_resnets_have_three_stages_and_no_layer4() {
        assert_eq!(Arch::ResNet20.cuts().len(), 6);
        assert!(Arch::ResNet20.position(Cut::Layer(4)).is_err());
        assert_eq!(Arch::ResNet50.position(Cut::Pool).unwrap(), 6);
        // Depth 6n + 2 (He et al. 2016 §4.2).
        for a in [
            Arch::ResNet20,
            Arch::ResNet32,
            Arch::ResNet44,
            Arch::ResNet56,
            Arch::ResNet110,
        ] {
            let n = a.layers()[0];
            assert_eq!(a.name()[6..].parse::<usize>().unwrap(), 6 * n + 2);
        }
    }
}
