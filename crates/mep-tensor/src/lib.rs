#![doc = include_str!("../README.md")]

pub mod backend;
pub mod cpu;
pub mod error;
pub mod float;
pub mod precision;
pub mod shape;
mod tensor;

/// [`Backend`] and, unnamed, every op-family trait: `use mep_tensor::prelude::*;` to call
/// any op on a concrete backend (`cpu.conv2d(...)`). The families come in as `_`, so that
/// they cannot clash with a crate's own `Linear` or `Pool`.
pub mod prelude {
    pub use crate::backend::Backend;
    pub use crate::backend::{
        BatchNorm as _, Conv as _, Elementwise as _, Linear as _, Memory as _, Neb as _, Optim as _, Pool as _,
        Reduce as _, Softmax as _,
    };
}

pub use backend::{
    Act, AdamParams, Backend, BatchNorm, Checked, Conv, Elementwise, Lerp, Linear, Memory, Neb, NebForceParams, Optim,
    Pool, RecordError, Recorded, Reduce, SgdParams, Softmax,
};
pub use cpu::{CpuBackend, CpuBuf};
pub use error::{check_len, Result, TensorError};
pub use precision::Precision;
pub use shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom, Shape};
pub use tensor::Tensor;
