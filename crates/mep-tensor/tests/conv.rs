//! The GEMM kernels of the CPU backend (convolution, transposed convolution, linear)
//! against the f64 reference, and the reference backwards against finite differences.

use mep_tensor::cpu::reference::conv as r;
use mep_tensor::cpu::ConvPath;
use mep_tensor::prelude::*;
use mep_tensor::{Act, Conv2dGeom, ConvT2dGeom, CpuBackend, CpuBuf, TensorError};

mod common;
use common::assert_close;

/// The workspace's generator (seeded, so that failures reproduce), drawing in [−1, 1).
struct Rng(mep_rng::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mep_rng::SplitMix64::new(seed))
    }
    fn uniform(&mut self) -> f64 {
        self.0.unit_f64() * 2.0 - 1.0
    }
    /// Values that are exact in f32, so that both sides see the same inputs.
    fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.uniform() as f32 as f64).collect()
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

#[allow(clippy::too_many_arguments)]
fn geom(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dGeom {
    Conv2dGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

/// Geometries covering 1×1 (direct and strided), 3×3, the 7×7 stem, odd and non-square sizes.
fn conv_geoms() -> Vec<Conv2dGeom> {
    vec![
        geom(1, 3, 5, 5, 2, 1, 1, 0),
        geom(3, 8, 7, 9, 5, 1, 1, 0),
        geom(3, 8, 9, 6, 16, 1, 2, 0),
        geom(1, 4, 6, 5, 3, 3, 1, 1),
        geom(3, 5, 7, 8, 6, 3, 1, 0),
        geom(3, 6, 9, 7, 4, 3, 2, 1),
        geom(1, 3, 11, 13, 8, 7, 2, 3),
        geom(3, 3, 16, 12, 4, 7, 2, 3),
        geom(2, 16, 10, 10, 16, 3, 1, 1),
        geom(1, 2, 5, 4, 3, 3, 1, 2),
        geom(2, 3, 4, 6, 2, 2, 2, 0),
        // Enough columns that the forward cuts each image into several blocks.
        geom(3, 32, 24, 20, 8, 3, 1, 1),
        // Padding wider than the kernel, and a non-square kernel.
        geom(1, 2, 3, 4, 3, 1, 1, 1),
        Conv2dGeom {
            kh: 1,
            kw: 3,
            ..geom(2, 3, 5, 6, 4, 1, 1, 1)
        },
        Conv2dGeom {
            kh: 3,
            kw: 2,
            ..geom(2, 3, 7, 6, 4, 1, 2, 1)
        },
        // Output planes of ≤ 16 pixels: several images share one GEMM, gathered through a tap
        // table (padding, stride 2, a 7×7 kernel, 1-pixel planes over many chunks).
        geom(5, 8, 4, 4, 6, 3, 1, 1),
        geom(4, 3, 8, 8, 5, 7, 2, 3),
        geom(7, 6, 3, 3, 9, 1, 1, 0),
        geom(70, 4, 1, 1, 5, 1, 1, 0),
        geom(6, 5, 4, 4, 3, 3, 2, 1),
        // A small output from an input plane too large for the table gather.
        geom(2, 2, 40, 40, 3, 3, 16, 1),
        // A 1×1 stride-1 input gradient straight from the strided GEMM (plane above the batching size).
        geom(2, 12, 9, 8, 7, 1, 1, 0),
        // A deep im2col (K = 2304) whose column blocks are capped by the cache budget.
        geom(1, 256, 12, 11, 4, 3, 1, 1),
        geom(1, 256, 23, 21, 4, 3, 2, 1),
    ]
}

const ACTS: [Act; 4] = [Act::Identity, Act::Relu, Act::LeakyRelu(0.1), Act::Sigmoid];

#[test]
fn conv2d_forward_with_bias_residual_and_each_activation_matches_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1);
    for (gi, g) in conv_geoms().into_iter().enumerate() {
        let x = rng.vec(g.input().numel());
        let w = rng.vec(g.weight_len());
        let b = rng.vec(g.c_out);
        let res = rng.vec(g.output().numel());
        let (xb, wb, bb, rb) = (
            cpu.upload(&f32s(&x)).unwrap(),
            cpu.upload(&f32s(&w)).unwrap(),
            cpu.upload(&f32s(&b)).unwrap(),
            cpu.upload(&f32s(&res)).unwrap(),
        );
        for (ai, act) in ACTS.into_iter().enumerate() {
            // Cycle through the bias/residual combinations across activations and geometries.
            let with_bias = (gi + ai) % 2 == 0;
            let with_res = (gi + ai / 2) % 2 == 0;
            let want = r::conv2d_fused(
                &g,
                &x,
                &w,
                with_bias.then_some(&b[..]),
                with_res.then_some(&res[..]),
                act,
            );
            let mut y = cpu.upload(&vec![f32::NAN; g.output().numel()]).unwrap();
            cpu.conv2d(
                &g,
                &xb,
                &wb,
                with_bias.then_some(&bb),
                with_res.then_some(&rb),
                act,
                &mut y,
            )
            .unwrap();
            let what = format!("conv2d {g:?} {act:?} bias={with_bias} residual={with_res}");
            assert_close(&what, &cpu.download(&y).unwrap(), &want, ATOL, RTOL);
        }
    }
}

