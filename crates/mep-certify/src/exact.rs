//! The linear restriction of the network to a segment (ExactLine: Sotoudeh & Thakur,
//! "Computing Linear Restrictions of Neural Networks", NeurIPS 2019, Algorithm 1).
//!
//! A trace is a contiguous run of breakpoints `t_0 < … < t_m` of the segment together with
//! the value, at each breakpoint, of every tensor still live at the current op (the top of
//! the stack and a block's saved input). Between two consecutive breakpoints everything
//! computed so far is affine in `t`, so affine ops run pointwise on the breakpoints. A ReLU
//! adds the zero crossing `t_i + (t_{i+1} − t_i)·a/(a − b)` of each neuron whose
//! pre-activation changes sign from `a` to `b` over a piece; a max-pool adds the kinks of the
//! upper envelope of its window's affine inputs. Every live tensor at a new breakpoint is the
//! linear interpolation of its two neighbours, exact because it is affine on the piece.
//!
//! Memory is bounded by [`CertifyOptions::batch`]: a trace that would grow past it is cut at
//! breakpoints into sub-traces, kept on a stack and run left to right, each resuming at the op
//! where it was cut (a cut point is a breakpoint of the partition, so no spurious breakpoint
//! arises and no layer is recomputed).

use crate::error::{CertifyError, Result};
use crate::net::{pool_out, pool_window, Batch, Net64, Op};
use rayon::prelude::*;

/// Structural decisions (a pre-activation counted as zero, two crossings merged) use this
/// fraction of [`CertifyOptions::tol`], so that the error they make in the logits stays well
/// below the tolerance at which a margin is called undecided.
const STRUCTURE: f64 = 1.0 / 64.0;

/// How a segment is certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// Bound propagation with bisection over `t`; the intervals it leaves undecided (at
    /// [`CertifyOptions::min_width`] or past [`CertifyOptions::max_intervals`]) go to ExactLine.
    Auto,
    /// Bound propagation with bisection alone: what it cannot decide stays undecided.
    Bounds,
    /// ExactLine alone: the whole partition of each segment. The default: on a trained
    /// ResNet-20 it is about 1.5× faster than the bounds on segments of up to ~10^5 pieces,
    /// though the bounds decide larger ones it cannot (BENCHMARKS.md, "Bounds vs ExactLine").
    #[default]
    Exact,
}

impl Method {
    /// The name the command line and the certificates use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Bounds => "bounds",
            Method::Exact => "exact",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Method::Auto),
            "bounds" => Ok(Method::Bounds),
            "exact" => Ok(Method::Exact),
            _ => Err(format!("unknown method `{s}`: expected auto, bounds or exact")),
        }
    }
}

/// How far and how carefully to go.
#[derive(Clone, Debug, PartialEq)]
pub struct CertifyOptions {
    /// Bounds with bisection, ExactLine, or the first with the second on what is left.
    pub method: Method,
    /// The most intervals the bound propagation examines for one path (all its segments
    /// together) before it stops bisecting.
    pub max_intervals: usize,
    /// Intervals of `t` narrower than this are not bisected further: `auto` hands them to
    /// ExactLine, `bounds` leaves them undecided.
    pub min_width: f64,
    /// The most intervals whose bounds go through the network at once; fewer when their
    /// records would take more than about 4 GiB (a ResNet-50 at 224×224 goes one at a time).
    pub bound_batch: usize,
    /// The most pieces one segment may be cut into; past it the segment is undecided.
    pub max_pieces: usize,
    /// Relative tolerance. A margin within `tol · max_j |logit_j|` of zero at a breakpoint is
    /// undecided. Structural decisions use `tol / 64`: a pre-activation within that fraction of
    /// its layer's largest magnitude at a breakpoint counts as zero there (its sign change is
    /// that breakpoint), max-pool inputs that close are tied, and new breakpoints closer than
    /// `tol / 64` in `t` to another breakpoint are merged with it.
    pub tol: f64,
    /// The most breakpoints one trace carries through a layer at once (memory grows as
    /// `batch ×` the widest activation × 8 bytes × about 4). At least 4.
    pub batch: usize,
}

