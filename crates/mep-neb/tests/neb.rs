//! The nudged elastic band end to end: the climbing image finds the Müller–Brown saddle with
//! every optimiser and both spring kinds, endpoints never move, redistribution, insertion,
//! FIRE against hand-stepped iterations, determinism, stopping rules and non-finite energies.

use mep_neb::potentials::MullerBrown;
use mep_neb::*;
use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, Lerp};

// ---- helpers ----------------------------------------------------------------------------

/// Minimum A, minimum C and the saddle between them, E = -40.664844 (Müller & Brown 1979).
const MIN_A: [f32; 2] = [-0.558224, 1.441726];
const MIN_C: [f32; 2] = [-0.050011, 0.466694];
const SADDLE: [f64; 2] = [-0.822002, 0.624313];
const SADDLE_E: f64 = -40.664844;

fn straight(cpu: &CpuBackend, a: &[f32], b: &[f32], pivots: usize) -> Path<CpuBackend> {
    let (a, b) = (cpu.upload(a).unwrap(), cpu.upload(b).unwrap());
    Path::straight(cpu, &a, &b, 2, pivots).unwrap()
}

/// A smooth energy built from a host function of one point (energy, gradient) in R^D.
struct HostEnergy<F> {
    dim: usize,
    f: F,
    calls: usize,
    max_batch: usize,
}

impl<F: FnMut(&[f32]) -> (f64, Vec<f64>)> HostEnergy<F> {
    fn new(dim: usize, f: F) -> Self {
        HostEnergy {
            dim,
            f,
            calls: 0,
            max_batch: 64,
        }
    }
}

