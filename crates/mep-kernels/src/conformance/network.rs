//! Whole networks against the CPU backend: the composition of the kernels (folded convs with
//! fused epilogues, the stem's max-pool, bottlenecks, the option-A shortcut, global pooling,
//! the classifier, the loss) as `mep connect` and `mep train` use them, not each op alone.

use mep_nn::Grads;
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::precision::Precision;
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
/// inputs, and compares the logits and every cut's activation (relative L2 below 1e-4) and,
/// for one ResNet-20 training step, every weight gradient (below 1e-3). The input gradients
/// of the loss at `input` and `layer1` (the same point on both) are held to the noise of f32
/// itself, see [`GRAD_FACTOR`].
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
        let got = infer(b, arch, width, size).map_err(|e| format!("{arch:?} on {}: {e}", b.name()))?;
        let want = infer(&cpu, arch, width, size).map_err(|e| format!("{arch:?} on the CPU: {e}"))?;
        let case = format!("{arch:?} width {width} at {size}², grad at {cut}");
        compare(&mut failures, &case, &got, &want, 1e-4);
        let (z, shape) = point(&cpu, arch, width, size, cut).map_err(|e| format!("{case} on the CPU: {e}"))?;
        let got = head_grad(b, arch, width, cut, &z, &shape).map_err(|e| format!("{case} on {}: {e}", b.name()))?;
        let want = head_grad(&cpu, arch, width, cut, &z, &shape).map_err(|e| format!("{case} on the CPU: {e}"))?;
        let exact = exact_head_grad(&cpu, arch, width, cut, &z, &shape).map_err(|e| format!("{case} in f64: {e}"))?;
        if let Err(e) = within_f32_noise(&got, &want, &exact) {
            failures.push(format!("{case}: d loss / d {cut}: {e}"));
        }
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

/// The networks of [`networks`] on `b` in precision `p` (TF32 or bf16) against the same
/// backend in fp32: the logits and every cut's activation of ResNet-20 and ResNet-50, the
/// input gradient of the loss (forward and backward to the input) and a ResNet-20 training
/// step's logits and weight gradients, each within a bound in relative L2 of its fp32 value:
/// `bounds.0` for forward values, `bounds.1` for gradients (looser: a small random network's
/// gradient is ill-conditioned, ReLU kinks and batch statistics amplify an operand's rounding
/// many times, as [`GRAD_FACTOR`] says of f32 itself). Returns the largest distance of each
/// case; leaves `b` in fp32.
pub fn networks_in_precision<B: Backend>(
    b: &B,
    p: Precision,
    scale: NetScale,
    bounds: (f64, f64),
) -> Result<Vec<(String, f64)>, String> {
    let (r20, r50) = match scale {
        NetScale::Small => ((4, 8), (2, 32)),
        NetScale::Full => ((16, 32), (64, 224)),
    };
    let name = b.name();
    let set = |q: Precision| b.set_precision(q).map_err(|e| format!("{q} on {name}: {e}"));
    let run = |q: Precision, what: &dyn Fn() -> mep_resnet::Result<Named>| -> Result<Named, String> {
        set(q)?;
        let out = what().map_err(|e| format!("{q} on {name}: {e}"));
        set(Precision::Fp32)?;
        out
    };
    let mut failures = Vec::new();
    let mut worst = Vec::new();
    let mut check = |case: String, got: Named, want: Named| {
        let mut most = 0.0f64;
        for ((t, g), (_, w)) in got.iter().zip(&want) {
            let r = rel(g, w);
            let bound = if t.starts_with("d loss") { bounds.1 } else { bounds.0 };
            if r.is_nan() || r >= bound {
                failures.push(format!(
                    "{case}: {t} in {p} differs from fp32 by {r:e} (relative L2; bound {bound:e})"
                ));
            }
            most = most.max(r);
        }
        worst.push((case, most));
    };
    for (arch, (width, size)) in [(Arch::ResNet20, r20), (Arch::ResNet50, r50)] {
        let forward = || infer(b, arch, width, size);
        check(
            format!("{arch:?} forward"),
            run(p, &forward)?,
            run(Precision::Fp32, &forward)?,
        );
        let (z, shape) = point(b, arch, width, size, Cut::Input).map_err(|e| e.to_string())?;
        let grad = || {
            Ok(vec![(
                "d loss / d input".to_string(),
                head_grad(b, arch, width, Cut::Input, &z, &shape)?,
            )])
        };
        check(
            format!("{arch:?} input gradient"),
            run(p, &grad)?,
            run(Precision::Fp32, &grad)?,
        );
    }
    let (width, size) = r20;
    let step = || train_step(b, width, size);
    check(
        "ResNet20 training step".into(),
        run(p, &step)?,
        run(Precision::Fp32, &step)?,
    );
    if failures.is_empty() {
        Ok(worst)
    } else {
        Err(format!("networks on {name} in {p}:\n  {}", failures.join("\n  ")))
    }
}

