//! The forward pass of the bounds: zonotopes in the path parameter (DeepZ, Singh et al. 2018).
//!
//! On one interval, every neuron of the head is written
//!
//! ```text
//! x = c0 + s·c1 + Σ_i e_i ε_i ± r,    s ∈ [0, 1], ε_i ∈ [−1, 1],
//! ```
//!
//! with one noise symbol `ε_i` per ReLU the interval makes unstable (its relaxation's error)
//! and a box radius `r ≥ 0` for rounding and for symbols past the budget. Affine layers map
//! the centre, slope and every symbol's coefficients through the signed weights, so the
//! correlations a residual sum or the classifier relies on survive (carrying `[lower, upper]`
//! lines forward instead pays `|W|` at every layer, which is what made the first bounds too
//! loose on a trained ResNet-20). A ReLU with concrete bounds `l < 0 < u` becomes
//! `λ x + μ + μ ε_new`, `λ = u/(u − l)`; a max-pool window whose winner is not certain becomes a
//! box. The concrete bounds found here choose the relaxations of the backward (CROWN) pass.
//!
//! The zonotope is computed in f64 without outward rounding. A rigorous rounding box would
//! have to go through `|W|` at every layer, which multiplies it by the layer's `‖|W|‖`
//! (about 8 on a trained ResNet-20: 10⁻¹⁴ at the input became 10³ at the classifier). The
//! f64 error itself stays near 10⁻¹³ relative, so it is covered instead by the tolerance
//! a margin must clear (see [`crate::bounds`]).
//!
//! A symbol is zero outside the pixels its neuron can reach, so every row after the centre
//! and slope is kept over its window only ([`crate::window`]): the convolutions, ReLU
//! scalings and sums work on a third of the planes in the input space, with the same numbers.

use crate::bounds::{gamma, Record, U};
use crate::error::Result;
use crate::net::{pool_out, pool_window, Batch, Net64, Op, Shortcut64, POOL_K, POOL_PAD, POOL_STRIDE};
use crate::window::{Row, Window};
use rayon::prelude::*;

/// One interval's zonotope on one tensor of shape `dims`: `rows` holds the centre, the
/// slope, then one row per symbol, each over its window (see [`crate::window`]; the centre
/// and slope are dense).
#[derive(Clone, Debug)]
pub(crate) struct Zono {
    pub dims: [usize; 3],
    pub rows: Vec<Row>,
    pub r: Vec<f64>,
    /// The neurons at which every row is zero, where a ReLU has just left them stably
    /// inactive: the next convolution skips them ([`crate::shared_zeros`]).
    pub zero: Option<Vec<bool>>,
}

/// Bytes one zonotope tensor may take: the symbol budget of a layer is this over its size.
/// Swept on the demo ResNet-20's paths (BENCHMARKS.md, "The symbol budget swept"): intervals
/// that carry more symbols cost more than in proportion to their width, and intervals given
/// up late waste the work done before the give-up: 16 MiB ties 32 MiB on the input space and
/// is faster, in a quarter of the peak memory, on `layer1`.
const TENSOR_BYTES: usize = 16 << 20;

/// The point `a + t·dir`: the one formula the search's evaluations, the bounds' stretches and
/// ExactLine's sub-segments use, so that they speak of the same points.
pub(crate) fn point<'a>(a: &'a [f64], dir: &'a [f64], t: f64) -> impl Iterator<Item = f64> + 'a {
    a.iter().zip(dir).map(move |(a, d)| a + t * d)
}

impl Zono {
    /// The stretch `t ∈ [t0, t1]` of the segment `a + t·dir` (rows of shape `dims`), as
    /// `c0 + s c1` with `c0 = a + t0·dir`, `c1 = (t1 − t0)·dir`, `s ∈ [0, 1]`. Their rounding
    /// (a few units of 10⁻¹⁶ relative) is left to the tolerance, as the zonotope's is.
    pub fn stretch(dims: [usize; 3], a: &[f64], dir: &[f64], t0: f64, t1: f64) -> Zono {
        // t0 and t1 are dyadic (ends of bisections of [0, 1]): their difference is exact.
        let w = t1 - t0;
        Zono {
            dims,
            rows: vec![
                Row::full(dims, point(a, dir, t0).collect()),
                Row::full(dims, dir.iter().map(|d| w * d).collect()),
            ],
            r: vec![0.0; a.len()],
            zero: None,
        }
    }

