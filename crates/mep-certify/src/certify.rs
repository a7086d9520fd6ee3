//! Certificates for segments and paths, from the partition.
//!
//! On each piece the logits are affine in `t`, so the margin
//! `logit_target − max_{j≠target} logit_j = min_j (logit_target − logit_j)` is a minimum of
//! affine functions, concave on the piece, and its minimum over the piece is at one of the
//! piece's ends. The segment stays in the class iff the margin is positive at every breakpoint.

use crate::device::{BoundsDevice, DeviceBounds, ZonoDevice};
use crate::error::{CertifyError, Result};
use crate::exact::{self, CertifyOptions, Method, Partition};
use crate::net::{pool_out, pool_window, Batch, Net64, Op};
use crate::search::{certify_segments, SegmentJob};
use crate::zonotope::{self, Zono};
use mep_resnet::{Cut, FoldedResNet};
use mep_tensor::{Backend, CpuBackend};
use rayon::prelude::*;
use std::time::Instant;

/// What the certificate says about the segment or path.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The network predicts the target class at every point, with margin above the tolerance.
    Certified,
    /// The class is left. ExactLine gives the maximal intervals of the parameter on which the
    /// margin is negative (each holding a breakpoint where it is below `−tol · scale`),
    /// increasing; the bounds give the point where they found the margin below `−tol · scale`,
    /// as an interval of width 0.
    Refuted { intervals: Vec<(f64, f64)> },
    /// Neither could be shown: the piece budget ran out, or a margin is within tolerance of 0.
    Undecided { reason: String },
}

/// The certificate of one segment `z(t) = z_a + t (z_b − z_a)`, `t ∈ [0, 1]`.
#[derive(Clone, Debug)]
pub struct SegmentCertificate {
    pub verdict: Verdict,
    /// Pieces on which the logits are affine that ExactLine computed: of the whole segment
    /// with [`Method::Exact`], of the intervals the bounds left over with [`Method::Auto`].
    pub pieces: usize,
    /// ExactLine's breakpoints (over the part it partitioned).
    pub breakpoints: Vec<f64>,
    /// The smallest margin seen and where: at a breakpoint of ExactLine (the minimum over
    /// what it partitioned), or at a point the bisection evaluated.
    pub min_margin: f64,
    pub min_margin_t: f64,
    /// ExactLine: the partition is exact on `[0, covered]`, 1 unless the piece budget ran out.
    /// Bounds: `[0, covered]` is certified.
    pub covered: f64,
    /// Wall-clock seconds. The bounds examine the intervals of every segment of a call
    /// together, round by round, so there this is the call's time over its segments, not
    /// the segment's own.
    pub seconds: f64,
    /// The method asked for.
    pub method: Method,
    /// Intervals whose bounds were computed (0 with [`Method::Exact`]).
    pub intervals: usize,
    /// For a refutation: a point `t` where the margin is below `−tol · max|logit|`, and the f64
    /// margin there.
    pub counterexample: Option<(f64, f64)>,
    /// The smallest lower bound of the margin the bounds proved on the intervals they
    /// certified (none if they certified none).
    pub margin_bound: Option<f64>,
}

/// The certificate of a path through pivots `p_0 … p_{P−1}`: its segments in order, and the
/// whole in the path's global parameter `u = (k + t)/(P − 1)` for `t` on segment `k`.
#[derive(Clone, Debug)]
pub struct PathCertificate {
    /// Certified iff every segment is; refuted (intervals in `u`, adjacent ones joined) iff
    /// some segment is; undecided otherwise.
    pub verdict: Verdict,
    pub segments: Vec<SegmentCertificate>,
    /// Pieces over all segments.
    pub pieces: usize,
    /// The smallest margin over the path, and its `u`.
    pub min_margin: f64,
    pub min_margin_u: f64,
    /// Wall-clock seconds; with the bounds, the call's time over its paths (see
    /// [`SegmentCertificate::seconds`]).
    pub seconds: f64,
    /// The method asked for.
    pub method: Method,
    /// Intervals whose bounds were computed, over all segments.
    pub intervals: usize,
    /// For a refutation: the first counterexample along the path, as (u, f64 margin).
    pub counterexample: Option<(f64, f64)>,
}

/// The activation pattern of points: for each ReLU neuron of the head whether its
/// pre-activation is negative (0), positive (1) or within `tol ·` its layer's largest
/// magnitude of zero (2); for each max-pool output `3 +` the window position of its arg-max, or
/// 2 when the two largest inputs are within that tolerance. Two points on the same piece of a
/// partition have the same decided codes.
#[derive(Clone, Debug)]
pub struct ActivationPattern {
    pub points: usize,
    /// Codes per point.
    pub width: usize,
    pub codes: Vec<u8>,
    /// The logits of the points, `points × classes` (f64).
    pub logits: Vec<f64>,
}

