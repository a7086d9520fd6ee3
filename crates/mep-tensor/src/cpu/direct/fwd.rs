//! Direct 3×3 convolutions (padding 1, stride 1 or 2): the forward with its fused epilogue,
//! and the input gradient (stride 1 as a forward with the flipped, transposed weight, stride
//! 2 split into the four parity phases of `dx`).
//!
//! Each parallel unit (an image and a run of output-channel blocks) copies its image into a
//! zero-padded plane per channel whose rows are padded to whole 8-lane groups (for stride 2
//! each padded row is split into its even and odd columns, so a stride-2 tap reads a
//! contiguous run again); the copy stays in cache for the unit's blocks. A register tile is
//! `CO_B` output channels × 16 output pixels, the 16 pixels being two groups of 8 that are
//! either one run of a row (rows of 16 and more) or two rows (8-pixel rows). Every tap of
//! every input channel is then one (or two) unaligned loads and `CO_B` broadcast FMAs.
//!
//! Each output element is `acc = 0; for ci { for ky { for kx { acc = fma(w, x, acc) } } }`
//! (for the stride-2 input gradient: `for co { for the phase's taps in (ky, kx) order }`),
//! then the epilogue of [`conv`](crate::cpu::conv): the tile shape, the ISA and the thread
//! that computes it only decide which elements are computed together, never the order of a
//! sum, so every [`Isa`] and thread count gives the same bits. Padding taps are kept (they
//! multiply zeros, as the im2col columns of the GEMM path do).

use super::Isa;
use crate::backend::Act;
use crate::cpu::conv::epilogue;
use crate::cpu::gemm::{SharedMut, Workspace};
use crate::shape::Conv2dGeom;
use rayon::prelude::*;

/// Lanes of a tile: two groups of 8 output pixels.
const LANES: usize = 16;
/// Pixels of a group: rows are padded to whole groups.
const GROUP: usize = 8;

/// The vector operations the kernels are written in, on 16 lanes.
///
/// # Safety
/// Every method may only run where the CPU has the type's ISA; pointers must be valid for
/// the floats read.
trait Simd {
    type V: Copy;
    unsafe fn zero() -> Self::V;
    /// All lanes `*p`.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// Lanes 0..8 from `lo`, 8..16 from `hi`.
    unsafe fn load2(lo: *const f32, hi: *const f32) -> Self::V;
    /// Lanes 0..16 from `p`.
    unsafe fn load(p: *const f32) -> Self::V;
    /// `a·b + c`, rounded once.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn store(v: Self::V, out: &mut [f32; LANES]);
}

/// Plain Rust: `f32::mul_add` rounds once, as the FMA instructions do.
struct Portable;

