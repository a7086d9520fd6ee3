//! Lower bounds of the class margin on intervals of a segment's parameter.
//!
//! On an interval `t ∈ [t0, t1]` of a segment `z(t) = z_a + t (z_b − z_a)`, write
//! `t = t0 + s (t1 − t0)` with `s ∈ [0, 1]`: the input is `m0 + s·m1`, one-dimensional. Two
//! sound bounds of `min_{j≠c} (logit_c − logit_j)` over the interval are computed and the
//! larger is kept:
//!
//! - the zonotope's ([`crate::zonotope`]): every neuron as `c0 + s c1 + Σ e_i ε_i ± r`, with a
//!   noise symbol per ReLU the interval makes unstable (DeepZ, Singh et al. 2018), the margins
//!   taken with the weight rows `w_c − w_j` so the correlation of the two logits survives;
//! - CROWN's (Zhang et al. 2018), only where the zonotope's is not positive: the margins
//!   back-substituted through the network to the input, each ReLU replaced by the linear
//!   relaxation its concrete bounds (from the zonotope) allow (`α x ≤ relu(x) ≤ λ (x − l)`,
//!   `λ = u/(u − l)`, `α = 1` if `u > −l` else 0), each undecided max-pool window by its input
//!   of largest lower bound below and its largest upper bound above. The result is linear in
//!   `s`, smallest at `s = 0` or 1.
//!
//! **Rounding.** CROWN adds a bound on the f64 error of each backward step (Higham's
//! `γ_n = n u/(1 − n u)`, `u = 2⁻⁵³`, against the signed Λ and the magnitude of the layer's
//! input), which stays small. The zonotope is computed without outward rounding: a rigorous
//! rounding box would pass through `|W|` at every layer and grow by its norm each time (from
//! 10⁻¹⁴ to 10³ through a trained ResNet-20), while the f64 error itself stays near 10⁻¹³
//! relative. That error, and the rounding of the inputs `m0`, `m1`, are covered by the
//! tolerance a margin must clear to be certified (`tol · max|logit|`, 1e-9 by default), as
//! ExactLine's are. So a certificate holds for the network as folded to f64 and evaluated in
//! exact arithmetic, within that tolerance.

use crate::error::Result;
use crate::net::{add_assign, pool_out, Batch, Net64, Op, Shortcut64};
use crate::zonotope::{self, Zono};
use rayon::prelude::*;

/// The unit roundoff of f64.
pub(crate) const U: f64 = f64::EPSILON / 2.0;

/// Higham's `γ_n`: a bound on the relative error of a sum of `n` products in f64.
pub(crate) fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    nu / (1.0 - nu)
}

/// What the backward pass needs of each op of the forward one.
#[derive(Clone)]
pub(crate) enum Record {
    /// The op's input shape and a bound on the magnitude of its input (for the rounding of
    /// the backward step).
    Mag([usize; 3], Batch),
    /// A ReLU: the concrete bounds of its input.
    Relu { lo: Vec<f64>, hi: Vec<f64> },
    /// A max-pool: its input shape and magnitude, and per output (interval-major) the input
    /// (flat within the plane) whose lower bound is largest, whether it alone is the maximum,
    /// and the largest upper bound in the window.
    Pool {
        dims: [usize; 3],
        mag: Batch,
        choice: Vec<(usize, bool, f64)>,
    },
}

/// `Σ_k |a_k| b_k` for each point of `a` (`j` points per row of `b`).
fn abs_dot(a: &Batch, b: &Batch, j: usize) -> Vec<f64> {
    let d = a.dim();
    a.data
        .par_chunks(d.max(1))
        .enumerate()
        .map(|(pj, row)| {
            let bm = &b.data[(pj / j) * d..(pj / j + 1) * d];
            row.iter().zip(bm).map(|(x, y)| x.abs() * y).sum()
        })
        .collect()
}

fn add_scaled(acc: &mut [f64], by: f64, v: &[f64]) {
    acc.iter_mut().zip(v).for_each(|(a, x)| *a += by * x);
}

