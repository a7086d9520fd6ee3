//! The weight gradient of a 3×3 convolution with few channels, without im2col or GEMM.
//!
//! `dW[o,i,ky,kx] = Σ_{n,oy,ox} dY[n,o,oy,ox] · Xpad[n,i,oy·s+ky,ox·s+kx]`. For ResNet-20's
//! layers the GEMM path writes 9 copies of the input (im2col) and runs GEMMs whose inner
//! dimension is one image's pixels but whose other two are only 16–64. Here the reduction
//! over pixels is the vector dimension instead: each output pixel `p = oy·ow + ox` of the
//! plane (a flat index, so that an 8×8 plane still fills 16 lanes) goes to lane `p mod 16`,
//! and a register block of `CB` output channels × the 3 taps of a kernel row accumulates
//! 16-lane partial sums.
//!
//! **Order of every sum.** Lane `l` of `dW[o,i,ky,kx]` is one chain of fused multiply-adds
//! over the images in order and, within an image, over the pixels `p ≡ l (mod 16)` in
//! increasing order; the 16 lanes are then added in a fixed tree ([`reduce16`]). The images
//! are split into at most 16 groups by the batch size alone, each with its own lanes, and
//! the groups' sums are added in group order. Nothing in that depends on the ISA (AVX-512
//! holds the 16 lanes in one register, AVX2 and the portable build walk them as two groups
//! of 8, which is the same chains in a different interleaving), on the thread count (a
//! thread computes whole groups) or on how a group is cut into chunks and tiles for the
//! caches (a lane's running sum is stored between them and continued, not restarted), so
//! every ISA and every thread count gives the same bits.

use super::Isa;
use crate::cpu::conv::add_in_order;
use crate::cpu::gemm::Workspace;
use crate::shape::Conv2dGeom;
use rayon::prelude::*;
use std::ops::Range;

/// The partial sums kept per `dW` element, the same on every ISA (see the module docs).
const LANES: usize = 16;

/// Images per chunk are sized so that a chunk's shifted input copy and its `dY` stay within
/// about this many bytes, i.e. in a core's L2, while every unit walks over them.
const CHUNK_BYTES: usize = 1 << 20;

/// The most image groups (see [`conv2d_bwd_weight_direct_isa`]); a fixed number, so that
/// the sums do not depend on the thread count, and enough for 16 threads.
const GROUPS: usize = 16;

/// A tile of the kernel's loop (see [`unit`]) reads about this many bytes, half of a 32 KiB
/// L1, which leaves room for the lane state and the next tile's prefetches.
const TILE_BYTES: usize = 16 << 10;

/// The largest channel counts sent here: with more channels the GEMM path's operands are
/// large enough for its micro-kernel, and the per-unit state here grows as `c_in · c_out`.
const MAX_CHANNELS: usize = 64;

/// Whether [`conv2d_bwd_weight_direct`] computes this geometry: 3×3 kernels, stride 1 or 2,
/// padding up to 2, at most 64 input and output channels, a multiple of 4 output channels.
///
/// This path and the GEMM path round differently, so a caller must choose between them by
/// the geometry alone (never by the ISA or the thread count), or the same training run would
/// give different bits on AVX2 and AVX-512 machines.
pub fn supports(g: &Conv2dGeom) -> bool {
    g.kh == 3
        && g.kw == 3
        && (g.stride == 1 || g.stride == 2)
        && g.pad <= 2
        && g.h + 2 * g.pad >= 3
        && g.w + 2 * g.pad >= 3
        && (1..=MAX_CHANNELS).contains(&g.c_in)
        && (4..=MAX_CHANNELS).contains(&g.c_out)
        && g.c_out.is_multiple_of(4)
        && g.n > 0
}

/// `dW` (`[c_out, c_in, 3, 3]`, overwritten) of a convolution from its input `x`
/// (`[n, c_in, h, w]`) and output gradient `dy` (`[n, c_out, out_h, out_w]`), with the ISA
/// of [`Isa::current`]. Returns `false`, leaving `dw` untouched, when the geometry is not one
/// that [`supports`] accepts or a buffer's length does not match it, so that the caller can
/// take the GEMM path. The bias gradient is not computed here.
pub fn conv2d_bwd_weight_direct(ws: &Workspace, g: &Conv2dGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    conv2d_bwd_weight_direct_isa(Isa::current(), ws, g, x, dy, dw)
}

