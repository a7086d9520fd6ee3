//! Pooling and resampling: max pool, global average pool, nearest 2x upsampling and the
//! option-A shortcut.

use super::Memory;
use crate::error::{check_len, Result};
use crate::shape::{Nchw, Pool2dGeom};

/// Pooling and resampling of NCHW buffers.
///
/// Implementors provide the `run_*` methods, which may assume a valid geometry and buffers
/// of the lengths the geometry gives.
pub trait Pool: Memory {
    checked_ops! {
        /// Max pool; padding counts as -inf.
        fn max_pool2d(&self, g: &Pool2dGeom, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_max_pool2d {
            const OP: &str = "max_pool2d";
            g.validate(OP)?;
            check_len(OP, "x", g.input.numel(), self.len(x))?;
            check_len(OP, "y", g.output().numel(), self.len(y))?;
        }
        /// Backward of max pool: each `dy` goes to the first maximum of its window (PyTorch's
        /// tie rule), recomputed from `x`.
        fn max_pool2d_bwd(
            &self,
            g: &Pool2dGeom,
            x: &Self::Buf,
            dy: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_max_pool2d_bwd {
            const OP: &str = "max_pool2d_bwd";
            g.validate(OP)?;
            check_len(OP, "x", g.input.numel(), self.len(x))?;
            check_len(OP, "dy", g.output().numel(), self.len(dy))?;
            check_len(OP, "dx", g.input.numel(), self.len(dx))?;
        }
        /// Mean over each channel plane: `[n, c, h, w] -> [n, c]`.
        fn global_avg_pool(&self, s: &Nchw, x: &Self::Buf, y: &mut Self::Buf) -> Result<()> => run_global_avg_pool {
            check_len("global_avg_pool", "x", s.numel(), self.len(x))?;
            check_len("global_avg_pool", "y", s.n * s.c, self.len(y))?;
        }
        /// Backward of global average pool.
        fn global_avg_pool_bwd(
            &self,
            s: &Nchw,
            dy: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_global_avg_pool_bwd {
            check_len("global_avg_pool_bwd", "dy", s.n * s.c, self.len(dy))?;
            check_len("global_avg_pool_bwd", "dx", s.numel(), self.len(dx))?;
        }
        /// Nearest-neighbour 2x upsampling: `[n, c, h, w] -> [n, c, 2h, 2w]`.
        fn upsample_nearest2x(
            &self,
            s: &Nchw,
            x: &Self::Buf,
            y: &mut Self::Buf,
        ) -> Result<()> => run_upsample_nearest2x {
            check_len("upsample_nearest2x", "x", s.numel(), self.len(x))?;
            check_len("upsample_nearest2x", "y", 4 * s.numel(), self.len(y))?;
        }
        /// Backward of nearest 2x upsampling (sum of each 2x2 block).
        fn upsample_nearest2x_bwd(
            &self,
            s: &Nchw,
            dy: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_upsample_nearest2x_bwd {
            check_len("upsample_nearest2x_bwd", "dy", 4 * s.numel(), self.len(dy))?;
            check_len("upsample_nearest2x_bwd", "dx", s.numel(), self.len(dx))?;
        }
        /// The option-A shortcut of the CIFAR ResNets: `x[:, :, ::2, ::2]` (when `subsample`),
        /// then `pad` zero channels before and after, giving `c + 2 pad` channels
        /// ([`Nchw::shortcut_pad`] gives the output's shape).
        fn shortcut_pad(
            &self,
            s: &Nchw,
            subsample: bool,
            pad: usize,
            x: &Self::Buf,
            y: &mut Self::Buf,
        ) -> Result<()> => run_shortcut_pad {
            let out = s.shortcut_pad(subsample, pad);
            check_len("shortcut_pad", "x", s.numel(), self.len(x))?;
            check_len("shortcut_pad", "y", out.numel(), self.len(y))?;
        }
        /// Backward of [`Pool::shortcut_pad`].
        fn shortcut_pad_bwd(
            &self,
            s: &Nchw,
            subsample: bool,
            pad: usize,
            dy: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_shortcut_pad_bwd {
            let out = s.shortcut_pad(subsample, pad);
            check_len("shortcut_pad_bwd", "dy", out.numel(), self.len(dy))?;
            check_len("shortcut_pad_bwd", "dx", s.numel(), self.len(dx))?;
        }
    }
}
