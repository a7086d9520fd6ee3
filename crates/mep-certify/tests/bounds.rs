//! Bound propagation with bisection, cross-checked against ExactLine: the same verdicts where
//! ExactLine finishes, bounds that hold at every sampled point, counterexamples the network
//! misclassifies, a planted counterexample refuted.

mod common;

use common::*;
use mep_certify::{Certifier, CertifyOptions, Method, PathInput, Verdict};
use mep_resnet::{Arch, Cut};
use mep_tensor::Tensor;

fn opts(method: Method) -> CertifyOptions {
    CertifyOptions {
        method,
        ..CertifyOptions::default()
    }
}

fn kind(v: &Verdict) -> &'static str {
    match v {
        Verdict::Certified => "certified",
        Verdict::Refuted { .. } => "refuted",
        Verdict::Undecided { .. } => "undecided",
    }
}

/// One segment per cut: its shape, the encodings of its two ends and the first end's class.
struct CutSegment {
    cut: Cut,
    shape: Vec<usize>,
    za: Vec<f64>,
    zb: Vec<f64>,
    target: usize,
}

/// A small `arch` network (`width`, `seed`) and, at each of its cuts, the segment between the
/// encodings of two standard-normal `h×h` images (seeds `images`).
fn cut_segments(arch: Arch, width: usize, seed: u64, h: usize, images: (u64, u64)) -> (Certifier, Vec<CutSegment>) {
    let (cpu, net, c) = network(arch, width, seed);
    let x: Vec<f32> = [image(images.0, h, h), image(images.1, h, h)].concat();
    let xt = Tensor::from_vec(&cpu, [2, 3, h, h], x).unwrap();
    let segs = arch
        .cuts()
        .into_iter()
        .map(|cut| {
            let z = net.encode(&cpu, &xt, cut).unwrap();
            let shape = z.shape.dims()[1..].to_vec();
            let z = to_f64(&z.to_vec(&cpu).unwrap());
            let (za, zb) = z.split_at(z.len() / 2);
            let target = argmax(&c.head(cut, &shape, za).unwrap());
            CutSegment {
                cut,
                shape,
                za: za.to_vec(),
                zb: zb.to_vec(),
                target,
            }
        })
        .collect();
    (c, segs)
}

/// Exact, bounds and auto on the segment of every cut of a small `arch` network (`width`,
/// `seed`, `h×h` images `images`): wherever ExactLine decides, auto says the same, bounds
/// too unless undecided, and a proved lower bound is under every margin ExactLine found.
/// The verdicts ExactLine reached.
fn agree_at_every_cut(arch: Arch, width: usize, seed: u64, h: usize, images: (u64, u64)) -> Vec<&'static str> {
    let (c, segs) = cut_segments(arch, width, seed, h, images);
    let mut decided = Vec::new();
    for CutSegment {
        cut,
        shape,
        za,
        zb,
        target,
    } in segs
    {
        let run = |method| c.segment(cut, &shape, &za, &zb, target, &opts(method)).unwrap();
        let (exact, bounds, auto) = (run(Method::Exact), run(Method::Bounds), run(Method::Auto));
        eprintln!(
            "{arch:?} seed {seed} {cut}: exact {} ({} pieces, min margin {:.3e}), bounds {} ({} intervals), auto {} ({} intervals, {} pieces)",
            kind(&exact.verdict),
            exact.pieces,
            exact.min_margin,
            kind(&bounds.verdict),
            bounds.intervals,
            kind(&auto.verdict),
            auto.intervals,
            auto.pieces
        );
        if matches!(exact.verdict, Verdict::Undecided { .. }) {
            continue;
        }
        assert_eq!(kind(&auto.verdict), kind(&exact.verdict), "seed {seed} {cut}: auto");
        if !matches!(bounds.verdict, Verdict::Undecided { .. }) {
            assert_eq!(kind(&bounds.verdict), kind(&exact.verdict), "seed {seed} {cut}: bounds");
        }
        for b in [auto.margin_bound, bounds.margin_bound].into_iter().flatten() {
            assert!(
                b <= exact.min_margin + 1e-12,
                "{cut}: bound {b} > min {}",
                exact.min_margin
            );
        }
        decided.push(kind(&exact.verdict));
    }
    decided
}

/// Segments between two images at every cut of a small ResNet-20, over several seeds: both
/// classes of verdict occur, and the methods agree wherever ExactLine decides.
#[test]
fn bounds_and_auto_agree_with_exact_line_wherever_it_finishes() {
    let verdicts: Vec<&str> = (0..6u64)
        .flat_map(|seed| agree_at_every_cut(Arch::ResNet20, 4, 40 + seed, 8, (500 + seed, 600 + seed)))
        .collect();
    let certified = verdicts.iter().filter(|&&v| v == "certified").count();
    let refuted = verdicts.iter().filter(|&&v| v == "refuted").count();
    assert!(certified > 0 && refuted > 0, "{certified} certified, {refuted} refuted");
}

/// The same on a narrow ResNet-50 at 16×16, whose max-pool and projection shortcuts the
/// ResNet-20 lacks.
#[test]
fn bounds_agree_with_exact_line_through_max_pool_and_projections() {
    let decided: usize = (0..2u64)
        .map(|seed| agree_at_every_cut(Arch::ResNet50, 2, 90 + seed, 16, (900 + seed, 950 + seed)).len())
        .sum();
    assert!(decided > 0);
}

