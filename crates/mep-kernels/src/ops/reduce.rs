//! reduce.cu: dot products and sums of squares into one f64 accumulator.

use crate::backend::{i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Launcher};
use crate::ops::elementwise::launch_n;
use mep_tensor::{Checked, Reduce, Result};

/// Runs reduction `base` into one f64 accumulator and reads it back.
fn reduce<L: Launcher>(kb: &KernelBackend<L>, base: &str, n: usize, bufs: &[Arg]) -> Result<f64> {
    let out = kb.temp_f64_zeros(1)?;
    let mut args = vec![i64_of(n)];
    args.extend_from_slice(bufs);
    args.push(kb.mem_ptr(&out));
    launch_n(kb, base, n, &args)?;
    Ok(kb.read_f64(&out, 1)?[0])
}

impl<L: Launcher> Reduce for KernelBackend<L> {
    fn run_dot(&self, _: Checked, x: &DevBuf<L::Mem>, y: &DevBuf<L::Mem>) -> Result<f64> {
        reduce(self, "dot_f32", x.len, &[self.ptr(x), self.ptr(y)])
    }
    fn run_norm(&self, _: Checked, x: &DevBuf<L::Mem>) -> Result<f64> {
        Ok(reduce(self, "sumsq_f32", x.len, &[self.ptr(x)])?.sqrt())
    }
}
