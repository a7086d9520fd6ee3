//! The emulated tensor-core instructions (kernels/mma.cuh on cuda_emu.h) against a plain
//! matrix product of the operands rounded by mep_tensor::precision: the fragment layouts
//! (a wrong lane or register shows up as a wrong element), the operand rounding bit for bit,
//! and the f32 accumulation onto C.

use mep_kernels::{Arg, Dims, Launcher};
use mep_kernels_emu::EmuLauncher;
use mep_tensor::precision::{round_bf16, round_tf32};
use mep_tensor::prelude::*;

/// D = A[16×k]·B[k×8] + C by kernel `name` of kernels/mma_probe.cu.
fn probe(name: &str, k: usize, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f32> {
    let be = EmuLauncher::backend();
    let (a, b, d) = (be.upload(a).unwrap(), be.upload(b).unwrap(), be.upload(c).unwrap());
    assert_eq!(be.len(&a), 16 * k);
    let l = be.launcher();
    let args = [&a, &b, &d].map(|buf| Arg::Ptr(l.ptr(buf.mem())));
    l.launch(name, Dims::x(1), Dims::x(32), &args).unwrap();
    be.download(&d).unwrap()
}

/// The reference: C + Σ_k round(A)·round(B) in f64, and Σ |terms| for the f32 bound.
fn reference(k: usize, a: &[f32], b: &[f32], c: &[f32], round: fn(f32) -> f32) -> Vec<(f64, f64)> {
    (0..16 * 8)
        .map(|i| {
            let (r, col) = (i / 8, i % 8);
            let mut s = c[i] as f64;
            let mut mag = s.abs();
            for kk in 0..k {
                let p = round(a[r * k + kk]) as f64 * round(b[kk * 8 + col]) as f64;
                s += p;
                mag += p.abs();
            }
            (s, mag)
        })
        .collect()
}

/// Deterministic values in [-1, 1) (a 64-bit LCG).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn check(name: &str, k: usize, round: fn(f32) -> f32) {
    // Small integers: every sum is exact in any order, so each element must match exactly
    // (a misplaced fragment element cannot hide in rounding).
    let ints = |n, seed| {
        values(n, seed)
            .into_iter()
            .map(|v| (v * 8.0).round())
            .collect::<Vec<f32>>()
    };
    let (a, b, c) = (ints(16 * k, 1), ints(k * 8, 2), ints(128, 3));
    let d = probe(name, k, &a, &b, &c);
    for (i, (got, (want, _))) in d.iter().zip(reference(k, &a, &b, &c, round)).enumerate() {
        assert_eq!(*got as f64, want, "{name}: integer D[{}][{}]", i / 8, i % 8);
    }
    // Values that need rounding: the f64 product of the rounded operands, to f32 sums.
    let (a, b, c) = (values(16 * k, 4), values(k * 8, 5), values(128, 6));
    let d = probe(name, k, &a, &b, &c);
    for (i, (got, (want, mag))) in d.iter().zip(reference(k, &a, &b, &c, round)).enumerate() {
        let bound = (k + 1) as f64 * f32::EPSILON as f64 * mag;
        assert!(
            (*got as f64 - want).abs() <= bound,
            "{name}: D[{}][{}] = {got}, reference {want} (bound {bound:e})",
            i / 8,
            i % 8
        );
    }
}

#[test]
fn tf32_mma_is_the_product_of_the_rounded_operands() {
    check("mma_tf32_probe_v1", 8, round_tf32);
}

#[test]
fn bf16_mma_is_the_product_of_the_rounded_operands() {
    check("mma_bf16_probe_v1", 16, round_bf16);
}

/// A·I with operands on rounding ties: D is round(A) exactly, so the conversions' tie rules
/// (TF32 away from zero, bf16 to even) are the CPU's, bit for bit.
#[test]
fn operand_rounding_is_bit_exact_on_ties() {
    for (name, k, round, ties) in [
        (
            "mma_tf32_probe_v1",
            8,
            round_tf32 as fn(f32) -> f32,
            [
                1.0 + 2f32.powi(-11),
                -(1.0 + 2f32.powi(-11)),
                1.0 + 3.0 * 2f32.powi(-11),
                3.0e-39,
            ],
        ),
        (
            "mma_bf16_probe_v1",
            16,
            round_bf16,
            [
                1.0 + 2f32.powi(-8),
                -(1.0 + 3.0 * 2f32.powi(-8)),
                1.0 + 2f32.powi(-8) + 2f32.powi(-20),
                3.0e-39,
            ],
        ),
    ] {
        let a: Vec<f32> = (0..16 * k).map(|i| ties[i % 4] * (1 + i % 3) as f32).collect();
        // B = [I₈; 0]: column j picks A's column j.
        let b: Vec<f32> = (0..k * 8).map(|i| if i / 8 == i % 8 { 1.0 } else { 0.0 }).collect();
        let d = probe(name, k, &a, &b, &[0.0; 128]);
        for r in 0..16 {
            for j in 0..8 {
                let want = round(a[r * k + j]);
                assert_eq!(
                    d[r * 8 + j].to_bits(),
                    want.to_bits(),
                    "{name}: D[{r}][{j}] of {}",
                    a[r * k + j]
                );
            }
        }
    }
}