/// [`conv2d_bwd_weight_direct`] with a given ISA (for tests and benchmarks), which must be one
/// of [`Isa::available`] (else `false`). Every ISA gives the same bits.
pub fn conv2d_bwd_weight_direct_isa(
    isa: Isa,
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) -> bool {
    with_copy(isa, InputCopy::for_geometry(g), ws, g, x, dy, dw)
}

/// How the input is copied for the kernel. Both give the kernel the same values in the same
/// order (the same bits); version 2 only copies less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputCopy {
    /// Version 1, any geometry: per (image, channel) three copies of the padded input, one
    /// per `kx`, whose columns are `ox·s + kx` ([`shift_input`]).
    Shifted,
    /// Version 2, stride 1 with rows of whole 16-pixel chunks (ResNet-20's 32×32 and 16×16
    /// stride-1 layers): one zero-padded plane per (image, channel) ([`pad_input`]); tap
    /// `kx` is the same row read `kx` floats further on. A third of version 1's copying,
    /// which took about a sixth of the weight gradient's time on AVX2.
    Padded,
}

impl InputCopy {
    fn for_geometry(g: &Conv2dGeom) -> InputCopy {
        if g.stride == 1 && g.out_w().is_multiple_of(LANES) {
            InputCopy::Padded
        } else {
            InputCopy::Shifted
        }
    }
}

/// Floats before a padded row's first input column in version 2's planes: the row's data
/// start 32-byte aligned, with room for up to 2 columns of padding before them.
const LEFT: usize = 8;

/// [`conv2d_bwd_weight_direct_isa`] with the given input copy (`Padded` only where
/// [`InputCopy::for_geometry`] picks it).
fn with_copy(isa: Isa, copy: InputCopy, ws: &Workspace, g: &Conv2dGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) -> bool {
    if !supports(g)
        || x.len() != g.input().numel()
        || dy.len() != g.output().numel()
        || dw.len() != g.weight_len()
        || !Isa::available().contains(&isa)
    {
        return false;
    }
    let p = Plan::new(g, isa, copy);
    let units = g.c_out / p.cb * g.c_in;
    let unit_len = p.cb * 9 * LANES;
    let wl = g.weight_len();
    // The images are cut into at most GROUPS groups by the batch size alone; a thread takes a
    // whole group (shifting, packing and every unit of it), so that its data stays in its
    // core's caches and no barrier separates the steps. Each group's lanes are reduced to a
    // partial dW and the partials are added in group order.
    let per_group = g.n.div_ceil(GROUPS);
    let groups = g.n.div_ceil(per_group);
    let per = p.images_per_chunk(g).min(per_group);
    let mut partials = ws.take(groups * wl);
    partials.par_chunks_mut(wl).enumerate().for_each(|(gi, part)| {
        let group = gi * per_group..g.n.min((gi + 1) * per_group);
        // Not zeroed: a unit's first call starts its lanes at zero instead of loading them,
        // and its last call reduces them into `part` while they are in cache (zeroing and
        // re-reading a 64×64 layer's 2.4 MB of lanes per group cost as much as its kernels).
        let (mut lanes, mut xs, mut dyp) = (
            ws.take(units * unit_len + ALIGN),
            ws.take(per * g.c_in * p.x_ci + ALIGN),
            ws.take(per * g.c_out * p.chunks * LANES + ALIGN),
        );
        let (lanes, xs, dyp) = (aligned(&mut lanes), aligned(&mut xs), aligned(&mut dyp));
        let mut start = group.start;
        while start < group.end {
            let imgs = start..group.end.min(start + per);
            let (fresh, last) = (start == group.start, imgs.end == group.end);
            let xs = &mut xs[..imgs.len() * g.c_in * p.x_ci];
            match p.copy {
                InputCopy::Shifted => shift_input(g, &p, x, imgs.clone(), xs),
                InputCopy::Padded => pad_input(g, &p, x, imgs.clone(), xs),
            }
            let dyp = &mut dyp[..imgs.len() * g.c_out * p.chunks * LANES];
            pack_dy(g, &p, dy, imgs.start, dyp);
            for (u, st) in lanes[..units * unit_len].chunks_exact_mut(unit_len).enumerate() {
                let (co0, ci) = (u / g.c_in * p.cb, u % g.c_in);
                let a = Args {
                    p: &p,
                    g,
                    co0,
                    ci,
                    imgs: imgs.clone(),
                    fresh,
                    xs,
                    dyp,
                };
                run_unit(isa, &a, st);
                if last {
                    for c in 0..p.cb {
                        let taps = &mut part[((co0 + c) * g.c_in + ci) * 9..][..9];
                        for (t, d) in taps.iter_mut().enumerate() {
                            *d = reduce16(st[(c * 9 + t) * LANES..][..LANES].try_into().expect("16 lanes"));
                        }
                    }
                }
            }
            start = imgs.end;
        }
    });
    let (first, rest) = partials.split_at(wl);
    dw.copy_from_slice(first);
    add_in_order(dw, &rest.chunks_exact(wl).collect::<Vec<_>>());
    true
}