impl Default for CertifyOptions {
    fn default() -> Self {
        CertifyOptions {
            method: Method::Exact,
            max_intervals: 20_000,
            min_width: 1.0 / 4096.0,
            bound_batch: 32,
            max_pieces: 1_000_000,
            tol: 1e-9,
            batch: 256,
        }
    }
}

impl CertifyOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.tol.is_finite() && self.tol > 0.0 && self.tol < 1e-2) {
            return Err(CertifyError::Options {
                name: "tol",
                value: self.tol.to_string(),
                msg: "must be positive, finite and below 1e-2",
            });
        }
        if self.batch < 4 {
            return Err(CertifyError::Options {
                name: "batch",
                value: self.batch.to_string(),
                msg: "must be at least 4",
            });
        }
        if !(self.min_width > 0.0 && self.min_width <= 1.0) {
            return Err(CertifyError::Options {
                name: "min_width",
                value: self.min_width.to_string(),
                msg: "must be in (0, 1]",
            });
        }
        if self.max_intervals == 0 {
            return Err(CertifyError::Options {
                name: "max_intervals",
                value: "0".into(),
                msg: "must be positive",
            });
        }
        if self.bound_batch == 0 {
            return Err(CertifyError::Options {
                name: "bound_batch",
                value: "0".into(),
                msg: "must be positive",
            });
        }
        if self.max_pieces == 0 {
            return Err(CertifyError::Options {
                name: "max_pieces",
                value: "0".into(),
                msg: "must be positive",
            });
        }
        Ok(())
    }
}

/// The partition of `[0, 1]` into pieces on which `head(z(t))` is affine, with the logits at
/// every breakpoint.
#[derive(Clone, Debug)]
pub struct Partition {
    /// Increasing, from 0 to [`Partition::covered`].
    pub breakpoints: Vec<f64>,
    /// `breakpoints.len() × classes`, row `i` the logits at `breakpoints[i]`.
    pub logits: Vec<f64>,
    /// Logits per breakpoint.
    pub classes: usize,
    /// False when `max_pieces` ran out: the partition is exact on `[0, covered()]` only.
    pub complete: bool,
}

impl Partition {
    /// Pieces (breakpoints − 1).
    pub fn pieces(&self) -> usize {
        self.breakpoints.len().saturating_sub(1)
    }
    /// The end of the part of `[0, 1]` the partition covers (1 when complete).
    pub fn covered(&self) -> f64 {
        self.breakpoints.last().copied().unwrap_or(0.0)
    }
    /// The logits at breakpoint `i`.
    pub fn logits_at(&self, i: usize) -> &[f64] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }
    /// The logits at `t` in the covered range, interpolated on its piece (exact up to rounding).
    pub fn logits_at_t(&self, t: f64) -> Vec<f64> {
        let b = &self.breakpoints;
        if b.len() < 2 {
            return self.logits.clone();
        }
        let i = b.partition_point(|&x| x <= t).clamp(1, b.len() - 1) - 1;
        let s = (t - b[i]) / (b[i + 1] - b[i]);
        let (l0, l1) = (self.logits_at(i), self.logits_at(i + 1));
        l0.iter().zip(l1).map(|(a, c)| a + s * (c - a)).collect()
    }
}

/// A breakpoint to insert into piece `piece` (between breakpoints `piece` and `piece + 1`) at
/// local position `s ∈ (0, 1)`, global position `t`.
#[derive(Clone, Copy, Debug)]
struct NewPoint {
    piece: usize,
    s: f64,
    t: f64,
}

/// Where a row of a rebuilt trace comes from.
#[derive(Clone, Copy, Debug)]
enum Src {
    Old(usize),
    New(NewPoint),
}

struct Trace {
    op: usize,
    ts: Vec<f64>,
    stack: Vec<Batch>,
}

impl Trace {
    fn pieces(&self) -> usize {
        self.ts.len() - 1
    }

