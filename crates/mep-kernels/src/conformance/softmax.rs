//! Conformance cases of softmax + cross-entropy and its backward.

use super::{Checker, Tol};
use mep_tensor::prelude::*;

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
