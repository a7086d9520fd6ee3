//! Version 3 of the windowed-row convolution: the rows of one interval together, skipping
//! the inputs that are zero in all of them.
//!
//! After a ReLU, every row of an interval's zonotope is zero at the neurons the interval
//! leaves stably inactive (`u ≤ 0`): 43 % of them on pair 0's `layer1` path of the demo, where
//! version 2 ([`crate::direct`]) still multiplies those zeros (only 19 % of its
//! (6-pixel block, tap, channel) products read a zero at all six pixels, so it cannot skip
//! them). Here a register block is up to [`ROWS`] rows of the interval at one output pixel:
//! they read the same input pixels, so the list of that pixel's live channels serves all of
//! them, and each weight vector loaded feeds one multiply-add per row, as in version 2.
//!
//! The sums are version 2's: each output one chain of fused multiply-adds in the order
//! `(ky, kx, ci)`, now without the terms `w·0` (adding `w·0` to a sum leaves it as it was: it
//! starts at +0 and a sum of products is never −0), so the bits are version 2's, on every ISA.

use crate::direct::{by_block_size, fill, padded, to_row, LANES};
use crate::window::{Row, Window};
use mep_tensor::cpu::direct::Isa;
use mep_tensor::Conv2dGeom;

/// Rows per register block with 32 vector registers (AVX-512): 6 rows × 2 vectors of
/// accumulators, as version 2's 6 pixels × 2.
const ROWS: usize = 6;

/// Rows per register block where there are 16 vector registers (AVX2, portable): 6 rows
/// kept accumulators on the stack (the six broadcasts are loaded before the multiply-adds:
/// 12 + 6 + 2 registers).
const AVX2_ROWS: usize = 4;

fn rows_per_block(isa: Isa) -> usize {
    if isa == Isa::Avx512 {
        ROWS
    } else {
        AVX2_ROWS
    }
}

/// `y = W x` (no bias) for the rows `x` of one interval's zonotope, of shape `[c_in, h, w]`,
/// every one of them zero at the neurons where `zero` is set (a dense `[c_in, h, w]` mask);
/// `wt` from [`crate::direct::pack`]. The same windows and bits as
/// [`crate::direct::conv2d_rows_direct`].
pub(crate) fn conv2d_rows_shared(g: &Conv2dGeom, wt: &[f64], x: &[&Row], zero: &[bool]) -> Vec<Row> {
    shared_on(Isa::current(), g, wt, x, zero)
}

/// [`conv2d_rows_shared`] on the build for `isa` (the engine's choice, which `MEP_CPU_ISA`
/// lowers, or a test's).
fn shared_on(isa: Isa, g: &Conv2dGeom, wt: &[f64], x: &[&Row], zero: &[bool]) -> Vec<Row> {
    let (c_in, h, w) = (g.c_in, g.h, g.w);
    assert_eq!(zero.len(), c_in * h * w, "zero mask of {g:?}");
    assert_eq!(
        wt.len(),
        g.kh * g.kw * c_in * padded(g.c_out),
        "packed weights of {g:?}"
    );
    let (oh, ow) = (g.out_h(), g.out_w());
    // Each row's window copied as version 2 copies it, and its products, pixel major.
    let cop = padded(g.c_out);
    let mut rows: Vec<Item> = x
        .iter()
        .map(|row| {
            let out = row.win.slide(g.kh, g.stride, g.pad, oh, ow);
            let mut buf = Vec::new();
            if out.area() == 0 {
                return Item {
                    out: Window::EMPTY,
                    bw: 0,
                    buf,
                    acc: Vec::new(),
                };
            }
            let bw = fill(g, row, out, &mut buf).bw;
            Item {
                out,
                bw,
                buf,
                acc: vec![0.0; out.area() * cop],
            }
        })
        .collect();
    // The live channels of every input pixel.
    let mut live_at = Vec::with_capacity(h * w + 1);
    let mut live: Vec<usize> = Vec::new();
    live_at.push(0);
    for p in 0..h * w {
        live.extend((0..c_in).filter(|&ci| !zero[ci * h * w + p]));
        live_at.push(live.len());
    }
    // The rows whose output window holds each output pixel.
    let mut at = vec![0usize; oh * ow + 1];
    for Item { out, .. } in &rows {
        for y in out.y0..out.y1 {
            for xo in out.x0..out.x1 {
                at[y * ow + xo + 1] += 1;
            }
        }
    }
    for p in 0..oh * ow {
        at[p + 1] += at[p];
    }
    let mut next = at.clone();
    let mut who = vec![0usize; at[oh * ow]];
    for (r, Item { out, .. }) in rows.iter().enumerate() {
        for y in out.y0..out.y1 {
            for xo in out.x0..out.x1 {
                who[next[y * ow + xo]] = r;
                next[y * ow + xo] += 1;
            }
        }
    }
    let conv = Conv {
        g,
        wt,
        lists: Lists {
            live: &live,
            live_at: &live_at,
            h,
            w,
        },
    };
    for p in 0..oh * ow {
        for block in who[at[p]..at[p + 1]].chunks(rows_per_block(isa)) {
            pixel(isa, &conv, &mut rows, block, (p / ow, p % ow));
        }
    }
    rows.into_iter()
        .map(|Item { out, acc, .. }| {
            if out.area() == 0 {
                Row::zero()
            } else {
                to_row(&acc, g.c_out, out)
            }
        })
        .collect()
}

