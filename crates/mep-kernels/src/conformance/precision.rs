//! Conformance of the reduced-precision (tensor-core) convolutions and linear layers: the
//! backend in TF32 or bf16 against the CPU's fp32 result on operands rounded by
//! [`Precision::round_operand`] (so the two multiply bit-identical values), with bf16's
//! result rounding applied to the reference as the rule says (after the bias, before the
//! residual and the activation). Bounds: TF32 may differ only by the order of its f32 sums
//! ([`Tol::sum_of`], plus the worst case of any order in terms of Σ|term|, since a tensor
//! core's accumulation is not IEEE's); bf16 by that and one bf16 ulp of the result (the sums
//! may fall on either side of a rounding boundary), and its results must be bf16 values.
//!
//! Shapes: every conv and transposed-conv shape of the fp32 suite (c_in 1 to 4, strides 1 to
//! 3, odd planes, split depths, every tile) plus ResNet-like channel counts, and linear layers
//! with edges.

use super::conv::{conv_geom, convt_geom, label_t, Extents, CONVS, CONVTS, GRADS};
use super::{Checker, Tol};
use crate::launcher::{Dims, Launcher};
use crate::KernelBackend;
use mep_tensor::precision::{round_bf16, Precision};
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, ConvT2dGeom, CpuBackend, CpuBuf, Result};

/// ResNet-like convolutions (bottleneck 1×1s, 3×3s, a stride-2 projection, 64+ channels).
const RESNETISH: [Extents; 4] = [
    (2, 64, 8, 8, 64, 3, 3, 1, 1),
    (2, 256, 4, 4, 64, 1, 1, 1, 0),
    (2, 64, 8, 8, 128, 1, 1, 2, 0),
    (1, 128, 7, 7, 128, 3, 3, 2, 1),
];

/// `(n, k, m)` of the linear cases: single elements, tile edges, a deep K, a ResNet head, and
/// two whose every leading dimension is a multiple of 4 (linear.cu's cp.async v4 runs all
/// three GEMMs of those; the others run v3 for some).
const LINEARS: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (3, 5, 7),
    (65, 70, 33),
    (2, 512, 10),
    (130, 17, 64),
    (33, 68, 20),
    (70, 132, 64),
];

/// Runs the cases on `b` switched to `p` (TF32 or bf16), then back to fp32; the error lists
/// every failing case.
pub fn run_precision<B: Backend>(b: &B, p: Precision) -> std::result::Result<(), String> {
    if p == Precision::Fp32 {
        return Err("run_precision checks TF32 or bf16; fp32 is run_family's".into());
    }
    b.set_precision(p).map_err(|e| e.to_string())?;
    let mut c = Checker::new(b);
    let geoms: Vec<Conv2dGeom> = CONVS.iter().chain(&RESNETISH).map(|&t| conv_geom(t)).collect();
    for (i, g) in geoms.iter().enumerate() {
        // Every third with a residual and relu, every other with a bias.
        conv_fwd(&mut c, p, g, i % 2 == 0, i % 3 == 0);
    }
    for g in geoms.iter().chain(&GRADS.map(conv_geom)) {
        conv_bwd_input(&mut c, p, g);
        conv_bwd_weight(&mut c, p, g);
    }
    for g in CONVTS.map(convt_geom) {
        conv_transpose(&mut c, p, &g);
    }
    for &(n, k, m) in &LINEARS {
        linear(&mut c, p, n, k, m);
    }
    for t in RESNETISH {
        cpu_at_precision(&mut c, p, &conv_geom(t));
    }
    let out = c.finish(&format!("{p} tensor cores"));
    b.set_precision(Precision::Fp32).map_err(|e| e.to_string())?;
    out
}

