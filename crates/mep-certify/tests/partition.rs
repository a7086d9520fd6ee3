//! The partition against brute force: dense sampling of every ReLU pre-activation and every
//! max-pool arg-max along the segment, the f64 forward at points inside each piece, and the
//! predicted class at every sample.
//!
//! Reference: the definition of the linear restriction (Sotoudeh & Thakur 2019, Def. 1): the
//! breakpoints are exactly the points where some neuron's activation pattern changes, and the
//! network is affine between them. Sampling density: `MEP_CERTIFY_SAMPLES` (default 2·10^4
//! per segment; the report's 10^6 run sets it).

mod common;

use common::*;
use mep_certify::{Certifier, CertifyOptions, Partition, Verdict};
use mep_resnet::{Arch, Cut};
use mep_tensor::{CpuBackend, Tensor};

/// Checks the partition of the segment `z_a → z_b` at `cut` against brute force; returns it.
fn check_against_sampling(c: &Certifier, cut: Cut, shape: &[usize], z_a: &[f64], z_b: &[f64], n: usize) -> Partition {
    let opts = CertifyOptions::default();
    let p = c.partition(cut, shape, z_a, z_b, &opts).unwrap();
    assert!(p.complete && p.covered() == 1.0 && p.breakpoints[0] == 0.0);
    let b = &p.breakpoints;
    assert!(b.windows(2).all(|w| w[0] < w[1]), "breakpoints increase");

    // No spurious breakpoint: the decided patterns at the midpoints of neighbouring pieces
    // differ (a pre-activation is affine on a piece, so it changes sign at most once there).
    let mids: Vec<f64> = b.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let pat = c.activation_pattern(cut, shape, &lerp(z_a, z_b, &mids), 1e-12).unwrap();
    for i in 0..mids.len().saturating_sub(1) {
        assert!(
            pat.changed(i, i + 1).is_some(),
            "{cut}: breakpoint {} at t = {} changes no activation",
            i + 1,
            b[i + 1]
        );
    }

    // Affine on each piece: the f64 forward at its quarter points equals the interpolation of
    // the logits at its ends, to 1e-9 relative.
    let quarters: Vec<f64> = b
        .windows(2)
        .flat_map(|w| [0.25, 0.5, 0.75].map(|s| w[0] + s * (w[1] - w[0])))
        .collect();
    let k = c.classes();
    let direct = c.head(cut, shape, &lerp(z_a, z_b, &quarters)).unwrap();
    for (q, &t) in quarters.iter().enumerate() {
        let want = &direct[q * k..(q + 1) * k];
        let got = p.logits_at_t(t);
        let scale = want.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        for j in 0..k {
            assert!(
                (got[j] - want[j]).abs() <= 1e-9 * scale,
                "{cut}: logit {j} at t = {t}: piecewise-affine {}, forward {}",
                got[j],
                want[j]
            );
        }
    }

    // Dense sampling: every change of a decided sign or arg-max between two consecutive samples
    // has a breakpoint between them; the class is the target exactly outside the refuted intervals.
    let l0 = c.head(cut, shape, z_a).unwrap();
    let target = argmax(&l0);
    let cert = c.segment(cut, shape, z_a, z_b, target, &opts).unwrap();
    let intervals = match &cert.verdict {
        Verdict::Refuted { intervals } => intervals.clone(),
        Verdict::Certified => Vec::new(),
        v => panic!("{cut}: {v:?}"),
    };
    let (mut changes, mut class_changes) = (0, 0);
    // The previous sample: its t, activation pattern and class.
    let mut prev: Option<(f64, Vec<u8>, usize)> = None;
    let chunk = 2048;
    for c0 in (0..n).step_by(chunk) {
        let ts: Vec<f64> = (c0..n.min(c0 + chunk)).map(|i| i as f64 / (n - 1) as f64).collect();
        let pat = c.activation_pattern(cut, shape, &lerp(z_a, z_b, &ts), 1e-9).unwrap();
        for (i, &t) in ts.iter().enumerate() {
            let row = pat.row(i).to_vec();
            let l = &pat.logits[i * k..(i + 1) * k];
            let cls = argmax(l);
            if let Some((t0, r0, c0)) = &prev {
                if let Some(u) = r0.iter().zip(&row).position(|(&x, &y)| x != y && x != 2 && y != 2) {
                    changes += 1;
                    let j = b.partition_point(|&x| x < t0 - 1e-12);
                    assert!(
                        j < b.len() && b[j] <= t + 1e-12,
                        "{cut}: unit {u} changes between t = {t0} and {t} but no breakpoint lies there"
                    );
                }
                class_changes += usize::from(*c0 != cls);
            }
            let m = margin(l, target);
            let scale = l.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let inside = intervals.iter().any(|&(lo, hi)| lo <= t && t <= hi);
            let near_end = intervals
                .iter()
                .any(|&(lo, hi)| (t - lo).abs() < 1e-9 || (t - hi).abs() < 1e-9);
            if m.abs() > 1e-9 * scale && !near_end {
                assert_eq!(
                    m < 0.0,
                    inside,
                    "{cut}: at t = {t} margin {m} but inside a refuted interval: {inside}"
                );
            }
            prev = Some((t, row, cls));
        }
    }
    eprintln!(
        "{cut}: {} pieces; {n} samples saw {changes} pattern changes and {class_changes} class changes; {:?}",
        p.pieces(),
        cert.verdict
    );
    assert!(changes > 0, "the test segment crosses some ReLU");
    p
}

