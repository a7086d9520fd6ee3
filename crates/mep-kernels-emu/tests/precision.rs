//! The tensor-core kernels (TF32 and bf16) on the CPU emulation: mep_kernels' precision
//! conformance (convolutions and linear layers against the CPU's product of the rounded
//! operands), and the backend's precision switch.

use mep_kernels::conformance::{networks_in_precision, run_precision, NetScale};
use mep_kernels::{Arg, Dims, KernelBackend, Kernels, Launcher};
use mep_kernels_emu::{EmuLauncher, EmuMem};
use mep_tensor::precision::Precision;
use mep_tensor::prelude::*;
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

/// linear.cu's v3 (simple set) and v4 (fast set: cp.async staging, rounding at the fragment
/// loads) multiply the same rounded operands in the same order: the forward and both
/// gradients agree bit for bit, on operands that are not rounded yet.
#[test]
fn linear_v3_and_v4_agree_bit_for_bit() {
    let (n, k, m) = (70, 132, 68);
    let mut rng = mep_rng::SplitMix64::new(0xA5_1C);
    let mut rand = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.unit_f32() * 2.0 - 1.0).collect() };
    let (x, w, bias, dy) = (rand(n * k), rand(m * k), rand(m), rand(n * m));
    for p in [Precision::Tf32, Precision::Bf16] {
        let run = |kernels: Kernels, version: &str| -> Vec<Vec<u32>> {
            let b = KernelBackend::with_kernels(
                Recording {
                    emu: EmuLauncher::new(),
                    launched: Mutex::new(Vec::new()),
                },
                kernels,
            );
            b.set_precision(p).unwrap();
            let [x, w, bias, dy] = [&x, &w, &bias, &dy].map(|v| b.upload(v).unwrap());
            let (mut y, mut dx, mut dw) = (
                b.zeros(n * m).unwrap(),
                b.zeros(n * k).unwrap(),
                b.zeros(m * k).unwrap(),
            );
            b.linear(n, k, m, &x, &w, Some(&bias), &mut y).unwrap();
            b.linear_bwd_input(n, k, m, &dy, &w, &mut dx).unwrap();
            b.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, None).unwrap();
            let want: Vec<String> = ["gemm_nt", "gemm_nn", "gemm_tn"]
                .map(|g| format!("{g}_{p}_{version}"))
                .to_vec();
            let launched = b.launcher().launched.lock().unwrap().clone();
            let gemms: Vec<String> = launched.into_iter().filter(|k| k.starts_with("gemm_")).collect();
            assert_eq!(gemms, want, "{kernels:?} in {p}");
            [y, dx, dw]
                .iter()
                .map(|t| b.download(t).unwrap().iter().map(|v| v.to_bits()).collect())
                .collect()
        };
        let (v3, v4) = (run(Kernels::Simple, "v3"), run(Kernels::Fast, "v4"));
        for (what, (a, b)) in ["y", "dx", "dw"].iter().zip(v3.iter().zip(&v4)) {
            let diff = a.iter().zip(b).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff,
                0,
                "{p} {what}: {diff} of {} values differ between v3 and v4",
                a.len()
            );
        }
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
