//! Version 2 of the windowed-row convolution: a direct kernel in place of im2col + GEMM.
//!
//! [`crate::conv::conv2d_rows`] (version 1) writes each chunk of rows out as an im2col
//! matrix, `k·k` times the input, then multiplies it by `W`. With 16 to 64 output channels
//! the GEMM does only that many multiply-adds per element it reads, so writing and packing the
//! matrix cost about as much as the product (a `layer1` profile: GEMM 34 %, im2col 23 %, its
//! zero fills 8 %). Here each row's input window is copied once, channels last and zero
//! padded, and every output pixel accumulates `Σ_(ky, kx, ci) W[·, ci, ky, kx] x[ci, ·]` in
//! registers, one or two vectors of [`LANES`] output channels at a time for up to [`PIXELS`]
//! consecutive pixels of the output window at a time.
//!
//! Each output is one chain of fused multiply-adds in the order `(ky, kx, ci)`, independent of
//! the other outputs, of the vector width and of the thread that computes it: the AVX-512,
//! AVX2 and portable builds of the kernel, and every thread count, give the same bits. (The
//! portable build is for targets with a fused multiply-add of their own, as aarch64; on an
//! x86-64 without FMA, `f64::mul_add` is a call into libm, and `MEP_CPU_ISA=portable` on
//! this AVX-512 host took 42 s where AVX-512 took 1.0 s, pair 0's `layer2` path.)

use crate::window::{Row, Window};
use mep_tensor::cpu::direct::Isa;
use mep_tensor::Conv2dGeom;
use rayon::prelude::*;

/// Output channels per accumulator (one AVX-512 register of f64).
pub(crate) const LANES: usize = 8;

/// Output pixels per register block with 32 vector registers (AVX-512): 6 pixels × 2
/// vectors of accumulators. (8 × 2 ran 6× slower.)
const PIXELS: usize = 6;

/// The weights as the kernel reads them: `[ky][kx][ci][co]`, `co` padded with zeros to a
/// multiple of [`LANES`].
pub(crate) fn pack(g: &Conv2dGeom, w: &[f64]) -> Vec<f64> {
    let (taps, cop) = (g.kh * g.kw, padded(g.c_out));
    let mut out = vec![0.0; taps * g.c_in * cop];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for t in 0..taps {
                out[(t * g.c_in + ci) * cop + co] = w[(co * g.c_in + ci) * taps + t];
            }
        }
    }
    out
}

pub(crate) fn padded(c_out: usize) -> usize {
    c_out.div_ceil(LANES) * LANES
}

/// `y = W x` (no bias) for rows `x` of shape `[c_in, h, w]` stored over their windows, `wt`
/// the weights from [`pack`]: the same outputs as [`crate::conv::conv2d_rows`] up to
/// rounding, over the same output windows.
pub(crate) fn conv2d_rows_direct(g: &Conv2dGeom, wt: &[f64], x: &[&Row]) -> Vec<Row> {
    assert_eq!(
        wt.len(),
        g.kh * g.kw * g.c_in * padded(g.c_out),
        "packed weights of {g:?}"
    );
    let (oh, ow) = (g.out_h(), g.out_w());
    x.par_iter()
        .with_min_len(4)
        .map_init(
            || (Vec::new(), Vec::new()),
            |(buf, acc), row| {
                let out = row.win.slide(g.kh, g.stride, g.pad, oh, ow);
                one_row(g, wt, row, out, buf, acc)
            },
        )
        .collect()
}

/// One row: its window copied into `buf` (channels last, zero padded), the products into
/// `acc` (pixels major), then transposed into the row's layout.
fn one_row(g: &Conv2dGeom, wt: &[f64], x: &Row, out: Window, buf: &mut Vec<f64>, acc: &mut Vec<f64>) -> Row {
    let area = out.area();
    if area == 0 {
        return Row::zero();
    }
    let geo = fill(g, x, out, buf);
    let cop = geo.cop;
    acc.clear();
    acc.resize(area * cop, 0.0);
    run(&geo, wt, buf, acc);
    to_row(acc, g.c_out, out)
}

