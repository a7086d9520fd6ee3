//! The tensor-core kernels (TF32 and bf16) on the CPU emulation: mep_kernels' precision
//! conformance (convolutions and linear layers against the CPU's product of the rounded
//! operands), and the backend's precision switch.

use mep_kernels::conformance::{networks_in_precision, run_precision, NetScale};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;
use mep_tensor::precision::Precision;
use mep_tensor::prelude::*;

fn check(p: Precision, kernels: Kernels) {
    let b = EmuLauncher::backend_with(kernels);
    if let Err(e) = run_precision(&b, p) {
        panic!("{p} with {kernels:?} kernels:\n{e}");
    }
    assert_eq!(b.precision(), Precision::Fp32, "run_precision switches back to fp32");
}

#[test]
fn tf32_conformance() {
    check(Precision::Tf32, Kernels::Fast);
}

#[test]
fn bf16_conformance() {
    check(Precision::Bf16, Kernels::Fast);
}

/// The tensor-core kernels have no simple twin: a simple-kernel backend in TF32 runs them too.
#[test]
fn tf32_conformance_with_the_simple_set() {
    check(Precision::Tf32, Kernels::Simple);
}

#[test]
fn the_precision_is_backend_state_that_every_precision_can_take() {
    let b = EmuLauncher::backend();
    assert_eq!(b.precision(), Precision::Fp32);
    for p in Precision::ALL {
        b.set_precision(p).unwrap();
        assert_eq!(b.precision(), p);
    }
}

/// ResNet-20 and ResNet-50 (narrow, small images) forward, backward to the input and one
/// training step in a reduced precision against fp32 on the same backend.
fn network(p: Precision, bounds: (f64, f64)) {
    let b = EmuLauncher::backend();
    match networks_in_precision(&b, p, NetScale::Small, bounds) {
        Ok(worst) => {
            for (case, r) in worst {
                println!("{p} {case}: largest relative L2 distance from fp32 {r:.2e}");
            }
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(b.precision(), Precision::Fp32);
}

/// TF32 keeps 11 significant bits (relative rounding 2^-11 ≈ 5e-4 per operand). Measured on
/// the emulation: forward values within 1e-3 of fp32; gradients 1.3e-2 (ResNet-50 input) to
/// 1.5e-1 (a ResNet-20 weight after batch norm in training mode), where fp32 itself is only
/// ~1e-4 from the exact gradient: the small networks amplify rounding ~100-fold.
#[test]
fn networks_in_tf32_stay_near_fp32() {
    network(Precision::Tf32, (5e-3, 0.3));
}

/// bf16 keeps 8 (2^-8 ≈ 4e-3 per operand and per result). Measured: forward within 1.4e-2;
/// gradients 1.4e-1 to 3.6e-1.
#[test]
fn networks_in_bf16_stay_near_fp32() {
    network(Precision::Bf16, (5e-2, 0.6));
}
