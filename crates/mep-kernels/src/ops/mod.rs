//! The host side of each kernel family, one `impl <Family> for KernelBackend` per file
//! (kernels/<family>.cu): the version, the grid and the arguments. Argument checks are the
//! family traits' (mep-tensor), written once for every backend; only the kernels' own limits
//! (an extent that must fit an `int`, a grid dimension) are checked here.

pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod conv_region;
pub(crate) mod conv_small;
pub(crate) mod conv_wgrad;
pub(crate) mod elementwise;
pub(crate) mod linear;
pub(crate) mod neb;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod softmax;

use crate::backend::{blocks_for, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use elementwise::BLOCK;
use mep_tensor::Result;

/// Launches `kernel` with one thread for each of `n` elements, in blocks of [`BLOCK`] threads:
/// the grid of the simple (v1) kernels and of the v2 ones that keep it.
pub(crate) fn launch_per_element<L: Launcher>(
    kb: &KernelBackend<L>,
    kernel: &str,
    n: usize,
    args: &[Arg],
) -> Result<()> {
    kb.launch(kernel, Dims::x(blocks_for(n, BLOCK)), Dims::x(BLOCK), args)
}

/// The device addresses of `bufs`, in order.
pub(crate) fn ptrs<L: Launcher, const N: usize>(kb: &KernelBackend<L>, bufs: [&DevBuf<L::Mem>; N]) -> [Arg; N] {
    bufs.map(|b| kb.ptr(b))
}

/// The device address of an optional buffer; null when absent.
pub(crate) fn opt_ptr<L: Launcher>(kb: &KernelBackend<L>, b: Option<&DevBuf<L::Mem>>) -> Arg {
    b.map_or(Arg::Ptr(0), |b| kb.ptr(b))
}
