//! softmax.cu through the CPU emulation, each kernel version on launch shapes the backend
//! never picks, against `mep_tensor::CpuBackend`. The reference numbers are the CPU
//! backend's outputs on the same inputs.

use crate::common;

use common::{assert_close, data, i64_arg, launches, Dev, Launch, Version};
use mep_kernels::Arg;
use mep_kernels_emu::EmuLauncher;
use mep_tensor::prelude::*;
use mep_tensor::CpuBackend;

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