/// How much further from the exact (f64) input gradient the backend's may be than the f32 CPU
/// backend's: a full-size ReLU and max-pool network's f32 gradient is ~1e-2 from the exact one
/// (rounding near a kink flips activations and max-pool choices), so agreement between two f32
/// backends at 1e-4 is luck, not a bound. Two correct f32 implementations flip different
/// kinks, hence a factor rather than equality.
pub const GRAD_FACTOR: f64 = 4.0;

/// The error allowed whatever the CPU's: the old bound, for small networks where both are
/// nearly exact.
pub const GRAD_FLOOR: f64 = 1e-4;

/// `got`'s relative L2 distance from `exact` must be below `GRAD_FACTOR` times `cpu`'s (or
/// [`GRAD_FLOOR`]); the error gives both distances. Returns `(got's, cpu's)`.
pub fn within_f32_noise(got: &[f32], cpu: &[f32], exact: &[f64]) -> Result<(f64, f64), String> {
    let (e_got, e_cpu) = (rel64(got, exact), rel64(cpu, exact));
    let bound = (GRAD_FACTOR * e_cpu).max(GRAD_FLOOR);
    if e_got.is_nan() || e_got >= bound {
        Err(format!(
            "{e_got:e} from the f64 gradient (relative L2), where the CPU backend's f32 is {e_cpu:e} \
             (bound {bound:e} = max({GRAD_FACTOR} × CPU, {GRAD_FLOOR:e}))"
        ))
    } else {
        Ok((e_got, e_cpu))
    }
}

