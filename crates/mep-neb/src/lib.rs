#![doc = include_str!("../README.md")]

pub mod energy;
pub mod error;
pub mod neb;
pub mod optim;
pub mod path;
pub mod potentials;

pub use energy::{Energy, Evaluation};
pub use error::{NebError, Result};
pub use mep_tensor::backend::neb::redistribution_plan;
pub use neb::{
    forces, Dense, DeviceStepKey, Insertion, Neb, NebConfig, Outcome, Spring, StepReport, Stepping, StopReason,
};
pub use optim::{Fire, FireParams, PathOptimizer, PathOptimizerConfig};
pub use path::Path;
