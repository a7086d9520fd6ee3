#![doc = include_str!("../README.md")]

pub mod energy;
pub mod error;
pub mod neb;
pub mod optim;
pub mod path;
pub mod potentials;

pub use energy::{Energy, Evaluation};
pub use error::{NebError, Result};
pub use neb::{forces, redistribution_plan, Dense, Insertion, Neb, NebConfig, Outcome, Spring, StepReport, StopReason};
pub use optim::{Fire, FireParams, PathOptimizer, PathOptimizerConfig};
pub use path::Path;