#[test]
fn conv2d_backward_input_weight_and_bias_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(2);
    for g in conv_geoms() {
        let x = rng.vec(g.input().numel());
        let w = rng.vec(g.weight_len());
        let dy = rng.vec(g.output().numel());
        let (xb, wb, dyb) = (
            cpu.upload(&f32s(&x)).unwrap(),
            cpu.upload(&f32s(&w)).unwrap(),
            cpu.upload(&f32s(&dy)).unwrap(),
        );
        check_backward(&cpu, "", &g, (&x, &w, &dy), (&xb, &wb, &dyb), ATOL);
    }
}

/// Input, weight and bias gradients of `g` on `cpu` against the reference (`label` names the
/// path in messages; `atol` is the input gradient's, [`atol_on`]). NaN-filled outputs prove
/// every element is overwritten, not accumulated.
fn check_backward(
    cpu: &CpuBackend,
    label: &str,
    g: &Conv2dGeom,
    (x, w, dy): (&[f64], &[f64], &[f64]),
    (xb, wb, dyb): (&CpuBuf, &CpuBuf, &CpuBuf),
    atol: f64,
) {
    let mut dx = cpu.upload(&vec![f32::NAN; g.input().numel()]).unwrap();
    cpu.conv2d_bwd_input(g, dyb, wb, &mut dx).unwrap();
    assert_close(
        &format!("{label}conv2d_bwd_input {g:?}"),
        &cpu.download(&dx).unwrap(),
        &r::conv2d_bwd_input(g, dy, w),
        atol,
        RTOL,
    );
    let mut dw = cpu.upload(&vec![f32::NAN; g.weight_len()]).unwrap();
    let mut db = cpu.upload(&vec![f32::NAN; g.c_out]).unwrap();
    cpu.conv2d_bwd_weight(g, xb, dyb, &mut dw, Some(&mut db)).unwrap();
    let what = format!("{label}conv2d_bwd_weight {g:?}");
    let want_dw = r::conv2d_bwd_weight(g, x, dy);
    assert_close(&what, &cpu.download(&dw).unwrap(), &want_dw, ATOL, RTOL);
    let hw = g.out_h() * g.out_w();
    let want_db = r::channel_sums(g.n, g.c_out, hw, dy);
    assert_close(&what, &cpu.download(&db).unwrap(), &want_db, ATOL, RTOL);
    // Without a bias gradient.
    cpu.conv2d_bwd_weight(g, xb, dyb, &mut dw, None).unwrap();
    assert_close(&what, &cpu.download(&dw).unwrap(), &want_dw, ATOL, RTOL);
}

fn tgeoms() -> Vec<ConvT2dGeom> {
    let t = |n, c_in, h, w, c_out, k, stride, pad, output_padding| ConvT2dGeom {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride,
        pad,
        output_padding,
    };
    vec![
        t(1, 4, 3, 5, 3, 2, 2, 0, 0),
        t(3, 5, 4, 3, 6, 3, 2, 1, 1),
        t(2, 3, 5, 5, 4, 3, 1, 1, 0),
        t(1, 6, 4, 4, 2, 1, 1, 0, 0),
        t(2, 4, 3, 4, 5, 4, 2, 1, 0),
        t(1, 2, 3, 3, 3, 3, 3, 0, 2),
    ]
}

