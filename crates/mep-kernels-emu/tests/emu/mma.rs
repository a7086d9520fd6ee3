//! The emulated tensor-core instructions (kernels/mma.cuh on cuda_emu.h) against a plain
//! matrix product of the operands rounded by mep_tensor::precision
//! (`mep_kernels::conformance::mma_probes`, which mep-cuda's tests/gpu.rs runs on a GPU): the
//! fragment layouts (on small integers a wrong lane or register shows up as a wrong
//! element), the operand rounding bit for bit on ties, and the f32 accumulation onto C.

use mep_kernels_emu::EmuLauncher;

#[test]
fn the_emulated_mma_is_the_product_of_the_rounded_operands() {
    if let Err(e) = mep_kernels::conformance::mma_probes(&EmuLauncher::backend()) {
        panic!("{e}");
    }
}
