//! Conformance cases of the pooling and resampling ops.

use super::{nchw, Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::Pool2dGeom;

/// Inputs of max pool: continuous values, values rounded to a few levels (ties in most
/// windows, so the first-maximum rule decides the backward), and the same with NaN and −∞.
fn pool_inputs<B: Backend>(c: &mut Checker<B>, n: usize) -> [(&'static str, Vec<f32>); 3] {
    let uniform = c.rand(n);
    let ties: Vec<f32> = c.rand(n).iter().map(|v| (v * 2.0).round() / 2.0).collect();
    let mut special = ties.clone();
    for _ in 0..n.div_ceil(7) {
        let i = c.below(n);
        special[i] = if c.below(3) == 0 { f32::NAN } else { f32::NEG_INFINITY };
    }
    [("uniform", uniform), ("ties", ties), ("nan/-inf", special)]
}

pub(crate) fn pool<B: Backend>(c: &mut Checker<B>) {
    // (input, k, stride, pad)
    let geoms = [
        (nchw(2, 3, 13, 11), 3, 2, 1),
        (nchw(2, 3, 13, 11), 2, 2, 0),
        (nchw(1, 2, 7, 9), 3, 2, 1),
        (nchw(1, 2, 7, 9), 2, 2, 0),
        (nchw(1, 1, 1, 1), 3, 2, 1),   // one window, mostly padding
        (nchw(1, 2, 9, 71), 3, 2, 1),  // two tiles across in v2
        (nchw(1, 1, 37, 15), 3, 1, 1), // several tile rows, overlapping windows
        (nchw(1, 2, 21, 23), 8, 4, 4), // input tile too big for v2's shared buffer: v1
    ];
    for (input, k, stride, pad) in geoms {
        let g = Pool2dGeom { input, k, stride, pad };
        for (what, data) in pool_inputs(c, input.numel()) {
            c.case(format!("max_pool2d {input:?} k{k} s{stride} p{pad} {what}"), |c| {
                let (x, xc) = c.upload(&data)?;
                let (mut y, mut yc) = c.output(g.output().numel())?;
                c.b.max_pool2d(&g, &x, &mut y)?;
                c.cpu.max_pool2d(&g, &xc, &mut yc)?;
                c.close("y", &y, &yc, Tol::POINTWISE)
            });
            c.case(format!("max_pool2d_bwd {input:?} k{k} s{stride} p{pad} {what}"), |c| {
                let dy = c.rand(g.output().numel());
                let (x, xc) = c.upload(&data)?;
                let (dy, dyc) = c.upload(&dy)?;
                let (mut dx, mut dxc) = c.output(input.numel())?;
                c.b.max_pool2d_bwd(&g, &x, &dy, &mut dx)?;
                c.cpu.max_pool2d_bwd(&g, &xc, &dyc, &mut dxc)?;
                // Each dx sums its windows' dy in the CPU's order: exact.
                c.close("dx", &dx, &dxc, Tol::POINTWISE)
            });
        }
    }

    for s in [nchw(3, 5, 1, 1), nchw(3, 5, 7, 7), nchw(2, 20, 13, 11)] {
        c.case(format!("global_avg_pool {s:?}"), |c| {
            let (x, xc) = c.rand_pair(s.numel())?;
            let (mut y, mut yc) = c.output(s.n * s.c)?;
            c.b.global_avg_pool(&s, &x, &mut y)?;
            c.cpu.global_avg_pool(&s, &xc, &mut yc)?;
            c.close("y", &y, &yc, Tol::sum_of(s.hw()))
        });
        c.case(format!("global_avg_pool_bwd {s:?}"), |c| {
            let (dy, dyc) = c.rand_pair(s.n * s.c)?;
            let (mut dx, mut dxc) = c.output(s.numel())?;
            c.b.global_avg_pool_bwd(&s, &dy, &mut dx)?;
            c.cpu.global_avg_pool_bwd(&s, &dyc, &mut dxc)?;
            c.close("dx", &dx, &dxc, Tol::POINTWISE)
        });
    }

    for s in [nchw(2, 3, 5, 4), nchw(1, 1, 1, 1), nchw(1, 2, 7, 9)] {
        c.case(format!("upsample_nearest2x {s:?}"), |c| {
            let (x, xc) = c.rand_pair(s.numel())?;
            let (mut y, mut yc) = c.output(4 * s.numel())?;
            c.b.upsample_nearest2x(&s, &x, &mut y)?;
            c.cpu.upsample_nearest2x(&s, &xc, &mut yc)?;
            c.close("y", &y, &yc, Tol::POINTWISE)
        });
        c.case(format!("upsample_nearest2x_bwd {s:?}"), |c| {
            let (dy, dyc) = c.rand_pair(4 * s.numel())?;
            let (mut dx, mut dxc) = c.output(s.numel())?;
            c.b.upsample_nearest2x_bwd(&s, &dy, &mut dx)?;
            c.cpu.upsample_nearest2x_bwd(&s, &dyc, &mut dxc)?;
            c.close("dx", &dx, &dxc, Tol::POINTWISE)
        });
    }

    for s in [nchw(2, 3, 7, 5), nchw(1, 4, 8, 8)] {
        for subsample in [false, true] {
            for pad in [0, 2, 4] {
                let o = s.shortcut_pad(subsample, pad);
                c.case(format!("shortcut_pad {s:?} subsample {subsample} pad {pad}"), |c| {
                    let (x, xc) = c.rand_pair(s.numel())?;
                    let (mut y, mut yc) = c.output(o.numel())?;
                    c.b.shortcut_pad(&s, subsample, pad, &x, &mut y)?;
                    c.cpu.shortcut_pad(&s, subsample, pad, &xc, &mut yc)?;
                    c.close("y", &y, &yc, Tol::POINTWISE)
                });
                c.case(format!("shortcut_pad_bwd {s:?} subsample {subsample} pad {pad}"), |c| {
                    let (dy, dyc) = c.rand_pair(o.numel())?;
                    let (mut dx, mut dxc) = c.output(s.numel())?;
                    c.b.shortcut_pad_bwd(&s, subsample, pad, &dy, &mut dx)?;
                    c.cpu.shortcut_pad_bwd(&s, subsample, pad, &dyc, &mut dxc)?;
                    c.close("dx", &dx, &dxc, Tol::POINTWISE)
                });
            }
        }
    }
    pool_errors(c);
}

/// Bad lengths and geometries: refused with the CPU backend's messages.
fn pool_errors<B: Backend>(c: &mut Checker<B>) {
    c.case("pool errors", |c| {
        let s = nchw(2, 3, 6, 5);
        let g = Pool2dGeom {
            input: s,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let (x, xc) = c.rand_pair(s.numel())?;
        let (small, smallc) = c.rand_pair(5)?;
        let (mut out, mut outc) = c.output(7)?;

        let got = c.b.max_pool2d(&g, &x, &mut out);
        let want = c.cpu.max_pool2d(&g, &xc, &mut outc);
        c.same_error("max_pool2d, short y", got, want);
        let wide = Pool2dGeom { pad: 2, ..g };
        let got = c.b.max_pool2d(&wide, &x, &mut out);
        let want = c.cpu.max_pool2d(&wide, &xc, &mut outc);
        c.same_error("max_pool2d, pad > k/2", got, want);
        let got = c.b.max_pool2d_bwd(&g, &x, &small, &mut out);
        let want = c.cpu.max_pool2d_bwd(&g, &xc, &smallc, &mut outc);
        c.same_error("max_pool2d_bwd, short dy", got, want);
        let got = c.b.global_avg_pool(&s, &x, &mut out);
        let want = c.cpu.global_avg_pool(&s, &xc, &mut outc);
        c.same_error("global_avg_pool, short y", got, want);
        let got = c.b.global_avg_pool_bwd(&s, &small, &mut out);
        let want = c.cpu.global_avg_pool_bwd(&s, &smallc, &mut outc);
        c.same_error("global_avg_pool_bwd, short dy", got, want);
        let got = c.b.upsample_nearest2x(&s, &x, &mut out);
        let want = c.cpu.upsample_nearest2x(&s, &xc, &mut outc);
        c.same_error("upsample_nearest2x, short y", got, want);
        let got = c.b.upsample_nearest2x_bwd(&s, &x, &mut out);
        let want = c.cpu.upsample_nearest2x_bwd(&s, &xc, &mut outc);
        c.same_error("upsample_nearest2x_bwd, short dy", got, want);
        let got = c.b.shortcut_pad(&s, true, 2, &x, &mut out);
        let want = c.cpu.shortcut_pad(&s, true, 2, &xc, &mut outc);
        c.same_error("shortcut_pad, short y", got, want);
        let got = c.b.shortcut_pad_bwd(&s, false, 1, &x, &mut out);
        let want = c.cpu.shortcut_pad_bwd(&s, false, 1, &xc, &mut outc);
        c.same_error("shortcut_pad_bwd, short dy", got, want);
        Ok(())
    });
}
