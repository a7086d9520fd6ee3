//! Elementwise ops: activations, sums, `axpy` and scaling.

use super::Memory;
use crate::error::{check_len, Result, TensorError};

/// A pointwise non-linearity. Backward passes take the activation's *output*, from
/// which each derivative here can be recovered.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Act {
    /// f(x) = x.
    #[default]
    Identity,
    /// f(x) = max(x, 0).
    Relu,
    /// f(x) = x for x > 0, slope·x otherwise; slope must be positive.
    LeakyRelu(f32),
    /// f(x) = 1 / (1 + e^-x).
    Sigmoid,
}

/// Rejects a LeakyReLU slope that is not positive (the fused activations of [`Conv`] and
/// [`BatchNorm`] too).
///
/// [`Conv`]: super::Conv
/// [`BatchNorm`]: super::BatchNorm
pub(crate) fn check_act(op: &'static str, act: Act) -> Result<()> {
    match act {
        // NaN slopes are rejected too, hence not `s <= 0.0`.
        Act::LeakyRelu(s) if s.is_nan() || s <= 0.0 => Err(TensorError::Invalid {
            op,
            msg: format!("LeakyReLU slope {s} must be positive (its backward reads the output)"),
        }),
        _ => Ok(()),
    }
}

/// Pointwise maps of one or two buffers of equal length.
///
/// Implementors provide the `run_*` methods, which may assume equal lengths and a valid
/// activation; the checked methods are provided.
pub trait Elementwise: Memory {
    checked_ops! {
        /// `y = act(x)`.
        fn activation(&self, act: Act, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_activation {
            check_act("activation", act)?;
            check_len("activation", "y", self.len(x), self.len(y))?;
        }
        /// `dx = dy · act'(·)`, the derivative recovered from the activation's output `y`.
        fn activation_bwd(
            &self,
            act: Act,
            y: &Self::Buf,
            dy: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_activation_bwd {
            const OP: &str = "activation_bwd";
            check_act(OP, act)?;
            check_len(OP, "dy", self.len(y), self.len(dy))?;
            check_len(OP, "dx", self.len(y), self.len(dx))?;
        }
        /// `y = a + b`.
        fn add(&self, a: &Self::Buf, b: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_add {
            check_len("add", "b", self.len(a), self.len(b))?;
            check_len("add", "y", self.len(a), self.len(y))?;
        }
        /// `y += x`.
        fn add_assign(&self, y: &mut Self::Buf, x: &Self::Buf) -> Result<()> => run_add_assign {
            check_len("add_assign", "x", self.len(y), self.len(x))?;
        }
        /// `y += alpha x`.
        fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_axpy {
            check_len("axpy", "y", self.len(x), self.len(y))?;
        }
        /// `x *= alpha`.
        fn scale(&self, alpha: f32, x: &mut Self::Buf) -> Result<()> => run_scale {}
    }
}
