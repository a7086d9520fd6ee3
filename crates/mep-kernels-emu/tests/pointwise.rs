//! elementwise.cu and reduce.cu through the CPU emulation, against `mep_tensor::CpuBackend`.
//! The reference numbers are the CPU backend's outputs on the same inputs.

mod common;

use common::{assert_close, data, launches, SIZES};
use mep_kernels_emu::{self as emu, Activation, EmuError, Launch, Version};
use mep_tensor::prelude::*;
use mep_tensor::{Act, CpuBackend};

const ACTS: [(Act, Activation); 4] = [
    (Act::Identity, Activation::Identity),
    (Act::Relu, Activation::Relu),
    (Act::LeakyRelu(0.1), Activation::LeakyRelu(0.1)),
    (Act::Sigmoid, Activation::Sigmoid),
];

/// Same expression, correctly rounded operations: agreement to an ulp or two (expf differs).
const ATOL: f64 = 1e-7;
const RTOL: f64 = 1e-6;

#[test]
fn activations_forward_and_backward_match_cpu() {
    let cpu = CpuBackend::new();
    for n in SIZES {
        let mut x = data(n, 1, -4.0, 4.0);
        x[0] = 0.0; // the kink of relu and leaky relu
        let dy = data(n, 2, -1.0, 1.0);
        for (act, code) in ACTS {
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
                    let mut y = vec![f32::NAN; n];
                    emu::act_fwd(v, l, code, &x, &mut y).unwrap();
                    assert_close(&what, &y, &want_y, ATOL, RTOL);
                    let mut dx = vec![f32::NAN; n];
                    emu::act_bwd(v, l, code, &want_y, &dy, &mut dx).unwrap();
                    assert_close(&format!("act_bwd {act:?} {v:?} {l:?} n={n}"), &dx, &want_dx, ATOL, RTOL);
                }
            }
        }
    }
}

#[test]
fn relu_propagates_nan_like_the_cpu() {
    let x = [f32::NAN, -1.0, 2.0];
    for v in Version::ALL {
        let mut y = [0.0f32; 3];
        emu::act_fwd(v, Launch::new(1, 32), Activation::Relu, &x, &mut y).unwrap();
        assert!(y[0].is_nan(), "{v:?}: relu(NaN) = {}", y[0]);
        assert_eq!(&y[1..], &[0.0, 2.0]);
    }
}

#[test]
fn add_axpy_scale_fill_match_cpu() {
    let cpu = CpuBackend::new();
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
        for v in Version::ALL {
            for l in launches(v, n) {
                let tag = format!("{v:?} {l:?} n={n}");
                let mut y = vec![f32::NAN; n];
                emu::add(v, l, &a, &b, &mut y).unwrap();
                assert_close(&format!("add {tag}"), &y, &want_add, 0.0, 0.0);
                let mut y = a.clone();
                emu::add_assign(v, l, &mut y, &b).unwrap();
                assert_close(&format!("add_assign {tag}"), &y, &want_add_assign, 0.0, 0.0);
                let mut y = b.clone();
                emu::axpy(v, l, -0.7, &a, &mut y).unwrap();
                assert_close(&format!("axpy {tag}"), &y, &want_axpy, ATOL, RTOL);
                let mut y = a.clone();
                emu::scale(v, l, 1.3, &mut y).unwrap();
                assert_close(&format!("scale {tag}"), &y, &want_scale, 0.0, 0.0);
                let mut y = vec![f32::NAN; n];
                emu::fill(v, l, -2.5, &mut y).unwrap();
                assert_close(&format!("fill {tag}"), &y, &want_fill, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn v2_takes_the_scalar_path_on_misaligned_buffers() {
    // Slices starting one element in are not 16-byte aligned: float4 must not be used.
    let cpu = CpuBackend::new();
    let n = 1001;
    let a = data(n + 1, 5, -1.0, 1.0);
    let b = data(n + 1, 6, -1.0, 1.0);
    let mut want = cpu.upload(&b[1..]).unwrap();
    cpu.axpy(2.0, &cpu.upload(&a[1..]).unwrap(), &mut want).unwrap();
    let want = cpu.download(&want).unwrap();
    let mut y = b.clone();
    emu::axpy(Version::V2, Launch::new(3, 64), 2.0, &a[1..], &mut y[1..]).unwrap();
    assert_close("axpy v2 misaligned", &y[1..], &want, ATOL, RTOL);
    assert_eq!(y[0], b[0], "element before the slice was written");
}

#[test]
fn dot_and_norm_match_cpu() {
    let cpu = CpuBackend::new();
    for n in SIZES {
        let x = data(n, 7, -3.0, 3.0);
        let y = data(n, 8, -3.0, 3.0);
        let (xb, yb) = (cpu.upload(&x).unwrap(), cpu.upload(&y).unwrap());
        let want_dot = cpu.dot(&xb, &yb).unwrap();
        let want_norm = cpu.norm(&xb).unwrap();
        for v in Version::ALL {
            for l in launches(v, n) {
                let got = emu::dot(v, l, &x, &y).unwrap();
                // Both sum f64 products of f32 inputs; only the order of the sum differs.
                assert_close(&format!("dot {v:?} {l:?} n={n}"), &[got], &[want_dot], 1e-12, 1e-12);
                let got = emu::norm(v, l, &x).unwrap();
                assert_close(&format!("norm {v:?} {l:?} n={n}"), &[got], &[want_norm], 1e-12, 1e-12);
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    let x = [1.0f32; 10];
    let mut y = [0.0f32; 9];
    assert!(matches!(
        emu::axpy(Version::V1, Launch::cover(10, 32), 1.0, &x, &mut y),
        Err(EmuError::Len {
            arg: "y",
            expected: 10,
            found: 9,
            ..
        })
    ));
    let mut y = [0.0f32; 10];
    assert!(matches!(
        emu::axpy(Version::V1, Launch::new(1, 2048), 1.0, &x, &mut y),
        Err(EmuError::Launch {
            grid: 1,
            block: 2048,
            ..
        })
    ));
    assert!(matches!(
        emu::dot(Version::V2, Launch::new(1, 48), &x, &x),
        Err(EmuError::Invalid { .. })
    ));
}
