//! NaN and ±∞ through every op family, as PyTorch treats them: a NaN in an input, a weight or
//! a statistic reaches every output that depends on it (ReLU, max-pool, softmax and batch norm
//! included), and nothing maps it to a number. Each case checks the backend under test *and*
//! the CPU reference against the values PyTorch gives (written out below from PyTorch's
//! definitions), then the two backends against each other.
//!
//! The rules, from PyTorch (ATen): `relu(NaN) = NaN` (`clamp_min`), ReLU's backward is
//! `threshold_backward(dy, y, 0) = y <= 0 ? 0 : dy` (a NaN output passes `dy`); max-pool takes
//! a value over the running maximum when it is larger or NaN (so the last NaN of a window wins,
//! and its backward routes `dy` there); the batch variance of a channel holding NaN or ±∞ is
//! NaN; `sqrt` of a negative running variance is NaN; softmax of a row holding NaN or +∞ is NaN.

use super::{Checker, Tol};
use mep_tensor::prelude::*;
use mep_tensor::{Act, AdamParams, Conv2dGeom, CpuBuf, Nchw, Pool2dGeom, Result, SgdParams};

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

/// What PyTorch gives for one element.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    /// NaN.
    Nan,
    /// This value (±∞ exactly; finite within the case's tolerance).
    Is(f32),
    /// A finite number (its value is checked against the CPU reference).
    Finite,
}

impl Want {
    fn holds(self, v: f32, tol: Tol) -> bool {
        match self {
            Want::Nan => v.is_nan(),
            Want::Finite => v.is_finite(),
            Want::Is(w) if w.is_infinite() => v == w,
            Want::Is(w) => v.is_finite() && (v - w).abs() <= tol.atol + tol.rtol * w.abs(),
        }
    }
}

/// `Want::Is(v)` for a number, `Want::Nan` for NaN.
fn is(v: f32) -> Want {
    if v.is_nan() {
        Want::Nan
    } else {
        Want::Is(v)
    }
}

impl<B: Backend> Checker<'_, B> {
    /// Both backends' `arg` against PyTorch's `want`, then against each other.
    pub(crate) fn expect(
        &mut self,
        arg: &str,
        got: &B::Buf,
        reference: &CpuBuf,
        want: &[Want],
        tol: Tol,
    ) -> Result<()> {
        let g = self.b.download(got)?;
        let r = self.cpu.download(reference)?;
        let name = self.b.name();
        for (who, vals) in [(name, &g), ("the CPU reference", &r)] {
            let bad: Vec<String> = vals
                .iter()
                .zip(want)
                .enumerate()
                .filter(|(_, (v, w))| !w.holds(**v, tol))
                .take(4)
                .map(|(i, (v, w))| format!("[{i}] {v} where PyTorch gives {w:?}"))
                .collect();
            if vals.len() != want.len() || !bad.is_empty() {
                self.fail(format!(
                    "{arg} on {who}: {} values for {} expected; {}",
                    vals.len(),
                    want.len(),
                    bad.join(", ")
                ));
            }
        }
        self.close_slices(arg, &g, &r, tol);
        Ok(())
    }
}

pub(crate) fn non_finite<B: Backend>(c: &mut Checker<B>) {
    pointwise(c);
    conv(c);
    linear(c);
    batch_norm(c);
    pool(c);
    softmax(c);
    optim(c);
}

/// Inputs cycling through NaN, ±∞, ±0 and ordinary values, at sizes past the vector widths.
fn specials(n: usize) -> Vec<f32> {
    const P: [f32; 7] = [NAN, INF, -INF, 0.5, -0.5, 0.0, 2.0];
    (0..n).map(|i| P[(i * 3 + i / 7) % 7]).collect()
}

