//! Golden tests: our engine against PyTorch on the fixtures made by
//! `tools/make_fixtures.py` (random weights and BN statistics; see tests/fixtures/README.md):
//! a width-4 ResNet-50 (Bottleneck, projection shortcuts), a width-2 ResNet-18 (basic
//! blocks, projection shortcuts) and ResNet-20 (basic blocks, option-A shortcuts).
//! Tolerances are relative L2 errors, ‖ours − torch‖ / ‖torch‖: 1e-4 for logits and
//! activations, 5e-2 for gradients (ReLU and max-pool decisions can flip in f32).

use mep_nn::{Adam, Grads, Optimizer};
use mep_resnet::{Arch, Cut, FoldedResNet, ResNet};
use mep_tensor::prelude::*;
use mep_tensor::{AdamParams, CpuBackend, Tensor};
use std::collections::BTreeMap;

mod support;
use support::golden::*;

fn eval_mode_matches(name: &str, arch: Arch) {
    let b = CpuBackend::new();
    let g = golden(name);
    let net = FoldedResNet::load(&b, arch, fixture(&format!("{name}.safetensors"))).unwrap();
    let x = g.tensor(&b, "input");
    let (logits, acts) = net.forward_all(&b, &x).unwrap();
    check("logits", &logits.to_vec(&b).unwrap(), &g.get("logits").1, ACT_TOL);
    assert_eq!(acts.len(), arch.cuts().len() - 1);
    for (cut, t) in &acts {
        let (shape, data) = g.get(&format!("act.{cut}"));
        assert_eq!(t.shape.dims(), shape.as_slice(), "shape at {cut}");
        check(&format!("act.{cut}"), &t.to_vec(&b).unwrap(), data, ACT_TOL);
    }

    // The loss and its gradient with respect to the input and to every cut's activation.
    let n = g.target.len();
    let hg = net
        .head_loss_grad(&b, &x, Cut::Input, &g.target, 1.0 / n as f32)
        .unwrap();
    let loss: f32 = hg.losses.iter().sum::<f32>() / n as f32;
    check("loss", &[loss], &g.get("loss").1, ACT_TOL);
    check(
        "input_grad",
        &hg.grad.to_vec(&b).unwrap(),
        &g.get("input_grad").1,
        GRAD_TOL,
    );
    for cut in arch.cuts().into_iter().skip(1) {
        let z = g.tensor(&b, &format!("act.{cut}"));
        let hz = net.head_loss_grad(&b, &z, cut, &g.target, 1.0 / n as f32).unwrap();
        check(
            &format!("head logits from {cut}"),
            &hz.logits.to_vec(&b).unwrap(),
            &g.get("logits").1,
            ACT_TOL,
        );
        check(
            &format!("zgrad.{cut}"),
            &hz.grad.to_vec(&b).unwrap(),
            &g.get(&format!("zgrad.{cut}")).1,
            GRAD_TOL,
        );
        // head(encode(x)) is the whole network.
        let enc = net.encode(&b, &x, cut).unwrap();
        let head = net.head(&b, &enc, cut).unwrap();
        check(
            &format!("head(encode(x, {cut}))"),
            &head.to_vec(&b).unwrap(),
            &g.get("logits").1,
            ACT_TOL,
        );
    }
}

fn train_mode_matches(name: &str, arch: Arch) {
    let b = CpuBackend::new();
    let g = golden(name);
    let mut model = ResNet::load(&b, arch, fixture(&format!("{name}.safetensors"))).unwrap();
    let x = g.tensor(&b, "input");
    let (logits, tape) = model.forward_train(&b, x).unwrap();
    check(
        "train.logits",
        &logits.to_vec(&b).unwrap(),
        &g.get("train.logits").1,
        ACT_TOL,
    );
    let n = g.target.len();
    let c = model.num_classes;
    let mut probs = b.alloc(n * c).unwrap();
    let mut losses = b.alloc(n).unwrap();
    b.softmax_cross_entropy(n, c, &logits.buf, &g.target, &mut probs, &mut losses)
        .unwrap();
    let loss = b.download(&losses).unwrap().iter().sum::<f32>() / n as f32;
    check("train.loss", &[loss], &g.get("train.loss").1, ACT_TOL);
    let mut dlogits = Tensor::alloc(&b, [n, c]).unwrap();
    b.softmax_cross_entropy_bwd(n, c, &probs, &g.target, 1.0 / n as f32, &mut dlogits.buf)
        .unwrap();
    let dx = model.backward(&b, tape, &dlogits, Grads::WEIGHTS).unwrap();
    assert!(dx.is_none(), "no input gradient was asked for");

    let mut before = BTreeMap::new();
    for (key, p) in model.named_params_mut() {
        let grad = p.grad.as_mut().unwrap_or_else(|| panic!("no gradient for {key}"));
        check(
            &format!("grad.{key}"),
            &grad.to_vec(&b).unwrap(),
            &g.get(&format!("grad.{key}")).1,
            GRAD_TOL,
        );
        // The optimiser is checked on PyTorch's own gradients: Adam's first step is about
        // lr·sign(g), so near-zero gradients that differ by f32 noise would flip it.
        *grad = g.tensor(&b, &format!("grad.{key}"));
        before.insert(key, p.value.to_vec(&b).unwrap());
    }
    assert_eq!(before.len(), g.f32s.keys().filter(|k| k.starts_with("grad.")).count());

    // One Adam step as torch.optim.Adam(lr=1e-3): compare the update, after − before.
    let mut adam = Adam::new(AdamParams::default());
    let mut params: Vec<_> = model.params_mut();
    adam.step(&b, &mut params).unwrap();
    let sd = model.state_dict(&b).unwrap();
    let mut compared = 0;
    for (key, t) in &sd {
        let Some((_, after)) = g.f32s.get(&format!("after.{key}")) else {
            continue;
        };
        compared += 1;
        let ours = t.to_vec(&b).unwrap();
        if let Some(prev) = before.get(key) {
            let d_ours: Vec<f32> = ours.iter().zip(prev).map(|(a, p)| a - p).collect();
            let d_theirs: Vec<f32> = after.iter().zip(prev).map(|(a, p)| a - p).collect();
            // The update is ~1e-3 against weights of ~1e-1: its f32 rounding is ~1e-4 of it.
            check(&format!("adam update {key}"), &d_ours, &d_theirs, ADAM_TOL);
        } else {
            // Running statistics updated by the training-mode forward.
            check(&format!("after.{key}"), &ours, after, ACT_TOL);
        }
    }
    assert!(compared > 0, "no after.* keys compared");
}

#[test]
fn resnet50_topology_eval_mode_matches_pytorch() {
    eval_mode_matches("resnet50_w4", Arch::ResNet50);
}

#[test]
fn resnet20_eval_mode_matches_pytorch() {
    eval_mode_matches("resnet20", Arch::ResNet20);
}

#[test]
fn resnet50_topology_training_step_matches_pytorch() {
    train_mode_matches("resnet50_w4", Arch::ResNet50);
}

#[test]
fn resnet20_training_step_matches_pytorch() {
    train_mode_matches("resnet20", Arch::ResNet20);
}

#[test]
fn resnet18_topology_eval_mode_matches_pytorch() {
    eval_mode_matches("resnet18_w2", Arch::ResNet18);
}

#[test]
fn resnet18_topology_training_step_matches_pytorch() {
    train_mode_matches("resnet18_w2", Arch::ResNet18);
}
