//! The bounds' zonotopes on the kernel backend's CPU emulation (`kernels/bounds.cu`): the
//! certificates are the CPU's, interval for interval, at every cut.

mod common;

use common::*;
use mep_certify::{CertifyOptions, Method, SegmentCertificate, Verdict};
use mep_kernels::CertifyOn;
use mep_kernels_emu::EmuLauncher;
use mep_resnet::{Arch, FoldedResNet};
use mep_tensor::{CpuBackend, Tensor};

fn bounds() -> CertifyOptions {
    CertifyOptions {
        method: Method::Bounds,
        ..CertifyOptions::default()
    }
}

/// The parts of a certificate the bounds decide: the verdict, the intervals examined, the
/// margin bound's bits and the counterexample's.
fn summary(c: &SegmentCertificate) -> (String, usize, Option<u64>, Option<(u64, u64)>) {
    let verdict = match &c.verdict {
        Verdict::Certified => "certified".to_string(),
        Verdict::Refuted { .. } => "refuted".to_string(),
        Verdict::Undecided { reason } => format!("undecided: {reason}"),
    };
    (
        verdict,
        c.intervals,
        c.margin_bound.map(f64::to_bits),
        c.counterexample.map(|(t, m)| (t.to_bits(), m.to_bits())),
    )
}

/// At every cut of a small `arch` network, the segment between the encodings of two images:
/// its zonotope bounds on 63 intervals, and its certificate with the bounds, on the CPU and
/// with the zonotopes on the emulated device. Returns each cut's verdict.
fn same_certificates(arch: Arch, width: usize, seed: u64, h: usize, images: (u64, u64)) -> Vec<String> {
    let (cpu, net, host): (CpuBackend, FoldedResNet<CpuBackend>, _) = network(arch, width, seed);
    let dev = mep_certify::Certifier::new(&cpu, &net)
        .unwrap()
        .on_device(CertifyOn(EmuLauncher::new()))
        .unwrap();
    assert_eq!(dev.device(), Some("emu"));
    assert_eq!(host.device(), None);
    let x: Vec<f32> = [image(images.0, h, h), image(images.1, h, h)].concat();
    let xt = Tensor::from_vec(&cpu, [2, 3, h, h], x).unwrap();
    let mut seen = Vec::new();
    let mut zonotopes = 0;
    for cut in arch.cuts() {
        let z = net.encode(&cpu, &xt, cut).unwrap();
        let shape = z.shape.dims()[1..].to_vec();
        let z = to_f64(&z.to_vec(&cpu).unwrap());
        let (za, zb) = z.split_at(z.len() / 2);
        let target = argmax(&host.head(cut, &shape, za).unwrap());
        // The zonotope alone, on intervals of every width from 1 to 1/32.
        let intervals: Vec<(f64, f64)> = (0..6)
            .flat_map(|level| {
                let n = 1u32 << level;
                (0..n).map(move |i| (i as f64 / n as f64, (i + 1) as f64 / n as f64))
            })
            .collect();
        let zh = host.zonotope_bounds(cut, &shape, za, zb, target, &intervals).unwrap();
        let zd = dev.zonotope_bounds(cut, &shape, za, zb, target, &intervals).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&zh), bits(&zd), "{arch:?} seed {seed} at {cut}: zonotope bounds");
        zonotopes += zh.iter().filter(|b| b.is_finite()).count();
        let a = host.segment(cut, &shape, za, zb, target, &bounds()).unwrap();
        let b = dev.segment(cut, &shape, za, zb, target, &bounds()).unwrap();
        assert_eq!(summary(&a), summary(&b), "{arch:?} seed {seed} at {cut}");
        seen.push(format!("{cut}: {:?}", summary(&a).0));
    }
    // Intervals whose zonotope went all the way to the classifier on both.
    assert!(zonotopes > 0, "{arch:?} seed {seed}: every interval was given up");
    seen
}

#[test]
fn resnet20_bounds_on_the_emulated_device_are_the_cpus() {
    let verdicts = same_certificates(Arch::ResNet20, 4, 40, 8, (500, 600));
    eprintln!("{verdicts:?}");
    assert!(verdicts.iter().any(|v| v.contains("certified")));
}

/// ResNet-50's projection shortcuts and 1×1 convolutions, and on its `input` and `stem` cuts
/// the max-pool (on the host) with the box it leaves, which the device's concrete bounds and
/// the host's `|W| r` then carry.
#[test]
fn resnet50_bounds_on_the_emulated_device_are_the_cpus() {
    let seen = same_certificates(Arch::ResNet50, 2, 90, 16, (900, 950));
    eprintln!("{seen:?}");
    assert_eq!(seen.len(), Arch::ResNet50.cuts().len());
}

/// An interval that is empty, reversed or not finite is an error naming it.
#[test]
fn bad_intervals_are_errors_naming_them() {
    let (_cpu, _net, c) = network(Arch::ResNet20, 4, 1);
    let x = to_f64(&image(1, 8, 8));
    for bad in [(0.5, 0.5), (0.75, 0.25), (0.0, f64::NAN)] {
        let e = c
            .zonotope_bounds(mep_resnet::Cut::Input, &[3, 8, 8], &x, &x, 0, &[(0.0, 1.0), bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("intervals") && e.contains(&format!("{}", bad.0)), "{e}");
    }
}
