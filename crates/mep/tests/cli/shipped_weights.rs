//! The demo's shipped ResNet-20 (`weights/demo/resnet20-synthetic.*`, see xtask/src/shipped.rs)
//! is what its recorded recipe trains: retraining the recipe's first steps gives the
//! recorded losses bit for bit, and the shipped file scores the recorded test accuracy.

use crate::common;

use mep::eval::{eval, EvalArgs};
use mep::train::{train_on, TrainArgs, TrainSettings};
use std::path::PathBuf;

fn stem() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../weights/demo/resnet20-synthetic")
}

fn record() -> serde_json::Value {
    let path = stem().with_extension("json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Checks that the first steps are reproduced: few enough to keep CI short (the record has 16).
const STEPS: usize = 6;

#[test]
fn the_recipe_reproduces_the_shipped_runs_first_steps() {
    let record = record();
    let settings: TrainSettings = serde_json::from_value(record["report"]["settings"].clone()).unwrap();
    let recorded: Vec<f64> = serde_json::from_value(record["report"]["first_step_losses"].clone()).unwrap();
    assert!(recorded.len() >= STEPS, "{recorded:?}");
    assert_eq!(
        (settings.arch.as_str(), settings.data.as_str()),
        ("resnet20", "synthetic")
    );
    let out = common::tmpdir("shipped", "recipe");
    let args = TrainArgs {
        arch: settings.arch.clone(),
        init: None,
        data: settings.data.clone(),
        size: settings.size,
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        optimizer: settings.optimizer,
        lr: settings.lr as f32,
        momentum: settings.momentum.unwrap_or(0.9) as f32,
        weight_decay: settings.weight_decay as f32,
        augment: settings.augment,
        width: settings.width,
        seed: settings.seed,
        stop_after_steps: Some(STEPS),
        ..common::train_args("synthetic", out.clone(), settings.epochs)
    };
    let report = train_on(&args, mep::data::open_dataset("synthetic").unwrap()).unwrap();
    assert!(report.stopped_inside_epoch);
    assert_eq!(
        report.settings, settings,
        "the recorded settings must be the ones the arguments above give"
    );
    for (i, (now, then)) in report.first_step_losses.iter().zip(&recorded).enumerate() {
        assert_eq!(
            now.to_bits(),
            then.to_bits(),
            "step {}: loss {now} now, {then} when the shipped weights were made; if training changed \
             on purpose, remake them with `cargo xtask demo-weights`",
            i + 1
        );
    }
    assert_eq!(report.first_step_losses.len(), STEPS);
    assert!(
        !out.join("model.safetensors").exists(),
        "a stop inside an epoch saves nothing"
    );
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn the_shipped_model_scores_its_recorded_accuracy() {
    let record = record();
    let report = eval(&EvalArgs {
        device: Default::default(),
        precision: Default::default(),
        arch: "resnet20".into(),
        weights: stem().with_extension("safetensors"),
        data: "synthetic".into(),
        split: "test".into(),
        size: None,
        batch_size: 200,
    })
    .unwrap();
    let recorded = record["report"]["test"]["correct"].as_u64().unwrap();
    assert_eq!(report.correct as u64, recorded, "{report}");
    assert!(report.accuracy > 0.5, "{report}");
}