impl ActivationPattern {
    /// The codes of point `p`.
    pub fn row(&self, p: usize) -> &[u8] {
        &self.codes[p * self.width..(p + 1) * self.width]
    }
    /// The first unit whose decided codes differ between points `p` and `q`.
    pub fn changed(&self, p: usize, q: usize) -> Option<usize> {
        self.row(p)
            .iter()
            .zip(self.row(q))
            .position(|(&a, &b)| a != b && a != 2 && b != 2)
    }
}

/// A folded network copied to f64, ready to certify any number of segments and paths.
pub struct Certifier {
    net: Net64,
    /// Where the bounds' zonotopes run, when not on the CPU ([`Certifier::on_device`]).
    device: Option<Box<dyn ZonoDevice>>,
}

/// A segment's ends in f64 at a cut: the first op after the cut, the point shape there.
struct Ends {
    op: usize,
    dims: [usize; 3],
    a: Vec<f64>,
    b: Vec<f64>,
}

/// Converts a point to f64, checking its length and that it is finite.
fn to_f64<T: Copy + Into<f64>>(what: &str, z: &[T], dim: usize) -> Result<Vec<f64>> {
    if z.len() != dim {
        return Err(CertifyError::Shape {
            what: what.into(),
            expected: format!("{dim} values"),
            found: format!("{} values", z.len()),
        });
    }
    z.iter()
        .enumerate()
        .map(|(index, &v)| {
            let v: f64 = v.into();
            if v.is_finite() {
                Ok(v)
            } else {
                Err(CertifyError::NonFinite {
                    what: what.into(),
                    index,
                    value: v as f32,
                })
            }
        })
        .collect()
}

impl Certifier {
    /// Copies the folded layers of `net` (on any backend) to f64.
    pub fn new<B: Backend>(backend: &B, net: &FoldedResNet<B>) -> Result<Self> {
        Ok(Certifier {
            net: Net64::new(backend, net)?,
            device: None,
        })
    }

    /// Runs the bounds' zonotopes (`--method bounds` and `auto`) on a device of the kernel
    /// backend, CUDA or its CPU emulation (`mep_kernels::CertifyOn(launcher)`), with the
    /// network's convolutions uploaded once.
    /// The certificates are the CPU's: each interval's zonotope is computed there with the
    /// CPU's operations in the CPU's order; CROWN, ResNet-50's max-pool (on the `input` and
    /// `stem` cuts) and the ReLUs' per-neuron choices run on the host. ExactLine always runs
    /// on the CPU.
    ///
    /// ```
    /// # use mep_certify::Certifier;
    /// # use mep_kernels::CertifyOn;
    /// # use mep_kernels_emu::EmuLauncher;
    /// # use mep_resnet::{Arch, FoldedResNet, ResNet};
    /// # use mep_tensor::CpuBackend;
    /// let cpu = CpuBackend::new();
    /// let net = ResNet::init(&cpu, Arch::ResNet20, 4, 10, 1).unwrap();
    /// let folded = FoldedResNet::fold(&cpu, &net).unwrap();
    /// let c = Certifier::new(&cpu, &folded).unwrap().on_device(CertifyOn(EmuLauncher::new())).unwrap();
    /// assert_eq!(c.device(), Some("emu"));
    /// ```
    pub fn on_device<D: BoundsDevice>(mut self, device: D) -> Result<Self> {
        self.device = Some(Box::new(DeviceBounds::new(device, &self.net)?));
        Ok(self)
    }

