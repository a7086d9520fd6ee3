//! Conformance cases of the optimiser steps: Adam (with L2 and decoupled weight decay) and
//! SGD with momentum.

use super::{Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, SgdParams};

pub(crate) fn optim<B: Backend>(c: &mut Checker<B>) {
    for n in [1, 257, 4099] {
        for (decay, decoupled) in [(0.0, false), (0.01, false), (0.01, true)] {
            c.case(format!("adam n={n} wd={decay} decoupled={decoupled}"), |c| {
                let (p, g) = (c.rand(n), c.rand(n));
                let (mut pb, mut pc) = c.upload(&p)?;
                let (gb, gc) = c.upload(&g)?;
                let (mut mb, mut mc) = c.upload(&vec![0.0; n])?;
                let (mut vb, mut vc) = c.upload(&vec![0.0; n])?;
                let at = |step| AdamParams {
                    weight_decay: decay,
                    decoupled,
                    step,
                    ..AdamParams::default()
                };
                for step in 1..=3 {
                    let h = at(step);
                    c.b.adam_step(&h, &mut pb, &gb, &mut mb, &mut vb)?;
                    c.cpu.adam_step(&h, &mut pc, &gc, &mut mc, &mut vc)?;
                }
                c.close("param", &pb, &pc, Tol::POINTWISE)?;
                // The same three steps with the bias terms read from the device.
                let (mut qb, _) = c.upload(&p)?;
                let (mut mb2, _) = c.upload(&vec![0.0; n])?;
                let (mut vb2, _) = c.upload(&vec![0.0; n])?;
                for step in 1..=3 {
                    let (bias, _) = c.upload(&at(step).bias_terms())?;
                    // The step number is not read: only the terms on the device count.
                    let h = at(1);
                    c.b.adam_step_indirect(&h, &bias, &mut qb, &gb, &mut mb2, &mut vb2)?;
                }
                c.close_same("param, bias terms on the device, vs adam_step", &qb, &pb, Tol::EXACT)?;
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
