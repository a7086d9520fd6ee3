//! Training works, resumes exactly, and `mep eval` agrees with what training reported.

use mep::eval::{eval, EvalArgs};
use mep::train::{train_on, OptimizerKind, TrainArgs};
use mep_data::{synthetic, SyntheticConfig};
use std::path::PathBuf;

use crate::common;
use common::subset;

fn tmpdir(tag: &str) -> PathBuf {
    common::tmpdir("train", tag)
}

fn small_data() -> mep_data::Dataset {
    synthetic(&SyntheticConfig {
        seed: 3,
        train_per_class: 60,
        test_per_class: 20,
    })
}

/// A narrow ResNet-20 on the synthetic set keeps these tests to seconds.
fn args(out: PathBuf, epochs: usize) -> TrainArgs {
    common::train_args("synthetic", out, epochs)
}

/// `mep eval` of the checkpoint `weights` as `arch`, on the test split of the synthetic set
/// of seed 3, in batches of 50.
fn eval_args(arch: &str, weights: PathBuf) -> EvalArgs {
    EvalArgs {
        device: Default::default(),
        precision: Default::default(),
        arch: arch.into(),
        weights,
        data: "synthetic:3".into(),
        split: "test".into(),
        size: None,
        batch_size: 50,
    }
}

/// The error of a training that must be refused, `why` saying why (the panic message if not).
fn refused(a: &TrainArgs, why: &str) -> String {
    train_on(a, small_data()).expect_err(why).to_string()
}

