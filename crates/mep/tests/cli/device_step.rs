//! A NEB step on the device alone (`Neb::step_device`, and its middle captured in a graph on
//! the emulated CUDA kernels) leaves the same path and report as the eager `Neb::step`, bit
//! for bit: the string method with and without the climbing image, and a constant spring.

use mep::connect::HeadEnergy;
use mep_kernels_emu::EmuLauncher;
use mep_neb::{Neb, NebConfig, NebError, Path, PathOptimizerConfig, Spring, Stepping};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, Precision, Tensor};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = mep_rng::SplitMix64::new(seed);
    (0..n).map(|_| 2.0 * rng.unit_f32() - 1.0).collect()
}

/// A ResNet-20 of width 4 (10 classes), folded.
fn small_net<B: Backend>(b: &B) -> FoldedResNet<B> {
    let model = ResNet::init(b, Arch::ResNet20, 4, 10, 7).unwrap();
    FoldedResNet::fold(b, &model).unwrap()
}

/// The points at `cut` of two 16×16 images, and the shape of one.
fn ends<B: Backend>(b: &B, net: &FoldedResNet<B>, cut: Cut) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let s = 16;
    let x = Tensor::from_vec(b, [2, 3, s, s], data(2 * 3 * s * s, 5)).unwrap();
    let z = net.encode(b, &x, cut).unwrap();
    let shape = z.shape.dims()[1..].to_vec();
    let v = z.to_vec(b).unwrap();
    let d = v.len() / 2;
    (v[..d].to_vec(), v[d..].to_vec(), shape)
}

/// A bent path of `pivots` rows between the two ends: the straight line plus noise inside.
fn bent_path<B: Backend>(b: &B, za: &[f32], zb: &[f32], pivots: usize) -> Path<B> {
    let d = za.len();
    let noise = data(pivots * d, 9);
    let mut rows = Vec::with_capacity(pivots * d);
    for r in 0..pivots {
        let t = r as f32 / (pivots - 1) as f32;
        let inner = r > 0 && r + 1 < pivots;
        rows.extend((0..d).map(|j| {
            let base = (1.0 - t) * za[j] + t * zb[j];
            if inner {
                base + 0.3 * noise[r * d + j]
            } else {
                base
            }
        }));
    }
    Path::from_buf(b, b.upload(&rows).unwrap(), pivots, d).unwrap()
}

fn configs() -> Vec<(&'static str, NebConfig)> {
    let base = NebConfig {
        max_steps: 8,
        optimizer: PathOptimizerConfig::adam(0.05),
        ..NebConfig::default()
    };
    vec![
        ("string method", base.clone()),
        (
            "string method, climbing image from step 3",
            NebConfig {
                climbing_after: Some(0.375),
                ..base.clone()
            },
        ),
        (
            "constant spring",
            NebConfig {
                spring: Spring::Constant(0.5),
                ..base
            },
        ),
    ]
}

/// Eager and device steps side by side on `b`, at `cut`, for every config; `batch` is the
/// energy's batch (smaller than the interior, so a step has several batches).
fn device_steps_match_eager<B: Backend>(b: &B, cut: Cut, batch: usize, search: Precision) {
    let net = small_net(b);
    let (za, zb, shape) = ends(b, &net, cut);
    for (name, config) in configs() {
        let mut energy = HeadEnergy::new(&net, cut, 3, &shape)
            .unwrap()
            .with_max_batch(batch)
            .with_search_precision(search);
        let mut eager = Neb::new(b, config.clone(), bent_path(b, &za, &zb, 7)).unwrap();
        let mut device = Neb::new(b, config.clone(), bent_path(b, &za, &zb, 7)).unwrap();
        assert!(device.can_step_on_device(&energy));
        for step in 0..config.max_steps {
            let want = eager.step(b, &mut energy).unwrap();
            let got = device.step_device(b, &mut energy).unwrap();
            assert_eq!(got, want, "{name} at {cut}, step {step}: report");
            let (pe, pd) = (eager.path().to_vec(b).unwrap(), device.path().to_vec(b).unwrap());
            assert!(
                pe.iter().zip(&pd).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} at {cut}, step {step}: the paths differ"
            );
        }
        let climbed = config.climbing_after.is_some();
        assert_eq!(
            device.climbing_on(),
            climbed,
            "{name}: the climbing image never switched on"
        );
    }
}

#[test]
fn device_steps_equal_eager_steps_on_the_cpu() {
    let b = CpuBackend::new();
    device_steps_match_eager(&b, Cut::Input, 2, Precision::Fp32);
    device_steps_match_eager(&b, Cut::Layer(1), 5, Precision::Fp32);
    // The search precision switches around the device evaluation as around the eager one.
    device_steps_match_eager(&b, Cut::Layer(1), 5, Precision::Tf32);
}

#[test]
fn device_steps_equal_eager_steps_on_the_emulated_kernels() {
    device_steps_match_eager(&EmuLauncher::backend(), Cut::Layer(1), 2, Precision::Fp32);
    let simple = EmuLauncher::backend_with(mep_kernels::Kernels::Simple);
    device_steps_match_eager(&simple, Cut::Layer(1), 2, Precision::Fp32);
}

