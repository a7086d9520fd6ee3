//! criterion benches of single Backend operations at ResNet-50 sizes (224×224): the CUDA
//! backend's kernels when the `cuda` feature is on and a GPU can be used, otherwise the CPU
//! backend, and the group's name says which (`kernels-cuda` or `kernels-cpu-fallback`).
//!
//! Cases: conv2d (fused bias + ReLU) and conv2d_bwd_input for the stem's 7×7/2, a 3×3 of
//! layer1 and a 1×1 of layer3; batch_norm_infer; the stem's max_pool2d; linear; softmax +
//! cross-entropy; axpy; dot; neb_forces (34 pivots of a layer1 point). Every call is followed
//! by a device synchronisation.
//!
//! criterion's throughput is set so that it reports rates directly: `Elements` are FLOPs for
//! the compute-bound cases (convolutions, linear: "Gelem/s" reads GFLOP/s) and `Bytes` the
//! least memory traffic of the memory-bound ones. After the criterion runs, a table gives each
//! case's GFLOP/s and GB/s next to the device's peak: bandwidth measured here with a large
//! `copy` and `axpy`, FLOP/s the nominal fp32 (non-tensor-core) figure of the GPU, or
//! `MEP_PEAK_GFLOPS` when set.
//!
//! `cargo bench -p mep-benches --bench kernels [-- FILTER]`; with `MEP_BENCH_RATES_ONLY=1`
//! only the rates table.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mep_benches::{cuda_sync, median, normal_vec, time_ms, Device};
use mep_tensor::{Act, Backend, Conv2dGeom, Nchw, NebForceParams, Pool2dGeom};
use std::time::Duration;

/// Set to skip criterion and print only the rates table (`cargo xtask gpu-check --only
/// kernel-rates` does): seconds instead of minutes.
const RATES_ONLY: &str = "MEP_BENCH_RATES_ONLY";

/// What a case computes and moves at least, per call.
#[derive(Clone, Copy)]
struct Work {
    flops: f64,
    bytes: f64,
    /// Whether FLOPs (not bytes) bound it: sets criterion's throughput unit.
    compute_bound: bool,
}

/// One benched operation on prepared buffers.
struct Case<'a> {
    name: String,
    work: Work,
    run: Box<dyn FnMut() -> Result<(), String> + 'a>,
}