/// Relative L2 distance of f32 values from exact ones (infinite for a length mismatch).
fn rel64(got: &[f32], exact: &[f64]) -> f64 {
    if got.len() != exact.len() {
        return f64::INFINITY;
    }
    let num: f64 = got.iter().zip(exact).map(|(a, b)| (f64::from(*a) - b).powi(2)).sum();
    let den: f64 = exact.iter().map(|b| b * b).sum();
    (num / den.max(1e-30)).sqrt()
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

/// Logits and every cut's activation of two images.
fn infer<B: Backend>(b: &B, arch: Arch, width: usize, size: usize) -> mep_resnet::Result<Named> {
    let net = folded(b, arch, width)?;
    let x = Tensor::from_vec(b, [2, 3, size, size], input(2 * 3 * size * size))?;
    let (logits, acts) = net.forward_all(b, &x)?;
    let mut out = vec![("logits".to_string(), logits.to_vec(b)?)];
    for (c, t) in &acts {
        out.push((c.to_string(), t.to_vec(b)?));
    }
    Ok(out)
}

/// The network's point at `cut` for [`infer`]'s two images, and its per-point shape.
fn point<B: Backend>(
    b: &B,
    arch: Arch,
    width: usize,
    size: usize,
    cut: Cut,
) -> mep_resnet::Result<(Vec<f32>, Vec<usize>)> {
    let net = folded(b, arch, width)?;
    let x = Tensor::from_vec(b, [2, 3, size, size], input(2 * 3 * size * size))?;
    let z = net.encode(b, &x, cut)?;
    Ok((z.to_vec(b)?, z.shape.dims()[1..].to_vec()))
}

/// The network every case of [`networks`] but the training step runs (seed 7, 10 classes).
fn folded<B: Backend>(b: &B, arch: Arch, width: usize) -> mep_resnet::Result<FoldedResNet<B>> {
    FoldedResNet::fold(b, &ResNet::init(b, arch, width, 10, 7)?)
}

/// The targets of the two points.
const TARGETS: [usize; 2] = [3, 5];

/// d loss / d z at the two points `z` (per-point `shape`) at `cut`.
fn head_grad<B: Backend>(
    b: &B,
    arch: Arch,
    width: usize,
    cut: Cut,
    z: &[f32],
    shape: &[usize],
) -> mep_resnet::Result<Vec<f32>> {
    let net = folded(b, arch, width)?;
    let dims: Vec<usize> = std::iter::once(2).chain(shape.iter().copied()).collect();
    let z = Tensor::from_vec(b, dims.as_slice(), z.to_vec())?;
    Ok(net.head_loss_grad(b, &z, cut, &TARGETS, 1.0)?.grad.to_vec(b)?)
}

/// [`head_grad`] in f64 (mep-certify's), with the weights as `b` folds them.
fn exact_head_grad<B: Backend>(
    b: &B,
    arch: Arch,
    width: usize,
    cut: Cut,
    z: &[f32],
    shape: &[usize],
) -> std::result::Result<Vec<f64>, String> {
    let net = folded(b, arch, width).map_err(|e| e.to_string())?;
    mep_certify::head_loss_grad_f64(b, &net, cut, shape, z, &TARGETS)
        .map(|g| g.grad)
        .map_err(|e| e.to_string())
}

/// The logits `[2, 10]` of two images, the first with one NaN pixel (channel 1, centre).
fn nan_pixel_logits<B: Backend>(b: &B, arch: Arch, width: usize, size: usize) -> mep_resnet::Result<Vec<f32>> {
    let net = folded(b, arch, width)?;
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

    #[test]
    fn the_gradient_bound_scales_with_the_cpus_own_error() {
        let exact = [1.0f64, -2.0, 0.5, 0.0];
        let off = |e: f32| -> Vec<f32> { exact.iter().map(|v| *v as f32 * (1.0 + e)).collect() };
        // Near-exact CPU: the floor decides.
        assert!(within_f32_noise(&off(5e-5), &off(1e-7), &exact).is_ok());
        let e = within_f32_noise(&off(2e-4), &off(1e-7), &exact).unwrap_err();
        assert!(e.contains("bound 1e-4"), "{e}");
        // A noisy CPU (ReLU flips at full size): a few times its error passes, more fails.
        let (g, c) = within_f32_noise(&off(3e-2), &off(1e-2), &exact).unwrap();
        assert!((g / c - 3.0).abs() < 1e-3, "{g} {c}");
        assert!(within_f32_noise(&off(5e-2), &off(1e-2), &exact).is_err());
        assert!(within_f32_noise(&[f32::NAN; 4], &off(1e-2), &exact).is_err());
        assert!(within_f32_noise(&off(0.0)[..3], &off(1e-2), &exact).is_err());
    }

    /// The f32 CPU backend and the f64 gradient on the small networks: the former is well
    /// inside the bound, so the comparison logic of the full-size GPU test is exercised.
    #[test]
    fn the_cpu_gradient_is_close_to_the_exact_one_on_small_networks() {
        let cpu = CpuBackend::new();
        for (arch, width, size, cut) in [
            (Arch::ResNet20, 4, 8, Cut::Input),
            (Arch::ResNet50, 2, 32, Cut::Layer(1)),
        ] {
            let (z, shape) = point(&cpu, arch, width, size, cut).unwrap();
            let g = head_grad(&cpu, arch, width, cut, &z, &shape).unwrap();
            let exact = exact_head_grad(&cpu, arch, width, cut, &z, &shape).unwrap();
            let (e, _) = within_f32_noise(&g, &g, &exact).unwrap();
            assert!(e < 1e-5, "{arch:?} {cut}: {e:e}");
        }
    }
}