    /// A trace of the rows `plan` names, at the same op.
    fn rebuild(&self, plan: &[Src]) -> Trace {
        let ts = plan
            .iter()
            .map(|s| match *s {
                Src::Old(i) => self.ts[i],
                Src::New(p) => p.t,
            })
            .collect();
        let stack = self
            .stack
            .iter()
            .map(|b| {
                let d = b.dim();
                let mut data = vec![0.0; plan.len() * d];
                data.par_chunks_mut(d.max(1))
                    .zip(plan.par_iter())
                    .for_each(|(row, src)| match *src {
                        Src::Old(i) => row.copy_from_slice(b.row(i)),
                        Src::New(p) => {
                            let (x0, x1) = (b.row(p.piece), b.row(p.piece + 1));
                            for ((r, a), c) in row.iter_mut().zip(x0).zip(x1) {
                                *r = a + p.s * (c - a);
                            }
                        }
                    });
                Batch {
                    n: plan.len(),
                    dims: b.dims,
                    data,
                }
            })
            .collect();
        Trace { op: self.op, ts, stack }
    }
}

/// The largest magnitude of each row of `b`.
fn row_scales(b: &Batch) -> Vec<f64> {
    (0..b.n)
        .into_par_iter()
        .map(|p| b.row(p).iter().fold(0.0f64, |m, v| m.max(v.abs())))
        .collect()
}

/// Sorts the local positions `s` found in piece `i`, drops those within `eps` (in t) of the
/// piece's ends and merges those within `eps` of each other.
fn settle(ts: &[f64], i: usize, mut s: Vec<f64>, eps: f64) -> Vec<NewPoint> {
    s.sort_by(f64::total_cmp);
    let (t0, t1) = (ts[i], ts[i + 1]);
    let mut out: Vec<NewPoint> = Vec::new();
    let mut last = t0;
    for s in s {
        let t = t0 + s * (t1 - t0);
        if t - last > eps && t1 - t > eps {
            out.push(NewPoint { piece: i, s, t });
            last = t;
        }
    }
    out
}

// Sotoudeh & Thakur 2019, §4: a ReLU's pre-activation is affine on a piece, its zero at a/(a − b).
fn relu_points(tr: &Trace, eps: f64) -> Vec<NewPoint> {
    let top = tr.stack.last().expect("a trace keeps a top");
    let scales = row_scales(top);
    (0..tr.pieces())
        .into_par_iter()
        .flat_map_iter(|i| {
            let (za, zb) = (eps * scales[i], eps * scales[i + 1]);
            let s: Vec<f64> = top
                .row(i)
                .iter()
                .zip(top.row(i + 1))
                .filter(|&(&a, &b)| (a > za && b < -zb) || (a < -za && b > zb))
                .map(|(&a, &b)| a / (a - b))
                .collect();
            settle(&tr.ts, i, s, eps)
        })
        .collect()
}

/// The kinks in `(0, 1)` of the upper envelope of the lines `a_k + s·d_k`: lines within `z` of
/// each other at `s = 0` are tied (the steeper wins), slopes within `z` are parallel.
fn envelope_kinks(a: &[f64], d: &[f64], z: f64, out: &mut Vec<f64>) {
    let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut cur = (0..a.len())
        .filter(|&k| a[k] >= m - z)
        .max_by(|&i, &j| d[i].total_cmp(&d[j]))
        .expect("a pool window is not empty");
    let mut s_cur = 0.0f64;
    loop {
        let mut best: Option<(usize, f64)> = None;
        for k in 0..a.len() {
            if d[k] > d[cur] + z {
                let s = ((a[cur] - a[k]) / (d[k] - d[cur])).max(s_cur);
                let better = match best {
                    None => true,
                    Some((b, sb)) => s < sb || (s == sb && d[k] > d[b]),
                };
                if s < 1.0 && better {
                    best = Some((k, s));
                }
            }
        }
        match best {
            None => return,
            Some((k, s)) => {
                if s > 0.0 {
                    out.push(s);
                }
                cur = k;
                s_cur = s;
            }
        }
    }
}

