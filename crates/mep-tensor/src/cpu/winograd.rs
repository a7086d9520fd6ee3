//! Winograd F(2×2, 3×3) for stride-1, padding-1 3×3 convolutions with wide channels
//! (ResNet-50's 3×3 layers), beside the im2col + GEMM path of [`conv`](super::conv).
//!
//! Each 2×2 block ("tile") of output pixels comes from a 4×4 patch `d` of the input:
//! `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`. The elementwise product, summed over input channels,
//! is 16 GEMMs, one per position ξ of the 4×4 transformed tile:
//! `M[ξ] (c_out × tiles) = U[ξ] (c_out × c_in) · V[ξ] (c_in × tiles)`. That is 16 multiplies
//! per 4 outputs where the direct sum has 36: gemm, near the FMA peak on these layers,
//! does 2.25× less work; the transforms are additions on a few copies of the data.
//!
//! **Why not F(4×4, 3×3).** Its transforms have entries up to 8 and lose about two more
//! decimal digits in f32 (cuDNN and oneDNN accept that); F(2×2) stays within a few ulps of
//! the direct sum and its transforms are exact halves.
//!
//! **Same bits on every machine.** The transforms are additions and subtractions in a fixed
//! order (Rust never contracts them into FMAs) and the GEMMs are
//! [`gemm_fixed_order`](super::gemm::gemm_fixed_order)'s, so each
//! output is the same on AVX2 and AVX-512 machines, whatever the thread count or how the
//! tiles are cut into units.

use super::conv::epilogue;
use super::gemm::{sgemm_into, SharedMut, Workspace};
use crate::backend::Act;
use crate::shape::Conv2dGeom;
use gemm::Parallelism;
use rayon::prelude::*;

/// Floats of transformed input plus GEMM output one unit aims for: `16·(c_in + c_out)` per
/// tile, 2 MiB in all (the L2 of the machines measured), but never fewer than
/// [`MIN_TILES`] tiles per GEMM, where re-packing `U[ξ]` per call would start to cost.
const UNIT_FLOATS: usize = 512 * 1024;
/// The fewest tiles (GEMM columns) a unit aims for.
const MIN_TILES: usize = 64;

/// Whether F(2×2, 3×3) can compute `g`: 3×3, stride 1, padding 1, no empty dimension.
///
/// ```
/// use mep_tensor::{cpu::winograd, Conv2dGeom, Nchw};
/// let x = Nchw { n: 8, c: 128, h: 28, w: 28 };
/// assert!(winograd::supports(&Conv2dGeom::square("layer2", x, 128, 3, 1, 1).unwrap()));
/// assert!(!winograd::supports(&Conv2dGeom::square("down", x, 128, 3, 2, 1).unwrap()));
/// ```
pub fn supports(g: &Conv2dGeom) -> bool {
    let nonempty = [g.n, g.c_in, g.c_out, g.h, g.w].iter().all(|&d| d > 0);
    g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad == 1 && nonempty
}

/// `U[ξ][i][o] = (G w[o][i] Gᵀ)[ξ]`, `G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]`: `c_in × c_out`
/// per ξ, the GEMMs' right operand.
///
/// Blocks of [`WT_BLOCK`] input channels are gathered channel-minor first (contiguous runs of
/// the weight), so that every step of the transform is a sweep over the output channels. It
/// is done per call, memory-bound (`U` is 16/9 of the weight): 1.6 ms of the 7.4 ms of a
/// 256→256 14×14 layer at batch 8, half of the 512→512 7×7 one (which stays on GEMM).
fn weight_transform(ws: &Workspace, co: usize, ci: usize, w: &[f32], u: &mut [f32]) {
    let up = SharedMut(u.as_mut_ptr());
    (0..ci.div_ceil(WT_BLOCK)).into_par_iter().for_each(|blk| {
        let (i0, i1) = (blk * WT_BLOCK, ci.min((blk + 1) * WT_BLOCK));
        let mut g = ws.take((i1 - i0) * 9 * co);
        let mut t = ws.take(3 * co);
        // SAFETY: rows `i0..i1` of every `U[ξ]` are this task's alone.
        unsafe { weight_block(co, ci, w, i0, i1, &mut g, &mut t, up) };
    });
}

