//! The timing side of the training comparison: images per second of one training step
//! (training-mode forward, backward with weight gradients, Adam step), one row per
//! process, JSON on stdout in the format of `benches/pytorch_train.py`.
//!
//! `train_time --row "resnet20 32x32 b128" [--iters 10] [--threads 2]`

use mep_benches::{peak_rss_mb, TimingArgs};
use mep_nn::Adam;
use mep_resnet::{Arch, ResNet};
use mep_tensor::{AdamParams, CpuBackend, Tensor};
use std::time::Instant;

/// The rows of the training table: (name, arch, size, batch).
const TRAIN_ROWS: [(&str, Arch, usize, usize); 2] = [
    ("resnet20 32x32 b128", Arch::ResNet20, 32, 128),
    ("resnet50 224x224 b8", Arch::ResNet50, 224, 8),
];

fn main() {
    let args = TimingArgs::from_env();
    args.init_threads();
    let TimingArgs { row, iters, threads } = args;
    let row_name = row.unwrap_or_default();
    let Some(&(name, arch, size, batch)) = TRAIN_ROWS.iter().find(|r| r.0 == row_name) else {
        eprintln!("usage: train_time --row NAME [--iters N] [--threads T]; rows:");
        for r in TRAIN_ROWS {
            eprintln!("  {}", r.0);
        }
        std::process::exit(2);
    };
    let b = CpuBackend::new();
    let classes = 10;
    let mut model = ResNet::init(&b, arch, arch.default_width(), classes, 1).expect("init");
    let mut rng = mep_nn::init::Rng::new(2);
    let x: Vec<f32> = (0..batch * 3 * size * size).map(|_| rng.normal() as f32).collect();
    let targets: Vec<usize> = (0..batch).map(|i| i % classes).collect();
    let mut adam = Adam::new(AdamParams::default());
    let mut step = || {
        let xt = Tensor::from_slice(&b, [batch, 3, size, size], &x).expect("input");
        model.train_step(&b, xt, &targets, &mut adam).expect("training step");
    };
    for _ in 0..2 {
        step();
    }
    let mut ms: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let median = ms[ms.len() / 2];
    let out = serde_json::json!({
        "impl": "mep",
        "row": name,
        "step_ms": {"min": ms[0], "median": median, "max": ms[ms.len() - 1]},
        "images_per_s": batch as f64 / median * 1e3,
        "peak_rss_mb": peak_rss_mb(),
        "threads": threads,
    });
    println!("{out}");
}
