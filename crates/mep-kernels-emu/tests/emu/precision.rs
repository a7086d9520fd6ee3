//! The tensor-core kernels (TF32 and bf16) on the CPU emulation: mep_kernels' precision
//! conformance (convolutions and linear layers against the CPU's product of the rounded
//! operands), and the backend's precision switch.

use mep_kernels::conformance::{networks_in_precision, run_precision, NetScale};
use mep_kernels::{Arg, Dims, KernelBackend, Kernels, Launcher};
use mep_kernels_emu::{EmuLauncher, EmuMem};
use mep_tensor::precision::Precision;
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, Nchw};
use std::sync::Mutex;

fn check(p: Precision, kernels: Kernels) {
    let b = EmuLauncher::backend_with(kernels);
    if let Err(e) = run_precision(&b, p) {
        panic!("{p} with {kernels:?} kernels:\n{e}");
    }
    assert_eq!(b.precision(), Precision::Fp32, "run_precision switches back to fp32");
}

#[test]
fn tf32_conformance() {
    check(Precision::Tf32, Kernels::Fast);
}

#[test]
fn bf16_conformance() {
    check(Precision::Bf16, Kernels::Fast);
}

/// The tensor-core kernels have no simple twin: a simple-kernel backend in TF32 runs them too.
#[test]
fn tf32_conformance_with_the_simple_set() {
    check(Precision::Tf32, Kernels::Simple);
}

/// The simple set runs the register-staged tensor-core kernels that the fast set's cp.async
/// versions replace where they fit (linear.cu v3 beside v4).
#[test]
fn bf16_conformance_with_the_simple_set() {
    check(Precision::Bf16, Kernels::Simple);
}

/// The emulation, remembering the name of every kernel it launches.
struct Recording {
    emu: EmuLauncher,
    launched: Mutex<Vec<String>>,
}

impl Launcher for Recording {
    type Mem = EmuMem;
    fn name(&self) -> &'static str {
        "recording"
    }
    fn alloc(&self, bytes: usize) -> mep_kernels::Result<EmuMem> {
        self.emu.alloc(bytes)
    }
    fn write(&self, m: &mut EmuMem, offset: usize, src: &[u8]) -> mep_kernels::Result<()> {
        self.emu.write(m, offset, src)
    }
    fn read(&self, m: &EmuMem, offset: usize, dst: &mut [u8]) -> mep_kernels::Result<()> {
        self.emu.read(m, offset, dst)
    }
    fn copy(&self, s: &EmuMem, so: usize, d: &mut EmuMem, d_o: usize, bytes: usize) -> mep_kernels::Result<()> {
        self.emu.copy(s, so, d, d_o, bytes)
    }
    fn ptr(&self, m: &EmuMem) -> u64 {
        self.emu.ptr(m)
    }
    fn launch(&self, kernel: &str, grid: Dims, block: Dims, args: &[Arg]) -> mep_kernels::Result<()> {
        self.launched.lock().unwrap().push(kernel.to_string());
        self.emu.launch(kernel, grid, block, args)
    }
    fn synchronize(&self) -> mep_kernels::Result<()> {
        self.emu.synchronize()
    }
}

/// Runs `work` in precision `p` on a recording emulation with `kernels`: the bits of the
/// buffers it returns, and the names of the kernels it launched.
fn recorded(
    kernels: Kernels,
    p: Precision,
    work: impl Fn(&KernelBackend<Recording>) -> Vec<mep_kernels::DevBuf<EmuMem>>,
) -> (Vec<Vec<u32>>, Vec<String>) {
    let recording = Recording {
        emu: EmuLauncher::new(),
        launched: Mutex::new(Vec::new()),
    };
    let b = KernelBackend::with_kernels(recording, kernels);
    b.set_precision(p).unwrap();
    let outs = work(&b)
        .iter()
        .map(|t| b.download(t).unwrap().iter().map(|v| v.to_bits()).collect())
        .collect();
    let launched = b.launcher().launched.lock().unwrap().clone();
    (outs, launched)
}

