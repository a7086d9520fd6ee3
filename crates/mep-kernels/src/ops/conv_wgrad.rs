//! conv_wgrad.cu: the fast weight gradient, one implicit GEMM per region of (output pixels,
//! taps) inside which every tap reads the input, so that no product with padding is issued.
//! The plan (regions, tile widths, splits) is computed here once and serves both the launches
//! and the work model ([`work`]). In TF32 or bf16 (the backend's precision) the same plan
//! runs the tensor-core kernels (v6, operands staged by cp.async, with the fast set; v5,
//! staged through registers, with the simple set), 64-wide tiles where fp32 uses 128×128
//! ones, and bf16 rounds dw once its sums are complete.

use super::conv::{ConvWork, SPLIT_MIN_SLICES as MIN_SLICES, SPLIT_TARGET_BLOCKS as TARGET_BLOCKS, TILE, TILE_THREADS};
use crate::backend::{i32_of, i64_of, DevBuf, KernelBackend};
use crate::launcher::{Arg, Dims, Launcher};
use crate::ops::launch_per_element;
use mep_tensor::precision::Precision;
use mep_tensor::{Conv2dGeom, Memory, Result, TensorError};

/// Depth of one K slice (`WG_K`).
const SLICE: usize = 16;
/// Prefer the tap classes (no zero fill, no cross-region sum) unless the pixel bands issue
/// at least this much less.
const BANDS_GAIN: f64 = 0.99;

/// The 64×64 kernel, the 64×32 one and the 128×128 one.
const KERNEL_64: &str = "conv2d_bwd_weight_f32_v3";
const KERNEL_32: &str = "conv2d_bwd_weight_n32_f32_v3";
const KERNEL_128: &str = "conv2d_bwd_weight_t128_f32_v4";
/// The tensor-core twins of [`KERNEL_64`] and [`KERNEL_32`] in a precision: v6 (operands
/// staged by cp.async) with the fast kernels, v5 (staged through registers) with the simple
/// set, so that tests run both.
fn tc_kernel(p: Precision, n32: bool, fast: bool) -> String {
    let v = if fast { 6 } else { 5 };
    format!("conv2d_bwd_weight{}_{p}_v{v}", if n32 { "_n32" } else { "" })
}
/// Tile side of [`KERNEL_128`].
const BIG: usize = 128;

/// One launch: output pixels `oy × ox` (half-open, every image) with the taps `ky × kx`, all
/// inside the input there; `tm × tn` tiles; `splits` K ranges of `chunk` into the partial
/// sums `slot..slot + splits`.
#[derive(Clone, Debug)]
struct Region {
    oy: (usize, usize),
    ox: (usize, usize),
    ky: (usize, usize),
    kx: (usize, usize),
    tm: usize,
    tn: usize,
    chunk: usize,
    splits: usize,
    slot: usize,
}

impl Region {
    fn cols(&self, g: &Conv2dGeom) -> usize {
        g.c_in * (self.ky.1 - self.ky.0) * (self.kx.1 - self.kx.0)
    }
    fn depth(&self, g: &Conv2dGeom) -> usize {
        g.n * (self.oy.1 - self.oy.0) * (self.ox.1 - self.ox.0)
    }
    fn tiles(&self, g: &Conv2dGeom) -> usize {
        g.c_out.div_ceil(self.tm) * self.cols(g).div_ceil(self.tn)
    }
    /// Multiply-adds the launch issues: whole tiles, whole slices of each split.
    fn issued(&self, g: &Conv2dGeom) -> f64 {
        let depth = self.depth(g);
        let k: usize = (0..self.splits)
            .map(|z| {
                let k0 = (z * self.chunk).min(depth);
                ((k0 + self.chunk).min(depth) - k0).div_ceil(SLICE) * SLICE
            })
            .sum();
        (g.c_out.div_ceil(self.tm) * self.tm) as f64 * (self.cols(g).div_ceil(self.tn) * self.tn) as f64 * k as f64
    }
}

/// The launches of one weight gradient: `slots` partial sums of dw's layout, zeroed first
/// when `fill` (some region leaves some columns of its slots unwritten).
#[derive(Debug)]
struct Plan {
    regions: Vec<Region>,
    slots: usize,
    fill: bool,
}

impl Plan {
    fn issued(&self, g: &Conv2dGeom) -> f64 {
        self.regions.iter().map(|r| r.issued(g)).sum()
    }
}

