//! optim.cu and softmax.cu through the CPU emulation, each kernel version on launch shapes
//! the backend never picks, against `mep_tensor::CpuBackend`. The reference numbers are the
//! CPU backend's outputs on the same inputs.

mod common;

use common::{assert_close, data, i64_arg, launches, Dev, Launch, Version, SIZES};
use mep_kernels::{AdamScalars, Arg};
use mep_kernels_emu::EmuLauncher;
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, CpuBackend, SgdParams};

/// One Adam step by `adam_step_f32_v1/v2` on copies of `p`, `m`, `v`; returns them.
fn adam_step(d: &Dev, ver: Version, l: Launch, s: &AdamScalars, bufs: [&[f32]; 4]) -> [Vec<f32>; 3] {
    let [p, g, m, v] = bufs.map(|b| d.upload(b));
    let scalars = [
        s.beta1,
        s.beta2,
        s.c1,
        s.c2,
        s.eps,
        s.step_size,
        s.bc2_sqrt,
        s.l2,
        s.decay,
    ]
    .map(Arg::F32);
    let mut args = vec![i64_arg(bufs[0].len())];
    args.extend(scalars);
    args.extend([d.ptr(&p), d.ptr(&g), d.ptr(&m), d.ptr(&v)]);
    d.run(&ver.of("adam_step_f32"), l, &args).unwrap();
    [&p, &m, &v].map(|b| d.download(b, bufs[0].len()))
}

/// One SGD-with-momentum step by `sgd_step_f32_v1/v2` on copies of `p` and `buf`; returns them.
fn sgd_step(d: &Dev, ver: Version, l: Launch, h: &SgdParams, [p, g, buf]: [&[f32]; 3]) -> [Vec<f32>; 2] {
    let n = p.len();
    let [pm, gm, bm] = [p, g, buf].map(|b| d.upload(b));
    let args = [
        i64_arg(n),
        Arg::F32(h.lr),
        Arg::F32(h.momentum),
        Arg::F32(h.weight_decay),
        Arg::I32(h.nesterov as i32),
        // The first step sets the momentum buffer to the gradient.
        Arg::I32((h.step == 1) as i32),
        d.ptr(&pm),
        d.ptr(&gm),
        d.ptr(&bm),
    ];
    d.run(&ver.of("sgd_step_f32"), l, &args).unwrap();
    [d.download(&pm, n), d.download(&bm, n)]
}

#[test]
fn adam_matches_cpu_with_and_without_decoupled_decay() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    let cases = [
        AdamParams::default(),
        AdamParams {
            weight_decay: 0.01,
            step: 3,
            ..AdamParams::default()
        },
        AdamParams {
            lr: 0.05,
            weight_decay: 0.1,
            decoupled: true,
            step: 10,
            ..AdamParams::default()
        },
    ];
    for n in SIZES {
        let p0 = data(n, 11, -1.0, 1.0);
        let g = data(n, 12, -1.0, 1.0);
        let m0 = data(n, 13, -0.1, 0.1);
        let v0 = data(n, 14, 0.0, 0.01);
        for h in cases {
            let (mut p, mut m, mut v) = (
                cpu.upload(&p0).unwrap(),
                cpu.upload(&m0).unwrap(),
                cpu.upload(&v0).unwrap(),
            );
            cpu.adam_step(&h, &mut p, &cpu.upload(&g).unwrap(), &mut m, &mut v)
                .unwrap();
            let (wp, wm, wv) = (
                cpu.download(&p).unwrap(),
                cpu.download(&m).unwrap(),
                cpu.download(&v).unwrap(),
            );
            // The host scalars the kernel backend computes for this step.
            let s = AdamScalars::of(&h);
            for ver in Version::ALL {
                for l in launches(ver, n) {
                    let [p, m, v] = adam_step(&d, ver, l, &s, [&p0, &g, &m0, &v0]);
                    let tag = format!("{h:?} {ver:?} {l:?} n={n}");
                    // The same f32 expression with the same scalars: bitwise equal.
                    assert_close(&format!("adam p {tag}"), &p, &wp, 0.0, 0.0);
                    assert_close(&format!("adam m {tag}"), &m, &wm, 0.0, 0.0);
                    assert_close(&format!("adam v {tag}"), &v, &wv, 0.0, 0.0);
                }
            }
        }
    }
}