/// The row over `out` from the kernels' products `acc` (pixel major, [`padded`] channels):
/// each channel's plane of the window in turn.
pub(crate) fn to_row(acc: &[f64], c_out: usize, out: Window) -> Row {
    let area = out.area();
    let mut data = vec![0.0; c_out * area];
    for (q, px) in acc.chunks_exact(padded(c_out)).enumerate() {
        for (co, &v) in px[..c_out].iter().enumerate() {
            data[co * area + q] = v;
        }
    }
    Row { win: out, data }
}

/// `$go!(n)` with `n`, a block size from 1 to [`PIXELS`], as a literal: the kernels' blocks
/// are const generics.
macro_rules! by_block_size {
    ($n:expr, $go:ident) => {
        match $n {
            6 => $go!(6),
            5 => $go!(5),
            4 => $go!(4),
            3 => $go!(3),
            2 => $go!(2),
            _ => $go!(1),
        }
    };
}
pub(crate) use by_block_size;

/// Copies the input pixels that the (non-empty) output window `out` reads into `buf`,
/// channels last, zeros outside `x`'s window; the shape the kernel works on.
pub(crate) fn fill(g: &Conv2dGeom, x: &Row, out: Window, buf: &mut Vec<f64>) -> Geo {
    let (s, p, c_in) = (g.stride, g.pad as isize, g.c_in);
    let (oh, ow) = (out.height(), out.width());
    // The input pixels the output window reads: rows `out.y0·s − p ..`, `bh × bw` of them.
    let (bh, bw) = ((oh - 1) * s + g.kh, (ow - 1) * s + g.kw);
    let (y0, x0) = ((out.y0 * s) as isize - p, (out.x0 * s) as isize - p);
    buf.clear();
    buf.resize(bh * bw * c_in, 0.0);
    let iw = x.win;
    let (ih, iwd) = (iw.height(), iw.width());
    // The part of the `bh × bw` block inside the input window.
    let by0 = (iw.y0 as isize - y0).clamp(0, bh as isize) as usize;
    let by1 = (iw.y1 as isize - y0).clamp(0, bh as isize) as usize;
    let bx0 = (iw.x0 as isize - x0).clamp(0, bw as isize) as usize;
    let bx1 = (iw.x1 as isize - x0).clamp(0, bw as isize) as usize;
    for ci in 0..c_in {
        for by in by0..by1 {
            let iy = (y0 + by as isize) as usize - iw.y0;
            let src = &x.data[(ci * ih + iy) * iwd..][..iwd];
            for bx in bx0..bx1 {
                buf[(by * bw + bx) * c_in + ci] = src[(x0 + bx as isize) as usize - iw.x0];
            }
        }
    }
    Geo {
        c_in,
        cop: padded(g.c_out),
        kh: g.kh,
        kw: g.kw,
        s,
        bw,
        oh,
        ow,
        ys: (by0, by1),
        xs: (bx0, bx1),
    }
}

/// The shape one row's products work on.
pub(crate) struct Geo {
    c_in: usize,
    cop: usize,
    kh: usize,
    kw: usize,
    s: usize,
    /// Width of the padded input block.
    pub bw: usize,
    /// The output window.
    oh: usize,
    ow: usize,
    /// The rows and columns of the padded block inside the input window: taps reading
    /// only outside them add zeros and are skipped.
    ys: (usize, usize),
    xs: (usize, usize),
}

impl Geo {
    /// The taps `(ky0..ky1, kx0..kx1)` that read inside the input window for some pixel of
    /// the block `q..q + n` (window order). Skipping the others leaves every sum as it was:
    /// they add `w·0`, and a sum that starts at +0 stays +0 through those.
    fn taps(&self, q: usize, n: usize) -> (usize, usize, usize, usize) {
        let (oy0, oy1) = (q / self.ow, (q + n - 1) / self.ow);
        let (ox0, ox1) = if oy0 == oy1 {
            (q % self.ow, (q + n - 1) % self.ow)
        } else {
            (0, self.ow - 1)
        };
        let range = |lo: usize, hi: usize, first: usize, last: usize, k: usize| {
            let a = lo.saturating_sub(last * self.s);
            let b = hi.saturating_sub(first * self.s).min(k);
            (a, b.max(a))
        };
        let (ky0, ky1) = range(self.ys.0, self.ys.1, oy0, oy1, self.kh);
        let (kx0, kx1) = range(self.xs.0, self.xs.1, ox0, ox1, self.kw);
        (ky0, ky1, kx0, kx1)
    }
}