    fn d(&self) -> usize {
        self.dims.iter().product()
    }

    fn n(&self) -> usize {
        self.rows.len()
    }

    /// Row `i` as a dense slice of the tensor's shape.
    pub fn row(&self, i: usize) -> std::borrow::Cow<'_, [f64]> {
        self.rows[i].dense(self.dims)
    }

    /// Per neuron: `Σ_i |e_i|`, and the magnitude bound `|c0| + |c1| + Σ|e_i| + r`.
    fn spread(&self) -> (Vec<f64>, Vec<f64>) {
        let [_, h, w] = self.dims;
        let d = self.d();
        let plane = h * w;
        let mut sum = vec![0.0; d];
        // Channel by channel in parallel, each neuron's sum in symbol order (the same bits
        // for every thread count).
        sum.par_chunks_mut(plane.max(1)).enumerate().for_each(|(ch, out)| {
            for row in &self.rows[2.min(self.n())..] {
                let win = row.win;
                for (k, j, len) in win.runs([1, h, w]) {
                    let src = &row.data[ch * win.area() + j..][..len];
                    out[k..k + len].iter_mut().zip(src).for_each(|(a, v)| *a += v.abs());
                }
            }
        });
        let (c0, c1) = (self.row(0), self.row(1));
        let g = (0..d).map(|k| c0[k].abs() + c1[k].abs() + sum[k] + self.r[k]).collect();
        (sum, g)
    }

    pub fn magnitude(&self) -> Batch {
        Batch {
            n: 1,
            dims: self.dims,
            data: self.spread().1,
        }
    }

    /// Concrete bounds `(l, u)` of every neuron on `s ∈ [0, 1]`, widened by their rounding.
    pub(crate) fn concrete(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.d();
        let (sum, g) = self.spread();
        let (c0, c1) = (self.row(0), self.row(1));
        (0..d)
            .map(|k| {
                let (c0, c1) = (c0[k], c1[k]);
                let w = sum[k] + self.r[k] + 8.0 * U * g[k];
                (c0.min(c0 + c1) - w, c0.max(c0 + c1) + w)
            })
            .unzip()
    }
}

/// Whether `fresh` new symbols overflow the budget of a tensor of `d` neurons that carries
/// `rows` rows (a centre, a slope and `rows − 2` symbols): the ReLU's give-up test, on the
/// CPU and on the device.
pub(crate) fn over_budget(d: usize, rows: usize, fresh: usize) -> bool {
    fresh > budget(d).saturating_sub(rows - 2)
}

/// The most symbols a tensor of `d` neurons may carry.
fn budget(d: usize) -> usize {
    (TENSOR_BYTES / 8 / d.max(1)).saturating_sub(2).clamp(16, 512)
}

/// The ReLU's relaxation of each neuron from its concrete bounds: the factor of its rows
/// (kept 1, zeroed 0, or λ), and `(neuron, μ)` of each new symbol, in neuron order.
pub(crate) fn relax(lo: &[f64], hi: &[f64]) -> (Vec<f64>, Vec<(usize, f64)>) {
    let d = lo.len();
    let mut fresh: Vec<(usize, f64)> = Vec::new();
    let mut scale = vec![1.0; d];
    for k in 0..d {
        let (l, u) = (lo[k], hi[k]);
        if l >= 0.0 {
            continue;
        }
        if u <= 0.0 {
            scale[k] = 0.0;
            continue;
        }
        // relu(x) − λx lies in [0, max(−λl, u(1 − λ))] on [l, u] for any λ in [0, 1]: the
        // rounded λ is as sound as the exact one.
        let lambda = (u / (u - l)).clamp(0.0, 1.0);
        let mu = 0.5 * (-lambda * l).max(u * (1.0 - lambda)) * (1.0 + 8.0 * U);
        scale[k] = lambda;
        fresh.push((k, mu));
    }
    (scale, fresh)
}

/// The box radius through the ReLU's factors (zero where it zeroes the neuron).
pub(crate) fn scale_box(r: &mut [f64], scale: &[f64]) {
    r.iter_mut()
        .zip(scale)
        .for_each(|(v, &f)| *v = if f == 0.0 { 0.0 } else { *v * f });
}

