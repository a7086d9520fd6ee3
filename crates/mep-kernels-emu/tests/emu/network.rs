//! Whole networks (mep_kernels::conformance::networks, small scale) on the emulated CUDA
//! backend against the CPU backend, with the fast and with the simple kernels.

use mep_kernels::conformance::{networks, NetScale};
use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;

#[test]
fn networks_with_fast_kernels() {
    if let Err(e) = networks(&EmuLauncher::backend_with(Kernels::Fast), NetScale::Small) {
        panic!("{e}");
    }
}

#[test]
fn networks_with_simple_kernels() {
    if let Err(e) = networks(&EmuLauncher::backend_with(Kernels::Simple), NetScale::Small) {
        panic!("{e}");
    }
}
