//! Conformance cases of batch norm, inference and training, forward and backward.

use super::{nchw, Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{Act, Nchw, Result};

const ACTS: [Act; 4] = [Act::Identity, Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];
const EPS: f32 = 1e-5;
const MOMENTUM: f32 = 0.1;

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