    /// The name of the device the bounds' zonotopes run on, `None` for the CPU.
    pub fn device(&self) -> Option<&'static str> {
        self.device.as_ref().map(|d| d.name())
    }

    /// Classes of the network.
    pub fn classes(&self) -> usize {
        self.net.classes
    }

    fn check_target(&self, target: usize) -> Result<()> {
        if target < self.net.classes {
            Ok(())
        } else {
            Err(CertifyError::Target {
                target,
                classes: self.net.classes,
            })
        }
    }

    /// The partition of `[0, 1]` into pieces on which `head(z_a + t (z_b − z_a), cut)` is
    /// affine; `shape` is one point's shape at `cut` (`[C, H, W]`, or `[features]` at `pool`).
    pub fn partition<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        z_a: &[T],
        z_b: &[T],
        opts: &CertifyOptions,
    ) -> Result<Partition> {
        let Ends { op, dims, a, b } = self.ends(cut, shape, z_a, z_b)?;
        exact::partition(&self.net, op, dims, a, b, opts)
    }

    /// A segment's ends at `cut`, checked against the network and converted to f64, with the
    /// first op after the cut and the point shape there.
    fn ends<T: Copy + Into<f64>>(&self, cut: Cut, shape: &[usize], z_a: &[T], z_b: &[T]) -> Result<Ends> {
        let (op, dims) = self.net.start(cut, shape)?;
        let dim = dims.iter().product();
        Ok(Ends {
            op,
            dims,
            a: to_f64("z_a", z_a, dim)?,
            b: to_f64("z_b", z_b, dim)?,
        })
    }

    /// The zonotope's lower bound of the margin of `target` on each interval `[t0, t1]` of the
    /// segment `z_a → z_b` (`−∞` where the interval makes more neurons unstable than the
    /// symbol budget holds): the first of the two bounds `--method bounds` takes, computed on
    /// the device when one is set ([`Certifier::on_device`]), else on the CPU. Both give the
    /// same values.
    pub fn zonotope_bounds<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        z_a: &[T],
        z_b: &[T],
        target: usize,
        intervals: &[(f64, f64)],
    ) -> Result<Vec<f64>> {
        self.check_target(target)?;
        if let Some(&(t0, t1)) = intervals
            .iter()
            .find(|&&(t0, t1)| !(t0.is_finite() && t1.is_finite() && t0 < t1))
        {
            return Err(CertifyError::Options {
                name: "intervals",
                value: format!("[{t0}, {t1}]"),
                msg: "each interval [t0, t1] needs finite ends with t0 < t1",
            });
        }
        let Ends { op, dims, a, b } = self.ends(cut, shape, z_a, z_b)?;
        let dir: Vec<f64> = b.iter().zip(&a).map(|(b, a)| b - a).collect();
        let xs: Vec<Zono> = intervals
            .iter()
            .map(|&(t0, t1)| Zono::stretch(dims, &a, &dir, t0, t1))
            .collect();
        match &self.device {
            Some(d) => d.zonotope_bounds(&self.net, op, &xs, &vec![target; xs.len()]),
            // Each interval on its own, as `--method bounds` runs them.
            None => xs
                .into_par_iter()
                .map(|x| Ok(crate::zonotope::forward(&self.net, op, x, target)?.0))
                .collect(),
        }
    }

    /// Certifies that `head(z(t), cut)` predicts `target` for every `t ∈ [0, 1]`.
    pub fn segment<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        z_a: &[T],
        z_b: &[T],
        target: usize,
        opts: &CertifyOptions,
    ) -> Result<SegmentCertificate> {
        let start = Instant::now();
        self.check_target(target)?;
        if opts.method == Method::Exact {
            let p = self.partition(cut, shape, z_a, z_b, opts)?;
            return Ok(certificate(&p, target, opts.tol, start));
        }
        let Ends { op, dims, a, b } = self.ends(cut, shape, z_a, z_b)?;
        let job = SegmentJob { path: 0, a, b, target };
        let mut c = certify_segments(&self.net, op, dims, &[job], opts, self.device.as_deref())?;
        let mut c = c.pop().expect("one certificate per segment");
        c.seconds = start.elapsed().as_secs_f64();
        Ok(c)
    }

    /// Certifies the path through `pivots` (`shape = [P, …one point's shape at cut…]`, P ≥ 2,
    /// row-major as the `pivots` tensor of a saved path): every segment between consecutive
    /// pivots, by `opts.method` ([`Certifier::paths`] for several paths at once).
    pub fn path<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        pivots: &[T],
        target: usize,
        opts: &CertifyOptions,
    ) -> Result<PathCertificate> {
        let (&p, point) = shape.split_first().ok_or_else(|| CertifyError::Shape {
            what: "pivots".into(),
            expected: "[P, …point shape…]".into(),
            found: "[]".into(),
        })?;
        let mut out = self.paths(
            cut,
            point,
            &[PathInput {
                pivots,
                rows: p,
                target,
            }],
            opts,
        )?;
        Ok(out.pop().expect("one certificate per path"))
    }

    /// Certifies several paths at the same cut (`point` one point's shape there). With the
    /// bounds (`auto`, `bounds`) the intervals of all their segments go through the network
    /// together; with `exact` each segment is partitioned in turn. Certificates in order.
    pub fn paths<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        point: &[usize],
        inputs: &[PathInput<'_, T>],
        opts: &CertifyOptions,
    ) -> Result<Vec<PathCertificate>> {
        let start = Instant::now();
        opts.validate()?;
        let (op, dims) = self.net.start(cut, point)?;
        let dim: usize = dims.iter().product();
        let mut jobs = Vec::new();
        for (k, x) in inputs.iter().enumerate() {
            self.check_target(x.target)?;
            let p = x.rows;
            if p < 2 || x.pivots.len() != p * dim {
                return Err(CertifyError::Shape {
                    what: format!("pivots of path {k}"),
                    expected: format!("at least 2 rows, {} values for point shape {point:?}", p * dim),
                    found: format!("{p} rows, {} values", x.pivots.len()),
                });
            }
            let rows = (0..p)
                .map(|i| to_f64("pivots", &x.pivots[i * dim..(i + 1) * dim], dim))
                .collect::<Result<Vec<_>>>()?;
            for i in 0..p - 1 {
                jobs.push(SegmentJob {
                    path: k,
                    a: rows[i].clone(),
                    b: rows[i + 1].clone(),
                    target: x.target,
                });
            }
        }
        let certs = if opts.method == Method::Exact {
            // The pivots are checked and in f64 already: each segment goes to ExactLine as is.
            jobs.into_iter()
                .map(|j| {
                    let started = Instant::now();
                    let p = exact::partition(&self.net, op, dims, j.a, j.b, opts)?;
                    Ok(certificate(&p, j.target, opts.tol, started))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            certify_segments(&self.net, op, dims, &jobs, opts, self.device.as_deref())?
        };
        let mut certs = certs.into_iter();
        let seconds = start.elapsed().as_secs_f64() / inputs.len().max(1) as f64;
        Ok(inputs
            .iter()
            .map(|x| {
                let segments: Vec<SegmentCertificate> = certs.by_ref().take(x.rows - 1).collect();
                let mut c = assemble(segments, opts.method);
                if opts.method != Method::Exact {
                    c.seconds = seconds;
                }
                c
            })
            .collect())
    }

    /// `head(z, cut)` in f64 for the points `z` (`n × dim`, `shape` one point's shape):
    /// the logits, `n × classes`.
    pub fn head<T: Copy + Into<f64>>(&self, cut: Cut, shape: &[usize], points: &[T]) -> Result<Vec<f64>> {
        let (op, _, x) = self.batch(cut, shape, points)?;
        self.net.forward(op, x, 256, |_, _, _| {})
    }

    fn batch<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        points: &[T],
    ) -> Result<(usize, [usize; 3], Batch)> {
        let (op, dims) = self.net.start(cut, shape)?;
        let dim: usize = dims.iter().product();
        if !points.len().is_multiple_of(dim) {
            return Err(CertifyError::Shape {
                what: "points".into(),
                expected: format!("a multiple of {dim} values (shape {shape:?})"),
                found: format!("{} values", points.len()),
            });
        }
        let data = to_f64("points", points, points.len())?;
        Ok((
            op,
            dims,
            Batch {
                n: points.len() / dim,
                dims,
                data,
            },
        ))
    }

    /// The activation pattern of the head at each of the points (`n × dim`), deciding signs
    /// and ties at relative tolerance `tol`.
    pub fn activation_pattern<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        points: &[T],
        tol: f64,
    ) -> Result<ActivationPattern> {
        let (op, _, x) = self.batch(cut, shape, points)?;
        let n = x.n;
        let mut rows: Vec<Vec<u8>> = vec![Vec::new(); n];
        let logits = self.net.forward(op, x, 256, |o, p0, b| match self.net.ops[o] {
            Op::Relu => {
                for p in 0..b.n {
                    let r = b.row(p);
                    let z = tol * r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    rows[p0 + p].extend(r.iter().map(|&v| match v {
                        v if v > z => 1,
                        v if v < -z => 0,
                        _ => 2,
                    }));
                }
            }
            Op::MaxPool => {
                let [c, h, w] = b.dims;
                let mut win = Vec::new();
                for p in 0..b.n {
                    let r = b.row(p);
                    let z = tol * r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    for ch in 0..c {
                        let plane = &r[ch * h * w..][..h * w];
                        for oy in 0..pool_out(h) {
                            for ox in 0..pool_out(w) {
                                pool_window(h, w, oy, ox, &mut win);
                                let mut order: Vec<usize> = (0..win.len()).collect();
                                order.sort_by(|&i, &j| plane[win[j]].total_cmp(&plane[win[i]]));
                                let tied = order.len() > 1 && plane[win[order[0]]] - plane[win[order[1]]] <= z;
                                rows[p0 + p].push(if tied { 2 } else { 3 + order[0] as u8 });
                            }
                        }
                    }
                }
            }
            _ => {}
        })?;
        let width = rows.first().map_or(0, Vec::len);
        Ok(ActivationPattern {
            points: n,
            width,
            codes: rows.concat(),
            logits,
        })
    }

    /// The work a certificate of a path needs, counted before it is computed (BENCHMARKS.md,
    /// "How much work a certificate needs"): for every ReLU of the head, the neurons whose
    /// sign differs between `samples` evenly spaced points of each segment (a lower bound on
    /// those that change sign), each times the multiply-adds that carry one symbol row born
    /// there to the logits over the pixels it can reach. Each such neuron costs the bounds a
    /// symbol and ExactLine about a piece, so this predicts both methods' time; `pivots` are
    /// the path's `rows` points of `shape` at `cut`, row-major.
    ///
    /// ```
    /// # use mep_certify::Certifier;
    /// # use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
    /// # use mep_tensor::CpuBackend;
    /// let cpu = CpuBackend::new();
    /// let net = ResNet::init(&cpu, Arch::ResNet20, 4, 10, 1).unwrap();
    /// let c = Certifier::new(&cpu, &FoldedResNet::fold(&cpu, &net).unwrap()).unwrap();
    /// let pivots: Vec<f32> = (0..2 * 3 * 8 * 8).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    /// let w = c.work(Cut::Input, &[3, 8, 8], &pivots, 2, 65).unwrap();
    /// assert_eq!(w.segments, 1);
    /// assert!(w.changing_sign > 0 && w.multiply_adds > 0);
    /// // At `pool` the head is affine: nothing to pay for.
    /// let w = c.work(Cut::Pool, &[16], &vec![0.5f32; 32], 2, 65).unwrap();
    /// assert_eq!((w.changing_sign, w.multiply_adds), (0, 0));
    /// ```
    pub fn work<T: Copy + Into<f64>>(
        &self,
        cut: Cut,
        shape: &[usize],
        pivots: &[T],
        rows: usize,
        samples: usize,
    ) -> Result<Work> {
        let (op0, dims) = self.net.start(cut, shape)?;
        let dim: usize = dims.iter().product();
        if rows < 2 || pivots.len() != rows * dim {
            return Err(CertifyError::Shape {
                what: "path pivots".into(),
                expected: format!("at least 2 points of {dim} values"),
                found: format!("{rows} points, {} values", pivots.len()),
            });
        }
        if samples < 2 {
            return Err(CertifyError::Options {
                name: "samples",
                value: samples.to_string(),
                msg: "a segment needs at least its two ends",
            });
        }
        let costs = self.net.symbol_costs(op0, dims)?;
        let mut work = Work {
            segments: rows - 1,
            ..Work::default()
        };
        let pivots = to_f64("path pivots", pivots, rows * dim)?;
        for seg in 0..rows - 1 {
            let (a, b) = (&pivots[seg * dim..][..dim], &pivots[(seg + 1) * dim..][..dim]);
            let dir: Vec<f64> = b.iter().zip(a).map(|(b, a)| b - a).collect();
            // Per ReLU op: whether each neuron was seen above zero, and at or below it.
            let mut seen: Vec<Option<(Vec<bool>, Vec<bool>)>> = vec![None; self.net.ops.len()];
            for first in (0..samples).step_by(WORK_CHUNK) {
                let n = WORK_CHUNK.min(samples - first);
                let mut data = Vec::with_capacity(n * dim);
                for k in first..first + n {
                    data.extend(zonotope::point(a, &dir, k as f64 / (samples - 1) as f64));
                }
                let x = Batch { n, dims, data };
                self.net.forward(op0, x, n, |o, _, z| {
                    if !matches!(self.net.ops[o], Op::Relu) {
                        return;
                    }
                    let (pos, neg) = seen[o].get_or_insert_with(|| (vec![false; z.dim()], vec![false; z.dim()]));
                    for p in 0..z.n {
                        for (k, &v) in z.row(p).iter().enumerate() {
                            if v > 0.0 {
                                pos[k] = true;
                            } else {
                                neg[k] = true;
                            }
                        }
                    }
                })?;
            }
            for &(o, cost) in &costs {
                if let Some((pos, neg)) = &seen[o] {
                    let n = pos.iter().zip(neg).filter(|(p, q)| **p && **q).count() as u64;
                    work.changing_sign += n;
                    work.multiply_adds += n as u128 * cost as u128;
                }
            }
        }
        Ok(work)
    }
}