/// CROWN (Zhang et al. 2018): the margins `logit_c − logit_j` back-substituted through the
/// relaxations the forward pass chose, down to the one-dimensional input, for one interval.
/// `records[o − op0]` belongs to op `o`, the last to the classifier; `input` is the interval's
/// stretch of the segment at `op0` (a zonotope without symbols).
fn crown(net: &Net64, op0: usize, records: &[Record], input: &Zono, target: usize) -> Result<f64> {
    let (f, k) = (net.features, net.classes);
    let j = k - 1;
    let n = 1;
    let targets = [target];
    let lin = op0 + records.len() - 1;
    // Λ: one row per (interval, objective), bias and accumulated rounding per row.
    let mut lam = Batch {
        n: n * j,
        dims: [f, 1, 1],
        data: vec![0.0; n * j * f],
    };
    let mut bias = vec![0.0; n * j];
    let mut err = vec![0.0; n * j];
    for p in 0..n {
        let c = targets[p];
        let wc = &net.fc_w[c * f..(c + 1) * f];
        for (q, other) in (0..k).filter(|&o| o != c).enumerate() {
            let row = &mut lam.data[(p * j + q) * f..][..f];
            let wo = &net.fc_w[other * f..(other + 1) * f];
            for ((r, a), b) in row.iter_mut().zip(wc).zip(wo) {
                *r = a - b;
            }
            bias[p * j + q] = net.fc_b[c] - net.fc_b[other];
            err[p * j + q] = U * (net.fc_b[c].abs() + net.fc_b[other].abs());
        }
    }
    // The rounding of `w_c − w_j`, against the classifier input's magnitude.
    if let Some(Record::Mag(_, mag)) = records.last() {
        let e = abs_dot(&lam, mag, j);
        add_scaled(&mut err, 2.0 * U, &e);
    }
    let mut saved: Vec<Batch> = Vec::new();
    for op in (op0..lin).rev() {
        let rec = &records[op - op0];
        lam = match (net.ops[op], rec) {
            (Op::AvgPool, Record::Mag(dims, mag)) => {
                let hw = dims[1] * dims[2];
                let mut data = vec![0.0; n * j * dims.iter().product::<usize>()];
                data.par_chunks_mut(hw.max(1))
                    .zip(lam.data.par_iter())
                    .for_each(|(plane, &v)| plane.fill(v / hw as f64));
                let out = Batch {
                    n: n * j,
                    dims: *dims,
                    data,
                };
                add_scaled(&mut err, 2.0 * U, &abs_dot(&out, mag, j));
                out
            }
            (Op::Relu, Record::Relu { lo, hi }) => {
                let d = lam.dim();
                let extra: Vec<(f64, f64)> = lam
                    .data
                    .par_chunks_mut(d.max(1))
                    .enumerate()
                    .map(|(pj, row)| {
                        let p = pj / j;
                        let (lo, hi) = (&lo[p * d..(p + 1) * d], &hi[p * d..(p + 1) * d]);
                        let (mut b, mut e) = (0.0, 0.0);
                        for ((v, &l), &h) in row.iter_mut().zip(lo).zip(hi) {
                            if l >= 0.0 {
                                // identity
                            } else if h <= 0.0 {
                                *v = 0.0;
                            } else if *v >= 0.0 {
                                if h <= -l {
                                    *v = 0.0;
                                }
                            } else {
                                let lambda = h / (h - l) * (1.0 + 4.0 * U);
                                let c = -lambda * l;
                                b += *v * c;
                                e += (*v * c).abs();
                                *v *= lambda;
                            }
                            e += v.abs() * l.abs().max(h.abs());
                        }
                        (b, e)
                    })
                    .collect();
                for (q, (b, e)) in extra.into_iter().enumerate() {
                    bias[q] += b;
                    err[q] += 4.0 * U * e;
                }
                lam
            }
            (Op::MaxPool, Record::Pool { dims, mag, choice }) => {
                let [c, h, w] = *dims;
                let (oh, ow) = (pool_out(h), pool_out(w));
                let (din, dout) = (c * h * w, c * oh * ow);
                let mut data = vec![0.0; n * j * din];
                let extra: Vec<f64> = data
                    .par_chunks_mut(din.max(1))
                    .enumerate()
                    .map(|(pj, row)| {
                        let p = pj / j;
                        let l = &lam.data[pj * dout..(pj + 1) * dout];
                        let ch = &choice[p * dout..(p + 1) * dout];
                        let mut b = 0.0;
                        for (o, (&v, &(i, alone, top))) in l.iter().zip(ch).enumerate() {
                            if alone || v >= 0.0 {
                                row[(o / (oh * ow)) * h * w + i] += v;
                            } else {
                                b += v * top;
                            }
                        }
                        b
                    })
                    .collect();
                let out = Batch {
                    n: n * j,
                    dims: *dims,
                    data,
                };
                for (q, b) in extra.into_iter().enumerate() {
                    bias[q] += b;
                    err[q] += 4.0 * U * b.abs();
                }
                add_scaled(&mut err, 20.0 * U, &abs_dot(&out, mag, j));
                out
            }
            (Op::Conv(i), Record::Mag(dims, mag)) => conv_back(net, i, &lam, *dims, mag, j, &mut bias, &mut err)?,
            (Op::Save, Record::Mag(_, mag)) => {
                let mut sum = lam;
                let other = saved.pop().expect("a shortcut's share for each saved input");
                add_assign(&mut sum.data, &other.data);
                add_scaled(&mut err, 2.0 * U, &abs_dot(&sum, mag, j));
                sum
            }
            (Op::AddShortcut(sc), Record::Mag(dims, mag)) => {
                // `dims`, `mag`: the saved block input.
                let share = match sc {
                    Shortcut64::Identity => lam.clone(),
                    Shortcut64::Projection(i) => conv_back(net, i, &lam, *dims, mag, j, &mut bias, &mut err)?,
                    Shortcut64::PadA { pad, subsample } => pad_a_back(&lam, *dims, pad, subsample),
                };
                saved.push(share);
                lam
            }
            (op, _) => {
                return Err(crate::error::CertifyError::Shape {
                    what: format!("the bounds' record of op {op:?}"),
                    expected: "the record its forward pass makes".into(),
                    found: "another".into(),
                })
            }
        };
    }
    // At the input: Λ·(c0 + s c1) + bias − |Λ|·r, smallest at s = 0 or 1.
    let d = lam.dim();
    let gam = 2.0 * gamma(d + 4);
    let (c0, c1, r) = (input.row(0), input.row(1), &input.r);
    let g = input.magnitude();
    Ok(lam
        .data
        .par_chunks(d.max(1))
        .enumerate()
        .map(|(q, row)| {
            let (mut a0, mut a1, mut e) = (bias[q], bias[q], err[q] + bias[q].abs() * gam);
            for i in 0..d {
                let v = row[i];
                a0 += v * c0[i] - v.abs() * r[i];
                a1 += v * (c0[i] + c1[i]) - v.abs() * r[i];
                e += gam * v.abs() * g.data[i];
            }
            a0.min(a1) - e
        })
        .reduce(|| f64::INFINITY, f64::min))
}

