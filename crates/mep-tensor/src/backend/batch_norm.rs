//! Batch norm, inference and training mode, forward and backward.

use super::elementwise::check_act;
use super::memory::check_opt;
use super::{Act, Memory};
use crate::error::{check_len, Result, TensorError};
use crate::shape::Nchw;

/// Training-mode batch norm needs batch statistics of more than one value per channel.
fn check_batch_stats(op: &'static str, s: &Nchw) -> Result<()> {
    if s.n * s.h * s.w < 2 {
        return Err(TensorError::Invalid {
            op,
            msg: format!("training-mode batch norm needs more than one value per channel, got input {s:?}"),
        });
    }
    Ok(())
}

/// Batch norm over the channels of NCHW buffers; per-channel buffers have `c` elements.
///
/// Implementors provide the `run_*` methods, which may assume buffers of the lengths `s`
/// gives, a valid activation and, in training mode, more than one value per channel.
pub trait BatchNorm: Memory {
    checked_ops! {
        /// Inference-mode batch norm with running statistics, then `act`:
        /// `y = act(gamma (x - mean) / sqrt(var + eps) + beta)`.
        #[allow(clippy::too_many_arguments)]
        fn batch_norm_infer(
            &self,
            s: &Nchw,
            x: &Self::Buf,
            gamma: &Self::Buf,
            beta: &Self::Buf,
            mean: &Self::Buf,
            var: &Self::Buf,
            eps: f32,
            act: Act,
            y: &mut Self::Buf,
        ) -> Result<()> => run_batch_norm_infer {
            const OP: &str = "batch_norm_infer";
            check_act(OP, act)?;
            check_len(OP, "x", s.numel(), self.len(x))?;
            for (arg, b) in [("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)] {
                check_len(OP, arg, s.c, self.len(b))?;
            }
            check_len(OP, "y", s.numel(), self.len(y))?;
        }
        /// Backward of inference-mode batch norm (no activation): `dx`, and when given the
        /// accumulated-over-the-batch `dgamma`, `dbeta` (overwritten).
        #[allow(clippy::too_many_arguments)]
        fn batch_norm_infer_bwd(
            &self,
            s: &Nchw,
            x: &Self::Buf,
            dy: &Self::Buf,
            gamma: &Self::Buf,
            mean: &Self::Buf,
            var: &Self::Buf,
            eps: f32,
            dx: &mut Self::Buf,
            dgamma: Option<&mut Self::Buf>,
            dbeta: Option<&mut Self::Buf>,
        ) -> Result<()> => run_batch_norm_infer_bwd {
            const OP: &str = "batch_norm_infer_bwd";
            check_len(OP, "x", s.numel(), self.len(x))?;
            check_len(OP, "dy", s.numel(), self.len(dy))?;
            for (arg, b) in [("gamma", gamma), ("mean", mean), ("var", var)] {
                check_len(OP, arg, s.c, self.len(b))?;
            }
            check_len(OP, "dx", s.numel(), self.len(dx))?;
            check_opt(self, OP, "dgamma", s.c, dgamma.as_deref())?;
            check_opt(self, OP, "dbeta", s.c, dbeta.as_deref())?;
        }
        /// Training-mode batch norm, then `act`: normalise with the batch statistics (biased
        /// variance), update the running statistics as PyTorch does (`r = (1 - momentum) r +
        /// momentum s`, unbiased variance), and save the batch mean and `1/sqrt(var + eps)` for
        /// backward. The fused activation spares a pass; its backward needs only `y`.
        #[allow(clippy::too_many_arguments)]
        fn batch_norm_train(
            &self,
            s: &Nchw,
            x: &Self::Buf,
            gamma: &Self::Buf,
            beta: &Self::Buf,
            running_mean: &mut Self::Buf,
            running_var: &mut Self::Buf,
            momentum: f32,
            eps: f32,
            act: Act,
            y: &mut Self::Buf,
            save_mean: &mut Self::Buf,
            save_invstd: &mut Self::Buf,
        ) -> Result<()> => run_batch_norm_train {
            const OP: &str = "batch_norm_train";
            check_act(OP, act)?;
            check_len(OP, "x", s.numel(), self.len(x))?;
            check_batch_stats(OP, s)?;
            for (arg, b) in [
                ("gamma", gamma),
                ("beta", beta),
                ("running_mean", &*running_mean),
                ("running_var", &*running_var),
                ("save_mean", &*save_mean),
                ("save_invstd", &*save_invstd),
            ] {
                check_len(OP, arg, s.c, self.len(b))?;
            }
            check_len(OP, "y", s.numel(), self.len(y))?;
        }
        /// Backward of training-mode batch norm: `dx`, `dgamma`, `dbeta` (all overwritten).
        #[allow(clippy::too_many_arguments)]
        fn batch_norm_train_bwd(
            &self,
            s: &Nchw,
            x: &Self::Buf,
            dy: &Self::Buf,
            gamma: &Self::Buf,
            save_mean: &Self::Buf,
            save_invstd: &Self::Buf,
            dx: &mut Self::Buf,
            dgamma: &mut Self::Buf,
            dbeta: &mut Self::Buf,
        ) -> Result<()> => run_batch_norm_train_bwd {
            const OP: &str = "batch_norm_train_bwd";
            check_len(OP, "x", s.numel(), self.len(x))?;
            check_len(OP, "dy", s.numel(), self.len(dy))?;
            for (arg, b) in [("gamma", gamma), ("save_mean", save_mean), ("save_invstd", save_invstd)] {
                check_len(OP, arg, s.c, self.len(b))?;
            }
            check_len(OP, "dx", s.numel(), self.len(dx))?;
            check_len(OP, "dgamma", s.c, self.len(dgamma))?;
            check_len(OP, "dbeta", s.c, self.len(dbeta))?;
        }
    }
}