/// What [`Certifier::work`] counts on one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub segments: usize,
    /// Neurons whose sign differs between sample points, summed over the segments.
    pub changing_sign: u64,
    /// Multiply-adds that carry their symbols to the logits.
    pub multiply_adds: u128,
}

/// Sample points per forward pass of [`Certifier::work`]: a ResNet-50's `layer1` point is
/// 6.4 MB in f64.
const WORK_CHUNK: usize = 16;

/// One path for [`Certifier::paths`]: `rows` pivots (row-major, one point's shape each) and
/// the class every point of it should have.
#[derive(Clone, Copy, Debug)]
pub struct PathInput<'a, T> {
    pub pivots: &'a [T],
    pub rows: usize,
    pub target: usize,
}

/// The path's certificate from its segments' (at least one), in the path's parameter
/// `u = (k + t)/(P − 1)`.
fn assemble(segments: Vec<SegmentCertificate>, method: Method) -> PathCertificate {
    let p = segments.len() + 1;
    let u = |k: usize, t: f64| (k as f64 + t) / (p - 1) as f64;
    let mut intervals: Vec<(f64, f64)> = Vec::new();
    let mut undecided = None;
    let mut counterexample = None;
    for (k, s) in segments.iter().enumerate() {
        match &s.verdict {
            Verdict::Refuted { intervals: iv } => {
                for &(lo, hi) in iv {
                    let (lo, hi) = (u(k, lo), u(k, hi));
                    match intervals.last_mut() {
                        Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                        _ => intervals.push((lo, hi)),
                    }
                }
                if counterexample.is_none() {
                    counterexample = s.counterexample.map(|(t, m)| (u(k, t), m));
                }
            }
            Verdict::Undecided { reason } if undecided.is_none() => {
                undecided = Some(format!("segment {k}: {reason}"));
            }
            _ => {}
        }
    }
    let verdict = match (intervals.is_empty(), undecided) {
        (false, _) => Verdict::Refuted { intervals },
        (true, Some(reason)) => Verdict::Undecided { reason },
        (true, None) => Verdict::Certified,
    };
    let (k_min, s_min) = segments
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.min_margin.total_cmp(&b.1.min_margin))
        .expect("at least one segment");
    PathCertificate {
        verdict,
        pieces: segments.iter().map(|s| s.pieces).sum(),
        min_margin: s_min.min_margin,
        min_margin_u: u(k_min, s_min.min_margin_t),
        seconds: segments.iter().map(|s| s.seconds).sum(),
        method,
        intervals: segments.iter().map(|s| s.intervals).sum(),
        counterexample,
        segments,
    }
}

