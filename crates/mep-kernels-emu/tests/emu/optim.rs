//! optim.cu through the CPU emulation, each kernel version on launch shapes the backend
//! never picks, against `mep_tensor::CpuBackend`. The reference numbers are the CPU
//! backend's outputs on the same inputs.

use crate::common;

use common::{assert_close, data, i64_arg, launches, Dev, Launch, Version, SIZES};
use mep_kernels::{AdamScalars, Arg};
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, CpuBackend, SgdParams};

/// One Adam step by `adam_step_f32_v1/v2` on copies of `p`, `m`, `v`; returns them.
fn adam_step(d: &Dev, ver: Version, l: Launch, s: &AdamScalars, bufs: [&[f32]; 4]) -> [Vec<f32>; 3] {
    let [p, g, m, v] = bufs.map(|b| d.upload(b));
    let mut args = vec![i64_arg(bufs[0].len())];
    args.extend(s.args());
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