fn pointwise<B: Backend>(c: &mut Checker<B>) {
    for n in [7, 257, 1031] {
        for act in [Act::Identity, Act::Relu, Act::LeakyRelu(0.3), Act::Sigmoid] {
            c.case(format!("non-finite activation {act:?} n={n}"), |c| {
                let x = specials(n);
                let want: Vec<Want> = x
                    .iter()
                    .map(|&v| match act {
                        _ if v.is_nan() => Want::Nan,
                        Act::Identity => is(v),
                        Act::Relu => is(if v < 0.0 { 0.0 } else { v }),
                        Act::LeakyRelu(s) => is(if v > 0.0 { v } else { s * v }),
                        Act::Sigmoid => is(1.0 / (1.0 + (-v).exp())),
                    })
                    .collect();
                let (xb, xc) = c.upload(&x)?;
                let (mut yb, mut yc) = c.output(n)?;
                c.b.activation(act, &xb, &mut yb)?;
                c.cpu.activation(act, &xc, &mut yc)?;
                c.expect("y", &yb, &yc, &want, Tol::POINTWISE)?;
                // dy holds NaN too; y = act(x) as PyTorch has it.
                let dy: Vec<f32> = (0..n).map(|i| if i % 5 == 4 { NAN } else { 0.25 + i as f32 }).collect();
                let y = c.cpu.download(&yc)?;
                let want: Vec<Want> = y
                    .iter()
                    .zip(&dy)
                    .map(|(&y, &g)| match act {
                        Act::Identity => is(g),
                        // threshold_backward(dy, y, 0): a NaN y passes dy.
                        Act::Relu => is(if y <= 0.0 { 0.0 } else { g }),
                        // leaky_relu_backward(dy, x, slope): x > 0 ? dy : dy·slope (y has x's sign).
                        Act::LeakyRelu(s) => is(if y > 0.0 { g } else { g * s }),
                        Act::Sigmoid => is(g * y * (1.0 - y)),
                    })
                    .collect();
                let (dyb, dyc) = c.upload(&dy)?;
                let (mut dxb, mut dxc) = c.output(n)?;
                c.b.activation_bwd(act, &yb, &dyb, &mut dxb)?;
                c.cpu.activation_bwd(act, &yc, &dyc, &mut dxc)?;
                c.expect("dx", &dxb, &dxc, &want, Tol::POINTWISE)
            });
        }
        c.case(format!("non-finite add, axpy, scale, dot, norm n={n}"), |c| {
            let a = specials(n);
            let d: Vec<f32> = a.iter().rev().copied().collect();
            let (ab, ac) = c.upload(&a)?;
            let (db, dc) = c.upload(&d)?;
            let (mut yb, mut yc) = c.output(n)?;
            c.b.add(&ab, &db, &mut yb)?;
            c.cpu.add(&ac, &dc, &mut yc)?;
            let sum: Vec<Want> = a.iter().zip(&d).map(|(x, y)| is(x + y)).collect();
            c.expect("add", &yb, &yc, &sum, Tol::POINTWISE)?;
            c.b.axpy(-0.5, &ab, &mut yb)?;
            c.cpu.axpy(-0.5, &ac, &mut yc)?;
            let axpy: Vec<Want> = a.iter().zip(&d).map(|(x, y)| is((x + y) + -0.5 * x)).collect();
            c.expect("axpy", &yb, &yc, &axpy, Tol::POINTWISE)?;
            c.b.scale(2.0, &mut yb)?;
            c.cpu.scale(2.0, &mut yc)?;
            let scaled: Vec<Want> = a.iter().zip(&d).map(|(x, y)| is(2.0 * ((x + y) + -0.5 * x))).collect();
            c.expect("scale", &yb, &yc, &scaled, Tol::POINTWISE)?;
            for (what, got) in [
                ("dot", c.b.dot(&ab, &db)?),
                ("norm", c.b.norm(&ab)?),
                ("dot on the CPU", c.cpu.dot(&ac, &dc)?),
                ("norm on the CPU", c.cpu.norm(&ac)?),
            ] {
                if !got.is_nan() {
                    c.fail(format!("{what} of a vector holding NaN is {got}, PyTorch gives NaN"));
                }
            }
            let inf: Vec<f32> = (0..n).map(|i| if i == n / 2 { -INF } else { 1.0 }).collect();
            let (ib, ic) = c.upload(&inf)?;
            for (what, got) in [("norm", c.b.norm(&ib)?), ("norm on the CPU", c.cpu.norm(&ic)?)] {
                if got != f64::INFINITY {
                    c.fail(format!("{what} of a vector holding −∞ is {got}, PyTorch gives inf"));
                }
            }
            Ok(())
        });
    }
}