/// The tensor-core instructions alone (kernels/mma_probe.cu: one `mma.sync` on one warp, its
/// fragments loaded by the PTX ISA's tables) against a plain product of the rounded
/// operands: small integers, where every order of the sums is exact, so that a misplaced
/// fragment element shows as a wrong value; values in [-1, 1) within the f32 bound of the
/// sums; and operands on rounding ties times I, where the result is the rounded operand bit
/// for bit (TF32 ties away from zero, bf16 to even). On the emulation this tests cuda_emu.h's
/// mma; on a GPU the layouts and conversions mma.cuh assumes.
pub fn mma_probes<L: Launcher>(kb: &KernelBackend<L>) -> std::result::Result<(), String> {
    let mut failures = Vec::new();
    for (name, k, p) in [
        ("mma_tf32_probe_v1", 8, Precision::Tf32),
        ("mma_bf16_probe_v1", 16, Precision::Bf16),
    ] {
        let mut rng = mep_rng::SplitMix64::new(0x5EED_0000 + k as u64);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.unit_f32() * 2.0 - 1.0).collect() };
        let ints = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| (x * 8.0).round()).collect() };
        let (ia, ib, ic) = (ints(rand(16 * k)), ints(rand(k * 8)), ints(rand(128)));
        let (ra, rb, rc) = (rand(16 * k), rand(k * 8), rand(128));
        let tie = match p {
            Precision::Tf32 => [
                1.0 + 2f32.powi(-11),
                -(1.0 + 2f32.powi(-11)),
                1.0 + 3.0 * 2f32.powi(-11),
                3.0e-39,
            ],
            _ => [
                1.0 + 2f32.powi(-8),
                -(1.0 + 3.0 * 2f32.powi(-8)),
                1.0 + 2f32.powi(-8) + 2f32.powi(-20),
                3.0e-39,
            ],
        };
        let ta: Vec<f32> = (0..16 * k).map(|i| tie[i % 4] * (1 + i % 3) as f32).collect();
        let eye: Vec<f32> = (0..k * 8).map(|i| if i / 8 == i % 8 { 1.0 } else { 0.0 }).collect();
        for (case, a, b, c, exact) in [
            ("integers", &ia, &ib, &ic, true),
            ("values in [-1, 1)", &ra, &rb, &rc, false),
            ("rounding ties times I", &ta, &eye, &vec![0.0; 128], true),
        ] {
            let got = match probe(kb, name, a, b, c) {
                Ok(d) => d,
                Err(e) => {
                    failures.push(format!("{name} {case}: {e}"));
                    continue;
                }
            };
            for (i, g) in got.iter().enumerate() {
                let (r, col) = (i / 8, i % 8);
                let (mut want, mut mag) = (c[i] as f64, c[i].abs() as f64);
                for kk in 0..k {
                    let t = p.round_operand(a[r * k + kk]) as f64 * p.round_operand(b[kk * 8 + col]) as f64;
                    want += t;
                    mag += t.abs();
                }
                let bound = if exact {
                    0.0
                } else {
                    (k + 1) as f64 * f32::EPSILON as f64 * mag
                };
                if (*g as f64 - want).abs() > bound || g.is_nan() {
                    failures.push(format!(
                        "{name} {case}: D[{r}][{col}] = {g}, reference {want} (bound {bound:e})"
                    ));
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("mma probes on {}:\n  {}", kb.name(), failures.join("\n  ")))
    }
}

/// D = A[16×k]·B[k×8] + C by probe kernel `name`, one warp.
fn probe<L: Launcher>(kb: &KernelBackend<L>, name: &str, a: &[f32], b: &[f32], c: &[f32]) -> Result<Vec<f32>> {
    let (a, b, d) = (kb.upload(a)?, kb.upload(b)?, kb.upload(c)?);
    kb.launch(name, Dims::x(1), Dims::x(32), &[kb.ptr(&a), kb.ptr(&b), kb.ptr(&d)])?;
    kb.download(&d)
}

/// The bound for a sum of `k` products in precision `p`.
fn tol(p: Precision, k: usize) -> Tol {
    let t = Tol::sum_of(k);
    match p {
        // One bf16 ulp is at most 2^-7 of the value (a little more across a binade).
        Precision::Bf16 => Tol {
            atol: t.atol,
            rtol: t.rtol + 1.01 / 128.0,
        },
        _ => t,
    }
}

