//! Conformance cases of batch norm and the pooling/resampling ops.

use super::{Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{Act, CpuBuf, Nchw, Pool2dGeom, Result};

const ACTS: [Act; 4] = [Act::Identity, Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];
const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

fn nchw(n: usize, c: usize, h: usize, w: usize) -> Nchw {
    Nchw { n, c, h, w }
}

/// `n` values in [-1, 1) on both backends.
fn rand_buf<B: Backend>(c: &mut Checker<B>, n: usize) -> Result<(B::Buf, CpuBuf)> {
    let v = c.rand(n);
    c.upload(&v)
}

// ---- batch norm ------------------------------------------------------------------------

/// Batch norm's inputs: x, γ, β, and statistics (running, or as saved by training).
struct BnData {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn bn_data<B: Backend>(c: &mut Checker<B>, s: &Nchw) -> BnData {
    BnData {
        x: c.rand(s.numel()),
        gamma: c.rand_in(s.c, 0.5, 1.5),
        beta: c.rand(s.c),
        mean: c.rand_in(s.c, -0.2, 0.2),
        var: c.rand_in(s.c, 0.2, 2.0),
    }
}

pub(crate) fn batch_norm<B: Backend>(c: &mut Checker<B>) {
    let mut shapes = Vec::new();
    for n in [1, 3] {
        for ch in [1, 5, 33] {
            for (h, w) in [(1, 1), (7, 5), (13, 11)] {
                shapes.push(nchw(n, ch, h, w));
            }
        }
    }
    // Several v2 slices per channel (a slice has at least 2048 values): slice ends inside
    // planes smaller than a block, on plane ends, inside one big plane, three slices.
    shapes.extend([
        nchw(120, 3, 7, 5),
        nchw(4, 2, 32, 32),
        nchw(1, 2, 65, 67),
        nchw(8, 1, 31, 29),
    ]);
    // Every act and every choice of parameter gradients, on every shape for the maps; the
    // reductions (slow on the emulation) take turns over the shapes, each act on six.
    for (i, s) in shapes.into_iter().enumerate() {
        for act in ACTS {
            c.case(format!("batch_norm_infer {s:?} {act:?}"), |c| {
                let d = bn_data(c, &s);
                bn_infer(c, &s, &d, act)
            });
        }
        for (dg, db) in [(true, true), (false, false), (i % 2 == 0, i % 2 == 1)] {
            c.case(format!("batch_norm_infer_bwd {s:?} dgamma {dg} dbeta {db}"), |c| {
                let d = bn_data(c, &s);
                bn_infer_bwd(c, &s, &d, dg, db)
            });
        }
        for act in [Act::Identity, ACTS[1 + i % 3]] {
            c.case(format!("batch_norm_train {s:?} {act:?}"), |c| {
                let d = bn_data(c, &s);
                bn_train(c, &s, &d, act)
            });
        }
        if s.n * s.hw() >= 2 {
            c.case(format!("batch_norm_train_bwd {s:?}"), |c| {
                let d = bn_data(c, &s);
                bn_train_bwd(c, &s, &d)
            });
        }
    }
    // |mean| ≫ std: the shifted sums keep the variance from cancelling.
    let s = nchw(3, 4, 7, 5);
    c.case("batch_norm_train offset 100 ± 0.01", |c| {
        let mut d = bn_data(c, &s);
        d.x = c.rand_in(s.numel(), 99.99, 100.01);
        bn_train(c, &s, &d, Act::Identity)?;
        bn_train_bwd(c, &s, &d)
    });
    // A NaN: its channel's mean and variance are NaN (the clamp at 0 keeps NaN), y is NaN.
    c.case("batch_norm NaN in channel 1", |c| {
        let mut d = bn_data(c, &s);
        d.x[s.hw() + 3] = f32::NAN;
        bn_infer(c, &s, &d, Act::Relu)?;
        bn_train(c, &s, &d, Act::Relu)
    });
    // No values at all: the parameter gradients are zeros.
    c.case("batch_norm bwd with n = 0", |c| {
        let s = nchw(0, 3, 4, 4);
        let d = bn_data(c, &s);
        bn_infer_bwd(c, &s, &d, true, true)?;
        bn_train_bwd(c, &s, &d)
    });
    bn_errors(c);
}

fn bn_infer<B: Backend>(c: &mut Checker<B>, s: &Nchw, d: &BnData, act: Act) -> Result<()> {
    let (x, xc) = c.upload(&d.x)?;
    let (g, gc) = c.upload(&d.gamma)?;
    let (b, bc) = c.upload(&d.beta)?;
    let (m, mc) = c.upload(&d.mean)?;
    let (v, vc) = c.upload(&d.var)?;
    let (mut y, mut yc) = c.output(s.numel())?;
    c.b.batch_norm_infer(s, &x, &g, &b, &m, &v, EPS, act, &mut y)?;
    c.cpu.batch_norm_infer(s, &xc, &gc, &bc, &mc, &vc, EPS, act, &mut yc)?;
    c.close("y", &y, &yc, Tol::POINTWISE)
}

fn bn_infer_bwd<B: Backend>(c: &mut Checker<B>, s: &Nchw, d: &BnData, dg: bool, db: bool) -> Result<()> {
    let dy = c.rand(s.numel());
    let (x, xc) = c.upload(&d.x)?;
    let (dy, dyc) = c.upload(&dy)?;
    let (g, gc) = c.upload(&d.gamma)?;
    let (m, mc) = c.upload(&d.mean)?;
    let (v, vc) = c.upload(&d.var)?;
    let (mut dx, mut dxc) = c.output(s.numel())?;
    let (mut dgamma, mut dgammac) = c.output(s.c)?;
    let (mut dbeta, mut dbetac) = c.output(s.c)?;
    c.b.batch_norm_infer_bwd(
        s,
        &x,
        &dy,
        &g,
        &m,
        &v,
        EPS,
        &mut dx,
        dg.then_some(&mut dgamma),
        db.then_some(&mut dbeta),
    )?;
    c.cpu.batch_norm_infer_bwd(
        s,
        &xc,
        &dyc,
        &gc,
        &mc,
        &vc,
        EPS,
        &mut dxc,
        dg.then_some(&mut dgammac),
        db.then_some(&mut dbetac),
    )?;
    let sums = Tol::sum_of(s.n * s.hw());
    c.close("dx", &dx, &dxc, Tol::POINTWISE)?;
    // Absent gradients must be left alone: both still hold the same garbage.
    c.close("dgamma", &dgamma, &dgammac, sums)?;
    c.close("dbeta", &dbeta, &dbetac, sums)
}

fn bn_train<B: Backend>(c: &mut Checker<B>, s: &Nchw, d: &BnData, act: Act) -> Result<()> {
    let (x, xc) = c.upload(&d.x)?;
    let (g, gc) = c.upload(&d.gamma)?;
    let (b, bc) = c.upload(&d.beta)?;
    let (mut rm, mut rmc) = c.upload(&d.mean)?;
    let (mut rv, mut rvc) = c.upload(&d.var)?;
    let (mut y, mut yc) = c.output(s.numel())?;
    let (mut sm, mut smc) = c.output(s.c)?;
    let (mut si, mut sic) = c.output(s.c)?;
    let got = c.b.batch_norm_train(
        s, &x, &g, &b, &mut rm, &mut rv, MOMENTUM, EPS, act, &mut y, &mut sm, &mut si,
    );
    let want = c.cpu.batch_norm_train(
        s, &xc, &gc, &bc, &mut rmc, &mut rvc, MOMENTUM, EPS, act, &mut yc, &mut smc, &mut sic,
    );
    if s.n * s.hw() < 2 {
        c.same_error("one value per channel", got, want);
        return Ok(());
    }
    got?;
    want?;
    // The statistics are sums of m values in double, in another order than the CPU's: they
    // agree with it to a rounding of f32 (double's reordering error is ~1e-16 relative), so
    // the pointwise tolerance holds for them and for y, which is computed from them.
    c.close("y", &y, &yc, Tol::POINTWISE)?;
    c.close("save_mean", &sm, &smc, Tol::POINTWISE)?;
    c.close("save_invstd", &si, &sic, Tol::POINTWISE)?;
    c.close("running_mean", &rm, &rmc, Tol::POINTWISE)?;
    c.close("running_var", &rv, &rvc, Tol::POINTWISE)
}

fn bn_train_bwd<B: Backend>(c: &mut Checker<B>, s: &Nchw, d: &BnData) -> Result<()> {
    // Saved statistics as training computes them, so that Σ dx = 0 cancels as in real use.
    let (save_mean, save_invstd) = if s.n * s.hw() >= 2 {
        let cpu = &c.cpu;
        let xc = cpu.upload(&d.x)?;
        let (g, b) = (cpu.upload(&d.gamma)?, cpu.upload(&d.beta)?);
        let (mut rm, mut rv) = (cpu.upload(&d.mean)?, cpu.upload(&d.var)?);
        let (mut y, mut sm, mut si) = (cpu.alloc(s.numel())?, cpu.alloc(s.c)?, cpu.alloc(s.c)?);
        cpu.batch_norm_train(
            s,
            &xc,
            &g,
            &b,
            &mut rm,
            &mut rv,
            MOMENTUM,
            EPS,
            Act::Identity,
            &mut y,
            &mut sm,
            &mut si,
        )?;
        (cpu.download(&sm)?, cpu.download(&si)?)
    } else {
        (d.mean.clone(), d.var.clone())
    };
    let dy = c.rand(s.numel());
    let (x, xc) = c.upload(&d.x)?;
    let (dy, dyc) = c.upload(&dy)?;
    let (g, gc) = c.upload(&d.gamma)?;
    let (sm, smc) = c.upload(&save_mean)?;
    let (si, sic) = c.upload(&save_invstd)?;
    let (mut dx, mut dxc) = c.output(s.numel())?;
    let (mut dgamma, mut dgammac) = c.output(s.c)?;
    let (mut dbeta, mut dbetac) = c.output(s.c)?;
    c.b.batch_norm_train_bwd(s, &x, &dy, &g, &sm, &si, &mut dx, &mut dgamma, &mut dbeta)?;
    c.cpu
        .batch_norm_train_bwd(s, &xc, &dyc, &gc, &smc, &sic, &mut dxc, &mut dgammac, &mut dbetac)?;
    let sums = Tol::sum_of(s.n * s.hw());
    // dx is a map given per-channel coefficients that are finished in double and rounded
    // once, as the CPU's; FMA contraction on a GPU moves it by an ulp of its terms (O(γ·invstd)).
    c.close("dx", &dx, &dxc, Tol::POINTWISE)?;
    c.close("dgamma", &dgamma, &dgammac, sums)?;
    c.close("dbeta", &dbeta, &dbetac, sums)
}

/// Bad lengths and arguments: refused with the CPU backend's messages.
fn bn_errors<B: Backend>(c: &mut Checker<B>) {
    let s = nchw(2, 3, 4, 5);
    c.case("batch_norm errors", |c| {
        let d = bn_data(c, &s);
        let (x, xc) = c.upload(&d.x)?;
        let (g, gc) = c.upload(&d.gamma)?;
        let (b, bc) = c.upload(&d.beta)?;
        let (m, mc) = c.upload(&d.mean)?;
        let (v, vc) = c.upload(&d.var)?;
        let (short, shortc) = c.upload(&d.x[..s.c - 1])?;
        let (mut y, mut yc) = c.output(s.numel())?;
        let (mut y2, mut y2c) = c.output(s.numel() - 1)?;
        let (mut p1, mut p1c) = c.output(s.c)?;
        let (mut p2, mut p2c) = c.output(s.c)?;
        let (mut p3, mut p3c) = c.output(s.c)?;
        let (mut bad, mut badc) = c.output(s.c + 1)?;

        let got =
            c.b.batch_norm_infer(&s, &x, &g, &b, &m, &v, EPS, Act::Identity, &mut y2);
        let want = c
            .cpu
            .batch_norm_infer(&s, &xc, &gc, &bc, &mc, &vc, EPS, Act::Identity, &mut y2c);
        c.same_error("infer, short y", got, want);
        let got =
            c.b.batch_norm_infer(&s, &x, &g, &short, &m, &v, EPS, Act::Identity, &mut y);
        let want = c
            .cpu
            .batch_norm_infer(&s, &xc, &gc, &shortc, &mc, &vc, EPS, Act::Identity, &mut yc);
        c.same_error("infer, short beta", got, want);
        let got =
            c.b.batch_norm_infer(&s, &x, &g, &b, &m, &v, EPS, Act::LeakyRelu(-0.5), &mut y);
        let want = c
            .cpu
            .batch_norm_infer(&s, &xc, &gc, &bc, &mc, &vc, EPS, Act::LeakyRelu(-0.5), &mut yc);
        c.same_error("infer, negative slope", got, want);

        let got =
            c.b.batch_norm_infer_bwd(&s, &x, &x, &g, &m, &v, EPS, &mut y, Some(&mut bad), None);
        let want = c
            .cpu
            .batch_norm_infer_bwd(&s, &xc, &xc, &gc, &mc, &vc, EPS, &mut yc, Some(&mut badc), None);
        c.same_error("infer_bwd, long dgamma", got, want);

        let got = c.b.batch_norm_train(
            &s,
            &x,
            &g,
            &b,
            &mut p1,
            &mut bad,
            MOMENTUM,
            EPS,
            Act::Relu,
            &mut y,
            &mut p2,
            &mut p3,
        );
        let want = c.cpu.batch_norm_train(
            &s,
            &xc,
            &gc,
            &bc,
            &mut p1c,
            &mut badc,
            MOMENTUM,
            EPS,
            Act::Relu,
            &mut yc,
            &mut p2c,
            &mut p3c,
        );
        c.same_error("train, long running_var", got, want);

        let got =
            c.b.batch_norm_train_bwd(&s, &x, &x, &g, &m, &v, &mut y, &mut p1, &mut bad);
        let want = c
            .cpu
            .batch_norm_train_bwd(&s, &xc, &xc, &gc, &mc, &vc, &mut yc, &mut p1c, &mut badc);
        c.same_error("train_bwd, long dbeta", got, want);
        Ok(())
    });
}

// ---- pooling and resampling ------------------------------------------------------------

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
            let (x, xc) = rand_buf(c, s.numel())?;
            let (mut y, mut yc) = c.output(s.n * s.c)?;
            c.b.global_avg_pool(&s, &x, &mut y)?;
            c.cpu.global_avg_pool(&s, &xc, &mut yc)?;
            c.close("y", &y, &yc, Tol::sum_of(s.hw()))
        });
        c.case(format!("global_avg_pool_bwd {s:?}"), |c| {
            let (dy, dyc) = rand_buf(c, s.n * s.c)?;
            let (mut dx, mut dxc) = c.output(s.numel())?;
            c.b.global_avg_pool_bwd(&s, &dy, &mut dx)?;
            c.cpu.global_avg_pool_bwd(&s, &dyc, &mut dxc)?;
            c.close("dx", &dx, &dxc, Tol::POINTWISE)
        });
    }

    for s in [nchw(2, 3, 5, 4), nchw(1, 1, 1, 1), nchw(1, 2, 7, 9)] {
        c.case(format!("upsample_nearest2x {s:?}"), |c| {
            let (x, xc) = rand_buf(c, s.numel())?;
            let (mut y, mut yc) = c.output(4 * s.numel())?;
            c.b.upsample_nearest2x(&s, &x, &mut y)?;
            c.cpu.upsample_nearest2x(&s, &xc, &mut yc)?;
            c.close("y", &y, &yc, Tol::POINTWISE)
        });
        c.case(format!("upsample_nearest2x_bwd {s:?}"), |c| {
            let (dy, dyc) = rand_buf(c, 4 * s.numel())?;
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
                    let (x, xc) = rand_buf(c, s.numel())?;
                    let (mut y, mut yc) = c.output(o.numel())?;
                    c.b.shortcut_pad(&s, subsample, pad, &x, &mut y)?;
                    c.cpu.shortcut_pad(&s, subsample, pad, &xc, &mut yc)?;
                    c.close("y", &y, &yc, Tol::POINTWISE)
                });
                c.case(format!("shortcut_pad_bwd {s:?} subsample {subsample} pad {pad}"), |c| {
                    let (dy, dyc) = rand_buf(c, o.numel())?;
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
        let (x, xc) = rand_buf(c, s.numel())?;
        let (small, smallc) = rand_buf(c, 5)?;
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
