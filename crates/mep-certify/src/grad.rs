//! The head's cross-entropy and its gradient with respect to the point, in f64: the yardstick
//! for f32 backends. A full-size ReLU and max-pool network's f32 input gradient is off by
//! ~1e-2 from the exact one (rounding flips activation decisions), so two f32 backends are
//! compared by how far each is from this, not by how far they are from each other.

use crate::error::{CertifyError, Result};
use crate::net::{pool_window, Batch, Net64, Op, Shortcut64};
use mep_resnet::{Cut, FoldedResNet};
use mep_tensor::Backend;

/// Per-point losses and the gradient of each point's loss with respect to that point.
#[derive(Clone, Debug)]
pub struct LossGrad64 {
    /// `CE(target_p, head(z_p))` for each point.
    pub losses: Vec<f64>,
    /// `d loss_p / d z_p`, laid out as `z`.
    pub grad: Vec<f64>,
}

/// The f64 twin of `FoldedResNet::head_loss_grad(z, cut, targets, 1.0)`: `z` holds
/// `targets.len()` points at `cut`, each of per-point `shape` (`[c, h, w]`, or `[features]`
/// at `pool`). The weights are `net`'s, widened to f64.
pub fn head_loss_grad_f64<B: Backend>(
    b: &B,
    net: &FoldedResNet<B>,
    cut: Cut,
    shape: &[usize],
    z: &[f32],
    targets: &[usize],
) -> Result<LossGrad64> {
    let net64 = Net64::new(b, net)?;
    let (op0, dims) = net64.start(cut, shape)?;
    let n = targets.len();
    let dim: usize = dims.iter().product();
    if z.len() != n * dim {
        return Err(CertifyError::Shape {
            what: format!("{n} points at cut `{cut}`"),
            expected: format!("{} values", n * dim),
            found: format!("{} values", z.len()),
        });
    }
    if let Some(&target) = targets.iter().find(|&&t| t >= net64.classes) {
        return Err(CertifyError::Target {
            target,
            classes: net64.classes,
        });
    }
    // Forward, keeping each op's input (and a shortcut's saved input's shape).
    let mut stack = vec![Batch {
        n,
        dims,
        data: z.iter().map(|&v| f64::from(v)).collect(),
    }];
    let mut inputs: Vec<(Batch, [usize; 3])> = Vec::with_capacity(net64.ops.len() - op0);
    for o in op0..net64.ops.len() {
        let top = stack.last().expect("the program keeps a top").clone();
        let saved = stack.len().checked_sub(2).map_or(top.dims, |i| stack[i].dims);
        inputs.push((top, saved));
        net64.apply(o, &mut stack)?;
    }
    let logits = stack.pop().expect("logits");
    let k = net64.classes;
    let mut losses = Vec::with_capacity(n);
    let mut dlogits = vec![0.0; n * k];
    for (p, &t) in targets.iter().enumerate() {
        let l = &logits.data[p * k..(p + 1) * k];
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = l.iter().map(|v| (v - m).exp()).sum();
        losses.push(m + sum.ln() - l[t]);
        for (j, d) in dlogits[p * k..(p + 1) * k].iter_mut().enumerate() {
            *d = (l[j] - m).exp() / sum - if j == t { 1.0 } else { 0.0 };
        }
    }
    // Backward through the program, a gradient stack mirroring the forward one.
    let mut grads = vec![Batch {
        n,
        dims: [k, 1, 1],
        data: dlogits,
    }];
    for (o, (x, saved_dims)) in (op0..net64.ops.len()).zip(&inputs).rev() {
        let g = grads.pop().expect("a gradient for every value");
        match net64.ops[o] {
            Op::Conv(i) => grads.push(net64.convs[i].transpose(&g, x.dims)?),
            Op::Relu => {
                let data = g
                    .data
                    .iter()
                    .zip(&x.data)
                    .map(|(d, v)| if *v > 0.0 { *d } else { 0.0 })
                    .collect();
                grads.push(Batch { data, ..g });
            }
            Op::MaxPool => grads.push(max_pool_bwd(x, &g)),
            Op::Save => {
                // The value was used twice: by the branch (on top) and by the shortcut.
                let mut saved = grads.pop().expect("the saved value's gradient");
                saved.data.iter_mut().zip(&g.data).for_each(|(a, b)| *a += b);
                grads.push(saved);
            }
            Op::AddShortcut(sc) => {
                let shortcut = match sc {
                    Shortcut64::Identity => g.clone(),
                    Shortcut64::Projection(i) => net64.convs[i].transpose(&g, *saved_dims)?,
                    Shortcut64::PadA { pad, subsample } => pad_a_bwd(&g, *saved_dims, pad, subsample),
                };
                grads.push(shortcut);
                grads.push(g);
            }
            Op::AvgPool => {
                let [c, h, w] = x.dims;
                let hw = h * w;
                let mut data = vec![0.0; n * c * hw];
                for (plane, d) in data.chunks_mut(hw).zip(&g.data) {
                    plane.fill(d / hw as f64);
                }
                grads.push(Batch { n, dims: x.dims, data });
            }
            Op::Linear => {
                let f = net64.features;
                let mut data = vec![0.0; n * f];
                for (p, dx) in data.chunks_mut(f).enumerate() {
                    for (j, d) in g.data[p * k..(p + 1) * k].iter().enumerate() {
                        let wj = &net64.fc_w[j * f..(j + 1) * f];
                        dx.iter_mut().zip(wj).for_each(|(a, w)| *a += d * w);
                    }
                }
                grads.push(Batch { n, dims: x.dims, data });
            }
        }
    }
    let grad = grads.pop().expect("the point's gradient").data;
    Ok(LossGrad64 { losses, grad })
}