fn geom(n: usize, c_in: usize, h: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    let input = Nchw {
        n,
        c: c_in,
        h,
        w: h + 1,
    };
    Conv2dGeom::square("non-finite conv case", input, c_out, k, stride, pad).expect("a valid geometry")
}

/// Geometries reaching the CPU's 1×1, im2col, strided and stem paths.
fn conv_geoms() -> Vec<Conv2dGeom> {
    vec![
        geom(2, 3, 8, 5, 3, 1, 1),
        geom(2, 4, 6, 6, 1, 1, 0),
        geom(3, 3, 9, 4, 3, 2, 1),
        geom(2, 3, 16, 4, 7, 2, 3),
        geom(2, 8, 20, 16, 3, 1, 1),
        geom(5, 16, 4, 32, 1, 2, 0),
    ]
}

/// Whether output row or column `o` of a window of `k` at `stride`, `pad` reads input `i`.
fn reads(o: usize, i: usize, k: usize, stride: usize, pad: usize) -> bool {
    let start = (o * stride) as isize - pad as isize;
    (start..start + k as isize).contains(&(i as isize))
}

fn conv<B: Backend>(c: &mut Checker<B>) {
    for g in conv_geoms() {
        let (o, oh, ow) = (g.output(), g.out_h(), g.out_w());
        let label = format!(
            "{}x{}x{}x{}->{} k{} s{} p{}",
            g.n, g.c_in, g.h, g.w, g.c_out, g.kh, g.stride, g.pad
        );
        let tol = Tol::sum_of(g.c_in * g.kh * g.kw);
        // One NaN weight (output channel 1, input channel 0, the window's centre): channel 1 is
        // NaN wherever the centre tap reads the input (everywhere with these pads), through the
        // fused bias, residual and ReLU.
        c.case(format!("conv2d NaN weight, fused bias+residual+ReLU {label}"), |c| {
            let x = c.rand(g.input().numel());
            let mut w = c.rand(g.weight_len());
            let centre = (g.kh / 2) * g.kw + g.kw / 2;
            w[g.c_in * g.kh * g.kw + centre] = NAN;
            let (bias, res) = (c.rand(g.c_out), c.rand(o.numel()));
            let (xb, xc) = c.upload(&x)?;
            let (wb, wc) = c.upload(&w)?;
            let (bb, bc) = c.upload(&bias)?;
            let (rb, rc) = c.upload(&res)?;
            let (mut yb, mut yc) = c.output(o.numel())?;
            c.b.conv2d(&g, &xb, &wb, Some(&bb), Some(&rb), Act::Relu, &mut yb)?;
            c.cpu.conv2d(&g, &xc, &wc, Some(&bc), Some(&rc), Act::Relu, &mut yc)?;
            let want: Vec<Want> = (0..o.numel())
                .map(|i| {
                    let (ch, r) = ((i / (oh * ow)) % g.c_out, i % (oh * ow));
                    let (oy, ox) = (r / ow, r % ow);
                    let centre_in = (oy * g.stride + g.kh / 2).checked_sub(g.pad).is_some_and(|y| y < g.h)
                        && (ox * g.stride + g.kw / 2).checked_sub(g.pad).is_some_and(|x| x < g.w);
                    if ch == 1 && centre_in {
                        Want::Nan
                    } else {
                        Want::Finite
                    }
                })
                .collect();
            c.expect("y", &yb, &yc, &want, tol)
        });
        // One NaN pixel of image 0: every output of image 0 whose window holds it is NaN, in
        // every channel; the other images stay finite.
        c.case(format!("conv2d NaN pixel, fused ReLU {label}"), |c| {
            let mut x = c.rand(g.input().numel());
            let (py, px) = (g.h / 2, g.w / 2);
            x[py * g.w + px] = NAN; // image 0, channel 0
            let w = c.rand(g.weight_len());
            let (xb, xc) = c.upload(&x)?;
            let (wb, wc) = c.upload(&w)?;
            let (mut yb, mut yc) = c.output(o.numel())?;
            c.b.conv2d(&g, &xb, &wb, None, None, Act::Relu, &mut yb)?;
            c.cpu.conv2d(&g, &xc, &wc, None, None, Act::Relu, &mut yc)?;
            let want: Vec<Want> = (0..o.numel())
                .map(|i| {
                    let (img, r) = (i / (g.c_out * oh * ow), i % (oh * ow));
                    let hit = img == 0
                        && reads(r / ow, py, g.kh, g.stride, g.pad)
                        && reads(r % ow, px, g.kw, g.stride, g.pad);
                    if hit {
                        Want::Nan
                    } else {
                        Want::Finite
                    }
                })
                .collect();
            c.expect("y", &yb, &yc, &want, tol)?;
            // The weight gradient of input channel 0 meets the NaN pixel through every tap that
            // reads it; dy is finite, so the other input channels' gradients stay finite.
            let dy = c.rand(o.numel());
            let (dyb, dyc) = c.upload(&dy)?;
            let (mut dwb, mut dwc) = c.output(g.weight_len())?;
            let (mut dbb, mut dbc) = c.output(g.c_out)?;
            c.b.conv2d_bwd_weight(&g, &xb, &dyb, &mut dwb, Some(&mut dbb))?;
            c.cpu.conv2d_bwd_weight(&g, &xc, &dyc, &mut dwc, Some(&mut dbc))?;
            let kk = g.kh * g.kw;
            let want: Vec<Want> = (0..g.weight_len())
                .map(|i| {
                    let (ci, t) = ((i / kk) % g.c_in, i % kk);
                    let (ky, kx) = (t / g.kw, t % g.kw);
                    let tap_reads = (0..oh).any(|oy| (oy * g.stride + ky).checked_sub(g.pad) == Some(py))
                        && (0..ow).any(|ox| (ox * g.stride + kx).checked_sub(g.pad) == Some(px));
                    if ci == 0 && tap_reads {
                        Want::Nan
                    } else {
                        Want::Finite
                    }
                })
                .collect();
            c.expect("dw", &dwb, &dwc, &want, tol)?;
            c.expect(
                "db",
                &dbb,
                &dbc,
                &vec![Want::Finite; g.c_out],
                Tol::sum_of(oh * ow * g.n),
            )
        });
    }
}

