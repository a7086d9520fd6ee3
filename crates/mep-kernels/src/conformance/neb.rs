//! Conformance cases of the path operations of the NEB: lerp_rows, copy_rows,
//! row_distances and the improved-tangent forces.

use super::{Checker, Tol};
use mep_tensor::backend::neb::{climbing_image, f64_from_words, redistribution_plan};
use mep_tensor::prelude::*;
use mep_tensor::{Lerp, NebForceParams};

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
    }
    // The forces: P = 2 (endpoints only), D not a multiple of the block, and a row of two of
    // the v2 kernels' chunks (crate::NEB_CHUNK), the last one partial. Many pivots and many
    // chunks run per kernel in the emulation's tests/neb.rs, with small blocks and chunks.
    let chunk = crate::NEB_CHUNK;
    for (p, dim) in [(2, 5), (3, 1), (9, 300), (33, 1027), (3, chunk + 1)] {
        // Energies with a rise, a fall, a tie and a maximum, to reach every tangent branch.
        let energies: Vec<f64> = (0..p)
            .map(|i| [0.0, 1.0, 3.0, 3.0, 1.0, 2.0][i % 6] + 0.1 * i as f64)
            .collect();
        let climbing = (p > 2).then_some(p / 2);
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
    // The device-side forces (energies in a buffer, the climbing image chosen from them, norms
    // left as f64 words) against the host-side op on the same backend, which the cases above
    // hold to the CPU: the same forces bit for bit and the same norms.
    for (p, dim) in [(2, 5), (3, 1), (9, 300), (7, chunk + 1)] {
        for (spring, climb) in [(Some(0.5f32), false), (None, true), (Some(1.0), true)] {
            c.case(
                format!("neb_forces_on_device P={p} D={dim} spring={spring:?} climb={climb}"),
                |c| {
                    // A tie at the top, so the first of equal energies must win.
                    let e32: Vec<f32> = (0..p)
                        .map(|i| [0.5, 2.0, 3.0, 3.0, 1.0, 2.5][i % 6] + 0.125 * (i / 6) as f32)
                        .collect();
                    let e: Vec<f64> = e32.iter().map(|&v| v as f64).collect();
                    let (x, g) = (c.rand(p * dim), c.rand(p * dim));
                    let (xb, xc) = c.upload(&x)?;
                    let (gb, gc) = c.upload(&g)?;
                    let (eb, ec) = c.upload(&e32)?;
                    let (mut fb, mut fc) = c.output(p * dim)?;
                    let (mut nb, mut nc) = c.output(2 * p)?;
                    let params = NebForceParams {
                        pivots: p,
                        dim,
                        spring,
                        climbing: None,
                    };
                    c.b.neb_forces_on_device(&params, climb, &xb, &gb, &eb, &mut fb, &mut nb)?;
                    c.cpu
                        .neb_forces_on_device(&params, climb, &xc, &gc, &ec, &mut fc, &mut nc)?;
                    let host = NebForceParams {
                        climbing: if climb { climbing_image(&e) } else { None },
                        ..params
                    };
                    let (mut hb, _) = c.output(p * dim)?;
                    let want = c.b.neb_forces(&host, &xb, &gb, &e, &mut hb)?;
                    let gotn = f64_from_words(&c.b.download(&nb)?);
                    c.close_same("forces vs the host-side op", &fb, &hb, Tol::EXACT)?;
                    c.close_f64("norms vs the host-side op", &gotn, &want, 0.0, 0.0);
                    c.close("forces vs cpu", &fb, &fc, Tol::sum_of(dim))?;
                    let wantn = f64_from_words(&c.cpu.download(&nc)?);
                    c.close_f64("norms vs cpu", &gotn, &wantn, 1e-5, 1e-5);
                    Ok(())
                },
            );
        }
    }
    // The redistribution planned on the device: uneven segments (one of zero length), with and
    // without the climbing image, against the CPU (whose plan is mep-tensor's
    // redistribution_plan) and against lerp_rows with the host's plan on the same backend.
    for (p, dim) in [(2, 3), (3, 7), (8, 300), (11, 1027)] {
        for climb in [false, true] {
            c.case(format!("redistribute_rows P={p} D={dim} climbing={climb}"), |c| {
                let mut x = c.rand(p * dim);
                // Rows 1 and 2 equal: a zero-length segment.
                if p > 3 {
                    let row1 = x[dim..2 * dim].to_vec();
                    x[2 * dim..3 * dim].copy_from_slice(&row1);
                }
                let e32: Vec<f32> = (0..p).map(|i| ((i * 7) % 5) as f32).collect();
                let (xb, xc) = c.upload(&x)?;
                let (eb, ec) = c.upload(&e32)?;
                let (mut db, mut dc) = c.output(p * dim)?;
                let (mut lb, mut lc) = c.output(2 * (p - 1))?;
                let (eb, ec) = (climb.then_some(&eb), climb.then_some(&ec));
                c.b.redistribute_rows(dim, p, &xb, eb, &mut db, &mut lb)?;
                c.cpu.redistribute_rows(dim, p, &xc, ec, &mut dc, &mut lc)?;
                let dist = c.b.row_distances(dim, p, &xb)?;
                c.close_f64(
                    "lengths vs row_distances",
                    &f64_from_words(&c.b.download(&lb)?),
                    &dist,
                    0.0,
                    0.0,
                );
                let e: Vec<f64> = e32.iter().map(|&v| v as f64).collect();
                let plan = redistribution_plan(&dist, if climb { climbing_image(&e) } else { None });
                let (mut hb, _) = c.output(p * dim)?;
                c.b.lerp_rows(dim, &xb, &plan, &mut hb)?;
                c.close_same("rows vs lerp_rows of the host's plan", &db, &hb, Tol::EXACT)?;
                c.close("rows vs cpu", &db, &dc, Tol::sum_of(dim))
            });
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