/// Random values in [-1, 1), not rounded to any precision.
fn rand(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = mep_rng::SplitMix64::new(seed);
    (0..len).map(|_| rng.unit_f32() * 2.0 - 1.0).collect()
}

/// Fails on any output of the simple set's kernels (`v3`) that differs from the fast set's.
fn bit_equal(p: Precision, names: &[&str], old: &[Vec<u32>], new: &[Vec<u32>]) {
    for (what, (a, b)) in names.iter().zip(old.iter().zip(new)) {
        let diff = a.iter().zip(b).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{p} {what}: {diff} of {} values differ", a.len());
    }
}

/// linear.cu's v3 (simple set) and v4 (fast set: cp.async staging, rounding at the fragment
/// loads) multiply the same rounded operands in the same order: the forward and both
/// gradients agree bit for bit, on operands that are not rounded yet.
#[test]
fn linear_v3_and_v4_agree_bit_for_bit() {
    let (n, k, m) = (70, 132, 68);
    let (x, w, bias, dy) = (rand(1, n * k), rand(2, m * k), rand(3, m), rand(4, n * m));
    for p in [Precision::Tf32, Precision::Bf16] {
        let run = |kernels: Kernels, version: &str| -> Vec<Vec<u32>> {
            let (outs, launched) = recorded(kernels, p, |b| {
                let [x, w, bias, dy] = [&x, &w, &bias, &dy].map(|v| b.upload(v).unwrap());
                let (mut y, mut dx, mut dw) = (
                    b.zeros(n * m).unwrap(),
                    b.zeros(n * k).unwrap(),
                    b.zeros(m * k).unwrap(),
                );
                b.linear(n, k, m, &x, &w, Some(&bias), &mut y).unwrap();
                b.linear_bwd_input(n, k, m, &dy, &w, &mut dx).unwrap();
                b.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, None).unwrap();
                vec![y, dx, dw]
            });
            let gemms: Vec<String> = launched.into_iter().filter(|k| k.starts_with("gemm_")).collect();
            let want: Vec<String> = ["gemm_nt", "gemm_nn", "gemm_tn"]
                .map(|g| format!("{g}_{p}_{version}"))
                .to_vec();
            assert_eq!(gemms, want, "{kernels:?} in {p}");
            outs
        };
        bit_equal(
            p,
            &["y", "dx", "dw"],
            &run(Kernels::Simple, "v3"),
            &run(Kernels::Fast, "v4"),
        );
    }
}

