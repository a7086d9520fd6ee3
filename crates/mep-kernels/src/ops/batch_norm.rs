//! batch_norm.cu: batch norm, inference and training, forward and backward.
//!
//! v1 runs one thread per channel for the statistics and one per element for the maps; v2 a
//! grid of (channel, slice) blocks, its reductions in two launches through a scratch array of
//! per-slice partial sums (no atomics, so results do not depend on scheduling).

use crate::backend::{blocks_for, i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::elementwise::{act_args, BLOCK};
use crate::ops::{launch_per_element, opt_ptr, ptrs};
use mep_tensor::{Act, BatchNorm, Checked, Memory, Nchw, Result};

type B<L> = DevBuf<<L as Launcher>::Mem>;

/// Blocks the v2 kernels aim for over all channels: several per SM of an H200 (132 SMs), so
/// that the few channels of a CIFAR ResNet still fill the GPU.
const TARGET_BLOCKS: usize = 1024;
/// Most slices per channel: every block re-sums all of its channel's partials.
const MAX_SLICES: usize = 64;
/// Fewest values per thread of a slice, so that a slice's block is worth launching.
const MIN_PER_THREAD: usize = 8;

/// The launch of a v2 kernel: grid (c, slices), and blocks sized to the channel when it is
/// small (m = n·h·w values per channel), so that threads have work and few of them idle.
struct Split {
    grid: Dims,
    block: Dims,
    slices: u32,
}

fn split(op: &'static str, s: &Nchw) -> Result<Split> {
    i32_of(op, "channels", s.c)?;
    let m = s.n * s.hw();
    let block = (m.div_ceil(MIN_PER_THREAD).div_ceil(32) * 32).clamp(32, BLOCK as usize);
    let slices = TARGET_BLOCKS
        .div_ceil(s.c.max(1))
        .min(m / (MIN_PER_THREAD * block))
        .clamp(1, MAX_SLICES) as u32;
    Ok(Split {
        grid: Dims::xyz(s.c as u32, slices, 1),
        block: Dims::x(block as u32),
        slices,
    })
}

/// Scratch for the v2 partial sums: a pair of f64 per (channel, slice), i.e. four f32 slots
/// (contents unspecified; the kernels overwrite them).
fn partials<L: Launcher>(kb: &KernelBackend<L>, s: &Nchw, sp: &Split) -> Result<B<L>> {
    Memory::alloc(kb, 4 * s.c * sp.slices as usize)
}

/// `(n, c, hw)` as the kernels' leading arguments.
fn dims(s: &Nchw) -> [Arg; 3] {
    [i64_of(s.n), i64_of(s.c), i64_of(s.hw())]
}

/// One thread per channel of `s`: (grid, block), the block no larger than the channel count
/// needs (a few channels are the common case).
fn per_channel(s: &Nchw) -> (Dims, Dims) {
    let block = (s.c.div_ceil(32) * 32).clamp(32, BLOCK as usize) as u32;
    (Dims::x(blocks_for(s.c, block)), Dims::x(block))
}

impl<L: Launcher> BatchNorm for KernelBackend<L> {
    fn run_batch_norm_infer(
        &self,
        _: Checked,
        s: &Nchw,
        x: &B<L>,
        gamma: &B<L>,
        beta: &B<L>,
        mean: &B<L>,
        var: &B<L>,
        eps: f32,
        act: Act,
        y: &mut B<L>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_infer";
        if s.numel() == 0 {
            return Ok(());
        }
        let [code, slope] = act_args(act);
        let [n, c, hw] = dims(s);
        let bufs = ptrs(self, [x, gamma, beta, mean, var]);
        let tail = [Arg::F32(eps), code, slope, self.ptr(y)];
        if self.fast() {
            let sp = split(OP, s)?;
            let args = [&[n, c, hw, Arg::I32(sp.slices as i32)][..], &bufs, &tail].concat();
            self.launch("batch_norm_infer_f32_v2", sp.grid, sp.block, &args)
        } else {
            let args = [&[n, c, hw][..], &bufs, &tail].concat();
            launch_per_element(self, "batch_norm_infer_f32_v1", s.numel(), &args)
        }
    }

    fn run_batch_norm_infer_bwd(
        &self,
        _: Checked,
        s: &Nchw,
        x: &B<L>,
        dy: &B<L>,
        gamma: &B<L>,
        mean: &B<L>,
        var: &B<L>,
        eps: f32,
        dx: &mut B<L>,
        dgamma: Option<&mut B<L>>,
        dbeta: Option<&mut B<L>>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_infer_bwd";
        let params = dgamma.is_some() || dbeta.is_some();
        // With no values the parameter gradients are still written (as zeros).
        if s.c == 0 || (s.numel() == 0 && !params) {
            return Ok(());
        }
        let [n, c, hw] = dims(s);
        let (dg, db) = (opt_ptr(self, dgamma.as_deref()), opt_ptr(self, dbeta.as_deref()));
        if self.fast() {
            let sp = split(OP, s)?;
            let part = if params { Some(partials(self, s, &sp)?) } else { None };
            let part_ptr = opt_ptr(self, part.as_ref());
            let slices = Arg::I32(sp.slices as i32);
            let bufs = ptrs(self, [x, dy, gamma, mean, var]);
            let args = [&[n, c, hw, slices][..], &bufs, &[Arg::F32(eps), self.ptr(dx), part_ptr]].concat();
            self.launch("batch_norm_infer_bwd_f32_v2", sp.grid, sp.block, &args)?;
            if params {
                let args = [c, slices, part_ptr, self.ptr(var), Arg::F32(eps), dg, db];
                let (grid, block) = per_channel(s);
                self.launch("batch_norm_infer_params_f32_v2", grid, block, &args)?;
            }
        } else {
            if s.numel() > 0 {
                let bufs = ptrs(self, [dy, gamma, var]);
                let args = [&[n, c, hw][..], &bufs, &[Arg::F32(eps), self.ptr(dx)]].concat();
                launch_per_element(self, "batch_norm_infer_bwd_f32_v1", s.numel(), &args)?;
            }
            if params {
                let bufs = ptrs(self, [x, dy, mean, var]);
                let args = [&[n, c, hw][..], &bufs, &[Arg::F32(eps), dg, db]].concat();
                let (grid, block) = per_channel(s);
                self.launch("batch_norm_infer_params_f32_v1", grid, block, &args)?;
            }
        }
        Ok(())
    }

    fn run_batch_norm_train(
        &self,
        _: Checked,
        s: &Nchw,
        x: &B<L>,
        gamma: &B<L>,
        beta: &B<L>,
        running_mean: &mut B<L>,
        running_var: &mut B<L>,
        momentum: f32,
        eps: f32,
        act: Act,
        y: &mut B<L>,
        save_mean: &mut B<L>,
        save_invstd: &mut B<L>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train";
        if s.c == 0 {
            return Ok(());
        }
        let [code, slope] = act_args(act);
        let [n, c, hw] = dims(s);
        let (mom, eps) = (Arg::F32(momentum), Arg::F32(eps));
        if self.fast() {
            let sp = split(OP, s)?;
            let part = partials(self, s, &sp)?;
            let slices = Arg::I32(sp.slices as i32);
            let args = [n, c, hw, slices, self.ptr(x), self.ptr(&part)];
            self.launch("batch_norm_train_partial_f32_v2", sp.grid, sp.block, &args)?;
            let outs = ptrs(self, [running_mean, running_var, save_mean, save_invstd, y]);
            let ins = ptrs(self, [x, &part, gamma, beta]);
            let args = [&[n, c, hw, slices][..], &ins, &[mom, eps, code, slope], &outs].concat();
            self.launch("batch_norm_train_apply_f32_v2", sp.grid, sp.block, &args)
        } else {
            let scale = Memory::alloc(self, s.c)?;
            let outs = ptrs(self, [running_mean, running_var, save_mean, save_invstd, &scale]);
            let args = [&[n, c, hw][..], &ptrs(self, [x, gamma]), &[mom, eps], &outs].concat();
            let (grid, block) = per_channel(s);
            self.launch("batch_norm_train_stats_f32_v1", grid, block, &args)?;
            let bufs = ptrs(self, [x, save_mean, &scale, beta]);
            let args = [&[n, c, hw][..], &bufs, &[code, slope, self.ptr(y)]].concat();
            launch_per_element(self, "batch_norm_apply_f32_v1", s.numel(), &args)
        }
    }

    fn run_batch_norm_train_bwd(
        &self,
        _: Checked,
        s: &Nchw,
        x: &B<L>,
        dy: &B<L>,
        gamma: &B<L>,
        save_mean: &B<L>,
        save_invstd: &B<L>,
        dx: &mut B<L>,
        dgamma: &mut B<L>,
        dbeta: &mut B<L>,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train_bwd";
        if s.c == 0 {
            return Ok(());
        }
        let [n, c, hw] = dims(s);
        if self.fast() {
            let sp = split(OP, s)?;
            let part = partials(self, s, &sp)?;
            let slices = Arg::I32(sp.slices as i32);
            let args = [&[n, c, hw, slices][..], &ptrs(self, [x, dy, save_mean, &part])].concat();
            self.launch("batch_norm_grad_partial_f32_v2", sp.grid, sp.block, &args)?;
            let bufs = ptrs(self, [x, dy, gamma, save_mean, save_invstd, &part, dx, dgamma, dbeta]);
            let args = [&[n, c, hw, slices][..], &bufs].concat();
            self.launch("batch_norm_train_bwd_f32_v2", sp.grid, sp.block, &args)
        } else {
            let coef = Memory::alloc(self, 3 * s.c)?;
            let bufs = ptrs(self, [x, dy, gamma, save_mean, save_invstd, dgamma, dbeta, &coef]);
            let args = [&[n, c, hw][..], &bufs].concat();
            let (grid, block) = per_channel(s);
            self.launch("batch_norm_train_bwd_sums_f32_v1", grid, block, &args)?;
            if s.numel() == 0 {
                return Ok(());
            }
            let args = [&[n, c, hw][..], &ptrs(self, [x, dy, save_mean, &coef, dx])].concat();
            launch_per_element(self, "batch_norm_train_bwd_dx_f32_v1", s.numel(), &args)
        }
    }
}
