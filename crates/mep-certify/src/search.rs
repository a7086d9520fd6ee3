//! Branch and bound over the path parameter: bounds on whole intervals, bisection where they
//! are not enough, ExactLine on the few short intervals left.
//!
//! Every segment starts as one interval `[0, 1]`. A round takes up to
//! [`CertifyOptions::bound_batch`] intervals of any segments and paths and sends them through
//! the network together ([`crate::bounds`]). An interval whose margin lower bound is above the
//! tolerance is certified. Every other interval is split, in 2 or, when its bound is hopeless
//! (below `−100 · max|logit|`), in 8, and the split points are evaluated exactly (the f64
//! forward pass, batched too): a margin below `−tol · max|logit|` there refutes the path, with
//! that point as the counterexample; otherwise the parts are queued, or the interval is left
//! over once its parts would be narrower than [`CertifyOptions::min_width`] or the path has
//! used its [`CertifyOptions::max_intervals`]. `auto` runs ExactLine on each leftover
//! interval (short intervals have few pieces); `bounds` reports them undecided.

use crate::bounds::margin_bounds_on;
use crate::certify::{certificate, margin_of, SegmentCertificate, Verdict};
use crate::device::ZonoDevice;
use crate::error::Result;
use crate::exact::{self, CertifyOptions, Method};
use crate::net::{Batch, Net64};
use crate::zonotope::{point, Zono};
use std::collections::VecDeque;
use std::time::Instant;

/// A margin bound below `−HOPELESS · max|logit|` splits its interval in 8 instead of 2.
const HOPELESS: f64 = 100.0;

/// Memory a round of intervals may take for the bounds' records (an estimate).
const ROUND_BYTES: usize = 4 << 30;

/// One segment to certify: `a → b` (f64 rows of the point shape), its path and class.
pub(crate) struct SegmentJob {
    pub path: usize,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub target: usize,
}

/// The exact margin at a point and the scale its tolerance is relative to.
#[derive(Clone, Copy, Debug)]
struct Eval {
    margin: f64,
    scale: f64,
}

