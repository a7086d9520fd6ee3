//! Conformance cases of convolution and transposed convolution: shapes that
//! are not multiples of a 64×64 tile or a 16-deep slice, one and several tiles, 1×1 (the fast
//! path), 3×3, 7×7 stride 2 (a ResNet stem on 3 channels), strides 1 to 3, padding 0 to 3,
//! batches 1 to 3, every activation, optional operands present and absent, and bad lengths;
//! gradients with 1 to 4 input channels (conv_small.cu) and weight gradients over each of
//! conv_wgrad.cu's plans (`ops::conv_wgrad`'s tests check that these shapes reach them).

use super::{rand_opt, reference, under_test, Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, ConvT2dGeom};

/// Nine extents of a geometry, in the order its struct lists them.
pub(crate) type Extents = (usize, usize, usize, usize, usize, usize, usize, usize, usize);

/// `(n, c_in, h, w, c_out, kh, kw, stride, pad)`.
pub(crate) const CONVS: [Extents; 18] = [
    (1, 3, 13, 11, 5, 3, 3, 1, 1),
    (3, 4, 9, 9, 17, 3, 3, 2, 1),
    // A ResNet stem: 7×7, stride 2, padding 3 on RGB.
    (2, 3, 20, 18, 8, 7, 7, 2, 3),
    // 1×1 stride 1: the plain-GEMM kernels; two row tiles.
    (2, 19, 6, 7, 70, 1, 1, 1, 0),
    // 1×1 stride 2: a projection shortcut (the general kernels).
    (3, 6, 7, 9, 10, 1, 1, 2, 0),
    (1, 5, 6, 6, 70, 3, 3, 1, 0),
    // n·oh·ow = 128: exactly two column tiles; c_in·9 = 180: several slices.
    (2, 20, 8, 8, 17, 3, 3, 1, 1),
    // Rectangular kernel; the padding adds output rows that see only zeros.
    (1, 2, 7, 8, 3, 1, 3, 1, 1),
    // Kernel larger than the unpadded input.
    (1, 1, 2, 3, 1, 3, 3, 1, 1),
    // n·oh·ow = 768: the weight gradient's depth is split.
    (3, 4, 16, 16, 6, 3, 3, 1, 1),
    // Stride 3 with a 2×2 kernel: some input pixels are never read (their gradient is 0).
    (2, 3, 9, 10, 4, 2, 2, 3, 0),
    // The region kernels (conv_region.cu; see `the_cases_reach_every_region_path` below).
    // An odd 7×5 plane at stride 2 on 3 channels: phases and borders of unequal sizes; 70
    // output channels in 128-row tiles.
    (1, 3, 7, 5, 70, 3, 3, 2, 1),
    // Stride 3, 7×7, padding 3 on one channel of a 9×11 plane.
    (2, 1, 9, 11, 4, 7, 7, 3, 3),
    // 1×1 stride 3 from 70 channels: 8 of 9 input-gradient phases have no tap.
    (1, 70, 9, 11, 3, 1, 1, 3, 0),
    // 70 channels over 100 columns: the 128×64 tile, which no more than 128×32 covers.
    (2, 70, 5, 10, 70, 1, 1, 1, 0),
    // 64 → 64 3×3 on a 2×2 plane: four regions of one column, depth 256: K split in 2.
    (1, 64, 2, 2, 64, 3, 3, 1, 1),
    // 512 channels on a 1×1 plane: the forward's depth split in 4 (float4 weight loads, 128×32).
    (1, 512, 1, 1, 70, 1, 1, 1, 0),
    // K = 8 over 100 columns to 70 channels: float4 weight loads in the 128×64 tile.
    (1, 8, 10, 10, 70, 1, 1, 1, 0),
];

