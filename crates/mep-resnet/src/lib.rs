#![doc = include_str!("../README.md")]

pub mod arch;
pub mod checkpoint;
pub mod error;
mod infer;
mod model;

pub use arch::{Arch, BlockKind, Cut};
pub use checkpoint::{save, save_with_counters, Checkpoint, TensorData};
pub use error::{ResNetError, Result};
pub use infer::{CutActivations, FoldedBlock, FoldedConv, FoldedLayers, FoldedResNet, FoldedShortcut, HeadGrad};
pub use model::{Block, ConvBn, ResNet, Shortcut, Tape, TrainStepOutput};