fn linear<B: Backend>(c: &mut Checker<B>) {
    for (n, k, m) in [(3, 5, 4), (9, 70, 33), (67, 130, 10)] {
        c.case(format!("linear NaN weight and NaN input n={n} k={k} m={m}"), |c| {
            let mut x = c.rand(n * k);
            let mut w = c.rand(m * k);
            x[k + 2] = NAN; // row 1
            w[2 * k + k - 1] = INF; // output 2 of every row: ±∞ or NaN
            let bias = c.rand(m);
            let (xb, xc) = c.upload(&x)?;
            let (wb, wc) = c.upload(&w)?;
            let (bb, bc) = c.upload(&bias)?;
            let (mut yb, mut yc) = c.output(n * m)?;
            c.b.linear(n, k, m, &xb, &wb, Some(&bb), &mut yb)?;
            c.cpu.linear(n, k, m, &xc, &wc, Some(&bc), &mut yc)?;
            let want: Vec<Want> = (0..n * m)
                .map(|i| {
                    let (row, col) = (i / m, i % m);
                    if row == 1 {
                        Want::Nan
                    } else if col == 2 {
                        is(INF * x[row * k + k - 1].signum())
                    } else {
                        Want::Finite
                    }
                })
                .collect();
            c.expect("y", &yb, &yc, &want, Tol::sum_of(k))
        });
    }
}