/// Gradients only, `(n, c_in, h, w, c_out, kh, kw, stride, pad)`: 1 to 4 input channels
/// (the phase-wise input gradient) at strides 1 to 3 over odd planes, and weight gradients
/// whose depth splits.
pub(crate) const GRADS: [Extents; 11] = [
    (1, 1, 7, 5, 3, 3, 3, 1, 1),
    (2, 2, 9, 11, 5, 7, 7, 2, 3),
    (3, 3, 11, 9, 4, 3, 3, 3, 2),
    (2, 4, 7, 5, 6, 1, 1, 2, 0),
    // 4·49 taps per output channel: the staged weights take c_out = 70 in 4 slices.
    (1, 4, 9, 11, 70, 7, 7, 1, 3),
    // Stride 3 over a 2×2 kernel: phases that no tap reaches (dx = 0).
    (3, 1, 5, 7, 2, 2, 2, 3, 0),
    (3, 2, 9, 11, 3, 3, 3, 2, 0),
    // 64 input channels: dense tap classes, whose depth (3·10·10 = 300) splits in two.
    (3, 64, 10, 10, 4, 3, 3, 1, 1),
    // 128 channels each side: whole 128×128 tiles.
    (2, 128, 3, 5, 128, 1, 1, 1, 0),
    // One input row: kernel rows 0 and 2 never read it (their dw rows are 0).
    (2, 64, 1, 3, 2, 3, 3, 1, 1),
    // A stem on 3 channels at 28×28 batch 3: the pixel bands, 64×32 tiles, the interior
    // split.
    (3, 3, 28, 28, 5, 7, 7, 2, 3),
];

/// `(n, c_in, h, w, c_out, k, stride, pad, output_padding)`.
pub(crate) const CONVTS: [Extents; 8] = [
    (2, 6, 5, 4, 5, 3, 2, 1, 1),
    (1, 4, 3, 5, 3, 3, 2, 1, 0),
    (1, 3, 4, 4, 17, 4, 2, 1, 0),
    // The decoder's layer: 3×3, stride 1, padding 1.
    (2, 5, 6, 6, 7, 3, 1, 1, 0),
    // 1×1: the plain-GEMM kernels of the adjoint conv.
    (2, 70, 3, 5, 6, 1, 1, 0, 0),
    // To 1 to 4 channels: the adjoint conv's phase-wise input gradient, with and without bias.
    (2, 5, 4, 3, 2, 3, 3, 1, 2),
    (1, 7, 5, 5, 1, 7, 2, 3, 1),
    (3, 3, 3, 4, 4, 1, 1, 0, 0),
];

pub(crate) fn conv_geom(t: Extents) -> Conv2dGeom {
    let (n, c_in, h, w, c_out, kh, kw, stride, pad) = t;
    Conv2dGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride,
        pad,
    }
}

pub(crate) fn convt_geom(t: Extents) -> ConvT2dGeom {
    let (n, c_in, h, w, c_out, k, stride, pad, output_padding) = t;
    ConvT2dGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
        output_padding,
    }
}

fn label(g: &Conv2dGeom) -> String {
    format!(
        "{}x{}x{}x{}->{} k{}x{} s{} p{}",
        g.n, g.c_in, g.h, g.w, g.c_out, g.kh, g.kw, g.stride, g.pad
    )
}

pub(crate) fn label_t(g: &ConvT2dGeom) -> String {
    format!(
        "{}x{}x{}x{}->{} k{} s{} p{} op{}",
        g.n, g.c_in, g.h, g.w, g.c_out, g.kh, g.stride, g.pad, g.output_padding
    )
}