/// The proved lower bound of a certified input-space segment is at most the smallest margin
/// of 4001 samples, and a refutation's counterexample is misclassified by the f32 network too.
#[test]
fn bounds_hold_at_samples_and_counterexamples_are_misclassified() {
    let h = 8;
    let n = samples(4001);
    let ts: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
    let (mut checked_bound, mut checked_cx) = (0, 0);
    for seed in 0..12u64 {
        let (cpu, net, c) = network(Arch::ResNet20, 4, 70 + seed);
        let (a, b) = (to_f64(&image(700 + seed, h, h)), to_f64(&image(800 + seed, h, h)));
        let shape = [3, h, h];
        let target = argmax(&c.head(Cut::Input, &shape, &a).unwrap());
        let cert = c
            .segment(Cut::Input, &shape, &a, &b, target, &opts(Method::Auto))
            .unwrap();
        let k = c.classes();
        if let Some(bound) = cert.margin_bound {
            let l = c.head(Cut::Input, &shape, &lerp(&a, &b, &ts)).unwrap();
            let min = (0..n)
                .map(|i| margin(&l[i * k..(i + 1) * k], target))
                .fold(f64::INFINITY, f64::min);
            if matches!(cert.verdict, Verdict::Certified) {
                assert!(
                    bound <= min,
                    "seed {seed}: bound {bound} above the sampled minimum {min}"
                );
                checked_bound += 1;
            }
        }
        if let Some((t, m)) = cert.counterexample {
            assert!(m < 0.0);
            let x: Vec<f32> = lerp(&a, &b, &[t]).iter().map(|&v| v as f32).collect();
            let logits = net
                .head(&cpu, &Tensor::from_vec(&cpu, [1, 3, h, h], x).unwrap(), Cut::Input)
                .unwrap()
                .to_vec(&cpu)
                .unwrap();
            let row: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
            if m < -1e-4 {
                assert_ne!(argmax(&row), target, "seed {seed}: t = {t}, f64 margin {m}");
            }
            assert!(margin(&row, target) < 1e-4, "seed {seed}: f32 margin at t = {t}");
            checked_cx += 1;
        }
    }
    assert!(
        checked_bound > 0 && checked_cx > 0,
        "{checked_bound} bounds, {checked_cx} counterexamples"
    );
}

/// A path from `a` to `b` through a point of another class is refuted, with the
/// counterexample on one of its two segments; the same path without the detour is decided
/// as ExactLine decides it.
#[test]
fn a_planted_counterexample_is_refuted() {
    let h = 8;
    let (_cpu, _net, c) = network(Arch::ResNet20, 4, 5);
    let shape = [3, h, h];
    // Two images of one class and one of another, from a pool of candidates.
    let imgs: Vec<Vec<f64>> = (0..40).map(|s| to_f64(&image(900 + s, h, h))).collect();
    let cls: Vec<usize> = imgs
        .iter()
        .map(|x| argmax(&c.head(Cut::Input, &shape, x).unwrap()))
        .collect();
    let (ia, ib) = (0..imgs.len())
        .flat_map(|i| (i + 1..imgs.len()).map(move |j| (i, j)))
        .find(|&(i, j)| cls[i] == cls[j])
        .expect("two images of one class");
    let im = (0..imgs.len())
        .find(|&m| cls[m] != cls[ia])
        .expect("an image of another class");
    let target = cls[ia];
    let pivots: Vec<f64> = [imgs[ia].clone(), imgs[im].clone(), imgs[ib].clone()].concat();
    for method in [Method::Auto, Method::Bounds, Method::Exact] {
        let cert = c
            .path(Cut::Input, &[3, 3, h, h], &pivots, target, &opts(method))
            .unwrap();
        let Verdict::Refuted { intervals } = &cert.verdict else {
            panic!("{method}: {:?}", cert.verdict);
        };
        let (u, m) = cert.counterexample.expect("a counterexample");
        assert!(m < 0.0 && (0.0..=1.0).contains(&u), "{method}: ({u}, {m})");
        assert!(
            intervals.iter().any(|&(lo, hi)| lo <= u && u <= hi),
            "{method}: {u} in {intervals:?}"
        );
        // The planted point itself (u = 1/2) is misclassified.
        assert!(margin(&c.head(Cut::Input, &shape, &imgs[im]).unwrap(), target) < 0.0);
    }
}

/// Several paths at once give the certificates each path gets alone.
#[test]
fn paths_batched_together_get_the_certificates_they_get_alone() {
    let h = 8;
    let (_cpu, _net, c) = network(Arch::ResNet20, 4, 11);
    let shape = [3, h, h];
    let rows: Vec<Vec<f64>> = (0..6)
        .map(|p| {
            [0, 1, 2]
                .iter()
                .flat_map(|k| to_f64(&image(1000 + 10 * p + k, h, h)))
                .collect()
        })
        .collect();
    let targets: Vec<usize> = rows
        .iter()
        .map(|r| argmax(&c.head(Cut::Input, &shape, &r[..3 * h * h]).unwrap()))
        .collect();
    let inputs: Vec<PathInput<'_, f64>> = rows
        .iter()
        .zip(&targets)
        .map(|(r, &target)| PathInput {
            pivots: r,
            rows: 3,
            target,
        })
        .collect();
    let o = CertifyOptions {
        bound_batch: 5,
        ..opts(Method::Auto)
    };
    let together = c.paths(Cut::Input, &shape, &inputs, &o).unwrap();
    for (p, x) in inputs.iter().enumerate() {
        let alone = c.path(Cut::Input, &[3, 3, h, h], x.pivots, x.target, &o).unwrap();
        assert_eq!(kind(&together[p].verdict), kind(&alone.verdict), "path {p}");
        assert_eq!(
            together[p].counterexample.is_some(),
            alone.counterexample.is_some(),
            "path {p}"
        );
        eprintln!("path {p}: {} ({} intervals)", kind(&alone.verdict), alone.intervals);
    }
}