/// Buffers of random values for the cases.
fn rand<B: Backend>(b: &B, n: usize, seed: u64) -> B::Buf {
    b.upload(&normal_vec(n, seed)).expect("upload")
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The cases at batch `n`, with `big` elements for the streaming ones (axpy, dot).
fn cases<B: Backend>(b: &B, n: usize, big: usize) -> Vec<Case<'_>> {
    let mut out: Vec<Case<'_>> = Vec::new();
    let convs = [
        (
            "stem 7x7/2 3->64 @224",
            Nchw {
                n,
                c: 3,
                h: 224,
                w: 224,
            },
            64,
            7,
            2,
            3,
        ),
        ("layer1 3x3 64->64 @56", Nchw { n, c: 64, h: 56, w: 56 }, 64, 3, 1, 1),
        (
            "layer3 1x1 1024->256 @14",
            Nchw {
                n,
                c: 1024,
                h: 14,
                w: 14,
            },
            256,
            1,
            1,
            0,
        ),
    ];
    for (label, input, c_out, k, stride, pad) in convs {
        let g = Conv2dGeom::square("bench", input, c_out, k, stride, pad).expect("geometry");
        let (xn, yn, wn) = (g.input().numel(), g.output().numel(), g.weight_len());
        let flops = 2.0 * g.macs() as f64;
        let bytes = 4.0 * (xn + yn + wn) as f64;
        let work = Work {
            flops,
            bytes,
            compute_bound: true,
        };
        let (x, w, bias) = (rand(b, xn, 1), rand(b, wn, 2), rand(b, c_out, 3));
        let mut y = b.alloc(yn).expect("alloc");
        out.push(Case {
            name: format!("conv2d {label} b{n}"),
            work,
            run: Box::new(move || b.conv2d(&g, &x, &w, Some(&bias), None, Act::Relu, &mut y).map_err(s)),
        });
        let (dy, w) = (rand(b, yn, 4), rand(b, wn, 5));
        let mut dx = b.alloc(xn).expect("alloc");
        out.push(Case {
            name: format!("conv2d_bwd_input {label} b{n}"),
            work,
            run: Box::new(move || b.conv2d_bwd_input(&g, &dy, &w, &mut dx).map_err(s)),
        });
    }

    let bn = Nchw {
        n,
        c: 256,
        h: 56,
        w: 56,
    };
    let (x, gamma, beta, mean) = (
        rand(b, bn.numel(), 6),
        rand(b, 256, 7),
        rand(b, 256, 8),
        rand(b, 256, 9),
    );
    let var = b.upload(&vec![1.5; 256]).expect("upload");
    let mut y = b.alloc(bn.numel()).expect("alloc");
    out.push(Case {
        name: format!("batch_norm_infer+relu 256x56x56 b{n}"),
        work: Work {
            flops: 3.0 * bn.numel() as f64,
            bytes: 8.0 * bn.numel() as f64,
            compute_bound: false,
        },
        run: Box::new(move || {
            b.batch_norm_infer(&bn, &x, &gamma, &beta, &mean, &var, 1e-5, Act::Relu, &mut y)
                .map_err(s)
        }),
    });

    let pool = Pool2dGeom {
        input: Nchw {
            n,
            c: 64,
            h: 112,
            w: 112,
        },
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (x, mut y) = (
        rand(b, pool.input.numel(), 10),
        b.alloc(pool.output().numel()).expect("alloc"),
    );
    out.push(Case {
        name: format!("max_pool2d 3x3/2 64x112x112 b{n}"),
        work: Work {
            flops: 9.0 * pool.output().numel() as f64,
            bytes: 4.0 * (pool.input.numel() + pool.output().numel()) as f64,
            compute_bound: false,
        },
        run: Box::new(move || b.max_pool2d(&pool, &x, &mut y).map_err(s)),
    });

    let (k, m) = (2048, 1000);
    let (x, w, bias) = (rand(b, n * k, 11), rand(b, m * k, 12), rand(b, m, 13));
    let mut y = b.alloc(n * m).expect("alloc");
    out.push(Case {
        name: format!("linear {k}->{m} b{n}"),
        work: Work {
            flops: 2.0 * (n * k * m) as f64,
            bytes: 4.0 * (n * k + m * k + n * m) as f64,
            compute_bound: true,
        },
        run: Box::new(move || b.linear(n, k, m, &x, &w, Some(&bias), &mut y).map_err(s)),
    });

    let (rows, classes) = (8192, 1000);
    let logits = rand(b, rows * classes, 14);
    let targets: Vec<usize> = (0..rows).map(|i| i * 7 % classes).collect();
    let (mut probs, mut losses) = (b.alloc(rows * classes).expect("alloc"), b.alloc(rows).expect("alloc"));
    out.push(Case {
        name: format!("softmax_cross_entropy {rows}x{classes}"),
        work: Work {
            flops: 4.0 * (rows * classes) as f64,
            bytes: 4.0 * (2 * rows * classes + rows) as f64,
            compute_bound: false,
        },
        run: Box::new(move || {
            b.softmax_cross_entropy(rows, classes, &logits, &targets, &mut probs, &mut losses)
                .map_err(s)
        }),
    });

    let (x, mut y) = (rand(b, big, 15), rand(b, big, 16));
    out.push(Case {
        name: format!("axpy {}M", big >> 20),
        work: Work {
            flops: 2.0 * big as f64,
            bytes: 12.0 * big as f64,
            compute_bound: false,
        },
        run: Box::new(move || b.axpy(1e-3, &x, &mut y).map_err(s)),
    });
    let (x, y) = (rand(b, big, 17), rand(b, big, 18));
    out.push(Case {
        name: format!("dot {}M", big >> 20),
        work: Work {
            flops: 2.0 * big as f64,
            bytes: 8.0 * big as f64,
            compute_bound: false,
        },
        run: Box::new(move || b.dot(&x, &y).map(drop).map_err(s)),
    });

    // A path of 34 pivots of a ResNet-50 layer1 point (the NEB step's shape in `layer1`).
    let (pivots, dim) = (34, 256 * 56 * 56);
    let p = NebForceParams {
        pivots,
        dim,
        spring: Some(1.0),
        climbing: None,
    };
    let (x, g) = (rand(b, pivots * dim, 19), rand(b, pivots * dim, 20));
    let energies: Vec<f64> = (0..pivots).map(|i| (i as f64 * 0.7).sin()).collect();
    let mut f = b.alloc(pivots * dim).expect("alloc");
    out.push(Case {
        name: format!("neb_forces P={pivots} D=256x56x56"),
        work: Work {
            flops: 12.0 * (pivots * dim) as f64,
            bytes: 12.0 * (pivots * dim) as f64,
            compute_bound: false,
        },
        run: Box::new(move || b.neb_forces(&p, &x, &g, &energies, &mut f).map(drop).map_err(s)),
    });
    out
}

/// The measured peak bandwidth in GB/s: the better of a `copy` (2 × 4 bytes per element) and
/// an `axpy` (3 × 4) over `n` elements.
fn peak_bandwidth<B: Backend>(b: &B, n: usize, sync: &dyn Fn() -> Result<(), String>) -> Result<(f64, String), String> {
    let (x, mut y) = (rand(b, n, 21), rand(b, n, 22));
    let copy = median(&time_ms(2, 10, sync, || b.copy(&x, &mut y).map_err(s))?);
    let axpy = median(&time_ms(2, 10, sync, || b.axpy(0.5, &x, &mut y).map_err(s))?);
    let (gb_copy, gb_axpy) = (8.0 * n as f64 / copy / 1e6, 12.0 * n as f64 / axpy / 1e6);
    let how = format!(
        "copy {gb_copy:.0} GB/s, axpy {gb_axpy:.0} GB/s over {} MiB buffers",
        (4 * n) >> 20
    );
    Ok((gb_copy.max(gb_axpy), how))
}

/// The nominal fp32 (non-tensor-core) peak of known GPUs in GFLOP/s; `MEP_PEAK_GFLOPS`
/// overrides.
fn nominal_gflops(device: &str) -> Option<(f64, String)> {
    if let Some(v) = std::env::var("MEP_PEAK_GFLOPS").ok().and_then(|v| v.parse().ok()) {
        return Some((v, "MEP_PEAK_GFLOPS".into()));
    }
    let known = [
        ("H200", 66_900.0),
        ("H100 PCIe", 51_200.0),
        ("H100", 66_900.0),
        ("A100", 19_500.0),
        ("L40S", 91_600.0),
    ];
    known
        .iter()
        .find(|(k, _)| device.contains(k))
        .map(|(k, v)| (*v, format!("nominal fp32 of the {k}")))
}

fn bench_device<B: Backend>(
    c: &mut Criterion,
    b: &B,
    group: &str,
    device: &str,
    sync: &dyn Fn() -> Result<(), String>,
) {
    let gpu = b.name() != "cpu";
    // The CPU fallback gets a smaller batch so that it finishes in minutes.
    let (n, big) = if gpu { (32, 64 << 20) } else { (4, 16 << 20) };
    let argv: Vec<String> = std::env::args().collect();
    let listing = argv.iter().any(|a| a == "--list");
    let test_mode = argv.iter().any(|a| a == "--test");
    let rates_only = std::env::var_os(RATES_ONLY).is_some();
    let mut cases = cases(b, n, big);

    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if gpu { 2 } else { 5 }));
    for case in cases.iter_mut().filter(|_| !rates_only) {
        g.throughput(if case.work.compute_bound {
            Throughput::Elements(case.work.flops as u64)
        } else {
            Throughput::Bytes(case.work.bytes as u64)
        });
        let run = &mut case.run;
        g.bench_function(case.name.as_str(), |bench| {
            bench.iter(|| {
                run().expect("kernel");
                sync().expect("synchronize");
            })
        });
    }
    g.finish();
    if listing {
        return;
    }

    // The rates against the device's peak, from our own timing (criterion keeps its own).
    let iters = if test_mode {
        1
    } else if gpu {
        20
    } else {
        3
    };
    let peak_bw = peak_bandwidth(b, big, sync);
    let peak_flops = nominal_gflops(device);
    println!("\n{group} on {device}: rates per case (median of {iters} calls, each synchronised)");
    match &peak_bw {
        Ok((_, how)) => println!("peak bandwidth (measured): {how}"),
        Err(e) => println!("peak bandwidth: not measured ({e})"),
    }
    match &peak_flops {
        Some((v, how)) => println!("peak FLOP/s: {v:.0} GFLOP/s ({how})"),
        None => println!("peak FLOP/s: unknown for this device (set MEP_PEAK_GFLOPS)"),
    }
    println!(
        "{:<46} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "case", "ms", "GFLOP/s", "% peak", "GB/s", "% peak"
    );
    for case in cases.iter_mut() {
        match time_ms(1, iters, sync, &mut case.run) {
            Err(e) => println!("{:<46} failed: {e}", case.name),
            Ok(ms) => {
                let ms = median(&ms);
                let gflops = case.work.flops / ms / 1e6;
                let gbs = case.work.bytes / ms / 1e6;
                let pct = |v: f64, peak: Option<f64>| peak.map_or("–".into(), |p| format!("{:.0}%", 100.0 * v / p));
                println!(
                    "{:<46} {ms:>10.3} {gflops:>10.1} {:>8} {gbs:>10.1} {:>8}",
                    case.name,
                    pct(gflops, peak_flops.as_ref().map(|p| p.0)),
                    pct(gbs, peak_bw.as_ref().ok().map(|p| p.0)),
                );
            }
        }
    }
}

fn kernels(c: &mut Criterion) {
    match Device::cuda_or_cpu(0) {
        Device::Cuda(b) => {
            let b = *b;
            let name = b.launcher().device_name().to_string();
            bench_device(c, &b, "kernels-cuda", &name, &|| cuda_sync(&b));
        }
        Device::Cpu(b, why) => {
            eprintln!("kernels: benching the CPU backend instead of the GPU: {why}");
            bench_device(c, &b, "kernels-cpu-fallback", "cpu", &|| Ok(()));
        }
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
