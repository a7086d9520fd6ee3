//! Conformance cases of the pointwise, reduction, optimiser, softmax and NEB operations.

use super::{Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{Act, AdamParams, Lerp, NebForceParams, SgdParams};

/// Sizes around the block (256) and float4 boundaries, and several grid-stride rounds.
const SIZES: [usize; 6] = [1, 7, 255, 257, 1031, 9001];

pub(crate) fn pointwise<B: Backend>(c: &mut Checker<B>) {
    let acts = [Act::Identity, Act::Relu, Act::LeakyRelu(0.3), Act::Sigmoid];
    for n in SIZES {
        for act in acts {
            c.case(format!("activation {act:?} n={n}"), |c| {
                let x = c.rand(n);
                let (xb, xc) = c.upload(&x)?;
                let (mut yb, mut yc) = c.output(n)?;
                c.b.activation(act, &xb, &mut yb)?;
                c.cpu.activation(act, &xc, &mut yc)?;
                c.close("y", &yb, &yc, Tol::POINTWISE)?;
                let dy = c.rand(n);
                let (dyb, dyc) = c.upload(&dy)?;
                let (mut dxb, mut dxc) = c.output(n)?;
                c.b.activation_bwd(act, &yb, &dyb, &mut dxb)?;
                c.cpu.activation_bwd(act, &yc, &dyc, &mut dxc)?;
                c.close("dx", &dxb, &dxc, Tol::POINTWISE)
            });
        }
        c.case(format!("add, add_assign, axpy, scale, fill, copy n={n}"), |c| {
            let (a, d) = (c.rand(n), c.rand(n));
            let (ab, ac) = c.upload(&a)?;
            let (db, dc) = c.upload(&d)?;
            let (mut yb, mut yc) = c.output(n)?;
            c.b.add(&ab, &db, &mut yb)?;
            c.cpu.add(&ac, &dc, &mut yc)?;
            c.close("add", &yb, &yc, Tol::POINTWISE)?;
            c.b.add_assign(&mut yb, &ab)?;
            c.cpu.add_assign(&mut yc, &ac)?;
            c.close("add_assign", &yb, &yc, Tol::POINTWISE)?;
            c.b.axpy(-0.7, &db, &mut yb)?;
            c.cpu.axpy(-0.7, &dc, &mut yc)?;
            c.close("axpy", &yb, &yc, Tol::POINTWISE)?;
            c.b.scale(1.5, &mut yb)?;
            c.cpu.scale(1.5, &mut yc)?;
            c.close("scale", &yb, &yc, Tol::POINTWISE)?;
            c.b.copy(&ab, &mut yb)?;
            c.cpu.copy(&ac, &mut yc)?;
            c.close("copy", &yb, &yc, Tol::POINTWISE)?;
            c.b.fill(&mut yb, 0.25)?;
            c.cpu.fill(&mut yc, 0.25)?;
            c.close("fill", &yb, &yc, Tol::POINTWISE)?;
            let z = c.b.zeros(n)?;
            let zc = c.cpu.zeros(n)?;
            c.close("zeros", &z, &zc, Tol::POINTWISE)
        });
        c.case(format!("dot, norm n={n}"), |c| {
            let (x, y) = (c.rand(n), c.rand(n));
            let (xb, xc) = c.upload(&x)?;
            let (yb, yc) = c.upload(&y)?;
            let got = [c.b.dot(&xb, &yb)?, c.b.norm(&xb)?];
            let want = [c.cpu.dot(&xc, &yc)?, c.cpu.norm(&xc)?];
            // Products and sums in double on both sides; only the order differs.
            c.close_f64("dot, norm", &got, &want, 1e-9, 1e-9);
            Ok(())
        });
    }
    c.case("bad lengths", |c| {
        let (ab, ac) = c.upload(&[1.0, 2.0, 3.0])?;
        let (mut yb, mut yc) = c.output(2)?;
        let got = c.b.add(&ab, &ab, &mut yb);
        let want = c.cpu.add(&ac, &ac, &mut yc);
        c.same_error("add into a short y", got, want);
        let got = c.b.axpy(1.0, &ab, &mut yb);
        let want = c.cpu.axpy(1.0, &ac, &mut yc);
        c.same_error("axpy into a short y", got, want);
        let got = c.b.activation(Act::LeakyRelu(-1.0), &ab, &mut yb);
        let want = c.cpu.activation(Act::LeakyRelu(-1.0), &ac, &mut yc);
        c.same_error("negative slope", got, want);
        Ok(())
    });
}

pub(crate) fn optim<B: Backend>(c: &mut Checker<B>) {
    for n in [1, 257, 4099] {
        for (decay, decoupled) in [(0.0, false), (0.01, false), (0.01, true)] {
            c.case(format!("adam n={n} wd={decay} decoupled={decoupled}"), |c| {
                let (p, g) = (c.rand(n), c.rand(n));
                let (mut pb, mut pc) = c.upload(&p)?;
                let (gb, gc) = c.upload(&g)?;
                let (mut mb, mut mc) = c.upload(&vec![0.0; n])?;
                let (mut vb, mut vc) = c.upload(&vec![0.0; n])?;
                for step in 1..=3 {
                    let h = AdamParams {
                        weight_decay: decay,
                        decoupled,
                        step,
                        ..AdamParams::default()
                    };
                    c.b.adam_step(&h, &mut pb, &gb, &mut mb, &mut vb)?;
                    c.cpu.adam_step(&h, &mut pc, &gc, &mut mc, &mut vc)?;
                }
                c.close("param", &pb, &pc, Tol::POINTWISE)?;
                c.close("m", &mb, &mc, Tol::POINTWISE)?;
                c.close("v", &vb, &vc, Tol::POINTWISE)
            });
        }
        for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
            c.case(format!("sgd n={n} momentum={momentum} nesterov={nesterov}"), |c| {
                let (p, g) = (c.rand(n), c.rand(n));
                let (mut pb, mut pc) = c.upload(&p)?;
                let (gb, gc) = c.upload(&g)?;
                let (mut bb, mut bc) = c.output(n)?;
                for step in 1..=3 {
                    let h = SgdParams {
                        lr: 0.1,
                        momentum,
                        weight_decay: 1e-3,
                        nesterov,
                        step,
                    };
                    c.b.sgd_step(&h, &mut pb, &gb, &mut bb)?;
                    c.cpu.sgd_step(&h, &mut pc, &gc, &mut bc)?;
                }
                c.close("param", &pb, &pc, Tol::POINTWISE)
            });
        }
    }
    c.case("adam step 0", |c| {
        let (mut pb, mut pc) = c.upload(&[1.0])?;
        let (mut mb, mut mc) = c.upload(&[0.0])?;
        let (mut vb, mut vc) = c.upload(&[0.0])?;
        let (gb, gc) = c.upload(&[1.0])?;
        let h = AdamParams {
            step: 0,
            ..AdamParams::default()
        };
        let got = c.b.adam_step(&h, &mut pb, &gb, &mut mb, &mut vb);
        let want = c.cpu.adam_step(&h, &mut pc, &gc, &mut mc, &mut vc);
        c.same_error("step 0", got, want);
        Ok(())
    });
}