impl Eval {
    fn of(logits: &[f64], target: usize) -> Eval {
        Eval {
            margin: margin_of(logits, target),
            scale: logits.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interval {
    seg: usize,
    t0: f64,
    t1: f64,
    lo: Eval,
    hi: Eval,
}

/// What the search learnt about one segment.
struct State {
    intervals: usize,
    /// Certified stretches of `t` (bounds or exact).
    decided: Vec<(f64, f64)>,
    leftover: Vec<Interval>,
    /// The smallest exact margin seen (at an evaluated point or an ExactLine breakpoint).
    min_margin: (f64, f64),
    /// The smallest certified lower bound of the margin over the certified intervals.
    bound: f64,
    counterexample: Option<(f64, f64)>,
    non_finite: Option<(f64, f64)>,
    exact_pieces: usize,
    breakpoints: Vec<f64>,
    exact_refuted: Vec<(f64, f64)>,
    undecided: Option<String>,
}

/// Evaluates the points `(segment, t)` exactly (`dirs[s] = b − a` of segment `s`).
fn evaluate(
    net: &Net64,
    op0: usize,
    dims: [usize; 3],
    jobs: &[SegmentJob],
    dirs: &[Vec<f64>],
    pts: &[(usize, f64)],
) -> Result<Vec<Eval>> {
    if pts.is_empty() {
        return Ok(Vec::new());
    }
    let d: usize = dims.iter().product();
    let mut data = Vec::with_capacity(pts.len() * d);
    for &(seg, t) in pts {
        data.extend(point(&jobs[seg].a, &dirs[seg], t));
    }
    let logits = net.forward(
        op0,
        Batch {
            n: pts.len(),
            dims,
            data,
        },
        64,
        |_, _, _| {},
    )?;
    let k = net.classes;
    Ok(pts
        .iter()
        .enumerate()
        .map(|(i, &(seg, _))| Eval::of(&logits[i * k..(i + 1) * k], jobs[seg].target))
        .collect())
}

/// Certifies the segments `jobs` (points entering the program at `op0` with shape `dims`);
/// the certificates in the same order. A path (the jobs sharing a `path`) stops being searched
/// once one of its segments is refuted.
pub(crate) fn certify_segments(
    net: &Net64,
    op0: usize,
    dims: [usize; 3],
    jobs: &[SegmentJob],
    opts: &CertifyOptions,
    device: Option<&dyn ZonoDevice>,
) -> Result<Vec<SegmentCertificate>> {
    opts.validate()?;
    let start = Instant::now();
    let dirs: Vec<Vec<f64>> = jobs
        .iter()
        .map(|j| j.b.iter().zip(&j.a).map(|(b, a)| b - a).collect())
        .collect();
    let paths = jobs.iter().map(|j| j.path + 1).max().unwrap_or(0);
    let mut path_refuted = vec![false; paths];
    let mut path_examined = vec![0usize; paths];
    let mut states: Vec<State> = (0..jobs.len())
        .map(|_| State {
            intervals: 0,
            decided: Vec::new(),
            leftover: Vec::new(),
            min_margin: (f64::INFINITY, 0.0),
            bound: f64::INFINITY,
            counterexample: None,
            non_finite: None,
            exact_pieces: 0,
            breakpoints: Vec::new(),
            exact_refuted: Vec::new(),
            undecided: None,
        })
        .collect();
    let thr = |e: Eval| opts.tol * e.scale;
    // Seen: a refutation or non-finite logits at `t`.
    let see = |st: &mut State, refuted: &mut bool, t: f64, e: Eval| {
        if e.margin < st.min_margin.0 {
            st.min_margin = (e.margin, t);
        }
        if !e.margin.is_finite() || !e.scale.is_finite() {
            st.non_finite.get_or_insert((t, e.margin));
            *refuted = true;
        } else if e.margin < -thr(e) && st.counterexample.is_none() {
            st.counterexample = Some((t, e.margin));
            *refuted = true;
        }
    };

    // The ends of every segment first: a misclassified pivot refutes at once.
    let ends: Vec<(usize, f64)> = (0..jobs.len()).flat_map(|s| [(s, 0.0), (s, 1.0)]).collect();
    let end_evals = evaluate(net, op0, dims, jobs, &dirs, &ends)?;
    let mut queue = VecDeque::new();
    for (s, job) in jobs.iter().enumerate() {
        let (lo, hi) = (end_evals[2 * s], end_evals[2 * s + 1]);
        let mut refuted = false;
        see(&mut states[s], &mut refuted, 0.0, lo);
        see(&mut states[s], &mut refuted, 1.0, hi);
        path_refuted[job.path] |= refuted;
        queue.push_back(Interval {
            seg: s,
            t0: 0.0,
            t1: 1.0,
            lo,
            hi,
        });
    }

    if opts.method != Method::Exact {
        // Each interval keeps, for the backward pass, about three values per neuron of every
        // op after the cut (concrete bounds, magnitudes) besides its zonotope: a ResNet-50 at
        // 224×224 holds gigabytes per interval, so the round shrinks to what fits.
        let d: usize = dims.iter().product();
        let per_interval = (net.ops.len() - op0) * d * 8 * 4;
        let round = opts.bound_batch.min((ROUND_BYTES / per_interval.max(1)).max(1));
        loop {
            let mut batch = Vec::with_capacity(round);
            while batch.len() < round {
                let Some(iv) = queue.pop_front() else { break };
                let path = jobs[iv.seg].path;
                if path_refuted[path] {
                    continue;
                }
                if path_examined[path] >= opts.max_intervals {
                    states[iv.seg].leftover.push(iv);
                    continue;
                }
                path_examined[path] += 1;
                batch.push(iv);
            }
            if batch.is_empty() {
                break;
            }
            let stretches = batch
                .iter()
                .map(|iv| Zono::stretch(dims, &jobs[iv.seg].a, &dirs[iv.seg], iv.t0, iv.t1))
                .collect();
            let targets: Vec<usize> = batch.iter().map(|iv| jobs[iv.seg].target).collect();
            let lbs = margin_bounds_on(device, net, op0, stretches, &targets)?;
            let mut open = Vec::new();
            for (iv, lb) in batch.into_iter().zip(lbs) {
                let st = &mut states[iv.seg];
                st.intervals += 1;
                let scale = iv.lo.scale.max(iv.hi.scale);
                if lb.is_finite() && lb > 0.0 && lb > opts.tol * scale {
                    st.decided.push((iv.t0, iv.t1));
                    st.bound = st.bound.min(lb);
                } else {
                    // A bound far below any margin says the interval holds far too many kinks:
                    // three bisections at once save the two levels that would fail anyway.
                    let parts = if lb.is_finite() && lb > -HOPELESS * scale.max(1.0) {
                        2
                    } else {
                        8
                    };
                    open.push((iv, parts));
                }
            }
            let points: Vec<(usize, f64)> = open
                .iter()
                .flat_map(|&(iv, parts)| {
                    (1..parts).map(move |q| (iv.seg, iv.t0 + (iv.t1 - iv.t0) * q as f64 / parts as f64))
                })
                .collect();
            let mut evals = evaluate(net, op0, dims, jobs, &dirs, &points)?.into_iter();
            let mut points = points.into_iter();
            for (iv, parts) in open {
                let path = jobs[iv.seg].path;
                let inner: Vec<(f64, Eval)> = (1..parts)
                    .map(|_| {
                        let (_, t) = points.next().expect("a point per split");
                        (t, evals.next().expect("an evaluation per point"))
                    })
                    .collect();
                let mut refuted = false;
                for &(t, e) in &inner {
                    see(&mut states[iv.seg], &mut refuted, t, e);
                }
                path_refuted[path] |= refuted;
                if refuted {
                    continue;
                }
                if (iv.t1 - iv.t0) / (parts as f64) < opts.min_width {
                    states[iv.seg].leftover.push(iv);
                    continue;
                }
                let mut lo = (iv.t0, iv.lo);
                for &(t, e) in inner.iter().chain([(iv.t1, iv.hi)].iter()) {
                    queue.push_back(Interval {
                        t0: lo.0,
                        lo: lo.1,
                        t1: t,
                        hi: e,
                        ..iv
                    });
                    lo = (t, e);
                }
            }
        }
    } else {
        for iv in queue.drain(..) {
            states[iv.seg].leftover.push(iv);
        }
    }

    // The leftovers: ExactLine (auto, exact) or undecided (bounds).
    for (s, job) in jobs.iter().enumerate() {
        if path_refuted[job.path] {
            continue;
        }
        let st = &mut states[s];
        st.leftover.sort_by(|x, y| x.t0.total_cmp(&y.t0));
        if st.leftover.is_empty() {
            continue;
        }
        if opts.method == Method::Bounds {
            let width: f64 = st.leftover.iter().map(|iv| iv.t1 - iv.t0).sum();
            let first = st.leftover[0];
            st.undecided = Some(format!(
                "{} interval(s) of total width {width:.3e} not decided by bounds (first [{}, {}]; {} examined)",
                st.leftover.len(),
                first.t0,
                first.t1,
                st.intervals
            ));
            continue;
        }
        let started = Instant::now();
        for iv in std::mem::take(&mut st.leftover) {
            // `max_pieces` bounds ExactLine's pieces over the whole segment, as with `exact`.
            let left = opts.max_pieces.saturating_sub(st.exact_pieces);
            if left == 0 {
                st.undecided.get_or_insert(format!(
                    "piece budget exhausted ({} pieces) on the intervals the bounds left, at t = {}",
                    st.exact_pieces, iv.t0
                ));
                break;
            }
            let budget = CertifyOptions {
                max_pieces: left,
                ..opts.clone()
            };
            let at = |t: f64| point(&job.a, &dirs[s], t).collect::<Vec<f64>>();
            let p = exact::partition(net, op0, dims, at(iv.t0), at(iv.t1), &budget)?;
            let c = certificate(&p, job.target, opts.tol, started);
            let map = |x: f64| iv.t0 + x * (iv.t1 - iv.t0);
            st.exact_pieces += c.pieces;
            st.breakpoints.extend(c.breakpoints.iter().map(|&x| map(x)));
            if c.min_margin < st.min_margin.0 {
                st.min_margin = (c.min_margin, map(c.min_margin_t));
            }
            match c.verdict {
                Verdict::Certified => st.decided.push((iv.t0, iv.t1)),
                Verdict::Refuted { intervals } => {
                    st.exact_refuted
                        .extend(intervals.iter().map(|&(x, y)| (map(x), map(y))));
                    st.counterexample.get_or_insert((map(c.min_margin_t), c.min_margin));
                    path_refuted[job.path] = true;
                    break;
                }
                Verdict::Undecided { reason } => {
                    st.undecided
                        .get_or_insert(format!("on t ∈ [{}, {}]: {reason}", iv.t0, iv.t1));
                }
            }
        }
    }

    let seconds = start.elapsed().as_secs_f64() / jobs.len().max(1) as f64;
    Ok(states
        .into_iter()
        .enumerate()
        .map(|(s, mut st)| {
            st.decided.sort_by(|x, y| x.0.total_cmp(&y.0));
            // The certified prefix of [0, 1].
            let mut covered = 0.0;
            for &(lo, hi) in &st.decided {
                if lo <= covered {
                    covered = f64::max(covered, hi);
                }
            }
            let verdict = if let Some((t, m)) = st.non_finite {
                Verdict::Undecided {
                    reason: format!("non-finite logits at t = {t} (margin {m})"),
                }
            } else if !st.exact_refuted.is_empty() {
                Verdict::Refuted {
                    intervals: st.exact_refuted.clone(),
                }
            } else if let Some((t, _)) = st.counterexample {
                Verdict::Refuted {
                    intervals: vec![(t, t)],
                }
            } else if let Some(reason) = st.undecided.take() {
                Verdict::Undecided { reason }
            } else if covered >= 1.0 {
                Verdict::Certified
            } else {
                Verdict::Undecided {
                    reason: format!(
                        "not examined further: another segment of path {} was refuted or not finite",
                        jobs[s].path
                    ),
                }
            };
            SegmentCertificate {
                verdict,
                pieces: st.exact_pieces,
                breakpoints: st.breakpoints,
                min_margin: st.min_margin.0,
                min_margin_t: st.min_margin.1,
                covered,
                seconds,
                method: opts.method,
                intervals: st.intervals,
                counterexample: st.counterexample,
                margin_bound: st.bound.is_finite().then_some(st.bound),
            }
        })
        .collect())
}