/// conv_region.cu's v4 (simple set) and v5 (fast set: cp.async staging) agree bit for bit on
/// the forward (bias, residual, ReLU) and the input gradient, through every kind of region
/// kernel (fwd4 on the interior of a 3×3 conv with K % 4 = 0, fwd on its borders and on a
/// conv with K odd, dgrad), and so do conv_wgrad.cu's v5 and v6 on the weight gradient.
#[test]
fn conv_v4_and_v5_region_and_v5_and_v6_wgrad_agree_bit_for_bit() {
    let geoms = [((2, 16, 9, 9), 24, 1), ((1, 7, 8, 8), 70, 2)].map(|((n, c, h, w), c_out, stride)| {
        Conv2dGeom::square("conv test", Nchw { n, c, h, w }, c_out, 3, stride, 1).unwrap()
    });
    for p in [Precision::Tf32, Precision::Bf16] {
        let run = |kernels: Kernels, version: &str, wgrad: &str| -> Vec<Vec<u32>> {
            let (outs, launched) = recorded(kernels, p, |b| {
                let mut outs = Vec::new();
                for (i, g) in geoms.iter().enumerate() {
                    let seed = 10 * i as u64;
                    let [x, w, bias, res, dy] = [
                        rand(seed, g.input().numel()),
                        rand(seed + 1, g.weight_len()),
                        rand(seed + 2, g.c_out),
                        rand(seed + 3, g.output().numel()),
                        rand(seed + 4, g.output().numel()),
                    ]
                    .map(|v| b.upload(&v).unwrap());
                    let (mut y, mut dx) = (
                        b.zeros(g.output().numel()).unwrap(),
                        b.zeros(g.input().numel()).unwrap(),
                    );
                    let mut dw = b.zeros(g.weight_len()).unwrap();
                    b.conv2d(g, &x, &w, Some(&bias), Some(&res), Act::Relu, &mut y).unwrap();
                    b.conv2d_bwd_input(g, &dy, &w, &mut dx).unwrap();
                    b.conv2d_bwd_weight(g, &x, &dy, &mut dw, None).unwrap();
                    outs.extend([y, dx, dw]);
                }
                outs
            });
            let wgrads: Vec<&String> = launched
                .iter()
                .filter(|k| k.starts_with("conv2d_bwd_weight") && !k.contains("_sum_") && !k.contains("_round_"))
                .collect();
            assert!(!wgrads.is_empty(), "{kernels:?} in {p}: no weight gradient kernel");
            let suffix = format!("_{p}_{wgrad}");
            assert!(
                wgrads.iter().all(|k| k.ends_with(&suffix)),
                "{kernels:?} in {p}: {wgrads:?}"
            );
            let region: Vec<String> = launched
                .into_iter()
                .filter(|k| k.starts_with("conv2d_region_") && !k.starts_with("conv2d_region_sum"))
                .collect();
            for kind in ["fwd_", "fwd4_", "dgrad_"] {
                assert!(
                    region.iter().any(|k| k.contains(kind)),
                    "{kernels:?} in {p}: no {kind}: {region:?}"
                );
            }
            let suffix = format!("_{p}_{version}");
            assert!(
                region.iter().all(|k| k.ends_with(&suffix)),
                "{kernels:?} in {p}: {region:?}"
            );
            outs
        };
        let (old, new) = (run(Kernels::Simple, "v4", "v5"), run(Kernels::Fast, "v5", "v6"));
        bit_equal(p, &["y", "dx", "dw", "y", "dx", "dw"], &old, &new);
    }
}

#[test]
fn the_precision_is_backend_state_that_every_precision_can_take() {
    let b = EmuLauncher::backend();
    assert_eq!(b.precision(), Precision::Fp32);
    for p in Precision::ALL {
        b.set_precision(p).unwrap();
        assert_eq!(b.precision(), p);
    }
}

/// ResNet-20 and ResNet-50 (narrow, small images) forward, backward to the input and one
/// training step in a reduced precision against fp32 on the same backend.
fn network(p: Precision, bounds: (f64, f64)) {
    let b = EmuLauncher::backend();
    match networks_in_precision(&b, p, NetScale::Small, bounds) {
        Ok(worst) => {
            for (case, r) in worst {
                println!("{p} {case}: largest relative L2 distance from fp32 {r:.2e}");
            }
        }
        Err(e) => panic!("{e}"),
    }
    assert_eq!(b.precision(), Precision::Fp32);
}

/// TF32 keeps 11 significant bits (relative rounding 2^-11 ≈ 5e-4 per operand). Measured on
/// the emulation: forward values within 1e-3 of fp32; gradients 1.3e-2 (ResNet-50 input) to
/// 1.5e-1 (a ResNet-20 weight after batch norm in training mode), where fp32 itself is only
/// ~1e-4 from the exact gradient: the small networks amplify rounding ~100-fold.
#[test]
fn networks_in_tf32_stay_near_fp32() {
    network(Precision::Tf32, (5e-3, 0.3));
}

/// bf16 keeps 8 (2^-8 ≈ 4e-3 per operand and per result). Measured: forward within 1.4e-2;
/// gradients 1.4e-1 to 3.6e-1.
#[test]
fn networks_in_bf16_stay_near_fp32() {
    network(Precision::Bf16, (5e-2, 0.6));
}