#[test]
fn conv_transpose2d_forward_and_backwards_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(3);
    for g in tgeoms() {
        let x = rng.vec(g.input().numel());
        let w = rng.vec(g.weight_len());
        let b = rng.vec(g.c_out);
        let dy = rng.vec(g.output().numel());
        let (xb, wb, bb, dyb) = (
            cpu.upload(&f32s(&x)).unwrap(),
            cpu.upload(&f32s(&w)).unwrap(),
            cpu.upload(&f32s(&b)).unwrap(),
            cpu.upload(&f32s(&dy)).unwrap(),
        );
        for with_bias in [false, true] {
            let mut y = cpu.upload(&vec![f32::NAN; g.output().numel()]).unwrap();
            cpu.conv_transpose2d(&g, &xb, &wb, with_bias.then_some(&bb), &mut y)
                .unwrap();
            let want = r::conv_transpose2d(&g, &x, &w, with_bias.then_some(&b[..]));
            assert_close(
                &format!("conv_transpose2d {g:?} bias={with_bias}"),
                &cpu.download(&y).unwrap(),
                &want,
                ATOL,
                RTOL,
            );
        }
        let mut dx = cpu.upload(&vec![f32::NAN; g.input().numel()]).unwrap();
        cpu.conv_transpose2d_bwd_input(&g, &dyb, &wb, &mut dx).unwrap();
        let want = r::conv_transpose2d_bwd_input(&g, &dy, &w);
        assert_close(
            &format!("conv_transpose2d_bwd_input {g:?}"),
            &cpu.download(&dx).unwrap(),
            &want,
            ATOL,
            RTOL,
        );

        let mut dw = cpu.upload(&vec![f32::NAN; g.weight_len()]).unwrap();
        let mut db = cpu.upload(&vec![f32::NAN; g.c_out]).unwrap();
        cpu.conv_transpose2d_bwd_weight(&g, &xb, &dyb, &mut dw, Some(&mut db))
            .unwrap();
        let what = format!("conv_transpose2d_bwd_weight {g:?}");
        assert_close(
            &what,
            &cpu.download(&dw).unwrap(),
            &r::conv_transpose2d_bwd_weight(&g, &x, &dy),
            ATOL,
            RTOL,
        );
        let hw = g.out_h() * g.out_w();
        assert_close(
            &what,
            &cpu.download(&db).unwrap(),
            &r::channel_sums(g.n, g.c_out, hw, &dy),
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn linear_forward_and_backwards_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(4);
    for (n, k, m) in [(1, 1, 1), (3, 7, 5), (8, 64, 10), (17, 33, 65), (128, 256, 10)] {
        let x = rng.vec(n * k);
        let w = rng.vec(m * k);
        let b = rng.vec(m);
        let dy = rng.vec(n * m);
        let (xb, wb, bb, dyb) = (
            cpu.upload(&f32s(&x)).unwrap(),
            cpu.upload(&f32s(&w)).unwrap(),
            cpu.upload(&f32s(&b)).unwrap(),
            cpu.upload(&f32s(&dy)).unwrap(),
        );
        let what = format!("linear n={n} k={k} m={m}");
        for with_bias in [false, true] {
            let mut y = cpu.upload(&vec![f32::NAN; n * m]).unwrap();
            cpu.linear(n, k, m, &xb, &wb, with_bias.then_some(&bb), &mut y).unwrap();
            let want = r::linear(n, k, m, &x, &w, with_bias.then_some(&b[..]));
            assert_close(&what, &cpu.download(&y).unwrap(), &want, ATOL, RTOL);
        }
        let mut dx = cpu.upload(&vec![f32::NAN; n * k]).unwrap();
        cpu.linear_bwd_input(n, k, m, &dyb, &wb, &mut dx).unwrap();
        assert_close(
            &what,
            &cpu.download(&dx).unwrap(),
            &r::linear_bwd_input(n, k, m, &dy, &w),
            ATOL,
            RTOL,
        );
        let mut dw = cpu.upload(&vec![f32::NAN; m * k]).unwrap();
        let mut db = cpu.upload(&vec![f32::NAN; m]).unwrap();
        cpu.linear_bwd_weight(n, k, m, &xb, &dyb, &mut dw, Some(&mut db))
            .unwrap();
        assert_close(
            &what,
            &cpu.download(&dw).unwrap(),
            &r::linear_bwd_weight(n, k, m, &x, &dy),
            ATOL,
            RTOL,
        );
        assert_close(
            &what,
            &cpu.download(&db).unwrap(),
            &r::channel_sums(n, m, 1, &dy),
            ATOL,
            RTOL,
        );
    }
}

/// `Σ_i a_i b_i`.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// `<grad, dir>` against the central difference of `f` along `dir`, where `f(t)` is the
/// loss at the point displaced by `t·dir`.
fn check_directional(what: &str, grad: &[f64], dir: &[f64], f: impl Fn(f64) -> f64) {
    let h = 1e-4;
    let fd = (f(h) - f(-h)) / (2.0 * h);
    let an = dot(grad, dir);
    assert!(
        (fd - an).abs() <= 1e-6 * (1.0 + an.abs()),
        "{what}: analytic {an}, finite difference {fd}"
    );
}

fn displaced(v: &[f64], dir: &[f64], t: f64) -> Vec<f64> {
    v.iter().zip(dir).map(|(v, d)| v + t * d).collect()
}

#[test]
fn reference_conv2d_backwards_agree_with_finite_differences() {
    let mut rng = Rng::new(5);
    for g in [
        geom(2, 3, 5, 4, 2, 3, 2, 1),
        geom(1, 2, 4, 5, 3, 3, 1, 1),
        geom(2, 2, 3, 3, 2, 1, 1, 0),
    ] {
        let (x, w, b) = (rng.vec(g.input().numel()), rng.vec(g.weight_len()), rng.vec(g.c_out));
        let rdir = rng.vec(g.output().numel());
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r::conv2d(&g, x, w, Some(b)), &rdir);
        let (dx_dir, dw_dir, db_dir) = (rng.vec(x.len()), rng.vec(w.len()), rng.vec(b.len()));
        let what = format!("{g:?}");
        check_directional(&what, &r::conv2d_bwd_input(&g, &rdir, &w), &dx_dir, |t| {
            loss(&displaced(&x, &dx_dir, t), &w, &b)
        });
        check_directional(&what, &r::conv2d_bwd_weight(&g, &x, &rdir), &dw_dir, |t| {
            loss(&x, &displaced(&w, &dw_dir, t), &b)
        });
        let db = r::channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), &rdir);
        check_directional(&what, &db, &db_dir, |t| loss(&x, &w, &displaced(&b, &db_dir, t)));
    }
}

