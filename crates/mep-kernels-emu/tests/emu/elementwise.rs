//! elementwise.cu and reduce.cu through the CPU emulation, each kernel version on launch
//! shapes the backend never picks (tiny grid-stride grids, partial blocks), against
//! `mep_tensor::CpuBackend`. The reference numbers are the CPU backend's outputs on the same
//! inputs.

use crate::common;

use common::{assert_close, data, i64_arg, launches, Dev, Launch, Version, SIZES};
use mep_kernels::{act_args, Arg, KernelError};
use mep_kernels_emu::EmuLauncher;
use mep_tensor::prelude::*;
use mep_tensor::{Act, CpuBackend};

/// Every activation; the kernels get them as `mep_kernels::act_args` writes them (the one
/// Rust copy of common.cuh's `ActCode`).
const ACTS: [Act; 4] = [Act::Identity, Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];

/// Same expression, correctly rounded operations: agreement to an ulp or two (expf differs).
const ATOL: f64 = 1e-7;
const RTOL: f64 = 1e-6;

/// `y = act(x)` by `act_fwd_f32_v1/v2`.
fn act_fwd(d: &Dev, v: Version, l: Launch, [code, slope]: [Arg; 2], x: &[f32]) -> Vec<f32> {
    let (xm, ym) = (d.upload(x), d.upload(&vec![f32::NAN; x.len()]));
    let args = [i64_arg(x.len()), code, slope, d.ptr(&xm), d.ptr(&ym)];
    d.run(&v.of("act_fwd_f32"), l, &args).unwrap();
    d.download(&ym, x.len())
}

/// `dx = dy · act'(y)` by `act_bwd_f32_v1/v2`.
fn act_bwd(d: &Dev, v: Version, l: Launch, [code, slope]: [Arg; 2], y: &[f32], dy: &[f32]) -> Vec<f32> {
    let (ym, dym, dxm) = (d.upload(y), d.upload(dy), d.upload(&vec![f32::NAN; y.len()]));
    let args = [i64_arg(y.len()), code, slope, d.ptr(&ym), d.ptr(&dym), d.ptr(&dxm)];
    d.run(&v.of("act_bwd_f32"), l, &args).unwrap();
    d.download(&dxm, y.len())
}

#[test]
fn activations_forward_and_backward_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    for n in SIZES {
        let mut x = data(n, 1, -4.0, 4.0);
        x[0] = 0.0; // the kink of relu and leaky relu
        let dy = data(n, 2, -1.0, 1.0);
        for act in ACTS {
            let xb = cpu.upload(&x).unwrap();
            let mut yb = cpu.alloc(n).unwrap();
            cpu.activation(act, &xb, &mut yb).unwrap();
            let want_y = cpu.download(&yb).unwrap();
            let mut dxb = cpu.alloc(n).unwrap();
            cpu.activation_bwd(act, &yb, &cpu.upload(&dy).unwrap(), &mut dxb)
                .unwrap();
            let want_dx = cpu.download(&dxb).unwrap();
            for v in Version::ALL {
                for l in launches(v, n) {
                    let what = format!("act_fwd {act:?} {v:?} {l:?} n={n}");
                    let y = act_fwd(&d, v, l, act_args(act), &x);
                    assert_close(&what, &y, &want_y, ATOL, RTOL);
                    let dx = act_bwd(&d, v, l, act_args(act), &want_y, &dy);
                    assert_close(&format!("act_bwd {act:?} {v:?} {l:?} n={n}"), &dx, &want_dx, ATOL, RTOL);
                }
            }
        }
    }
}

#[test]
fn relu_propagates_nan_like_the_cpu() {
    let d = Dev::new();
    let x = [f32::NAN, -1.0, 2.0];
    for v in Version::ALL {
        let y = act_fwd(&d, v, Launch::new(1, 32), act_args(Act::Relu), &x);
        assert!(y[0].is_nan(), "{v:?}: relu(NaN) = {}", y[0]);
        assert_eq!(&y[1..], &[0.0, 2.0]);
    }
}

