//! The classification loss: row-wise softmax and cross-entropy.

use super::Memory;
use crate::error::{check_len, Result, TensorError};

/// Checks that there are `n` targets, each in `0..c`.
fn check_targets(op: &'static str, n: usize, c: usize, targets: &[usize]) -> Result<()> {
    check_len(op, "targets", n, targets.len())?;
    match targets.iter().enumerate().find(|(_, &t)| t >= c) {
        Some((sample, &target)) => Err(TensorError::Target {
            op,
            sample,
            target,
            classes: c,
        }),
        None => Ok(()),
    }
}

/// Softmax cross-entropy over `[n, c]` logits with one target class per row.
///
/// Implementors provide the `run_*` methods, which may assume buffers of the lengths `n`
/// and `c` give and `n` targets, each in `0..c`.
pub trait Softmax: Memory {
    checked_ops! {
        /// Row-wise softmax of `logits: [n, c]` into `probs`, and the cross-entropy of each row
        /// against its target class into `losses: [n]` (computed stably, log-sum-exp).
        fn softmax_cross_entropy(
            &self,
            n: usize,
            c: usize,
            logits: &Self::Buf,
            targets: &[usize],
            probs: &mut Self::Buf,
            losses: &mut Self::Buf,
        ) -> Result<()> => run_softmax_cross_entropy {
            const OP: &str = "softmax_cross_entropy";
            check_targets(OP, n, c, targets)?;
            check_len(OP, "logits", n * c, self.len(logits))?;
            check_len(OP, "probs", n * c, self.len(probs))?;
            check_len(OP, "losses", n, self.len(losses))?;
        }
        /// `dlogits = scale · (probs - onehot(targets))`; `scale = 1/n` for the mean loss,
        /// 1 for per-row energies.
        fn softmax_cross_entropy_bwd(
            &self,
            n: usize,
            c: usize,
            probs: &Self::Buf,
            targets: &[usize],
            scale: f32,
            dlogits: &mut Self::Buf,
        ) -> Result<()> => run_softmax_cross_entropy_bwd {
            const OP: &str = "softmax_cross_entropy_bwd";
            check_targets(OP, n, c, targets)?;
            check_len(OP, "probs", n * c, self.len(probs))?;
            check_len(OP, "dlogits", n * c, self.len(dlogits))?;
        }
    }
}
