//! TF32 and bf16 on the CPU backend: every convolution and linear-layer GEMM of a backend set
//! to a reduced precision equals the fp32 op run on operands rounded by the one rule of
//! `mep_tensor::precision` (bit for bit, on the same conv path), bf16 results are bf16 values,
//! and the bias gradient (a reduction) stays the fp32 one.

use mep_tensor::cpu::ConvPath;
use mep_tensor::precision::{round_bf16, Precision};
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, ConvT2dGeom, CpuBackend};

/// Seeded values in [−1, 1) whose low mantissa bits are set, so that rounding changes them.
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut r = mep_rng::SplitMix64::new(seed);
    (0..len).map(|_| (r.unit_f64() * 2.0 - 1.0) as f32).collect()
}

fn rounded(p: Precision, v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| p.round_operand(x)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One op of a GEMM family: from its two operands `(a, b)` to its GEMM result and, for weight
/// gradients, its bias gradient.
type Op<'a> = &'a dyn Fn(&CpuBackend, &[f32], &[f32]) -> (Vec<f32>, Option<Vec<f32>>);

/// Runs `op` on `backend` at `p` and checks it against the fp32 op on rounded operands.
fn check(name: &str, backend: &CpuBackend, p: Precision, a: &[f32], b: &[f32], op: Op<'_>) {
    backend.set_precision(p).unwrap();
    let (got, got_db) = op(backend, a, b);
    backend.set_precision(Precision::Fp32).unwrap();
    let (mut want, _) = op(backend, &rounded(p, a), &rounded(p, b));
    if p == Precision::Bf16 {
        want.iter_mut().for_each(|x| *x = round_bf16(*x));
        assert!(
            got.iter().all(|x| x.to_bits() & 0xffff == 0),
            "{name} {p}: a result is not a bf16 value"
        );
    }
    assert_eq!(
        bits(&got),
        bits(&want),
        "{name} {p}: not the fp32 op on rounded operands"
    );
    let (exact, exact_db) = op(backend, a, b);
    assert_ne!(bits(&got), bits(&exact), "{name} {p}: rounding changed nothing");
    assert_eq!(
        got_db.map(|v| bits(&v)),
        exact_db.map(|v| bits(&v)),
        "{name} {p}: bias gradient"
    );
}

#[allow(clippy::too_many_arguments)]
fn conv(n: usize, c_in: usize, h: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    Conv2dGeom {
        n,
        c_in,
        h,
        w: h + 1,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

fn check_conv(backend: &CpuBackend, p: Precision, g: &Conv2dGeom, seed: u64) {
    let (x, w, dy) = (
        values(seed, g.input().numel()),
        values(seed + 1, g.weight_len()),
        values(seed + 2, g.output().numel()),
    );
    let (bias, residual) = (values(seed + 3, g.c_out), values(seed + 4, g.output().numel()));
    let name = format!("{g:?} on {:?}", backend.conv_path());
    check(&format!("conv2d {name}"), backend, p, &x, &w, &|cpu, x, w| {
        let (x, w) = (cpu.upload(x).unwrap(), cpu.upload(w).unwrap());
        let bias = cpu.upload(&bias).unwrap();
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        cpu.conv2d(g, &x, &w, Some(&bias), None, Act::Identity, &mut y).unwrap();
        (cpu.download(&y).unwrap(), None)
    });
    // A fused residual and ReLU come after the rounding, in f32 (bf16 rounds the convolution's
    // output with its bias, as the tensor-core kernels do).
    let fused = |cpu: &CpuBackend, x: &[f32], w: &[f32], residual: Option<&[f32]>, act: Act| {
        let (x, w, b) = (
            cpu.upload(x).unwrap(),
            cpu.upload(w).unwrap(),
            cpu.upload(&bias).unwrap(),
        );
        let r = residual.map(|r| cpu.upload(r).unwrap());
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        cpu.conv2d(g, &x, &w, Some(&b), r.as_ref(), act, &mut y).unwrap();
        cpu.download(&y).unwrap()
    };
    backend.set_precision(p).unwrap();
    let got = fused(backend, &x, &w, Some(&residual), Act::Relu);
    backend.set_precision(Precision::Fp32).unwrap();
    let conv = fused(backend, &rounded(p, &x), &rounded(p, &w), None, Act::Identity);
    let want: Vec<f32> = conv
        .iter()
        .zip(&residual)
        .map(|(&v, &r)| mep_tensor::float::relu(p.round_result(v) + r))
        .collect();
    assert_eq!(
        bits(&got),
        bits(&want),
        "conv2d {name} {p}: residual and ReLU after the rounding"
    );
    check(
        &format!("conv2d_bwd_input {name}"),
        backend,
        p,
        &dy,
        &w,
        &|cpu, dy, w| {
            let (dy, w) = (cpu.upload(dy).unwrap(), cpu.upload(w).unwrap());
            let mut dx = cpu.alloc(g.input().numel()).unwrap();
            cpu.conv2d_bwd_input(g, &dy, &w, &mut dx).unwrap();
            (cpu.download(&dx).unwrap(), None)
        },
    );
    check(
        &format!("conv2d_bwd_weight {name}"),
        backend,
        p,
        &x,
        &dy,
        &|cpu, x, dy| {
            let (x, dy) = (cpu.upload(x).unwrap(), cpu.upload(dy).unwrap());
            let mut dw = cpu.alloc(g.weight_len()).unwrap();
            let mut db = cpu.alloc(g.c_out).unwrap();
            cpu.conv2d_bwd_weight(g, &x, &dy, &mut dw, Some(&mut db)).unwrap();
            (cpu.download(&dw).unwrap(), Some(cpu.download(&db).unwrap()))
        },
    );
}

#[test]
fn convolutions_round_their_operands_on_every_path() {
    // 3×3 padding 1 (the direct kernels and Winograd), 1×1, strided 1×1 and the 7×7 stem.
    let geoms = [
        conv(2, 8, 8, 16, 3, 1, 1),
        conv(2, 16, 8, 8, 3, 2, 1),
        conv(3, 8, 7, 12, 1, 1, 0),
        conv(2, 8, 9, 16, 1, 2, 0),
        conv(1, 3, 15, 8, 7, 2, 3),
    ];
    for path in [
        ConvPath::Direct,
        ConvPath::Gemm,
        ConvPath::Winograd,
        ConvPath::Winograd4x4,
        ConvPath::Auto,
    ] {
        let backend = CpuBackend::new().with_conv_path(path);
        for p in [Precision::Tf32, Precision::Bf16] {
            for (i, g) in geoms.iter().enumerate() {
                check_conv(&backend, p, g, 10 * i as u64);
            }
        }
    }
}

#[test]
fn transposed_convolutions_round_their_operands() {
    let g = ConvT2dGeom {
        n: 2,
        c_in: 8,
        h: 5,
        w: 6,
        c_out: 4,
        kh: 4,
        kw: 4,
        stride: 2,
        pad: 1,
        output_padding: 0,
    };
    let backend = CpuBackend::new();
    let (x, w, dy, bias) = (
        values(1, g.input().numel()),
        values(2, g.weight_len()),
        values(3, g.output().numel()),
        values(4, g.c_out),
    );
    for p in [Precision::Tf32, Precision::Bf16] {
        check("conv_transpose2d", &backend, p, &x, &w, &|cpu, x, w| {
            let (x, w, bias) = (
                cpu.upload(x).unwrap(),
                cpu.upload(w).unwrap(),
                cpu.upload(&bias).unwrap(),
            );
            let mut y = cpu.alloc(g.output().numel()).unwrap();
            cpu.conv_transpose2d(&g, &x, &w, Some(&bias), &mut y).unwrap();
            (cpu.download(&y).unwrap(), None)
        });
        check("conv_transpose2d_bwd_input", &backend, p, &dy, &w, &|cpu, dy, w| {
            let (dy, w) = (cpu.upload(dy).unwrap(), cpu.upload(w).unwrap());
            let mut dx = cpu.alloc(g.input().numel()).unwrap();
            cpu.conv_transpose2d_bwd_input(&g, &dy, &w, &mut dx).unwrap();
            (cpu.download(&dx).unwrap(), None)
        });
        check("conv_transpose2d_bwd_weight", &backend, p, &x, &dy, &|cpu, x, dy| {
            let (x, dy) = (cpu.upload(x).unwrap(), cpu.upload(dy).unwrap());
            let mut dw = cpu.alloc(g.weight_len()).unwrap();
            let mut db = cpu.alloc(g.c_out).unwrap();
            cpu.conv_transpose2d_bwd_weight(&g, &x, &dy, &mut dw, Some(&mut db))
                .unwrap();
            (cpu.download(&dw).unwrap(), Some(cpu.download(&db).unwrap()))
        });
    }
}

#[test]
fn linear_layers_round_their_operands() {
    let (n, k, m) = (5, 37, 10);
    let backend = CpuBackend::new();
    let (x, w, dy, bias) = (values(1, n * k), values(2, m * k), values(3, n * m), values(4, m));
    for p in [Precision::Tf32, Precision::Bf16] {
        check("linear", &backend, p, &x, &w, &|cpu, x, w| {
            let (x, w, bias) = (
                cpu.upload(x).unwrap(),
                cpu.upload(w).unwrap(),
                cpu.upload(&bias).unwrap(),
            );
            let mut y = cpu.alloc(n * m).unwrap();
            cpu.linear(n, k, m, &x, &w, Some(&bias), &mut y).unwrap();
            (cpu.download(&y).unwrap(), None)
        });
        check("linear_bwd_input", &backend, p, &dy, &w, &|cpu, dy, w| {
            let (dy, w) = (cpu.upload(dy).unwrap(), cpu.upload(w).unwrap());
            let mut dx = cpu.alloc(n * k).unwrap();
            cpu.linear_bwd_input(n, k, m, &dy, &w, &mut dx).unwrap();
            (cpu.download(&dx).unwrap(), None)
        });
        check("linear_bwd_weight", &backend, p, &x, &dy, &|cpu, x, dy| {
            let (x, dy) = (cpu.upload(x).unwrap(), cpu.upload(dy).unwrap());
            let mut dw = cpu.alloc(m * k).unwrap();
            let mut db = cpu.alloc(m).unwrap();
            cpu.linear_bwd_weight(n, k, m, &x, &dy, &mut dw, Some(&mut db)).unwrap();
            (cpu.download(&dw).unwrap(), Some(cpu.download(&db).unwrap()))
        });
    }
}

#[test]
fn precision_round_trips_and_is_shared_by_clones() {
    let cpu = CpuBackend::new();
    assert_eq!(cpu.precision(), Precision::Fp32);
    let clone = cpu.clone();
    for p in Precision::ALL {
        cpu.set_precision(p).unwrap();
        assert_eq!(cpu.precision(), p);
        assert_eq!(clone.precision(), p, "a clone computes on the same device state");
    }
    cpu.set_precision(Precision::Fp32).unwrap();
    assert_eq!(CpuBackend::new().precision(), Precision::Fp32);
}

#[test]
fn ops_outside_the_gemm_families_ignore_the_precision() {
    // Batch norm, activations, pooling, softmax and the optimiser stay f32: an add is one.
    let cpu = CpuBackend::new();
    let (a, b) = (values(1, 100), values(2, 100));
    let sum = |p: Precision| {
        cpu.set_precision(p).unwrap();
        let (a, b) = (cpu.upload(&a).unwrap(), cpu.upload(&b).unwrap());
        let mut y = cpu.alloc(100).unwrap();
        cpu.add(&a, &b, &mut y).unwrap();
        bits(&cpu.download(&y).unwrap())
    };
    assert_eq!(sum(Precision::Bf16), sum(Precision::Fp32));
}
