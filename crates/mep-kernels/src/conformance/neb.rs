//! Conformance cases of the path operations of the NEB: lerp_rows, copy_rows,
//! row_distances and the improved-tangent forces.

use super::{Checker, Tol};
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
