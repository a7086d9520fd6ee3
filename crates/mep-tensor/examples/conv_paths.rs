//! Times ResNet-20's 3×3 convolutions (batch 128) on the direct, the GEMM and the two Winograd
//! paths, F(2×2, 3×3) and F(4×4, 3×3) (forward and input gradient; the weight gradient on the
//! direct and the GEMM path),
//! in on-CPU time (the sum of every thread's run time from `/proc/self/task/*/schedstat`),
//! which a loaded, shared machine skews far less than wall time. Medians of `--reps`.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p mep-tensor --example conv_paths [-- --reps 15]
//! [--r50 | --r50-1x1] [--layer TEXT] [--path NAME]` (`--r50`: ResNet-50's wider 3×3 layers
//! at 224×224, batch 8, instead; `--r50-1x1`: its 1×1 layers and stem; `--layer`: only the
//! layers whose name contains TEXT; `--path`: only that path, by its `ConvPath` name:
//! Direct, Gemm, Winograd, Winograd4x4).

use mep_tensor::cpu::ConvPath;
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, CpuBackend, Nchw};
use std::time::Instant;

fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[path = "../benches/support/mod.rs"]
mod support;
use support::filled;

/// A square `k×k` convolution of `n` images of `c_in×hw×hw`.
fn conv(n: usize, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    let input = Nchw {
        n,
        c: c_in,
        h: hw,
        w: hw,
    };
    Conv2dGeom::square("conv_paths", input, c_out, k, stride, pad).expect("a valid geometry")
}

/// A 3×3 padding-1 convolution at ResNet-20's batch of 128.
fn geom(c_in: usize, hw: usize, c_out: usize, stride: usize) -> Conv2dGeom {
    conv(128, c_in, hw, c_out, 3, stride, 1)
}