fn conv_fwd_case<B: Backend>(c: &mut Checker<B>, g: &Conv2dGeom, bias: bool, residual: bool, act: Act) {
    let name = format!("conv2d {} bias={bias} residual={residual} {act:?}", label(g));
    c.case(name, |c| {
        let (x, xc) = c.rand_pair(g.input().numel())?;
        let (w, wc) = c.rand_pair(g.weight_len())?;
        let b = rand_opt(c, bias, g.c_out)?;
        let r = rand_opt(c, residual, g.output().numel())?;
        let (mut y, mut yc) = c.output(g.output().numel())?;
        c.b.conv2d(g, &x, &w, under_test::<B>(&b), under_test::<B>(&r), act, &mut y)?;
        c.cpu
            .conv2d(g, &xc, &wc, reference::<B>(&b), reference::<B>(&r), act, &mut yc)?;
        c.close("y", &y, &yc, Tol::sum_of(g.c_in * g.kh * g.kw))
    });
}

fn conv_bwd_input_case<B: Backend>(c: &mut Checker<B>, g: &Conv2dGeom) {
    c.case(format!("conv2d_bwd_input {}", label(g)), |c| {
        let (dy, dyc) = c.rand_pair(g.output().numel())?;
        let (w, wc) = c.rand_pair(g.weight_len())?;
        let (mut dx, mut dxc) = c.output(g.input().numel())?;
        c.b.conv2d_bwd_input(g, &dy, &w, &mut dx)?;
        c.cpu.conv2d_bwd_input(g, &dyc, &wc, &mut dxc)?;
        c.close("dx", &dx, &dxc, Tol::sum_of(g.c_out * g.kh * g.kw))
    });
}

fn conv_bwd_weight_case<B: Backend>(c: &mut Checker<B>, g: &Conv2dGeom, with_db: bool) {
    c.case(format!("conv2d_bwd_weight {} db={with_db}", label(g)), |c| {
        let (x, xc) = c.rand_pair(g.input().numel())?;
        let (dy, dyc) = c.rand_pair(g.output().numel())?;
        let (mut dw, mut dwc) = c.output(g.weight_len())?;
        let mut db = if with_db { Some(c.output(g.c_out)?) } else { None };
        let (db_t, db_c) = match db.as_mut() {
            Some((t, r)) => (Some(t), Some(r)),
            None => (None, None),
        };
        c.b.conv2d_bwd_weight(g, &x, &dy, &mut dw, db_t)?;
        c.cpu.conv2d_bwd_weight(g, &xc, &dyc, &mut dwc, db_c)?;
        let tol = Tol::sum_of(g.n * g.out_h() * g.out_w());
        c.close("dw", &dw, &dwc, tol)?;
        if let Some((t, r)) = &db {
            c.close("db", t, r, tol)?;
        }
        Ok(())
    });
}

fn convt_fwd_case<B: Backend>(c: &mut Checker<B>, g: &ConvT2dGeom, bias: bool) {
    c.case(format!("conv_transpose2d {} bias={bias}", label_t(g)), |c| {
        let (x, xc) = c.rand_pair(g.input().numel())?;
        let (w, wc) = c.rand_pair(g.weight_len())?;
        let b = rand_opt(c, bias, g.c_out)?;
        let (mut y, mut yc) = c.output(g.output().numel())?;
        c.b.conv_transpose2d(g, &x, &w, under_test::<B>(&b), &mut y)?;
        c.cpu.conv_transpose2d(g, &xc, &wc, reference::<B>(&b), &mut yc)?;
        c.close("y", &y, &yc, Tol::sum_of(g.c_in * g.kh * g.kw))
    });
}

fn convt_bwd_input_case<B: Backend>(c: &mut Checker<B>, g: &ConvT2dGeom) {
    c.case(format!("conv_transpose2d_bwd_input {}", label_t(g)), |c| {
        let (dy, dyc) = c.rand_pair(g.output().numel())?;
        let (w, wc) = c.rand_pair(g.weight_len())?;
        let (mut dx, mut dxc) = c.output(g.input().numel())?;
        c.b.conv_transpose2d_bwd_input(g, &dy, &w, &mut dx)?;
        c.cpu.conv_transpose2d_bwd_input(g, &dyc, &wc, &mut dxc)?;
        c.close("dx", &dx, &dxc, Tol::sum_of(g.c_out * g.kh * g.kw))
    });
}

