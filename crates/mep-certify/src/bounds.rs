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
use crate::net::{pool_out, Batch, Net64, Op, Shortcut64};
use crate::zonotope::{self, Zono};
use rayon::prelude::*;

/// The unit roundoff of f64.
pub(crate) const U: f64 = f64::EPSILON / 2.0;

/// Higham's `γ_n`: a bound on the relative error of a sum of `n` products in f64.
pub(crate) fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    nu / (1.0 - nu)
}

/// Bounds of `n` intervals on one tensor of per-interval shape `dims` (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Bounds {
    pub m0: Batch,
    pub m1: Batch,
    pub r0: Batch,
    pub r1: Batch,
}

impl Bounds {
    fn n(&self) -> usize {
        self.m0.n
    }

    /// The interval `[t0, t1]` of each segment `a + t d` (f64 rows of `dims`): `M` exact up to
    /// rounding, `R` that rounding.
    pub fn segments(dims: [usize; 3], rows: &[(&[f64], &[f64], f64, f64)]) -> Bounds {
        let d: usize = dims.iter().product();
        let n = rows.len();
        let mut m0 = vec![0.0; n * d];
        let mut m1 = vec![0.0; n * d];
        let mut r0 = vec![0.0; n * d];
        m0.par_chunks_mut(d.max(1))
            .zip(m1.par_chunks_mut(d.max(1)))
            .zip(r0.par_chunks_mut(d.max(1)))
            .zip(rows.par_iter())
            .for_each(|(((m0, m1), r0), &(a, dir, t0, t1))| {
                // t0 and t1 are dyadic (ends of bisections of [0, 1]): their difference is exact.
                let w = t1 - t0;
                for k in 0..d {
                    m0[k] = a[k] + t0 * dir[k];
                    m1[k] = w * dir[k];
                    // The rounding of m0 and m1 (a few units of 10⁻¹⁶ relative) is left to the
                    // tolerance, as in the zonotope.
                    r0[k] = 0.0;
                }
            });
        let batch = |data| Batch { n, dims, data };
        Bounds {
            m0: batch(m0),
            m1: batch(m1),
            r0: batch(r0),
            r1: batch(vec![0.0; n * d]),
        }
    }

    /// `|m0| + |m1| + |r0| + |r1|` per neuron: a bound on every magnitude a rounding error is
    /// relative to on `s ∈ [0, 1]`.
    fn magnitude(&self) -> Batch {
        let mut data = self.m0.data.clone();
        data.par_iter_mut()
            .zip(self.m1.data.par_iter())
            .zip(self.r0.data.par_iter().zip(self.r1.data.par_iter()))
            .for_each(|((g, m1), (r0, r1))| *g = g.abs() + m1.abs() + r0.abs() + r1.abs());
        Batch {
            n: self.n(),
            dims: self.m0.dims,
            data,
        }
    }
}

/// What the backward pass needs of each op of the forward one.
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
/// relaxations the forward pass chose, down to the one-dimensional input. `records[o − op0]`
/// belongs to op `o`, the last to the classifier; `input` is the bounds of the points at `op0`.
fn crown(net: &Net64, op0: usize, records: &[Record], input: &Bounds, targets: &[usize]) -> Result<Vec<f64>> {
    let (f, k) = (net.features, net.classes);
    let j = k - 1;
    let n = input.n();
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
    // At the input: Λ·(m0 + s m1) + bias − |Λ|·(r0 + s r1), smallest at s = 0 or 1.
    let d = lam.dim();
    let gam = 2.0 * gamma(d + 4);
    let g = input.magnitude();
    let lbs: Vec<f64> = lam
        .data
        .par_chunks(d.max(1))
        .enumerate()
        .map(|(pj, row)| {
            let p = pj / j;
            let (m0, m1, r0, r1, gp) = (
                &input.m0.data[p * d..(p + 1) * d],
                &input.m1.data[p * d..(p + 1) * d],
                &input.r0.data[p * d..(p + 1) * d],
                &input.r1.data[p * d..(p + 1) * d],
                &g.data[p * d..(p + 1) * d],
            );
            let (mut a0, mut a1, mut e) = (bias[pj], bias[pj], err[pj] + bias[pj].abs() * gam);
            for q in 0..d {
                let v = row[q];
                a0 += v * m0[q] - v.abs() * r0[q];
                a1 += v * (m0[q] + m1[q]) - v.abs() * (r0[q] + r1[q]);
                e += gam * v.abs() * gp[q];
            }
            a0.min(a1) - e
        })
        .collect();
    Ok((0..n)
        .map(|p| lbs[p * j..(p + 1) * j].iter().copied().fold(f64::INFINITY, f64::min))
        .collect())
}

fn add_assign(y: &mut [f64], x: &[f64]) {
    y.par_iter_mut().zip(x.par_iter()).for_each(|(a, b)| *a += b);
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

/// Lower bounds of the class margin of each interval in `x` (entering the program at `op0`),
/// `targets[p]` the class of interval `p`.
///
/// The bound of an interval is the larger of two sound ones: the zonotope's at the classifier
/// ([`crate::zonotope`]), and CROWN's back-substitution of the margins through the relaxations
/// the zonotope's concrete bounds chose. Intervals go one at a time; each layer's convolutions
/// run over the zonotope's rows (centre, slope, symbols) or CROWN's nine objectives at once.
pub(crate) fn margin_bounds(net: &Net64, op0: usize, x: Bounds, targets: &[usize]) -> Result<Vec<f64>> {
    let dims = x.m0.dims;
    let d = x.m0.dim();
    let row = |b: &Batch, p: usize| b.data[p * d..(p + 1) * d].to_vec();
    let zs = (0..x.n())
        .map(|p| Zono::new(dims, &row(&x.m0, p), &row(&x.m1, p), &row(&x.r0, p)))
        .collect();
    let forward = zonotope::forward(net, op0, zs, targets)?;
    forward
        .into_iter()
        .enumerate()
        .map(|(p, (zono, records))| {
            // CROWN costs nine backward passes: only where the zonotope alone is not enough.
            // An interval the zonotope gave up on (−∞) has no valid records past that point.
            if zono > 0.0 || zono == f64::NEG_INFINITY {
                return Ok(zono);
            }
            let one = |b: &Batch| Batch {
                n: 1,
                dims,
                data: row(b, p),
            };
            let input = Bounds {
                m0: one(&x.m0),
                m1: one(&x.m1),
                r0: one(&x.r0),
                r1: one(&x.r1),
            };
            let back = crown(net, op0, &records, &input, &targets[p..p + 1])?;
            Ok(zono.max(back[0]))
        })
        .collect()
}