/// Median (on-CPU ms, wall ms) of `reps` runs of `f` after two warm-ups.
fn time(reps: usize, f: &mut dyn FnMut()) -> (f64, f64) {
    f();
    f();
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (c0, t0) = (cpu_ns(), Instant::now());
        f();
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_ns() - c0) as f64 / 1e6);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (med(cpu), med(wall))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(11);
    let b8 = |g: Conv2dGeom| Conv2dGeom { n: 8, ..g };
    // `--r50`: ResNet-50's wider 3×3 layers at 224×224, batch 8 (outside the ≤ 64 rule).
    let r50 = [
        ("r50 128->128 56>28 s2", b8(geom(128, 56, 128, 2))),
        ("r50 128->128 28x28", b8(geom(128, 28, 128, 1))),
        ("r50 256->256 28>14 s2", b8(geom(256, 28, 256, 2))),
        ("r50 256->256 14x14", b8(geom(256, 14, 256, 1))),
        ("r50 512->512 14>7 s2", b8(geom(512, 14, 512, 2))),
        ("r50 512->512 7x7", b8(geom(512, 7, 512, 1))),
        ("r50 64->64 56x56", b8(geom(64, 56, 64, 1))),
    ];
    let layers = [
        ("stem 3->16 32x32", geom(3, 32, 16, 1)),
        ("16->16 32x32", geom(16, 32, 16, 1)),
        ("16->32 32x32 s2", geom(16, 32, 32, 2)),
        ("32->32 16x16", geom(32, 16, 32, 1)),
        ("32->64 16x16 s2", geom(32, 16, 64, 2)),
        ("64->64 8x8", geom(64, 8, 64, 1)),
        ("64->128 8x8 s2", geom(64, 8, 128, 2)),
        ("128->128 8x8", geom(128, 8, 128, 1)),
        // ResNet-50's layer1 3×3 at 224×224, batch 8: inside the "≤ 64 channels" rule too.
        (
            "r50 64->64 56x56",
            Conv2dGeom {
                n: 8,
                ..geom(64, 56, 64, 1)
            },
        ),
    ];
    // `--r50-1x1`: ResNet-50's 1×1 layers at 224×224, batch 8 (GEMM only; for the GEMM path's plan).
    let one = |c_in: usize, hw: usize, c_out: usize, stride: usize| conv(8, c_in, hw, c_out, 1, stride, 0);
    let r50_1x1 = [
        ("1x1 256->64 56x56", one(256, 56, 64, 1)),
        ("1x1 64->256 56x56", one(64, 56, 256, 1)),
        ("1x1 512->128 28x28", one(512, 28, 128, 1)),
        ("1x1 128->512 28x28", one(128, 28, 512, 1)),
        ("1x1 1024->256 14x14", one(1024, 14, 256, 1)),
        ("1x1 256->1024 14x14", one(256, 14, 1024, 1)),
        ("1x1 2048->512 7x7", one(2048, 7, 512, 1)),
        ("1x1 512->2048 7x7", one(512, 7, 2048, 1)),
        ("1x1 1024->2048 14>7 s2", one(1024, 14, 2048, 2)),
        ("stem 7x7 3->64 224>112 s2", conv(8, 3, 224, 64, 7, 2, 3)),
    ];
    let layers: Vec<(&str, Conv2dGeom)> = if args.iter().any(|a| a == "--r50-1x1") {
        r50_1x1.to_vec()
    } else if args.iter().any(|a| a == "--r50") {
        r50.to_vec()
    } else {
        layers.to_vec()
    };
    // `--layer TEXT`: only the layers whose name contains TEXT.
    let only = args.iter().position(|a| a == "--layer").and_then(|i| args.get(i + 1));
    let layers: Vec<(&str, Conv2dGeom)> = layers
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|t| name.contains(t.as_str())))
        .collect();
    println!(
        "isa {:?}, threads {}",
        mep_tensor::cpu::direct::Isa::current(),
        rayon::current_num_threads()
    );
    println!(
        "{:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}   (on-CPU ms; wall ms in brackets)",
        "layer",
        "fwd dir",
        "fwd gemm",
        "fwd wino",
        "fwd w4x4",
        "dx dir",
        "dx gemm",
        "dx wino",
        "dx w4x4",
        "dw dir",
        "dw gemm"
    );
    // `--path NAME`: time only that path (the others' cells read 0).
    let only_path = args.iter().position(|a| a == "--path").and_then(|i| args.get(i + 1));
    for (name, g) in layers {
        let mut cells = Vec::new();
        for op in 0..3 {
            // Winograd has no weight gradient.
            let paths: &[ConvPath] = if op < 2 {
                &[
                    ConvPath::Direct,
                    ConvPath::Gemm,
                    ConvPath::Winograd,
                    ConvPath::Winograd4x4,
                ]
            } else {
                &[ConvPath::Direct, ConvPath::Gemm]
            };
            for &path in paths {
                if only_path.is_some_and(|p| !format!("{path:?}").eq_ignore_ascii_case(p)) {
                    cells.push(format!("{:6.2} [{:5.1}]", 0.0, 0.0));
                    continue;
                }
                let cpu = CpuBackend::new().with_conv_path(path);
                let x = cpu.upload(&filled(g.input().numel(), 1)).unwrap();
                let w = cpu.upload(&filled(g.weight_len(), 2)).unwrap();
                let b = cpu.upload(&filled(g.c_out, 3)).unwrap();
                let mut y = cpu.upload(&filled(g.output().numel(), 4)).unwrap();
                let mut dx = cpu.alloc(g.input().numel()).unwrap();
                let (c, t) = if op == 0 {
                    time(reps, &mut || {
                        cpu.conv2d(&g, &x, &w, Some(&b), None, Act::Relu, &mut y).unwrap()
                    })
                } else if op == 1 {
                    let dy = cpu.upload(&filled(g.output().numel(), 5)).unwrap();
                    time(reps, &mut || cpu.conv2d_bwd_input(&g, &dy, &w, &mut dx).unwrap())
                } else {
                    let dy = cpu.upload(&filled(g.output().numel(), 5)).unwrap();
                    let mut dw = cpu.alloc(g.weight_len()).unwrap();
                    time(reps, &mut || cpu.conv2d_bwd_weight(&g, &x, &dy, &mut dw, None).unwrap())
                };
                cells.push(format!("{c:6.2} [{t:5.1}]"));
            }
        }
        println!("{name:<18} {}", cells.join(" "));
    }
}