/// The ReLU; `None` when the interval makes more neurons unstable than the symbol budget
/// holds: its bound would be far too loose to certify anything, so it is split instead.
fn relu(x: Zono, lo: &[f64], hi: &[f64]) -> Option<Zono> {
    let dims = x.dims;
    let mut z = x;
    let (scale, fresh) = relax(lo, hi);
    if over_budget(z.d(), z.n(), fresh.len()) {
        return None;
    }
    // A symbol the ReLU zeroed on the edge of its window need not be carried there.
    z.rows
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, row)| row.scale(dims, &scale, i >= 2));
    scale_box(&mut z.r, &scale);
    z.zero = Some(scale.iter().map(|&f| f == 0.0).collect());
    let [c, h, w] = dims;
    let c0 = &mut z.rows[0].data;
    for &(k, mu) in &fresh {
        c0[k] += mu;
    }
    z.rows.extend(fresh.iter().map(|&(k, mu)| {
        let (ch, y, x) = (k / (h * w), k / w % h, k % w);
        let mut data = vec![0.0; c];
        data[ch] = mu;
        Row {
            win: Window::pixel(y, x),
            data,
        }
    }));
    Some(z)
}

/// The max-pool, with the same choice per window as CROWN's record: the input of largest
/// lower bound is copied when it beats every other's upper bound, else the window is a box.
pub(crate) fn max_pool(x: &Zono, lo: &[f64], hi: &[f64]) -> (Zono, Vec<(usize, bool, f64)>) {
    let [c, h, w] = x.dims;
    let (oh, ow) = (pool_out(h), pool_out(w));
    let dout = c * oh * ow;
    let out_dims = [c, oh, ow];
    let mut centre = vec![0.0; dout];
    let mut r = vec![0.0; dout];
    let mut choice = Vec::with_capacity(dout);
    let mut win = Vec::with_capacity(9);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                pool_window(h, w, oy, ox, &mut win);
                let base = ch * h * w;
                let best = (0..win.len())
                    .max_by(|&a, &b| lo[base + win[a]].total_cmp(&lo[base + win[b]]))
                    .expect("a window holds at least one input");
                let others = (0..win.len())
                    .filter(|&q| q != best)
                    .map(|q| hi[base + win[q]])
                    .fold(f64::NEG_INFINITY, f64::max);
                let top = win.iter().map(|&q| hi[base + q]).fold(f64::NEG_INFINITY, f64::max);
                let (o, src) = ((ch * oh + oy) * ow + ox, base + win[best]);
                let alone = lo[src] >= others;
                if alone {
                    centre[o] = x.rows[0].get(x.dims, src);
                    r[o] = x.r[src];
                } else {
                    let l = lo[src];
                    centre[o] = 0.5 * (l + top);
                    r[o] = 0.5 * (top - l);
                }
                choice.push((win[best], alone, top));
            }
        }
    }
    // Every other row: the copied inputs, zero in the boxed windows, over the outputs that
    // read the row's window.
    let rows: Vec<Row> = x.rows[1..]
        .par_iter()
        .map(|row| {
            let out = row.win.slide(POOL_K, POOL_STRIDE, POOL_PAD, oh, ow);
            let mut data = vec![0.0; c * out.area()];
            for (k, j, len) in out.runs(out_dims) {
                for q in 0..len {
                    let (o, (p, alone, _)) = (k + q, choice[k + q]);
                    if alone {
                        let ch = o / (oh * ow);
                        data[j + q] = row.get(x.dims, ch * h * w + p);
                    }
                }
            }
            Row { win: out, data }
        })
        .collect();
    let mut all = Vec::with_capacity(x.n());
    all.push(Row::full(out_dims, centre));
    all.extend(rows);
    (
        Zono {
            dims: out_dims,
            rows: all,
            r,
            zero: None,
        },
        choice,
    )
}

/// `y ← y + x`, `x` carrying the first symbols of `y` (it was saved before `y` made more).
fn add(y: &mut Zono, x: &Zono) {
    let dims = y.dims;
    y.rows
        .par_iter_mut()
        .zip(x.rows.par_iter())
        .for_each(|(a, b)| a.add(dims, b));
    y.r.iter_mut().zip(&x.r).for_each(|(a, b)| *a += b);
}

