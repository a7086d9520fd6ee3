//! The direct weight gradient (`cpu::direct::wgrad`) against the im2col + GEMM one
//! (`cpu::conv::conv2d_bwd_weight`) on ResNet-20's 3×3 convolutions at batch 128.
//!
//! Throughput is in FLOP (2 per multiply-add). The group is named after the ISA the direct
//! kernel runs with; lower it with `MEP_CPU_ISA=avx2` (and build with `--no-default-features`
//! so that gemm uses AVX2 too) to compare on an AVX2 machine's terms:
//! `nice cargo bench -p mep-tensor --bench wgrad -- --sample-size 10`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mep_tensor::cpu::conv::conv2d_bwd_weight;
use mep_tensor::cpu::direct::wgrad::conv2d_bwd_weight_direct;
use mep_tensor::cpu::direct::Isa;
use mep_tensor::cpu::gemm::Workspace;
use mep_tensor::{Conv2dGeom, Nchw};
use std::time::Duration;

mod support;
use support::filled;

/// ResNet-20's distinct 3×3 convolutions: each stage's body and the stride-2 first
/// convolution of stages 2 and 3.
fn resnet20(n: usize) -> Vec<(&'static str, Conv2dGeom)> {
    let g = |c_in, hw, c_out, stride| {
        let input = Nchw {
            n,
            c: c_in,
            h: hw,
            w: hw,
        };
        Conv2dGeom::square("wgrad bench", input, c_out, 3, stride, 1).expect("a valid geometry")
    };
    vec![
        ("16-16_32x32_s1", g(16, 32, 16, 1)),
        ("16-32_32x32_s2", g(16, 32, 32, 2)),
        ("32-32_16x16_s1", g(32, 16, 32, 1)),
        ("32-64_16x16_s2", g(32, 16, 64, 2)),
        ("64-64_8x8_s1", g(64, 8, 64, 1)),
    ]
}

fn wgrad(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("wgrad_{:?}", Isa::current()));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let ws = Workspace::default();
    for (name, g) in resnet20(128) {
        let x = filled(g.input().numel(), 1);
        let dy = filled(g.output().numel(), 2);
        let mut dw = vec![0.0f32; g.weight_len()];
        group.throughput(Throughput::Elements(2 * g.macs() as u64));
        group.bench_function(BenchmarkId::new("direct", name), |bench| {
            bench.iter(|| assert!(conv2d_bwd_weight_direct(&ws, &g, &x, &dy, &mut dw)))
        });
        group.bench_function(BenchmarkId::new("gemm", name), |bench| {
            bench.iter(|| conv2d_bwd_weight(&ws, &g, &x, &dy, &mut dw, None))
        });
    }
    group.finish();
}

criterion_group!(benches, wgrad);
criterion_main!(benches);