/// `logit_target − max_{j≠target} logit_j`.
pub(crate) fn margin_of(logits: &[f64], target: usize) -> f64 {
    let other = logits
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target)
        .map(|(_, &v)| v)
        .fold(f64::NEG_INFINITY, f64::max);
    logits[target] - other
}

/// The certificate of a segment from its partition (ExactLine).
pub(crate) fn certificate(p: &Partition, target: usize, tol: f64, start: Instant) -> SegmentCertificate {
    let n = p.breakpoints.len();
    let margin = |i: usize| margin_of(p.logits_at(i), target);
    let scale = |i: usize| tol * p.logits_at(i).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let margins: Vec<f64> = (0..n).map(margin).collect();
    let (mut min_margin, mut min_margin_t) = (f64::INFINITY, 0.0);
    for (i, &m) in margins.iter().enumerate() {
        if m < min_margin {
            min_margin = m;
            min_margin_t = p.breakpoints[i];
        }
    }
    let definite = (0..n).any(|i| margins[i] < -scale(i));
    // A NaN margin fails every comparison above and would fall through to `Certified`: a point
    // whose logits are not finite is in no class, so the segment is not certified.
    let non_finite = (0..n).find(|&i| !margins[i].is_finite() || !scale(i).is_finite());
    let verdict = if let Some(i) = non_finite {
        Verdict::Undecided {
            reason: format!("non-finite logits at t = {} (margin {})", p.breakpoints[i], margins[i]),
        }
    } else if definite {
        Verdict::Refuted {
            intervals: refuted_intervals(p, target, &margins, &scale),
        }
    } else if let Some(i) = (0..n).find(|&i| margins[i].abs() <= scale(i)) {
        Verdict::Undecided {
            reason: format!(
                "margin {:e} within tolerance of 0 at t = {}",
                margins[i], p.breakpoints[i]
            ),
        }
    } else if !p.complete {
        Verdict::Undecided {
            reason: format!(
                "piece budget exhausted after t = {} ({} pieces)",
                p.covered(),
                p.pieces()
            ),
        }
    } else {
        Verdict::Certified
    };
    SegmentCertificate {
        verdict,
        pieces: p.pieces(),
        breakpoints: p.breakpoints.clone(),
        min_margin,
        min_margin_t,
        covered: p.covered(),
        seconds: start.elapsed().as_secs_f64(),
        method: Method::Exact,
        intervals: 0,
        counterexample: refuted_at(&margins, &scale, p),
        margin_bound: None,
    }
}

