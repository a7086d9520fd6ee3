//! Reductions to one f64: dot product and norm.

use super::{Checked, Memory};
use crate::error::{check_len, Result};

/// Reductions of whole buffers, accumulated in f64.
///
/// Implementors provide the `run_*` methods, which may assume equal lengths.
pub trait Reduce: Memory {
    /// `Σ x_i y_i`, accumulated in f64.
    fn dot(&self, x: &Self::Buf, y: &Self::Buf) -> Result<f64> {
        check_len("dot", "y", self.len(x), self.len(y))?;
        self.run_dot(Checked::new(), x, y)
    }
    /// `sqrt(Σ x_i²)`, accumulated in f64.
    fn norm(&self, x: &Self::Buf) -> Result<f64> {
        self.run_norm(Checked::new(), x)
    }

    /// [`Reduce::dot`] on buffers of equal length.
    fn run_dot(&self, checked: Checked, x: &Self::Buf, y: &Self::Buf) -> Result<f64>;
    /// [`Reduce::norm`] (nothing to check).
    fn run_norm(&self, checked: Checked, x: &Self::Buf) -> Result<f64>;
}
