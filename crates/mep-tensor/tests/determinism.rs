//! What makes the CPU backend's results the same on every machine.
//!
//! 1. Every GEMM output is the portable formula of `gemm_fixed_order`: the depth cut into equal
//!    blocks of at most 512, per block a chain of fused multiply-adds in depth order from
//!    zero, the blocks added in order. gemm's AVX2 and AVX-512 main kernels compute exactly
//!    that; its dot-product, matrix-vector and depth ≤ 2 kernels and its cache-derived depth
//!    blocking do not, and the backend keeps them out. The formula is written out here with
//!    `f32::mul_add` (correctly rounded everywhere), so this test fails on any machine whose
//!    kernels round otherwise: it covers AVX-512 on machines that have it and AVX2 on the
//!    others (and under `qemu-x86_64 -cpu Haswell`, see `crates/mep/tests/cli/determinism.rs`).
//! 2. The convolutions and the weight gradients give the same bits for 1, 2, 3 and 5 threads.

use mep_tensor::cpu::{conv, gemm, linear};
use mep_tensor::{Conv2dGeom, Nchw};

mod common;
use common::Rng;

/// `Σ_p a[p]·b[p]` as the backend defines it: equal depth blocks of at most 512, each a
/// fused multiply-add chain from zero, the blocks added in order.
fn portable_dot(a: impl Fn(usize) -> f32, b: impl Fn(usize) -> f32, k: usize) -> f32 {
    let blocks = k.div_ceil(512).max(1);
    let depth = k.div_ceil(blocks).max(1);
    let mut out = 0.0f32;
    let mut p0 = 0;
    while p0 < k {
        let mut acc = 0.0f32;
        for p in p0..k.min(p0 + depth) {
            acc = a(p).mul_add(b(p), acc);
        }
        out = if p0 == 0 { acc } else { out + acc };
        p0 += depth;
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The first index where two buffers differ in their bits, for the failure message.
fn first_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
        .map(|(i, (g, w))| (i, *g, *w))
}

/// Shapes that reach each of gemm's paths: its dot-product kernel (few outputs, both
/// operands contiguous along the depth), matrix-vector (one row), depth ≤ 2, the main
/// micro-kernel, and depths that gemm would block by its L1 cache (> 512).
const LINEAR_SHAPES: [(usize, usize, usize); 8] = [
    (2, 64, 3),
    (32, 16, 3),
    (1, 100, 10),
    (5, 2, 7),
    (6, 1, 9),
    (40, 96, 70),
    (70, 1100, 33),
    (3, 777, 120),
];

#[test]
fn linear_forward_is_the_portable_fixed_order_sum() {
    let mut rng = Rng::new(5);
    for (n, k, m) in LINEAR_SHAPES {
        let x = rng.vec(n * k, -1.0, 1.0);
        let w = rng.vec(m * k, -1.0, 1.0);
        let mut y = vec![0.0; n * m];
        linear::linear(n, k, m, &x, &w, None, &mut y);
        let want: Vec<f32> = (0..n * m)
            .map(|o| {
                let (i, j) = (o / m, o % m);
                portable_dot(|p| x[i * k + p], |p| w[j * k + p], k)
            })
            .collect();
        assert!(
            bits(&y) == bits(&want),
            "linear n={n} k={k} m={m}: first difference (index, got, want) {:?}",
            first_difference(&y, &want)
        );
    }
}

#[test]
fn linear_backwards_are_the_portable_fixed_order_sum() {
    let mut rng = Rng::new(6);
    // The weight gradient sums over the batch: 1300 images exercise the depth blocks.
    for (n, k, m) in LINEAR_SHAPES.into_iter().chain([(1300, 20, 10), (600, 3, 2)]) {
        let x = rng.vec(n * k, -1.0, 1.0);
        let w = rng.vec(m * k, -1.0, 1.0);
        let dy = rng.vec(n * m, -1.0, 1.0);
        let mut dx = vec![0.0; n * k];
        linear::linear_bwd_input(n, k, m, &dy, &w, &mut dx);
        let want: Vec<f32> = (0..n * k)
            .map(|o| {
                let (i, j) = (o / k, o % k);
                portable_dot(|p| dy[i * m + p], |p| w[p * k + j], m)
            })
            .collect();
        assert!(
            bits(&dx) == bits(&want),
            "linear dx n={n} k={k} m={m}: {:?}",
            first_difference(&dx, &want)
        );
        let mut dw = vec![0.0; m * k];
        linear::linear_bwd_weight(n, k, m, &x, &dy, &mut dw, None);
        let want: Vec<f32> = (0..m * k)
            .map(|o| {
                let (i, j) = (o / k, o % k);
                portable_dot(|p| dy[p * m + i], |p| x[p * k + j], n)
            })
            .collect();
        assert!(
            bits(&dw) == bits(&want),
            "linear dw n={n} k={k} m={m}: {:?}",
            first_difference(&dw, &want)
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn geom(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    Conv2dGeom::square("determinism", Nchw { n, c: c_in, h, w }, c_out, k, stride, pad).unwrap()
}

/// The three convolution kernels of `g` on seeded data, run in a pool of `threads`.
fn conv_all(g: &Conv2dGeom, threads: usize) -> [Vec<f32>; 3] {
    let mut rng = Rng::new(7);
    let x = rng.vec(g.n * g.c_in * g.h * g.w, -1.0, 1.0);
    let w = rng.vec(g.weight_len(), -1.0, 1.0);
    let ylen = g.n * g.c_out * g.out_h() * g.out_w();
    let dy = rng.vec(ylen, -1.0, 1.0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let ws = gemm::Workspace::default();
        let mut y = vec![0.0; ylen];
        conv::conv2d(&ws, g, &x, &w, None, None, mep_tensor::Act::Relu, &mut y);
        let mut dx = vec![0.0; x.len()];
        conv::conv2d_bwd_input(&ws, g, &dy, &w, &mut dx);
        let mut dw = vec![0.0; w.len()];
        conv::conv2d_bwd_weight(&ws, g, &x, &dy, &mut dw, None);
        [y, dx, dw]
    })
}

#[test]
fn convolutions_are_bit_identical_across_thread_counts() {
    // Batches above and below the thread counts, small planes (batched GEMMs), strided and
    // 1×1 convolutions, and weight gradients both ways round (c_out < and > c_in·k²).
    let geoms = [
        geom(37, 4, 8, 8, 8, 3, 1, 1),
        geom(20, 16, 4, 4, 16, 3, 1, 1),
        geom(9, 8, 9, 9, 4, 3, 2, 1),
        geom(12, 6, 6, 6, 40, 1, 1, 0),
        geom(40, 2, 8, 8, 24, 1, 1, 0),
        geom(3, 3, 16, 16, 4, 3, 1, 1),
        // The direct kernels (3×3, pad 1, rows of ≥ 8 pixels): stride 2 with odd planes, and
        // more images than threads with several channel blocks.
        geom(9, 8, 17, 15, 12, 3, 2, 1),
        geom(5, 16, 16, 16, 40, 3, 1, 1),
    ];
    for g in &geoms {
        let one = conv_all(g, 1);
        for threads in [2, 3, 5] {
            let many = conv_all(g, threads);
            for (what, (a, b)) in ["y", "dx", "dw"].iter().zip(one.iter().zip(&many)) {
                assert!(
                    bits(a) == bits(b),
                    "{what} of {g:?}: 1 thread and {threads} differ at {:?}",
                    first_difference(b, a)
                );
            }
        }
    }
}

/// The f64 GEMM of mep-certify's exact arithmetic goes through the same wrapper: every
/// output is the same fixed-order formula in f64, on shapes that reach each of gemm's paths
/// (a depth over 512 included, which gemm alone would block by the L1 cache it finds).
#[test]
fn the_f64_gemm_is_the_portable_fixed_order_sum() {
    let mut rng = Rng::new(11);
    for &(m, k, n) in &[
        (1, 300, 40),
        (40, 700, 1),
        (3, 2, 50),
        (4, 20, 5),
        (48, 1100, 70),
        (33, 64, 129),
    ] {
        let lhs: Vec<f64> = rng.vec(m * k, -1.0, 1.0).iter().map(|&x| x as f64 * 0.37).collect();
        let rhs: Vec<f64> = rng.vec(k * n, -1.0, 1.0).iter().map(|&x| x as f64 * 1.13).collect();
        let mut dst = vec![0.0f64; m * n];
        // SAFETY: row-major m×k, k×n and m×n buffers of exactly these lengths.
        unsafe {
            gemm::gemm_fixed_order(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                n,
                1,
                false,
                lhs.as_ptr(),
                k,
                1,
                rhs.as_ptr(),
                n,
                1,
                ::gemm::Parallelism::Rayon(0),
            );
        }
        let blocks = k.div_ceil(512).max(1);
        let depth = k.div_ceil(blocks).max(1);
        for i in 0..m {
            for j in 0..n {
                let mut out = 0.0f64;
                let mut p0 = 0;
                while p0 < k {
                    let mut acc = 0.0f64;
                    for p in p0..k.min(p0 + depth) {
                        acc = lhs[i * k + p].mul_add(rhs[p * n + j], acc);
                    }
                    out = if p0 == 0 { acc } else { out + acc };
                    p0 += depth;
                }
                assert_eq!(
                    dst[i * n + j].to_bits(),
                    out.to_bits(),
                    "{m}x{k}x{n} at ({i}, {j}): {} vs {out}",
                    dst[i * n + j]
                );
            }
        }
    }
}
