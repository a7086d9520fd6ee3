//! mep-tensor: shapes, tensors, the [`Backend`] trait and the CPU backend.
//!
//! Every operation a ResNet, a decoder or the nudged elastic band needs is a method of
//! [`Backend`] on backend-owned buffers; models are generic over the backend, and the
//! [`CpuBackend`] is the reference the others must agree with.
//!
//! ```
//! use mep_tensor::{Backend, CpuBackend, Tensor};
//! let cpu = CpuBackend::new();
//! let t = Tensor::from_vec(&cpu, [2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
//! assert_eq!(t.shape.dims(), &[2, 2]);
//! assert_eq!(t.to_vec(&cpu).unwrap()[3], 4.0);
//! ```

pub mod backend;
pub mod cpu;
pub mod error;
pub mod shape;
mod tensor;

pub use backend::{Act, AdamParams, Backend, SgdParams};
pub use cpu::{CpuBackend, CpuBuf};
pub use error::{check_len, Result, TensorError};
pub use shape::{Conv2dGeom, ConvT2dGeom, Nchw, Pool2dGeom, Shape};
pub use tensor::Tensor;
