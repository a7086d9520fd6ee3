//! Golden tests: our decoders against PyTorch on the fixtures made by
//! `tools/make_decoder_fixtures.py` (tests/fixtures/README.md describes them): a `pool`
//! decoder (Table 3's structure at a few filters, LeakyReLU 0.3, F = 64 → (4, 4, 4) → 32×32)
//! and a spatial decoder (ReLU, 64×8×8 → 32×32 through two upsamplings), with random batch
//! norm statistics. Tolerances are relative L2 errors ‖ours − torch‖ / ‖torch‖, as in
//! crates/mep-resnet/tests/golden.rs: 1e-4 for outputs and losses, 5e-2 for gradients
//! (an activation's kink can flip in f32), 1e-3 for one Adam update.

use mep_decoder::{mse_loss, Decoder, Mode};
use mep_nn::{Adam, Grads, Optimizer};
use mep_tensor::{AdamParams, CpuBackend};
use std::collections::BTreeMap;

#[path = "../../mep-resnet/tests/support/golden.rs"]
mod golden_support;
use golden_support::*;

/// Outputs are sigmoids near ½: compare them centred, so the error is relative to their
/// spread and not to ½.
fn check_output(what: &str, ours: &[f32], theirs: &[f32]) {
    let c = |v: &[f32]| v.iter().map(|x| x - 0.5).collect::<Vec<_>>();
    check(what, &c(ours), &c(theirs), ACT_TOL);
}

fn eval_mode_matches(name: &str) {
    let b = CpuBackend::new();
    let g = golden(name);
    let mut dec = Decoder::load(&b, fixture(&format!("{name}.safetensors"))).unwrap();
    let z = g.tensor(&b, "z");
    let target = g.tensor(&b, "target");

    let y = dec.decode(&b, &z).unwrap();
    check_output("eval.output (decode)", &y.to_vec(&b).unwrap(), &g.get("eval.output").1);
    let (y, tape) = dec.forward(&b, &z, Mode::Eval).unwrap();
    check_output("eval.output (forward)", &y.to_vec(&b).unwrap(), &g.get("eval.output").1);
    let (loss, dy) = mse_loss(&b, &y, &target).unwrap();
    check("eval.loss", &[loss as f32], &g.get("eval.loss").1, ACT_TOL);
    let dz = dec.backward(&b, tape, &dy, Grads::INPUT).unwrap().unwrap();
    assert_eq!(dz.shape, z.shape);
    check(
        "eval.input_grad",
        &dz.to_vec(&b).unwrap(),
        &g.get("eval.input_grad").1,
        GRAD_TOL,
    );
    assert_eq!(dec.bn_steps, 0, "inference mode takes no batch-norm step");
}

fn train_mode_matches(name: &str) {
    let b = CpuBackend::new();
    let g = golden(name);
    let mut dec = Decoder::load(&b, fixture(&format!("{name}.safetensors"))).unwrap();
    let z = g.tensor(&b, "z");
    let target = g.tensor(&b, "target");

    let (y, tape) = dec.forward(&b, &z, Mode::Train).unwrap();
    check_output("train.output", &y.to_vec(&b).unwrap(), &g.get("train.output").1);
    let (loss, dy) = mse_loss(&b, &y, &target).unwrap();
    check("train.loss", &[loss as f32], &g.get("train.loss").1, ACT_TOL);
    let dz = dec.backward(&b, tape, &dy, Grads::ALL).unwrap().unwrap();
    check(
        "train.input_grad",
        &dz.to_vec(&b).unwrap(),
        &g.get("train.input_grad").1,
        GRAD_TOL,
    );

    let mut before = BTreeMap::new();
    for (key, p) in dec.named_params_mut() {
        let grad = p.grad.as_mut().unwrap_or_else(|| panic!("no gradient for {key}"));
        check(
            &format!("grad.{key}"),
            &grad.to_vec(&b).unwrap(),
            &g.get(&format!("grad.{key}")).1,
            GRAD_TOL,
        );
        // The optimiser is checked on PyTorch's own gradients (Adam's first step is about
        // lr·sign(g): f32 noise in a near-zero gradient would flip it).
        *grad = g.tensor(&b, &format!("grad.{key}"));
        before.insert(key, p.value.to_vec(&b).unwrap());
    }
    assert_eq!(before.len(), g.f32s.keys().filter(|k| k.starts_with("grad.")).count());

    let mut adam = Adam::new(AdamParams::default());
    adam.step(&b, &mut dec.params_mut()).unwrap();
    let mut compared = 0;
    for (key, _, ours) in dec.state_dict(&b).unwrap() {
        let (_, after) = g.get(&format!("after.{key}"));
        compared += 1;
        if let Some(prev) = before.get(&key) {
            let d_ours: Vec<f32> = ours.iter().zip(prev).map(|(a, p)| a - p).collect();
            let d_theirs: Vec<f32> = after.iter().zip(prev).map(|(a, p)| a - p).collect();
            check(&format!("adam update {key}"), &d_ours, &d_theirs, ADAM_TOL);
        } else {
            // Running statistics, updated by the training-mode forward.
            check(&format!("after.{key}"), &ours, after, ACT_TOL);
        }
    }
    assert_eq!(compared, g.f32s.keys().filter(|k| k.starts_with("after.")).count());
    assert_eq!(dec.bn_steps, 1);
}

#[test]
fn pool_decoder_inference_mode_matches_pytorch() {
    eval_mode_matches("pool_small");
}

#[test]
fn pool_decoder_training_step_matches_pytorch() {
    train_mode_matches("pool_small");
}

#[test]
fn spatial_decoder_inference_mode_matches_pytorch() {
    eval_mode_matches("spatial_small");
}

#[test]
fn spatial_decoder_training_step_matches_pytorch() {
    train_mode_matches("spatial_small");
}