/// [`weight_transform`] of input channels `i0..i1`, into rows `i0..i1` of every `U[ξ]`.
///
/// # Safety
/// `u` addresses all of `U`, and no other thread writes those rows meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn weight_block(
    co: usize,
    ci: usize,
    w: &[f32],
    i0: usize,
    i1: usize,
    g: &mut [f32],
    t: &mut [f32],
    up: SharedMut,
) {
    let plane = co * ci;
    // g[(ii·9 + tap)·co + o] = w[o][i0 + ii][tap].
    for o in 0..co {
        let run = &w[(o * ci + i0) * 9..(o * ci + i1) * 9];
        for (k, val) in run.iter().enumerate() {
            g[k * co + o] = *val;
        }
    }
    for ii in 0..i1 - i0 {
        let tap = |k: usize| &g[(ii * 9 + k) * co..][..co];
        for r in 0..4 {
            // Row r of G g (three columns), then that row times Gᵀ.
            for c in 0..3 {
                let (g0, g1, g2) = (tap(c), tap(3 + c), tap(6 + c));
                let tc = &mut t[c * co..(c + 1) * co];
                // One loop per row of G, so that each vectorises.
                match r {
                    0 => tc.copy_from_slice(g0),
                    1 => {
                        for o in 0..co {
                            tc[o] = 0.5 * (g0[o] + g1[o] + g2[o]);
                        }
                    }
                    2 => {
                        for o in 0..co {
                            tc[o] = 0.5 * (g0[o] - g1[o] + g2[o]);
                        }
                    }
                    _ => tc.copy_from_slice(g2),
                }
            }
            let (t0, rest) = t[..3 * co].split_at(co);
            let (t1, t2) = rest.split_at(co);
            let row = |xi: usize| {
                // SAFETY: row `i0 + ii` of `U[ξ]` (`co` values) is written by this task alone,
                // and `xi·plane + (i0 + ii + 1)·co` ≤ 16·plane.
                unsafe { std::slice::from_raw_parts_mut(up.get().add(xi * plane + (i0 + ii) * co), co) }
            };
            let (u0, u1, u2, u3) = (row(4 * r), row(4 * r + 1), row(4 * r + 2), row(4 * r + 3));
            for o in 0..co {
                u0[o] = t0[o];
                u1[o] = 0.5 * (t0[o] + t1[o] + t2[o]);
                u2[o] = 0.5 * (t0[o] - t1[o] + t2[o]);
                u3[o] = t2[o];
            }
        }
    }
}

/// Input channels whose weights one task of [`weight_transform`] gathers and transforms.
const WT_BLOCK: usize = 8;
/// Channels the transposes between NCHW and the transforms' channel-minor rows move together.
const TRANSPOSE_BLOCK: usize = 8;

