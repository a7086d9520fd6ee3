//! Whole networks on the emulated CUDA backend against the CPU backend: the composition of
//! the kernels (folded convs with fused epilogues, the stem's max-pool, bottlenecks, the
//! option-A shortcut, global pooling, the classifier, the loss) as `mep connect` and
//! `mep train` use them, not just each operation alone.

use mep_kernels::Kernels;
use mep_kernels_emu::EmuLauncher;
use mep_nn::Grads;
use mep_resnet::{Arch, Cut, Network, ResNet};
use mep_tensor::{Backend, CpuBackend, Tensor};

fn input(n: usize, size: usize) -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..n * 3 * size * size)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Relative L2 distance.
fn rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Logits, every cut's activation, and the input gradient of the loss at `cut`.
fn infer<B: Backend>(b: &B, arch: Arch, width: usize, size: usize, cut: Cut) -> Vec<Vec<f32>> {
    let model = ResNet::init(b, arch, width, 10, 7).unwrap();
    let net = Network::fold(b, &model).unwrap();
    let x = Tensor::from_vec(b, [2, 3, size, size], input(2, size)).unwrap();
    let (logits, acts) = net.forward_all(b, &x).unwrap();
    let mut out = vec![logits.to_vec(b).unwrap()];
    out.extend(acts.iter().map(|(_, t)| t.to_vec(b).unwrap()));
    let z = net.encode(b, &x, cut).unwrap();
    let hg = net.head_loss_grad(b, &z, cut, &[3, 5], 1.0).unwrap();
    out.push(hg.grad.to_vec(b).unwrap());
    out
}

fn compare_inference(arch: Arch, width: usize, size: usize, cut: Cut, kernels: Kernels) {
    let emu = EmuLauncher::backend_with(kernels);
    let got = infer(&emu, arch, width, size, cut);
    let want = infer(&CpuBackend::new(), arch, width, size, cut);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let r = rel(g, w);
        assert!(
            r < 1e-4,
            "{arch:?} {kernels:?}: output {i} differs by {r:e} (relative L2)"
        );
    }
}

#[test]
fn resnet20_inference_and_input_gradient() {
    compare_inference(Arch::ResNet20, 4, 8, Cut::Layer(1), Kernels::Fast);
    compare_inference(Arch::ResNet20, 4, 8, Cut::Input, Kernels::Simple);
}

#[test]
fn resnet50_inference_and_input_gradient() {
    compare_inference(Arch::ResNet50, 2, 32, Cut::Input, Kernels::Fast);
}

/// One training step: batch statistics, the backward pass through every layer and the
/// weight gradients.
fn train_step<B: Backend>(b: &B) -> Vec<Vec<f32>> {
    let mut model = ResNet::init(b, Arch::ResNet20, 4, 10, 3).unwrap();
    let x = Tensor::from_vec(b, [4, 3, 8, 8], input(4, 8)).unwrap();
    let (logits, tape) = model.forward_train(b, x).unwrap();
    let mut probs = b.alloc(40).unwrap();
    let mut losses = b.alloc(4).unwrap();
    let targets = [0, 1, 2, 3];
    b.softmax_cross_entropy(4, 10, &logits.buf, &targets, &mut probs, &mut losses)
        .unwrap();
    let mut dlogits = Tensor::alloc(b, [4, 10]).unwrap();
    b.softmax_cross_entropy_bwd(4, 10, &probs, &targets, 0.25, &mut dlogits.buf)
        .unwrap();
    model.backward(b, tape, &dlogits, Grads::WEIGHTS).unwrap();
    let mut out = vec![logits.to_vec(b).unwrap()];
    for p in model.params_mut() {
        out.push(
            p.grad
                .as_ref()
                .expect("every parameter has a gradient")
                .to_vec(b)
                .unwrap(),
        );
    }
    out
}

#[test]
fn resnet20_training_step() {
    let got = train_step(&EmuLauncher::backend());
    let want = train_step(&CpuBackend::new());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let r = rel(g, w);
        assert!(
            r < 1e-3,
            "tensor {i} (0: logits, then parameter gradients) differs by {r:e}"
        );
    }
}
