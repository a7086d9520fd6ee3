//! The dispatch table of the CPU convolutions: direct kernel or im2col + GEMM, per shape.

use crate::shape::Conv2dGeom;

/// Which implementation a CPU convolution runs on; see [`choose`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvPath {
    /// [`choose`] decides from the layer's shape (the same on every machine).
    #[default]
    Auto,
    /// The direct kernels ([`fwd`](super::fwd), [`wgrad`](super::wgrad)) wherever they support
    /// the shape, else the GEMM path.
    Direct,
    /// im2col (or its variants) and GEMM, as before the direct kernels existed.
    Gemm,
    /// Winograd F(2×2, 3×3) ([`winograd`](crate::cpu::winograd)) for the forward and input
    /// gradient wherever it supports the shape, else the GEMM path.
    Winograd,
}

/// The convolution operations that have a direct kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvOp {
    /// `y = act(conv2d(x, w) + bias + residual)` ([`fwd`](super::fwd)).
    Forward,
    /// `dx` from `dy` and `w` ([`fwd`](super::fwd)).
    BwdInput,
    /// `dW` from `x` and `dy` ([`wgrad`](super::wgrad)).
    BwdWeight,
}

/// Whether the direct kernels can run `op` on `g`. Forward and input gradient: 3×3, padding
/// 1, stride 1 or 2, no empty dimension; weight gradient: [`wgrad::supports`](super::wgrad::supports).
pub fn supports(op: ConvOp, g: &Conv2dGeom) -> bool {
    if op == ConvOp::BwdWeight {
        return super::wgrad::supports(g);
    }
    let nonempty = [g.n, g.c_in, g.c_out, g.h, g.w].iter().all(|&d| d > 0);
    g.kh == 3 && g.kw == 3 && g.pad == 1 && (g.stride == 1 || g.stride == 2) && nonempty
}