fn batch_norm<B: Backend>(c: &mut Checker<B>) {
    for s in [
        Nchw { n: 2, c: 3, h: 5, w: 4 },
        Nchw {
            n: 4,
            c: 2,
            h: 32,
            w: 33,
        },
    ] {
        let (hw, len) = (s.hw(), s.numel());
        let ch_of = move |i: usize| (i / hw) % s.c;
        for act in [Act::Identity, Act::Relu] {
            // A negative running variance (channel 1) and a NaN input (image 0, channel 0).
            c.case(
                format!("batch_norm_infer negative variance, NaN input {s:?} {act:?}"),
                |c| {
                    let mut x = c.rand(len);
                    x[3] = NAN;
                    let (gamma, beta, mean) = (c.rand_in(s.c, 0.5, 1.5), c.rand(s.c), c.rand(s.c));
                    let mut var = c.rand_in(s.c, 0.5, 1.5);
                    var[1] = -0.5;
                    let bufs = [&x, &gamma, &beta, &mean, &var].map(|v| c.upload(v));
                    let [x, gamma, beta, mean, var] = bufs;
                    let (x, gamma, beta, mean, var) = (x?, gamma?, beta?, mean?, var?);
                    let (mut yb, mut yc) = c.output(len)?;
                    c.b.batch_norm_infer(&s, &x.0, &gamma.0, &beta.0, &mean.0, &var.0, 1e-5, act, &mut yb)?;
                    c.cpu
                        .batch_norm_infer(&s, &x.1, &gamma.1, &beta.1, &mean.1, &var.1, 1e-5, act, &mut yc)?;
                    let want: Vec<Want> = (0..len)
                        .map(|i| {
                            if i == 3 || ch_of(i) == 1 {
                                Want::Nan
                            } else {
                                Want::Finite
                            }
                        })
                        .collect();
                    c.expect("y", &yb, &yc, &want, Tol::POINTWISE)
                },
            );
            // NaN in channel 0 and +∞ in channel 1 (not its first value): the batch mean or
            // variance of each is NaN, so is every output of the channel and its running
            // statistics (PyTorch's var of a channel holding ∞ is NaN); channel 2 is finite.
            c.case(format!("batch_norm_train NaN and inf inputs {s:?} {act:?}"), |c| {
                let mut x = c.rand(len);
                x[hw / 2] = NAN;
                x[hw + hw / 2] = INF;
                let (gamma, beta) = (c.rand_in(s.c, 0.5, 1.5), c.rand(s.c));
                let (xb, xc) = c.upload(&x)?;
                let (gb, gc) = c.upload(&gamma)?;
                let (bb, bc) = c.upload(&beta)?;
                let (mut rmb, mut rmc) = c.upload(&vec![0.0; s.c])?;
                let (mut rvb, mut rvc) = c.upload(&vec![1.0; s.c])?;
                let (mut yb, mut yc) = c.output(len)?;
                let (mut smb, mut smc) = c.output(s.c)?;
                let (mut sib, mut sic) = c.output(s.c)?;
                c.b.batch_norm_train(
                    &s, &xb, &gb, &bb, &mut rmb, &mut rvb, 0.1, 1e-5, act, &mut yb, &mut smb, &mut sib,
                )?;
                c.cpu.batch_norm_train(
                    &s, &xc, &gc, &bc, &mut rmc, &mut rvc, 0.1, 1e-5, act, &mut yc, &mut smc, &mut sic,
                )?;
                let per_ch = |ch: usize| if ch < 2 { Want::Nan } else { Want::Finite };
                let want: Vec<Want> = (0..len).map(|i| per_ch(ch_of(i))).collect();
                c.expect("y", &yb, &yc, &want, Tol::sum_of(s.n * hw))?;
                let want: Vec<Want> = (0..s.c).map(per_ch).collect();
                c.expect("running_var", &rvb, &rvc, &want, Tol::sum_of(s.n * hw))?;
                c.expect("save_invstd", &sib, &sic, &want, Tol::sum_of(s.n * hw))?;
                // The mean of channel 1 is +∞, not NaN.
                let want: Vec<Want> = (0..s.c)
                    .map(|ch| match ch {
                        0 => Want::Nan,
                        1 => Want::Is(INF),
                        _ => Want::Finite,
                    })
                    .collect();
                c.expect("save_mean", &smb, &smc, &want, Tol::sum_of(s.n * hw))
            });
        }
    }
}

