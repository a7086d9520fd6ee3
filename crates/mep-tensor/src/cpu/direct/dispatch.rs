//! The dispatch table of the CPU convolutions: direct kernel or im2col + GEMM, per shape.

use crate::cpu::winograd::Tiling;
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
    /// Winograd F(2×2, 3×3) ([`winograd`](crate::cpu::winograd), version 1) for the forward
    /// and input gradient wherever it supports the shape, else the GEMM path.
    Winograd,
    /// Winograd F(4×4, 3×3) (version 2) for the forward and input gradient wherever it
    /// supports the shape, else the GEMM path.
    Winograd4x4,
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
        ConvPath::Gemm | ConvPath::Winograd | ConvPath::Winograd4x4 => false,
    }
}

/// The dispatch table's Winograd column: which version of [`winograd`](crate::cpu::winograd),
/// if any, [`ConvPath::Auto`] runs `op` on `g` with (forward and input gradient; it comes
/// before [`choose`], so it also takes ResNet-50's 64→64 layer from the direct kernels).
///
/// Like [`choose`], it looks at the shape only. F(4×4, 3×3) for 3×3 stride-1 padding-1
/// layers with at least 64 channels on both sides and output planes of at least 14×14:
/// ResNet-50's layer1–3 at 224×224, never ResNet-20 (at most 64 channels on 8×8 planes), nor
/// ResNet-50's 7×7 stage, where both versions' tiles waste a third or more of the plane and
/// the forward loses to GEMM. F(2×2, 3×3) is chosen for the 7×7 stage's input gradient only
/// (below); it also stays as the simpler version, forced by [`ConvPath::Winograd`] and run
/// by the tests.
///
/// Measured 2026-12-06 with `RAYON_NUM_THREADS=2 examples/conv_paths --r50 --layer x --path
/// P --reps 7` for P = Gemm, Winograd, Winograd4x4 in turn, three rounds (batch 8, on-CPU ms
/// over both threads, medians of the rounds; AVX2: built without `avx512`,
/// `MEP_CPU_ISA=avx2`) on 2 cores of an Intel Xeon (model 207) with AVX-512. The last
/// columns are F(4×4)'s time over F(2×2)'s in each round:
///
/// | layer            | ISA     | fwd GEMM | fwd F(2×2) | fwd F(4×4) | dx GEMM | dx F(2×2) | dx F(4×4) | fwd F4/F2 | dx F4/F2 |
/// |------------------|---------|-----:|-----:|-----:|-----:|-----:|-----:|----------------|----------------|
/// | 64→64 56×56      | AVX2    | 53.2 | 42.0 | 29.4 | 52.0 | 37.9 | 28.2 | 0.73 0.80 0.63 | 0.74 0.69 0.74 |
/// |                  | AVX-512 | 30.5 | 30.7 | 25.8 | 30.3 | 27.5 | 24.8 | 0.83 0.84 0.78 | 0.83 0.93 0.81 |
/// | 128→128 28×28    | AVX2    | 45.7 | 33.9 | 22.7 | 45.6 | 32.3 | 20.7 | 0.79 0.79 0.55 | 0.70 0.74 0.59 |
/// |                  | AVX-512 | 27.6 | 20.0 | 18.0 | 27.0 | 22.1 | 15.5 | 0.81 0.91 0.87 | 0.80 0.78 0.61 |
/// | 256→256 14×14    | AVX2    | 46.2 | 33.1 | 27.0 | 45.7 | 30.3 | 23.5 | 0.89 0.92 0.80 | 0.85 0.90 0.74 |
/// |                  | AVX-512 | 27.1 | 20.3 | 20.9 | 27.0 | 18.0 | 17.8 | 0.98 1.03 1.01 | 0.99 1.13 0.92 |
/// | 512→512 7×7 (→ GEMM) | AVX2 | 49.2 | 50.1 | 72.2 | 58.4 | 40.8 | 60.8 | 1.49 1.45 1.44 | 1.51 1.40 1.49 |
/// |                  | AVX-512 | 26.7 | 35.7 | 63.4 | 34.6 | 28.3 | 57.6 | 1.73 1.78 1.87 | 2.03 1.91 2.09 |
///
/// On 14×14 planes F(4×4) computes 16×16 (its tiles waste 23 %) and transforms a weight of
/// 36/9 its size per call; it still wins on AVX2, and on AVX-512 it ties or loses a little
/// (the rounds above: medians 1.01 and 0.99 of F(2×2); a criterion run, `cargo bench -p
/// mep-tensor --bench ops -- winograd_paths`: 1.01 and 1.15, BENCHMARKS.md). It takes them
/// on both, as the table may not look at the ISA and the AVX2 machines are the slower.
/// The table chose F(2×2) before F(4×4) existed (2026-12-05, commit `9e17cd6`, BENCHMARKS.md,
/// "ResNet-50's wide layers on AVX2"); the direct kernels lost to both versions there.
///
/// **The 7×7 stage's input gradient** (and any other of at least 128 channels on planes of
/// 7 to 13 pixels) takes F(2×2, 3×3) (2026-12-06, night, same host and set-up, in a noisier
/// hour than the table above): 512→512 7×7 at batch 8, on-CPU ms of three rounds, GEMM
/// against F(2×2): 38.1 / 33.0, 36.0 / 27.3, 32.6 / 28.1 on AVX2 and 23.1 / 18.3, 18.2 / 18.3,
/// 21.7 / 17.8 on AVX-512; 128→128 8×8 at batch 128 (`conv_paths --layer "128->128 8x8"`,
/// two rounds): 57.9 / 28.0 and 65.8 / 33.3 on AVX2, 34.0 / 21.6 and 41.6 / 22.3 on AVX-512.
/// The forward stays on GEMM on 7×7 planes (32.2 / 37.8, 30.6 / 31.3, 30.3 / 32.8 on AVX2),
/// where the 2×2 tiles compute 8×8 outputs for 7×7. ResNet-20 has at most 64 channels, so
/// the rule never reaches it.
pub fn choose_winograd(op: ConvOp, g: &Conv2dGeom) -> Option<Tiling> {
    if !winograd_runs(op, g) {
        return None;
    }
    let (c, side) = (g.c_in.min(g.c_out), g.out_h().min(g.out_w()));
    if c >= 64 && side >= 14 {
        Some(Tiling::F4x4)
    } else if op == ConvOp::BwdInput && c >= 128 && side >= 7 {
        Some(Tiling::F2x2)
    } else {
        None
    }
}

/// Whether [`winograd`](crate::cpu::winograd) can compute `op` on `g` (it has no weight
/// gradient).
fn winograd_runs(op: ConvOp, g: &Conv2dGeom) -> bool {
    op != ConvOp::BwdWeight && crate::cpu::winograd::supports(g)
}

/// Which version of [`winograd`](crate::cpu::winograd), if any, `path` sends `op` on `g` to.
pub fn use_winograd(path: ConvPath, op: ConvOp, g: &Conv2dGeom) -> Option<Tiling> {
    match path {
        ConvPath::Auto => choose_winograd(op, g),
        ConvPath::Winograd => winograd_runs(op, g).then_some(Tiling::F2x2),
        ConvPath::Winograd4x4 => winograd_runs(op, g).then_some(Tiling::F4x4),
        ConvPath::Direct | ConvPath::Gemm => None,
    }
}