impl<B: Backend> Checker<'_, B> {
    /// `n` values in [-1, 1) on the backend; their rounding to `p` and its absolute values on
    /// the CPU (the reference, and the magnitudes of its terms).
    fn rand_rounded(&mut self, p: Precision, n: usize) -> Result<(B::Buf, CpuBuf, CpuBuf)> {
        let v = self.rand(n);
        let r: Vec<f32> = v.iter().map(|&x| p.round_operand(x)).collect();
        let a: Vec<f32> = r.iter().map(|x| x.abs()).collect();
        Ok((self.b.upload(&v)?, self.cpu.upload(&r)?, self.cpu.upload(&a)?))
    }

    /// The CPU's `op` on `len` outputs, once on the rounded operands (the sums) and once on
    /// their absolute values (Σ |term| per output, for the bound).
    fn sums_and_terms(
        &self,
        len: usize,
        signed: (&CpuBuf, &CpuBuf),
        abs: (&CpuBuf, &CpuBuf),
        op: impl Fn(&CpuBackend, &CpuBuf, &CpuBuf, &mut CpuBuf) -> Result<()>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut s, mut t) = (self.cpu.zeros(len)?, self.cpu.zeros(len)?);
        op(&self.cpu, signed.0, signed.1, &mut s)?;
        op(&self.cpu, abs.0, abs.1, &mut t)?;
        Ok((self.cpu.download(&s)?, self.cpu.download(&t)?))
    }

    /// Compares the backend's `got` with the host reference `want`, the relative part of the
    /// bound taken of `mag` (the rounded result before a residual is added, whose ulp is what
    /// bf16 may differ by) or else of `want`, plus the f32 error of any order of the sums,
    /// (k/4 + 4)·ε·Σ|term| with `terms` the Σ|term| of each output (a tensor core adds each
    /// mma's 8 or 16 products into the accumulator and may truncate); bf16 results that are
    /// not bf16 values fail when `bf16_values`.
    #[allow(clippy::too_many_arguments)]
    fn close_prec(
        &mut self,
        p: Precision,
        arg: &str,
        got: &B::Buf,
        want: &[f32],
        mag: Option<&[f32]>,
        terms: &[f32],
        k: usize,
        bf16_values: bool,
    ) -> Result<()> {
        let g = self.b.download(got)?;
        let t = tol(p, k);
        let order = (k / 4 + 4) as f32 * f32::EPSILON;
        let mag = mag.unwrap_or(want);
        let bad: Vec<usize> = (0..g.len().min(want.len()))
            .filter(|&i| {
                let ok = g[i] == want[i]
                    || (g[i].is_nan() && want[i].is_nan())
                    || (g[i] - want[i]).abs() <= t.atol + t.rtol * mag[i].abs() + order * terms[i];
                !ok
            })
            .collect();
        if g.len() != want.len() || !bad.is_empty() {
            let shown: Vec<String> = bad
                .iter()
                .take(4)
                .map(|&i| format!("[{i}] {} vs {}", g[i], want[i]))
                .collect();
            self.fail(format!(
                "{arg}: {} of {} elements differ ({} in the reference): {}",
                bad.len(),
                g.len(),
                want.len(),
                shown.join(", ")
            ));
        }
        if p == Precision::Bf16 && bf16_values {
            if let Some(i) = g
                .iter()
                .position(|&v| round_bf16(v).to_bits() != v.to_bits() && !v.is_nan())
            {
                self.fail(format!("{arg}[{i}] = {} is not a bf16 value", g[i]));
            }
        }
        Ok(())
    }
}

fn label(g: &Conv2dGeom) -> String {
    format!(
        "{}x{}x{}x{}->{} k{}x{} s{} p{}",
        g.n, g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, g.stride, g.pad
    )
}

