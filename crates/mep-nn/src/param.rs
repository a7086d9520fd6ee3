//! Trainable parameters and the switch that chooses which gradients a backward computes.

use crate::error::Result;
use mep_tensor::{Backend, Tensor};

/// Which gradients a backward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grads {
    /// The gradient with respect to the layer's input.
    pub input: bool,
    /// The gradients with respect to the layer's parameters (written to `Param::grad`).
    pub weights: bool,
}

impl Grads {
    /// Input gradient only: what the path search needs.
    pub const INPUT: Grads = Grads {
        input: true,
        weights: false,
    };
    /// Input and parameter gradients: what training needs.
    pub const ALL: Grads = Grads {
        input: true,
        weights: true,
    };
    /// Parameter gradients only (the first layer of a network being trained).
    pub const WEIGHTS: Grads = Grads {
        input: false,
        weights: true,
    };
}

/// A trainable tensor and its gradient. Backward passes overwrite `grad`.
pub struct Param<B: Backend> {
    /// The current value.
    pub value: Tensor<B>,
    /// The gradient of the last backward pass that asked for weight gradients.
    pub grad: Option<Tensor<B>>,
}

impl<B: Backend> Param<B> {
    /// A parameter with no gradient yet.
    pub fn new(value: Tensor<B>) -> Self {
        Param { value, grad: None }
    }

    /// The gradient buffer, allocated (zeroed) on first use.
    pub fn grad_mut(&mut self, backend: &B) -> Result<&mut Tensor<B>> {
        if self.grad.is_none() {
            self.grad = Some(Tensor::zeros(backend, self.value.shape.clone())?);
        }
        Ok(self.grad.as_mut().expect("allocated above"))
    }

    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.value.numel()
    }
}