// Sotoudeh & Thakur 2019, §4 (MaxPool): the arg-max of a window changes at the kinks of the
// upper envelope of its inputs, each affine on the piece.
fn pool_points(tr: &Trace, eps: f64) -> Vec<NewPoint> {
    let top = tr.stack.last().expect("a trace keeps a top");
    let scales = row_scales(top);
    let [c, h, w] = top.dims;
    let (oh, ow) = (pool_out(h), pool_out(w));
    (0..tr.pieces())
        .into_par_iter()
        .flat_map_iter(|i| {
            let z = eps * scales[i].max(scales[i + 1]);
            let (x0, x1) = (top.row(i), top.row(i + 1));
            let mut win = Vec::new();
            let (mut a, mut d, mut s) = (Vec::new(), Vec::new(), Vec::new());
            for ch in 0..c {
                let (p0, p1) = (&x0[ch * h * w..][..h * w], &x1[ch * h * w..][..h * w]);
                for oy in 0..oh {
                    for ox in 0..ow {
                        pool_window(h, w, oy, ox, &mut win);
                        a.clear();
                        d.clear();
                        for &q in &win {
                            a.push(p0[q]);
                            d.push(p1[q] - p0[q]);
                        }
                        envelope_kinks(&a, &d, z, &mut s);
                    }
                }
            }
            settle(&tr.ts, i, s, eps)
        })
        .collect()
}

/// The rows of the trace with `new` merged in, in order.
fn merge_plan(n_old: usize, new: &[NewPoint]) -> Vec<Src> {
    let mut plan = Vec::with_capacity(n_old + new.len());
    let mut k = 0;
    for i in 0..n_old {
        plan.push(Src::Old(i));
        while k < new.len() && new[k].piece == i {
            plan.push(Src::New(new[k]));
            k += 1;
        }
    }
    plan
}

/// Computes the partition of the segment `z(t) = z_a + t (z_b − z_a)` of points of shape
/// `dims` entering the program at `op0`.
pub(crate) fn partition(
    net: &Net64,
    op0: usize,
    dims: [usize; 3],
    z_a: Vec<f64>,
    z_b: Vec<f64>,
    opts: &CertifyOptions,
) -> Result<Partition> {
    opts.validate()?;
    let eps = opts.tol * STRUCTURE;
    let mut data = z_a;
    data.extend_from_slice(&z_b);
    let mut pending = vec![Trace {
        op: op0,
        ts: vec![0.0, 1.0],
        stack: vec![Batch { n: 2, dims, data }],
    }];
    let mut out = Partition {
        breakpoints: Vec::new(),
        logits: Vec::new(),
        classes: net.classes,
        complete: true,
    };
    let group = opts.batch / 2;
    'traces: while let Some(mut tr) = pending.pop() {
        while tr.op < net.ops.len() {
            let new = match net.ops[tr.op] {
                Op::Relu => relu_points(&tr, eps),
                Op::MaxPool => pool_points(&tr, eps),
                _ => Vec::new(),
            };
            if !new.is_empty() {
                let plan = merge_plan(tr.ts.len(), &new);
                let bound = out.pieces() + plan.len() - 1 + pending.iter().map(Trace::pieces).sum::<usize>();
                if bound > opts.max_pieces {
                    out.complete = false;
                    break 'traces;
                }
                if plan.len() > opts.batch {
                    // Cut at every `group`-th row; each part keeps its old rows and its two ends
                    // and finds its own new rows again when it resumes at this op.
                    let mut ends: Vec<usize> = (0..plan.len() - 1).step_by(group).collect();
                    ends.push(plan.len() - 1);
                    for w in ends.windows(2).rev() {
                        let mut part = vec![plan[w[0]]];
                        part.extend(plan[w[0] + 1..w[1]].iter().filter(|s| matches!(s, Src::Old(_))));
                        part.push(plan[w[1]]);
                        pending.push(tr.rebuild(&part));
                    }
                    continue 'traces;
                }
                tr = tr.rebuild(&plan);
            }
            net.apply(tr.op, &mut tr.stack)?;
            tr.op += 1;
        }
        let logits = tr.stack.pop().expect("the program ends in the logits");
        let skip = usize::from(out.breakpoints.last() == tr.ts.first());
        out.breakpoints.extend_from_slice(&tr.ts[skip..]);
        out.logits.extend_from_slice(&logits.data[skip * net.classes..]);
    }
    Ok(out)
}
