//! Batch norm and the pooling/resampling ops of the backend test suite
//! (mep_kernels::conformance) on the CPU emulation, with the fast and the simple kernels of
//! kernels/bn.cu and kernels/pool.cu, compared with the CPU backend.

use mep_kernels::conformance::{run_family, Family};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;

fn check(family: Family, kernels: Kernels) {
    if let Err(e) = run_family(&EmuLauncher::backend_with(kernels), family) {
        panic!("{e}");
    }
}

#[test]
fn batch_norm_fast() {
    check(Family::BatchNorm, Kernels::Fast);
}
#[test]
fn batch_norm_simple() {
    check(Family::BatchNorm, Kernels::Simple);
}
#[test]
fn pool_fast() {
    check(Family::Pool, Kernels::Fast);
}
#[test]
fn pool_simple() {
    check(Family::Pool, Kernels::Simple);
}
