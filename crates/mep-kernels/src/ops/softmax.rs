//! softmax.cu.

use crate::backend::{blocks_for, i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::launch_per_element;
use mep_tensor::{Checked, Result, Softmax};

/// Targets (checked to be in `0..c`) as the kernels' `int`, on the device.
fn targets_on_device<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    c: usize,
    targets: &[usize],
) -> Result<std::sync::Arc<crate::pool::Block<L::Mem>>> {
    i32_of(op, "classes", c)?;
    kb.targets_on_device(targets)
}

impl<L: Launcher> Softmax for KernelBackend<L> {
    fn run_softmax_cross_entropy(
        &self,
        _: Checked,
        n: usize,
        c: usize,
        logits: &DevBuf<L::Mem>,
        targets: &[usize],
        probs: &mut DevBuf<L::Mem>,
        losses: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy";
        let t = targets_on_device(self, OP, c, targets)?;
        if n == 0 {
            return Ok(());
        }
        let args = [
            i64_of(n),
            i32_of(OP, "classes", c)?,
            self.ptr(logits),
            self.mem_ptr(&t),
            self.ptr(probs),
            self.ptr(losses),
        ];
        if self.fast() {
            // One block per row; 32 threads suffice for CIFAR's and ImageNet's class counts alike.
            let block = if c > 256 { 256 } else { 32 };
            self.launch("softmax_xent_f32_v2", Dims::x(blocks_for(n, 1)), Dims::x(block), &args)
        } else {
            launch_per_element(self, "softmax_xent_f32_v1", n, &args)
        }
    }

    fn run_softmax_cross_entropy_bwd(
        &self,
        _: Checked,
        n: usize,
        c: usize,
        probs: &DevBuf<L::Mem>,
        targets: &[usize],
        scale: f32,
        dlogits: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy_bwd";
        let t = targets_on_device(self, OP, c, targets)?;
        if n * c == 0 {
            return Ok(());
        }
        let args = [
            i64_of(n),
            i32_of(OP, "classes", c)?,
            self.ptr(probs),
            self.mem_ptr(&t),
            Arg::F32(scale),
            self.ptr(dlogits),
        ];
        launch_per_element(self, "softmax_xent_bwd_f32_v1", n * c, &args)
    }
}