fn run(g: &Geo, wt: &[f64], buf: &[f64], acc: &mut [f64]) {
    // The engine's choice (`MEP_CPU_ISA` lowers it): the bits are the same on every path.
    match Isa::current() {
        // SAFETY: `Isa::current` names only what the CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_avx512(g, wt, buf, acc) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(g, wt, buf, acc) },
        _ => run_any::<AVX2_PIXELS, AVX2_V>(g, wt, buf, acc),
    }
}

/// Pixels per block, and vectors of [`LANES`] channels, where there are 16 vector registers
/// (AVX2, the portable build): 6 accumulators of 8 f64 take 12 of them, the weights 2.
/// (3 pixels × 2 vectors spilled and ran 1.3× slower on `layer2`; 4 × 1 and 2 × 2 were
/// 1.15–1.25× slower.)
const AVX2_PIXELS: usize = 6;
const AVX2_V: usize = 1;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn run_avx512(g: &Geo, wt: &[f64], buf: &[f64], acc: &mut [f64]) {
    run_any::<PIXELS, 2>(g, wt, buf, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(g: &Geo, wt: &[f64], buf: &[f64], acc: &mut [f64]) {
    run_any::<AVX2_PIXELS, AVX2_V>(g, wt, buf, acc)
}

/// Blocks of up to `P` (at most [`PIXELS`]) pixels.
#[inline(always)]
fn run_any<const P: usize, const V: usize>(g: &Geo, wt: &[f64], buf: &[f64], acc: &mut [f64]) {
    // Blocks of P consecutive pixels of the output window, across its rows: narrow
    // windows (most symbols') would leave most pixels to a one-pixel remainder otherwise.
    let area = g.oh * g.ow;
    let base = |q: usize| ((q / g.ow * g.bw + q % g.ow) * g.s) * g.c_in;
    let mut cb = 0;
    while cb < g.cop {
        // Two vectors of channels where there are that many: each input value loaded feeds two
        // multiply-adds.
        let two = V == 2 && cb + 2 * LANES <= g.cop;
        let mut q = 0;
        while q < area {
            let n = (area - q).min(P).min(PIXELS);
            macro_rules! go {
                ($p:literal) => {
                    if two {
                        block::<$p, 2>(g, wt, buf, acc, cb, q, std::array::from_fn(|i| base(q + i)))
                    } else {
                        block::<$p, 1>(g, wt, buf, acc, cb, q, std::array::from_fn(|i| base(q + i)))
                    }
                };
            }
            by_block_size!(n, go);
            q += n;
        }
        cb += if two { 2 * LANES } else { LANES };
    }
}

/// Output channels `cb..cb + V·LANES` of the output pixels `q..q + P` (in window order),
/// whose `(ky, kx) = (0, 0)` inputs start at `bases` in `buf`.
#[inline(always)]
fn block<const P: usize, const V: usize>(
    g: &Geo,
    wt: &[f64],
    buf: &[f64],
    acc: &mut [f64],
    cb: usize,
    q: usize,
    bases: [usize; P],
) {
    let mut sum = [[[0.0f64; LANES]; V]; P];
    let c_in = g.c_in;
    let (ky0, ky1, kx0, kx1) = g.taps(q, P);
    // Every index read below is inside these bounds: each pixel's last tap and channel, and
    // the last weight row.
    let reach = ((g.kh - 1) * g.bw + g.kw - 1) * c_in + c_in;
    assert!(bases.iter().all(|&b| b + reach <= buf.len()));
    assert!(wt.len() >= (g.kh * g.kw * c_in - 1) * g.cop + cb + V * LANES);
    for ky in ky0..ky1 {
        for kx in kx0..kx1 {
            let xo = (ky * g.bw + kx) * c_in;
            let wo = (ky * g.kw + kx) * c_in * g.cop + cb;
            // SAFETY: `b + xo + c_in ≤ b + reach ≤ buf.len()` (asserted).
            let xs: [*const f64; P] = std::array::from_fn(|i| unsafe { buf.as_ptr().add(bases[i] + xo) });
            // SAFETY: `wo + (c_in − 1)·cop + V·LANES ≤ wt.len()` (asserted).
            let mut wp = unsafe { wt.as_ptr().add(wo) };
            for ci in 0..c_in {
                // SAFETY: as above.
                let w: [[f64; LANES]; V] =
                    std::array::from_fn(|v| std::array::from_fn(|l| unsafe { *wp.add(v * LANES + l) }));
                for (acc, x) in sum.iter_mut().zip(&xs) {
                    // SAFETY: as above.
                    let x = unsafe { *x.add(ci) };
                    for v in 0..V {
                        for l in 0..LANES {
                            acc[v][l] = w[v][l].mul_add(x, acc[v][l]);
                        }
                    }
                }
                // The next channel's row (past the end after the last one, never read there).
                wp = wp.wrapping_add(g.cop);
            }
        }
    }
    for (i, s) in sum.iter().enumerate() {
        for (v, s) in s.iter().enumerate() {
            acc[(q + i) * g.cop + cb + v * LANES..][..LANES].copy_from_slice(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv2d_rows;
    use crate::conv::tests::{geometries, lcg, random_rows};

    // Versions 1 and 2 on windows of every kind (empty, a pixel, strips, inner blocks, the
    // whole plane) and every geometry the networks have: the same windows, the same numbers
    // to rounding; and version 2's portable, AVX2 and AVX-512 builds (those this CPU runs)
    // the same bits.
    #[test]
    fn direct_rows_match_version_one() {
        for (i, g) in geometries() {
            let (c_in, h, w, c_out) = (g.c_in, g.h, g.w, g.c_out);
            let wt = lcg(200 + i as u64, g.weight_len());
            let rows = random_rows(c_in, h, w, 21, 7);
            let refs: Vec<&Row> = rows.iter().collect();
            let v1 = conv2d_rows(&g, &wt, &refs);
            let packed = pack(&g, &wt);
            let v2 = conv2d_rows_direct(&g, &packed, &refs);
            for (q, (a, b)) in v1.iter().zip(&v2).enumerate() {
                assert_eq!(a.win, b.win, "case {i} row {q}: windows");
                for (j, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-12 * (1.0 + x.abs()),
                        "case {i} row {q}: [{j}] v1 {x}, v2 {y}"
                    );
                }
            }
            // The portable build one pixel at a time against the dispatched one: same bits.
            for (q, row) in rows.iter().enumerate() {
                let out = row.win.slide(g.kh, g.stride, g.pad, g.out_h(), g.out_w());
                if out.area() == 0 {
                    continue;
                }
                let (mut buf, mut acc) = (Vec::new(), Vec::new());
                let fast = one_row(&g, &packed, row, out, &mut buf, &mut acc);
                // Every tap (ranges past any block): the skipping must not change a bit.
                let geo = Geo {
                    ys: (0, usize::MAX),
                    xs: (0, usize::MAX),
                    ..fill(&g, row, out, &mut buf)
                };
                let mut slow = vec![0.0; out.area() * padded(c_out)];
                run_any::<1, 1>(&geo, &packed, &buf, &mut slow);
                let mut builds = vec![("portable, one pixel at a time", slow)];
                #[cfg(target_arch = "x86_64")]
                for (name, isa) in [("avx2", Isa::Avx2), ("avx512", Isa::Avx512)] {
                    if Isa::available().contains(&isa) {
                        let mut got = vec![0.0; out.area() * padded(c_out)];
                        // SAFETY: the CPU has the ISA (`Isa::available`).
                        unsafe {
                            match isa {
                                Isa::Avx2 => run_avx2(&geo, &packed, &buf, &mut got),
                                _ => run_avx512(&geo, &packed, &buf, &mut got),
                            }
                        }
                        builds.push((name, got));
                    }
                }
                for (name, got) in builds {
                    for (j, px) in got.chunks_exact(padded(c_out)).enumerate() {
                        for (co, v) in px[..c_out].iter().enumerate() {
                            assert_eq!(
                                v.to_bits(),
                                fast.data[co * out.area() + j].to_bits(),
                                "case {i} row {q}: {name}"
                            );
                        }
                    }
                }
            }
        }
    }
}