/// Floats of slack a buffer needs for [`aligned`].
const ALIGN: usize = 16;

/// `s` from its first 64-byte boundary on (`ALIGN` floats shorter at most): the allocator
/// gives 16-byte alignment, and then most vector loads of the kernel straddle two cache
/// lines, which halves what L1 delivers.
fn aligned(s: &mut [f32]) -> &mut [f32] {
    let off = s.as_ptr().align_offset(64).min(ALIGN);
    &mut s[off..]
}

/// The 16 lanes of one `dW` element added in a fixed tree (halves, then quarters, …), the
/// same on every ISA.
fn reduce16(l: &[f32; LANES]) -> f32 {
    let mut v = *l;
    let mut half = LANES / 2;
    while half > 0 {
        for i in 0..half {
            v[i] += v[i + half];
        }
        half /= 2;
    }
    v[0]
}

/// The sizes derived from a geometry that the kernel and the input copy share.
struct Plan {
    /// Output channels per register block.
    cb: usize,
    /// Output pixels per image plane, the 16-pixel chunks they make, and pixels per row.
    ohw: usize,
    chunks: usize,
    ow: usize,
    /// Rows of one stride class (`r mod s`) in the shifted copy.
    rpc: usize,
    /// Floats of the shifted copy for one (image, input channel, kx).
    blk: usize,
    copy: InputCopy,
    /// Floats of the copy per (image, input channel), every tap's reads inside them.
    x_ci: usize,
    /// Floats between the reads of taps `kx` and `kx + 1`.
    kstep: usize,
    /// Floats per row of a version-2 plane.
    ls: usize,
    /// Where each 16-pixel chunk of the output plane starts in the copy, from a tap row's
    /// start ([`Plan::row_offset`]).
    xoff: Vec<usize>,
}

impl Plan {
    fn new(g: &Conv2dGeom, isa: Isa, copy: InputCopy) -> Plan {
        let (oh, ow) = (g.out_h(), g.out_w());
        let rpc = (g.h + 2 * g.pad).div_ceil(g.stride);
        let chunks = (oh * ow).div_ceil(LANES);
        let blk = g.stride * rpc * ow;
        // Version 2: a row holds LEFT floats, the input row and at least LEFT more, so that
        // the taps' reads (up to `pad` columns either side) stay inside it.
        let ls = g.w + 2 * LEFT;
        let (x_ci, kstep, xoff) = match copy {
            InputCopy::Shifted => (3 * blk, blk, (0..chunks).map(|c| c * LANES).collect()),
            InputCopy::Padded => {
                let per_row = ow / LANES;
                let xoff = (0..chunks).map(|c| c / per_row * ls + c % per_row * LANES).collect();
                ((g.h + 2 * g.pad) * ls, 1, xoff)
            }
        };
        // AVX-512 has the 32 registers for 8 channels × 3 taps of accumulators.
        let cb = if isa == Isa::Avx512 && g.c_out.is_multiple_of(8) {
            8
        } else {
            4
        };
        Plan {
            cb,
            ohw: oh * ow,
            chunks,
            ow,
            rpc,
            blk,
            copy,
            x_ci,
            kstep,
            ls,
            xoff,
        }
    }

    fn images_per_chunk(&self, g: &Conv2dGeom) -> usize {
        let bytes = 4 * (g.c_out * self.chunks * LANES + g.c_in * self.x_ci);
        (CHUNK_BYTES / bytes.max(1)).clamp(1, g.n)
    }