/// The live channels of each input pixel: `live[live_at[p]..live_at[p + 1]]`.
struct Lists<'a> {
    live: &'a [usize],
    live_at: &'a [usize],
    h: usize,
    w: usize,
}

/// One row: its output window, its input block (`bh × bw × c_in`, from
/// [`crate::direct`]'s `fill`) and its products (pixel major, padded channels).
struct Item {
    out: Window,
    bw: usize,
    buf: Vec<f64>,
    acc: Vec<f64>,
}

type Rows = [Item];

/// What every register block of one convolution reads.
struct Conv<'a> {
    g: &'a Conv2dGeom,
    wt: &'a [f64],
    lists: Lists<'a>,
}

/// Output pixel `(oy, ox)` of the rows `block`, every channel block.
fn pixel(isa: Isa, c: &Conv, rows: &mut Rows, block: &[usize], at: (usize, usize)) {
    match isa {
        // SAFETY: `Isa::current` names only what the CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { pixel_avx512(c, rows, block, at) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { pixel_avx2(c, rows, block, at) },
        _ => pixel_any::<1>(c, rows, block, at),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn pixel_avx512(c: &Conv, rows: &mut Rows, block: &[usize], at: (usize, usize)) {
    pixel_any::<2>(c, rows, block, at)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pixel_avx2(c: &Conv, rows: &mut Rows, block: &[usize], at: (usize, usize)) {
    pixel_any::<1>(c, rows, block, at)
}

#[inline(always)]
fn pixel_any<const V: usize>(c: &Conv, rows: &mut Rows, block: &[usize], at: (usize, usize)) {
    let cop = padded(c.g.c_out);
    let mut cb = 0;
    while cb < cop {
        let two = V == 2 && cb + 2 * LANES <= cop;
        macro_rules! go {
            ($r:literal) => {
                if two {
                    rows_block::<$r, 2>(c, rows, block, at, cb)
                } else {
                    rows_block::<$r, 1>(c, rows, block, at, cb)
                }
            };
        }
        by_block_size!(block.len(), go);
        cb += if two { 2 * LANES } else { LANES };
    }
}

/// Output channels `cb..cb + V·LANES` of pixel `(oy, ox)` of the `R` rows `block`.
#[inline(always)]
fn rows_block<const R: usize, const V: usize>(
    c: &Conv,
    rows: &mut Rows,
    block: &[usize],
    (oy, ox): (usize, usize),
    cb: usize,
) {
    let Conv { g, wt, lists } = c;
    let (c_in, cop, s, p) = (g.c_in, padded(g.c_out), g.stride, g.pad);
    let mut sum = [[[0.0f64; LANES]; V]; R];
    // Each row's input for tap (0, 0) of this pixel, and its block's row stride: the tap loop
    // below only adds offsets (bounds checks there kept the accumulators on the stack on AVX2).
    let base: [(*const f64, usize); R] = std::array::from_fn(|i| {
        let Item { out, bw, buf, .. } = &rows[block[i]];
        // The block of input pixels a row's window reads is `bh × bw × c_in` (see `fill`);
        // the pixel `((oy − y0)·s + ky, (ox − x0)·s + kx)` lies in it for every tap.
        assert_eq!(buf.len(), ((out.height() - 1) * s + g.kh) * bw * c_in);
        let at = (((oy - out.y0) * s) * bw + (ox - out.x0) * s) * c_in;
        (buf[at..].as_ptr(), bw * c_in)
    });
    assert!(wt.len() >= (g.kh * g.kw * c_in - 1) * cop + cb + V * LANES);
    // `live` holds channels `< c_in` only (built so in `shared_on`).
    assert!(lists.live_at.len() > lists.h * lists.w);
    for ky in 0..g.kh {
        let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&v| v < lists.h) else {
            continue;
        };
        for kx in 0..g.kw {
            let Some(ix) = (ox * s + kx).checked_sub(p).filter(|&v| v < lists.w) else {
                continue;
            };
            let q = iy * lists.w + ix;
            // SAFETY: `q + 1 < live_at.len()` (asserted), and the runs lie in `live`.
            let live = unsafe {
                let (a, b) = (*lists.live_at.get_unchecked(q), *lists.live_at.get_unchecked(q + 1));
                lists.live.get_unchecked(a..b)
            };
            if live.is_empty() {
                continue;
            }
            // SAFETY: the tap's pixel lies in each row's block (above), and `ci < c_in`.
            let xs: [*const f64; R] = std::array::from_fn(|i| unsafe { base[i].0.add(ky * base[i].1 + kx * c_in) });
            let wo = (ky * g.kw + kx) * c_in * cop + cb;
            for &ci in live {
                // SAFETY: `wo + ci·cop + V·LANES ≤ wt.len()` (asserted), `ci < c_in`.
                let w: [[f64; LANES]; V] = std::array::from_fn(|v| {
                    std::array::from_fn(|l| unsafe { *wt.as_ptr().add(wo + ci * cop + v * LANES + l) })
                });
                for (acc, x) in sum.iter_mut().zip(&xs) {
                    // SAFETY: as above.
                    let x = unsafe { *x.add(ci) };
                    for v in 0..V {
                        for l in 0..LANES {
                            acc[v][l] = w[v][l].mul_add(x, acc[v][l]);
                        }
                    }
                }
            }
        }
    }
    for (i, &r) in block.iter().enumerate() {
        let Item { out, acc, .. } = &mut rows[r];
        let q = (oy - out.y0) * out.width() + ox - out.x0;
        for v in 0..V {
            acc[q * cop + cb + v * LANES..][..LANES].copy_from_slice(&sum[i][v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{geometries, lcg, random_rows};
    use crate::direct::{conv2d_rows_direct, pack};

    // Version 3 against version 2 bit for bit: rows of random windows zeroed on a random
    // shared mask, on the geometries the networks have, on every build this CPU runs.
    #[test]
    fn shared_zeros_match_version_two_bit_for_bit() {
        for (i, g) in geometries() {
            let (c_in, h, w) = (g.c_in, g.h, g.w);
            let packed = pack(&g, &lcg(300 + i as u64, g.weight_len()));
            let zero: Vec<bool> = lcg(400 + i as u64, c_in * h * w).iter().map(|v| *v < 0.1).collect();
            let mut rows = random_rows(c_in, h, w, 23, 11 + i as u64);
            for row in &mut rows {
                let (win, area) = (row.win, row.win.area());
                for ci in 0..if win.is_empty() { 0 } else { c_in } {
                    for y in win.y0..win.y1 {
                        for x in win.x0..win.x1 {
                            if zero[(ci * h + y) * w + x] {
                                row.data[ci * area + (y - win.y0) * win.width() + x - win.x0] = 0.0;
                            }
                        }
                    }
                }
            }
            let refs: Vec<&Row> = rows.iter().collect();
            let v2 = conv2d_rows_direct(&g, &packed, &refs);
            for isa in Isa::available() {
                let v3 = shared_on(isa, &g, &packed, &refs, &zero);
                for (q, (a, b)) in v2.iter().zip(&v3).enumerate() {
                    assert_eq!(a.win, b.win, "case {i} row {q}: windows");
                    let bits = |r: &Row| r.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(a), bits(b), "case {i} row {q} ({isa:?})");
                }
            }
        }
    }
}