/// The dispatch table: whether [`ConvPath::Auto`] runs `op` on `g` directly.
///
/// It depends on the shape only, never on the [`Isa`](super::Isa): the two paths round differently, so
/// an ISA-dependent choice would give AVX2 and AVX-512 machines different bits.
///
/// **Forward and input gradient**: direct for supported shapes where one side has at most 64
/// channels and output rows are at least 8 pixels wide (one lane group); GEMM otherwise. Narrower outputs (4×4 planes) waste
/// half of every tile while the GEMM path batches several images per GEMM there, and lost
/// (64→128 8×8 s2 below). Both sides above 64 stay on GEMM: there gemm runs near the FMA
/// peak, and on ResNet-50's wider 3×3 layers at 224×224 the direct kernels tie or lose on
/// AVX2 (the second table), although 128→128 8×8 at batch 128 won.
///
/// Measured 2026-12-04 with `examples/conv_paths.rs` (`RAYON_NUM_THREADS=2`, batch 128
/// unless noted, median of 11 runs) on an AMD EPYC with AVX-512 shared with other jobs, in
/// on-CPU ms summed over the threads (the machine's load swung wall times by up to 2×). The
/// AVX2 rows are the same CPU with `MEP_CPU_ISA=avx2` and mep-tensor built with
/// `--no-default-features`, so that gemm runs its AVX2 kernels too:
///
/// | layer                          | ISA     | fwd direct | fwd GEMM | dx direct | dx GEMM |
/// |--------------------------------|---------|-----------:|---------:|----------:|--------:|
/// | stem 3→16 32×32                | AVX-512 |  2.2 |  2.7 |  2.4 |  3.7 |
/// |                                | AVX2    |  2.2 |  3.2 |  2.4 |  4.6 |
/// | 16→16 32×32                    | AVX-512 |  7.6 |  9.9 |  7.1 |  9.4 |
/// |                                | AVX2    |  7.7 | 11.1 |  7.5 | 10.8 |
/// | 16→32 32×32 s2                 | AVX-512 |  4.8 |  7.5 |  4.4 |  8.7 |
/// |                                | AVX2    |  5.4 |  7.7 |  5.3 |  9.1 |
/// | 32→32 16×16                    | AVX-512 |  6.4 |  8.4 |  6.1 |  8.1 |
/// |                                | AVX2    |  7.0 |  9.5 |  7.0 |  9.1 |
/// | 32→64 16×16 s2                 | AVX-512 |  3.8 |  6.2 |  3.6 |  6.4 |
/// |                                | AVX2    |  4.7 |  6.3 |  4.3 |  6.7 |
/// | 64→64 8×8                      | AVX-512 |  6.0 |  9.0 |  5.8 |  9.0 |
/// |                                | AVX2    |  7.4 |  9.4 |  7.4 |  9.3 |
/// | 64→128 8×8 s2 (→ GEMM)         | AVX-512 |  6.1 |  3.9 |  6.7 |  4.2 |
/// |                                | AVX2    |  8.4 |  4.3 |  7.4 |  4.9 |
/// | 128→128 8×8 (→ GEMM)           | AVX-512 | 22.5 | 31.4 | 22.7 | 31.2 |
/// |                                | AVX2    | 28.7 | 32.6 | 28.6 | 32.6 |
/// | ResNet-50 64→64 56×56, batch 8 | AVX-512 | 17.9 | 22.4 | 17.7 | 23.7 |
/// |                                | AVX2    | 20.9 | 24.2 | 21.0 | 23.8 |
///
/// ResNet-50's wider 3×3 layers at 224×224, batch 8 (`conv_paths --r50 --reps 5`, same
/// set-up), all left on GEMM:
///
/// | layer                 | ISA     | fwd direct | fwd GEMM | dx direct | dx GEMM |
/// |-----------------------|---------|-----------:|---------:|----------:|--------:|
/// | 128→128 56×56 s2      | AVX-512 | 23.5 | 23.6 | 23.2 | 26.8 |
/// |                       | AVX2    | 28.2 | 23.4 | 29.2 | 26.8 |
/// | 128→128 28×28         | AVX-512 | 20.1 | 23.8 | 20.4 | 23.9 |
/// |                       | AVX2    | 21.6 | 21.7 | 21.5 | 21.4 |
/// | 256→256 28×28 s2      | AVX-512 | 22.5 | 23.8 | 25.1 | 23.8 |
/// |                       | AVX2    | 24.7 | 22.5 | 29.4 | 29.6 |
/// | 256→256 14×14         | AVX-512 | 20.1 | 21.5 | 19.8 | 20.8 |
/// |                       | AVX2    | 22.6 | 23.0 | 23.1 | 21.7 |
/// | 512→512 14×14 s2      | AVX-512 | 23.9 | 24.9 | 45.4 | 24.8 |
/// |                       | AVX2    | 34.7 | 25.6 | 71.7 | 38.6 |
///
/// The whole ResNet-20 (`resnet_time --row "resnet20 32x32 b128" --threads 1 --iters 10`,
/// medians of two runs; the weight gradients still on GEMM) went from 164–173 to 133–136 ms
/// forward and 341–353 to 280–286 ms forward+backward on AVX-512, and from 184 to 137–140 and
/// 380–386 to 277–287 ms on AVX2 (`--threads 2` gave the same, the machine's other jobs
/// leaving about one core).
///
/// **Weight gradient**: direct for supported shapes (both sides at most 64 channels) whose
/// output plane has at least 16×16 pixels; GEMM otherwise. On 8×8 outputs the direct kernel
/// wins on AVX-512 but loses on AVX2, and the table may not depend on the ISA. Criterion
/// medians, ms, batch 128, one thread (`RAYON_NUM_THREADS=1 cargo bench -p mep-tensor --bench
/// wgrad`; AVX2 = `MEP_CPU_ISA=avx2` with `--no-default-features`, same CPU):
///
/// | layer          | AVX-512 direct | AVX-512 GEMM | AVX2 direct | AVX2 GEMM |
/// |----------------|---------------:|-------------:|------------:|----------:|
/// | 16→16 32×32    |  8.45 | 12.32 |  9.32 | 12.09 |
/// | 16→32 32×32 s2 |  5.36 |  7.61 |  5.96 |  7.84 |
/// | 32→32 16×16    |  8.34 | 10.86 |  9.33 | 10.55 |
/// | 32→64 16×16 s2 (→ GEMM) |  5.24 |  6.10 |  6.66 |  6.43 |
/// | 64→64 8×8 (→ GEMM)      |  8.68 | 10.57 | 11.10 | 10.72 |
///
/// Since `im2col` writes short rows without per-segment calls (2026-12-06, BENCHMARKS.md,
/// "The weight gradient's copies"), the GEMM path's 8×8 weight gradient takes 0.71 (AVX2)
/// and 0.54 (AVX-512) of its time before, well under the direct kernel's, and it ties or beats
/// the direct kernel on 32→32 16×16 too; that layer stays direct, as moving it would change
/// training's bits (and so the shipped weights) for about 2 % of the AVX2 step.
pub fn choose(op: ConvOp, g: &Conv2dGeom) -> bool {
    match op {
        ConvOp::Forward | ConvOp::BwdInput => supports(op, g) && g.c_in.min(g.c_out) <= 64 && g.out_w() >= 8,
        ConvOp::BwdWeight => supports(op, g) && g.out_h() >= 16 && g.out_w() >= 16,
    }
}