#[test]
fn add_axpy_scale_fill_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    for n in SIZES {
        let a = data(n, 3, -2.0, 2.0);
        let b = data(n, 4, -2.0, 2.0);
        let (ab, bb) = (cpu.upload(&a).unwrap(), cpu.upload(&b).unwrap());
        let mut sum = cpu.alloc(n).unwrap();
        cpu.add(&ab, &bb, &mut sum).unwrap();
        let want_add = cpu.download(&sum).unwrap();
        let mut acc = cpu.upload(&a).unwrap();
        cpu.add_assign(&mut acc, &bb).unwrap();
        let want_add_assign = cpu.download(&acc).unwrap();
        let mut ax = cpu.upload(&b).unwrap();
        cpu.axpy(-0.7, &ab, &mut ax).unwrap();
        let want_axpy = cpu.download(&ax).unwrap();
        let mut sc = cpu.upload(&a).unwrap();
        cpu.scale(1.3, &mut sc).unwrap();
        let want_scale = cpu.download(&sc).unwrap();
        let mut fl = cpu.alloc(n).unwrap();
        cpu.fill(&mut fl, -2.5).unwrap();
        let want_fill = cpu.download(&fl).unwrap();
        let nan = vec![f32::NAN; n];
        for v in Version::ALL {
            for l in launches(v, n) {
                let tag = format!("{v:?} {l:?} n={n}");
                let (am, bm, y) = (d.upload(&a), d.upload(&b), d.upload(&nan));
                let args = [i64_arg(n), d.ptr(&am), d.ptr(&bm), d.ptr(&y)];
                d.run(&v.of("add_f32"), l, &args).unwrap();
                assert_close(&format!("add {tag}"), &d.download(&y, n), &want_add, 0.0, 0.0);
                let y = d.upload(&a);
                d.run(&v.of("add_assign_f32"), l, &[i64_arg(n), d.ptr(&y), d.ptr(&bm)])
                    .unwrap();
                assert_close(
                    &format!("add_assign {tag}"),
                    &d.download(&y, n),
                    &want_add_assign,
                    0.0,
                    0.0,
                );
                let y = d.upload(&b);
                let args = [i64_arg(n), Arg::F32(-0.7), d.ptr(&am), d.ptr(&y)];
                d.run(&v.of("axpy_f32"), l, &args).unwrap();
                assert_close(&format!("axpy {tag}"), &d.download(&y, n), &want_axpy, ATOL, RTOL);
                let y = d.upload(&a);
                d.run(&v.of("scale_f32"), l, &[i64_arg(n), Arg::F32(1.3), d.ptr(&y)])
                    .unwrap();
                assert_close(&format!("scale {tag}"), &d.download(&y, n), &want_scale, 0.0, 0.0);
                let y = d.upload(&nan);
                d.run(&v.of("fill_f32"), l, &[i64_arg(n), Arg::F32(-2.5), d.ptr(&y)])
                    .unwrap();
                assert_close(&format!("fill {tag}"), &d.download(&y, n), &want_fill, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn v2_takes_the_scalar_path_on_misaligned_buffers() {
    // Buffers starting one element in are not 16-byte aligned: float4 must not be used.
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    let n = 1001;
    let a = data(n + 1, 5, -1.0, 1.0);
    let b = data(n + 1, 6, -1.0, 1.0);
    let mut want = cpu.upload(&b[1..]).unwrap();
    cpu.axpy(2.0, &cpu.upload(&a[1..]).unwrap(), &mut want).unwrap();
    let want = cpu.download(&want).unwrap();
    let (am, y) = (d.upload(&a), d.upload(&b));
    let args = [
        i64_arg(n),
        Arg::F32(2.0),
        d.ptr_at::<f32>(&am, 1),
        d.ptr_at::<f32>(&y, 1),
    ];
    d.run("axpy_f32_v2", Launch::new(3, 64), &args).unwrap();
    let y: Vec<f32> = d.download(&y, n + 1);
    assert_close("axpy v2 misaligned", &y[1..], &want, ATOL, RTOL);
    assert_eq!(y[0], b[0], "element before the slice was written");
}

/// `Σ x_i y_i` (`dot_f32`) or, without `y`, `Σ x_i²` (`sumsq_f32`), in f64.
fn reduce(d: &Dev, v: Version, l: Launch, x: &[f32], y: Option<&[f32]>) -> f64 {
    let (xm, out) = (d.upload(x), d.upload(&[0.0f64]));
    match y {
        Some(y) => {
            let ym = d.upload(y);
            let args = [i64_arg(x.len()), d.ptr(&xm), d.ptr(&ym), d.ptr(&out)];
            d.run(&v.of("dot_f32"), l, &args).unwrap();
        }
        None => {
            let args = [i64_arg(x.len()), d.ptr(&xm), d.ptr(&out)];
            d.run(&v.of("sumsq_f32"), l, &args).unwrap();
        }
    }
    d.download(&out, 1)[0]
}

#[test]
fn dot_and_norm_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    for n in SIZES {
        let x = data(n, 7, -3.0, 3.0);
        let y = data(n, 8, -3.0, 3.0);
        let (xb, yb) = (cpu.upload(&x).unwrap(), cpu.upload(&y).unwrap());
        let want_dot = cpu.dot(&xb, &yb).unwrap();
        let want_norm = cpu.norm(&xb).unwrap();
        for v in Version::ALL {
            for l in launches(v, n) {
                let got = reduce(&d, v, l, &x, Some(&y));
                // Both sum f64 products of f32 inputs; only the order of the sum differs.
                assert_close(&format!("dot {v:?} {l:?} n={n}"), &[got], &[want_dot], 1e-12, 1e-12);
                let got = reduce(&d, v, l, &x, None).sqrt();
                assert_close(&format!("norm {v:?} {l:?} n={n}"), &[got], &[want_norm], 1e-12, 1e-12);
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    // Lengths are checked by the backend, before any launch.
    let b = EmuLauncher::backend();
    let x = b.upload(&[1.0f32; 10]).unwrap();
    let mut y = b.upload(&[0.0f32; 9]).unwrap();
    assert!(b.axpy(1.0, &x, &mut y).is_err(), "y of 9 elements for x of 10");
    assert!(b.dot(&x, &y).is_err(), "dot of 10 and 9 elements");
    // A block the harness cannot run is a launch error naming the kernel.
    let d = Dev::new();
    let (xm, ym) = (d.upload(&[1.0f32; 10]), d.upload(&[0.0f32; 10]));
    let args = [i64_arg(10), Arg::F32(1.0), d.ptr(&xm), d.ptr(&ym)];
    let r = d.run("axpy_f32_v1", Launch::new(1, 2048), &args);
    assert!(
        matches!(&r, Err(KernelError::Launch { kernel, msg }) if kernel == "axpy_f32_v1" && msg.contains("2048")),
        "{r:?}"
    );
    assert!(matches!(
        d.run("axpy_f32_v3", Launch::new(1, 32), &args),
        Err(KernelError::UnknownKernel(_))
    ));
}