/// `y = act(conv2d(x, w) + bias + residual)` for a shape [`supports`] accepts, NCHW,
/// weight `[c_out, c_in, 3, 3]`.
///
/// The transforms run on channel-minor copies of a tile row (one transpose in, one out), so
/// that each of their additions is a sweep over the channels, long and contiguous however
/// small the plane; the GEMMs are `M[ξ] (tiles × c_out) = V[ξ] (tiles × c_in) · U[ξ]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    ws: &Workspace,
    g: &Conv2dGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: &mut [f32],
) {
    debug_assert!(supports(g));
    let (ci, co, h, wd) = (g.c_in, g.c_out, g.h, g.w);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let mut u = ws.take(16 * co * ci);
    weight_transform(ws, co, ci, w, &mut u);
    let u = &u[..];
    // Units are runs of tile rows over the whole batch (a run may cross images).
    let rows = g.n * th;
    let per_unit = (UNIT_FLOATS / (16 * (ci + co))).max(MIN_TILES);
    let rows_per_unit = per_unit.div_ceil(tw).clamp(1, rows);
    let units = rows.div_ceil(rows_per_unit);
    let nt = rayon::current_num_threads();
    let parallel = nt > 1 && units >= nt;
    let par = if parallel {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    let yp = SharedMut(y.as_mut_ptr());
    let body = |unit: usize| {
        let r0 = unit * rows_per_unit;
        let r1 = rows.min(r0 + rows_per_unit);
        let tb = (r1 - r0) * tw;
        let mut v = ws.take(16 * ci * tb);
        input_transform(ws, g, x, r0, r1, &mut v[..16 * ci * tb]);
        let mut m = ws.take(16 * co * tb);
        for xi in 0..16 {
            sgemm_into(
                (tb, co, ci),
                &mut m[xi * co * tb..(xi + 1) * co * tb],
                (&v[xi * ci * tb..], ci, 1),
                (&u[xi * co * ci..], co, 1),
                par,
            );
        }
        drop(v);
        // SAFETY: the unit's tile rows `r0..r1` own output rows `2ty, 2ty + 1` of their images,
        // which no other unit writes.
        unsafe { output_transform(ws, g, &m[..16 * co * tb], r0, r1, bias, residual, act, yp) };
    };
    if parallel {
        (0..units).into_par_iter().for_each(body);
    } else {
        (0..units).for_each(body);
    }
}

/// `V[ξ][t][c] = (Bᵀ d B)[ξ]` for the tiles `t` of tile rows `r0..r1` (row `r` = image `r / th`,
/// tile row `r % th`), `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`.
fn input_transform(ws: &Workspace, g: &Conv2dGeom, x: &[f32], r0: usize, r1: usize, v: &mut [f32]) {
    let (ci, h, wd) = (g.c_in, g.h, g.w);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let plane = ci * (r1 - r0) * tw;
    // The tile row's 4 input rows, zero-padded to columns −1 ..= 2·tw, channel-minor:
    // `p[(i·pw + 1 + xx)·ci + c] = x[c][2ty − 1 + i][xx]`.
    let pw = 2 * tw + 2;
    let mut p = ws.take(4 * pw * ci);
    // d·B of one patch: `db[(i·4 + j)·ci + c]`.
    let mut db = ws.take(16 * ci);
    for r in r0..r1 {
        let (img, ty) = (r / th, r % th);
        p[..4 * pw * ci].fill(0.0);
        for i in 0..4 {
            let yy = (2 * ty + i).wrapping_sub(1);
            if yy >= h {
                continue;
            }
            let dst = &mut p[(i * pw + 1) * ci..(i * pw + 1 + wd) * ci];
            // In blocks of channels, so that each pixel's stores are one contiguous run.
            for c0 in (0..ci).step_by(TRANSPOSE_BLOCK) {
                let c1 = ci.min(c0 + TRANSPOSE_BLOCK);
                let row = |c: usize| &x[((img * ci + c) * h + yy) * wd..][..wd];
                for xx in 0..wd {
                    for c in c0..c1 {
                        dst[xx * ci + c] = row(c)[xx];
                    }
                }
            }
        }
        let toff = (r - r0) * tw;
        for tx in 0..tw {
            let at = |i: usize, j: usize| &p[(i * pw + 2 * tx + j) * ci..][..ci];
            for i in 0..4 {
                let (d0, d1, d2, d3) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
                let (c0, rest) = db[4 * i * ci..4 * (i + 1) * ci].split_at_mut(ci);
                let (c1, rest) = rest.split_at_mut(ci);
                let (c2, c3) = rest.split_at_mut(ci);
                for c in 0..ci {
                    c0[c] = d0[c] - d2[c];
                    c1[c] = d1[c] + d2[c];
                    c2[c] = d2[c] - d1[c];
                    c3[c] = d1[c] - d3[c];
                }
            }
            let row = |i: usize, j: usize| &db[(4 * i + j) * ci..][..ci];
            for j in 0..4 {
                let (e0, e1, e2, e3) = (row(0, j), row(1, j), row(2, j), row(3, j));
                let base = (toff + tx) * ci;
                let out = |xi: usize| xi * plane + base;
                let (o0, o1, o2, o3) = (out(j), out(4 + j), out(8 + j), out(12 + j));
                // Bᵀ (d B): the four ξ of column j.
                for c in 0..ci {
                    v[o0 + c] = e0[c] - e2[c];
                    v[o1 + c] = e1[c] + e2[c];
                    v[o2 + c] = e2[c] - e1[c];
                    v[o3 + c] = e1[c] - e3[c];
                }
            }
        }
    }
}

/// `y = act(Aᵀ M A + bias + residual)` for tile rows `r0..r1`, `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`,
/// `M[ξ][t][k]`.
///
/// # Safety
/// `y` must address the whole output, and no other thread may write output rows of these
/// tile rows meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    ws: &Workspace,
    g: &Conv2dGeom,
    m: &[f32],
    r0: usize,
    r1: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Act,
    y: SharedMut,
) {
    let (co, h, wd) = (g.c_out, g.h, g.w);
    let (th, tw) = (h.div_ceil(2), wd.div_ceil(2));
    let plane = co * (r1 - r0) * tw;
    // M A of one tile, `ma[(i·2 + b)·co + k]`, and the tile row's two output rows,
    // channel-minor: `q[(dy·2tw + ox)·co + k]`.
    let mut ma = ws.take(8 * co);
    let mut q = ws.take(2 * 2 * tw * co);
    let mut lines = vec![0.0f32; TRANSPOSE_BLOCK * wd];
    for r in r0..r1 {
        let (img, ty) = (r / th, r % th);
        let toff = (r - r0) * tw;
        for tx in 0..tw {
            let at = |xi: usize| &m[xi * plane + (toff + tx) * co..][..co];
            for i in 0..4 {
                let (m0, m1, m2, m3) = (at(4 * i), at(4 * i + 1), at(4 * i + 2), at(4 * i + 3));
                let (a, b) = ma[2 * i * co..2 * (i + 1) * co].split_at_mut(co);
                for k in 0..co {
                    a[k] = m0[k] + m1[k] + m2[k];
                    b[k] = m1[k] - m2[k] - m3[k];
                }
            }
            let col = |i: usize, b: usize| &ma[(2 * i + b) * co..][..co];
            for b in 0..2 {
                let (s0, s1, s2, s3) = (col(0, b), col(1, b), col(2, b), col(3, b));
                let (top, bottom) = ((2 * tx + b) * co, (2 * tw + 2 * tx + b) * co);
                for k in 0..co {
                    q[top + k] = s0[k] + s1[k] + s2[k];
                    q[bottom + k] = s1[k] - s2[k] - s3[k];
                }
            }
        }
        for dy in 0..2 {
            let oy = 2 * ty + dy;
            if oy >= h {
                continue;
            }
            let q_row = &q[dy * 2 * tw * co..][..wd * co];
            for k0 in (0..co).step_by(TRANSPOSE_BLOCK) {
                let k1 = co.min(k0 + TRANSPOSE_BLOCK);
                for ox in 0..wd {
                    for k in k0..k1 {
                        lines[(k - k0) * wd + ox] = q_row[ox * co + k];
                    }
                }
                for k in k0..k1 {
                    let line = &mut lines[(k - k0) * wd..(k - k0 + 1) * wd];
                    let start = ((img * co + k) * h + oy) * wd;
                    epilogue(
                        line,
                        bias.map(|b| b[k]),
                        residual.map(|res| &res[start..start + wd]),
                        act,
                    );
                    // SAFETY: this row belongs to tile row `r`, which only this unit computes.
                    let row = unsafe { std::slice::from_raw_parts_mut(y.get().add(start), wd) };
                    row.copy_from_slice(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::direct::test_data;
    use crate::cpu::reference;
    use crate::shape::Nchw;

    /// Against the f64 reference, on odd and even planes, one and several units, with
    /// bias, residual and ReLU: within a few f32 ulps of the sum's magnitude.
    #[test]
    fn matches_the_f64_reference() {
        for (n, ci, hw, co) in [
            (1, 3, 5, 2),
            (2, 8, 7, 16),
            (3, 16, 9, 8),
            (2, 130, 6, 70),
            (1, 4, 1, 3),
            (2, 64, 14, 64),
        ] {
            let g = Conv2dGeom::square("wino", Nchw { n, c: ci, h: hw, w: hw }, co, 3, 1, 1).expect("geometry");
            let x = test_data(g.input().numel(), 1);
            let w = test_data(g.weight_len(), 2);
            let b = test_data(co, 3);
            let res = test_data(g.output().numel(), 4);
            let ws = Workspace::default();
            let mut y = vec![f32::NAN; g.output().numel()];
            conv2d(&ws, &g, &x, &w, Some(&b), Some(&res), Act::Relu, &mut y);
            let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let want = reference::conv::conv2d(&g, &wide(&x), &wide(&w), Some(&wide(&b)));
            // |x|, |w| < 1: a sum of 9·ci products, bounded by 9·ci.
            let tol = 9.0 * ci as f64 * 4.0 * f32::EPSILON as f64;
            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                let want = (want + res[i] as f64).max(0.0);
                assert!(
                    (*got as f64 - want).abs() <= tol,
                    "{n} {ci} {hw} {co}: at {i} got {got}, want {want}"
                );
            }
        }
    }
}