fn convt_bwd_weight_case<B: Backend>(c: &mut Checker<B>, g: &ConvT2dGeom, with_db: bool) {
    c.case(
        format!("conv_transpose2d_bwd_weight {} db={with_db}", label_t(g)),
        |c| {
            let (x, xc) = c.rand_pair(g.input().numel())?;
            let (dy, dyc) = c.rand_pair(g.output().numel())?;
            let (mut dw, mut dwc) = c.output(g.weight_len())?;
            let mut db = if with_db { Some(c.output(g.c_out)?) } else { None };
            let (db_t, db_c) = match db.as_mut() {
                Some((t, r)) => (Some(t), Some(r)),
                None => (None, None),
            };
            c.b.conv_transpose2d_bwd_weight(g, &x, &dy, &mut dw, db_t)?;
            c.cpu.conv_transpose2d_bwd_weight(g, &xc, &dyc, &mut dwc, db_c)?;
            c.close("dw", &dw, &dwc, Tol::sum_of(g.n * g.h * g.w))?;
            if let Some((t, r)) = &db {
                c.close("db", t, r, Tol::sum_of(g.n * g.out_h() * g.out_w()))?;
            }
            Ok(())
        },
    );
}

/// Calls that both backends must refuse with the same message.
fn conv_errors<B: Backend>(c: &mut Checker<B>) {
    let g = conv_geom(CONVS[0]);
    c.case("conv errors", |c| {
        let (x, xc) = c.rand_pair(g.input().numel())?;
        let (w, wc) = c.rand_pair(g.weight_len())?;
        let (bias, biasc) = c.rand_pair(g.c_out + 1)?;
        let out = g.output().numel();
        let (mut y, mut yc) = c.output(out)?;
        let (mut short, mut shortc) = c.output(out - 1)?;
        let got = c.b.conv2d(&g, &x, &w, None, None, Act::Identity, &mut short);
        let want = c.cpu.conv2d(&g, &xc, &wc, None, None, Act::Identity, &mut shortc);
        c.same_error("conv2d y one short", got, want);
        let got = c.b.conv2d(&g, &x, &w, Some(&bias), None, Act::Identity, &mut y);
        let want = c.cpu.conv2d(&g, &xc, &wc, Some(&biasc), None, Act::Identity, &mut yc);
        c.same_error("conv2d bias one long", got, want);
        let got = c.b.conv2d(&g, &x, &w, None, None, Act::LeakyRelu(0.0), &mut y);
        let want = c.cpu.conv2d(&g, &xc, &wc, None, None, Act::LeakyRelu(0.0), &mut yc);
        c.same_error("conv2d leaky slope 0", got, want);
        let bad = Conv2dGeom { kh: 20, ..g };
        let got = c.b.conv2d(&bad, &x, &w, None, None, Act::Identity, &mut y);
        let want = c.cpu.conv2d(&bad, &xc, &wc, None, None, Act::Identity, &mut yc);
        c.same_error("conv2d kernel larger than the padded input", got, want);
        let (dy, dyc) = c.rand_pair(out)?;
        let (mut dx, mut dxc) = c.output(g.input().numel() - 1)?;
        let got = c.b.conv2d_bwd_input(&g, &dy, &w, &mut dx);
        let want = c.cpu.conv2d_bwd_input(&g, &dyc, &wc, &mut dxc);
        c.same_error("conv2d_bwd_input dx one short", got, want);
        let (mut dw, mut dwc) = c.output(g.weight_len())?;
        let (mut db, mut dbc) = c.output(g.c_out - 1)?;
        let got = c.b.conv2d_bwd_weight(&g, &x, &dy, &mut dw, Some(&mut db));
        let want = c.cpu.conv2d_bwd_weight(&g, &xc, &dyc, &mut dwc, Some(&mut dbc));
        c.same_error("conv2d_bwd_weight db one short", got, want);

        let t = convt_geom(CONVTS[1]);
        let (tx, txc) = c.rand_pair(t.input().numel())?;
        let (tw, twc) = c.rand_pair(t.weight_len())?;
        let (mut ty, mut tyc) = c.output(t.output().numel())?;
        let bad = ConvT2dGeom { output_padding: 2, ..t };
        let got = c.b.conv_transpose2d(&bad, &tx, &tw, None, &mut ty);
        let want = c.cpu.conv_transpose2d(&bad, &txc, &twc, None, &mut tyc);
        c.same_error("conv_transpose2d output_padding = stride", got, want);
        let (mut tdw, mut tdwc) = c.output(t.weight_len() + 1)?;
        let got = c.b.conv_transpose2d_bwd_weight(&t, &tx, &ty, &mut tdw, None);
        let want = c.cpu.conv_transpose2d_bwd_weight(&t, &txc, &tyc, &mut tdwc, None);
        c.same_error("conv_transpose2d_bwd_weight dw one long", got, want);
        Ok(())
    });
}