impl<F: FnMut(&[f32]) -> (f64, Vec<f64>)> Energy<CpuBackend> for HostEnergy<F> {
    type Aux = usize;
    fn dim(&self) -> usize {
        self.dim
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn evaluate(
        &mut self,
        b: &CpuBackend,
        points: &mep_tensor::CpuBuf,
        n: usize,
        grads: Option<&mut mep_tensor::CpuBuf>,
    ) -> mep_neb::Result<Evaluation<usize>> {
        self.calls += 1;
        assert!(n <= self.max_batch, "batch of {n} over max_batch {}", self.max_batch);
        let x = b.download(points)?;
        assert_eq!(x.len(), n * self.dim);
        let mut energies = vec![];
        let mut g = vec![];
        for p in x.chunks(self.dim) {
            let (e, d) = (self.f)(p);
            energies.push(e);
            g.extend(d.iter().map(|&v| v as f32));
        }
        if let Some(grads) = grads {
            grads.as_mut_slice().copy_from_slice(&g);
        }
        Ok(Evaluation {
            energies,
            aux: (0..n).map(|k| k + 100 * self.calls).collect(),
        })
    }
}

/// A Gaussian bump of height 10 and width 0.05 at (0.3, 0).
fn bump(p: &[f32]) -> (f64, Vec<f64>) {
    let (dx, dy) = (p[0] as f64 - 0.3, p[1] as f64);
    let w2 = 0.05f64 * 0.05;
    let e = 10.0 * (-(dx * dx + dy * dy) / (2.0 * w2)).exp();
    (e, vec![-e * dx / w2, -e * dy / w2])
}

/// The climbing image from minimum A to minimum C: (reason, steps, climbing image, its energy).
fn climb_a_to_c(spring: Spring, optimizer: PathOptimizerConfig) -> (StopReason, usize, [f64; 2], f64) {
    let cpu = CpuBackend::new();
    let config = NebConfig {
        spring,
        optimizer,
        climbing_after: Some(0.15),
        max_steps: 4000,
        fmax: Some(0.05),
        ..NebConfig::default()
    };
    let mut neb = Neb::new(&cpu, config, straight(&cpu, &MIN_A, &MIN_C, 9)).unwrap();
    let out = neb.run(&cpu, &mut MullerBrown, |_| false, |_| {}).unwrap();
    let top = out.last.as_ref().unwrap().climbing.expect("climbing image on");
    let p = neb.path().to_vec(&cpu).unwrap();
    let z = [p[2 * top] as f64, p[2 * top + 1] as f64];
    let e = MullerBrown::energy(z[0], z[1]);
    eprintln!(
        "{spring:?} {optimizer:?}: {:?} after {} steps, saddle {z:?}, E {e:.6}",
        out.reason, out.steps
    );
    (out.reason, out.steps, z, e)
}

#[track_caller]
fn assert_saddle(spring: Spring, optimizer: PathOptimizerConfig) {
    let (reason, _, z, e) = climb_a_to_c(spring, optimizer);
    assert_eq!(reason, StopReason::Converged);
    // The saddle between A and C: (-0.822002, 0.624313), E = -40.664844 (Müller & Brown 1979).
    assert!((e - SADDLE_E).abs() <= 1e-3, "E = {e}");
    assert!(
        (z[0] - SADDLE[0]).hypot(z[1] - SADDLE[1]) <= 1e-3,
        "climbing image at {z:?}"
    );
}

const SGD: PathOptimizerConfig = PathOptimizerConfig::Sgd {
    lr: 1e-4,
    momentum: 0.9,
};

// ---- Müller–Brown: the climbing image converges to the saddle ---------------------------

#[test]
fn muller_brown_saddle_adam_spring() {
    assert_saddle(Spring::Constant(10.0), PathOptimizerConfig::adam(2e-3));
}

#[test]
fn muller_brown_saddle_adam_redistribute() {
    assert_saddle(Spring::Redistribute, PathOptimizerConfig::adam(2e-3));
}

#[test]
fn muller_brown_saddle_sgd_spring() {
    assert_saddle(Spring::Constant(10.0), SGD);
}

#[test]
fn muller_brown_saddle_sgd_redistribute() {
    assert_saddle(Spring::Redistribute, SGD);
}

#[test]
fn muller_brown_saddle_fire_spring() {
    assert_saddle(Spring::Constant(10.0), PathOptimizerConfig::Fire(FireParams::default()));
}

#[test]
fn muller_brown_saddle_fire_redistribute() {
    assert_saddle(Spring::Redistribute, PathOptimizerConfig::Fire(FireParams::default()));
}

// ---- endpoints, redistribution ----------------------------------------------------------

#[test]
fn endpoints_never_move() {
    let cpu = CpuBackend::new();
    let optimizers = [
        PathOptimizerConfig::adam(1e-2),
        PathOptimizerConfig::Sgd {
            lr: 1e-4,
            momentum: 0.9,
        },
        PathOptimizerConfig::Fire(FireParams::default()),
    ];
    for optimizer in optimizers {
        for spring in [Spring::Constant(5.0), Spring::Redistribute] {
            let path = straight(&cpu, &MIN_A, &MIN_C, 7);
            let before = path.to_vec(&cpu).unwrap();
            let config = NebConfig {
                spring,
                optimizer,
                climbing_after: Some(0.5),
                max_steps: 200,
                ..NebConfig::default()
            };
            let mut neb = Neb::new(&cpu, config, path).unwrap();
            for _ in 0..200 {
                neb.step(&cpu, &mut MullerBrown).unwrap();
            }
            let after = neb.path().to_vec(&cpu).unwrap();
            assert_eq!(&after[..2], &before[..2], "{optimizer:?} {spring:?}: start moved");
            assert_eq!(&after[12..], &before[12..], "{optimizer:?} {spring:?}: end moved");
            assert_ne!(
                &after[2..12],
                &before[2..12],
                "{optimizer:?} {spring:?}: interior did not move"
            );
        }
    }
}

#[test]
fn redistribution_gives_equal_segment_lengths() {
    let cpu = CpuBackend::new();
    // Unevenly spaced pivots on a line; the energy is flat, so only the redistribution moves them.
    let xs = [0.0f32, 0.05, 0.1, 0.7, 0.8, 2.0];
    let data: Vec<f32> = xs.iter().flat_map(|&x| [x, 0.5 * x]).collect();
    let path = Path::from_host(&cpu, &data, 6, 2).unwrap();
    let length = path.length(&cpu).unwrap();
    let mut neb = Neb::new(&cpu, NebConfig::default(), path).unwrap();
    let mut flat = HostEnergy::new(2, |_: &[f32]| (1.0, vec![0.0, 0.0]));
    neb.step(&cpu, &mut flat).unwrap();
    let seg = neb.path().segment_lengths(&cpu).unwrap();
    for s in &seg {
        assert!(
            (s - length / 5.0).abs() < 1e-6,
            "segments {seg:?}, want {}",
            length / 5.0
        );
    }
    // On a bent path the pivots are at equal arc length: lengths (1, 3) give pivots at arc
    // 0, 4/3, 8/3, 4, i.e. t = 1/9 and 5/9 along the second segment.
    let plan = redistribution_plan(&[1.0, 3.0, 0.0], None);
    assert_eq!(plan[0], Lerp { a: 0, b: 0, t: 0.0 });
    assert_eq!((plan[1].a, plan[1].b), (1, 2));
    assert!((plan[1].t - 1.0 / 9.0).abs() < 1e-7);
    assert_eq!((plan[2].a, plan[2].b), (1, 2));
    assert!((plan[2].t - 5.0 / 9.0).abs() < 1e-7);
    assert_eq!(plan[3], Lerp { a: 3, b: 3, t: 0.0 });
    // With a climbing image each side is spread on its own and the image stays: lengths
    // (1, 3 | 1, 1) put the pivots at arc 0, 2, 4 | 5, 6.
    let dist = [1.0, 3.0, 1.0, 1.0];
    let plan = redistribution_plan(&dist, Some(2));
    let cum = [0.0, 1.0, 4.0, 5.0, 6.0];
    let arc: Vec<f64> = plan
        .iter()
        .map(|l| cum[l.a] + l.t as f64 * (cum[l.b] - cum[l.a]))
        .collect();
    for (got, want) in arc.iter().zip([0.0, 2.0, 4.0, 5.0, 6.0]) {
        assert!((got - want).abs() < 1e-6, "arc positions {arc:?}");
    }
    assert_eq!(plan[2], Lerp { a: 2, b: 2, t: 0.0 });
    // A path of zero length stays.
    assert!(redistribution_plan(&[0.0, 0.0], None)
        .iter()
        .enumerate()
        .all(|(r, l)| l.a == r && l.t == 0.0));
}

// ---- FIRE -------------------------------------------------------------------------------

#[test]
fn fire_matches_hand_stepped_iterations() {
    // E = x²/2, F = -x, x0 = 1, ASE's defaults (dt 0.1):
    // 1: v = 0.1·(-1) = -0.1, x = 1 + 0.1·(-0.1) = 0.99.
    // 2: P = F·v > 0: v = 0.9·(-0.1) + 0.1·0.1·(-1) = -0.1; v += 0.1·(-0.99) → -0.199; x = 0.9701.
    // 3: v = 0.9·(-0.199) + 0.1·0.199·(-1) = -0.199; v += 0.1·(-0.9701) → -0.29601; x = 0.940499.
    let cpu = CpuBackend::new();
    let mut fire = Fire::new(&cpu, FireParams::default(), 1).unwrap();
    let mut x = cpu.upload(&[1.0]).unwrap();
    for want in [0.99, 0.9701, 0.940499] {
        let f = cpu.upload(&[-cpu.download(&x).unwrap()[0]]).unwrap();
        fire.step(&cpu, &mut x, &f).unwrap();
        let got = cpu.download(&x).unwrap()[0] as f64;
        assert!((got - want).abs() < 1e-6, "x = {got}, want {want}");
    }
}

#[test]
fn fire_matches_ase_on_a_quadratic() {
    // E = (x² + 25 y²)/2 from (3, 1): ase/optimize/fire.py transcribed in f64 here, against the
    // backend implementation for 60 steps, through the maxstep cap, uphill resets and dt growth.
    let k = [1.0, 25.0];
    let p = FireParams::default();
    let (mut x, mut v) = ([3.0f64, 1.0], [0.0f64; 2]);
    let (mut dt, mut a, mut nsteps) = (p.dt, p.astart, 0usize);
    let (mut capped, mut resets, mut grown) = (0, 0, 0);
    let cpu = CpuBackend::new();
    let mut fire = Fire::new(&cpu, p, 2).unwrap();
    let mut xb = cpu.upload(&[3.0, 1.0]).unwrap();
    for step in 0..60 {
        let f = [-k[0] * x[0], -k[1] * x[1]];
        if step > 0 {
            let vf = f[0] * v[0] + f[1] * v[1];
            if vf > 0.0 {
                let (fn_, vn) = (f[0].hypot(f[1]), v[0].hypot(v[1]));
                for j in 0..2 {
                    v[j] = (1.0 - a) * v[j] + a * f[j] / fn_ * vn;
                }
                if nsteps > p.nmin {
                    dt = (dt * p.finc).min(p.dtmax);
                    a *= p.fa;
                    grown += 1;
                }
                nsteps += 1;
            } else {
                v = [0.0; 2];
                a = p.astart;
                dt *= p.fdec;
                nsteps = 0;
                resets += 1;
            }
        }
        let mut dr = [0.0; 2];
        for j in 0..2 {
            v[j] += dt * f[j];
            dr[j] = dt * v[j];
        }
        let n = dr[0].hypot(dr[1]);
        if n > p.maxstep {
            dr = [dr[0] * p.maxstep / n, dr[1] * p.maxstep / n];
            capped += 1;
        }
        x = [x[0] + dr[0], x[1] + dr[1]];

        let xs = cpu.download(&xb).unwrap();
        let fb = cpu.upload(&[-(k[0] as f32) * xs[0], -(k[1] as f32) * xs[1]]).unwrap();
        fire.step(&cpu, &mut xb, &fb).unwrap();
        let got = cpu.download(&xb).unwrap();
        for j in 0..2 {
            assert!((got[j] as f64 - x[j]).abs() < 1e-4, "step {step}: {got:?} vs {x:?}");
        }
        assert!(
            (fire.dt() - dt).abs() < 1e-12 && (fire.a() - a).abs() < 1e-12,
            "step {step}: dt, a"
        );
    }
    assert!(
        capped > 0 && resets > 0 && grown > 0,
        "capped {capped}, resets {resets}, grown {grown}"
    );
}

// ---- insertion --------------------------------------------------------------------------

#[test]
fn insertion_puts_the_pivot_where_the_deviation_is_largest() {
    let cpu = CpuBackend::new();
    // Pivots at x = -1, 0, 1; dense points every 0.1. The bump at x = 0.3 departs most from the
    // linear interpolation of the pivot energies (≈ 0 there), at dense point 13.
    let config = NebConfig {
        sub_points: 10,
        insertion: Some(Insertion {
            threshold: 1.0,
            max_pivots: 10,
            every: 1,
        }),
        ..NebConfig::default()
    };
    let mut neb = Neb::new(&cpu, config, straight(&cpu, &[-1.0, 0.0], &[1.0, 0.0], 3)).unwrap();
    let mut energy = HostEnergy::new(2, bump);
    let dense = neb.dense(&cpu, &mut energy).unwrap();
    assert_eq!(dense.largest_deviation().map(|(k, _)| k), Some(13));
    assert_eq!(neb.insert_pivot(&cpu, &dense).unwrap(), Some(2));
    let p = neb.path().to_vec(&cpu).unwrap();
    assert_eq!(neb.path().pivots(), 4);
    assert_eq!(&p[..4], &[-1.0, 0.0, 0.0, 0.0]);
    assert!(
        (p[4] - 0.3).abs() < 1e-6 && p[5] == 0.0,
        "new pivot at ({}, {})",
        p[4],
        p[5]
    );
    assert_eq!(&p[6..], &[1.0, 0.0]);
    // The new path is the same curve: its dense profile peaks at the new pivot, 10.
    let dense = neb.dense(&cpu, &mut energy).unwrap();
    assert_eq!(dense.max_energy().0, 2 * 10);
    assert!((dense.max_energy().1 - 10.0).abs() < 1e-6);
    // Below the threshold, nothing is inserted.
    let config = NebConfig {
        sub_points: 10,
        insertion: Some(Insertion {
            threshold: 11.0,
            max_pivots: 10,
            every: 1,
        }),
        ..NebConfig::default()
    };
    let mut neb = Neb::new(&cpu, config, straight(&cpu, &[-1.0, 0.0], &[1.0, 0.0], 3)).unwrap();
    let dense = neb.dense(&cpu, &mut energy).unwrap();
    assert_eq!(neb.insert_pivot(&cpu, &dense).unwrap(), None);
}

#[test]
fn insertion_happens_at_most_once_per_every_steps_and_up_to_max_pivots() {
    let cpu = CpuBackend::new();
    let run = |every: usize, max_pivots: usize| {
        let config = NebConfig {
            spring: Spring::Constant(1.0),
            optimizer: PathOptimizerConfig::Sgd {
                lr: 1e-9,
                momentum: 0.0,
            },
            max_steps: 12,
            sub_points: 10,
            insertion: Some(Insertion {
                threshold: 1e-3,
                max_pivots,
                every,
            }),
            ..NebConfig::default()
        };
        let mut neb = Neb::new(&cpu, config, straight(&cpu, &[-1.0, 0.0], &[1.0, 0.0], 3)).unwrap();
        let mut pivots = vec![];
        let out = neb
            .run(
                &cpu,
                &mut HostEnergy::new(2, bump),
                |_| false,
                |r| pivots.push(r.pivots),
            )
            .unwrap();
        assert_eq!(out.reason, StopReason::Budget);
        assert_eq!(out.dense.pivots, neb.path().pivots());
        pivots
    };
    // Insertions before steps 0, 5 and 10.
    assert_eq!(run(5, 100), [4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6]);
    assert_eq!(run(5, 5), [4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5]);
}

// ---- determinism, stopping, errors ------------------------------------------------------

/// Müller–Brown plus noise drawn from the seed the NEB hands to `reseed`.
struct Noisy {
    seed: u64,
}

impl Energy<CpuBackend> for Noisy {
    type Aux = ();
    fn dim(&self) -> usize {
        2
    }
    fn evaluate(
        &mut self,
        b: &CpuBackend,
        points: &mep_tensor::CpuBuf,
        n: usize,
        grads: Option<&mut mep_tensor::CpuBuf>,
    ) -> mep_neb::Result<Evaluation<()>> {
        let mut gb = b.zeros(2 * n)?;
        let mut ev = MullerBrown.evaluate(b, points, n, Some(&mut gb))?;
        let mut g = b.download(&gb)?;
        for (k, v) in g.iter_mut().enumerate() {
            let h = (self.seed ^ k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            *v += ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 20.0;
        }
        for e in &mut ev.energies {
            *e += (self.seed % 1000) as f64 * 1e-3;
        }
        if let Some(grads) = grads {
            grads.as_mut_slice().copy_from_slice(&g);
        }
        Ok(ev)
    }
    fn reseed(&mut self, seed: u64) {
        self.seed = seed;
    }
}

#[test]
fn same_config_and_seed_give_bit_identical_paths() {
    let cpu = CpuBackend::new();
    let run = |seed: u64, optimizer: PathOptimizerConfig| {
        let config = NebConfig {
            spring: Spring::Constant(10.0),
            optimizer,
            climbing_after: Some(0.5),
            max_steps: 300,
            seed,
            ..NebConfig::default()
        };
        let mut neb = Neb::new(&cpu, config, straight(&cpu, &MIN_A, &MIN_C, 9)).unwrap();
        neb.run(&cpu, &mut Noisy { seed: 0 }, |_| false, |_| {}).unwrap();
        neb.path()
            .to_vec(&cpu)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<u32>>()
    };
    for optimizer in [
        PathOptimizerConfig::adam(2e-3),
        SGD,
        PathOptimizerConfig::Fire(FireParams::default()),
    ] {
        assert_eq!(run(7, optimizer), run(7, optimizer), "{optimizer:?}");
        assert_ne!(
            run(7, optimizer),
            run(8, optimizer),
            "{optimizer:?}: the seed reaches the energy"
        );
    }
}

#[test]
fn run_stops_on_the_predicate_fmax_or_budget() {
    let cpu = CpuBackend::new();
    let neb = |config: NebConfig| Neb::new(&cpu, config, straight(&cpu, &MIN_A, &MIN_C, 5)).unwrap();
    // The predicate holds on the straight line: no step.
    let out = neb(NebConfig::default())
        .run(&cpu, &mut MullerBrown, |_| true, |_| {})
        .unwrap();
    assert_eq!((out.reason, out.steps, out.last), (StopReason::Predicate, 0, None));
    // Checked every 4 steps: the third check is at step 8.
    let mut checks = 0;
    let config = NebConfig {
        check_every: 4,
        ..NebConfig::default()
    };
    let done = |_: &Dense<()>| {
        checks += 1;
        checks == 3
    };
    let out = neb(config).run(&cpu, &mut MullerBrown, done, |_| {}).unwrap();
    assert_eq!((out.reason, out.steps), (StopReason::Predicate, 8));
    assert_eq!(out.last.unwrap().step, 8);
    // The budget.
    let config = NebConfig {
        max_steps: 5,
        ..NebConfig::default()
    };
    let mut seen = vec![];
    let out = neb(config)
        .run(&cpu, &mut MullerBrown, |_| false, |r| seen.push(r.step))
        .unwrap();
    assert_eq!(
        (out.reason, out.steps, seen),
        (StopReason::Budget, 5, vec![1, 2, 3, 4, 5])
    );
    assert_eq!(out.dense.energies.len(), 4 * 8 + 1);
    // fmax: any force passes, but only once the climbing image is on (from step 5 of 10).
    let config = NebConfig {
        max_steps: 10,
        fmax: Some(1e9),
        climbing_after: Some(0.5),
        ..NebConfig::default()
    };
    let out = neb(config).run(&cpu, &mut MullerBrown, |_| false, |_| {}).unwrap();
    assert_eq!((out.reason, out.steps), (StopReason::Converged, 6));
    assert_eq!(out.last.unwrap().climbing, Some(2), "the highest interior pivot");
}

#[test]
fn dense_points_are_batched_and_placed() {
    let cpu = CpuBackend::new();
    let config = NebConfig {
        sub_points: 4,
        ..NebConfig::default()
    };
    let neb = Neb::new(&cpu, config, straight(&cpu, &[0.0, 0.0], &[4.0, 8.0], 3)).unwrap();
    // E = x: the dense energies are the x coordinates, in batches of at most 3.
    let mut energy = HostEnergy::new(2, |p: &[f32]| (p[0] as f64, vec![1.0, 0.0]));
    energy.max_batch = 3;
    let dense = neb.dense(&cpu, &mut energy).unwrap();
    assert_eq!(dense.t, (0..9).map(|k| k as f64 / 8.0).collect::<Vec<_>>());
    assert_eq!(dense.energies, (0..9).map(|k| k as f64 * 0.5).collect::<Vec<_>>());
    assert_eq!(dense.pivot_energies(), vec![0.0, 2.0, 4.0]);
    assert_eq!(energy.calls, 3);
    // The aux of each point, in order (call c numbers its rows 100 c + k).
    assert_eq!(dense.aux, vec![100, 101, 102, 200, 201, 202, 300, 301, 302]);
}

/// A flat energy that is NaN (or has an infinite gradient) at x = `at` once switched on.
fn poisoned(at: f32, gradient: bool, on: std::rc::Rc<std::cell::Cell<bool>>) -> impl FnMut(&[f32]) -> (f64, Vec<f64>) {
    move |p: &[f32]| {
        let hit = on.get() && (p[0] - at).abs() < 1e-6;
        match (hit, gradient) {
            (true, false) => (f64::NAN, vec![0.0, 0.0]),
            (true, true) => (0.0, vec![f64::INFINITY, 0.0]),
            // Flat elsewhere, so evenly spaced pivots stay where they are.
            _ => (0.0, vec![0.0, 0.0]),
        }
    }
}

#[test]
fn non_finite_energies_and_gradients_are_errors_naming_step_and_point() {
    let cpu = CpuBackend::new();
    let on = std::rc::Rc::new(std::cell::Cell::new(false));
    let new = || {
        let config = NebConfig {
            spring: Spring::Constant(1.0),
            sub_points: 4,
            ..NebConfig::default()
        };
        // Pivots at x = 0, 0.25, 0.5, 0.75, 1.
        Neb::new(&cpu, config, straight(&cpu, &[0.0, 0.1], &[1.0, 0.1], 5)).unwrap()
    };
    for (at, gradient, what, index) in [
        (0.5, false, "energy", 2),
        (0.75, true, "gradient", 3),
        (1.0, false, "energy", 4),
    ] {
        on.set(false);
        let mut neb = new();
        let mut energy = HostEnergy::new(2, poisoned(at, gradient, on.clone()));
        for _ in 0..3 {
            neb.step(&cpu, &mut energy).unwrap();
        }
        on.set(true);
        // The endpoints are evaluated once, in the first step: poison the last one from the start.
        let (mut neb, step) = if index == 4 { (new(), 0) } else { (neb, 3) };
        let e = neb.step(&cpu, &mut energy).unwrap_err();
        match e {
            NebError::NonFinite {
                what: w,
                index: i,
                step: s,
            } => assert_eq!((w, i, s), (what, index, step), "{e}"),
            e => panic!("{e}"),
        }
    }
    // A dense point: x = 0.625 is dense point 10 of 17.
    on.set(true);
    let neb = new();
    let e = neb
        .dense(&cpu, &mut HostEnergy::new(2, poisoned(0.625, false, on.clone())))
        .unwrap_err();
    assert!(
        matches!(
            e,
            NebError::NonFinite {
                what: "dense energy",
                index: 10,
                step: 0
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_configs_and_mismatches_are_errors() {
    let cpu = CpuBackend::new();
    let path = || straight(&cpu, &MIN_A, &MIN_C, 5);
    let field = |config: NebConfig| match Neb::new(&cpu, config, path()) {
        Err(NebError::Config { field, .. }) => field,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    };
    let d = NebConfig::default;
    assert_eq!(field(NebConfig { sub_points: 0, ..d() }), "sub_points");
    assert_eq!(field(NebConfig { check_every: 0, ..d() }), "check_every");
    assert_eq!(
        field(NebConfig {
            spring: Spring::Constant(-1.0),
            ..d()
        }),
        "spring"
    );
    assert_eq!(
        field(NebConfig {
            climbing_after: Some(1.5),
            ..d()
        }),
        "climbing_after"
    );
    assert_eq!(
        field(NebConfig {
            fmax: Some(f64::NAN),
            ..d()
        }),
        "fmax"
    );
    assert_eq!(
        field(NebConfig {
            optimizer: PathOptimizerConfig::adam(0.0),
            ..d()
        }),
        "optimizer.lr"
    );
    let fire = PathOptimizerConfig::Fire(FireParams {
        maxstep: 0.0,
        ..FireParams::default()
    });
    assert_eq!(field(NebConfig { optimizer: fire, ..d() }), "fire.maxstep");
    let ins = Insertion {
        threshold: 1.0,
        max_pivots: 9,
        every: 0,
    };
    assert_eq!(
        field(NebConfig {
            insertion: Some(ins),
            ..d()
        }),
        "insertion.every"
    );
    // A 3-D energy on a 2-D path.
    let mut neb = Neb::new(&cpu, d(), path()).unwrap();
    let mut e3 = HostEnergy::new(3, |_: &[f32]| (0.0, vec![0.0; 3]));
    assert!(matches!(
        neb.step(&cpu, &mut e3),
        Err(NebError::Size {
            expected: 2,
            found: 3,
            ..
        })
    ));
    // Paths.
    assert!(matches!(
        Path::from_host(&cpu, &[0.0; 5], 3, 2),
        Err(NebError::Size { .. })
    ));
    assert!(matches!(
        Path::from_host(&cpu, &[0.0; 2], 1, 2),
        Err(NebError::Config { field: "pivots", .. })
    ));
    let a = cpu.upload(&[0.0, 1.0]).unwrap();
    let b3 = cpu.upload(&[0.0, 1.0, 2.0]).unwrap();
    assert!(matches!(
        Path::straight(&cpu, &a, &b3, 2, 4),
        Err(NebError::Size { found: 3, .. })
    ));
}

#[test]
fn straight_paths_are_evenly_spaced_and_duplicate_independently() {
    let cpu = CpuBackend::new();
    let p = straight(&cpu, &[1.0, -1.0], &[4.0, 3.0], 6);
    let v = p.to_vec(&cpu).unwrap();
    assert_eq!(
        (&v[..2], &v[10..]),
        (&[1.0, -1.0][..], &[4.0, 3.0][..]),
        "endpoints exact"
    );
    for s in p.segment_lengths(&cpu).unwrap() {
        assert!((s - 1.0).abs() < 1e-6, "length 5 in 5 segments: {s}");
    }
    assert!((p.length(&cpu).unwrap() - 5.0).abs() < 1e-6);
    let mut q = p.duplicate(&cpu).unwrap();
    cpu.fill(q.buf_mut(), 0.0).unwrap();
    assert_eq!(p.to_vec(&cpu).unwrap(), v);
    assert_eq!((q.pivots(), q.dim()), (6, 2));
}

#[test]
fn insertion_resets_the_optimiser_state() {
    // Adam's first step moves every coordinate with a non-zero force by lr (m̂/√v̂ = ±1); later
    // steps on Müller–Brown's changing forces do not. After 30 steps, a step right after an
    // insertion moves every interior coordinate by lr again; the same step without the
    // insertion does not.
    let cpu = CpuBackend::new();
    let lr = 1e-3;
    let new = || {
        let config = NebConfig {
            spring: Spring::Constant(10.0),
            optimizer: PathOptimizerConfig::adam(lr),
            insertion: Some(Insertion {
                threshold: 0.0,
                max_pivots: 10,
                every: 1,
            }),
            ..NebConfig::default()
        };
        let mut neb = Neb::new(&cpu, config, straight(&cpu, &MIN_A, &MIN_C, 5)).unwrap();
        for _ in 0..30 {
            neb.step(&cpu, &mut MullerBrown).unwrap();
        }
        neb
    };
    let moves = |neb: &mut Neb<CpuBackend>| {
        let before = neb.path().to_vec(&cpu).unwrap();
        neb.step(&cpu, &mut MullerBrown).unwrap();
        let after = neb.path().to_vec(&cpu).unwrap();
        let n = before.len();
        (2..n - 2)
            .map(|j| (after[j] as f64 - before[j] as f64).abs())
            .collect::<Vec<f64>>()
    };
    let mut plain = new();
    let d = moves(&mut plain);
    assert!(d.iter().any(|d| (d - lr).abs() > 1e-5), "control: {d:?}");
    let mut inserted = new();
    let dense = inserted.dense(&cpu, &mut MullerBrown).unwrap();
    assert!(inserted.insert_pivot(&cpu, &dense).unwrap().is_some());
    let d = moves(&mut inserted);
    assert_eq!(d.len(), 2 * 4);
    assert!(d.iter().all(|d| (d - lr).abs() < 1e-6), "after insertion: {d:?}");
}