/// PyTorch's max-pool scan over one window: (index within the plane, value).
fn torch_window_max(x: &[f32], g: &Pool2dGeom, oy: usize, ox: usize) -> (usize, f32) {
    let w = g.input.w;
    let (mut arg, mut best) = (usize::MAX, -INF);
    for iy in 0..g.input.h {
        for ix in 0..w {
            if reads(oy, iy, g.k, g.stride, g.pad) && reads(ox, ix, g.k, g.stride, g.pad) {
                let v = x[iy * w + ix];
                if arg == usize::MAX {
                    arg = iy * w + ix;
                }
                if v > best || v.is_nan() {
                    (arg, best) = (iy * w + ix, v);
                }
            }
        }
    }
    (arg, best)
}

fn pool<B: Backend>(c: &mut Checker<B>) {
    let geoms = [
        Pool2dGeom {
            input: Nchw { n: 2, c: 3, h: 9, w: 8 },
            k: 3,
            stride: 2,
            pad: 1,
        },
        Pool2dGeom {
            input: Nchw {
                n: 1,
                c: 2,
                h: 40,
                w: 70,
            },
            k: 2,
            stride: 2,
            pad: 0,
        },
    ];
    for g in geoms {
        c.case(
            format!("max_pool2d NaN and inf {:?} k{} s{} p{}", g.input, g.k, g.stride, g.pad),
            |c| {
                let s = g.input;
                let hw = s.hw();
                let mut x = c.rand(s.numel());
                // Two NaNs in one window (the last wins), a +∞, a −∞, a NaN in another plane.
                x[s.w + 1] = NAN;
                x[2 * s.w + 2] = NAN;
                x[5 * s.w + 5] = INF;
                x[4 * s.w] = -INF;
                x[hw + 3 * s.w + 4] = NAN;
                let (oh, ow) = (g.out_h(), g.out_w());
                let plane_out = oh * ow;
                let mut want_y = Vec::new();
                let mut want_dx = vec![0.0f32; s.numel()];
                let dy: Vec<f32> = (0..s.n * s.c * plane_out).map(|i| 1.0 + (i % 13) as f32).collect();
                for p in 0..s.n * s.c {
                    let xp = &x[p * hw..(p + 1) * hw];
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (arg, v) = torch_window_max(xp, &g, oy, ox);
                            want_y.push(is(v));
                            want_dx[p * hw + arg] += dy[p * plane_out + oy * ow + ox];
                        }
                    }
                }
                let (xb, xc) = c.upload(&x)?;
                let (mut yb, mut yc) = c.output(s.n * s.c * plane_out)?;
                c.b.max_pool2d(&g, &xb, &mut yb)?;
                c.cpu.max_pool2d(&g, &xc, &mut yc)?;
                c.expect("y", &yb, &yc, &want_y, Tol::POINTWISE)?;
                let (dyb, dyc) = c.upload(&dy)?;
                let (mut dxb, mut dxc) = c.output(s.numel())?;
                c.b.max_pool2d_bwd(&g, &xb, &dyb, &mut dxb)?;
                c.cpu.max_pool2d_bwd(&g, &xc, &dyc, &mut dxc)?;
                let want: Vec<Want> = want_dx.into_iter().map(is).collect();
                c.expect("dx", &dxb, &dxc, &want, Tol::POINTWISE)?;
                // Global average pooling: the planes holding NaN, or +∞ and −∞, are NaN.
                let (mut ab, mut ac) = c.output(s.n * s.c)?;
                c.b.global_avg_pool(&s, &xb, &mut ab)?;
                c.cpu.global_avg_pool(&s, &xc, &mut ac)?;
                let want: Vec<Want> = (0..s.n * s.c)
                    .map(|p| {
                        let sum: f64 = x[p * hw..(p + 1) * hw].iter().map(|&v| v as f64).sum();
                        is((sum / hw as f64) as f32)
                    })
                    .collect();
                c.expect("global_avg_pool", &ab, &ac, &want, Tol::sum_of(hw))
            },
        );
    }
}

