//! The conformance suite's convolution and linear families on the CPU emulation, with the
//! fast kernels and with the simple v1 ones; the reference is `mep_tensor::CpuBackend`.

use mep_kernels::conformance::{run_family, Family};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;

fn check(family: Family, kernels: Kernels) {
    if let Err(e) = run_family(&EmuLauncher::backend_with(kernels), family) {
        panic!("{family:?} with {kernels:?} kernels:\n{e}");
    }
}

#[test]
fn conv_fast_kernels_match_cpu() {
    check(Family::Conv, Kernels::Fast);
}

#[test]
fn conv_simple_kernels_match_cpu() {
    check(Family::Conv, Kernels::Simple);
}

#[test]
fn linear_fast_kernels_match_cpu() {
    check(Family::Linear, Kernels::Fast);
}

#[test]
fn linear_simple_kernels_match_cpu() {
    check(Family::Linear, Kernels::Simple);
}