    /// Where tap row `ky`'s reads start in a (image, channel) block of the copy. Version 1:
    /// in its kx blocks, padded row `oy·s + ky` is row `oy + ky / s` of stride class
    /// `ky mod s`. Version 2: padded row `oy + ky`, its column 0 being `LEFT − pad` in.
    fn row_offset(&self, ky: usize, g: &Conv2dGeom) -> usize {
        match self.copy {
            InputCopy::Shifted => ((ky % g.stride) * self.rpc + ky / g.stride) * self.ow,
            InputCopy::Padded => ky * self.ls + LEFT - g.pad,
        }
    }
}

/// Copies images `imgs` of `x` into `xs` as, per (image, input channel, kx), the padded
/// input's columns `ox·s + kx` for every padded row, rows grouped by their class mod `s`.
/// Then tap `(ky, kx)` of all output pixels, in the flat order `oy·ow + ox`, is one
/// contiguous run of `xs`, so the kernel's loads are plain vector loads and padding is
/// zeros rather than branches; it costs 3 copies of the input where im2col makes 9.
fn shift_input(g: &Conv2dGeom, p: &Plan, x: &[f32], imgs: Range<usize>, xs: &mut [f32]) {
    let (h, w, s, pad, ow) = (g.h, g.w, g.stride, g.pad, p.ow);
    let wp = w + 2 * pad;
    let first = imgs.start * g.c_in;
    // One padded row, and for stride 2 its even and odd columns, from which every kx is a
    // plain copy (kx = 2 is the even columns from the second on) instead of a strided gather
    // per kx.
    let (prow, even, odd) = &mut (vec![0.0f32; wp], vec![0.0f32; wp.div_ceil(2)], vec![0.0f32; wp / 2]);
    xs.chunks_mut(p.x_ci).enumerate().for_each(|(j, dst)| {
        let plane = &x[(first + j) * h * w..][..h * w];
        for r in 0..s * p.rpc {
            // Row `r` of each kx block is padded row `k·s + class`.
            let (class, k) = (r / p.rpc, r % p.rpc);
            let pr = k * s + class;
            let rows = dst.chunks_exact_mut(p.blk).map(|block| &mut block[r * ow..][..ow]);
            if pr < pad || pr >= h + pad {
                rows.for_each(|row| row.fill(0.0));
                continue;
            }
            copy_short(&mut prow[pad..pad + w], &plane[(pr - pad) * w..][..w]);
            if s == 1 {
                for (kx, row) in rows.enumerate() {
                    copy_short(row, &prow[kx..kx + ow]);
                }
            } else {
                for (pair, (e, o)) in prow.chunks_exact(2).zip(even.iter_mut().zip(odd.iter_mut())) {
                    (*e, *o) = (pair[0], pair[1]);
                }
                if wp % 2 == 1 {
                    even[wp / 2] = prow[wp - 1];
                }
                for (kx, row) in rows.enumerate() {
                    let src = if kx % 2 == 0 { &even[kx / 2..] } else { &odd[..] };
                    copy_short(row, &src[..ow]);
                }
            }
        }
    });
}

/// Version 2 of the input copy: images `imgs` of `x` into `xs` as one zero-padded plane per
/// (image, input channel), `h + 2·pad` rows of [`Plan::ls`] floats, input row `iy` in row
/// `iy + pad` from float [`LEFT`] on. Only the floats the taps read are written: the padding
/// columns beside each row and the padding rows.
fn pad_input(g: &Conv2dGeom, p: &Plan, x: &[f32], imgs: Range<usize>, xs: &mut [f32]) {
    let (h, w, pad, ls) = (g.h, g.w, g.pad, p.ls);
    let first = imgs.start * g.c_in;
    xs.chunks_mut(p.x_ci).enumerate().for_each(|(j, dst)| {
        let plane = &x[(first + j) * h * w..][..h * w];
        for (r, row) in dst.chunks_exact_mut(ls).enumerate() {
            let read = &mut row[LEFT - pad..LEFT + w + pad];
            if r < pad || r >= h + pad {
                read.fill(0.0);
                continue;
            }
            read[..pad].fill(0.0);
            read[pad + w..].fill(0.0);
            copy_short(&mut read[pad..pad + w], &plane[(r - pad) * w..][..w]);
        }
    });
}

