//! criterion benches of one NEB step of the path search on the CPU: P pivots between two
//! inputs of a ResNet-20 and a ResNet-50 at 32×32, in `input` and in `layer1`.
//!
//! Each case is timed in parts, side by side in one run: the whole step
//! (`Neb::step`: energy + gradient at the interior pivots, forces, Adam update,
//! redistribution), the energy + gradient call alone, the force computation alone
//! (`Backend::neb_forces` on the same buffers) and the dense evaluation of the path
//! ((P − 1)·S + 1 forward passes). The target: forces under 5 % of energy +
//! gradient.

use criterion::{criterion_group, criterion_main, Criterion};
use mep::connect::HeadEnergy;
use mep_neb::{Energy, Neb, NebConfig, Path};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, NebForceParams, Tensor};

/// Pivots of the benched path, endpoints included.
const PIVOTS: usize = 10;

fn case(c: &mut Criterion, b: &CpuBackend, arch: Arch, cut: Cut) {
    let model = ResNet::init(b, arch, arch.default_width(), 10, 1).expect("init");
    let net = FoldedResNet::fold(b, &model).expect("fold");
    let mut rng = mep_nn::init::Rng::new(3);
    let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|_| rng.normal() as f32).collect();
    let x = Tensor::from_vec(b, [2, 3, 32, 32], x).expect("input");
    let z = net.encode(b, &x, cut).expect("encode");
    let point_shape = z.shape.dims()[1..].to_vec();
    let dim: usize = point_shape.iter().product();
    let zv = z.to_vec(b).expect("download");
    let (za, zb) = (b.upload(&zv[..dim]).expect("up"), b.upload(&zv[dim..]).expect("up"));
    let path = Path::straight(b, &za, &zb, dim, PIVOTS).expect("path");
    let mut energy = HeadEnergy::new(&net, cut, 0, &point_shape).expect("energy");
    let name = format!("{} 32x32 {cut} P={PIVOTS}", arch.name());

    let mut g = c.benchmark_group("neb");
    g.sample_size(10);
    let config = NebConfig {
        max_steps: usize::MAX,
        ..NebConfig::default()
    };
    let mut neb = Neb::new(b, config, path.duplicate(b).expect("dup")).expect("neb");
    g.bench_function(format!("{name} step"), |bench| {
        bench.iter(|| neb.step(b, &mut energy).expect("step"))
    });

    // The parts, on the straight path's buffers.
    let interior = PIVOTS - 2;
    let mut points = b.alloc(interior * dim).expect("alloc");
    b.copy_rows(dim, path.buf(), 1, &mut points, 0, interior).expect("rows");
    let mut grads_interior = b.alloc(interior * dim).expect("alloc");
    g.bench_function(format!("{name} energy+gradient"), |bench| {
        bench.iter(|| {
            energy
                .evaluate(b, &points, interior, Some(&mut grads_interior))
                .expect("evaluate")
        })
    });
    let mut grads = b.zeros(PIVOTS * dim).expect("zeros");
    b.copy_rows(dim, &grads_interior, 0, &mut grads, 1, interior)
        .expect("rows");
    let energies: Vec<f64> = (0..PIVOTS).map(|i| (i as f64 * 0.7).sin()).collect();
    let mut forces = b.alloc(PIVOTS * dim).expect("alloc");
    let p = NebForceParams {
        pivots: PIVOTS,
        dim,
        spring: Some(1.0),
        climbing: None,
    };
    g.bench_function(format!("{name} forces"), |bench| {
        bench.iter(|| {
            b.neb_forces(&p, path.buf(), &grads, &energies, &mut forces)
                .expect("forces")
        })
    });
    let neb = Neb::new(b, NebConfig::default(), path.duplicate(b).expect("dup")).expect("neb");
    g.bench_function(format!("{name} dense S=8"), |bench| {
        bench.iter(|| neb.dense(b, &mut energy).expect("dense"))
    });
    g.finish();
}

fn neb_steps(c: &mut Criterion) {
    let b = CpuBackend::new();
    for arch in [Arch::ResNet20, Arch::ResNet50] {
        for cut in [Cut::Input, Cut::Layer(1)] {
            case(c, &b, arch, cut);
        }
    }
}

criterion_group!(benches, neb_steps);
criterion_main!(benches);
