//! Whole networks against the CPU backend: the composition of the kernels (folded convs with
//! fused epilogues, the stem's max-pool, bottlenecks, the option-A shortcut, global pooling,
//! the classifier, the loss) as `mep connect` and `mep train` use them, not each op alone.

use mep_nn::Grads;
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, Tensor};

/// How large the networks of [`networks`] are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetScale {
    /// Narrow networks on small images (for the CPU emulation): ResNet-20 of width 4 at 8×8,
    /// ResNet-50 of width 2 at 32×32.
    Small,
    /// The paper's network: ResNet-50 of full width at 224×224, and ResNet-20 of width 16 at
    /// 32×32 (for a GPU).
    Full,
}

/// Runs ResNet-20 and ResNet-50 on `b` and on the CPU backend with the same weights and
/// inputs, and compares the logits, every cut's activation, input gradients (relative L2
/// below 1e-4) and, for one ResNet-20 training step, every weight gradient (below 1e-3).
/// Then one NaN pixel in the first of two images: its logits must all be NaN on both
/// backends (PyTorch's result; a fused ReLU or a max-pool that drops NaN makes them finite),
/// the other image's finite.
/// The error lists each tensor that differs.
pub fn networks<B: Backend>(b: &B, scale: NetScale) -> Result<(), String> {
    let cpu = CpuBackend::new();
    let (r20, r50) = match scale {
        NetScale::Small => ((4, 8), (2, 32)),
        NetScale::Full => ((16, 32), (64, 224)),
    };
    let mut failures = Vec::new();
    let cases = [
        (Arch::ResNet20, r20, Cut::Layer(1)),
        (Arch::ResNet20, r20, Cut::Input),
        (Arch::ResNet50, r50, Cut::Input),
        (Arch::ResNet50, r50, Cut::Layer(1)),
    ];
    for (arch, (width, size), cut) in cases {
        let got = infer(b, arch, width, size, cut).map_err(|e| format!("{arch:?} on {}: {e}", b.name()))?;
        let want = infer(&cpu, arch, width, size, cut).map_err(|e| format!("{arch:?} on the CPU: {e}"))?;
        compare(
            &mut failures,
            &format!("{arch:?} width {width} at {size}², grad at {cut}"),
            &got,
            &want,
            1e-4,
        );
    }
    let (width, size) = r20;
    let got = train_step(b, width, size).map_err(|e| format!("training step on {}: {e}", b.name()))?;
    let want = train_step(&cpu, width, size).map_err(|e| format!("training step on the CPU: {e}"))?;
    compare(&mut failures, "ResNet20 training step", &got, &want, 1e-3);
    for (arch, (width, size)) in [(Arch::ResNet20, r20), (Arch::ResNet50, r50)] {
        for (who, logits) in [
            (b.name(), nan_pixel_logits(b, arch, width, size)),
            ("the CPU", nan_pixel_logits(&cpu, arch, width, size)),
        ] {
            let logits = logits.map_err(|e| format!("{arch:?} with a NaN pixel on {who}: {e}"))?;
            let (first, second) = logits.split_at(logits.len() / 2);
            if !first.iter().all(|v| v.is_nan()) || !second.iter().all(|v| v.is_finite()) {
                failures.push(format!(
                    "{arch:?} width {width} at {size}² on {who}: one NaN pixel in image 0 gives logits {first:?} \
                     (PyTorch: all NaN), image 1 {second:?} (PyTorch: finite)"
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("networks on {}:\n  {}", b.name(), failures.join("\n  ")))
    }
}

fn compare(failures: &mut Vec<String>, case: &str, got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], tol: f64) {
    for ((name, g), (_, w)) in got.iter().zip(want) {
        let r = rel(g, w);
        if r.is_nan() || r >= tol {
            failures.push(format!("{case}: {name} differs by {r:e} (relative L2; bound {tol:e})"));
        }
    }
}

/// Relative L2 distance (infinite for a length mismatch).
fn rel(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Inputs in [-1, 1) from a fixed xorshift sequence.
fn input(len: usize) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

type Named = Vec<(String, Vec<f32>)>;

/// Logits, every cut's activation, and the input gradient of the loss at `cut`.
fn infer<B: Backend>(b: &B, arch: Arch, width: usize, size: usize, cut: Cut) -> mep_resnet::Result<Named> {
    let model = ResNet::init(b, arch, width, 10, 7)?;
    let net = FoldedResNet::fold(b, &model)?;
    let x = Tensor::from_vec(b, [2, 3, size, size], input(2 * 3 * size * size))?;
    let (logits, acts) = net.forward_all(b, &x)?;
    let mut out = vec![("logits".to_string(), logits.to_vec(b)?)];
    for (c, t) in &acts {
        out.push((c.to_string(), t.to_vec(b)?));
    }
    let z = net.encode(b, &x, cut)?;
    let hg = net.head_loss_grad(b, &z, cut, &[3, 5], 1.0)?;
    out.push((format!("d loss / d {cut}"), hg.grad.to_vec(b)?));
    Ok(out)
}

/// The logits `[2, 10]` of two images, the first with one NaN pixel (channel 1, centre).
fn nan_pixel_logits<B: Backend>(b: &B, arch: Arch, width: usize, size: usize) -> mep_resnet::Result<Vec<f32>> {
    let model = ResNet::init(b, arch, width, 10, 7)?;
    let net = FoldedResNet::fold(b, &model)?;
    let mut data = input(2 * 3 * size * size);
    data[size * size + (size / 2) * size + size / 2] = f32::NAN;
    let x = Tensor::from_vec(b, [2, 3, size, size], data)?;
    Ok(net.forward_all(b, &x)?.0.to_vec(b)?)
}

/// One training step of a ResNet-20: batch statistics, the backward pass through every layer
/// and the weight gradients.
fn train_step<B: Backend>(b: &B, width: usize, size: usize) -> mep_resnet::Result<Named> {
    let mut model = ResNet::init(b, Arch::ResNet20, width, 10, 3)?;
    let x = Tensor::from_vec(b, [4, 3, size, size], input(4 * 3 * size * size))?;
    let (logits, tape) = model.forward_train(b, x)?;
    let mut probs = b.alloc(40)?;
    let mut losses = b.alloc(4)?;
    let targets = [0, 1, 2, 3];
    b.softmax_cross_entropy(4, 10, &logits.buf, &targets, &mut probs, &mut losses)?;
    let mut dlogits = Tensor::alloc(b, [4, 10])?;
    b.softmax_cross_entropy_bwd(4, 10, &probs, &targets, 0.25, &mut dlogits.buf)?;
    model.backward(b, tape, &dlogits, Grads::WEIGHTS)?;
    let mut out = vec![("logits".to_string(), logits.to_vec(b)?)];
    for (name, p) in model.named_params_mut() {
        if let Some(g) = &p.grad {
            out.push((format!("d loss / d {name}"), g.to_vec(b)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch gives NaN logits for an image with one NaN pixel; before the fused ReLU kept NaN,
    /// the CPU gave finite ones.
    #[test]
    fn a_nan_pixel_gives_nan_logits_on_the_cpu() {
        let cpu = CpuBackend::new();
        for arch in [Arch::ResNet20, Arch::ResNet50] {
            let logits = nan_pixel_logits(&cpu, arch, 2, 16).unwrap();
            assert!(logits[..10].iter().all(|v| v.is_nan()), "{arch:?}: {logits:?}");
            assert!(logits[10..].iter().all(|v| v.is_finite()), "{arch:?}: {logits:?}");
        }
    }

    #[test]
    fn compare_reports_what_differs() {
        let a = vec![("x".to_string(), vec![1.0, 2.0])];
        let b = vec![("x".to_string(), vec![1.0, 2.1])];
        let mut failures = Vec::new();
        compare(&mut failures, "case", &a, &a, 1e-4);
        assert!(failures.is_empty());
        compare(&mut failures, "case", &a, &b, 1e-4);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("case: x differs by"), "{}", failures[0]);
        assert!(rel(&[f32::NAN], &[1.0]).is_nan() && rel(&[1.0], &[1.0, 2.0]).is_infinite());
    }
}