#[test]
fn reference_conv_transpose2d_backwards_agree_with_finite_differences() {
    let mut rng = Rng::new(6);
    for g in tgeoms().into_iter().take(3) {
        let (x, w, b) = (rng.vec(g.input().numel()), rng.vec(g.weight_len()), rng.vec(g.c_out));
        let rdir = rng.vec(g.output().numel());
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r::conv_transpose2d(&g, x, w, Some(b)), &rdir);
        let (dx_dir, dw_dir, db_dir) = (rng.vec(x.len()), rng.vec(w.len()), rng.vec(b.len()));
        let what = format!("{g:?}");
        check_directional(&what, &r::conv_transpose2d_bwd_input(&g, &rdir, &w), &dx_dir, |t| {
            loss(&displaced(&x, &dx_dir, t), &w, &b)
        });
        check_directional(&what, &r::conv_transpose2d_bwd_weight(&g, &x, &rdir), &dw_dir, |t| {
            loss(&x, &displaced(&w, &dw_dir, t), &b)
        });
        let db = r::channel_sums(g.n, g.c_out, g.out_h() * g.out_w(), &rdir);
        check_directional(&what, &db, &db_dir, |t| loss(&x, &w, &displaced(&b, &db_dir, t)));
    }
}

#[test]
fn reference_linear_backwards_agree_with_finite_differences() {
    let mut rng = Rng::new(7);
    let (n, k, m) = (3, 5, 4);
    let (x, w, b) = (rng.vec(n * k), rng.vec(m * k), rng.vec(m));
    let rdir = rng.vec(n * m);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r::linear(n, k, m, x, w, Some(b)), &rdir);
    let (dx_dir, dw_dir, db_dir) = (rng.vec(x.len()), rng.vec(w.len()), rng.vec(b.len()));
    check_directional("linear dx", &r::linear_bwd_input(n, k, m, &rdir, &w), &dx_dir, |t| {
        loss(&displaced(&x, &dx_dir, t), &w, &b)
    });
    check_directional("linear dw", &r::linear_bwd_weight(n, k, m, &x, &rdir), &dw_dir, |t| {
        loss(&x, &displaced(&w, &dw_dir, t), &b)
    });
    check_directional("linear db", &r::channel_sums(n, m, 1, &rdir), &db_dir, |t| {
        loss(&x, &w, &displaced(&b, &db_dir, t))
    });
}

