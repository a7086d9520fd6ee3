//! Certificates: an excursion that sampling misses, paths with an affine head, every cut of a
//! ResNet-20, and clear errors on bad input.

mod common;

use common::*;
use mep_certify::{certify_path, Certifier, CertifyError, CertifyOptions, Method, Verdict};
use mep_resnet::{Arch, Cut, FoldedResNet};
use mep_tensor::{CpuBackend, Tensor};

/// ExactLine alone: these checks are about its partition.
fn exact() -> CertifyOptions {
    CertifyOptions {
        method: Method::Exact,
        ..CertifyOptions::default()
    }
}

/// The f64 margin of the segment `z_a → z_b` at `t`.
fn margin_at(c: &Certifier, cut: Cut, shape: &[usize], z_a: &[f64], z_b: &[f64], target: usize, t: f64) -> f64 {
    margin(&c.head(cut, shape, &lerp(z_a, z_b, &[t])).unwrap(), target)
}

/// The root of the margin in `[lo, hi]` (signs differ at the ends) by 80 bisection steps of
/// the f64 forward pass.
fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    let neg_lo = f(lo) < 0.0;
    assert_ne!(neg_lo, f(hi) < 0.0, "the margin changes sign on [{lo}, {hi}]");
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if (f(mid) < 0.0) == neg_lo {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[test]
fn an_excursion_between_samples_is_refuted_with_its_interval() {
    // S = 9 samples (t = k/8) all predict the target, as a dense check at S sub-points would
    // accept; lowering the target's classifier bias by c puts the margin below zero on a short
    // interval around the breakpoint where it is smallest, between two samples. The interval's
    // ends must match a bisection of the f64 forward pass (to 1e-9).
    let s = 9;
    let sample_ts: Vec<f64> = (0..s).map(|k| k as f64 / (s - 1) as f64).collect();
    let cpu = CpuBackend::new();
    for seed in 0..40u64 {
        let model = model(&cpu, Arch::ResNet20, 4, 100 + seed);
        let net = FoldedResNet::fold(&cpu, &model).unwrap();
        let c = Certifier::new(&cpu, &net).unwrap();
        let (a, b) = (to_f64(&image(200 + seed, 8, 8)), to_f64(&image(300 + seed, 8, 8)));
        let shape = [3, 8, 8];
        let target = argmax(&c.head(Cut::Input, &shape, &a).unwrap());
        let p = c
            .partition(Cut::Input, &shape, &a, &b, &CertifyOptions::default())
            .unwrap();
        let sampled = c.head(Cut::Input, &shape, &lerp(&a, &b, &sample_ts)).unwrap();
        let k = c.classes();
        let sample_min = (0..s)
            .map(|i| margin(&sampled[i * k..(i + 1) * k], target))
            .fold(f64::INFINITY, f64::min);
        // The smallest margin at an interior breakpoint, away from the samples.
        let Some((m_min, t_min)) = (1..p.breakpoints.len() - 1)
            .map(|i| (margin(p.logits_at(i), target), p.breakpoints[i]))
            .filter(|&(_, t)| sample_ts.iter().all(|&u| (t - u).abs() > 0.02))
            .min_by(|x, y| x.0.total_cmp(&y.0))
        else {
            continue;
        };
        if sample_min <= 0.0 || m_min >= sample_min - 1e-3 {
            continue; // the class is already left at a sample, or no interior dip
        }
        let shift = m_min + 0.05 * (sample_min - m_min);
        // Lower the target's bias by `shift`: every margin drops by it (up to f32 rounding).
        let mut model = model;
        let mut bias = model.fc.bias.as_ref().unwrap().value.to_vec(&cpu).unwrap();
        bias[target] -= shift as f32;
        model.fc.bias.as_mut().unwrap().value = Tensor::from_vec(&cpu, [k], bias).unwrap();
        let net = FoldedResNet::fold(&cpu, &model).unwrap();
        let c = Certifier::new(&cpu, &net).unwrap();

        // Sampling at S sub-points (the f32 network, as the dense check runs it) passes.
        let xs = lerp(&a, &b, &sample_ts).iter().map(|&v| v as f32).collect::<Vec<_>>();
        let logits = net
            .head(&cpu, &Tensor::from_vec(&cpu, [s, 3, 8, 8], xs).unwrap(), Cut::Input)
            .unwrap()
            .to_vec(&cpu)
            .unwrap();
        for i in 0..s {
            let row: Vec<f64> = logits[i * k..(i + 1) * k].iter().map(|&v| v as f64).collect();
            assert_eq!(argmax(&row), target, "sample {i} keeps the class");
        }

        let cert = c.segment(Cut::Input, &shape, &a, &b, target, &exact()).unwrap();
        let Verdict::Refuted { intervals } = &cert.verdict else {
            panic!("seed {seed}: expected a refutation, got {:?}", cert.verdict);
        };
        assert!((cert.min_margin_t - t_min).abs() < 1e-9, "the dip is where it was");
        for &(lo, hi) in intervals {
            assert!(lo < hi);
            assert!(
                sample_ts.iter().all(|&u| u < lo || u > hi),
                "[{lo}, {hi}] holds no sample"
            );
        }
        let &(lo, hi) = intervals
            .iter()
            .find(|&&(lo, hi)| lo <= t_min && t_min <= hi)
            .expect("the dip is refuted");
        let f = |t: f64| margin_at(&c, Cut::Input, &shape, &a, &b, target, t);
        let w = 1e-7;
        let (r_lo, r_hi) = (bisect(f, lo - w, lo + w), bisect(f, hi - w, hi + w));
        assert!(
            (r_lo - lo).abs() < 1e-9 && (r_hi - hi).abs() < 1e-9,
            "[{lo}, {hi}] vs bisection [{r_lo}, {r_hi}]"
        );
        assert!(f(0.5 * (lo + hi)) < 0.0 || f(t_min) < 0.0);
        eprintln!(
            "seed {seed}: refuted on {intervals:?} (width {:e}), {} pieces",
            hi - lo,
            cert.pieces
        );
        return;
    }
    panic!("no seed gave an interior dip of the margin");
}

#[test]
fn a_path_with_an_affine_head_is_one_piece_per_segment_decided_by_its_endpoints() {
    // At `pool` the head is the classifier alone: affine, so each segment is one piece and its
    // margin (a minimum of affine functions, concave) is positive throughout iff it is at both ends.
    // Pivots: the pooled features of random images, each spread by random non-negative
    // features so that the pivots fall in several classes.
    let (cpu, net, c) = network(Arch::ResNet20, 4, 7);
    let p = 12;
    let x: Vec<f32> = (0..p as u64).flat_map(|i| image(70 + i, 8, 8)).collect();
    let z = net
        .encode(&cpu, &Tensor::from_vec(&cpu, [p, 3, 8, 8], x).unwrap(), Cut::Pool)
        .unwrap();
    let spread = image(99, 8, 8);
    let pivots: Vec<f32> = z
        .to_vec(&cpu)
        .unwrap()
        .iter()
        .zip(spread.iter().cycle())
        .map(|(v, s)| v + 3.0 * s.abs())
        .collect();
    let f = pivots.len() / p;
    let logits = c.head(Cut::Pool, &[f], &pivots).unwrap();
    let k = c.classes();
    let classes: Vec<usize> = (0..p).map(|i| argmax(&logits[i * k..(i + 1) * k])).collect();
    let target = classes[0];
    let cert = certify_path(&net, Cut::Pool, &[p, f], &pivots, target, &exact()).unwrap();
    assert_eq!(cert.pieces, p - 1);
    let mut refuted = 0;
    for (s, seg) in cert.segments.iter().enumerate() {
        assert_eq!(seg.pieces, 1);
        let (m0, m1) = (
            margin(&logits[s * k..(s + 1) * k], target),
            margin(&logits[(s + 1) * k..(s + 2) * k], target),
        );
        match &seg.verdict {
            Verdict::Certified => assert!(m0 > 0.0 && m1 > 0.0, "segment {s}: {m0}, {m1}"),
            Verdict::Refuted { intervals } => {
                refuted += 1;
                assert!(m0 < 0.0 || m1 < 0.0, "segment {s}: {m0}, {m1}");
                // The interval's inner ends are zeros of the margin.
                let (za, zb) = (
                    to_f64(&pivots[s * f..(s + 1) * f]),
                    to_f64(&pivots[(s + 1) * f..(s + 2) * f]),
                );
                for &(lo, hi) in intervals {
                    for t in [lo, hi].into_iter().filter(|&t| t > 0.0 && t < 1.0) {
                        let m = margin_at(&c, Cut::Pool, &[f], &za, &zb, target, t);
                        assert!(m.abs() < 1e-9, "segment {s}: margin {m} at the interval's end {t}");
                    }
                    let m = margin_at(&c, Cut::Pool, &[f], &za, &zb, target, 0.5 * (lo + hi));
                    assert!(m < 0.0);
                }
            }
            v => panic!("segment {s}: {v:?}"),
        }
    }
    let all_certified = cert.segments.iter().all(|s| s.verdict == Verdict::Certified);
    assert_eq!(cert.verdict == Verdict::Certified, all_certified);
    assert!(
        refuted > 0 && refuted < p - 1,
        "both kinds of segment occur: {refuted} of {} refuted",
        p - 1
    );
    {
        // Intervals in the path's parameter u = (segment + t)/(P − 1).
        let Verdict::Refuted { intervals } = &cert.verdict else {
            panic!("{:?}", cert.verdict)
        };
        for &(lo, hi) in intervals {
            let u = 0.5 * (lo + hi) * (p - 1) as f64;
            let (s, t) = (
                (u.floor() as usize).min(p - 2),
                u - (u.floor() as usize).min(p - 2) as f64,
            );
            let (za, zb) = (
                to_f64(&pivots[s * f..(s + 1) * f]),
                to_f64(&pivots[(s + 1) * f..(s + 2) * f]),
            );
            assert!(margin_at(&c, Cut::Pool, &[f], &za, &zb, target, t) < 0.0);
        }
    }
    eprintln!("classes of the pivots {classes:?}: {:?}", cert.verdict);
}

#[test]
fn every_cut_of_a_resnet20_is_certified_consistently_with_sampling() {
    let (cpu, net, c) = network(Arch::ResNet20, 4, 8);
    let h = 16;
    let x: Vec<f32> = [image(80, h, h), image(81, h, h)].concat();
    let xt = Tensor::from_vec(&cpu, [2, 3, h, h], x).unwrap();
    let n = 2001;
    let ts: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
    for cut in Arch::ResNet20.cuts() {
        let z = net.encode(&cpu, &xt, cut).unwrap();
        let shape = z.shape.dims()[1..].to_vec();
        let z = to_f64(&z.to_vec(&cpu).unwrap());
        let (za, zb) = z.split_at(z.len() / 2);
        let k = c.classes();
        let target = argmax(&c.head(cut, &shape, za).unwrap());
        let cert = c.segment(cut, &shape, za, zb, target, &exact()).unwrap();
        let after_last_relu = matches!(cut, Cut::Layer(3) | Cut::Pool);
        assert_eq!(cert.pieces == 1, after_last_relu, "{cut}: {} pieces", cert.pieces);
        let intervals = match &cert.verdict {
            Verdict::Certified => Vec::new(),
            Verdict::Refuted { intervals } => intervals.clone(),
            v => panic!("{cut}: {v:?}"),
        };
        let l = c.head(cut, &shape, &lerp(za, zb, &ts)).unwrap();
        let mut min_sampled = f64::INFINITY;
        for (i, &t) in ts.iter().enumerate() {
            let m = margin(&l[i * k..(i + 1) * k], target);
            min_sampled = min_sampled.min(m);
            let inside = intervals.iter().any(|&(lo, hi)| lo <= t && t <= hi);
            if m.abs() > 1e-9 {
                assert_eq!(m < 0.0, inside, "{cut}: t = {t}, margin {m}");
            }
        }
        // The exact minimum is at most what sampling sees.
        assert!(
            cert.min_margin <= min_sampled + 1e-12,
            "{cut}: {} vs sampled {min_sampled}",
            cert.min_margin
        );
        eprintln!(
            "{cut}: {} pieces, {:?}, {:.3} s",
            cert.pieces, cert.verdict, cert.seconds
        );
    }
}

#[test]
fn bad_inputs_are_errors_naming_what_is_wrong() {
    let (_, net, c) = network(Arch::ResNet20, 4, 9);
    let o = CertifyOptions::default();
    let a = vec![0.5f32; 3 * 8 * 8];
    let e = c.segment(Cut::Input, &[4, 8, 8], &a, &a, 0, &o).unwrap_err();
    assert!(
        matches!(e, CertifyError::Shape { .. }) && e.to_string().contains("[3, H, W]"),
        "{e}"
    );
    let e = c.segment(Cut::Input, &[3, 8, 8], &a, &a[1..], 0, &o).unwrap_err();
    assert!(e.to_string().contains("z_b"), "{e}");
    let e = c.segment(Cut::Input, &[3, 8, 8], &a, &a, 10, &o).unwrap_err();
    assert!(
        matches!(
            e,
            CertifyError::Target {
                target: 10,
                classes: 10
            }
        ),
        "{e}"
    );
    let e = c.segment(Cut::Layer(4), &[64], &a, &a, 0, &o).unwrap_err();
    assert!(e.to_string().contains("layer4"), "{e}");
    let mut nan = a.clone();
    nan[5] = f32::NAN;
    let e = c.segment(Cut::Input, &[3, 8, 8], &a, &nan, 0, &o).unwrap_err();
    assert!(matches!(e, CertifyError::NonFinite { index: 5, .. }), "{e}");
    let bad = CertifyOptions { batch: 2, ..o.clone() };
    let e = c.segment(Cut::Input, &[3, 8, 8], &a, &a, 0, &bad).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    let bad = CertifyOptions { tol: -1.0, ..o.clone() };
    assert!(c.segment(Cut::Input, &[3, 8, 8], &a, &a, 0, &bad).is_err());
    let e = certify_path(&net, Cut::Input, &[1, 3, 8, 8], &a, 0, &o).unwrap_err();
    assert!(e.to_string().contains("pivots"), "{e}");
    // A constant segment is one piece, decided by its one point.
    let cert = c.segment(Cut::Input, &[3, 8, 8], &a, &a, 0, &o).unwrap();
    assert_eq!(cert.pieces, 1);
}