pub(crate) fn conv<B: Backend>(c: &mut Checker<B>) {
    let acts = [Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];
    for (i, &t) in CONVS.iter().enumerate() {
        let g = conv_geom(t);
        conv_fwd_case(c, &g, false, false, Act::Identity);
        conv_fwd_case(c, &g, true, true, acts[i % 3]);
        if i % 4 == 0 {
            conv_fwd_case(c, &g, true, false, acts[(i + 1) % 3]);
            conv_fwd_case(c, &g, false, true, Act::Identity);
        }
        conv_bwd_input_case(c, &g);
        conv_bwd_weight_case(c, &g, i % 2 == 0);
        if i % 4 == 1 {
            conv_bwd_weight_case(c, &g, true);
        }
    }
    for (i, &t) in GRADS.iter().enumerate() {
        let g = conv_geom(t);
        conv_bwd_input_case(c, &g);
        conv_bwd_weight_case(c, &g, i % 3 == 0);
    }
    for (i, &t) in CONVTS.iter().enumerate() {
        let g = convt_geom(t);
        convt_fwd_case(c, &g, true);
        if i < 2 || g.c_out <= 4 {
            convt_fwd_case(c, &g, false);
        }
        convt_bwd_input_case(c, &g);
        convt_bwd_weight_case(c, &g, i % 2 == 0);
        if i == 1 {
            convt_bwd_weight_case(c, &g, true);
        }
    }
    conv_errors(c);
}

#[cfg(test)]
mod tests {
    use super::{conv_geom, CONVS, CONVTS};
    use crate::ops::conv_region::{plan, Pass, TILES};
    use std::collections::BTreeSet;

    /// The fast cases run every region kernel, unsplit and split with at least two factors,
    /// and regions that no tap reaches (written by the sum kernel alone).
    #[test]
    fn the_cases_reach_every_region_path() {
        let mut kernels = BTreeSet::new();
        let mut splits = BTreeSet::new();
        let mut empty = 0;
        let geoms = CONVS.iter().map(|&t| conv_geom(t));
        let adjoint = CONVTS.iter().map(|&t| super::convt_geom(t).as_conv());
        for g in geoms.chain(adjoint) {
            for pass in [Pass::Forward, Pass::InputGrad] {
                for l in plan(&g, pass) {
                    match l.tile {
                        Some(t) => {
                            kernels.insert(t.kernel(pass, l.vec));
                            splits.insert(l.splits);
                        }
                        None => empty += 1,
                    }
                }
            }
        }
        for t in TILES {
            assert!(
                kernels.contains(t.forward) && kernels.contains(t.input_grad),
                "{t:?}: {kernels:?}"
            );
        }
        assert!(
            splits.contains(&1) && splits.iter().filter(|&&s| s > 1).count() >= 2,
            "{splits:?}"
        );
        assert!(empty > 0);
    }
}
