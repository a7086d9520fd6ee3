//! The CUDA backend against the CPU reference, on a real GPU: the conformance suite with the
//! fast and the simple kernels, the tensor-core kernels in TF32 and bf16, whole networks at full size, and a CUDA graph replay. Without a usable GPU it prints
//! "skipped: <reason>" and passes, unless MEP_REQUIRE_GPU=1 (then it fails).

use mep_cuda::{cuda_backend_with, CudaBackend, Kernels};
use mep_kernels::Launcher;
use mep_tensor::precision::Precision;
use mep_tensor::prelude::*;

fn gpu_or_skip(kernels: Kernels) -> Option<CudaBackend> {
    match cuda_backend_with(0, kernels) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("MEP_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("MEP_REQUIRE_GPU=1 but no GPU backend: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn conformance_fast_kernels() {
    let Some(b) = gpu_or_skip(Kernels::Fast) else { return };
    eprintln!(
        "{} ({}, driver {})",
        b.launcher().device_name(),
        b.launcher().arch(),
        b.launcher().driver_version()
    );
    if let Err(failures) = mep_kernels::conformance::run_all(&b) {
        panic!("CUDA backend, fast kernels:\n{failures}");
    }
}

#[test]
fn networks_at_full_size() {
    let Some(b) = gpu_or_skip(Kernels::Fast) else { return };
    // ResNet-50 at 224×224 as in the paper, and a full-width ResNet-20 training step. The
    // input gradients are held to f32's own noise: within conformance::GRAD_FACTOR of the f32
    // CPU backend's distance from the f64 gradient (mep-certify's), since rounding alone
    // flips ReLU and max-pool decisions at this size (~1e-2 from the exact gradient).
    if let Err(failures) = mep_kernels::conformance::networks(&b, mep_kernels::conformance::NetScale::Full) {
        panic!("CUDA backend:\n{failures}");
    }
}

/// The tensor-core kernels (TF32 and bf16, `mma.sync`: sm_80 and newer) against the CPU's
/// product of the rounded operands, and whole networks in each against fp32 (the bounds of
/// the emulated runs, mep-kernels-emu's tests/precision.rs).
#[test]
fn tensor_cores_in_tf32_and_bf16() {
    let Some(b) = gpu_or_skip(Kernels::Fast) else { return };
    let sm: u32 = b.launcher().arch().trim_start_matches("sm_").parse().unwrap_or(0);
    if sm < 80 {
        eprintln!(
            "skipped: {} has no TF32/bf16 mma.sync (sm_80 and newer)",
            b.launcher().arch()
        );
        return;
    }
    // The instructions alone first: a wrong fragment layout shows there as a wrong element.
    if let Err(failures) = mep_kernels::conformance::mma_probes(&b) {
        panic!("{failures}");
    }
    for (p, bounds) in [(Precision::Tf32, (5e-3, 0.3)), (Precision::Bf16, (5e-2, 0.6))] {
        if let Err(failures) = mep_kernels::conformance::run_precision(&b, p) {
            panic!("CUDA backend in {p}:\n{failures}");
        }
        match mep_kernels::conformance::networks_in_precision(&b, p, mep_kernels::conformance::NetScale::Small, bounds)
        {
            Ok(worst) => {
                for (case, r) in worst {
                    eprintln!("{p} {case}: largest relative L2 distance from fp32 {r:.2e}");
                }
            }
            Err(failures) => panic!("CUDA backend:\n{failures}"),
        }
    }
}

#[test]
fn conformance_simple_kernels() {
    let Some(b) = gpu_or_skip(Kernels::Simple) else { return };
    if let Err(failures) = mep_kernels::conformance::run_all(&b) {
        panic!("CUDA backend, simple kernels:\n{failures}");
    }
}

#[test]
fn a_captured_axpy_replays() {
    let Some(b) = gpu_or_skip(Kernels::Fast) else { return };
    let n = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let xd = b.upload(&x).unwrap();
    let mut y = b.upload(&vec![1.0; n]).unwrap();
    let (graph, ()) = b.capture(|| b.axpy(0.5, &xd, &mut y)).unwrap();
    assert!(!graph.is_empty());
    // Capturing records without running.
    assert_eq!(b.download(&y).unwrap(), vec![1.0; n]);
    graph.launch().unwrap();
    graph.launch().unwrap();
    let got = b.download(&y).unwrap();
    let want: Vec<f32> = x.iter().map(|v| 1.0 + 0.5 * v + 0.5 * v).collect();
    assert_eq!(got, want);

    // Host copies are refused inside a capture, and the stream stays usable.
    let e = b
        .capture(|| b.download(&y).map(|_| ()))
        .err()
        .expect("a download cannot be captured");
    assert!(e.to_string().contains("capturing"), "{e}");
    b.axpy(1.0, &xd, &mut y).unwrap();
    assert_eq!(b.download(&y).unwrap()[2], want[2] + 2.0);
}

#[test]
fn launches_with_wrong_arguments_are_errors() {
    let Some(b) = gpu_or_skip(Kernels::Fast) else { return };
    let l = b.launcher();
    let one = mep_kernels::Dims::x(1);
    let e = l
        .launch("axpy_f32_v2", one, one, &[mep_kernels::Arg::I64(1)])
        .unwrap_err();
    assert!(
        e.to_string().contains("axpy_f32_v2") && e.to_string().contains("arguments"),
        "{e}"
    );
    let e = l.launch("no_such_kernel_v1", one, one, &[]).unwrap_err();
    assert!(matches!(e, mep_kernels::KernelError::UnknownKernel(_)), "{e:?}");
    let m = l.alloc(8).unwrap();
    let mut out = [0u8; 16];
    assert!(l.read(&m, 0, &mut out).is_err(), "reading past the end");
}

/// The bounds' zonotopes of `mep certify --device cuda` (`kernels/bounds.cu`): on every cut of
/// a small ResNet-20 the zonotope bounds of 63 intervals are the CPU's bit for bit and the
/// segment's certificate is the CPU's; the seconds of both go to stderr.
#[test]
fn certify_bounds_on_the_gpu_are_the_cpus() {
    use mep_certify::{Certifier, CertifyOptions, Method};
    use mep_resnet::{Arch, FoldedResNet, ResNet};
    use mep_tensor::{CpuBackend, Tensor};
    if gpu_or_skip(Kernels::Fast).is_none() {
        return;
    }
    let cpu = CpuBackend::new();
    let net = FoldedResNet::fold(&cpu, &ResNet::init(&cpu, Arch::ResNet20, 8, 10, 3).unwrap()).unwrap();
    let host = Certifier::new(&cpu, &net).unwrap();
    let dev = Certifier::new(&cpu, &net)
        .unwrap()
        .on_device(mep_cuda::CertifyOn(mep_cuda::CudaLauncher::new(0).unwrap()))
        .unwrap();
    // Two images in [−1, 1) from a fixed linear congruential sequence.
    let mut state = 12345u64;
    let h = 16;
    let x: Vec<f32> = (0..2 * 3 * h * h)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let xt = Tensor::from_vec(&cpu, [2, 3, h, h], x).unwrap();
    let intervals: Vec<(f64, f64)> = (0..6)
        .flat_map(|level| {
            let n = 1u32 << level;
            (0..n).map(move |i| (i as f64 / n as f64, (i + 1) as f64 / n as f64))
        })
        .collect();
    let opts = CertifyOptions {
        method: Method::Bounds,
        ..CertifyOptions::default()
    };
    for cut in Arch::ResNet20.cuts() {
        let z = net.encode(&cpu, &xt, cut).unwrap();
        let shape = z.shape.dims()[1..].to_vec();
        let z: Vec<f64> = z.to_vec(&cpu).unwrap().into_iter().map(f64::from).collect();
        let (za, zb) = z.split_at(z.len() / 2);
        let l = host.head(cut, &shape, za).unwrap();
        let target = (0..l.len()).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap();
        let zh = host.zonotope_bounds(cut, &shape, za, zb, target, &intervals).unwrap();
        let zd = dev.zonotope_bounds(cut, &shape, za, zb, target, &intervals).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&zh), bits(&zd), "{cut}: zonotope bounds");
        let a = host.segment(cut, &shape, za, zb, target, &opts).unwrap();
        let b = dev.segment(cut, &shape, za, zb, target, &opts).unwrap();
        assert_eq!(
            (a.intervals, a.margin_bound.map(f64::to_bits)),
            (b.intervals, b.margin_bound.map(f64::to_bits)),
            "{cut}: certificate"
        );
        eprintln!(
            "certify {cut}: {} intervals, cpu {:.3} s, cuda {:.3} s",
            a.intervals, a.seconds, b.seconds
        );
    }
}
