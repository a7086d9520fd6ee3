//! Reductions to one f64: dot product and norm.

use super::Memory;
use crate::error::{check_len, Result};

/// Reductions of whole buffers, accumulated in f64.
///
/// Implementors provide the `run_*` methods, which may assume equal lengths.
pub trait Reduce: Memory {
    checked_ops! {
        /// `Σ x_i y_i`, accumulated in f64.
        fn dot(&self, x: &Self::Buf, y: &Self::Buf) -> Result<f64> => run_dot {
            check_len("dot", "y", self.len(x), self.len(y))?;
        }
        /// `sqrt(Σ x_i²)`, accumulated in f64.
        fn norm(&self, x: &Self::Buf) -> Result<f64> => run_norm {}
    }
}