/// The argument a `TensorError::Len` names, or a panic describing what came instead.
fn len_arg<T: std::fmt::Debug>(r: mep_tensor::Result<T>) -> &'static str {
    match r {
        Err(TensorError::Len { arg, .. }) => arg,
        other => panic!("expected a length error, got {other:?}"),
    }
}

#[test]
fn wrong_buffer_lengths_are_len_errors_naming_the_argument() {
    let cpu = CpuBackend::new();
    let g = geom(2, 3, 6, 6, 4, 3, 1, 1);
    let ok = |len: usize| cpu.zeros(len).unwrap();
    let (x, w, y) = (ok(g.input().numel()), ok(g.weight_len()), ok(g.output().numel()));
    let bad = ok(5);
    let mut out = ok(g.output().numel());
    assert_eq!(len_arg(cpu.conv2d(&g, &bad, &w, None, None, Act::Relu, &mut out)), "x");
    assert_eq!(len_arg(cpu.conv2d(&g, &x, &bad, None, None, Act::Relu, &mut out)), "w");
    assert_eq!(
        len_arg(cpu.conv2d(&g, &x, &w, Some(&bad), None, Act::Relu, &mut out)),
        "bias"
    );
    assert_eq!(
        len_arg(cpu.conv2d(&g, &x, &w, None, Some(&bad), Act::Relu, &mut out)),
        "residual"
    );
    assert_eq!(len_arg(cpu.conv2d(&g, &x, &w, None, None, Act::Relu, &mut ok(5))), "y");
    assert_eq!(
        len_arg(cpu.conv2d_bwd_input(&g, &bad, &w, &mut ok(g.input().numel()))),
        "dy"
    );
    assert_eq!(len_arg(cpu.conv2d_bwd_input(&g, &y, &w, &mut ok(5))), "dx");
    assert_eq!(len_arg(cpu.conv2d_bwd_weight(&g, &x, &y, &mut ok(5), None)), "dw");
    assert_eq!(
        len_arg(cpu.conv2d_bwd_weight(&g, &x, &y, &mut ok(g.weight_len()), Some(&mut ok(5)))),
        "db"
    );

    let t = tgeoms()[1];
    let (tx, tw) = (ok(t.input().numel()), ok(t.weight_len()));
    assert_eq!(len_arg(cpu.conv_transpose2d(&t, &tx, &tw, None, &mut ok(5))), "y");
    assert_eq!(
        len_arg(cpu.conv_transpose2d(&t, &tx, &bad, None, &mut ok(t.output().numel()))),
        "w"
    );
    assert_eq!(
        len_arg(cpu.conv_transpose2d_bwd_input(&t, &bad, &tw, &mut ok(t.input().numel()))),
        "dy"
    );
    assert_eq!(
        len_arg(cpu.conv_transpose2d_bwd_weight(&t, &tx, &bad, &mut ok(t.weight_len()), None)),
        "dy"
    );

    assert_eq!(len_arg(cpu.linear(2, 3, 4, &ok(6), &ok(11), None, &mut ok(8))), "w");
    assert_eq!(
        len_arg(cpu.linear_bwd_input(2, 3, 4, &ok(8), &ok(12), &mut ok(7))),
        "dx"
    );
    assert_eq!(
        len_arg(cpu.linear_bwd_weight(2, 3, 4, &ok(6), &ok(8), &mut ok(12), Some(&mut ok(3)))),
        "db"
    );
}

