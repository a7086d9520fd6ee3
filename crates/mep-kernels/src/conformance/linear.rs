//! Conformance cases of linear layers: sizes that are not multiples of a tile, with and
//! without bias, and bad lengths.

use super::{rand_opt, reference, under_test, Checker, Tol};
use mep_tensor::prelude::*;

/// `(k, m)` of the linear cases, each run with n ∈ {1, 5, 67}.
const LINEARS: [(usize, usize); 3] = [(3, 7), (37, 5), (131, 67)];

pub(crate) fn linear<B: Backend>(c: &mut Checker<B>) {
    for n in [1usize, 5, 67] {
        for (i, &(k, m)) in LINEARS.iter().enumerate() {
            for bias in [true, false] {
                c.case(format!("linear n={n} k={k} m={m} bias={bias}"), |c| {
                    let (x, xc) = c.rand_pair(n * k)?;
                    let (w, wc) = c.rand_pair(m * k)?;
                    let b = rand_opt(c, bias, m)?;
                    let (mut y, mut yc) = c.output(n * m)?;
                    c.b.linear(n, k, m, &x, &w, under_test::<B>(&b), &mut y)?;
                    c.cpu.linear(n, k, m, &xc, &wc, reference::<B>(&b), &mut yc)?;
                    c.close("y", &y, &yc, Tol::sum_of(k))
                });
            }
            c.case(format!("linear_bwd_input n={n} k={k} m={m}"), |c| {
                let (dy, dyc) = c.rand_pair(n * m)?;
                let (w, wc) = c.rand_pair(m * k)?;
                let (mut dx, mut dxc) = c.output(n * k)?;
                c.b.linear_bwd_input(n, k, m, &dy, &w, &mut dx)?;
                c.cpu.linear_bwd_input(n, k, m, &dyc, &wc, &mut dxc)?;
                c.close("dx", &dx, &dxc, Tol::sum_of(m))
            });
            let with_db = (i + n) % 2 == 0;
            c.case(format!("linear_bwd_weight n={n} k={k} m={m} db={with_db}"), |c| {
                let (x, xc) = c.rand_pair(n * k)?;
                let (dy, dyc) = c.rand_pair(n * m)?;
                let (mut dw, mut dwc) = c.output(m * k)?;
                let mut db = if with_db { Some(c.output(m)?) } else { None };
                let (db_t, db_c) = match db.as_mut() {
                    Some((t, r)) => (Some(t), Some(r)),
                    None => (None, None),
                };
                c.b.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, db_t)?;
                c.cpu.linear_bwd_weight(n, k, m, &xc, &dyc, &mut dwc, db_c)?;
                c.close("dw", &dw, &dwc, Tol::sum_of(n))?;
                if let Some((t, r)) = &db {
                    c.close("db", t, r, Tol::sum_of(n))?;
                }
                Ok(())
            });
        }
    }
    c.case("linear errors", |c| {
        let (n, k, m) = (5, 37, 5);
        let (x, xc) = c.rand_pair(n * k)?;
        let (w, wc) = c.rand_pair(m * k)?;
        let (bias, biasc) = c.rand_pair(m - 1)?;
        let (mut y, mut yc) = c.output(n * m)?;
        let (mut short, mut shortc) = c.output(n * m - 1)?;
        let got = c.b.linear(n, k, m, &x, &w, None, &mut short);
        let want = c.cpu.linear(n, k, m, &xc, &wc, None, &mut shortc);
        c.same_error("linear y one short", got, want);
        let got = c.b.linear(n, k, m, &x, &w, Some(&bias), &mut y);
        let want = c.cpu.linear(n, k, m, &xc, &wc, Some(&biasc), &mut yc);
        c.same_error("linear bias one short", got, want);
        let got = c.b.linear(n, k + 1, m, &x, &w, None, &mut y);
        let want = c.cpu.linear(n, k + 1, m, &xc, &wc, None, &mut yc);
        c.same_error("linear x too short for k", got, want);
        let (dy, dyc) = c.rand_pair(n * m)?;
        let (mut dx, mut dxc) = c.output(n * k + 1)?;
        let got = c.b.linear_bwd_input(n, k, m, &dy, &w, &mut dx);
        let want = c.cpu.linear_bwd_input(n, k, m, &dyc, &wc, &mut dxc);
        c.same_error("linear_bwd_input dx one long", got, want);
        let (mut dw, mut dwc) = c.output(m * k)?;
        let (mut db, mut dbc) = c.output(m + 1)?;
        let got = c.b.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, Some(&mut db));
        let want = c.cpu.linear_bwd_weight(n, k, m, &xc, &dyc, &mut dwc, Some(&mut dbc));
        c.same_error("linear_bwd_weight db one long", got, want);
        Ok(())
    });
}
