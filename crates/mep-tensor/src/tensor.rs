//! A backend buffer with a shape.

use crate::backend::Backend;
use crate::error::{check_len, Result, TensorError};
use crate::shape::Shape;

/// A dense row-major tensor of f32 living on backend `B`.
pub struct Tensor<B: Backend> {
    /// The elements, owned by the backend.
    pub buf: B::Buf,
    /// The dimensions.
    pub shape: Shape,
}

impl<B: Backend> Tensor<B> {
    /// A tensor holding `data`; an error if `data` does not have the shape's element count.
    pub fn from_vec(backend: &B, shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        Self::from_slice(backend, shape, &data)
    }
    /// A tensor holding a copy of `data`.
    pub fn from_slice(backend: &B, shape: impl Into<Shape>, data: &[f32]) -> Result<Self> {
        let shape = shape.into();
        check_len("Tensor::from_slice", "data", shape.numel(), data.len())?;
        Ok(Tensor {
            buf: backend.upload(data)?,
            shape,
        })
    }
    /// A tensor of zeros.
    pub fn zeros(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        Ok(Tensor {
            buf: backend.zeros(shape.numel())?,
            shape,
        })
    }
    /// A tensor with unspecified contents, to be overwritten by an operation.
    pub fn alloc(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        Ok(Tensor {
            buf: backend.alloc(shape.numel())?,
            shape,
        })
    }
    /// The elements, copied to the host.
    pub fn to_vec(&self, backend: &B) -> Result<Vec<f32>> {
        backend.download(&self.buf)
    }
    /// A copy on the same backend.
    pub fn duplicate(&self, backend: &B) -> Result<Self> {
        let mut buf = backend.alloc(self.shape.numel())?;
        backend.copy(&self.buf, &mut buf)?;
        Ok(Tensor {
            buf,
            shape: self.shape.clone(),
        })
    }
    /// The same elements seen with another shape of equal element count.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.shape.numel() {
            return Err(TensorError::Shape {
                op: "Tensor::reshape",
                arg: "shape",
                expected: format!("{} elements", self.shape.numel()),
                found: shape.to_string(),
            });
        }
        Ok(Tensor { buf: self.buf, shape })
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
}
