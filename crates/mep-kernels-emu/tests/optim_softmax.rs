//! optim.cu and softmax.cu through the CPU emulation, against `mep_tensor::CpuBackend`.
//! The reference numbers are the CPU backend's outputs on the same inputs.

mod common;

use common::{assert_close, data, launches, SIZES};
use mep_kernels_emu::{self as emu, AdamScalars, EmuError, Launch, SgdScalars, Version};
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, CpuBackend, SgdParams};

#[test]
fn adam_matches_cpu_with_and_without_decoupled_decay() {
    let cpu = CpuBackend::new();
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
            let s = AdamScalars::new(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.decoupled, h.step);
            for ver in Version::ALL {
                for l in launches(ver, n) {
                    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                    emu::adam_step(ver, l, &s, &mut p, &g, &mut m, &mut v).unwrap();
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
    let cpu = CpuBackend::new();
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
            let s = SgdScalars {
                lr: h.lr,
                momentum: h.momentum,
                weight_decay: h.weight_decay,
                nesterov: h.nesterov,
                first: h.step == 1,
            };
            for ver in Version::ALL {
                for l in launches(ver, n) {
                    let (mut p, mut b) = (p0.clone(), b0.clone());
                    emu::sgd_step(ver, l, &s, &mut p, &g, &mut b).unwrap();
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
    let cpu = CpuBackend::new();
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
        for v in Version::ALL {
            let ls = match v {
                Version::V1 => vec![Launch::cover(n, 32), Launch::cover(n, 4)],
                Version::V2 => vec![Launch::new(0, 32), Launch::new(0, 128)], // grid set to n
            };
            for l in ls {
                let (mut p, mut loss) = (vec![f32::NAN; n * c], vec![f32::NAN; n]);
                emu::softmax_cross_entropy(v, l, c, &logits, &targets, &mut p, &mut loss).unwrap();
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
            for l in launches(Version::V1, n * c) {
                let mut d = vec![f32::NAN; n * c];
                emu::softmax_cross_entropy_bwd(l, c, &want_p, &targets, scale, &mut d).unwrap();
                assert_close(&format!("dlogits {l:?} n={n} c={c} scale={scale}"), &d, &want, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn softmax_rejects_a_target_outside_the_classes() {
    let logits = [0.0f32; 6];
    let (mut p, mut l) = ([0.0f32; 6], [0.0f32; 2]);
    let r = emu::softmax_cross_entropy(Version::V1, Launch::new(1, 32), 3, &logits, &[0, 3], &mut p, &mut l);
    assert!(matches!(r, Err(EmuError::Invalid { .. })), "{r:?}");
}