/// `dst.copy_from_slice(src)` in inlined blocks of 8: the rows copied here are 8 to 64
/// floats, for which a memcpy call per row costs more than the copying.
#[inline]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    let mut d = dst.chunks_exact_mut(8);
    for (d, s) in (&mut d).zip(src.chunks_exact(8)) {
        if let (Ok(d), Ok(s)) = (<&mut [f32; 8]>::try_from(d), <&[f32; 8]>::try_from(s)) {
            *d = *s;
        }
    }
    let done = src.len() / 8 * 8;
    for (d, s) in d.into_remainder().iter_mut().zip(&src[done..]) {
        *d = *s;
    }
}

/// Copies `dy` of images `first..` into `dyp` as, per (image, block of `cb` output
/// channels), `[chunk][channel][16]` with zeros past the plane. The kernel then reads one
/// stream instead of `cb` planes whose distance (4 KiB for a 32×32 plane) maps them all
/// to the same L1 sets.
fn pack_dy(g: &Conv2dGeom, p: &Plan, dy: &[f32], first: usize, dyp: &mut [f32]) {
    let (ncb, ohw) = (g.c_out / p.cb, p.ohw);
    dyp.chunks_mut(p.cb * p.chunks * LANES)
        .enumerate()
        .for_each(|(j, dst)| {
            let (n, co0) = (first + j / ncb, j % ncb * p.cb);
            for c in 0..p.cb {
                let src = &dy[(n * g.c_out + co0 + c) * ohw..][..ohw];
                let mut parts = dst.chunks_exact_mut(LANES).skip(c).step_by(p.cb);
                // Whole chunks as fixed 64-byte copies (inlined, where a copy of a run-time
                // length is a memcpy call), then the partial one padded with zeros.
                let whole = src.chunks_exact(LANES);
                let rest = whole.remainder();
                // `whole` first: zip advances its left side before it sees the right one end.
                for (v, d) in whole.zip(&mut parts) {
                    d.copy_from_slice(v);
                }
                if let Some(d) = parts.next() {
                    d[..rest.len()].copy_from_slice(rest);
                    d[rest.len()..].fill(0.0);
                }
            }
        });
}

/// Runs one unit (see [`Args`]) under the ISA's target features, continuing the lanes in
/// `st` (`[cb][ky][kx][16]`). The dispatch is per unit because a rayon closure would not
/// inherit target features.
fn run_unit(isa: Isa, a: &Args<'_>, st: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if isa == Isa::Avx512 {
        // SAFETY: the caller checked that `isa` is in `Isa::available()`, which detected avx512f.
        unsafe { unit_avx512(a, st) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: the caller checked that `isa` is in `Isa::available()`, which detected avx2 and fma.
        unsafe { unit_avx2(a, st) };
        return;
    }
    let _ = isa;
    unit::<4, 8>(a, st);
}