#[test]
fn conv2d_large_batch_runs_parallel_units_and_matches_reference() {
    // Batch above the thread count with 1×1 and 3×3 kernels: the parallel-units paths,
    // including the per-thread weight-gradient partials and their reduction.
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(8);
    for g in [
        geom(9, 8, 6, 6, 8, 3, 1, 1),
        geom(9, 8, 6, 6, 12, 1, 1, 0),
        geom(9, 4, 7, 7, 6, 1, 2, 0),
    ] {
        let (x, w, dy) = (
            rng.vec(g.input().numel()),
            rng.vec(g.weight_len()),
            rng.vec(g.output().numel()),
        );
        let (xb, wb, dyb) = (
            cpu.upload(&f32s(&x)).unwrap(),
            cpu.upload(&f32s(&w)).unwrap(),
            cpu.upload(&f32s(&dy)).unwrap(),
        );
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        cpu.conv2d(&g, &xb, &wb, None, None, Act::Identity, &mut y).unwrap();
        assert_close(
            &format!("{g:?}"),
            &cpu.download(&y).unwrap(),
            &r::conv2d(&g, &x, &w, None),
            ATOL,
            RTOL,
        );
        let mut dx = cpu.alloc(g.input().numel()).unwrap();
        cpu.conv2d_bwd_input(&g, &dyb, &wb, &mut dx).unwrap();
        assert_close(
            &format!("{g:?}"),
            &cpu.download(&dx).unwrap(),
            &r::conv2d_bwd_input(&g, &dy, &w),
            ATOL,
            RTOL,
        );
        let mut dw = cpu.alloc(g.weight_len()).unwrap();
        cpu.conv2d_bwd_weight(&g, &xb, &dyb, &mut dw, None).unwrap();
        assert_close(
            &format!("{g:?}"),
            &cpu.download(&dw).unwrap(),
            &r::conv2d_bwd_weight(&g, &x, &dy),
            ATOL,
            RTOL,
        );
    }
}

/// ResNet-20's 3×3 layers (16, 32 and 64 channels, stride 1 and the two stride-2 entries to
/// layer2 and layer3) at small batches, and odd planes whose rows are not whole 8-pixel
/// groups of the direct kernels.
fn resnet20_geoms() -> Vec<Conv2dGeom> {
    vec![
        geom(1, 3, 8, 8, 16, 3, 1, 1),
        geom(3, 16, 8, 8, 16, 3, 1, 1),
        geom(1, 16, 16, 16, 32, 3, 2, 1),
        geom(3, 32, 8, 8, 32, 3, 1, 1),
        geom(1, 32, 8, 8, 64, 3, 2, 1),
        geom(3, 64, 8, 8, 64, 3, 1, 1),
        geom(3, 16, 7, 5, 32, 3, 2, 1),
        geom(1, 32, 7, 5, 16, 3, 1, 1),
        geom(3, 16, 5, 7, 16, 3, 1, 1),
        geom(1, 16, 9, 11, 32, 3, 2, 1),
        geom(3, 6, 20, 18, 10, 3, 1, 1),
        geom(1, 5, 1, 1, 3, 3, 2, 1),
        geom(2, 4, 2, 3, 7, 3, 2, 1),
    ]
}

/// Forward (bias, residual, relu), input gradient and weight and bias gradients on `path`
/// against the reference.
fn check_path(path: ConvPath, geoms: Vec<Conv2dGeom>, seed: u64) {
    let cpu = CpuBackend::new().with_conv_path(path);
    let mut rng = Rng::new(seed);
    for (gi, g) in geoms.into_iter().enumerate() {
        let x = rng.vec(g.input().numel());
        let w = rng.vec(g.weight_len());
        let b = rng.vec(g.c_out);
        let res = rng.vec(g.output().numel());
        let dy = rng.vec(g.output().numel());
        let up = |v: &[f64]| cpu.upload(&f32s(v)).unwrap();
        let (xb, wb, bb, rb, dyb) = (up(&x), up(&w), up(&b), up(&res), up(&dy));
        let act = [Act::Relu, Act::Identity, Act::Sigmoid][gi % 3];
        let with_res = gi % 2 == 0;
        let want = r::conv2d_fused(&g, &x, &w, Some(&b), with_res.then_some(&res[..]), act);
        let mut y = cpu.upload(&vec![f32::NAN; g.output().numel()]).unwrap();
        cpu.conv2d(&g, &xb, &wb, Some(&bb), with_res.then_some(&rb), act, &mut y)
            .unwrap();
        let what = format!("{path:?} conv2d {g:?} {act:?} residual={with_res}");
        let atol = atol_on(path, &g);
        assert_close(&what, &cpu.download(&y).unwrap(), &want, atol, RTOL);
        check_backward(&cpu, &format!("{path:?} "), &g, (&x, &w, &dy), (&xb, &wb, &dyb), atol);
    }
}