#[test]
fn sgd_matches_cpu_first_and_later_steps_nesterov_and_plain() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    let base = SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
        step: 1,
    };
    let cases = [
        base,
        SgdParams {
            step: 2,
            weight_decay: 5e-4,
            ..base
        },
        SgdParams {
            step: 4,
            nesterov: true,
            ..base
        },
        SgdParams {
            momentum: 0.0,
            weight_decay: 1e-2,
            ..base
        },
    ];
    for n in SIZES {
        let p0 = data(n, 21, -1.0, 1.0);
        let g = data(n, 22, -1.0, 1.0);
        let b0 = data(n, 23, -0.5, 0.5);
        for h in cases {
            let (mut p, mut b) = (cpu.upload(&p0).unwrap(), cpu.upload(&b0).unwrap());
            cpu.sgd_step(&h, &mut p, &cpu.upload(&g).unwrap(), &mut b).unwrap();
            let (wp, wb) = (cpu.download(&p).unwrap(), cpu.download(&b).unwrap());
            for ver in Version::ALL {
                for l in launches(ver, n) {
                    let [p, b] = sgd_step(&d, ver, l, &h, [&p0, &g, &b0]);
                    let tag = format!("{h:?} {ver:?} {l:?} n={n}");
                    assert_close(&format!("sgd p {tag}"), &p, &wp, 0.0, 0.0);
                    assert_close(&format!("sgd buf {tag}"), &b, &wb, 0.0, 0.0);
                }
            }
        }
    }
}

#[test]
fn softmax_cross_entropy_and_backward_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    // (rows, classes): one class, CIFAR's 10, ImageNet-like 1000 (more than a block), odd sizes.
    for (n, c) in [(1, 1), (5, 10), (3, 1000), (33, 7)] {
        let mut logits = data(n * c, 31, -8.0, 8.0);
        if c > 1 {
            logits[1] = 80.0; // a large logit: the shift by the maximum must keep exp finite
        }
        let targets: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % c).collect();
        let mut pb = cpu.alloc(n * c).unwrap();
        let mut lb = cpu.alloc(n).unwrap();
        cpu.softmax_cross_entropy(n, c, &cpu.upload(&logits).unwrap(), &targets, &mut pb, &mut lb)
            .unwrap();
        let (want_p, want_l) = (cpu.download(&pb).unwrap(), cpu.download(&lb).unwrap());
        let t: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
        let (lm, tm) = (d.upload(&logits), d.upload(&t));
        for v in Version::ALL {
            let ls = match v {
                Version::V1 => vec![Launch::cover(n, 32), Launch::cover(n, 4)],
                Version::V2 => vec![Launch::new(n as u32, 32), Launch::new(n as u32, 128)], // a block per row
            };
            for l in ls {
                let (pm, lossm) = (d.upload(&vec![f32::NAN; n * c]), d.upload(&vec![f32::NAN; n]));
                let args = [
                    i64_arg(n),
                    Arg::I32(c as i32),
                    d.ptr(&lm),
                    d.ptr(&tm),
                    d.ptr(&pm),
                    d.ptr(&lossm),
                ];
                d.run(&v.of("softmax_xent_f32"), l, &args).unwrap();
                let (p, loss): (Vec<f32>, Vec<f32>) = (d.download(&pm, n * c), d.download(&lossm, n));
                let tag = format!("{v:?} {l:?} n={n} c={c}");
                assert_close(&format!("probs {tag}"), &p, &want_p, 1e-9, 1e-5);
                assert_close(&format!("losses {tag}"), &loss, &want_l, 1e-6, 1e-5);
            }
        }
        for scale in [1.0f32, 1.0 / n as f32] {
            let mut db = cpu.alloc(n * c).unwrap();
            cpu.softmax_cross_entropy_bwd(n, c, &pb, &targets, scale, &mut db)
                .unwrap();
            let want = cpu.download(&db).unwrap();
            let probs = d.upload(&want_p);
            for l in launches(Version::V1, n * c) {
                let dm = d.upload(&vec![f32::NAN; n * c]);
                let args = [
                    i64_arg(n),
                    Arg::I32(c as i32),
                    d.ptr(&probs),
                    d.ptr(&tm),
                    Arg::F32(scale),
                    d.ptr(&dm),
                ];
                d.run("softmax_xent_bwd_f32_v1", l, &args).unwrap();
                let got: Vec<f32> = d.download(&dm, n * c);
                assert_close(
                    &format!("dlogits {l:?} n={n} c={c} scale={scale}"),
                    &got,
                    &want,
                    0.0,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn softmax_rejects_a_target_outside_the_classes() {
    // Checked by the backend, before the kernel could index past a row.
    let b = EmuLauncher::backend();
    let logits = b.upload(&[0.0f32; 6]).unwrap();
    let (mut p, mut l) = (b.alloc(6).unwrap(), b.alloc(2).unwrap());
    let r = b.softmax_cross_entropy(2, 3, &logits, &[0, 3], &mut p, &mut l);
    assert!(r.is_err(), "{r:?}");
}
