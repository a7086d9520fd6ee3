//! Conformance cases of the reductions: dot and norm, accumulated in f64.

use super::Checker;
use mep_tensor::prelude::*;

use super::elementwise::SIZES;

pub(crate) fn reduce<B: Backend>(c: &mut Checker<B>) {
    for n in SIZES {
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
}