/// [`ATOL`], or 36 times it where `path` runs `g`'s forward and input gradient on Winograd
/// F(4×4, 3×3), which can amplify the products' rounding 36 times more than F(2×2) can
/// (`winograd::tests::version_2_can_round_36_times_more`); a wrong transform is off by O(1).
fn atol_on(path: ConvPath, g: &Conv2dGeom) -> f64 {
    use mep_tensor::cpu::direct::{use_winograd, ConvOp};
    use mep_tensor::cpu::winograd::Tiling;
    let f4 = [ConvOp::Forward, ConvOp::BwdInput]
        .iter()
        .any(|&op| use_winograd(path, op, g) == Some(Tiling::F4x4));
    if f4 {
        36.0 * ATOL
    } else {
        ATOL
    }
}

/// The forced paths really run different kernels: a test that passed with both forced paths
/// running the same code would prove nothing. 64 channels make the GEMMs' depth (576) exceed
/// one fixed-order block of 512, so their sums are grouped unlike the direct kernels' single
/// chains (below 512 the forward's two paths can give the same bits, one chain in one order).
#[test]
fn forced_paths_run_different_kernels() {
    use mep_tensor::cpu::direct::{supports, ConvOp};
    let g = geom(3, 64, 16, 16, 64, 3, 1, 1);
    for op in [ConvOp::Forward, ConvOp::BwdInput, ConvOp::BwdWeight] {
        assert!(supports(op, &g), "{op:?}");
    }
    let mut rng = Rng::new(21);
    let (x, w, dy) = (
        f32s(&rng.vec(g.input().numel())),
        f32s(&rng.vec(g.weight_len())),
        f32s(&rng.vec(g.output().numel())),
    );
    let run = |path: ConvPath| {
        let cpu = CpuBackend::new().with_conv_path(path);
        let (xb, wb, dyb) = (
            cpu.upload(&x).unwrap(),
            cpu.upload(&w).unwrap(),
            cpu.upload(&dy).unwrap(),
        );
        let mut y = cpu.alloc(g.output().numel()).unwrap();
        cpu.conv2d(&g, &xb, &wb, None, None, Act::Identity, &mut y).unwrap();
        let mut dx = cpu.alloc(g.input().numel()).unwrap();
        cpu.conv2d_bwd_input(&g, &dyb, &wb, &mut dx).unwrap();
        let mut dw = cpu.alloc(g.weight_len()).unwrap();
        cpu.conv2d_bwd_weight(&g, &xb, &dyb, &mut dw, None).unwrap();
        [y, dx, dw].map(|b| cpu.download(&b).unwrap())
    };
    let (direct, gemm) = (run(ConvPath::Direct), run(ConvPath::Gemm));
    let (winograd, winograd4) = (run(ConvPath::Winograd), run(ConvPath::Winograd4x4));
    for (name, (a, b)) in ["forward", "input gradient", "weight gradient"]
        .iter()
        .zip(direct.iter().zip(&gemm))
    {
        assert!(
            a != b,
            "{name}: the forced paths gave the same bits; is one of them not taken?"
        );
    }
    // Winograd has no weight gradient (it runs on GEMM); its forward and input gradient differ,
    // and so do its two versions'.
    for (version, bits) in [("F(2×2)", &winograd), ("F(4×4)", &winograd4)] {
        for (name, (a, b)) in ["forward", "input gradient"].iter().zip(bits.iter().zip(&gemm)) {
            assert!(
                a != b,
                "winograd {version} {name}: the same bits as GEMM; is it not taken?"
            );
        }
        assert_eq!(
            bits[2], gemm[2],
            "the weight gradient is GEMM's under a forced Winograd {version}"
        );
    }
    for (name, (a, b)) in ["forward", "input gradient"]
        .iter()
        .zip(winograd.iter().zip(&winograd4))
    {
        assert!(a != b, "{name}: both Winograd versions gave the same bits");
    }
}

/// Wide 3×3 stride-1 layers, where [`ConvPath::Auto`] picks Winograd (ResNet-50's layer1–3
/// shapes at small batches and planes), and odd planes whose last tile is cut.
fn winograd_geoms() -> Vec<Conv2dGeom> {
    vec![
        geom(2, 64, 14, 14, 64, 3, 1, 1),
        geom(1, 128, 15, 14, 64, 3, 1, 1),
        geom(1, 66, 14, 17, 130, 3, 1, 1),
        geom(3, 64, 16, 16, 72, 3, 1, 1),
        // A cut last tile column.
        geom(1, 64, 28, 30, 64, 3, 1, 1),
    ]
}