/// The breakpoint of smallest margin, if it is below `−tol · scale`, with that margin.
fn refuted_at(margins: &[f64], scale: &dyn Fn(usize) -> f64, p: &Partition) -> Option<(f64, f64)> {
    (0..margins.len())
        .filter(|&i| margins[i] < -scale(i))
        .min_by(|&i, &j| margins[i].total_cmp(&margins[j]))
        .map(|i| (p.breakpoints[i], margins[i]))
}

// On a piece, logit_target − logit_j is affine: negative on [0, a/(a−b)) or (a/(a−b), 1].
fn refuted_intervals(p: &Partition, target: usize, margins: &[f64], scale: &dyn Fn(usize) -> f64) -> Vec<(f64, f64)> {
    // Each interval, and whether it holds a breakpoint where the margin is below −tol·scale.
    let mut out: Vec<(f64, f64, bool)> = Vec::new();
    let push = |lo: f64, hi: f64, definite: bool, out: &mut Vec<(f64, f64, bool)>| match out.last_mut() {
        Some(last) if lo <= last.1 => {
            last.1 = last.1.max(hi);
            last.2 |= definite;
        }
        _ => out.push((lo, hi, definite)),
    };
    let b = &p.breakpoints;
    for i in 0..b.len().saturating_sub(1) {
        let (l0, l1) = (p.logits_at(i), p.logits_at(i + 1));
        let (mut left_end, mut right_start) = (None::<f64>, None::<f64>);
        let mut whole = false;
        for j in (0..p.classes).filter(|&j| j != target) {
            let (d0, d1) = (l0[target] - l0[j], l1[target] - l1[j]);
            match (d0 < 0.0, d1 < 0.0) {
                (true, true) => whole = true,
                (true, false) => left_end = Some(left_end.unwrap_or(0.0).max(d0 / (d0 - d1))),
                (false, true) => right_start = Some(right_start.unwrap_or(1.0).min(d0 / (d0 - d1))),
                (false, false) => {}
            }
        }
        let at = |s: f64| b[i] + s * (b[i + 1] - b[i]);
        let def = |k: usize| margins[k] < -scale(k);
        match (left_end, right_start) {
            _ if whole => push(b[i], b[i + 1], def(i) || def(i + 1), &mut out),
            (Some(l), Some(r)) if l >= r => push(b[i], b[i + 1], def(i) || def(i + 1), &mut out),
            (l, r) => {
                if let Some(l) = l {
                    push(b[i], at(l), def(i), &mut out);
                }
                if let Some(r) = r {
                    push(at(r), b[i + 1], def(i + 1), &mut out);
                }
            }
        }
    }
    out.into_iter().filter(|x| x.2).map(|(lo, hi, _)| (lo, hi)).collect()
}

