//! Exact certification of one input-space segment (ResNet-20 and ResNet-50 at 32×32, random
//! init with perturbed batch-norm statistics so the folded convolutions have biases), and the
//! f64 convolution it runs on.
//!
//! `cargo bench -p mep-certify --bench certify` times 1/100 of each segment (throughput in
//! pieces); with `MEP_CERTIFY_FULL=1` it first certifies each whole segment once and prints
//! its pieces, seconds and pieces per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mep_certify::{Certifier, CertifyOptions, Method, Verdict};
use mep_nn::init::Rng;
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet, Shortcut};
use mep_tensor::{Conv2dGeom, CpuBackend, Nchw, Tensor};
use std::time::{Duration, Instant};

/// ExactLine alone: these checks are about its partition.
fn exact() -> CertifyOptions {
    CertifyOptions {
        method: Method::Exact,
        ..CertifyOptions::default()
    }
}

/// A freshly initialised network whose batch norms get random γ, β and statistics.
fn network(cpu: &CpuBackend, arch: Arch, seed: u64) -> FoldedResNet<CpuBackend> {
    let mut m = ResNet::init(cpu, arch, arch.default_width(), 10, seed).unwrap();
    let mut rng = Rng::new(seed);
    let mut bns = vec![&mut m.stem.bn];
    for block in m.stages.iter_mut().flatten() {
        for u in &mut block.units {
            bns.push(&mut u.bn);
        }
        if let Shortcut::Projection(u) = &mut block.shortcut {
            bns.push(&mut u.bn);
        }
    }
    for bn in bns {
        let c = bn.c;
        let mut u = |lo: f64, hi: f64| {
            let v = (0..c).map(|_| (lo + (hi - lo) * rng.uniform()) as f32).collect();
            Tensor::from_vec(cpu, [c], v).unwrap()
        };
        bn.weight.value = u(0.5, 1.5);
        bn.bias.value = u(-0.3, 0.3);
        bn.running_mean = u(-0.3, 0.3);
        bn.running_var = u(0.5, 2.0);
    }
    FoldedResNet::fold(cpu, &m).unwrap()
}

fn image(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..3 * 32 * 32).map(|_| rng.normal() as f32).collect()
}

/// Pieces and seconds of one certification of the input-space segment `a → a + frac (b − a)`.
fn once(cert: &Certifier, a: &[f32], b: &[f32], target: usize, frac: f32) -> (usize, f64, String) {
    let b: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + frac * (y - x)).collect();
    let t0 = Instant::now();
    let s = cert.segment(Cut::Input, &[3, 32, 32], a, &b, target, &exact()).unwrap();
    let verdict = match &s.verdict {
        Verdict::Certified => "certified".to_string(),
        Verdict::Refuted { intervals } => format!("refuted on {} intervals", intervals.len()),
        Verdict::Undecided { reason } => format!("undecided: {reason}"),
    };
    (s.pieces, t0.elapsed().as_secs_f64(), verdict)
}

fn segments(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    // The whole segment takes minutes on a small machine: criterion times 1/100 of it (the
    // same kind of work, pieces per second as throughput); MEP_CERTIFY_FULL=1 also certifies
    // the whole segment once and prints pieces and seconds.
    let full = std::env::var_os("MEP_CERTIFY_FULL").is_some();
    let frac = 0.01;
    for arch in [Arch::ResNet20, Arch::ResNet50] {
        let net = network(&cpu, arch, 1);
        let cert = Certifier::new(&cpu, &net).unwrap();
        let (a, b) = (image(10), image(11));
        let target = {
            let l = cert.head(Cut::Input, &[3, 32, 32], &a).unwrap();
            (0..l.len()).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap()
        };
        if full {
            let (pieces, secs, verdict) = once(&cert, &a, &b, target, 1.0);
            println!(
                "{arch} input segment at 32x32: {pieces} pieces in {secs:.1} s ({:.0} pieces/s), {verdict}",
                pieces as f64 / secs
            );
        }
        let (pieces, secs, _) = once(&cert, &a, &b, target, frac);
        println!("{arch} 1/100 of the segment: {pieces} pieces in {secs:.2} s");
        let mut g = c.benchmark_group(format!("certify_segment/{arch}"));
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        g.throughput(Throughput::Elements(pieces as u64));
        g.bench_function("input_32x32_hundredth", |bch| {
            bch.iter(|| once(&cert, &a, &b, target, frac))
        });
        g.finish();
    }
}

fn conv(c: &mut Criterion) {
    // ResNet-20's first stage at 32×32: 16→16 channels, 3×3, for 256 points (GFLOP/s shown
    // as elements = multiply-adds).
    let g = Conv2dGeom::square(
        "bench",
        Nchw {
            n: 256,
            c: 16,
            h: 32,
            w: 32,
        },
        16,
        3,
        1,
        1,
    )
    .unwrap();
    let x: Vec<f64> = (0..g.input().numel()).map(|i| (i % 17) as f64 * 0.1 - 0.8).collect();
    let w: Vec<f64> = (0..g.weight_len()).map(|i| (i % 7) as f64 * 0.05 - 0.15).collect();
    let bias = vec![0.1; g.c_out];
    let mut y = vec![0.0; g.output().numel()];
    let mut grp = c.benchmark_group("conv2d_f64");
    grp.sample_size(10);
    grp.throughput(Throughput::Elements(g.macs() as u64));
    grp.bench_function("16x32x32_k3_n256", |b| {
        b.iter(|| mep_certify::kernels::conv2d(&g, &x, &w, &bias, &mut y))
    });
    grp.finish();
}

criterion_group!(benches, conv, segments);
criterion_main!(benches);
