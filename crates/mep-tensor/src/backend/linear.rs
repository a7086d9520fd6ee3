//! Dense layers: `y = x wᵀ + bias` and its gradients.

use super::memory::check_opt;
use super::Memory;
use crate::error::{check_len, Result};

/// Linear layers in PyTorch's layout: `x: [n, k]`, `w: [m, k]`, `y: [n, m]`.
///
/// Implementors provide the `run_*` methods, which may assume buffers of the lengths
/// `n`, `k`, `m` give.
pub trait Linear: Memory {
    checked_ops! {
        /// `y = x wᵀ + bias` with `x: [n, k]`, `w: [m, k]` (PyTorch's `Linear`), `y: [n, m]`.
        #[allow(clippy::too_many_arguments)]
        fn linear(
            &self,
            n: usize,
            k: usize,
            m: usize,
            x: &Self::Buf,
            w: &Self::Buf,
            bias: Option<&Self::Buf>,
            y: &mut Self::Buf,
        ) -> Result<()> => run_linear {
            const OP: &str = "linear";
            check_len(OP, "x", n * k, self.len(x))?;
            check_len(OP, "w", m * k, self.len(w))?;
            check_opt(self, OP, "bias", m, bias)?;
            check_len(OP, "y", n * m, self.len(y))?;
        }
        /// `dx = dy w`.
        fn linear_bwd_input(
            &self,
            n: usize,
            k: usize,
            m: usize,
            dy: &Self::Buf,
            w: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_linear_bwd_input {
            const OP: &str = "linear_bwd_input";
            check_len(OP, "dy", n * m, self.len(dy))?;
            check_len(OP, "w", m * k, self.len(w))?;
            check_len(OP, "dx", n * k, self.len(dx))?;
        }
        /// `dw = dyᵀ x` and, when given, `db = Σ_n dy` (overwritten).
        #[allow(clippy::too_many_arguments)]
        fn linear_bwd_weight(
            &self,
            n: usize,
            k: usize,
            m: usize,
            x: &Self::Buf,
            dy: &Self::Buf,
            dw: &mut Self::Buf,
            db: Option<&mut Self::Buf>,
        ) -> Result<()> => run_linear_bwd_weight {
            const OP: &str = "linear_bwd_weight";
            check_len(OP, "x", n * k, self.len(x))?;
            check_len(OP, "dy", n * m, self.len(dy))?;
            check_len(OP, "dw", m * k, self.len(dw))?;
            check_opt(self, OP, "db", m, db.as_deref())?;
        }
    }
}
