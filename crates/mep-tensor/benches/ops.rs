//! criterion benches of the CPU backend's operations.
//!
//! Throughput is in FLOP (2 per multiply-add), so criterion's `elem/s` reads as FLOP/s.
//! Groups are named by op; run one with e.g.
//! `RAYON_NUM_THREADS=2 cargo bench -p mep-tensor --bench ops -- conv2d_fwd`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use gemm::Parallelism;
use mep_tensor::cpu::ConvPath;
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, CpuBackend};
use std::time::Duration;

mod support;
use support::filled;

/// A group of 10 samples after 1 s of warm-up, 3 s of measurement: every group here.
fn short_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// The raw GEMM peak that the convolutions are measured against.
fn sgemm(c: &mut Criterion) {
    let mut group = short_group(c, "sgemm");
    // Square, and the shape of a ResNet-50 layer1 3×3 conv on one 56×56 image.
    for (m, n, k) in [(1024, 1024, 1024), (256, 3136, 576)] {
        let (a, b) = (filled(m * k, 1), filled(k * n, 2));
        let mut dst = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{m}x{n}x{k}")), |bench| {
            bench.iter(|| {
                // SAFETY: row-major `m×k`, `k×n`, `m×n` buffers of exactly those sizes.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::Rayon(0),
                    )
                }
            })
        });
    }
    group.finish();
}

