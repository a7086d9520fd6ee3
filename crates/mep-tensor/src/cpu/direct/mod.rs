//! Direct convolutions for small channel counts (issue 17), beside the im2col + GEMM paths
//! of [`conv`](super::conv).
//!
//! ResNet-20's 16- and 32-channel layers spent their time building im2col columns while
//! gemm's micro-kernel idled on 16-row operands. These kernels read the (padded) input
//! directly and keep a block of output channels × output pixels in registers.
//!
//! **Same bits on every machine.** Each output element is one chain of fused multiply-adds
//! in an order fixed by the algorithm (never by the vector width or the thread count), so
//! the AVX-512, AVX2+FMA and portable builds of a kernel give identical results; sums that
//! are split into lanes use a fixed number of lanes (16) on every ISA and reduce them in a
//! fixed tree.
//!
//! [`isa`] picks the instruction set once per process; `MEP_CPU_ISA=avx512|avx2|portable`
//! lowers it (for benchmarks and tests), never raises it above what the CPU has.

pub mod dispatch;
pub mod fwd;
pub mod isa;
pub mod wgrad;

pub use dispatch::{choose, choose_winograd, supports, use_direct, use_winograd, ConvOp, ConvPath};
pub use isa::Isa;

/// Test inputs in [−1, 1) from the workspace's seeded generator, exact in f32.
#[cfg(test)]
pub(crate) fn test_data(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = mep_rng::SplitMix64::new(seed);
    (0..len).map(|_| (rng.unit_f64() * 2.0 - 1.0) as f32).collect()
}
