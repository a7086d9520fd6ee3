#![doc = include_str!("../README.md")]

mod error;
pub mod init;
mod layers;
mod optim;
mod param;

pub use error::{NnError, Result};
pub use layers::{BatchNorm2d, BnCache, Conv2d, Linear};
pub use optim::{Adam, Optimizer, OptimizerState, Sgd};
pub use param::{Grads, Param};
