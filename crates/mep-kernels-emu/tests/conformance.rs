//! The backend test suite (mep_kernels::conformance) on the CPU emulation of the CUDA
//! backend, with the fast and the simple kernels: the host code and kernels a GPU runs,
//! compared with the CPU backend. (Convolution, linear, batch norm and pooling have their own
//! files.)

use mep_kernels::conformance::{run_family, Family};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;

fn check(family: Family, kernels: Kernels) {
    if let Err(e) = run_family(&EmuLauncher::backend_with(kernels), family) {
        panic!("{e}");
    }
}

#[test]
fn pointwise_fast() {
    check(Family::Pointwise, Kernels::Fast);
}
#[test]
fn pointwise_simple() {
    check(Family::Pointwise, Kernels::Simple);
}
#[test]
fn optim_fast() {
    check(Family::Optim, Kernels::Fast);
}
#[test]
fn optim_simple() {
    check(Family::Optim, Kernels::Simple);
}
#[test]
fn softmax_fast() {
    check(Family::Softmax, Kernels::Fast);
}
#[test]
fn softmax_simple() {
    check(Family::Softmax, Kernels::Simple);
}
#[test]
fn neb_fast() {
    check(Family::Neb, Kernels::Fast);
}
#[test]
fn neb_simple() {
    check(Family::Neb, Kernels::Simple);
}

/// Every kernel of kernels/*.cu is in the emulation's tables, and nothing else.
#[test]
fn tables_match_sources() {
    let mut from_sources: Vec<String> = mep_kernels::sources::FAMILIES
        .iter()
        .flat_map(|(_, src)| mep_kernels::sources::kernel_names(src))
        .collect();
    from_sources.sort();
    assert_eq!(EmuLauncher::new().kernel_names(), from_sources);
}