pub(crate) fn softmax<B: Backend>(c: &mut Checker<B>) {
    for (n, classes) in [(1, 10), (7, 10), (33, 3), (5, 1000), (2, 1)] {
        c.case(format!("softmax cross-entropy n={n} c={classes}"), |c| {
            let logits: Vec<f32> = c.rand(n * classes).iter().map(|v| 20.0 * v).collect();
            let targets: Vec<usize> = (0..n).map(|_| c.below(classes)).collect();
            let (lb, lc) = c.upload(&logits)?;
            let (mut pb, mut pc) = c.output(n * classes)?;
            let (mut sb, mut sc) = c.output(n)?;
            c.b.softmax_cross_entropy(n, classes, &lb, &targets, &mut pb, &mut sb)?;
            c.cpu
                .softmax_cross_entropy(n, classes, &lc, &targets, &mut pc, &mut sc)?;
            c.close("probs", &pb, &pc, Tol::POINTWISE)?;
            c.close("losses", &sb, &sc, Tol::sum_of(classes))?;
            let (mut db, mut dc) = c.output(n * classes)?;
            c.b.softmax_cross_entropy_bwd(n, classes, &pb, &targets, 1.0 / n as f32, &mut db)?;
            c.cpu
                .softmax_cross_entropy_bwd(n, classes, &pc, &targets, 1.0 / n as f32, &mut dc)?;
            c.close("dlogits", &db, &dc, Tol::POINTWISE)
        });
    }
    c.case("target out of range", |c| {
        let (lb, lc) = c.upload(&[0.0; 6])?;
        let (mut pb, mut pc) = c.output(6)?;
        let (mut sb, mut sc) = c.output(2)?;
        let got = c.b.softmax_cross_entropy(2, 3, &lb, &[0, 3], &mut pb, &mut sb);
        let want = c.cpu.softmax_cross_entropy(2, 3, &lc, &[0, 3], &mut pc, &mut sc);
        c.same_error("target 3 of 3 classes", got, want);
        Ok(())
    });
}