#[test]
fn winograd_path_matches_reference() {
    use mep_tensor::cpu::direct::{choose_winograd, ConvOp};
    for g in winograd_geoms() {
        assert!(
            choose_winograd(ConvOp::Forward, &g).is_some() && choose_winograd(ConvOp::BwdInput, &g).is_some(),
            "{g:?}"
        );
    }
    for (path, seed) in [(ConvPath::Winograd, 15), (ConvPath::Winograd4x4, 25)] {
        check_path(path, winograd_geoms(), seed);
        // Narrow layers, small planes and strides under a forced Winograd (the strided and the
        // other kernel shapes fall back to GEMM).
        check_path(path, resnet20_geoms(), seed + 2);
        check_path(path, conv_geoms(), seed + 3);
    }
    check_path(ConvPath::Auto, winograd_geoms(), 16);
}

/// The table keeps Winograd to ResNet-50's wide layers: ResNet-20 (the demo's model, whose
/// shipped training is checked bit for bit) stays where it was. The wide layers run on
/// F(4×4, 3×3); the 7×7 stage's input gradient runs on F(2×2, 3×3), its forward on GEMM.
#[test]
fn winograd_dispatch_covers_the_wide_layers_only() {
    use mep_tensor::cpu::direct::{choose_winograd, ConvOp};
    use mep_tensor::cpu::winograd::Tiling;
    for (c, hw) in [(64, 56), (128, 28), (256, 14)] {
        for op in [ConvOp::Forward, ConvOp::BwdInput] {
            let g = geom(8, c, hw, hw, c, 3, 1, 1);
            assert_eq!(choose_winograd(op, &g), Some(Tiling::F4x4), "{op:?} {c} at {hw}");
        }
    }
    let stage4 = geom(8, 512, 7, 7, 512, 3, 1, 1);
    assert_eq!(choose_winograd(ConvOp::BwdInput, &stage4), Some(Tiling::F2x2));
    for op in [ConvOp::Forward, ConvOp::BwdWeight] {
        assert_eq!(choose_winograd(op, &stage4), None, "{op:?}");
    }
    let narrow = [geom(8, 128, 56, 56, 128, 3, 2, 1), geom(8, 256, 14, 14, 1024, 1, 1, 0)];
    for g in narrow
        .iter()
        .chain(&resnet20_geoms())
        .chain(&[geom(128, 64, 8, 8, 64, 3, 1, 1), geom(128, 16, 32, 32, 16, 3, 1, 1)])
    {
        for op in [ConvOp::Forward, ConvOp::BwdInput, ConvOp::BwdWeight] {
            assert_eq!(choose_winograd(op, g), None, "{op:?} {g:?}");
        }
    }
}

/// The table's rules for ResNet-50's later 3×3 layers, on smaller batches: the 7×7 stage's
/// input gradient on F(2×2, 3×3), and a strided layer with a big weight whose 14×14 output
/// planes share each GEMM across the batch.
#[test]
fn auto_path_matches_reference_on_resnet50_late_shapes() {
    use mep_tensor::cpu::direct::{choose, choose_winograd, ConvOp};
    let late = vec![geom(2, 128, 7, 7, 128, 3, 1, 1), geom(2, 128, 28, 28, 256, 3, 2, 1)];
    assert!(choose_winograd(ConvOp::BwdInput, &late[0]).is_some());
    // Outside the direct kernels' "one side at most 64 channels" rule, so on the GEMM path.
    assert!(!choose(ConvOp::Forward, &late[1]) && !choose(ConvOp::BwdInput, &late[1]));
    check_path(ConvPath::Auto, late, 17);
}

#[test]
fn direct_and_gemm_paths_match_reference_on_resnet20_shapes() {
    check_path(ConvPath::Direct, resnet20_geoms(), 11);
    check_path(ConvPath::Gemm, resnet20_geoms(), 12);
    check_path(ConvPath::Auto, resnet20_geoms(), 13);
}

#[test]
fn forced_direct_falls_back_to_gemm_on_shapes_it_lacks() {
    // 1×1, 7×7, padding 0 or 2, non-square kernels: all must run (on GEMM) and be right.
    check_path(ConvPath::Direct, conv_geoms(), 14);
}
