//! criterion benches of whole networks: forward and forward + backward to the input
//! for each row of the PyTorch comparison (BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion};
use mep_benches::{setup, ROWS};
use mep_resnet::Cut;
use mep_tensor::CpuBackend;

fn resnets(c: &mut Criterion) {
    let b = CpuBackend::new();
    let mut g = c.benchmark_group("resnet");
    g.sample_size(10);
    for row in &ROWS {
        let (net, x, targets) = setup(&b, row);
        g.bench_function(format!("{} forward", row.name), |bench| {
            bench.iter(|| net.head(&b, &x, Cut::Input).unwrap())
        });
        g.bench_function(format!("{} forward+backward", row.name), |bench| {
            bench.iter(|| {
                net.head_loss_grad(&b, &x, Cut::Input, &targets, 1.0 / row.batch as f32)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, resnets);
criterion_main!(benches);
