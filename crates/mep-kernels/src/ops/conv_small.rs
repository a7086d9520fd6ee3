//! conv_small.cu: the input gradient of a conv with at most [`C_MAX`] input channels (a
//! stem's, or a transposed conv's forward to few channels), one thread per few dx pixels of
//! one stride phase, summing only the taps that reach the phase and land inside dy.

use super::conv::{ConvWork, TILE_THREADS};
use crate::backend::KernelBackend;
use crate::launcher::{Arg, Dims, Launcher};
use mep_tensor::{Conv2dGeom, Result};

/// Most input channels (the kernel's register tile is 4 pixels × c_in).
pub(crate) const C_MAX: usize = 4;
/// Weights the kernel stages per slice of c_out (`SMALL_W_SLICE`): one output channel's
/// taps of a phase for every input channel must fit.
const W_SLICE: usize = 4096;
/// Phase pixels of one block along x and along y (`32` columns × 8 warps × `SMALL_ROWS`).
const BLOCK_SIDE: usize = 32;
const KERNEL: &str = "conv2d_bwd_input_small_f32_v3";

/// Whether [`backward_input`] takes `g`: few input channels, one output channel's phase taps
/// fit the staged slice, and the grid fits CUDA's limits.
pub(crate) fn applies(g: &Conv2dGeom) -> bool {
    let s = g.stride;
    (1..=C_MAX).contains(&g.c_in)
        && g.c_in * g.kh.div_ceil(s) * g.kw.div_ceil(s) <= W_SLICE
        && g.n * s * s <= 65535
        && g.h.div_ceil(s).div_ceil(BLOCK_SIDE) <= 65535
}

/// `dx = conv2d_bwd_input(dy, w) + bias[c_in]`: `args` are conv.rs's geometry arguments
/// followed by dy, w, bias (or null) and dx, as for the v2 kernel.
pub(crate) fn backward_input<L: Launcher>(kb: &KernelBackend<L>, g: &Conv2dGeom, args: &[Arg]) -> Result<()> {
    let s = g.stride;
    let grid = Dims::xyz(
        g.w.div_ceil(s).div_ceil(BLOCK_SIDE) as u32,
        g.h.div_ceil(s).div_ceil(BLOCK_SIDE) as u32,
        (g.n * s * s) as u32,
    );
    kb.launch(KERNEL, grid, Dims::x(TILE_THREADS), args)
}

/// The work-model row of [`backward_input`] when it applies: the products it issues, counted
/// from dx's side (per input row, the kernel rows whose shifted position is a multiple of
/// the stride inside dy; the same for columns).
pub(crate) fn work(g: &Conv2dGeom, needed: f64) -> Option<ConvWork> {
    if !applies(g) {
        return None;
    }
    let reach = |size: usize, k: usize, out: usize| -> f64 {
        let mut hits = 0usize;
        for i in 0..size {
            for t in 0..k {
                let q = (i + g.pad).checked_sub(t);
                hits += q.is_some_and(|q| q % g.stride == 0 && q / g.stride < out) as usize;
            }
        }
        hits as f64
    };
    let issued = (g.n * g.c_in * g.c_out) as f64 * reach(g.h, g.kh, g.out_h()) * reach(g.w, g.kw, g.out_w());
    Some(ConvWork {
        kernel: KERNEL,
        issued,
        needed,
    })
}
