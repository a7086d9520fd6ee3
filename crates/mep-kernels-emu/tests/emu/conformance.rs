//! The backend test suite (mep_kernels::conformance) on the CPU emulation of the CUDA
//! backend, every family with the fast and with the simple kernels: the host code and
//! kernels a GPU runs, compared with `mep_tensor::CpuBackend`.

use mep_kernels::conformance::{run_family, Family};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;

fn check(family: Family, kernels: Kernels) {
    if let Err(e) = run_family(&EmuLauncher::backend_with(kernels), family) {
        panic!("{family:?} with {kernels:?} kernels:\n{e}");
    }
}

macro_rules! families {
    ($($fast:ident, $simple:ident: $family:expr;)*) => {$(
        #[test]
        fn $fast() {
            check($family, Kernels::Fast);
        }
        #[test]
        fn $simple() {
            check($family, Kernels::Simple);
        }
    )*};
}

families! {
    elementwise_fast, elementwise_simple: Family::Elementwise;
    reduce_fast, reduce_simple: Family::Reduce;
    optim_fast, optim_simple: Family::Optim;
    softmax_fast, softmax_simple: Family::Softmax;
    neb_fast, neb_simple: Family::Neb;
    conv_fast, conv_simple: Family::Conv;
    linear_fast, linear_simple: Family::Linear;
    batch_norm_fast, batch_norm_simple: Family::BatchNorm;
    pool_fast, pool_simple: Family::Pool;
    non_finite_fast, non_finite_simple: Family::NonFinite;
}

/// Every family has its pair of tests above.
#[test]
fn every_family_is_run() {
    assert_eq!(Family::ALL.len(), 10);
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