impl Simd for Portable {
    type V = [f32; LANES];
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; LANES]
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self::V {
        [*p; LANES]
    }
    #[inline(always)]
    unsafe fn load2(lo: *const f32, hi: *const f32) -> Self::V {
        let mut v = [0.0; LANES];
        v[..GROUP].copy_from_slice(std::slice::from_raw_parts(lo, GROUP));
        v[GROUP..].copy_from_slice(std::slice::from_raw_parts(hi, GROUP));
        v
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        *(p as *const [f32; LANES])
    }
    #[inline(always)]
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    #[inline(always)]
    unsafe fn store(v: Self::V, out: &mut [f32; LANES]) {
        *out = v;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Simd, GROUP, LANES};
    use std::arch::x86_64::*;

    /// Two ymm registers per 16 lanes.
    pub(super) struct Avx2;

    impl Simd for Avx2 {
        type V = [__m256; 2];
        #[inline(always)]
        unsafe fn zero() -> Self::V {
            [_mm256_setzero_ps(); 2]
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self::V {
            let v = _mm256_broadcast_ss(&*p);
            [v, v]
        }
        #[inline(always)]
        unsafe fn load2(lo: *const f32, hi: *const f32) -> Self::V {
            [_mm256_loadu_ps(lo), _mm256_loadu_ps(hi)]
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self::V {
            [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(GROUP))]
        }
        #[inline(always)]
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
            [_mm256_fmadd_ps(a[0], b[0], c[0]), _mm256_fmadd_ps(a[1], b[1], c[1])]
        }
        #[inline(always)]
        unsafe fn store(v: Self::V, out: &mut [f32; LANES]) {
            _mm256_storeu_ps(out.as_mut_ptr(), v[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(GROUP), v[1]);
        }
    }

    /// One zmm register per 16 lanes.
    #[cfg(feature = "avx512")]
    pub(super) struct Avx512;

    #[cfg(feature = "avx512")]
    impl Simd for Avx512 {
        type V = __m512;
        #[inline(always)]
        unsafe fn zero() -> Self::V {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self::V {
            _mm512_set1_ps(*p)
        }
        #[inline(always)]
        unsafe fn load2(lo: *const f32, hi: *const f32) -> Self::V {
            let lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(lo)));
            let hi = _mm256_castps_pd(_mm256_loadu_ps(hi));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self::V {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn store(v: Self::V, out: &mut [f32; LANES]) {
            _mm512_storeu_ps(out.as_mut_ptr(), v);
        }
    }
}

/// One block of output channels of one image over a grid of output pixels: everything a
/// tile needs, as raw pointers into buffers that outlive the call.
#[derive(Clone, Copy)]
struct Block<const NT: usize> {
    /// The padded input of the image.
    src: *const f32,
    /// Floats between the padded planes of consecutive input channels.
    ci_stride: usize,
    c_in: usize,
    /// The source offset of each tap, in the order of the sum.
    taps: [usize; NT],
    /// Packed weights `[c_in][NT][CO_B]` of this block.
    w: *const f32,
    /// Source floats between consecutive grid rows (grid columns are one float apart).
    src_row: usize,
    /// The output grid computed.
    rows: usize,
    cols: usize,
    /// The output of the block's first channel, floats between channels, between grid rows
    /// and between grid columns.
    dst: *mut f32,
    co_stride: usize,
    dst_row: usize,
    dst_col: usize,
    /// Channels of the block that exist (the packed weights are zero past them).
    co_valid: usize,
}

/// The sums of one tile: lanes 0..8 read the source from `off0`, lanes 8..16 from `off1`
/// (`off0 + 8` when `!SPLIT`).
#[inline(always)]
unsafe fn tile<S: Simd, const CO_B: usize, const NT: usize, const SPLIT: bool>(
    b: &Block<NT>,
    off0: usize,
    off1: usize,
) -> [S::V; CO_B] {
    let mut acc = [S::zero(); CO_B];
    for ci in 0..b.c_in {
        let base = b.src.add(ci * b.ci_stride);
        let wci = b.w.add(ci * NT * CO_B);
        for (t, &tap) in b.taps.iter().enumerate() {
            let p = base.add(tap);
            let x = if SPLIT {
                S::load2(p.add(off0), p.add(off1))
            } else {
                S::load(p.add(off0))
            };
            let wt = wci.add(t * CO_B);
            for (c, a) in acc.iter_mut().enumerate() {
                *a = S::fma(S::splat(wt.add(c)), x, *a);
            }
        }
    }
    acc
}

/// Computes the block's grid, tile by tile: groups of 8 pixels in row-major order, two per
/// tile (the second absent, and its lanes wasted, when the count is odd).
#[inline(always)]
unsafe fn run_block<S: Simd, const CO_B: usize, const NT: usize>(b: &Block<NT>) {
    let per_row = b.cols.div_ceil(GROUP);
    let groups = b.rows * per_row;
    let at = |gi: usize| (gi / per_row, (gi % per_row) * GROUP);
    let mut out = [[0.0f32; LANES]; CO_B];
    for t in 0..groups.div_ceil(2) {
        let (r0, c0) = at(2 * t);
        let second = (2 * t + 1 < groups).then(|| at(2 * t + 1));
        let (r1, c1) = second.unwrap_or((r0, c0));
        let off0 = r0 * b.src_row + c0;
        let off1 = r1 * b.src_row + c1;
        let acc = if off1 == off0 + GROUP {
            tile::<S, CO_B, NT, false>(b, off0, off1)
        } else {
            tile::<S, CO_B, NT, true>(b, off0, off1)
        };
        // All sums leave the registers first: scattering straight from them made LLVM spill
        // the 16 accumulators of the AVX-512 tile inside the FMA loop.
        for (o, v) in out.iter_mut().zip(acc) {
            S::store(v, o);
        }
        let n0 = GROUP.min(b.cols - c0);
        let n1 = if second.is_some() { GROUP.min(b.cols - c1) } else { 0 };
        for (c, o) in out.iter().enumerate().take(b.co_valid) {
            let dst = b.dst.add(c * b.co_stride);
            for (lanes, (r, col, n)) in [(0, (r0, c0, n0)), (GROUP, (r1, c1, n1))] {
                let d = dst.add(r * b.dst_row + col * b.dst_col);
                if b.dst_col == 1 {
                    std::ptr::copy_nonoverlapping(o[lanes..].as_ptr(), d, n);
                } else {
                    for (i, &val) in o[lanes..lanes + n].iter().enumerate() {
                        *d.add(i * b.dst_col) = val;
                    }
                }
            }
        }
    }
}

/// The output channels per block for `n` output channels on `isa`: as many accumulators as
/// its registers hold beside the loaded pixels (AVX2 needs two registers per 16 lanes), fewer
/// where that wastes less on a partial block (the stem's 3-channel input gradient).
fn co_block(isa: Isa, n: usize) -> usize {
    match isa {
        Isa::Avx512 => [16, 8, 4].into_iter().min_by_key(|&b| n.div_ceil(b) * b).unwrap_or(16),
        Isa::Avx2 | Isa::Portable => 4,
    }
}

/// Runs `b` with the kernels of `isa` and blocks of `cob` channels ([`co_block`], which
/// the weights were packed for).
fn run<const NT: usize>(isa: Isa, cob: usize, b: &Block<NT>) {
    // Only AVX-512 has several block sizes; builds without it ignore `cob`.
    let _ = cob;
    // SAFETY: `isa` is available (Isa::available / current), and the callers built `b`
    // inside the buffers it points into.
    unsafe {
        match isa {
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Isa::Avx512 => match cob {
                16 => run_avx512::<16, NT>(b),
                8 => run_avx512::<8, NT>(b),
                _ => run_avx512::<4, NT>(b),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => run_avx2(b),
            _ => run_block::<Portable, 4, NT>(b),
        }
    }
}

#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<const CO_B: usize, const NT: usize>(b: &Block<NT>) {
    run_block::<x86::Avx512, CO_B, NT>(b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<const NT: usize>(b: &Block<NT>) {
    run_block::<x86::Avx2, 4, NT>(b)
}

/// The ISAs this build can run that `isa` may name: a lowered one when the build lacks it.
fn effective(isa: Isa) -> Isa {
    match isa {
        #[cfg(not(all(target_arch = "x86_64", feature = "avx512")))]
        Isa::Avx512 => effective(Isa::Avx2),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => Isa::Portable,
        other => other,
    }
}

/// Row length of a padded (sub-)row: the grid's columns in whole groups, plus the taps' reach.
fn padded_row(cols: usize, reach: usize) -> usize {
    cols.next_multiple_of(GROUP) + reach
}

/// `y = act(conv2d(x, w) + bias + residual)` directly, for a shape [`supports`](super::supports) accepts,
/// with the kernels of `isa` (any available one: the bits are the same).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    ws: &Workspace,
    isa: Isa,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    let isa = effective(isa);
    let (s, ci, co) = (g.stride, g.c_in, g.c_out);
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    // Stride 2 splits each padded row into `s` sub-rows of even and odd columns.
    let l = padded_row(ow, 2);
    let (row, hp) = (s * l, g.h + 2);
    let plane = hp * row;
    // Padded per unit, in a scratch that stays in cache for the unit's blocks, rather than
    // for the whole batch up front (which doubled the memory traffic of 16-channel layers).
    let pad_image = |img: usize, dst: &mut [f32]| {
        for (c, dst) in dst.chunks_exact_mut(plane).enumerate() {
            dst.fill(0.0);
            let src = &x[(img * ci + c) * hw..][..hw];
            for (iy, src_row) in src.chunks_exact(g.w).enumerate() {
                let drow = &mut dst[(iy + 1) * row..][..row];
                if s == 1 {
                    drow[1..1 + g.w].copy_from_slice(src_row);
                } else {
                    // Padded column `ix + 1` goes to sub-row `(ix + 1) % 2`, position `(ix + 1) / 2`.
                    for (c, &v) in (1..).zip(src_row) {
                        drow[(c % 2) * l + c / 2] = v;
                    }
                }
            }
        }
    };
    let cob = co_block(isa, co);
    let blocks = co.div_ceil(cob);
    let mut wp = ws.take(blocks * ci * 9 * cob);
    wp.par_chunks_mut(ci * 9 * cob).enumerate().for_each(|(bi, dst)| {
        for i in 0..ci {
            for t in 0..9 {
                for c in 0..cob {
                    let o = bi * cob + c;
                    dst[(i * 9 + t) * cob + c] = if o < co { w[(o * ci + i) * 9 + t] } else { 0.0 };
                }
            }
        }
    });
    let taps: [usize; 9] = std::array::from_fn(|t| {
        let (ky, kx) = (t / 3, t % 3);
        ky * row + (kx % s) * l + kx / s
    });
    let wp = &wp[..];
    let ohw = oh * ow;
    let yp = SharedMut(y.as_mut_ptr());
    let (chunks, per) = unit_split(g.n, blocks);
    (0..g.n * chunks).into_par_iter().for_each(|u| {
        let (img, chunk) = (u / chunks, u % chunks);
        let mut padded = ws.take(ci * plane);
        pad_image(img, &mut padded);
        for bi in chunk * per..blocks.min((chunk + 1) * per) {
            let o0 = bi * cob;
            let co_valid = cob.min(co - o0);
            let y0 = (img * co + o0) * ohw;
            let b = Block {
                src: padded.as_ptr(),
                ci_stride: plane,
                c_in: ci,
                taps,
                w: wp[bi * ci * 9 * cob..].as_ptr(),
                src_row: s * row,
                rows: oh,
                cols: ow,
                dst: yp.get().wrapping_add(y0),
                co_stride: ohw,
                dst_row: ow,
                dst_col: 1,
                co_valid,
            };
            run(isa, cob, &b);
            if bias.is_some() || residual.is_some() || act != Act::Identity {
                for c in 0..co_valid {
                    let start = y0 + c * ohw;
                    // SAFETY: the planes of channels `o0..o0 + co_valid` of image `img` belong to
                    // this unit alone.
                    let plane = unsafe { std::slice::from_raw_parts_mut(yp.get().add(start), ohw) };
                    epilogue(
                        plane,
                        bias.map(|b| b[o0 + c]),
                        residual.map(|r| &r[start..start + ohw]),
                        act,
                    );
                }
            }
        }
    });
}

/// How the blocks of each image are grouped into parallel units: `(groups per image, blocks
/// per group)`. One group per image when the batch alone gives every thread a few units
/// (each group pads its own copy of the image); it only decides who computes an output.
fn unit_split(n: usize, blocks: usize) -> (usize, usize) {
    let want = (4 * rayon::current_num_threads())
        .div_ceil(n.max(1))
        .clamp(1, blocks.max(1));
    let per = blocks.max(1).div_ceil(want);
    (blocks.max(1).div_ceil(per), per)
}

/// The input gradient of a 3×3, stride-2, padding-1 convolution directly.
///
/// `dx[ci, 2m + py, 2n + px]` only receives the taps `(ky, kx)` with `ky ≡ py + 1` and
/// `kx ≡ px + 1 (mod 2)`: one tap for the even/even phase, two for the mixed ones, four for
/// odd/odd. Each phase is a dense convolution of `dy` (padded by one zero row and column at
/// the end) over only those taps, summed `for co { for tap in (ky, kx) order }`.
pub(crate) fn conv2d_bwd_input_s2(ws: &Workspace, isa: Isa, g: &Conv2dGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let isa = effective(isa);
    let (ci, co) = (g.c_in, g.c_out);
    let (oh, ow, hw) = (g.out_h(), g.out_w(), g.h * g.w);
    let l = padded_row(g.w.div_ceil(2), 1);
    let plane = (oh + 1) * l;
    let pad_image = |img: usize, dst: &mut [f32]| {
        for (o, dst) in dst.chunks_exact_mut(plane).enumerate() {
            dst.fill(0.0);
            for (oy, src_row) in dy[(img * co + o) * oh * ow..][..oh * ow].chunks_exact(ow).enumerate() {
                dst[oy * l..][..ow].copy_from_slice(src_row);
            }
        }
    };
    let cob = co_block(isa, ci);
    let blocks = ci.div_ceil(cob);
    // Per phase `py·2 + px`: its taps (ky, kx) in sum order, each with the dy offset it reads.
    let phase_taps = |py: usize, px: usize| -> Vec<(usize, usize, usize)> {
        let ks = |p: usize| if p == 0 { vec![(1, 0)] } else { vec![(0, 1), (2, 0)] };
        let mut v = Vec::new();
        for (ky, dr) in ks(py) {
            for &(kx, dc) in &ks(px) {
                v.push((ky, kx, dr * l + dc));
            }
        }
        v
    };
    let phases: Vec<_> = (0..4).map(|p| phase_taps(p / 2, p % 2)).collect();
    let phase_offs: Vec<Vec<usize>> = phases.iter().map(|t| t.iter().map(|t| t.2).collect()).collect();
    // Packed weights, per phase `[block][co][tap][cob]`, the phases one after another.
    let starts: Vec<usize> = phases
        .iter()
        .scan(0, |acc, t| {
            let s = *acc;
            *acc += blocks * co * t.len() * cob;
            Some(s)
        })
        .collect();
    let mut wp = ws.take(blocks * co * 9 * cob);
    for (ph, taps) in phases.iter().enumerate() {
        let nt = taps.len();
        let dst = &mut wp[starts[ph]..][..blocks * co * nt * cob];
        for (k, v) in dst.iter_mut().enumerate() {
            let (c, t, o, bi) = (k % cob, (k / cob) % nt, (k / (cob * nt)) % co, k / (cob * nt * co));
            let i = bi * cob + c;
            let (ky, kx, _) = taps[t];
            *v = if i < ci {
                w[((o * ci + i) * 3 + ky) * 3 + kx]
            } else {
                0.0
            };
        }
    }
    let wp = &wp[..];
    let dxp = SharedMut(dx.as_mut_ptr());
    let (chunks, per) = unit_split(g.n, blocks);
    (0..g.n * chunks).into_par_iter().for_each(|u| {
        let (img, chunk) = (u / chunks, u % chunks);
        let mut padded = ws.take(co * plane);
        pad_image(img, &mut padded);
        let src = padded.as_ptr();
        for bi in chunk * per..blocks.min((chunk + 1) * per) {
            let i0 = bi * cob;
            let dst0 = dxp.get().wrapping_add((img * ci + i0) * hw);
            for (ph, offs) in phase_offs.iter().enumerate() {
                let (py, px) = (ph / 2, ph % 2);
                let (rows, cols) = ((g.h - py).div_ceil(2), (g.w - px).div_ceil(2));
                if rows == 0 || cols == 0 {
                    continue;
                }
                let nt = offs.len();
                let wblk = wp[starts[ph] + bi * co * nt * cob..].as_ptr();
                macro_rules! go {
                    ($nt:literal) => {{
                        let b = Block::<$nt> {
                            src,
                            ci_stride: plane,
                            c_in: co,
                            taps: offs[..].try_into().expect("phase tap count"),
                            w: wblk,
                            src_row: l,
                            rows,
                            cols,
                            dst: dst0.wrapping_add(py * g.w + px),
                            co_stride: hw,
                            dst_row: 2 * g.w,
                            dst_col: 2,
                            co_valid: cob.min(ci - i0),
                        };
                        run(isa, cob, &b)
                    }};
                }
                match nt {
                    1 => go!(1),
                    2 => go!(2),
                    _ => go!(4),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data as data;

    fn geom(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, stride: usize) -> Conv2dGeom {
        let input = crate::shape::Nchw { n, c: c_in, h, w };
        Conv2dGeom::square("direct test", input, c_out, 3, stride, 1).expect("a valid geometry")
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let ws = Workspace::default();
        for g in [
            geom(2, 16, 8, 8, 16, 1),
            geom(3, 5, 7, 5, 7, 1),
            geom(1, 16, 32, 32, 32, 2),
            geom(3, 6, 9, 7, 10, 2),
            geom(2, 4, 16, 16, 9, 1),
        ] {
            let x = data(g.input().numel(), 1);
            let w = data(g.weight_len(), 2);
            let b = data(g.c_out, 3);
            let r = data(g.output().numel(), 4);
            let dy = data(g.output().numel(), 5);
            let mut want: Option<(Vec<f32>, Vec<f32>)> = None;
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; g.output().numel()];
                conv2d(&ws, isa, &g, &x, &w, Some(&b), Some(&r), Act::Relu, &mut y);
                let mut dx = vec![f32::NAN; g.input().numel()];
                if g.stride == 2 {
                    conv2d_bwd_input_s2(&ws, isa, &g, &dy, &w, &mut dx);
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                match &want {
                    None => want = Some((y, dx)),
                    Some((y0, dx0)) => {
                        assert_eq!(bits(y0), bits(&y), "forward {g:?} on {isa:?}");
                        assert_eq!(bits(dx0), bits(&dx), "input gradient {g:?} on {isa:?}");
                    }
                }
            }
        }
    }
}