fn softmax<B: Backend>(c: &mut Checker<B>) {
    for classes in [10, 1000] {
        c.case(format!("softmax_cross_entropy NaN and inf logits c={classes}"), |c| {
            // Rows: a NaN logit; a +∞ logit; a −∞ non-target logit; a −∞ target logit; finite.
            let n = 5;
            let mut l = c.rand(n * classes);
            l[3] = NAN;
            l[classes + 7] = INF;
            l[2 * classes + 1] = -INF;
            l[3 * classes + 4] = -INF;
            let targets = [0, 1, 2, 4, 3];
            let (lb, lc) = c.upload(&l)?;
            let (mut pb, mut pc) = c.output(n * classes)?;
            let (mut sb, mut sc) = c.output(n)?;
            c.b.softmax_cross_entropy(n, classes, &lb, &targets, &mut pb, &mut sb)?;
            c.cpu
                .softmax_cross_entropy(n, classes, &lc, &targets, &mut pc, &mut sc)?;
            let want: Vec<Want> = (0..n * classes)
                .map(|i| match (i / classes, i % classes) {
                    (0 | 1, _) => Want::Nan,
                    (2, 1) | (3, 4) => Want::Is(0.0),
                    _ => Want::Finite,
                })
                .collect();
            c.expect("probs", &pb, &pc, &want, Tol::POINTWISE)?;
            let want = [Want::Nan, Want::Nan, Want::Finite, Want::Is(INF), Want::Finite];
            c.expect("losses", &sb, &sc, &want, Tol::sum_of(classes))
        });
    }
}

fn optim<B: Backend>(c: &mut Checker<B>) {
    let n = 1031;
    c.case("adam and sgd with a NaN gradient and an inf parameter", |c| {
        let (mut p, mut g) = (c.rand(n), c.rand(n));
        g[5] = NAN;
        p[700] = INF;
        let want: Vec<Want> = (0..n)
            .map(|i| match i {
                5 => Want::Nan,
                700 => Want::Is(INF),
                _ => Want::Finite,
            })
            .collect();
        let (mut pb, mut pc) = c.upload(&p)?;
        let (gb, gc) = c.upload(&g)?;
        let (mut mb, mut mc) = c.upload(&vec![0.0; n])?;
        let (mut vb, mut vc) = c.upload(&vec![0.0; n])?;
        let h = AdamParams {
            step: 1,
            ..AdamParams::default()
        };
        c.b.adam_step(&h, &mut pb, &gb, &mut mb, &mut vb)?;
        c.cpu.adam_step(&h, &mut pc, &gc, &mut mc, &mut vc)?;
        c.expect("adam param", &pb, &pc, &want, Tol::POINTWISE)?;
        // SGD with weight decay: the ∞ parameter's decayed gradient is ∞, and p − lr·∞ = NaN.
        let (mut pb, mut pc) = c.upload(&p)?;
        let (mut bb, mut bc) = c.output(n)?;
        let h = SgdParams {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: false,
            step: 1,
        };
        c.b.sgd_step(&h, &mut pb, &gb, &mut bb)?;
        c.cpu.sgd_step(&h, &mut pc, &gc, &mut bc)?;
        let want: Vec<Want> = (0..n)
            .map(|i| match i {
                5 | 700 => Want::Nan,
                _ => Want::Finite,
            })
            .collect();
        c.expect("sgd param", &pb, &pc, &want, Tol::POINTWISE)
    });
}

#[cfg(test)]
mod tests {
    use super::super::{run_family, Family};

    /// The CPU backend against PyTorch's non-finite results (the emulated kernels and the GPU
    /// run the same cases through `run_family`).
    #[test]
    fn cpu_backend_propagates_nan_and_inf_as_pytorch() {
        if let Err(e) = run_family(&mep_tensor::CpuBackend::new(), Family::NonFinite) {
            panic!("{e}");
        }
    }
}
