//! What several test modules of `mep` share: scratch folders, the synthetic set cut to a
//! few classes, the training arguments of a small run, a short NEB search, checkpoints
//! written back with a NaN, and the `mep forward` command line. Each module
//! uses only part of it.
#![allow(dead_code)]

use mep::connect::ConnectArgs;
use mep::train::{OptimizerKind, TrainArgs};
use mep_resnet::{Arch, Checkpoint, ResNet};
use mep_tensor::{CpuBackend, Shape};
use std::path::{Path, PathBuf};

/// An empty folder `mep-{suite}-{tag}-{pid}` in the temporary directory.
pub fn tmpdir(suite: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mep-{suite}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The dataset restricted to the named classes, relabelled in the order given.
pub fn subset(d: mep_data::Dataset, keep: &[&str]) -> mep_data::Dataset {
    let map: Vec<Option<usize>> = d.classes.iter().map(|c| keep.iter().position(|k| k == c)).collect();
    let pick = |s: &mep_data::Split| {
        let mep_data::Samples::InMemory { height, width, data } = &s.samples else {
            unreachable!("the synthetic set is in memory")
        };
        let px = height * width * 3;
        let (mut out, mut labels) = (Vec::new(), Vec::new());
        for (i, &l) in s.labels.iter().enumerate() {
            if let Some(new) = map[l] {
                out.extend_from_slice(&data[i * px..(i + 1) * px]);
                labels.push(new);
            }
        }
        mep_data::Split {
            samples: mep_data::Samples::InMemory {
                height: *height,
                width: *width,
                data: out,
            },
            labels,
        }
    };
    mep_data::Dataset {
        name: format!("{} ({})", d.name, keep.join(", ")),
        classes: keep.iter().map(|s| s.to_string()).collect(),
        train: d.train.as_ref().map(pick),
        test: pick(&d.test),
    }
}

/// `mep train` on `data` for `epochs` into `out`: a width-8 ResNet-20, Adam at 3e-3 in
/// batches of 32, no augmentation, no weight decay, seed 1, quiet. Tests change the fields
/// they need.
pub fn train_args(data: &str, out: PathBuf, epochs: usize) -> TrainArgs {
    TrainArgs {
        device: Default::default(),
        precision: Default::default(),
        arch: "resnet20".into(),
        init: None,
        data: data.into(),
        size: None,
        epochs,
        batch_size: 32,
        optimizer: OptimizerKind::Adam,
        lr: 3e-3,
        momentum: 0.9,
        weight_decay: 0.0,
        augment: false,
        width: Some(8),
        seed: 1,
        out,
        resume: false,
        overwrite: false,
        stop_after: None,
        stop_after_steps: None,
        quiet: true,
        loader_threads: None,
    }
}

/// A short NEB search: `pivots` pivots, `sub_points` points between two, at most
/// `max_steps` steps of 0.05, pairs drawn with `seed`, no progress bar.
pub fn short_search(a: &mut ConnectArgs, pivots: usize, sub_points: usize, max_steps: usize, seed: u64) {
    a.pivots = pivots;
    a.sub_points = sub_points;
    a.max_steps = max_steps;
    a.step = 0.05;
    a.seed = seed;
    a.quiet = true;
}

/// Writes every tensor of `ck` to `path`.
pub fn save_checkpoint(ck: &Checkpoint, path: &Path) {
    let keys: Vec<String> = ck.keys().map(String::from).collect();
    let views: Vec<(&str, &Shape, &[f32])> = keys
        .iter()
        .map(|k| {
            let t = ck.get(k).unwrap();
            (k.as_str(), &t.shape, t.data.as_slice())
        })
        .collect();
    mep_resnet::save(path, &views, None).unwrap();
}

/// The checkpoint `from` with element `index` of tensor `key` set to NaN, written to `to`.
pub fn save_with_nan(from: &Path, key: &str, index: usize, to: &Path) {
    let mut ck = Checkpoint::load(from).unwrap();
    let mut t = ck.get(key).unwrap().clone();
    t.data[index] = f32::NAN;
    ck.insert(key, t);
    save_checkpoint(&ck, to);
}

/// `mep forward --arch <arch> --weights <weights> --input <input> <extra…> --out <out>`.
pub fn forward_args<'a>(
    arch: &'a str,
    weights: &'a Path,
    input: &'a Path,
    extra: &[&'a str],
    out: &'a Path,
) -> Vec<&'a str> {
    let mut args = vec![
        "forward",
        "--arch",
        arch,
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    args
}

/// A randomly initialised width-4 ResNet-20 for the ten synthetic classes (seed 7), saved
/// as `path`; returns `path`.
pub fn random_resnet20(path: PathBuf) -> PathBuf {
    let b = CpuBackend::new();
    ResNet::init(&b, Arch::ResNet20, 4, 10, 7)
        .unwrap()
        .save(&b, &path)
        .unwrap();
    path
}