/// Per tap t of one dimension: the outputs `[lo, hi)` whose input index o·stride − pad + t
/// lies in `[0, size)`.
fn tap_spans(out: usize, k: usize, size: usize, stride: usize, pad: usize) -> Vec<(usize, usize)> {
    (0..k)
        .map(|t| {
            let lo = if pad > t { (pad - t).div_ceil(stride) } else { 0 };
            let hi = if size + pad > t {
                ((size - 1 + pad - t) / stride + 1).min(out)
            } else {
                0
            };
            (lo.min(hi), hi)
        })
        .collect()
}

/// Taps grouped by equal spans (consecutive, since both ends fall as t grows): `(taps, span)`.
fn tap_classes(spans: &[(usize, usize)]) -> Vec<((usize, usize), (usize, usize))> {
    let mut out: Vec<((usize, usize), (usize, usize))> = Vec::new();
    for (t, &s) in spans.iter().enumerate() {
        match out.last_mut() {
            Some((taps, span)) if *span == s => taps.1 = t + 1,
            _ => out.push(((t, t + 1), s)),
        }
    }
    out
}

/// Outputs grouped into bands with the same in-bounds taps (a range, as the spans are
/// monotone): `(band, taps)`, bands without taps left out.
fn pixel_bands(out: usize, spans: &[(usize, usize)]) -> Vec<((usize, usize), (usize, usize))> {
    let mut cuts: Vec<usize> = spans.iter().flat_map(|&(lo, hi)| [lo, hi]).chain([0, out]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .filter_map(|w| {
            let (b0, b1) = (w[0], w[1]);
            let inside = |&(lo, hi): &(usize, usize)| lo <= b0 && b1 <= hi;
            let first = spans.iter().position(inside)?;
            let last = spans.iter().rposition(inside)?;
            Some(((b0, b1), (first, last + 1)))
        })
        .collect()
}

/// `(tm, tn)`: the narrower tile when it pads N less, the bigger one when it pads no more.
fn tile_shape(rows: usize, cols: usize) -> (usize, usize) {
    let pad = |v: usize, t: usize| v.div_ceil(t) * t;
    if pad(cols, 32) < pad(cols, TILE) {
        (TILE, 32)
    } else if pad(rows, BIG) == pad(rows, TILE) && pad(cols, BIG) == pad(cols, TILE) {
        (BIG, BIG)
    } else {
        (TILE, TILE)
    }
}

/// Splits of a region's own depth, as many as fill [`TARGET_BLOCKS`] with `tiles`.
fn own_splits(depth: usize, tiles: usize) -> (usize, usize) {
    let slices = depth.div_ceil(SLICE);
    let want = TARGET_BLOCKS.div_ceil(tiles.max(1)).min(slices / MIN_SLICES).max(1);
    let chunk = slices.div_ceil(want).max(1) * SLICE;
    (chunk, depth.div_ceil(chunk).max(1))
}

fn region(oy: (usize, usize), ox: (usize, usize), ky: (usize, usize), kx: (usize, usize), g: &Conv2dGeom) -> Region {
    let (tm, tn) = tile_shape(g.c_out, g.c_in * (ky.1 - ky.0) * (kx.1 - kx.0));
    Region {
        oy,
        ox,
        ky,
        kx,
        tm,
        tn,
        chunk: SLICE,
        splits: 1,
        slot: 0,
    }
}

/// Tap classes: each dw column in exactly one region, so every region splits its depth into
/// the same `S` ranges and writes every one of slots 0..S (an empty range writes zeros).
fn tap_class_plan(g: &Conv2dGeom, ys: &[(usize, usize)], xs: &[(usize, usize)]) -> Plan {
    let mut regions = Vec::new();
    for &(ky, oy) in &tap_classes(ys) {
        for &(kx, ox) in &tap_classes(xs) {
            regions.push(region(oy, ox, ky, kx, g));
        }
    }
    let tiles: usize = regions.iter().map(|r| r.tiles(g)).sum();
    let most = regions.iter().map(|r| r.depth(g).div_ceil(SLICE)).max().unwrap_or(0);
    let s = TARGET_BLOCKS.div_ceil(tiles.max(1)).min(most / MIN_SLICES).max(1);
    for r in &mut regions {
        r.chunk = r.depth(g).div_ceil(SLICE).div_ceil(s).max(1) * SLICE;
        r.splits = s;
    }
    Plan {
        regions,
        slots: s,
        fill: false,
    }
}

/// Pixel bands: each output pixel in exactly one region with every tap that stays inside
/// the input there; a dw column sums over several regions, each with its own slots.
fn pixel_band_plan(g: &Conv2dGeom, ys: &[(usize, usize)], xs: &[(usize, usize)]) -> Plan {
    let mut regions = Vec::new();
    let mut slots = 0;
    for &(oy, ky) in &pixel_bands(g.out_h(), ys) {
        for &(ox, kx) in &pixel_bands(g.out_w(), xs) {
            let mut r = region(oy, ox, ky, kx, g);
            (r.chunk, r.splits) = own_splits(r.depth(g), r.tiles(g));
            r.slot = slots;
            slots += r.splits;
            regions.push(r);
        }
    }
    let all = regions.len() == 1 && regions[0].ky == (0, g.kh) && regions[0].kx == (0, g.kw);
    Plan {
        regions,
        slots: slots.max(1),
        fill: !all,
    }
}

/// The plan the backend runs for `g`: the one of the two that issues fewer products.
fn plan(g: &Conv2dGeom) -> Plan {
    let ys = tap_spans(g.out_h(), g.kh, g.h, g.stride, g.pad);
    let xs = tap_spans(g.out_w(), g.kw, g.w, g.stride, g.pad);
    let classes = tap_class_plan(g, &ys, &xs);
    let bands = pixel_band_plan(g, &ys, &xs);
    if bands.issued(g) < BANDS_GAIN * classes.issued(g) {
        bands
    } else {
        classes
    }
}

/// `dw = Σ dy · x-window` with the v3 kernels; `geom` is conv.rs's 11 geometry arguments.
pub(crate) fn backward_weight<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    g: &Conv2dGeom,
    geom: &[Arg],
    x: &DevBuf<L::Mem>,
    dy: &DevBuf<L::Mem>,
    dw: &mut DevBuf<L::Mem>,
) -> Result<()> {
    let p = plan(g);
    let wl = g.weight_len();
    let mut part = if p.slots > 1 {
        Some(kb.alloc(p.slots * wl)?)
    } else {
        None
    };
    if p.fill {
        crate::ops::elementwise::fill(kb, part.as_mut().unwrap_or(dw), 0.0)?;
    }
    let prec = kb.precision();
    for r in &p.regions {
        // The tensor-core kernels have no 128×128 tile: a region planned with one runs 64×64.
        let (tm, tn) = match prec {
            Precision::Fp32 => (r.tm, r.tn),
            _ => (r.tm.min(TILE), r.tn.min(TILE)),
        };
        let (cols, tiles_m) = (r.cols(g), g.c_out.div_ceil(tm));
        if tiles_m > 65535 || r.splits > 65535 {
            return Err(TensorError::Invalid {
                op,
                msg: format!(
                    "a weight gradient with c_out = {} needs more tiles than a CUDA grid holds",
                    g.c_out
                ),
            });
        }
        let grid = Dims::xyz(cols.div_ceil(tn).max(1) as u32, tiles_m as u32, r.splits as u32);
        let mut args = geom.to_vec();
        for (what, v) in [
            ("region oy0", r.oy.0),
            ("region oy1", r.oy.1),
            ("region ox0", r.ox.0),
            ("region ox1", r.ox.1),
            ("region ky0", r.ky.0),
            ("region ky1", r.ky.1),
            ("region kx0", r.kx.0),
            ("region kx1", r.kx.1),
            ("split depth", r.chunk),
        ] {
            args.push(i32_of(op, what, v)?);
        }
        let out = match &part {
            Some(p) => kb.ptr_at(p, r.slot * wl),
            None => kb.ptr(dw),
        };
        args.extend([kb.ptr(x), kb.ptr(dy), out]);
        let kernel = match (prec, r.tm, r.tn) {
            (Precision::Fp32, BIG, _) => KERNEL_128.to_string(),
            (Precision::Fp32, _, 32) => KERNEL_32.to_string(),
            (Precision::Fp32, _, _) => KERNEL_64.to_string(),
            (p, _, tn) => tc_kernel(p, tn == 32, kb.fast()),
        };
        kb.launch(&kernel, grid, Dims::x(TILE_THREADS), &args)?;
    }
    if let Some(part) = part {
        sum_slots(kb, op, wl, p.slots, &part, dw)?;
    }
    if prec == Precision::Bf16 {
        let args = [i64_of(wl), kb.ptr(dw)];
        launch_per_element(kb, "conv2d_bwd_weight_round_bf16_v5", wl, &args)?;
    }
    Ok(())
}

