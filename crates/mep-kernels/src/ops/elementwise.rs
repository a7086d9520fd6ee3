//! elementwise.cu: activations, sums, `axpy`, scaling and fills, one thread per element
//! (v1) or grid-stride (v2).

use crate::backend::{blocks_for, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use mep_tensor::{Act, Checked, Elementwise, Result};

/// Threads per block of the pointwise kernels.
pub(crate) const BLOCK: u32 = 256;
/// Most blocks a grid-stride (v2) kernel gets: enough to fill an H200's 132 SMs several times.
pub(crate) const MAX_STRIDE_BLOCKS: u32 = 4096;

/// Launches pointwise kernel `base` (`<base>_v1` one thread per element, or `<base>_v2`
/// grid-stride) over `n` elements.
pub(crate) fn launch_n<L: Launcher>(kb: &KernelBackend<L>, base: &str, n: usize, args: &[Arg]) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let (name, grid) = if kb.fast() {
        (format!("{base}_v2"), blocks_for(n, BLOCK).min(MAX_STRIDE_BLOCKS))
    } else {
        (format!("{base}_v1"), blocks_for(n, BLOCK))
    };
    kb.launch(&name, Dims::x(grid), Dims::x(BLOCK), args)
}

/// `act` as the kernels' `(int act, float slope)` arguments: the one Rust copy of
/// common.cuh's `ActCode` (identity 0, relu 1, leaky relu 2, sigmoid 3).
///
/// ```
/// use mep_kernels::{act_args, Arg};
/// assert!(matches!(act_args(mep_tensor::Act::LeakyRelu(0.1)), [Arg::I32(2), Arg::F32(s)] if s == 0.1));
/// ```
pub fn act_args(act: Act) -> [Arg; 2] {
    let (code, slope) = match act {
        Act::Identity => (0, 0.0),
        Act::Relu => (1, 0.0),
        Act::LeakyRelu(s) => (2, s),
        Act::Sigmoid => (3, 0.0),
    };
    [Arg::I32(code), Arg::F32(slope)]
}

pub(crate) fn fill<L: Launcher>(kb: &KernelBackend<L>, y: &mut DevBuf<L::Mem>, value: f32) -> Result<()> {
    launch_n(kb, "fill_f32", y.len, &[i64_of(y.len), Arg::F32(value), kb.ptr(y)])
}

impl<L: Launcher> Elementwise for KernelBackend<L> {
    fn run_activation(&self, _: Checked, act: Act, x: &DevBuf<L::Mem>, y: &mut DevBuf<L::Mem>) -> Result<()> {
        let [code, slope] = act_args(act);
        launch_n(
            self,
            "act_fwd_f32",
            x.len,
            &[i64_of(x.len), code, slope, self.ptr(x), self.ptr(y)],
        )
    }
    fn run_activation_bwd(
        &self,
        _: Checked,
        act: Act,
        y: &DevBuf<L::Mem>,
        dy: &DevBuf<L::Mem>,
        dx: &mut DevBuf<L::Mem>,
    ) -> Result<()> {
        let [code, slope] = act_args(act);
        let args = [i64_of(y.len), code, slope, self.ptr(y), self.ptr(dy), self.ptr(dx)];
        launch_n(self, "act_bwd_f32", y.len, &args)
    }
    fn run_add(&self, _: Checked, a: &DevBuf<L::Mem>, b: &DevBuf<L::Mem>, y: &mut DevBuf<L::Mem>) -> Result<()> {
        launch_n(
            self,
            "add_f32",
            a.len,
            &[i64_of(a.len), self.ptr(a), self.ptr(b), self.ptr(y)],
        )
    }
    fn run_add_assign(&self, _: Checked, y: &mut DevBuf<L::Mem>, x: &DevBuf<L::Mem>) -> Result<()> {
        launch_n(
            self,
            "add_assign_f32",
            y.len,
            &[i64_of(y.len), self.ptr(y), self.ptr(x)],
        )
    }
    fn run_axpy(&self, _: Checked, alpha: f32, x: &DevBuf<L::Mem>, y: &mut DevBuf<L::Mem>) -> Result<()> {
        launch_n(
            self,
            "axpy_f32",
            x.len,
            &[i64_of(x.len), Arg::F32(alpha), self.ptr(x), self.ptr(y)],
        )
    }
    fn run_scale(&self, _: Checked, alpha: f32, x: &mut DevBuf<L::Mem>) -> Result<()> {
        launch_n(self, "scale_f32", x.len, &[i64_of(x.len), Arg::F32(alpha), self.ptr(x)])
    }
}
