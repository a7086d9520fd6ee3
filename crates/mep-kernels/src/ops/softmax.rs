//! softmax.cu.

use crate::backend::{blocks_for, i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::pointwise::BLOCK;
use mep_tensor::cpu::check_targets;
use mep_tensor::{check_len, Result};

/// Targets as the kernels' `int`, on the device.
fn targets_on_device<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    n: usize,
    c: usize,
    targets: &[usize],
) -> Result<L::Mem> {
    check_targets(op, n, c, targets)?;
    i32_of(op, "classes", c)?;
    let bytes: Vec<u8> = targets.iter().flat_map(|&t| (t as i32).to_ne_bytes()).collect();
    kb.temp_bytes(&bytes)
}

pub(crate) fn softmax_cross_entropy<L: Launcher>(
    kb: &KernelBackend<L>,
    n: usize,
    c: usize,
    logits: &DevBuf<L::Mem>,
    targets: &[usize],
    probs: &mut DevBuf<L::Mem>,
    losses: &mut DevBuf<L::Mem>,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    let t = targets_on_device(kb, OP, n, c, targets)?;
    check_len(OP, "logits", n * c, logits.len)?;
    check_len(OP, "probs", n * c, probs.len)?;
    check_len(OP, "losses", n, losses.len)?;
    if n == 0 {
        return Ok(());
    }
    let args = [
        i64_of(n),
        i32_of(OP, "classes", c)?,
        kb.ptr(logits),
        kb.mem_ptr(&t),
        kb.ptr(probs),
        kb.ptr(losses),
    ];
    if kb.fast() {
        // One block per row; 32 threads suffice for CIFAR's and ImageNet's class counts alike.
        let block = if c > 256 { 256 } else { 32 };
        kb.launch("softmax_xent_f32_v2", Dims::x(blocks_for(n, 1)), Dims::x(block), &args)
    } else {
        kb.launch(
            "softmax_xent_f32_v1",
            Dims::x(blocks_for(n, BLOCK)),
            Dims::x(BLOCK),
            &args,
        )
    }
}

pub(crate) fn softmax_cross_entropy_bwd<L: Launcher>(
    kb: &KernelBackend<L>,
    n: usize,
    c: usize,
    probs: &DevBuf<L::Mem>,
    targets: &[usize],
    scale: f32,
    dlogits: &mut DevBuf<L::Mem>,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy_bwd";
    let t = targets_on_device(kb, OP, n, c, targets)?;
    check_len(OP, "probs", n * c, probs.len)?;
    check_len(OP, "dlogits", n * c, dlogits.len)?;
    if n * c == 0 {
        return Ok(());
    }
    let args = [
        i64_of(n),
        i32_of(OP, "classes", c)?,
        kb.ptr(probs),
        kb.mem_ptr(&t),
        Arg::F32(scale),
        kb.ptr(dlogits),
    ];
    kb.launch(
        "softmax_xent_bwd_f32_v1",
        Dims::x(blocks_for(n * c, BLOCK)),
        Dims::x(BLOCK),
        &args,
    )
}