/// One unit of work: output channels `co0..co0 + cb` against input channel `ci`, over
/// images `imgs` (whose shifted copies are `xs` and packed gradients `dyp`); `fresh` when
/// these are the first images of the group, so that the lanes start at zero.
struct Args<'a> {
    p: &'a Plan,
    g: &'a Conv2dGeom,
    co0: usize,
    ci: usize,
    imgs: Range<usize>,
    fresh: bool,
    xs: &'a [f32],
    dyp: &'a [f32],
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
#[target_feature(enable = "avx512f")]
unsafe fn unit_avx512(a: &Args<'_>, st: &mut [f32]) {
    if a.p.cb == 8 {
        unit::<8, 16>(a, st)
    } else {
        unit::<4, 16>(a, st)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unit_avx2(a: &Args<'_>, st: &mut [f32]) {
    // 4 channels × 3 taps × 8 lanes is 12 of AVX2's 16 registers, leaving the 3 input
    // vectors and one dY vector; 16 lanes at once would spill.
    unit::<4, 8>(a, st)
}

/// The kernel, written once and compiled per ISA: `CB` output channels, `W` lanes at a time
/// (the 16 lanes in `16 / W` passes; a lane's chain is the same whatever `W` is).
///
/// The registers hold one kernel row's accumulators, so the 3 rows (and on AVX2 the 2 lane
/// groups) are separate passes. They pass over tiles whose `dY` and shifted input fit in L1
/// (several images for small planes, a run of chunks of one image for large ones), else
/// each pass streams the chunk from L2, which limited AVX2 (half the channels per pass,
/// twice the passes) to about 3/4 of the tiled speed. A tile continues each lane where the
/// previous one stopped, so the tiling changes no sum.
#[inline(always)]
fn unit<const CB: usize, const W: usize>(a: &Args<'_>, st: &mut [f32]) {
    let p = a.p;
    debug_assert_eq!(st.len(), CB * 9 * LANES);
    debug_assert_eq!(p.cb, CB);
    let per_chunk = (CB + 3) * LANES * std::mem::size_of::<f32>();
    let ct = (TILE_BYTES / per_chunk).max(1);
    let nimg = a.imgs.len();
    let mut fresh = a.fresh;
    if p.chunks >= ct {
        for nl in 0..nimg {
            let mut c0 = 0;
            while c0 < p.chunks {
                let c1 = p.chunks.min(c0 + ct);
                tile::<CB, W>(a, st, nl..nl + 1, c0..c1, fresh);
                (c0, fresh) = (c1, false);
            }
        }
    } else {
        let ti = ct / p.chunks;
        let mut n0 = 0;
        while n0 < nimg {
            let n1 = nimg.min(n0 + ti);
            tile::<CB, W>(a, st, n0..n1, 0..p.chunks, fresh);
            (n0, fresh) = (n1, false);
        }
    }
}

/// Chunks `cs` of the images `ims` (indices into the unit's image chunk) for every tap,
/// starting the lanes at zero if `fresh`, else where `st` left them.
#[inline(always)]
fn tile<const CB: usize, const W: usize>(
    a: &Args<'_>,
    st: &mut [f32],
    ims: Range<usize>,
    cs: Range<usize>,
    fresh: bool,
) {
    let (p, g) = (a.p, a.g);
    let ohw = p.ohw;
    let full = ohw / LANES;
    let rem = ohw % LANES;
    let whole = cs.start..cs.end.min(full);
    let partial = cs.end > full && rem > 0;
    // Images are `x_img` floats apart in `xs` and `d_img` in `dyp`; this unit's blocks start
    // `x0` and `d0` into each. Every tap's reads of whole chunks lie inside the unit's
    // `x_ci` floats (version 1: tap row `ky` of kx block 2 reads up to `row_off + ohw <= blk`
    // past its start; version 2: the last chunk's tap (2, 2) reads up to float
    // `(oh + 1)·ls + LEFT − pad + ow + 1 < (h + 2·pad)·ls`, as `ow = w + 2·pad − 2` and
    // `pad ≤ 2`), so every read of the tile lies below the bounds checked here once,
    // which lets the loop over images compute offsets instead of slicing (whose checks cost
    // as much as the 4 chunks of an 8×8 plane).
    let (x_img, d_img) = (g.c_in * p.x_ci, g.c_out * p.chunks * LANES);
    let (x0, d0) = (a.ci * p.x_ci, a.co0 * p.chunks * LANES);
    assert!(
        !ims.is_empty()
            && (ims.end - 1) * x_img + x0 + p.x_ci <= a.xs.len()
            && (ims.end - 1) * d_img + d0 + p.chunks * CB * LANES <= a.dyp.len(),
        "wgrad tile {ims:?} outside the shifted input ({}) or packed dY ({})",
        a.xs.len(),
        a.dyp.len()
    );
    for ky in 0..3 {
        let row_off = p.row_offset(ky, g);
        for lg in 0..LANES / W {
            let mut acc = [[[0.0f32; W]; 3]; CB];
            for (c, ac) in acc.iter_mut().enumerate().filter(|_| !fresh) {
                for (kx, ak) in ac.iter_mut().enumerate() {
                    ak.copy_from_slice(&st[((c * 3 + ky) * 3 + kx) * LANES + lg * W..][..W]);
                }
            }
            for nl in ims.clone() {
                let xb = nl * x_img + x0 + row_off;
                let db = nl * d_img + d0;
                for (chunk, &xo) in whole.clone().zip(&p.xoff[whole.clone()]) {
                    let at = xo + lg * W;
                    // SAFETY: the chunk is a whole one, whose reads lie inside its (image,
                    // channel) block of the copy ([`Plan::x_ci`]), so within the bounds
                    // asserted above.
                    let xv: [[f32; W]; 3] = std::array::from_fn(|k| unsafe { load::<W>(a.xs, xb + k * p.kstep + at) });
                    for (c, ac) in acc.iter_mut().enumerate() {
                        // SAFETY: chunk < chunks, so within the bounds asserted above.
                        let d = unsafe { load::<W>(a.dyp, db + (chunk * CB + c) * LANES + lg * W) };
                        fma_taps(ac, &d, &xv);
                    }
                }
                if partial && rem > lg * W {
                    // The last, partial chunk: lanes past the plane multiply zeros (dY is packed
                    // with them), so that no input outside this tap (possibly non-finite)
                    // enters the sum.
                    let at = full * LANES + lg * W;
                    let valid = (rem - lg * W).min(W);
                    let part = |s: &[f32]| {
                        let mut v = [0.0f32; W];
                        v[..valid].copy_from_slice(&s[at..at + valid]);
                        v
                    };
                    // Only version 1 has partial chunks (version 2 needs rows of whole chunks).
                    debug_assert_eq!(p.copy, InputCopy::Shifted);
                    let xv: [[f32; W]; 3] = std::array::from_fn(|k| part(&a.xs[xb + k * p.kstep..]));
                    for (c, ac) in acc.iter_mut().enumerate() {
                        let d: [f32; W] = a.dyp[db + (full * CB + c) * LANES + lg * W..][..W]
                            .try_into()
                            .expect("W lanes");
                        fma_taps(ac, &d, &xv);
                    }
                }
            }
            for (c, ac) in acc.iter().enumerate() {
                for (kx, ak) in ac.iter().enumerate() {
                    st[((c * 3 + ky) * 3 + kx) * LANES + lg * W..][..W].copy_from_slice(ak);
                }
            }
        }
    }
}

/// One step of each lane's chain for the 3 taps of a kernel row: `acc[kx] += d · x[kx]`,
/// fused, so that the FMA instructions and the portable `mul_add` round alike.
#[inline(always)]
fn fma_taps<const W: usize>(acc: &mut [[f32; W]; 3], d: &[f32; W], x: &[[f32; W]; 3]) {
    for (ak, xk) in acc.iter_mut().zip(x) {
        for ((a, &dl), &xl) in ak.iter_mut().zip(d).zip(xk) {
            *a = dl.mul_add(xl, *a);
        }
    }
}

/// `W` floats of `s` from `at`, without a bounds check.
///
/// # Safety
/// `at + W <= s.len()`.
#[inline(always)]
unsafe fn load<const W: usize>(s: &[f32], at: usize) -> [f32; W] {
    debug_assert!(at + W <= s.len());
    // SAFETY: in bounds by the caller's contract; `[f32; W]` has no alignment beyond f32's
    // but read_unaligned does not need even that.
    unsafe { std::ptr::read_unaligned(s.as_ptr().add(at) as *const [f32; W]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data as filled;
    use crate::cpu::reference::conv as r;

    fn geom(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, stride: usize, pad: usize) -> Conv2dGeom {
        let input = crate::shape::Nchw { n, c: c_in, h, w };
        Conv2dGeom::square("wgrad test", input, c_out, 3, stride, pad).expect("a valid geometry")
    }

    /// ResNet-20's weight-gradient shapes at small batches, and odd planes whose pixel
    /// count is not a multiple of 16 (partial chunks), stride 2 on odd sizes, no padding, and
    /// the kernel's tilings.
    fn geoms() -> Vec<Conv2dGeom> {
        vec![
            geom(1, 16, 32, 32, 16, 1, 1),
            geom(3, 16, 32, 32, 32, 2, 1),
            geom(3, 32, 16, 16, 32, 1, 1),
            geom(1, 32, 16, 16, 64, 2, 1),
            geom(3, 64, 8, 8, 64, 1, 1),
            geom(3, 3, 7, 5, 4, 1, 1),
            geom(1, 5, 7, 5, 8, 2, 1),
            geom(3, 2, 9, 11, 12, 2, 1),
            geom(2, 3, 6, 7, 8, 1, 0),
            geom(2, 3, 7, 6, 4, 2, 2),
            geom(1, 1, 1, 1, 4, 1, 1),
            // Planes cut into several tiles with a partial chunk in the last, and images
            // grouped into several tiles.
            geom(2, 4, 31, 29, 8, 1, 1),
            geom(12, 2, 8, 8, 4, 1, 1),
            // More images than one image chunk holds (the lanes continue across chunks).
            geom(5, 16, 32, 32, 16, 1, 1),
            // Version 2 of the input copy without padding and with 2 columns of it.
            geom(2, 3, 18, 18, 4, 1, 0),
            geom(3, 5, 14, 30, 8, 1, 2),
        ]
    }

    #[test]
    fn both_input_copies_give_the_same_bits() {
        let ws = Workspace::default();
        let padded: Vec<_> = geoms()
            .into_iter()
            .filter(|g| InputCopy::for_geometry(g) == InputCopy::Padded)
            .collect();
        assert!(padded.len() >= 5, "{padded:?}");
        for g in padded {
            let x = filled(g.input().numel(), 5);
            let dy = filled(g.output().numel(), 6);
            for isa in Isa::available() {
                let run = |copy: InputCopy| {
                    let mut dw = vec![0.0f32; g.weight_len()];
                    assert!(with_copy(isa, copy, &ws, &g, &x, &dy, &mut dw));
                    dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert!(
                    run(InputCopy::Padded) == run(InputCopy::Shifted),
                    "{g:?} on {isa:?}: the two input copies differ"
                );
            }
        }
    }

    #[test]
    fn matches_the_f64_reference_within_the_rounding_of_its_sums() {
        let ws = Workspace::default();
        for g in geoms() {
            assert!(supports(&g), "{g:?}");
            let x = filled(g.input().numel(), 1);
            let dy = filled(g.output().numel(), 2);
            let mut dw = vec![f32::NAN; g.weight_len()];
            assert!(conv2d_bwd_weight_direct(&ws, &g, &x, &dy, &mut dw));
            let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
            let abs = |v: &[f32]| v.iter().map(|&a| a.abs() as f64).collect::<Vec<_>>();
            let want = r::conv2d_bwd_weight(&g, &f64s(&x), &f64s(&dy));
            let mag = r::conv2d_bwd_weight(&g, &abs(&x), &abs(&dy));
            // Each lane rounds once per term of its chain, the tree 4 more times, the sum over
            // the image groups once per group: at most n·chunks + 4 roundings in all.
            let chain = g.n * (g.out_h() * g.out_w()).div_ceil(LANES);
            let eps = f32::EPSILON as f64 / 2.0;
            for (i, ((&got, &w), &m)) in dw.iter().zip(&want).zip(&mag).enumerate() {
                let tol = (chain + 4) as f64 * eps * m + 1e-30;
                assert!((got as f64 - w).abs() <= tol, "{g:?} dw[{i}] = {got}, want {w} ± {tol}");
            }
        }
    }

    #[test]
    fn same_bits_on_every_isa_and_thread_count() {
        let ws = Workspace::default();
        for g in geoms() {
            let x = filled(g.input().numel(), 3);
            let dy = filled(g.output().numel(), 4);
            let run = |isa: Isa, threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a rayon pool");
                let mut dw = vec![0.0f32; g.weight_len()];
                assert!(pool.install(|| conv2d_bwd_weight_direct_isa(isa, &ws, &g, &x, &dy, &mut dw)));
                dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let want = run(Isa::Portable, 1);
            for isa in Isa::available() {
                for threads in [1, 2, 3] {
                    assert!(
                        run(isa, threads) == want,
                        "{g:?}: {isa:?} with {threads} threads differs"
                    );
                }
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_compute() {
        let ws = Workspace::default();
        let mut dw = vec![7.0f32; 2 * 4 * 9];
        for g in [
            Conv2dGeom {
                kh: 1,
                kw: 1,
                ..geom(1, 4, 8, 8, 4, 1, 0)
            },
            geom(1, 4, 8, 8, 6, 1, 1),
            geom(1, 4, 8, 8, 4, 3, 1),
            geom(1, 128, 8, 8, 4, 1, 1),
        ] {
            assert!(!supports(&g));
            let (x, dy) = (vec![0.0; g.input().numel()], vec![0.0; g.output().numel()]);
            assert!(!conv2d_bwd_weight_direct(&ws, &g, &x, &dy, &mut dw));
        }
        // A supported geometry with a wrong buffer length is declined, not a panic.
        let g = geom(1, 2, 8, 8, 4, 1, 1);
        assert!(!conv2d_bwd_weight_direct(
            &ws,
            &g,
            &[0.0; 3],
            &vec![0.0; g.output().numel()],
            &mut dw[..72]
        ));
        assert!(dw.iter().all(|&v| v == 7.0));
    }
}