/// Whether `path` sends `op` on `g` to the direct kernels.
pub fn use_direct(path: ConvPath, op: ConvOp, g: &Conv2dGeom) -> bool {
    match path {
        ConvPath::Auto => choose(op, g),
        ConvPath::Direct => supports(op, g),
        ConvPath::Gemm | ConvPath::Winograd => false,
    }
}

/// The dispatch table's Winograd column: whether [`ConvPath::Auto`] runs `op` on `g` with
/// F(2×2, 3×3) (forward and input gradient; it comes before [`choose`], so it also takes
/// ResNet-50's 64→64 layer from the direct kernels).
///
/// Like [`choose`], it looks at the shape only. Winograd for 3×3 stride-1 padding-1 layers
/// with at least 64 channels on both sides and output planes of at least 14×14: ResNet-50's
/// layer1–3 at 224×224, never ResNet-20 (at most 64 channels on 8×8 planes), nor ResNet-50's
/// 7×7 stage, where the 4×4 tiles cover 8×8 (a third wasted) and it tied or lost.
///
/// Measured 2026-12-05 with `RAYON_NUM_THREADS=2 examples/conv_paths --r50 --reps 5` (batch
/// 8, median on-CPU ms over both threads; AVX2: built without `avx512`, `MEP_CPU_ISA=avx2`)
/// on 2 cores of an Intel Xeon with AVX-512, at commit `9e17cd6` (BENCHMARKS.md, "ResNet-50's
/// wide layers on AVX2"); before, 64→64 ran direct and the wider layers GEMM:
///
/// | layer            | ISA     | fwd direct | fwd GEMM | fwd Winograd | dx direct | dx GEMM | dx Winograd |
/// |------------------|---------|-----------:|---------:|-------------:|----------:|--------:|------------:|
/// | 64→64 56×56      | AVX-512 | 18.28 | 17.70 | 16.36 | 18.04 | 17.52 | 15.66 |
/// |                  | AVX2    | 26.67 | 28.38 | 21.04 | 26.10 | 28.31 | 20.93 |
/// | 128→128 28×28    | AVX-512 | 18.43 | 16.05 | 11.24 | 17.92 | 15.50 | 11.57 |
/// |                  | AVX2    | 29.42 | 26.77 | 16.99 | 29.34 | 27.02 | 16.35 |
/// | 256→256 14×14    | AVX-512 | 18.22 | 14.59 | 11.87 | 18.81 | 15.44 | 12.22 |
/// |                  | AVX2    | 29.19 | 27.39 | 16.43 | 29.34 | 27.76 | 16.98 |
/// | 512→512 7×7 (→ GEMM) | AVX-512 | 23.34 | 14.77 | 20.50 | 24.28 | 16.81 | 22.70 |
/// |                  | AVX2    | 36.78 | 24.67 | 27.60 | 38.54 | 27.67 | 29.49 |
pub fn choose_winograd(op: ConvOp, g: &Conv2dGeom) -> bool {
    winograd_runs(op, g) && g.c_in.min(g.c_out) >= 64 && g.out_h().min(g.out_w()) >= 14
}

/// Whether [`winograd`](crate::cpu::winograd) can compute `op` on `g` (it has no weight
/// gradient).
fn winograd_runs(op: ConvOp, g: &Conv2dGeom) -> bool {
    op != ConvOp::BwdWeight && crate::cpu::winograd::supports(g)
}

/// Whether `path` sends `op` on `g` to [`winograd`](crate::cpu::winograd).
pub fn use_winograd(path: ConvPath, op: ConvOp, g: &Conv2dGeom) -> bool {
    match path {
        ConvPath::Auto => choose_winograd(op, g),
        ConvPath::Winograd => winograd_runs(op, g),
        ConvPath::Direct | ConvPath::Gemm => false,
    }
}