/// The max-pool's gradient: each output's to the first maximum of its window, in the
/// forward's scan order (PyTorch's rule).
fn max_pool_bwd(x: &Batch, g: &Batch) -> Batch {
    let [_, h, w] = x.dims;
    let [_, oh, ow] = g.dims;
    let mut data = vec![0.0; x.data.len()];
    let mut win = Vec::new();
    for ((plane, dplane), gplane) in x
        .data
        .chunks(h * w)
        .zip(data.chunks_mut(h * w))
        .zip(g.data.chunks(oh * ow))
    {
        for oy in 0..oh {
            for ox in 0..ow {
                pool_window(h, w, oy, ox, &mut win);
                let mut best = win[0];
                for &i in &win[1..] {
                    if plane[i] > plane[best] {
                        best = i;
                    }
                }
                dplane[best] += gplane[oy * ow + ox];
            }
        }
    }
    Batch {
        n: x.n,
        dims: x.dims,
        data,
    }
}

/// The transpose of option A's shortcut: the padded channels drop, the subsampled positions
/// get their output's gradient.
fn pad_a_bwd(g: &Batch, dims: [usize; 3], pad: usize, subsample: bool) -> Batch {
    let [c, h, w] = dims;
    let [_, oh, ow] = g.dims;
    let s = if subsample { 2 } else { 1 };
    let (din, dout) = (c * h * w, g.data.len() / g.n.max(1));
    let mut data = vec![0.0; g.n * din];
    for (xp, gp) in data.chunks_mut(din).zip(g.data.chunks(dout)) {
        for ci in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    xp[(ci * h + s * i) * w + s * j] += gp[((pad + ci) * oh + i) * ow + j];
                }
            }
        }
    }
    Batch { n: g.n, dims, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mep_resnet::{Arch, ResNet};
    use mep_tensor::{CpuBackend, Tensor};

    fn points(len: usize) -> Vec<f32> {
        let mut r = mep_rng::SplitMix64::new(11);
        (0..len).map(|_| r.unit_f32() * 2.0 - 1.0).collect()
    }

    /// Against the CPU backend's f32 gradient (close on a small network, where few ReLUs sit
    /// near their kink) and against central differences of the f64 loss.
    #[test]
    fn matches_the_f32_backend_and_finite_differences() {
        let cpu = CpuBackend::new();
        for (arch, width, size, cuts) in [
            (Arch::ResNet20, 2, 8, vec![Cut::Input, Cut::Layer(1), Cut::Pool]),
            (Arch::ResNet18, 2, 16, vec![Cut::Input, Cut::Stem]),
        ] {
            let model = ResNet::init(&cpu, arch, width, 10, 5).unwrap();
            let net = FoldedResNet::fold(&cpu, &model).unwrap();
            let x = Tensor::from_vec(&cpu, [2, 3, size, size], points(2 * 3 * size * size)).unwrap();
            for cut in cuts {
                let z = net.encode(&cpu, &x, cut).unwrap();
                let targets = [3, 7];
                let want = net.head_loss_grad(&cpu, &z, cut, &targets, 1.0).unwrap();
                let zv = z.to_vec(&cpu).unwrap();
                let shape = &z.shape.dims()[1..];
                let got = head_loss_grad_f64(&cpu, &net, cut, shape, &zv, &targets).unwrap();
                let g32 = want.grad.to_vec(&cpu).unwrap();
                let num: f64 = got.grad.iter().zip(&g32).map(|(a, b)| (a - *b as f64).powi(2)).sum();
                let den: f64 = got.grad.iter().map(|a| a * a).sum();
                assert!((num / den).sqrt() < 1e-4, "{arch:?} {cut}: {:e}", (num / den).sqrt());
                for (a, b) in got.losses.iter().zip(&want.losses) {
                    assert!((a - *b as f64).abs() < 1e-4, "{arch:?} {cut}: loss {a} vs {b}");
                }
                // Central differences in f64 along a few coordinates of point 1 (a step small enough
                // to cross no ReLU kink).
                let dim = zv.len() / 2;
                for i in [0, dim / 3, dim - 1] {
                    let loss_at = |d: f32| {
                        let mut zp = zv.clone();
                        zp[dim + i] += d;
                        let moved = f64::from(zp[dim + i]) - f64::from(zv[dim + i]);
                        (
                            head_loss_grad_f64(&cpu, &net, cut, shape, &zp, &targets)
                                .unwrap()
                                .losses[1],
                            moved,
                        )
                    };
                    let ((up, du), (down, dd)) = (loss_at(1e-5), loss_at(-1e-5));
                    let fd = (up - down) / (du - dd);
                    let g = got.grad[dim + i];
                    assert!(
                        (fd - g).abs() < 1e-4 + 1e-3 * g.abs(),
                        "{arch:?} {cut} [{i}]: {g} vs {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn wrong_points_and_targets_are_named() {
        let cpu = CpuBackend::new();
        let model = ResNet::init(&cpu, Arch::ResNet20, 2, 10, 5).unwrap();
        let net = FoldedResNet::fold(&cpu, &model).unwrap();
        let e = head_loss_grad_f64(&cpu, &net, Cut::Input, &[3, 8, 8], &[0.0; 10], &[1]).unwrap_err();
        assert!(e.to_string().contains("192 values"), "{e}");
        let e = head_loss_grad_f64(&cpu, &net, Cut::Input, &[3, 8, 8], &[0.0; 192], &[10]).unwrap_err();
        assert!(matches!(e, CertifyError::Target { target: 10, .. }), "{e}");
    }
}
