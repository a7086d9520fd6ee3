//! Convolutions and transposed convolutions, forward and backward.

use super::elementwise::check_act;
use super::memory::check_opt;
use super::{Act, Memory};
use crate::error::{check_len, Result};
use crate::shape::{Conv2dGeom, ConvT2dGeom};

/// 2-D convolutions on NCHW buffers, weights in PyTorch's layouts.
///
/// Implementors provide the `run_*` methods, which may assume a valid geometry
/// (`validate` passed), a valid activation and buffers of the lengths the geometry gives.
pub trait Conv: Memory {
    checked_ops! {
        /// `y = act(conv2d(x, w) + bias + residual)`, bias per output channel, residual of the
        /// output's shape; the fused epilogue of a folded conv+BN(+add)+ReLU.
        #[allow(clippy::too_many_arguments)]
        fn conv2d(
            &self,
            g: &Conv2dGeom,
            x: &Self::Buf,
            w: &Self::Buf,
            bias: Option<&Self::Buf>,
            residual: Option<&Self::Buf>,
            act: Act,
            y: &mut Self::Buf,
        ) -> Result<()> => run_conv2d {
            const OP: &str = "conv2d";
            g.validate(OP)?;
            check_act(OP, act)?;
            check_len(OP, "x", g.input().numel(), self.len(x))?;
            check_len(OP, "w", g.weight_len(), self.len(w))?;
            check_opt(self, OP, "bias", g.c_out, bias)?;
            check_opt(self, OP, "residual", g.output().numel(), residual)?;
            check_len(OP, "y", g.output().numel(), self.len(y))?;
        }
        /// Gradient of `conv2d` (no bias, no activation) with respect to its input.
        fn conv2d_bwd_input(
            &self,
            g: &Conv2dGeom,
            dy: &Self::Buf,
            w: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_conv2d_bwd_input {
            const OP: &str = "conv2d_bwd_input";
            g.validate(OP)?;
            check_len(OP, "dy", g.output().numel(), self.len(dy))?;
            check_len(OP, "w", g.weight_len(), self.len(w))?;
            check_len(OP, "dx", g.input().numel(), self.len(dx))?;
        }
        /// Gradients with respect to the weight and, when given, the bias (sum of `dy` per channel).
        fn conv2d_bwd_weight(
            &self,
            g: &Conv2dGeom,
            x: &Self::Buf,
            dy: &Self::Buf,
            dw: &mut Self::Buf,
            db: Option<&mut Self::Buf>,
        ) -> Result<()> => run_conv2d_bwd_weight {
            const OP: &str = "conv2d_bwd_weight";
            g.validate(OP)?;
            check_len(OP, "x", g.input().numel(), self.len(x))?;
            check_len(OP, "dy", g.output().numel(), self.len(dy))?;
            check_len(OP, "dw", g.weight_len(), self.len(dw))?;
            check_opt(self, OP, "db", g.c_out, db.as_deref())?;
        }
        /// `y = conv_transpose2d(x, w) + bias`.
        fn conv_transpose2d(
            &self,
            g: &ConvT2dGeom,
            x: &Self::Buf,
            w: &Self::Buf,
            bias: Option<&Self::Buf>,
            y: &mut Self::Buf,
        ) -> Result<()> => run_conv_transpose2d {
            const OP: &str = "conv_transpose2d";
            g.validate(OP)?;
            check_len(OP, "x", g.input().numel(), self.len(x))?;
            check_len(OP, "w", g.weight_len(), self.len(w))?;
            check_opt(self, OP, "bias", g.c_out, bias)?;
            check_len(OP, "y", g.output().numel(), self.len(y))?;
        }
        /// Gradient of `conv_transpose2d` with respect to its input.
        fn conv_transpose2d_bwd_input(
            &self,
            g: &ConvT2dGeom,
            dy: &Self::Buf,
            w: &Self::Buf,
            dx: &mut Self::Buf,
        ) -> Result<()> => run_conv_transpose2d_bwd_input {
            const OP: &str = "conv_transpose2d_bwd_input";
            g.validate(OP)?;
            check_len(OP, "dy", g.output().numel(), self.len(dy))?;
            check_len(OP, "w", g.weight_len(), self.len(w))?;
            check_len(OP, "dx", g.input().numel(), self.len(dx))?;
        }
        /// Gradients of `conv_transpose2d` with respect to its weight and, when given, bias.
        fn conv_transpose2d_bwd_weight(
            &self,
            g: &ConvT2dGeom,
            x: &Self::Buf,
            dy: &Self::Buf,
            dw: &mut Self::Buf,
            db: Option<&mut Self::Buf>,
        ) -> Result<()> => run_conv_transpose2d_bwd_weight {
            const OP: &str = "conv_transpose2d_bwd_weight";
            g.validate(OP)?;
            check_len(OP, "x", g.input().numel(), self.len(x))?;
            check_len(OP, "dy", g.output().numel(), self.len(dy))?;
            check_len(OP, "dw", g.weight_len(), self.len(dw))?;
            check_opt(self, OP, "db", g.c_out, db.as_deref())?;
        }
    }
}
