//! The nudged elastic band: configuration, one step, dense evaluation, AutoNEB-style pivot
//! insertion and the run loop.

use crate::energy::{Energy, Evaluation};
use crate::error::{NebError, Result};
use crate::optim::{PathOptimizer, PathOptimizerConfig};
use crate::path::Path;
use mep_tensor::backend::neb::{climbing_image, f64_from_words, redistribution_plan};
use mep_tensor::{Backend, Lerp, NebForceParams};

/// The spring along the path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Spring {
    /// A spring of constant k (Henkelman & Jónsson 2000, eq. 12).
    Constant(f64),
    /// k = ∞, the string method: no spring force; after each optimiser update the pivots are
    /// redistributed to equal arc length along the piecewise-linear path. With a climbing image
    /// the two sides of it are redistributed separately and the image stays where the optimiser
    /// put it (the climbing string method); the optimiser state is kept.
    Redistribute,
}

/// How [`Neb::run`] takes its steps. Every mode leaves the same path bit for bit; they differ
/// in how often the host waits on the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stepping {
    /// [`Neb::step`]: the host reads energies, force norms and segment lengths inside the step.
    Host,
    /// [`Neb::step_device`] where the optimiser is Adam and the energy evaluates on the device
    /// ([`Neb::can_step_on_device`]), else [`Neb::step`]: one host read per step.
    #[default]
    Device,
    /// As `Device`, with the step's device work recorded once ([`Memory::record`]: a CUDA graph
    /// on the kernel backend) and replayed, recorded again after a pivot insertion or when the
    /// climbing image switches on. The graph holds the step's intermediates while the run
    /// lasts. On a backend that cannot record, `Device`.
    ///
    /// [`Memory::record`]: mep_tensor::Memory::record
    Graph,
}

/// AutoNEB-style insertion of pivots where the dense energy profile departs most from the
/// linear interpolation between pivots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Insertion {
    /// Insert only where the largest `|dense energy − linear interpolation of its segment's
    /// pivot energies|` exceeds this.
    pub threshold: f64,
    /// Never grow the path beyond this many pivots.
    pub max_pivots: usize,
    /// At most one insertion per this many steps.
    pub every: usize,
}

/// Everything that steers a run of the nudged elastic band.
#[derive(Clone, Debug, PartialEq)]
pub struct NebConfig {
    /// The spring along the path.
    pub spring: Spring,
    /// The optimiser moving all pivots as one state.
    pub optimizer: PathOptimizerConfig,
    /// Switch the climbing image on after this fraction of `max_steps` (None = never).
    pub climbing_after: Option<f64>,
    /// The step budget (counted over the life of the [`Neb`]).
    pub max_steps: usize,
    /// Stop when the largest perpendicular force norm is ≤ fmax (once the climbing image, if
    /// configured, is on).
    pub fmax: Option<f64>,
    /// S: dense sub-points per segment (the dense path has (P-1)·S + 1 points).
    pub sub_points: usize,
    /// Evaluate the dense path (and the caller's predicate) every this many steps.
    pub check_every: usize,
    /// AutoNEB-style pivot insertion, if any.
    pub insertion: Option<Insertion>,
    /// Seeds [`Energy::reseed`] so that stochastic energies are reproducible; the NEB itself
    /// draws no random numbers, so the same config and seed give bit-identical paths.
    pub seed: u64,
    /// How [`Neb::run`] takes its steps (the path is the same in every mode).
    pub stepping: Stepping,
}

impl Default for NebConfig {
    fn default() -> Self {
        NebConfig {
            spring: Spring::Redistribute,
            optimizer: PathOptimizerConfig::adam(1e-2),
            climbing_after: None,
            max_steps: 100,
            fmax: None,
            sub_points: 8,
            check_every: 1,
            insertion: None,
            seed: 0,
            stepping: Stepping::Device,
        }
    }
}

