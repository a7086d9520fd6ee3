//! Conformance cases of the elementwise operations (activations and their gradients, add,
//! axpy, scale) and of the memory ones they are checked with (fill, copy, zeros).

use super::{Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::Act;

/// Sizes around the block (256) and float4 boundaries, and several grid-stride rounds.
pub(crate) const SIZES: [usize; 6] = [1, 7, 255, 257, 1031, 9001];

pub(crate) fn elementwise<B: Backend>(c: &mut Checker<B>) {
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