/// The whole step captured once and replayed, re-captured when the climbing image switches
/// on: the replays leave the eager path, allocate nothing, and make no host copy.
#[test]
fn a_captured_neb_step_replays_to_the_eager_path() {
    let b = EmuLauncher::backend();
    let cut = Cut::Input;
    let net = small_net(&b);
    let (za, zb, shape) = ends(&b, &net, cut);
    let config = NebConfig {
        max_steps: 7,
        climbing_after: Some(0.5),
        optimizer: PathOptimizerConfig::adam(0.05),
        ..NebConfig::default()
    };
    let mut energy = HeadEnergy::new(&net, cut, 3, &shape).unwrap().with_max_batch(2);
    let mut eager = Neb::new(&b, config.clone(), bent_path(&b, &za, &zb, 6)).unwrap();
    let mut neb = Neb::new(&b, config.clone(), bent_path(&b, &za, &zb, 6)).unwrap();
    let mut graph: Option<(mep_neb::DeviceStepKey, mep_kernels::Graph<mep_kernels_emu::EmuMem>)> = None;
    let mut captures = 0;
    for step in 0..config.max_steps {
        let want = eager.step(&b, &mut energy).unwrap();
        let key = neb.device_step_key();
        let got = match &graph {
            Some((k, g)) if *k == key => {
                neb.prepare_device_step(&b, &mut energy).unwrap();
                let before = b.pool_stats().allocations;
                g.launch().unwrap();
                assert_eq!(b.pool_stats().allocations, before, "a replay allocated");
                neb.finish_device_step(&b).unwrap()
            }
            _ => {
                // A warm-up step fills the pool; the capture of the next one allocates nothing.
                let rep = neb.step_device(&b, &mut energy).unwrap();
                assert_eq!(rep, want, "step {step}: the warm-up's report");
                let want = eager.step(&b, &mut energy).unwrap();
                neb.prepare_device_step(&b, &mut energy).unwrap();
                let before = b.pool_stats().allocations;
                let (g, ()) = b.capture(|| neb.step_on_device(&b, &mut energy)).unwrap();
                assert_eq!(b.pool_stats().allocations, before, "the capture allocated");
                // Capturing only records: the path has not moved yet.
                g.launch().unwrap();
                captures += 1;
                graph = Some((key, g));
                let got = neb.finish_device_step(&b).unwrap();
                assert_eq!(got, want, "step {step}: the first replay's report");
                continue;
            }
        };
        assert_eq!(got, want, "step {step}: report");
        let (pe, pd) = (eager.path().to_vec(&b).unwrap(), neb.path().to_vec(&b).unwrap());
        assert!(
            pe.iter().zip(&pd).all(|(x, y)| x.to_bits() == y.to_bits()),
            "step {step}: the replayed path differs"
        );
    }
    assert_eq!(
        captures, 2,
        "one capture before and one after the climbing image switched on"
    );
    assert_eq!(neb.steps(), eager.steps());
}

/// FIRE decides on the host: a device step is refused by name, before any work.
#[test]
fn a_device_step_needs_adam() {
    let b = CpuBackend::new();
    let net = small_net(&b);
    let (za, zb, shape) = ends(&b, &net, Cut::Pool);
    let config = NebConfig {
        optimizer: PathOptimizerConfig::Fire(Default::default()),
        ..NebConfig::default()
    };
    let mut energy = HeadEnergy::new(&net, Cut::Pool, 3, &shape).unwrap();
    let mut neb = Neb::new(&b, config, bent_path(&b, &za, &zb, 4)).unwrap();
    assert!(!neb.can_step_on_device(&energy));
    let e = neb.step_device(&b, &mut energy).unwrap_err();
    assert!(matches!(e, NebError::Config { field: "optimizer", .. }), "{e}");
    assert!(e.to_string().contains("Adam"), "{e}");
    assert_eq!(neb.steps(), 0);
}

/// `Neb::run` in each `Stepping` mode: the same outcome (steps, reason, dense profile) and
/// the same path. On the CPU, `Graph` steps unrecorded and says so; on the emulated kernels it
/// records, and re-records when the climbing image switches on.
fn every_stepping_mode_runs_to_the_same_path<B: Backend>(b: &B, records: bool) {
    let cut = Cut::Layer(1);
    let net = small_net(b);
    let (za, zb, shape) = ends(b, &net, cut);
    let mut runs = Vec::new();
    for stepping in [Stepping::Host, Stepping::Device, Stepping::Graph] {
        let config = NebConfig {
            max_steps: 6,
            climbing_after: Some(0.5),
            check_every: 2,
            optimizer: PathOptimizerConfig::adam(0.05),
            stepping,
            ..NebConfig::default()
        };
        let mut energy = HeadEnergy::new(&net, cut, 3, &shape).unwrap().with_max_batch(2);
        let mut neb = Neb::new(b, config, bent_path(b, &za, &zb, 6)).unwrap();
        let mut reports = Vec::new();
        let out = neb.run(b, &mut energy, |_| false, |r| reports.push(r.clone())).unwrap();
        let note = neb.graph_note().map(str::to_string);
        match (stepping, records) {
            (Stepping::Graph, false) => assert!(
                note.as_deref().is_some_and(|n| n.contains("does not record")),
                "{note:?}"
            ),
            _ => assert_eq!(note, None, "{stepping:?}"),
        }
        let path: Vec<u32> = neb.path().to_vec(b).unwrap().iter().map(|v| v.to_bits()).collect();
        runs.push((stepping, out.steps, out.reason, out.dense.energies, reports, path));
    }
    for r in &runs[1..] {
        assert_eq!(
            (r.1, r.2, &r.3, &r.4),
            (runs[0].1, runs[0].2, &runs[0].3, &runs[0].4),
            "{:?}",
            r.0
        );
        assert!(r.5 == runs[0].5, "{:?}: the path differs from Host's", r.0);
    }
}

#[test]
fn every_stepping_mode_runs_to_the_same_path_on_the_cpu_and_the_emulated_kernels() {
    every_stepping_mode_runs_to_the_same_path(&CpuBackend::new(), false);
    every_stepping_mode_runs_to_the_same_path(&EmuLauncher::backend(), true);
}