impl NebConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, msg: String| Err(NebError::Config { field, msg });
        if let Spring::Constant(k) = self.spring {
            if !(k.is_finite() && k >= 0.0) {
                return bad("spring", format!("constant is {k}; it must be finite and non-negative"));
            }
        }
        self.optimizer.validate()?;
        if let Some(c) = self.climbing_after {
            if !(0.0..=1.0).contains(&c) {
                return bad("climbing_after", format!("is {c}; it must be a fraction in [0, 1]"));
            }
        }
        if let Some(f) = self.fmax {
            if !(f.is_finite() && f >= 0.0) {
                return bad("fmax", format!("is {f}; it must be finite and non-negative"));
            }
        }
        if self.sub_points == 0 {
            return bad("sub_points", "is 0; it must be at least 1".into());
        }
        if self.check_every == 0 {
            return bad("check_every", "is 0; it must be at least 1".into());
        }
        if let Some(ins) = self.insertion {
            if !(ins.threshold.is_finite() && ins.threshold >= 0.0) {
                return bad(
                    "insertion.threshold",
                    format!("is {}; it must be finite and non-negative", ins.threshold),
                );
            }
            if ins.every == 0 {
                return bad("insertion.every", "is 0; it must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// The energies (and aux) at the dense points of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense<A> {
    /// P, the pivots of the path evaluated.
    pub pivots: usize,
    /// S, the sub-points per segment.
    pub sub_points: usize,
    /// Position of each dense point: (segment + j/S) / (P − 1), in [0, 1].
    pub t: Vec<f64>,
    /// The energy of each dense point.
    pub energies: Vec<f64>,
    /// The aux of each dense point.
    pub aux: Vec<A>,
}

impl<A> Dense<A> {
    /// The index and energy of the highest dense point (the first of equal ones).
    pub fn max_energy(&self) -> (usize, f64) {
        self.energies.iter().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |(bi, be), (i, &e)| if e > be { (i, e) } else { (bi, be) },
        )
    }

    /// The energies at the pivots (every S-th dense point).
    pub fn pivot_energies(&self) -> Vec<f64> {
        self.energies.iter().step_by(self.sub_points.max(1)).copied().collect()
    }

    /// Per segment, the dense point whose energy departs most from the linear interpolation
    /// of the segment's two pivot energies: `(dense index, |deviation|)` of the largest one
    /// over all segments, or None when S = 1 (no points between pivots).
    pub fn largest_deviation(&self) -> Option<(usize, f64)> {
        let s = self.sub_points;
        let mut best: Option<(usize, f64)> = None;
        for seg in 0..self.pivots.saturating_sub(1) {
            let (ea, eb) = (self.energies[seg * s], self.energies[(seg + 1) * s]);
            for j in 1..s {
                let k = seg * s + j;
                let lin = ea + (eb - ea) * j as f64 / s as f64;
                let dev = (self.energies[k] - lin).abs();
                if best.is_none_or(|(_, d)| dev > d) {
                    best = Some((k, dev));
                }
            }
        }
        best
    }
}

/// What one step saw and did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The number of steps taken, this one included.
    pub step: usize,
    /// P during this step.
    pub pivots: usize,
    /// The energies at the pivots before this step's update.
    pub energies: Vec<f64>,
    /// The largest perpendicular force norm before the update (the climbing image's whole
    /// force norm counts for it).
    pub max_force: f64,
    /// The climbing image of this step, if on.
    pub climbing: Option<usize>,
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The caller's predicate held on the dense path.
    Predicate,
    /// The largest perpendicular force reached fmax.
    Converged,
    /// The step budget was spent.
    Budget,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<A> {
    /// Why it stopped.
    pub reason: StopReason,
    /// Steps taken over the life of the [`Neb`].
    pub steps: usize,
    /// Dense evaluation of the final path.
    pub dense: Dense<A>,
    /// The report of the last step, if any step was taken.
    pub last: Option<StepReport>,
}

use mep_rng::hash;

/// The seed handed to [`Energy::reseed`] for call `chunk` of kind `kind` in step `step`.
fn call_seed(seed: u64, step: usize, kind: u64, chunk: usize) -> u64 {
    hash(hash(hash(seed) ^ step as u64) ^ (kind << 48) ^ chunk as u64)
}

const CALL_ENDPOINTS: u64 = 1;
const CALL_PIVOTS: u64 = 2;
const CALL_DENSE: u64 = 3;

fn spring_param(s: Spring) -> Option<f32> {
    match s {
        Spring::Constant(k) => Some(k as f32),
        Spring::Redistribute => None,
    }
}

/// The NEB forces of `path` (endpoint rows 0) into `forces`, from the gradients and energies
/// at its pivots: [`Neb::neb_forces`](mep_tensor::Neb::neb_forces) with the spring of `spring`. Returns the per-pivot
/// perpendicular force norms. The force computation of [`Neb::step`], on its own for timing.
pub fn forces<B: Backend>(
    b: &B,
    path: &Path<B>,
    grads: &B::Buf,
    energies: &[f64],
    spring: Spring,
    climbing: Option<usize>,
    forces: &mut B::Buf,
) -> Result<Vec<f64>> {
    let p = NebForceParams {
        pivots: path.pivots(),
        dim: path.dim(),
        spring: spring_param(spring),
        climbing,
    };
    Ok(b.neb_forces(&p, path.buf(), grads, energies, forces)?)
}

/// The nudged elastic band on a path held in backend buffers.
///
/// Each [`step`](Neb::step) evaluates the energy and gradient at the interior pivots in
/// batches of [`Energy::max_batch`], computes the forces on the backend
/// ([`Neb::neb_forces`](mep_tensor::Neb::neb_forces)) and moves all pivots with the optimiser as one state. The only
/// host data per step are the P energies, the P force norms and, for
/// [`Spring::Redistribute`], the P − 1 segment lengths.
///
/// Optimiser state: kept across the redistribution of [`Spring::Redistribute`] (pivots move
/// little along the path, so their moments still describe them); reset when a pivot is
/// inserted (rows shift).
pub struct Neb<B: Backend> {
    config: NebConfig,
    path: Path<B>,
    grads: B::Buf,
    forces: B::Buf,
    opt: PathOptimizer<B>,
    steps: usize,
    end_energies: Option<(f64, f64)>,
    last_insertion: Option<usize>,
    device: Option<DeviceStep<B>>,
    graph_note: Option<String>,
}

/// The buffers of a step on the device ([`Neb::step_on_device`]), made for one pivot count
/// and kept, so that every step launches on the same addresses (what a CUDA graph replays).
struct DeviceStep<B: Backend> {
    pivots: usize,
    /// Whether the climbing image is on in the steps these buffers serve.
    climb: bool,
    /// The batches of interior pivots.
    chunks: Vec<DeviceBatch<B>>,
    /// The P energies (the endpoints' written once).
    energies: B::Buf,
    /// The P perpendicular force norms, f64 as pairs of words.
    norms: B::Buf,
    /// The P − 1 segment lengths after the update (redistribution only), f64 as pairs of words.
    lengths: B::Buf,
    /// Adam's bias terms of the step, written by the host before it.
    bias: B::Buf,
    /// The redistributed path before it is copied back into the path's own buffer.
    scratch: B::Buf,
}

/// One batch of interior pivots of a device step: its first pivot, its points, gradients and
/// energies.
struct DeviceBatch<B: Backend> {
    start: usize,
    points: B::Buf,
    grads: B::Buf,
    energies: B::Buf,
}

/// The recorded step of a [`Stepping::Graph`] run: the key it was recorded at, the key whose
/// warm-up step has run, and whether the backend cannot record.
#[derive(Default)]
struct GraphSteps {
    recorded: Option<(DeviceStepKey, Box<dyn mep_tensor::Recorded>)>,
    warmed: Option<DeviceStepKey>,
    unable: bool,
}

/// What a step on the device can take: a fixed pivot count and climbing switch.
///
/// A captured step replays correctly while [`Neb::device_step_key`] keeps its value; after a
/// pivot insertion or the climbing image switching on, capture again.
pub type DeviceStepKey = (usize, bool);

impl<B: Backend> Neb<B> {
    /// A NEB on `path` with `config`; fails on an out-of-range config value.
    pub fn new(b: &B, config: NebConfig, path: Path<B>) -> Result<Self> {
        config.validate()?;
        let len = path.pivots() * path.dim();
        Ok(Neb {
            grads: b.zeros(len)?,
            forces: b.zeros(len)?,
            opt: PathOptimizer::new(b, &config.optimizer, len)?,
            config,
            path,
            steps: 0,
            end_energies: None,
            last_insertion: None,
            device: None,
            graph_note: None,
        })
    }

    /// The current path.
    pub fn path(&self) -> &Path<B> {
        &self.path
    }

    /// The path, consuming the NEB.
    pub fn into_path(self) -> Path<B> {
        self.path
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The configuration.
    pub fn config(&self) -> &NebConfig {
        &self.config
    }

    /// Whether the climbing image is on at the current step count.
    pub fn climbing_on(&self) -> bool {
        self.config
            .climbing_after
            .is_some_and(|c| self.steps as f64 >= c * self.config.max_steps as f64)
    }

    fn check_energy<E: Energy<B>>(&self, energy: &E) -> Result<usize> {
        if energy.dim() != self.path.dim() {
            return Err(NebError::Size {
                what: "energy dim vs path dim",
                expected: self.path.dim(),
                found: energy.dim(),
            });
        }
        let mb = energy.max_batch();
        if mb == 0 {
            return Err(NebError::Config {
                field: "Energy::max_batch",
                msg: "is 0; it must be at least 1".into(),
            });
        }
        Ok(mb)
    }

    /// Evaluates `n` points, checks the answer's size and finiteness (`index0` numbers the
    /// first point in errors).
    #[allow(clippy::too_many_arguments)]
    fn evaluate<E: Energy<B>>(
        &self,
        b: &B,
        energy: &mut E,
        points: &B::Buf,
        n: usize,
        grads: Option<&mut B::Buf>,
        seed: u64,
        what: &'static str,
        index0: usize,
    ) -> Result<Evaluation<E::Aux>> {
        energy.reseed(seed);
        let ev = energy.evaluate(b, points, n, grads)?;
        if ev.energies.len() != n {
            return Err(NebError::Size {
                what: "energies returned by Energy::evaluate",
                expected: n,
                found: ev.energies.len(),
            });
        }
        if let Some(k) = ev.energies.iter().position(|e| !e.is_finite()) {
            return Err(NebError::NonFinite {
                what,
                index: index0 + k,
                step: self.steps,
            });
        }
        Ok(ev)
    }

    /// Evaluates the (P−1)·S+1 dense points of the current path, batched by energy.max_batch().
    pub fn dense<E: Energy<B>>(&self, b: &B, energy: &mut E) -> Result<Dense<E::Aux>> {
        let mb = self.check_energy(energy)?;
        let (p, d, s) = (self.path.pivots(), self.path.dim(), self.config.sub_points);
        let total = (p - 1) * s + 1;
        let plan: Vec<Lerp> = (0..total)
            .map(|k| {
                let seg = (k / s).min(p - 2);
                let j = k - seg * s;
                Lerp {
                    a: seg,
                    b: seg + 1,
                    t: if j == s { 1.0 } else { (j as f64 / s as f64) as f32 },
                }
            })
            .collect();
        let mut energies = Vec::with_capacity(total);
        let mut aux = Vec::with_capacity(total);
        let mut points = b.alloc(mb.min(total) * d)?;
        for (chunk, rows) in plan.chunks(mb).enumerate() {
            let n = rows.len();
            if b.len(&points) != n * d {
                points = b.alloc(n * d)?;
            }
            b.lerp_rows(d, self.path.buf(), rows, &mut points)?;
            let seed = call_seed(self.config.seed, self.steps, CALL_DENSE, chunk);
            let ev = self.evaluate(b, energy, &points, n, None, seed, "dense energy", chunk * mb)?;
            if ev.aux.len() != n {
                return Err(NebError::Size {
                    what: "aux returned by Energy::evaluate",
                    expected: n,
                    found: ev.aux.len(),
                });
            }
            energies.extend(ev.energies);
            aux.extend(ev.aux);
        }
        let t = (0..total).map(|k| k as f64 / (total - 1) as f64).collect();
        Ok(Dense {
            pivots: p,
            sub_points: s,
            t,
            energies,
            aux,
        })
    }

    /// The energies of the two endpoints, evaluated once (they never move).
    fn end_energies<E: Energy<B>>(&mut self, b: &B, energy: &mut E) -> Result<(f64, f64)> {
        if let Some(e) = self.end_energies {
            return Ok(e);
        }
        let (p, d) = (self.path.pivots(), self.path.dim());
        let mut ends = b.alloc(2 * d)?;
        b.copy_rows(d, self.path.buf(), 0, &mut ends, 0, 1)?;
        b.copy_rows(d, self.path.buf(), p - 1, &mut ends, 1, 1)?;
        let seed = call_seed(self.config.seed, self.steps, CALL_ENDPOINTS, 0);
        let ev = self.evaluate(b, energy, &ends, 2, None, seed, "energy", 0);
        let ev = match ev {
            // Name the last pivot rather than dense index 1.
            Err(NebError::NonFinite { what, index: 1, step }) => {
                return Err(NebError::NonFinite {
                    what,
                    index: p - 1,
                    step,
                })
            }
            other => other?,
        };
        let e = (ev.energies[0], ev.energies[1]);
        self.end_energies = Some(e);
        Ok(e)
    }

    /// One step: energy + gradient at the interior pivots, forces, optimiser update (and
    /// redistribution for k = ∞).
    pub fn step<E: Energy<B>>(&mut self, b: &B, energy: &mut E) -> Result<StepReport> {
        let mb = self.check_energy(energy)?;
        let (p, d) = (self.path.pivots(), self.path.dim());
        let (e0, e1) = self.end_energies(b, energy)?;
        let mut energies = vec![0.0; p];
        (energies[0], energies[p - 1]) = (e0, e1);
        // Energies and gradients at the interior pivots, in batches.
        let interior = p - 2;
        if interior > 0 {
            let mut points = b.alloc(mb.min(interior) * d)?;
            let mut grads = b.zeros(mb.min(interior) * d)?;
            for (chunk, start) in (1..p - 1).step_by(mb).enumerate() {
                let n = mb.min(p - 1 - start);
                if b.len(&points) != n * d {
                    points = b.alloc(n * d)?;
                    grads = b.zeros(n * d)?;
                }
                b.copy_rows(d, self.path.buf(), start, &mut points, 0, n)?;
                let seed = call_seed(self.config.seed, self.steps, CALL_PIVOTS, chunk);
                let ev = self.evaluate(b, energy, &points, n, Some(&mut grads), seed, "energy", start)?;
                energies[start..start + n].copy_from_slice(&ev.energies);
                b.copy_rows(d, &grads, 0, &mut self.grads, start, n)?;
            }
        }
        // The climbing image: the highest interior pivot (the first of equal ones).
        let climbing = if self.climbing_on() {
            climbing_image(&energies)
        } else {
            None
        };
        let norms = forces(
            b,
            &self.path,
            &self.grads,
            &energies,
            self.config.spring,
            climbing,
            &mut self.forces,
        )?;
        if let Some(i) = norms.iter().position(|f| !f.is_finite()) {
            return Err(NebError::NonFinite {
                what: "gradient",
                index: i,
                step: self.steps,
            });
        }
        let max_force = norms.iter().fold(0.0f64, |m, &f| m.max(f));
        self.opt.step(b, self.path.buf_mut(), &mut self.forces)?;
        if self.config.spring == Spring::Redistribute {
            self.redistribute(b, climbing)?;
        }
        self.steps += 1;
        Ok(StepReport {
            step: self.steps,
            pivots: p,
            energies,
            max_force,
            climbing,
        })
    }

    /// Whether [`step_on_device`](Self::step_on_device) can take this NEB's steps on `energy`:
    /// the optimiser is Adam and the energy evaluates on the device.
    pub fn can_step_on_device<E: Energy<B>>(&self, energy: &E) -> bool {
        self.opt.adam_params().is_some() && energy.evaluates_on_device()
    }

    /// The pivot count and climbing switch of the next step: a step captured in a graph
    /// replays correctly while this stays the same.
    pub fn device_step_key(&self) -> DeviceStepKey {
        (self.path.pivots(), self.climbing_on())
    }

    /// The host's part before a step on the device: the endpoint energies (evaluated once),
    /// the step's buffers (made when the key changed) and Adam's bias terms of this step.
    /// Outside a capture; call it before every [`step_on_device`](Self::step_on_device) or
    /// replay of one.
    pub fn prepare_device_step<E: Energy<B>>(&mut self, b: &B, energy: &mut E) -> Result<()> {
        let mb = self.check_energy(energy)?;
        let Some(h) = self.opt.adam_params().filter(|_| energy.evaluates_on_device()) else {
            return Err(NebError::Config {
                field: "optimizer",
                msg: "a step on the device needs Adam and an energy that evaluates on the device \
                      (Energy::evaluates_on_device); step with Neb::step"
                    .into(),
            });
        };
        let (e0, e1) = self.end_energies(b, energy)?;
        let (p, d) = (self.path.pivots(), self.path.dim());
        let climb = self.climbing_on() && p >= 3;
        if self.device.as_ref().is_none_or(|s| (s.pivots, s.climb) != (p, climb)) {
            let mut chunks = Vec::new();
            for start in (1..p - 1).step_by(mb) {
                let n = mb.min(p - 1 - start);
                chunks.push(DeviceBatch {
                    start,
                    points: b.alloc(n * d)?,
                    grads: b.zeros(n * d)?,
                    energies: b.zeros(n)?,
                });
            }
            let mut e = vec![0.0f32; p];
            (e[0], e[p - 1]) = (e0 as f32, e1 as f32);
            self.device = Some(DeviceStep {
                pivots: p,
                climb,
                chunks,
                energies: b.upload(&e)?,
                norms: b.zeros(2 * p)?,
                lengths: b.zeros(2 * (p - 1))?,
                bias: b.zeros(2)?,
                scratch: b.zeros(p * d)?,
            });
        }
        let dev = self.device.as_mut().ok_or(NebError::Config {
            field: "device step",
            msg: "its buffers are missing".into(),
        })?;
        b.copy(&b.upload(&h.bias_terms())?, &mut dev.bias)?;
        Ok(())
    }

    /// The device's part of a step, [`step`](Self::step)'s work with no host copy: energies
    /// and gradients at the interior pivots ([`Energy::evaluate_on_device`]), forces with the
    /// climbing image chosen on the device, Adam's update with the bias terms read from the
    /// device, and the redistribution of k = ∞ planned on the device. Same launches on the
    /// same buffers every step, so a `KernelBackend` can capture it in a CUDA graph and
    /// replay it; [`prepare_device_step`](Self::prepare_device_step) comes before it (or each
    /// replay) and [`finish_device_step`](Self::finish_device_step) after. The path it leaves
    /// is bit for bit the one [`step`](Self::step) leaves; after a non-finite energy it is
    /// unspecified (the finish reports the error).
    pub fn step_on_device<E: Energy<B>>(&mut self, b: &B, energy: &mut E) -> Result<()> {
        let (p, d) = (self.path.pivots(), self.path.dim());
        let Neb {
            config,
            path,
            grads,
            forces,
            opt,
            device,
            steps,
            ..
        } = self;
        let dev = device.as_mut().filter(|s| s.pivots == p).ok_or(NebError::Config {
            field: "device step",
            msg: "prepare_device_step must come first (and again after a pivot insertion)".into(),
        })?;
        for (chunk, batch) in dev.chunks.iter_mut().enumerate() {
            let (start, n) = (batch.start, b.len(&batch.energies));
            b.copy_rows(d, path.buf(), start, &mut batch.points, 0, n)?;
            energy.reseed(call_seed(config.seed, *steps, CALL_PIVOTS, chunk));
            energy.evaluate_on_device(b, &batch.points, n, &mut batch.grads, &mut batch.energies)?;
            b.copy_rows(1, &batch.energies, 0, &mut dev.energies, start, n)?;
            b.copy_rows(d, &batch.grads, 0, grads, start, n)?;
        }
        let fp = NebForceParams {
            pivots: p,
            dim: d,
            spring: spring_param(config.spring),
            climbing: None,
        };
        b.neb_forces_on_device(&fp, dev.climb, path.buf(), grads, &dev.energies, forces, &mut dev.norms)?;
        opt.update_indirect(b, path.buf_mut(), forces, &dev.bias)?;
        if config.spring == Spring::Redistribute {
            let e = dev.climb.then_some(&dev.energies);
            b.redistribute_rows(d, p, path.buf(), e, &mut dev.scratch, &mut dev.lengths)?;
            b.copy(&dev.scratch, path.buf_mut())?;
        }
        Ok(())
    }

    /// The host's part after a step on the device: reads the P energies, the force norms and
    /// (k = ∞) the segment lengths, checks that they are finite as [`step`](Self::step) does,
    /// counts the step and reports it.
    pub fn finish_device_step(&mut self, b: &B) -> Result<StepReport> {
        let p = self.path.pivots();
        let dev = self.device.as_ref().filter(|s| s.pivots == p).ok_or(NebError::Config {
            field: "device step",
            msg: "no step on the device was prepared for this path".into(),
        })?;
        let energies: Vec<f64> = b.download(&dev.energies)?.into_iter().map(f64::from).collect();
        let bad = |what: &'static str, index: usize| NebError::NonFinite {
            what,
            index,
            step: self.steps,
        };
        if let Some(i) = energies.iter().position(|e| !e.is_finite()) {
            return Err(bad("energy", i));
        }
        let norms = f64_from_words(&b.download(&dev.norms)?);
        if let Some(i) = norms.iter().position(|f| !f.is_finite()) {
            return Err(bad("gradient", i));
        }
        if self.config.spring == Spring::Redistribute {
            let dist = f64_from_words(&b.download(&dev.lengths)?);
            if let Some(i) = dist.iter().position(|d| !d.is_finite()) {
                return Err(bad("segment length after the update", i));
            }
        }
        let climbing = if dev.climb { climbing_image(&energies) } else { None };
        self.opt.advance();
        self.steps += 1;
        Ok(StepReport {
            step: self.steps,
            pivots: p,
            energies,
            max_force: norms.iter().fold(0.0f64, |m, &f| m.max(f)),
            climbing,
        })
    }

    /// One step through the device path: [`prepare_device_step`](Self::prepare_device_step),
    /// [`step_on_device`](Self::step_on_device), [`finish_device_step`](Self::finish_device_step).
    /// The same path and report as [`step`](Self::step), with one host read per step instead
    /// of one per batch, force and redistribution.
    pub fn step_device<E: Energy<B>>(&mut self, b: &B, energy: &mut E) -> Result<StepReport> {
        self.prepare_device_step(b, energy)?;
        self.step_on_device(b, energy)?;
        self.finish_device_step(b)
    }

    /// Why a [`Stepping::Graph`] run took its steps unrecorded (the backend cannot record, or
    /// could not record this energy's step), if it did.
    pub fn graph_note(&self) -> Option<&str> {
        self.graph_note.as_deref()
    }

    /// One step as [`NebConfig::stepping`] says.
    fn configured_step<E: Energy<B>>(&mut self, b: &B, energy: &mut E, graph: &mut GraphSteps) -> Result<StepReport> {
        let mode = match self.config.stepping {
            _ if !self.can_step_on_device(energy) => Stepping::Host,
            Stepping::Graph if graph.unable => Stepping::Device,
            m => m,
        };
        match mode {
            Stepping::Host => self.step(b, energy),
            Stepping::Device => self.step_device(b, energy),
            Stepping::Graph => {
                let key = self.device_step_key();
                if let Some((k, g)) = &graph.recorded {
                    if *k == key {
                        self.prepare_device_step(b, energy)?;
                        g.replay()?;
                        return self.finish_device_step(b);
                    }
                }
                graph.recorded = None;
                if graph.warmed != Some(key) {
                    // The first step at this key fills the backend's pool, so that the
                    // recording of the next one finds every buffer it needs.
                    graph.warmed = Some(key);
                    return self.step_device(b, energy);
                }
                self.prepare_device_step(b, energy)?;
                let recorded = b.record(&mut || {
                    self.step_on_device(b, energy)
                        .map_err(|e| Box::new(e) as mep_tensor::RecordError)
                });
                match recorded {
                    Ok(Some(g)) => {
                        g.replay()?;
                        graph.recorded = Some((key, g));
                    }
                    // A backend that cannot record, or work it could not record (a host copy,
                    // a buffer missing from the pool): recording ran nothing, so the step is
                    // taken as `Device` would, and so are the later ones.
                    Ok(None) | Err(_) => {
                        self.graph_note = Some(match recorded {
                            Err(e) => format!("{} could not record the NEB step ({e}); steps ran unrecorded", b.name()),
                            _ => format!("{} does not record; steps ran unrecorded", b.name()),
                        });
                        graph.unable = true;
                        self.step_on_device(b, energy)?;
                    }
                }
                self.finish_device_step(b)
            }
        }
    }

    /// Moves the pivots to equal arc length along the piecewise-linear path (string method),
    /// each side of the climbing image on its own.
    fn redistribute(&mut self, b: &B, climbing: Option<usize>) -> Result<()> {
        let dist = self.path.segment_lengths(b)?;
        if let Some(i) = dist.iter().position(|d| !d.is_finite()) {
            return Err(NebError::NonFinite {
                what: "segment length after the update",
                index: i,
                step: self.steps,
            });
        }
        let plan = redistribution_plan(&dist, climbing);
        if plan.iter().enumerate().any(|(r, l)| l.a != r || l.t != 0.0) {
            self.path.remap(b, &plan)?;
        }
        Ok(())
    }

    /// AutoNEB-style insertion from a dense profile of the current path: a pivot at the dense
    /// point of largest deviation, when it exceeds the threshold, P < max_pivots and no pivot
    /// was inserted in the last `every` steps. Resets the optimiser state. Returns the new
    /// pivot's index.
    pub fn insert_pivot<A>(&mut self, b: &B, dense: &Dense<A>) -> Result<Option<usize>> {
        let Some(ins) = self.config.insertion else {
            return Ok(None);
        };
        let (p, d) = (self.path.pivots(), self.path.dim());
        if p >= ins.max_pivots || self.last_insertion.is_some_and(|last| self.steps < last + ins.every) {
            return Ok(None);
        }
        if dense.pivots != p || dense.energies.len() != (p - 1) * dense.sub_points + 1 {
            return Err(NebError::Size {
                what: "dense profile points vs the path's (P-1)·S+1",
                expected: (p - 1) * dense.sub_points + 1,
                found: dense.energies.len(),
            });
        }
        let Some((k, dev)) = dense.largest_deviation() else {
            return Ok(None);
        };
        if dev <= ins.threshold {
            return Ok(None);
        }
        let s = dense.sub_points;
        let (seg, j) = (k / s, k % s);
        let plan: Vec<Lerp> = (0..=p)
            .map(|r| match r.cmp(&(seg + 1)) {
                std::cmp::Ordering::Less => Lerp { a: r, b: r, t: 0.0 },
                std::cmp::Ordering::Equal => Lerp {
                    a: seg,
                    b: seg + 1,
                    t: (j as f64 / s as f64) as f32,
                },
                std::cmp::Ordering::Greater => Lerp {
                    a: r - 1,
                    b: r - 1,
                    t: 0.0,
                },
            })
            .collect();
        self.path.remap(b, &plan)?;
        let len = (p + 1) * d;
        self.grads = b.zeros(len)?;
        self.forces = b.zeros(len)?;
        self.opt = PathOptimizer::new(b, &self.config.optimizer, len)?;
        self.device = None;
        self.last_insertion = Some(self.steps);
        Ok(Some(seg + 1))
    }

    /// Steps until `done(dense)` holds (checked before the first step too, every check_every
    /// steps, and on the final path when the budget is spent), fmax is reached or max_steps
    /// are spent; AutoNEB insertion from the dense profile when configured. `on_step` sees
    /// every step's report.
    pub fn run<E, D, O>(&mut self, b: &B, energy: &mut E, mut done: D, mut on_step: O) -> Result<Outcome<E::Aux>>
    where
        E: Energy<B>,
        D: FnMut(&Dense<E::Aux>) -> bool,
        O: FnMut(&StepReport),
    {
        let start = self.steps;
        let mut last: Option<StepReport> = None;
        let mut graph = GraphSteps::default();
        // The dense profile of the current path, if evaluated since it last changed.
        let mut current: Option<Dense<E::Aux>>;
        let reason = loop {
            current = None;
            // Due when the steps of this run are a multiple of check_every (0 included).
            let since = self.steps - start;
            if since / self.config.check_every * self.config.check_every == since {
                let dense = self.dense(b, energy)?;
                if done(&dense) {
                    return Ok(Outcome {
                        reason: StopReason::Predicate,
                        steps: self.steps,
                        dense,
                        last,
                    });
                }
                if self.insert_pivot(b, &dense)?.is_none() {
                    current = Some(dense);
                }
            }
            if self.steps >= self.config.max_steps {
                break StopReason::Budget;
            }
            let rep = self.configured_step(b, energy, &mut graph)?;
            on_step(&rep);
            let climbing_ready = self.config.climbing_after.is_none() || rep.climbing.is_some() || rep.pivots < 3;
            let converged = climbing_ready && self.config.fmax.is_some_and(|f| rep.max_force <= f);
            last = Some(rep);
            if converged {
                current = None;
                break StopReason::Converged;
            }
        };
        let (dense, reason) = match current {
            Some(d) => (d, reason),
            None => {
                let d = self.dense(b, energy)?;
                // The predicate also gets the final path when the budget ran out between checks.
                let reason = if reason == StopReason::Budget && done(&d) {
                    StopReason::Predicate
                } else {
                    reason
                };
                (d, reason)
            }
        };
        Ok(Outcome {
            reason,
            steps: self.steps,
            dense,
            last,
        })
    }
}
