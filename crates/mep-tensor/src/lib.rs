#![doc = include_str!("../README.md")]

pub mod backend;
pub mod cpu;
pub mod error;
pub mod float;
pub mod shape;
mod tensor;

pub use backend::{Act, AdamParams, Backend, Lerp, NebForceParams, SgdParams};
pub use cpu::{CpuBackend, CpuBuf};
pub use error::{check_len, Result, TensorError};
pub use shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom, Shape};
pub use tensor::Tensor;