#[test]
fn resnet20_partition_matches_brute_force_in_input_and_stem() {
    let (_, _, c) = network(Arch::ResNet20, 4, 1);
    let (a, b) = (to_f64(&image(10, 8, 8)), to_f64(&image(11, 8, 8)));
    let n = samples(20_000);
    let p = check_against_sampling(&c, Cut::Input, &[3, 8, 8], &a, &b, n);
    assert!(
        p.pieces() > 10,
        "a random segment through a ResNet crosses many regions"
    );
    // At the stem cut, from the stem activations of the endpoints (a segment there too).
    let cpu = CpuBackend::new();
    let (_, net, _) = network(Arch::ResNet20, 4, 1);
    let enc = |x: &[f64]| {
        let t = Tensor::from_vec(&cpu, [1, 3, 8, 8], x.iter().map(|&v| v as f32).collect()).unwrap();
        to_f64(&net.encode(&cpu, &t, Cut::Stem).unwrap().to_vec(&cpu).unwrap())
    };
    check_against_sampling(&c, Cut::Stem, &[4, 8, 8], &enc(&a), &enc(&b), n);
}

#[test]
fn resnet18_with_stem_max_pool_partition_matches_brute_force() {
    let (_, _, c) = network(Arch::ResNet18, 2, 2);
    let (a, b) = (to_f64(&image(20, 32, 32)), to_f64(&image(21, 32, 32)));
    let n = samples(20_000);
    let p = check_against_sampling(&c, Cut::Input, &[3, 32, 32], &a, &b, n);
    assert!(p.pieces() > 10);
    // The max-pool changes arg-max along the segment: its codes (3 + window position) differ
    // between pieces somewhere, so its kinks are among the breakpoints checked above.
    let mids: Vec<f64> = p.breakpoints.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let pat = c
        .activation_pattern(Cut::Input, &[3, 32, 32], &lerp(&a, &b, &mids), 1e-12)
        .unwrap();
    let relu_units = 2 * 16 * 16; // the stem's ReLU comes first, then the max-pool
    let pool_units = 2 * 8 * 8;
    let pool_changes = (1..mids.len())
        .filter(|&i| {
            let (r0, r1) = (pat.row(i - 1), pat.row(i));
            (relu_units..relu_units + pool_units).any(|u| r0[u] != r1[u] && r0[u] >= 3 && r1[u] >= 3)
        })
        .count();
    assert!(pool_changes > 0, "some breakpoint is a max-pool arg-max change");
}

#[test]
fn splitting_traces_does_not_change_the_partition() {
    // batch = 4 forces a cut at almost every layer; the breakpoints must be the same.
    let (_, _, c) = network(Arch::ResNet20, 4, 3);
    let (a, b) = (image(30, 8, 8), image(31, 8, 8));
    let big = c
        .partition(Cut::Input, &[3, 8, 8], &a, &b, &CertifyOptions::default())
        .unwrap();
    let small = CertifyOptions {
        batch: 4,
        ..CertifyOptions::default()
    };
    let cut = c.partition(Cut::Input, &[3, 8, 8], &a, &b, &small).unwrap();
    assert_eq!(big.pieces(), cut.pieces());
    for (x, y) in big.breakpoints.iter().zip(&cut.breakpoints) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    for (x, y) in big.logits.iter().zip(&cut.logits) {
        assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn piece_budget_leaves_the_segment_undecided_with_the_covered_part() {
    let (_, _, c) = network(Arch::ResNet20, 4, 1);
    let (a, b) = (image(10, 8, 8), image(11, 8, 8));
    let full = c
        .partition(Cut::Input, &[3, 8, 8], &a, &b, &CertifyOptions::default())
        .unwrap();
    let opts = CertifyOptions {
        max_pieces: full.pieces() / 2,
        batch: 8,
        ..CertifyOptions::default()
    };
    let part = c.partition(Cut::Input, &[3, 8, 8], &a, &b, &opts).unwrap();
    assert!(!part.complete && part.covered() < 1.0 && part.pieces() <= opts.max_pieces);
    // What it covers is exactly the full partition's prefix.
    for (x, y) in part.breakpoints.iter().zip(&full.breakpoints) {
        assert!((x - y).abs() < 1e-12);
    }
    let l0 = c.head(Cut::Input, &[3, 8, 8], &a).unwrap();
    let cert = c.segment(Cut::Input, &[3, 8, 8], &a, &b, argmax(&l0), &opts).unwrap();
    assert!(cert.covered < 1.0);
    if let Verdict::Refuted { intervals } = &cert.verdict {
        assert!(intervals.iter().all(|&(_, hi)| hi <= cert.covered));
    } else {
        assert!(matches!(cert.verdict, Verdict::Undecided { .. }), "{:?}", cert.verdict);
    }
}

#[test]
fn f64_logits_agree_with_the_f32_network_at_every_cut() {
    // Reference: FoldedResNet::head on the CPU backend (f32), to 1e-5 relative.
    for (arch, width, h) in [(Arch::ResNet20, 4, 16), (Arch::ResNet18, 2, 32)] {
        let (cpu, net, c) = network(arch, width, 5);
        let x: Vec<f32> = [image(50, h, h), image(51, h, h), image(52, h, h)].concat();
        let xt = Tensor::from_vec(&cpu, [3, 3, h, h], x).unwrap();
        for cut in arch.cuts() {
            let z = net.encode(&cpu, &xt, cut).unwrap();
            let shape = z.shape.dims()[1..].to_vec();
            let want = net.head(&cpu, &z, cut).unwrap().to_vec(&cpu).unwrap();
            let got = c.head(cut, &shape, &z.to_vec(&cpu).unwrap()).unwrap();
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - *w as f64).abs() <= 1e-5 * scale,
                    "{arch} {cut}: f64 {g} vs f32 {w}"
                );
            }
        }
    }
}