fn conv_fwd<B: Backend>(c: &mut Checker<B>, p: Precision, g: &Conv2dGeom, bias: bool, residual: bool) {
    let name = format!("{p} conv2d {} bias={bias} residual+relu={residual}", label(g));
    c.case(name, |c| {
        let (x, xc, xa) = c.rand_rounded(p, g.input().numel())?;
        let (w, wc, wa) = c.rand_rounded(p, g.weight_len())?;
        let bv = c.rand(g.c_out);
        let rv = c.rand(g.output().numel());
        let (bb, rb) = (c.b.upload(&bv)?, c.b.upload(&rv)?);
        let act = if residual { Act::Relu } else { Act::Identity };
        let (mut y, _) = c.output(g.output().numel())?;
        c.b.conv2d(g, &x, &w, bias.then_some(&bb), residual.then_some(&rb), act, &mut y)?;
        let (sums, terms) = c.sums_and_terms(g.output().numel(), (&xc, &wc), (&xa, &wa), |cpu, x, w, y| {
            cpu.conv2d(g, x, w, None, None, Act::Identity, y)
        })?;
        let hw = g.out_h() * g.out_w();
        // The conv's result (rounded for bf16), then the residual and relu in f32.
        let conv: Vec<f32> = sums
            .iter()
            .enumerate()
            .map(|(i, &s)| p.round_result(if bias { s + bv[(i / hw) % g.c_out] } else { s }))
            .collect();
        let want: Vec<f32> = if residual {
            conv.iter().zip(&rv).map(|(v, r)| (v + r).max(0.0)).collect()
        } else {
            conv.clone()
        };
        c.close_prec(p, "y", &y, &want, Some(&conv), &terms, g.c_in * g.kh * g.kw, !residual)
    });
}

/// The CPU backend switched to `p` (its own rounding, mep-tensor's cpu module) agrees with
/// the backend under test on a fused convolution (bias, residual, ReLU): the two implement
/// the one rule of `mep_tensor::precision`, so a study in TF32 or bf16 gives the same numbers
/// on either, up to the order of the sums.
fn cpu_at_precision<B: Backend>(c: &mut Checker<B>, p: Precision, g: &Conv2dGeom) {
    c.case(
        format!("{p} conv2d {} bias+residual+relu vs the CPU at {p}", label(g)),
        |c| {
            let (xv, wv) = (c.rand(g.input().numel()), c.rand(g.weight_len()));
            let (bv, rv) = (c.rand(g.c_out), c.rand(g.output().numel()));
            let ((x, xc), (w, wc)) = (c.upload(&xv)?, c.upload(&wv)?);
            let ((bb, bc), (rb, rc)) = (c.upload(&bv)?, c.upload(&rv)?);
            let abs = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| p.round_operand(x).abs()).collect() };
            let (xa, wa) = (c.cpu.upload(&abs(&xv))?, c.cpu.upload(&abs(&wv))?);
            let n = g.output().numel();
            let (_, terms) = c.sums_and_terms(n, (&xa, &wa), (&xa, &wa), |cpu, x, w, y| {
                cpu.conv2d(g, x, w, None, None, Act::Identity, y)
            })?;
            let (mut want, mut mag) = (c.cpu.zeros(n)?, c.cpu.zeros(n)?);
            c.cpu.set_precision(p)?;
            c.cpu.conv2d(g, &xc, &wc, Some(&bc), Some(&rc), Act::Relu, &mut want)?;
            c.cpu.conv2d(g, &xc, &wc, Some(&bc), None, Act::Identity, &mut mag)?;
            c.cpu.set_precision(Precision::Fp32)?;
            let (want, mag) = (c.cpu.download(&want)?, c.cpu.download(&mag)?);
            let (mut y, _) = c.output(n)?;
            c.b.conv2d(g, &x, &w, Some(&bb), Some(&rb), Act::Relu, &mut y)?;
            c.close_prec(p, "y", &y, &want, Some(&mag), &terms, g.c_in * g.kh * g.kw, false)
        },
    );
}