pub(crate) fn avg_pool(x: &Zono) -> Zono {
    let [c, h, w] = x.dims;
    let hw = (h * w).max(1);
    let out_dims = [c, 1, 1];
    // Each channel's sum over the `area` pixels stored, over the whole plane: a windowed
    // row's sum is the dense sum less additions of zero.
    let means = |data: &[f64], area: usize| -> Vec<f64> {
        data.chunks(area.max(1))
            .map(|p| p.iter().sum::<f64>() / hw as f64)
            .chain(std::iter::repeat(0.0))
            .take(c)
            .collect()
    };
    let rows = x
        .rows
        .par_iter()
        .enumerate()
        .map(|(i, row)| {
            if i >= 2 && row.win.is_empty() {
                return Row::zero();
            }
            Row::full(out_dims, means(&row.data, row.win.area()))
        })
        .collect();
    Zono {
        dims: out_dims,
        rows,
        r: means(&x.r, hw),
        zero: None,
    }
}

/// The lower bound of `min_{j ≠ target} (logit_target − logit_j)` on the interval.
pub(crate) fn margins(net: &Net64, x: &Zono, target: usize) -> f64 {
    let (f, k) = (net.features, net.classes);
    let g = x.spread().1;
    let gam = 2.0 * gamma(f + 4);
    let wc = &net.fc_w[target * f..(target + 1) * f];
    (0..k)
        .filter(|&j| j != target)
        .map(|j| {
            let wj = &net.fc_w[j * f..(j + 1) * f];
            let dw: Vec<f64> = wc.iter().zip(wj).map(|(a, b)| a - b).collect();
            let dot = |row: &[f64]| dw.iter().zip(row).map(|(a, b)| a * b).sum::<f64>();
            let db = net.fc_b[target] - net.fc_b[j];
            let (a0, a1) = (dot(&x.row(0)), dot(&x.row(1)));
            let noise: f64 = (2..x.n()).map(|i| dot(&x.row(i)).abs()).sum();
            let boxed: f64 = dw.iter().zip(&x.r).map(|(a, r)| a.abs() * r).sum();
            let err: f64 = wc
                .iter()
                .zip(wj)
                .zip(&g)
                .map(|((a, b), g)| (a.abs() + b.abs()) * g)
                .sum::<f64>()
                + net.fc_b[target].abs()
                + net.fc_b[j].abs();
            (a0 + db).min(a0 + a1 + db) - noise - boxed - gam * (1.0 + x.n() as f64 * 4.0 * U) * err
        })
        .fold(f64::INFINITY, f64::min)
}

/// Convolution `i` of one interval's zonotope: its rows convolved over their windows (see
/// [`crate::conv`]), the box through `|W|`.
fn conv(net: &Net64, i: usize, x: &Zono) -> Result<Zono> {
    let c = &net.convs[i];
    let inputs: Vec<&Row> = x.rows.iter().collect();
    // One just out of a ReLU skips the zeros all its rows share.
    let (mut rows, dims) = match &x.zero {
        Some(zero) => c.linear_rows_shared(&inputs, x.dims, zero)?,
        None => c.linear_rows(&inputs, x.dims)?,
    };
    let d: usize = dims.iter().product();
    let plane = dims[1] * dims[2];
    // The box only holds relaxation errors past the symbol budget: most layers have none.
    let r = if x.r.iter().any(|&v| v != 0.0) {
        c.abs_part(&Batch {
            n: 1,
            dims: x.dims,
            data: x.r.clone(),
        })?
        .data
    } else {
        vec![0.0; d]
    };
    // The centre is dense.
    for (k, v) in rows[0].data.iter_mut().enumerate() {
        *v += c.bias[k / plane.max(1)];
    }
    Ok(Zono {
        dims,
        rows,
        r,
        zero: None,
    })
}

/// Option A's shortcut of a saved zonotope, in the shape `out_dims` of the sum.
pub(crate) fn pad_a(saved: &Zono, out_dims: [usize; 3], pad: usize, subsample: bool) -> Zono {
    let [c, h, w] = saved.dims;
    let [_, oh, ow] = out_dims;
    let s = if subsample { 2 } else { 1 };
    // Output (oy, ox) of channel pad + ci reads (ci, s·oy, s·ox).
    let map = |row: &Row| {
        let win = row.win.slide(1, s, 0, oh, ow);
        let mut data = vec![0.0; out_dims[0] * win.area()];
        for ci in 0..if win.is_empty() { 0 } else { c } {
            for (q, oy) in (win.y0..win.y1).enumerate() {
                for (t, ox) in (win.x0..win.x1).enumerate() {
                    data[((pad + ci) * win.height() + q) * win.width() + t] =
                        row.get(saved.dims, (ci * h + s * oy) * w + s * ox);
                }
            }
        }
        Row { win, data }
    };
    let r = map(&Row::full(saved.dims, saved.r.clone()))
        .dense(out_dims)
        .into_owned();
    Zono {
        dims: out_dims,
        rows: saved.rows.par_iter().map(map).collect(),
        r,
        zero: None,
    }
}