#[allow(clippy::too_many_arguments)]
fn geom(n: usize, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    Conv2dGeom {
        n,
        c_in,
        h: hw,
        w: hw,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

/// Representative layers: ResNet-50 at 224×224 batch 8, ResNet-20 at 32×32 batch 128.
fn conv_layers() -> Vec<(&'static str, Conv2dGeom)> {
    vec![
        ("r50_stem_7x7s2", geom(8, 3, 224, 64, 7, 2, 3)),
        ("r50_l1_3x3", geom(8, 64, 56, 64, 3, 1, 1)),
        ("r50_l1_1x1_expand", geom(8, 64, 56, 256, 1, 1, 0)),
        ("r50_l3_3x3", geom(8, 256, 14, 256, 3, 1, 1)),
        ("r50_l2_1x1s2_down", geom(8, 256, 56, 512, 1, 2, 0)),
        ("r20_3x3", geom(128, 16, 32, 16, 3, 1, 1)),
    ]
}

fn flops(g: &Conv2dGeom) -> Throughput {
    Throughput::Elements(2 * g.macs() as u64)
}

fn conv2d_fwd(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let mut group = short_group(c, "conv2d_fwd");
    for (name, g) in conv_layers() {
        let x = cpu.upload(&filled(g.input().numel(), 1)).unwrap();
        let w = cpu.upload(&filled(g.weight_len(), 2)).unwrap();
        let b = cpu.upload(&filled(g.c_out, 3)).unwrap();
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        group.throughput(flops(&g));
        group.bench_function(name, |bench| {
            bench.iter(|| cpu.conv2d(&g, &x, &w, Some(&b), None, Act::Relu, &mut y).unwrap())
        });
    }
    group.finish();
}

fn conv2d_bwd_input(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let mut group = short_group(c, "conv2d_bwd_input");
    for (name, g) in conv_layers() {
        let dy = cpu.upload(&filled(g.output().numel(), 1)).unwrap();
        let w = cpu.upload(&filled(g.weight_len(), 2)).unwrap();
        let mut dx = cpu.alloc(g.input().numel()).unwrap();
        group.throughput(flops(&g));
        group.bench_function(name, |bench| {
            bench.iter(|| cpu.conv2d_bwd_input(&g, &dy, &w, &mut dx).unwrap())
        });
    }
    group.finish();
}

fn conv2d_bwd_weight(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    let mut group = short_group(c, "conv2d_bwd_weight");
    for (name, g) in conv_layers() {
        let x = cpu.upload(&filled(g.input().numel(), 1)).unwrap();
        let dy = cpu.upload(&filled(g.output().numel(), 2)).unwrap();
        let mut dw = cpu.alloc(g.weight_len()).unwrap();
        let mut db = cpu.alloc(g.c_out).unwrap();
        group.throughput(flops(&g));
        group.bench_function(name, |bench| {
            bench.iter(|| cpu.conv2d_bwd_weight(&g, &x, &dy, &mut dw, Some(&mut db)).unwrap())
        });
    }
    group.finish();
}

/// ResNet-20's 3×3 layers at batch 128 (and two wider ones) on each forced path: the
/// numbers behind `cpu::direct::choose`. `<layer>/<op>_<path>`; run with
/// `RAYON_NUM_THREADS=2 cargo bench -p mep-tensor --bench ops -- conv_paths`.
fn conv_paths(c: &mut Criterion) {
    let mut group = short_group(c, "conv_paths");
    let layers = [
        ("r20_stem_3to16_32", geom(128, 3, 32, 16, 3, 1, 1)),
        ("r20_16to16_32", geom(128, 16, 32, 16, 3, 1, 1)),
        ("r20_16to32_32s2", geom(128, 16, 32, 32, 3, 2, 1)),
        ("r20_32to32_16", geom(128, 32, 16, 32, 3, 1, 1)),
        ("r20_32to64_16s2", geom(128, 32, 16, 64, 3, 2, 1)),
        ("r20_64to64_8", geom(128, 64, 8, 64, 3, 1, 1)),
        ("c64to128_8s2", geom(128, 64, 8, 128, 3, 2, 1)),
        ("c128to128_8", geom(128, 128, 8, 128, 3, 1, 1)),
    ];
    let paths = [("direct", ConvPath::Direct), ("gemm", ConvPath::Gemm)];
    for (name, g) in layers {
        forward_and_input_gradient(&mut group, name, &g, &paths, true);
    }
    group.finish();
}

/// `<name>/fwd_<path>` (with ReLU, and a bias if `bias`) and `<name>/dgrad_<path>` of `g` on
/// each forced path.
fn forward_and_input_gradient(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    g: &Conv2dGeom,
    paths: &[(&str, ConvPath)],
    bias: bool,
) {
    group.throughput(flops(g));
    for &(pname, path) in paths {
        let cpu = CpuBackend::new().with_conv_path(path);
        let x = cpu.upload(&filled(g.input().numel(), 1)).unwrap();
        let w = cpu.upload(&filled(g.weight_len(), 2)).unwrap();
        let b = cpu.upload(&filled(g.c_out, 3)).unwrap();
        let b = bias.then_some(&b);
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        group.bench_function(BenchmarkId::new(name, format!("fwd_{pname}")), |bench| {
            bench.iter(|| cpu.conv2d(g, &x, &w, b, None, Act::Relu, &mut y).unwrap())
        });
        let mut dx = cpu.alloc(g.input().numel()).unwrap();
        group.bench_function(BenchmarkId::new(name, format!("dgrad_{pname}")), |bench| {
            bench.iter(|| cpu.conv2d_bwd_input(g, &y, &w, &mut dx).unwrap())
        });
    }
}

/// ResNet-50's wide 3×3 layers at 224×224, batch 8, on GEMM and on both Winograd versions:
/// the numbers behind `cpu::direct::choose_winograd`. `<layer>/<op>_<path>`; run with
/// `RAYON_NUM_THREADS=2 cargo bench -p mep-tensor --bench ops -- winograd_paths`.
fn winograd_paths(c: &mut Criterion) {
    let mut group = short_group(c, "winograd_paths");
    let layers = [
        ("r50_64to64_56", geom(8, 64, 56, 64, 3, 1, 1)),
        ("r50_128to128_28", geom(8, 128, 28, 128, 3, 1, 1)),
        ("r50_256to256_14", geom(8, 256, 14, 256, 3, 1, 1)),
        ("r50_512to512_7", geom(8, 512, 7, 512, 3, 1, 1)),
    ];
    let paths = [
        ("gemm", ConvPath::Gemm),
        ("f2x2", ConvPath::Winograd),
        ("f4x4", ConvPath::Winograd4x4),
    ];
    for (name, g) in layers {
        forward_and_input_gradient(&mut group, name, &g, &paths, false);
    }
    group.finish();
}

criterion_group!(
    benches,
    sgemm,
    conv2d_fwd,
    conv2d_bwd_input,
    conv2d_bwd_weight,
    conv_paths,
    winograd_paths
);
criterion_main!(benches);