/// dw = the `slots` partial sums of `part`, added in slot order: deterministic, unlike atomics.
fn sum_slots<L: Launcher>(
    kb: &KernelBackend<L>,
    op: &'static str,
    wl: usize,
    slots: usize,
    part: &DevBuf<L::Mem>,
    dw: &mut DevBuf<L::Mem>,
) -> Result<()> {
    let args = [i64_of(wl), i32_of(op, "partial sums", slots)?, kb.ptr(part), kb.ptr(dw)];
    launch_per_element(kb, "conv2d_bwd_weight_sum_f32_v2", wl, &args)
}

/// The work-model row of the fast weight gradient: the kernels [`backward_weight`] launches
/// for `g` and the products they issue, summed over its launches.
pub(crate) fn work(g: &Conv2dGeom, needed: f64) -> ConvWork {
    let p = plan(g);
    let uses = |tm: usize, tn: usize| p.regions.iter().any(|r| (r.tm, r.tn) == (tm, tn));
    let kernel = match (uses(BIG, BIG), uses(TILE, TILE), uses(TILE, 32)) {
        (true, false, false) => KERNEL_128,
        (true, true, false) => "conv2d_bwd_weight_t128_f32_v4+v3",
        (true, _, true) => "conv2d_bwd_weight_t128_f32_v4+v3+n32",
        (false, true, true) => "conv2d_bwd_weight_f32_v3+n32",
        (false, false, true) => KERNEL_32,
        _ => KERNEL_64,
    };
    ConvWork {
        kernel,
        issued: p.issued(g),
        needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_bands_and_classes_of_a_stem_row() {
        // 7 taps, stride 2, pad 3 over 224 inputs: 112 outputs.
        let s = tap_spans(112, 7, 224, 2, 3);
        assert_eq!(s[0], (2, 112));
        assert_eq!(s[3], (0, 112));
        assert_eq!(s[6], (0, 111));
        let c = tap_classes(&s);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], ((1, 3), (1, 112)));
        let b = pixel_bands(112, &s);
        assert_eq!(
            b,
            vec![
                ((0, 1), (3, 7)),
                ((1, 2), (1, 7)),
                ((2, 111), (0, 7)),
                ((111, 112), (0, 5))
            ]
        );
    }

    #[test]
    fn a_kernel_larger_than_the_input_leaves_taps_without_pixels() {
        // 3 taps, pad 1, over 2 inputs at stride 1: 2 outputs; tap 0 misses output 0, tap 2 output 1.
        let s = tap_spans(2, 3, 2, 1, 1);
        assert_eq!(s, vec![(1, 2), (0, 2), (0, 1)]);
        // 2 taps, stride 3, no padding over 1 input: tap 1 never reads it.
        assert_eq!(tap_spans(1, 2, 1, 3, 0), vec![(0, 1), (0, 0)]);
    }

    /// The conformance suite's shapes (run in emulation) reach every path of the plans:
    /// tap classes and pixel bands, each with one and with several splits, zero fill,
    /// every tile shape, a region without pixels.
    #[test]
    fn the_conformance_shapes_cover_every_plan() {
        use crate::conformance::conv::{conv_geom, CONVS, GRADS};
        let plans: Vec<(Conv2dGeom, Plan)> = CONVS
            .iter()
            .chain(&GRADS)
            .map(|&t| {
                let g = conv_geom(t);
                (g, plan(&g))
            })
            .collect();
        let bands = |p: &Plan| p.regions.iter().any(|r| r.slot > 0) || p.fill;
        let tiles = |tm, tn| {
            plans
                .iter()
                .any(|(_, p)| p.regions.iter().any(|r| (r.tm, r.tn) == (tm, tn)))
        };
        let covered = [
            (
                "tap classes, one split",
                plans.iter().any(|(_, p)| !bands(p) && p.slots == 1),
            ),
            (
                "tap classes, splits",
                plans
                    .iter()
                    .any(|(_, p)| !bands(p) && p.slots > 1 && p.regions.len() > 1),
            ),
            (
                "pixel bands",
                plans.iter().any(|(_, p)| bands(p) && p.regions.len() > 1),
            ),
            (
                "a pixel band split",
                plans
                    .iter()
                    .any(|(_, p)| bands(p) && p.regions.iter().any(|r| r.splits > 1)),
            ),
            ("64×32 tiles", tiles(TILE, 32)),
            ("64×64 tiles", tiles(TILE, TILE)),
            ("128×128 tiles", tiles(BIG, BIG)),
            (
                "a region without pixels",
                plans.iter().any(|(g, p)| p.regions.iter().any(|r| r.depth(g) == 0)),
            ),
        ];
        for (what, ok) in covered {
            assert!(ok, "no conformance shape reaches {what}: {plans:#?}");
        }
    }
}