/// [`Certifier::segment`] for a network on the CPU backend (copies it to f64 first; build a
/// [`Certifier`] once to certify many segments).
pub fn certify_segment<T: Copy + Into<f64>>(
    net: &FoldedResNet<CpuBackend>,
    cut: Cut,
    shape: &[usize],
    z_a: &[T],
    z_b: &[T],
    target: usize,
    opts: &CertifyOptions,
) -> Result<SegmentCertificate> {
    Certifier::new(&CpuBackend::new(), net)?.segment(cut, shape, z_a, z_b, target, opts)
}

/// [`Certifier::path`] for a network on the CPU backend.
pub fn certify_path<T: Copy + Into<f64>>(
    net: &FoldedResNet<CpuBackend>,
    cut: Cut,
    shape: &[usize],
    pivots: &[T],
    target: usize,
    opts: &CertifyOptions,
) -> Result<PathCertificate> {
    Certifier::new(&CpuBackend::new(), net)?.path(cut, shape, pivots, target, opts)
}

/// The number of pieces of the partition of the segment (a convenience for tests and benches).
pub fn piece_count<T: Copy + Into<f64>>(
    certifier: &Certifier,
    cut: Cut,
    shape: &[usize],
    z_a: &[T],
    z_b: &[T],
    opts: &CertifyOptions,
) -> Result<usize> {
    Ok(certifier.partition(cut, shape, z_a, z_b, opts)?.pieces())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(logits: Vec<f64>) -> Partition {
        Partition {
            breakpoints: vec![0.0, 0.5, 1.0],
            logits,
            classes: 2,
            complete: true,
        }
    }

    /// Issue 18: a NaN or infinite logit is in no class, so it is never certified.
    #[test]
    fn non_finite_logits_are_never_certified() {
        let start = Instant::now();
        let ok = certificate(&partition(vec![2.0, 1.0, 2.0, 1.0, 2.0, 1.0]), 0, 1e-9, start);
        assert!(matches!(ok.verdict, Verdict::Certified), "{:?}", ok.verdict);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let c = certificate(&partition(vec![2.0, 1.0, 2.0, bad, 2.0, 1.0]), 0, 1e-9, start);
            match c.verdict {
                Verdict::Undecided { reason } => assert!(reason.contains("non-finite logits at t = 0.5"), "{reason}"),
                v => panic!("{bad}: {v:?}"),
            }
        }
    }

    fn resnet20(width: usize) -> Certifier {
        let cpu = CpuBackend::new();
        let net = mep_resnet::ResNet::init(&cpu, mep_resnet::Arch::ResNet20, width, 10, 7).unwrap();
        Certifier::new(&cpu, &FoldedResNet::fold(&cpu, &net).unwrap()).unwrap()
    }

    /// The work model's costs are those of `benches/certify_work.py`, whose total on the demo's
    /// pair 0 `input` path matched the certifier's own counter (BENCHMARKS.md, "How much work
    /// a certificate needs"): a symbol born at a ResNet-20's stem ReLU (32×32) costs 22 100 608
    /// multiply-adds there, one born at the last ReLU only the classifier's 64 × 10.
    #[test]
    fn symbol_costs_are_the_scripts() {
        let c = resnet20(16);
        let (op0, dims) = c.net.start(Cut::Input, &[3, 32, 32]).unwrap();
        let costs = c.net.symbol_costs(op0, dims).unwrap();
        assert_eq!(costs.len(), 19);
        assert_eq!(costs[0].1, 22_100_608);
        assert_eq!(costs[18].1, 640);
        // Born after a last-stage block's first convolution: its 3×3 second one over the whole
        // 8×8 plane (the pixel reaches 3×3 of it), then the classifier.
        assert_eq!(costs[17].1, 9 * 64 * 64 * 9 + 640);
    }

    /// `work` counts a neuron when the sample points see it both above zero and not: the
    /// same count as the activation patterns of those points.
    #[test]
    fn work_counts_the_neurons_the_patterns_see_change() {
        let c = resnet20(4);
        let dim = 3 * 8 * 8;
        let pivots: Vec<f64> = (0..3 * dim).map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0).collect();
        let samples = 33;
        let w = c.work(Cut::Input, &[3, 8, 8], &pivots, 3, samples).unwrap();
        assert_eq!(w.segments, 2);
        let mut expected = 0;
        for seg in 0..2 {
            let (a, b) = (
                &pivots[seg * dim..(seg + 1) * dim],
                &pivots[(seg + 1) * dim..(seg + 2) * dim],
            );
            let dir: Vec<f64> = b.iter().zip(a).map(|(b, a)| b - a).collect();
            let points: Vec<f64> = (0..samples)
                .flat_map(|k| zonotope::point(a, &dir, k as f64 / (samples - 1) as f64).collect::<Vec<_>>())
                .collect();
            let p = c.activation_pattern(Cut::Input, &[3, 8, 8], &points, 0.0).unwrap();
            expected += (0..p.width)
                .filter(|&u| {
                    let on = (0..samples).filter(|&q| p.row(q)[u] == 1).count();
                    on > 0 && on < samples
                })
                .count() as u64;
        }
        assert!(expected > 0);
        assert_eq!(w.changing_sign, expected);
        assert!(w.multiply_adds >= w.changing_sign as u128 * 640);
    }

    #[test]
    fn work_names_a_short_path_and_too_few_samples() {
        let c = resnet20(4);
        let one = vec![0.0f32; 3 * 8 * 8];
        let e = c.work(Cut::Input, &[3, 8, 8], &one, 1, 9).unwrap_err().to_string();
        assert!(e.contains("path pivots") && e.contains("1 points"), "{e}");
        let two = vec![0.0f32; 2 * 3 * 8 * 8];
        let e = c.work(Cut::Input, &[3, 8, 8], &two, 2, 1).unwrap_err().to_string();
        assert!(e.contains("`samples` = 1") && e.contains("two ends"), "{e}");
    }
}