pub(crate) fn neb<B: Backend>(c: &mut Checker<B>) {
    for (p, dim) in [(2, 5), (3, 1), (9, 300), (33, 1027)] {
        c.case(format!("lerp_rows, copy_rows, row_distances P={p} D={dim}"), |c| {
            let x = c.rand(p * dim);
            let (xb, xc) = c.upload(&x)?;
            let plan: Vec<Lerp> = (0..p + 2)
                .map(|r| Lerp {
                    a: c.below(p),
                    b: c.below(p),
                    t: [0.0, 1.0, 0.37, 1.25][r % 4],
                })
                .collect();
            let (mut db, mut dc) = c.output(plan.len() * dim)?;
            c.b.lerp_rows(dim, &xb, &plan, &mut db)?;
            c.cpu.lerp_rows(dim, &xc, &plan, &mut dc)?;
            c.close("lerp_rows", &db, &dc, Tol::POINTWISE)?;
            c.b.copy_rows(dim, &xb, 1, &mut db, 2, p - 1)?;
            c.cpu.copy_rows(dim, &xc, 1, &mut dc, 2, p - 1)?;
            c.close("copy_rows", &db, &dc, Tol::POINTWISE)?;
            let got = c.b.row_distances(dim, p, &xb)?;
            let want = c.cpu.row_distances(dim, p, &xc)?;
            c.close_f64("row_distances", &got, &want, 1e-9, 1e-9);
            Ok(())
        });
        if p < 3 {
            continue;
        }
        // Energies with a rise, a fall, a tie and a maximum, to reach every tangent branch.
        let energies: Vec<f64> = (0..p)
            .map(|i| [0.0, 1.0, 3.0, 3.0, 1.0, 2.0][i % 6] + 0.1 * i as f64)
            .collect();
        let climbing = Some(p / 2);
        for (spring, climbing) in [(Some(1.0f32), None), (None, None), (Some(0.5), climbing)] {
            c.case(
                format!("neb_forces P={p} D={dim} spring={spring:?} climbing={climbing:?}"),
                |c| {
                    let (x, g) = (c.rand(p * dim), c.rand(p * dim));
                    let (xb, xc) = c.upload(&x)?;
                    let (gb, gc) = c.upload(&g)?;
                    let (mut fb, mut fc) = c.output(p * dim)?;
                    let params = NebForceParams {
                        pivots: p,
                        dim,
                        spring,
                        climbing,
                    };
                    let got = c.b.neb_forces(&params, &xb, &gb, &energies, &mut fb)?;
                    let want = c.cpu.neb_forces(&params, &xc, &gc, &energies, &mut fc)?;
                    c.close("forces", &fb, &fc, Tol::sum_of(dim))?;
                    c.close_f64("norms", &got, &want, 1e-5, 1e-5);
                    Ok(())
                },
            );
        }
    }
    c.case("neb_forces with a non-finite energy", |c| {
        let (xb, xc) = c.upload(&[0.0; 6])?;
        let (mut fb, mut fc) = c.output(6)?;
        let params = NebForceParams {
            pivots: 3,
            dim: 2,
            spring: Some(1.0),
            climbing: None,
        };
        let e = [0.0, f64::NAN, 1.0];
        let got = c.b.neb_forces(&params, &xb, &xb, &e, &mut fb).map(drop);
        let want = c.cpu.neb_forces(&params, &xc, &xc, &e, &mut fc).map(drop);
        c.same_error("NaN energy", got, want);
        Ok(())
    });
}