/// Λ through convolution `i` (input shape `dims`, input magnitude `mag`): `Wᵀ Λ`, the bias
/// `Σ Λ·b` moved to `bias`, and the rounding of both (against `|W| mag` and `|b|`) to `err`.
#[allow(clippy::too_many_arguments)]
fn conv_back(
    net: &Net64,
    i: usize,
    lam: &Batch,
    dims: [usize; 3],
    mag: &Batch,
    j: usize,
    bias: &mut [f64],
    err: &mut [f64],
) -> Result<Batch> {
    let c = &net.convs[i];
    let out = c.transpose(lam, dims)?;
    let wmag = c.abs_part(mag)?;
    let [co, oh, ow] = lam.dims;
    let plane = oh * ow;
    let gam = 2.0 * gamma(c.c_in * c.k * c.k + co * plane + 2);
    let terms: Vec<(f64, f64)> = lam
        .data
        .par_chunks(lam.dim().max(1))
        .enumerate()
        .map(|(pj, row)| {
            let wm = &wmag.data[(pj / j) * lam.dim()..(pj / j + 1) * lam.dim()];
            let (mut b, mut e) = (0.0, 0.0);
            for (q, (&v, &m)) in row.iter().zip(wm).enumerate() {
                let bo = c.bias[q / plane.max(1)];
                b += v * bo;
                e += v.abs() * (m + bo.abs());
            }
            debug_assert_eq!(row.len(), co * plane);
            (b, e)
        })
        .collect();
    for (q, (b, e)) in terms.into_iter().enumerate() {
        bias[q] += b;
        err[q] += gam * e;
    }
    Ok(out)
}

