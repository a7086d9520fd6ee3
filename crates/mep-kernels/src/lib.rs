#![doc = include_str!("../README.md")]

mod backend;
pub mod conformance;
pub mod error;
pub mod launcher;
mod ops;
pub mod signature;
pub mod sources;

pub use backend::{DevBuf, KernelBackend, Kernels};
pub use error::{KernelError, Result};
pub use launcher::{Arg, Dims, Launcher};
pub use ops::conv::{conv_work, resnet50_224_convs, ConvWork};
pub use ops::elementwise::act_args;
pub use ops::neb::{neb_forces_traffic, Traffic, NEB_CHUNK};
pub use ops::optim::AdamScalars;