#[test]
fn a_small_resnet_learns_the_synthetic_set_well_above_chance() {
    let out = tmpdir("learn");
    // All ten classes need a few hundred steps of batch 128 before the shapes start to
    // separate (the set's PyTorch calibration: 12 % after one epoch, 91 % after seven), too
    // long for a test; three of its classes show learning within seconds.
    let mut a = args(out.clone(), 6);
    a.lr = 2e-3;
    let data = subset(
        synthetic(&SyntheticConfig {
            seed: 3,
            train_per_class: 300,
            test_per_class: 40,
        }),
        &["circle", "stripes", "checkerboard"],
    );
    let report = train_on(&a, data).unwrap();
    eprintln!("{report}");
    assert_eq!(report.epochs.len(), 6);
    // 3 classes: chance is 33 %.
    assert!(
        report.test.accuracy > 0.5,
        "test accuracy {:.3} after 6 epochs",
        report.test.accuracy
    );
    assert!(report.epochs[5].train_loss < report.epochs[0].train_loss);
    assert!(out.join("report.json").exists() && out.join("model.safetensors").exists());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn eval_reports_the_accuracy_training_reported() {
    let out = tmpdir("eval");
    let report = train_on(&args(out.clone(), 1), small_data()).unwrap();
    // `mep eval` on a dataset spec reads the same synthetic images through the same path.
    let data = small_data();
    let split = std::sync::Arc::new(data.test.clone());
    let b = mep_tensor::CpuBackend::new();
    let net = mep_resnet::FoldedResNet::load(&b, mep_resnet::Arch::ResNet20, &report.model).unwrap();
    let again = mep::eval::evaluate(&b, &net, &split, &mep::data::eval_transform(32), &data.classes, 64).unwrap();
    assert_eq!(again, report.test);
    // And through the command's own entry point, reading size and normalisation from the
    // checkpoint's metadata, on the default synthetic set it names.
    let e = eval(&eval_args("resnet20", report.model.clone())).unwrap();
    assert_eq!(e.per_class.len(), 10);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn an_interrupted_run_resumes_without_losing_an_epoch() {
    let straight = tmpdir("straight");
    let full = train_on(&args(straight.clone(), 2), small_data()).unwrap();
    let resumed_dir = tmpdir("resumed");
    let mut interrupted = args(resumed_dir.clone(), 2);
    interrupted.stop_after = Some(1);
    let first = train_on(&interrupted, small_data()).unwrap();
    assert_eq!(first.epochs.len(), 1);
    let mut a = args(resumed_dir.clone(), 2);
    a.resume = true;
    let resumed = train_on(&a, small_data()).unwrap();
    assert_eq!(
        resumed.epochs.len(),
        2,
        "history keeps the epoch before the interruption"
    );
    assert_eq!(resumed.epochs[0], first.epochs[0]);
    // Weights, optimiser moments, BN statistics and the data order all came back: the
    // resumed run ends where the uninterrupted one did.
    let (l_full, l_res) = (full.epochs[1].train_loss, resumed.epochs[1].train_loss);
    assert!((l_full - l_res).abs() <= 1e-4 * l_full.abs(), "{l_full} vs {l_res}");
    assert!((full.test.accuracy - resumed.test.accuracy).abs() <= 0.02);
    std::fs::remove_dir_all(&straight).ok();
    std::fs::remove_dir_all(&resumed_dir).ok();
}

#[test]
fn a_checkpoint_of_another_architecture_is_named_in_the_error() {
    let out = tmpdir("arch");
    let report = train_on(&args(out.clone(), 1), small_data()).unwrap();
    let err = eval(&eval_args("resnet50", report.model.clone()))
        .expect_err("resnet50 cannot read a resnet20 checkpoint")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_finished_run_is_not_overwritten_without_resume_or_overwrite() {
    let out = tmpdir("again");
    let first = train_on(&args(out.clone(), 1), small_data()).unwrap();
    let model = std::fs::read(&first.model).unwrap();
    // The issue: the same command again trained afresh over the finished run.
    let mut again = args(out.clone(), 1);
    again.seed = 2;
    let e = refused(&again, "a folder holding a run is refused");
    assert!(
        e.contains("already holds a run") && e.contains("--resume") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(std::fs::read(&first.model).unwrap(), model, "the run is untouched");
    // Any one of the run's files is enough to refuse.
    std::fs::remove_file(out.join("checkpoint.safetensors")).unwrap();
    std::fs::remove_file(out.join("model.safetensors")).unwrap();
    let e = refused(&again, "report.json alone");
    assert!(e.contains("report.json"), "{e}");
    // --resume cannot continue without a checkpoint; --overwrite replaces the run.
    again.resume = true;
    let e = refused(&again, "nothing to resume");
    assert!(
        e.contains("no checkpoint.safetensors") && e.contains("--overwrite"),
        "{e}"
    );
    again.resume = false;
    again.overwrite = true;
    let replaced = train_on(&again, small_data()).unwrap();
    assert_eq!(replaced.epochs.len(), 1);
    assert_ne!(
        std::fs::read(&replaced.model).unwrap(),
        model,
        "seed 2 trained a new model"
    );
    // --resume and --overwrite together are refused before anything is read.
    again.resume = true;
    assert!(train_on(&again, small_data())
        .unwrap_err()
        .to_string()
        .contains("--overwrite"));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn resume_with_changed_settings_is_refused_listing_the_differences() {
    let out = tmpdir("changed");
    let mut first = args(out.clone(), 2);
    first.stop_after = Some(1);
    train_on(&first, small_data()).unwrap();
    let checkpoint = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let mut changed = args(out.clone(), 2);
    changed.resume = true;
    changed.lr = 1e-2;
    changed.weight_decay = 1e-4;
    let e = refused(&changed, "another --lr");
    assert!(e.contains("recorded → now"), "{e}");
    assert!(
        e.contains("lr: 0.003 → 0.01") && e.contains("weight_decay: 0.0 → 0.0001"),
        "{e}"
    );
    assert!(!e.contains("stop_after") && !e.contains("quiet"), "{e}");
    // Every setting that changes results counts, the schedule's length too.
    for (name, edit) in [
        ("epochs", (|a: &mut TrainArgs| a.epochs = 3) as fn(&mut TrainArgs)),
        ("batch_size", |a| a.batch_size = 16),
        ("optimizer", |a| a.optimizer = OptimizerKind::Sgd),
        ("augment", |a| a.augment = true),
        ("width", |a| a.width = Some(4)),
        ("seed", |a| a.seed = 9),
        ("size", |a| a.size = Some(16)),
        ("data", |a| a.data = "synthetic:3".into()),
        ("precision", |a| a.precision = mep::Precision::Tf32),
    ] {
        let mut a = args(out.clone(), 2);
        a.resume = true;
        edit(&mut a);
        let e = refused(&a, name);
        assert!(e.contains(&format!("{name}: ")), "{name}: {e}");
    }
    // Adam has no momentum: changing it changes nothing, so it is no difference.
    assert_eq!(std::fs::read(out.join("checkpoint.safetensors")).unwrap(), checkpoint);
    let mut same = args(out.clone(), 2);
    same.resume = true;
    same.momentum = 0.5;
    same.quiet = false;
    let resumed = train_on(&same, small_data()).unwrap();
    assert_eq!(resumed.epochs.len(), 2);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn stop_after_zero_is_refused_before_the_folder_is_made() {
    let out = tmpdir("zero").join("run");
    let mut a = args(out.clone(), 1);
    a.stop_after = Some(0);
    let e = refused(&a, "no epoch to run");
    assert!(e.contains("--stop-after 0"), "{e}");
    assert!(!out.exists());
    let mut a = args(out.clone(), 1);
    a.stop_after_steps = Some(0);
    let e = refused(&a, "no step to run");
    assert!(e.contains("--stop-after-steps 0"), "{e}");
    assert!(!out.exists());
}

/// A stop inside an epoch saves nothing (a run resumes only from whole epochs) and keeps the
/// losses of the steps it took; the same steps of a whole run have the same losses.
#[test]
fn stop_after_steps_saves_nothing_and_keeps_the_first_losses() {
    let dir = tmpdir("steps");
    let mut a = args(dir.join("part"), 1);
    a.stop_after_steps = Some(3);
    let part = train_on(&a, small_data()).unwrap();
    assert!(part.stopped_inside_epoch && part.epochs.is_empty());
    assert_eq!(part.first_step_losses.len(), 3);
    for f in ["checkpoint.safetensors", "model.safetensors", "report.json"] {
        assert!(!dir.join("part").join(f).exists(), "{f} saved");
    }
    assert!(part.to_string().contains("nothing saved"), "{part}");
    let whole = train_on(&args(dir.join("whole"), 1), small_data()).unwrap();
    assert!(!whole.stopped_inside_epoch && whole.first_step_losses.len() >= 3);
    assert_eq!(whole.first_step_losses[..3], part.first_step_losses[..]);

    // Steps that end exactly with an epoch: that epoch is saved and reported like --stop-after.
    let per_epoch = 600 / 32; // small_data: 60 images × 10 classes, in batches of 32
    let mut a = args(dir.join("boundary"), 2);
    a.stop_after_steps = Some(per_epoch);
    let r = train_on(&a, small_data()).unwrap();
    assert!(!r.stopped_inside_epoch && r.epochs.len() == 1, "{r}");
    assert!(dir.join("boundary").join("report.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 14: `--precision` reaches training's convolutions and linear layer: the first steps'
/// losses move off fp32's (by well under 5 %: the operands lose bits, the sums do not).
#[test]
fn training_steps_run_in_the_precision_asked() {
    use mep::Precision;
    let dir = tmpdir("precision");
    let losses = |p: Precision| {
        let mut a = args(dir.join(p.as_str()), 1);
        a.stop_after_steps = Some(3);
        a.precision = p;
        train_on(&a, small_data()).unwrap().first_step_losses
    };
    let fp32 = losses(Precision::Fp32);
    for p in [Precision::Tf32, Precision::Bf16] {
        let got = losses(p);
        assert_ne!(got, fp32, "{p}: the steps ran in fp32");
        for (g, w) in got.iter().zip(&fp32) {
            assert!((g - w).abs() <= 0.05 * w.abs(), "{p}: {got:?} vs fp32 {fp32:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 18: training from an `--init` holding NaN was blamed on `--lr` after the first
/// batch; it is refused at load, naming the file and the tensor.
#[test]
fn a_nan_init_is_refused_at_load_naming_the_tensor() {
    use mep_resnet::{Arch, ResNet};
    use mep_tensor::CpuBackend;
    let dir = tmpdir("nan-init");
    let b = CpuBackend::new();
    let good = dir.join("good.safetensors");
    ResNet::init(&b, Arch::ResNet20, 8, 10, 3)
        .unwrap()
        .save(&b, &good)
        .unwrap();
    let bad = dir.join("nan.safetensors");
    common::save_with_nan(&good, "layer2.1.conv2.weight", 100, &bad);
    let mut a = args(dir.join("run"), 1);
    a.init = Some(bad);
    // The init fixes the width.
    a.width = None;
    let e = refused(&a, "a NaN init must be refused");
    assert!(
        e.contains("nan.safetensors") && e.contains("`layer2.1.conv2.weight` holds NaN at index 100"),
        "{e}"
    );
    assert!(!e.contains("--lr"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Losses are read back from the device every few steps, not every step: a loss that leaves
/// finite numbers between two read-backs is still caught, named by its epoch and step, and
/// nothing of the run is saved.
#[test]
fn a_diverging_run_is_stopped_naming_the_epoch_and_step() {
    let dir = tmpdir("diverge");
    let mut a = args(dir.clone(), 2);
    // Adam's first step moves every weight by about lr: 1e30 overflows f32 in the second forward.
    a.lr = 1e30;
    let e = refused(&a, "an lr of 1e30 must diverge");
    assert!(e.contains("in epoch 1 (step 2 of 18)") && e.contains("--lr"), "{e}");
    assert!(!dir.join("checkpoint.safetensors").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The loader's thread count changes who makes each batch, never what is in it.
#[test]
fn loader_threads_do_not_change_the_run() {
    let dir = tmpdir("loader-threads");
    let run = |threads: usize| {
        let mut a = args(dir.join(threads.to_string()), 1);
        a.augment = true;
        a.stop_after_steps = Some(4);
        a.loader_threads = Some(threads);
        train_on(&a, small_data()).unwrap().first_step_losses
    };
    let one = run(1);
    assert_eq!(one.len(), 4);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one), bits(&run(3)));
    let mut a = args(dir.join("zero"), 1);
    a.loader_threads = Some(0);
    let e = refused(&a, "zero loader threads");
    assert!(e.contains("--loader-threads"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