/// The transpose of option A's shortcut: the channels `pad..pad + c` of Λ, at the (subsampled)
/// positions of the saved input, zero elsewhere.
fn pad_a_back(lam: &Batch, dims: [usize; 3], pad: usize, subsample: bool) -> Batch {
    let [c, h, w] = dims;
    let [_, oh, ow] = lam.dims;
    let s = if subsample { 2 } else { 1 };
    let din = c * h * w;
    let mut data = vec![0.0; lam.n * din];
    data.par_chunks_mut(din.max(1)).enumerate().for_each(|(p, row)| {
        let l = &lam.data[p * lam.dim()..(p + 1) * lam.dim()];
        for ci in 0..c {
            for i in 0..oh {
                for jx in 0..ow {
                    row[(ci * h + s * i) * w + s * jx] = l[((pad + ci) * oh + i) * ow + jx];
                }
            }
        }
    });
    Batch { n: lam.n, dims, data }
}

/// [`margin_bounds`], with the zonotopes computed on `device`: the intervals whose zonotope
/// bound is finite but not positive then go through the CPU path for CROWN, whose zonotope is
/// the same, so the bounds are the CPU's exactly.
pub(crate) fn margin_bounds_on(
    device: Option<&dyn crate::device::ZonoDevice>,
    net: &Net64,
    op0: usize,
    xs: Vec<Zono>,
    targets: &[usize],
) -> Result<Vec<f64>> {
    let Some(device) = device else {
        return margin_bounds(net, op0, xs, targets);
    };
    let mut bounds = device.zonotope_bounds(net, op0, &xs, targets)?;
    let redo: Vec<usize> = (0..bounds.len())
        .filter(|&k| !(bounds[k] > 0.0 || bounds[k] == f64::NEG_INFINITY))
        .collect();
    if !redo.is_empty() {
        let again = margin_bounds(
            net,
            op0,
            redo.iter().map(|&k| xs[k].clone()).collect(),
            &redo.iter().map(|&k| targets[k]).collect::<Vec<_>>(),
        )?;
        for (&k, b) in redo.iter().zip(again) {
            bounds[k] = b;
        }
    }
    Ok(bounds)
}

/// Lower bounds of the class margin of each interval (`xs`, its stretch of the segment
/// entering the program at `op0`), `targets[p]` the class of interval `p`.
///
/// The bound of an interval is the larger of two sound ones: the zonotope's at the classifier
/// ([`crate::zonotope`]), and CROWN's back-substitution of the margins through the
/// relaxations the zonotope's concrete bounds chose (its nine objectives through each
/// convolution together). Each interval goes through both on its own, the intervals in
/// parallel: going op by op over all of them streamed every interval's symbols (hundreds of
/// MB a round) through memory at each op, where one interval's levels stay in the caches.
pub(crate) fn margin_bounds(net: &Net64, op0: usize, xs: Vec<Zono>, targets: &[usize]) -> Result<Vec<f64>> {
    xs.into_par_iter()
        .zip(targets.par_iter())
        .map(|(x, &target)| {
            let input = x.clone();
            let (zono, records) = zonotope::forward(net, op0, x, target)?;
            // CROWN costs nine backward passes: only where the zonotope alone is not enough.
            // An interval the zonotope gave up on (−∞) has no valid records past that point.
            if zono > 0.0 || zono == f64::NEG_INFINITY {
                return Ok(zono);
            }
            Ok(zono.max(crown(net, op0, &records, &input, target)?))
        })
        .collect()
}