/// Runs one interval's zonotope from op `op0` through the head: the margin's lower bound and
/// the record of every op for the backward pass. The bound is −∞ for an interval given up on
/// (see `relu`), whose records stop at that ReLU.
pub(crate) fn forward(net: &Net64, op0: usize, x: Zono, target: usize) -> Result<(f64, Vec<Record>)> {
    let mut records = Vec::with_capacity(net.ops.len() - op0);
    let mut stack = vec![x];
    // The magnitude of the top, for the ops that record it. A ReLU's output is bounded by its
    // input's upper bounds, which it computed anyway; a block's input is recorded by its Save,
    // first convolution and shortcut sum. A pass over every symbol saved each time.
    let mut top_mag: Option<Batch> = None;
    let mut saved_mags: Vec<Batch> = Vec::new();
    // After a Save the top is the saved level itself (`stack.last()`), not a copy, until the
    // block's first convolution has read it.
    let mut aliased = false;
    for op in op0..net.ops.len() {
        let after_save = std::mem::take(&mut aliased);
        // A copy of the saved level for any op but the block's first convolution.
        let take_top = |stack: &mut Vec<Zono>| {
            if after_save {
                stack.last().expect("the saved level").clone()
            } else {
                stack.pop().expect("the program keeps a top")
            }
        };
        let cached_mag = top_mag.take();
        let mag_of = move |z: &Zono| cached_mag.unwrap_or_else(|| z.magnitude());
        let mag_record = |m: Batch| Record::Mag(m.dims, m);
        let out = match net.ops[op] {
            Op::Conv(i) => {
                let popped = (!after_save).then(|| stack.pop().expect("the program keeps a top"));
                let input = popped
                    .as_ref()
                    .unwrap_or_else(|| stack.last().expect("the saved level"));
                records.push(mag_record(mag_of(input)));
                conv(net, i, input)?
            }
            Op::Relu => {
                let z = take_top(&mut stack);
                let (lo, hi) = z.concrete();
                // |relu(x)| ≤ max(u, 0): a bound on the output's magnitude for free.
                let m = Batch {
                    n: 1,
                    dims: z.dims,
                    data: hi.iter().map(|&u| if u < 0.0 { 0.0 } else { u }).collect(),
                };
                let out = relu(z, &lo, &hi);
                records.push(Record::Relu { lo, hi });
                let Some(out) = out else {
                    return Ok((f64::NEG_INFINITY, records));
                };
                top_mag = Some(m);
                out
            }
            Op::MaxPool => {
                let z = take_top(&mut stack);
                let mag = mag_of(&z);
                let (lo, hi) = z.concrete();
                let (out, choice) = max_pool(&z, &lo, &hi);
                records.push(Record::Pool {
                    dims: z.dims,
                    mag,
                    choice,
                });
                out
            }
            Op::Save => {
                let z = take_top(&mut stack);
                let mag = mag_of(&z);
                records.push(mag_record(mag.clone()));
                top_mag = Some(mag.clone());
                saved_mags.push(mag);
                stack.push(z);
                aliased = true;
                continue;
            }
            Op::AddShortcut(sc) => {
                let mut z = take_top(&mut stack);
                let saved = stack.pop().expect("a saved block input");
                records.push(mag_record(saved_mags.pop().expect("a saved block input's magnitude")));
                let share = match sc {
                    Shortcut64::Identity => saved,
                    Shortcut64::Projection(i) => conv(net, i, &saved)?,
                    Shortcut64::PadA { pad, subsample } => pad_a(&saved, z.dims, pad, subsample),
                };
                add(&mut z, &share);
                z
            }
            Op::AvgPool => {
                let z = take_top(&mut stack);
                records.push(mag_record(mag_of(&z)));
                avg_pool(&z)
            }
            Op::Linear => {
                let z = take_top(&mut stack);
                records.push(mag_record(mag_of(&z)));
                return Ok((margins(net, &z, target), records));
            }
        };
        stack.push(out);
    }
    Err(crate::error::CertifyError::Shape {
        what: "the network's program".into(),
        expected: "a classifier at its end".into(),
        found: "none".into(),
    })
}
