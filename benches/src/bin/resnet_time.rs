//! The timing side of the PyTorch comparison: one row per process (so peak memory is
//! the row's own), JSON on stdout in the format of `benches/pytorch_resnet.py`.
//!
//! `resnet_time --row "resnet50 224x224 b8" [--iters 10] [--threads 2]`

use mep_benches::{peak_rss_mb, setup, TimingArgs, ROWS};
use mep_resnet::Cut;
use mep_tensor::CpuBackend;
use std::time::Instant;

fn stats(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    serde_json::json!({"min": ms[0], "median": ms[ms.len() / 2], "max": ms[ms.len() - 1]})
}

fn main() {
    let args = TimingArgs::from_env();
    args.init_threads();
    let TimingArgs { row, iters, threads } = args;
    let Some(row_name) = row else {
        eprintln!("usage: resnet_time --row NAME [--iters N] [--threads T]; rows:");
        for r in ROWS {
            eprintln!("  {}", r.name);
        }
        std::process::exit(2);
    };
    let Some(row) = ROWS.iter().find(|r| r.name == row_name) else {
        eprintln!("unknown row `{row_name}`");
        std::process::exit(2);
    };
    let b = CpuBackend::new();
    let (net, x, targets) = setup(&b, row);
    let scale = 1.0 / row.batch as f32;
    let time = |f: &dyn Fn()| -> Vec<f64> {
        for _ in 0..2 {
            f();
        }
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    };
    let fwd = time(&|| {
        net.head(&b, &x, Cut::Input).expect("forward");
    });
    let fwdbwd = time(&|| {
        net.head_loss_grad(&b, &x, Cut::Input, &targets, scale)
            .expect("backward");
    });
    let out = serde_json::json!({
        "impl": "mep",
        "row": row.name,
        "fwd_ms": stats(fwd),
        "fwdbwd_ms": stats(fwdbwd),
        "peak_rss_mb": peak_rss_mb(),
        "threads": threads,
    });
    println!("{out}");
}
