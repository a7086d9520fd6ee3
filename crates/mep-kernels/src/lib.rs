#![doc = include_str!("../README.md")]

mod backend;
mod certify_on;
pub mod conformance;
pub mod error;
pub mod launcher;
mod ops;
pub mod pool;
pub mod signature;
pub mod sources;

pub use backend::{DevBuf, Graph, KernelBackend, Kernels};
pub use certify_on::CertifyOn;
pub use error::{KernelError, Result};
pub use launcher::{Arg, Dims, Launcher, Replay};
pub use ops::conv::{conv_work, resnet50_224_convs, ConvWork};
pub use ops::elementwise::act_args;
pub use ops::neb::{neb_forces_traffic, Traffic, NEB_CHUNK};
pub use ops::optim::AdamScalars;
pub use pool::{Block, PoolStats};