fn conv_bwd_input<B: Backend>(c: &mut Checker<B>, p: Precision, g: &Conv2dGeom) {
    c.case(format!("{p} conv2d_bwd_input {}", label(g)), |c| {
        let (dy, dyc, dya) = c.rand_rounded(p, g.output().numel())?;
        let (w, wc, wa) = c.rand_rounded(p, g.weight_len())?;
        let (mut dx, _) = c.output(g.input().numel())?;
        c.b.conv2d_bwd_input(g, &dy, &w, &mut dx)?;
        let (sums, terms) = c.sums_and_terms(g.input().numel(), (&dyc, &wc), (&dya, &wa), |cpu, dy, w, dx| {
            cpu.conv2d_bwd_input(g, dy, w, dx)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dx", &dx, &want, None, &terms, g.c_out * g.kh * g.kw, true)
    });
}

fn conv_bwd_weight<B: Backend>(c: &mut Checker<B>, p: Precision, g: &Conv2dGeom) {
    c.case(format!("{p} conv2d_bwd_weight {}", label(g)), |c| {
        let (x, xc, xa) = c.rand_rounded(p, g.input().numel())?;
        let (dy, dyc, dya) = c.rand_rounded(p, g.output().numel())?;
        let (mut dw, _) = c.output(g.weight_len())?;
        c.b.conv2d_bwd_weight(g, &x, &dy, &mut dw, None)?;
        let (sums, terms) = c.sums_and_terms(g.weight_len(), (&xc, &dyc), (&xa, &dya), |cpu, x, dy, dw| {
            cpu.conv2d_bwd_weight(g, x, dy, dw, None)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dw", &dw, &want, None, &terms, g.n * g.out_h() * g.out_w(), true)
    });
}

/// A transposed conv's forward (with bias), input and weight gradients: the same kernels on
/// the adjoint geometry.
fn conv_transpose<B: Backend>(c: &mut Checker<B>, p: Precision, g: &ConvT2dGeom) {
    c.case(format!("{p} conv_transpose2d {}", label_t(g)), |c| {
        let (x, xc, xa) = c.rand_rounded(p, g.input().numel())?;
        let (w, wc, wa) = c.rand_rounded(p, g.weight_len())?;
        let (dy, dyc, dya) = c.rand_rounded(p, g.output().numel())?;
        let bv = c.rand(g.c_out);
        let bb = c.b.upload(&bv)?;
        let (mut y, _) = c.output(g.output().numel())?;
        c.b.conv_transpose2d(g, &x, &w, Some(&bb), &mut y)?;
        let (sums, terms) = c.sums_and_terms(g.output().numel(), (&xc, &wc), (&xa, &wa), |cpu, x, w, y| {
            cpu.conv_transpose2d(g, x, w, None, y)
        })?;
        let hw = g.out_h() * g.out_w();
        let want: Vec<f32> = sums
            .iter()
            .enumerate()
            .map(|(i, &s)| p.round_result(s + bv[(i / hw) % g.c_out]))
            .collect();
        c.close_prec(p, "y", &y, &want, None, &terms, g.c_in * g.kh * g.kw, true)?;
        let (mut dx, _) = c.output(g.input().numel())?;
        c.b.conv_transpose2d_bwd_input(g, &dy, &w, &mut dx)?;
        let (sums, terms) = c.sums_and_terms(g.input().numel(), (&dyc, &wc), (&dya, &wa), |cpu, dy, w, dx| {
            cpu.conv_transpose2d_bwd_input(g, dy, w, dx)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dx", &dx, &want, None, &terms, g.c_out * g.kh * g.kw, true)?;
        let (mut dw, _) = c.output(g.weight_len())?;
        c.b.conv_transpose2d_bwd_weight(g, &x, &dy, &mut dw, None)?;
        let (sums, terms) = c.sums_and_terms(g.weight_len(), (&xc, &dyc), (&xa, &dya), |cpu, x, dy, dw| {
            cpu.conv_transpose2d_bwd_weight(g, x, dy, dw, None)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dw", &dw, &want, None, &terms, g.n * g.h * g.w, true)
    });
}

fn linear<B: Backend>(c: &mut Checker<B>, p: Precision, n: usize, k: usize, m: usize) {
    c.case(format!("{p} linear n{n} k{k} m{m}"), |c| {
        let (x, xc, xa) = c.rand_rounded(p, n * k)?;
        let (w, wc, wa) = c.rand_rounded(p, m * k)?;
        let (dy, dyc, dya) = c.rand_rounded(p, n * m)?;
        let bv = c.rand(m);
        let bb = c.b.upload(&bv)?;
        let (mut y, _) = c.output(n * m)?;
        c.b.linear(n, k, m, &x, &w, Some(&bb), &mut y)?;
        let (sums, terms) = c.sums_and_terms(n * m, (&xc, &wc), (&xa, &wa), |cpu, x, w, y| {
            cpu.linear(n, k, m, x, w, None, y)
        })?;
        let want: Vec<f32> = sums
            .iter()
            .enumerate()
            .map(|(i, &s)| p.round_result(s + bv[i % m]))
            .collect();
        c.close_prec(p, "y", &y, &want, None, &terms, k, true)?;
        let (mut dx, _) = c.output(n * k)?;
        c.b.linear_bwd_input(n, k, m, &dy, &w, &mut dx)?;
        let (sums, terms) = c.sums_and_terms(n * k, (&dyc, &wc), (&dya, &wa), |cpu, dy, w, dx| {
            cpu.linear_bwd_input(n, k, m, dy, w, dx)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dx", &dx, &want, None, &terms, m, true)?;
        let (mut dw, _) = c.output(m * k)?;
        c.b.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, None)?;
        let (sums, terms) = c.sums_and_terms(m * k, (&xc, &dyc), (&xa, &dya), |cpu, x, dy, dw| {
            cpu.linear_bwd_weight(n, k, m, x, dy, dw, None)
        })?;
        let want: Vec<f32> = sums.iter().map(|&v| p.round_result(v)).collect();
        c.close_prec(p, "dw", &dw, &want, None, &terms, n, true)
    });
}

#[cfg(test)]
mod tests {
    use super::{conv_geom, CONVS, GRADS, LINEARS, RESNETISH};
    use crate::launcher::Arg;
    use crate::ops::linear::copies_fit;

    /// With the fast kernels the linear cases run each GEMM's cp.async v4 (every leading
    /// dimension a multiple of 4) and its v3 (some not); the simple set runs v3 on all.
    #[test]
    fn the_linear_cases_reach_v3_and_v4_of_every_gemm() {
        let p = Arg::Ptr(256);
        for (base, dims) in [
            (
                "gemm_nt",
                (|n, k, m| (n, m, k)) as fn(usize, usize, usize) -> (usize, usize, usize),
            ),
            ("gemm_nn", |n, k, m| (n, k, m)),
            ("gemm_tn", |n, k, m| (m, k, n)),
        ] {
            let fits: Vec<bool> = LINEARS
                .iter()
                .map(|&(n, k, m)| copies_fit(base, dims(n, k, m), p, p))
                .collect();
            assert!(fits.contains(&true) && fits.contains(&false), "{base}: {fits:?}");
        }
    }
    use crate::ops::conv_region::{plan, Pass, TILES};
    use std::collections::BTreeSet;

    /// The cases run every tensor-core region kernel (the fp32 plan's tiles, each with its
    /// float4 forward), unsplit and split (the sum kernel, which bf16 has its own of), and
    /// regions no tap reaches.
    #[test]
    fn the_cases_reach_every_region_kernel() {
        let mut kernels = BTreeSet::new();
        let (mut split, mut empty) = (false, false);
        let forward: Vec<_> = CONVS.iter().chain(&RESNETISH).map(|&t| conv_geom(t)).collect();
        let grads: Vec<_> = forward.iter().copied().chain(GRADS.map(conv_geom)).collect();
        for (pass, geoms) in [(Pass::Forward, &forward), (Pass::InputGrad, &grads)] {
            for g in geoms {
                for l in plan(g, pass) {
                    match l.tile {
                        Some(t) => {
                            kernels.insert(t.kernel(pass, l.vec));
                            split |= l.splits > 1;
                        }
                        None => empty = true,
                    }
                }
            }
        }
        for t in TILES {
            for k in [t.forward, t.forward_vec, t.input_grad] {
                assert!(kernels.contains(k), "{k} is not reached: {kernels:?}");
            }
        }
        assert!(split && empty);
    }
}
