//! The CPU backend's non-GEMM operations against the f64 reference (small shapes and shapes
//! large enough to take the parallel path), every backward against central finite
//! differences of the reference forward, and the argument checks.

use mep_tensor::cpu::reference::ops as r;
use mep_tensor::*;

// ---- helpers -------------------------------------------------------------------------

mod common;
use common::{assert_close, f64s, Rng};

fn up(cpu: &CpuBackend, v: &[f32]) -> CpuBuf {
    cpu.upload(v).unwrap()
}

fn down(cpu: &CpuBackend, b: &CpuBuf) -> Vec<f32> {
    cpu.download(b).unwrap()
}

/// Central differences of `f` at `x`, one coordinate at a time.
fn fd_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    const H: f64 = 1e-6;
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + H;
            let fp = f(&xp);
            xp[i] = orig - H;
            let fm = f(&xp);
            xp[i] = orig;
            (fp - fm) / (2.0 * H)
        })
        .collect()
}

/// `Σ y·r`, the scalar whose gradient a backward computes when handed `dy = r`.
fn weighted(y: &[f64], r: &[f64]) -> f64 {
    y.iter().zip(r).map(|(y, r)| y * r).sum()
}

const fn nchw(n: usize, c: usize, h: usize, w: usize) -> Nchw {
    Nchw { n, c, h, w }
}

/// From trivial to large enough (≥ 32k elements) for the parallel path, with odd sizes and both
/// many small planes and few large ones.
const SHAPES: [Nchw; 5] = [
    nchw(1, 1, 1, 1),
    nchw(2, 3, 4, 5),
    nchw(3, 5, 7, 9),
    nchw(8, 32, 16, 16),
    nchw(2, 3, 72, 80),
];

/// Shapes for training-mode batch norm, which needs more than one value per channel.
const TRAIN_SHAPES: [Nchw; 5] = [
    nchw(2, 1, 1, 1),
    nchw(2, 3, 4, 5),
    nchw(3, 5, 7, 9),
    nchw(8, 32, 16, 16),
    nchw(2, 3, 72, 80),
];

const ACTS: [Act; 5] = [
    Act::Identity,
    Act::Relu,
    Act::LeakyRelu(0.01),
    Act::LeakyRelu(0.3),
    Act::Sigmoid,
];

// ---- pointwise -----------------------------------------------------------------------

#[test]
fn activation_and_its_backward_match_reference_for_every_act() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1);
    for len in [1, 7, 1000, 100_003] {
        for act in ACTS {
            let x = rng.vec(len, -4.0, 4.0);
            let dy = rng.vec(len, -1.0, 1.0);
            let mut y = cpu.alloc(len).unwrap();
            cpu.activation(act, &up(&cpu, &x), &mut y).unwrap();
            let y = down(&cpu, &y);
            assert_close(
                &format!("{act:?} len {len}"),
                &y,
                &r::activation(act, &f64s(&x)),
                1e-6,
                1e-6,
            );

            let mut dx = cpu.alloc(len).unwrap();
            cpu.activation_bwd(act, &up(&cpu, &y), &up(&cpu, &dy), &mut dx).unwrap();
            let want = r::activation_bwd(act, &f64s(&y), &f64s(&dy));
            assert_close(&format!("{act:?} bwd len {len}"), &down(&cpu, &dx), &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn relu_and_max_pool_propagate_nan_like_pytorch() {
    let cpu = CpuBackend::new();
    let mut y = cpu.alloc(3).unwrap();
    cpu.activation(Act::Relu, &up(&cpu, &[f32::NAN, -1.0, 2.0]), &mut y)
        .unwrap();
    let y = down(&cpu, &y);
    assert!(y[0].is_nan() && y[1] == 0.0 && y[2] == 2.0, "{y:?}");
    let g = pool(nchw(1, 1, 2, 2), 2, 2, 0);
    let (y, dx) = max_pool_fast(&cpu, &g, &[1.0, f32::NAN, 3.0, 2.0], &[1.0]);
    assert!(y[0].is_nan(), "{y:?}");
    assert_eq!(dx, vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn activation_bwd_matches_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(2);
    for act in ACTS {
        // Keep clear of ReLU's kink, where the derivative is undefined.
        let x: Vec<f32> = (0..23)
            .map(|_| {
                let v = rng.uniform(-3.0, 3.0);
                if v.abs() < 1e-2 {
                    0.5
                } else {
                    v
                }
            })
            .collect();
        let rr = rng.vec(x.len(), -1.0, 1.0);
        let mut y = cpu.alloc(x.len()).unwrap();
        cpu.activation(act, &up(&cpu, &x), &mut y).unwrap();
        let mut dx = cpu.alloc(x.len()).unwrap();
        cpu.activation_bwd(act, &y, &up(&cpu, &rr), &mut dx).unwrap();
        let r64 = f64s(&rr);
        let fd = fd_grad(&f64s(&x), |x| weighted(&r::activation(act, x), &r64));
        assert_close(
            &format!("{act:?} dx vs finite differences"),
            &down(&cpu, &dx),
            &fd,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn add_axpy_scale_dot_norm_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(3);
    for len in [0, 1, 13, 5000, 100_003] {
        let a = rng.vec(len, -2.0, 2.0);
        let b = rng.vec(len, -2.0, 2.0);
        let (a64, b64) = (f64s(&a), f64s(&b));
        let (ab, bb) = (up(&cpu, &a), up(&cpu, &b));

        let mut y = cpu.alloc(len).unwrap();
        cpu.add(&ab, &bb, &mut y).unwrap();
        assert_close(
            &format!("add len {len}"),
            &down(&cpu, &y),
            &r::add(&a64, &b64),
            1e-7,
            1e-6,
        );

        let mut y = up(&cpu, &b);
        cpu.add_assign(&mut y, &ab).unwrap();
        assert_close(
            &format!("add_assign len {len}"),
            &down(&cpu, &y),
            &r::add(&b64, &a64),
            1e-7,
            1e-6,
        );

        let mut y = up(&cpu, &b);
        cpu.axpy(-0.75, &ab, &mut y).unwrap();
        assert_close(
            &format!("axpy len {len}"),
            &down(&cpu, &y),
            &r::axpy(-0.75, &a64, &b64),
            1e-6,
            1e-6,
        );

        let mut y = up(&cpu, &a);
        cpu.scale(1.5, &mut y).unwrap();
        assert_close(
            &format!("scale len {len}"),
            &down(&cpu, &y),
            &r::scale(1.5, &a64),
            1e-7,
            1e-6,
        );

        // Products of f32s are exact in f64, so only the f64 summation order differs.
        let want = r::dot(&a64, &b64);
        assert_close(
            &format!("dot len {len}"),
            &[cpu.dot(&ab, &bb).unwrap()],
            &[want],
            1e-9,
            1e-12,
        );
        let want = r::dot(&a64, &a64).sqrt();
        assert_close(
            &format!("norm len {len}"),
            &[cpu.norm(&ab).unwrap()],
            &[want],
            1e-9,
            1e-12,
        );
    }
}

// ---- batch norm ----------------------------------------------------------------------

/// Per-channel parameters of a batch norm: gamma, beta, mean, var.
fn bn_params(rng: &mut Rng, c: usize) -> [Vec<f32>; 4] {
    [
        rng.vec(c, 0.5, 1.5),
        rng.vec(c, -0.5, 0.5),
        rng.vec(c, -1.0, 1.0),
        rng.vec(c, 0.1, 2.0),
    ]
}

#[test]
fn batch_norm_infer_matches_reference_with_each_fused_act() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(4);
    let eps = 1e-5;
    for s in SHAPES {
        for act in ACTS {
            let x = rng.vec(s.numel(), -2.0, 3.0);
            let [g, b, m, v] = bn_params(&mut rng, s.c);
            let mut y = cpu.alloc(s.numel()).unwrap();
            let bufs = [&g, &b, &m, &v].map(|p| up(&cpu, p));
            cpu.batch_norm_infer(
                &s,
                &up(&cpu, &x),
                &bufs[0],
                &bufs[1],
                &bufs[2],
                &bufs[3],
                eps,
                act,
                &mut y,
            )
            .unwrap();
            let want = r::batch_norm_infer(
                &s,
                &f64s(&x),
                &f64s(&g),
                &f64s(&b),
                &f64s(&m),
                &f64s(&v),
                eps as f64,
                act,
            );
            assert_close(&format!("bn infer {s:?} {act:?}"), &down(&cpu, &y), &want, 1e-5, 1e-5);
        }
    }
}

#[test]
fn batch_norm_infer_bwd_matches_reference_with_and_without_param_grads() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(5);
    let eps = 1e-5;
    for s in SHAPES {
        let x = rng.vec(s.numel(), -2.0, 3.0);
        let dy = rng.vec(s.numel(), -1.0, 1.0);
        let [g, _, m, v] = bn_params(&mut rng, s.c);
        let (want_dx, want_dg, want_db) =
            r::batch_norm_infer_bwd(&s, &f64s(&x), &f64s(&dy), &f64s(&g), &f64s(&m), &f64s(&v), eps as f64);
        let (xb, dyb, gb, mb, vb) = (up(&cpu, &x), up(&cpu, &dy), up(&cpu, &g), up(&cpu, &m), up(&cpu, &v));
        for (with_dg, with_db) in [(true, true), (false, false), (true, false), (false, true)] {
            let mut dx = cpu.alloc(s.numel()).unwrap();
            let mut dg = cpu.alloc(s.c).unwrap();
            let mut db = cpu.alloc(s.c).unwrap();
            cpu.batch_norm_infer_bwd(
                &s,
                &xb,
                &dyb,
                &gb,
                &mb,
                &vb,
                eps,
                &mut dx,
                with_dg.then_some(&mut dg),
                with_db.then_some(&mut db),
            )
            .unwrap();
            let what = format!("bn infer bwd {s:?} dgamma {with_dg} dbeta {with_db}");
            assert_close(&format!("{what}: dx"), &down(&cpu, &dx), &want_dx, 1e-6, 1e-5);
            if with_dg {
                assert_close(&format!("{what}: dgamma"), &down(&cpu, &dg), &want_dg, 1e-5, 1e-5);
            }
            if with_db {
                assert_close(&format!("{what}: dbeta"), &down(&cpu, &db), &want_db, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn batch_norm_infer_bwd_matches_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(6);
    let s = nchw(2, 3, 2, 3);
    let eps = 1e-5;
    let x = rng.vec(s.numel(), -2.0, 2.0);
    let rr = rng.vec(s.numel(), -1.0, 1.0);
    let [g, b, m, v] = bn_params(&mut rng, s.c);
    let (x64, r64, g64, b64, m64, v64) = (f64s(&x), f64s(&rr), f64s(&g), f64s(&b), f64s(&m), f64s(&v));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        weighted(
            &r::batch_norm_infer(&s, x, g, b, &m64, &v64, eps as f64, Act::Identity),
            &r64,
        )
    };

    let (mut dx, mut dg, mut db) = (
        cpu.alloc(s.numel()).unwrap(),
        cpu.alloc(s.c).unwrap(),
        cpu.alloc(s.c).unwrap(),
    );
    cpu.batch_norm_infer_bwd(
        &s,
        &up(&cpu, &x),
        &up(&cpu, &rr),
        &up(&cpu, &g),
        &up(&cpu, &m),
        &up(&cpu, &v),
        eps,
        &mut dx,
        Some(&mut dg),
        Some(&mut db),
    )
    .unwrap();
    let fd_x = fd_grad(&x64, |x| loss(x, &g64, &b64));
    let fd_g = fd_grad(&g64, |g| loss(&x64, g, &b64));
    let fd_b = fd_grad(&b64, |b| loss(&x64, &g64, b));
    assert_close("bn infer dx vs fd", &down(&cpu, &dx), &fd_x, 1e-5, 1e-4);
    assert_close("bn infer dgamma vs fd", &down(&cpu, &dg), &fd_g, 1e-5, 1e-4);
    assert_close("bn infer dbeta vs fd", &down(&cpu, &db), &fd_b, 1e-5, 1e-4);
}

/// Runs training-mode batch norm through the backend: `(y, running_mean, running_var,
/// save_mean, save_invstd)`.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn bn_train_fast(
    cpu: &CpuBackend,
    s: &Nchw,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running: (&[f32], &[f32]),
    momentum: f32,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut rm, mut rv) = (up(cpu, running.0), up(cpu, running.1));
    let mut y = cpu.alloc(s.numel()).unwrap();
    let (mut sm, mut si) = (cpu.alloc(s.c).unwrap(), cpu.alloc(s.c).unwrap());
    cpu.batch_norm_train(
        s,
        &up(cpu, x),
        &up(cpu, gamma),
        &up(cpu, beta),
        &mut rm,
        &mut rv,
        momentum,
        eps,
        Act::Identity,
        &mut y,
        &mut sm,
        &mut si,
    )
    .unwrap();
    (
        down(cpu, &y),
        down(cpu, &rm),
        down(cpu, &rv),
        down(cpu, &sm),
        down(cpu, &si),
    )
}

#[test]
fn batch_norm_train_matches_reference_including_running_stats() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(7);
    for (k, s) in TRAIN_SHAPES.into_iter().enumerate() {
        // A large common offset on some shapes checks the variance does not cancel away.
        let offset = if k % 2 == 1 { 50.0 } else { 0.0 };
        let x: Vec<f32> = rng.vec(s.numel(), -2.0, 3.0).iter().map(|v| v + offset).collect();
        let [g, b, rm, rv] = bn_params(&mut rng, s.c);
        let (momentum, eps) = (0.1, 1e-5);
        let (y, rm_f, rv_f, sm, si) = bn_train_fast(&cpu, &s, &x, &g, &b, (&rm, &rv), momentum, eps);
        let want = r::batch_norm_train(
            &s,
            &f64s(&x),
            &f64s(&g),
            &f64s(&b),
            &f64s(&rm),
            &f64s(&rv),
            momentum as f64,
            eps as f64,
        );
        let what = format!("bn train {s:?} offset {offset}");
        assert_close(&format!("{what}: y"), &y, &want.y, 2e-5, 1e-5);
        assert_close(&format!("{what}: running_mean"), &rm_f, &want.running_mean, 1e-6, 1e-6);
        assert_close(&format!("{what}: running_var"), &rv_f, &want.running_var, 1e-6, 1e-5);
        assert_close(&format!("{what}: save_mean"), &sm, &want.save_mean, 1e-6, 1e-6);
        assert_close(&format!("{what}: save_invstd"), &si, &want.save_invstd, 1e-6, 1e-5);
    }
}

#[test]
fn batch_norm_train_updates_running_stats_like_pytorch() {
    // Hand-derived, as torch.nn.functional.batch_norm(training=True, momentum=0.2, eps=1e-5):
    // x: [n=2, c=2, h=1, w=2]; channel 0 holds {1, 2, 3, 4}, channel 1 holds {10, 20, 30, 40}.
    // Batch means 2.5 and 25; biased variances 5/4 and 500/4; unbiased (m = 4) 5/3 and 500/3.
    // Step 1 from running_mean [0.5, -1], running_var [2, 0.5]:
    //   mean ← 0.8·[0.5, −1] + 0.2·[2.5, 25]        = [0.9, 4.2]
    //   var  ← 0.8·[2, 0.5] + 0.2·[5/3, 500/3]     = [1.933333, 33.733333]
    // Step 2, same batch:
    //   mean ← 0.8·[0.9, 4.2] + 0.2·[2.5, 25]       = [1.22, 8.36]
    //   var  ← 0.8·[1.933333, 33.733333] + 0.2·[5/3, 500/3] = [1.88, 60.32]
    // Saved: mean [2.5, 25], invstd [1/sqrt(1.25 + 1e-5), 1/sqrt(125 + 1e-5)];
    // y = gamma (x − mean) invstd + beta with gamma [1, 2], beta [0, 1].
    let cpu = CpuBackend::new();
    let s = nchw(2, 2, 1, 2);
    let x = [1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0];
    let (g, b) = ([1.0, 2.0], [0.0, 1.0]);
    let (y, rm, rv, sm, si) = bn_train_fast(&cpu, &s, &x, &g, &b, (&[0.5, -1.0], &[2.0, 0.5]), 0.2, 1e-5);
    assert_close("step 1 running_mean", &rm, &[0.9, 4.2], 1e-6, 1e-6);
    assert_close(
        "step 1 running_var",
        &rv,
        &[0.8 * 2.0 + 0.2 * 5.0 / 3.0, 0.8 * 0.5 + 0.2 * 500.0 / 3.0],
        1e-6,
        1e-6,
    );
    assert_close(
        "step 1 running_var literal",
        &rv,
        &[1.933_333_3, 33.733_333],
        1e-6,
        1e-6,
    );
    assert_close("save_mean", &sm, &[2.5, 25.0], 1e-6, 1e-6);
    let inv = [1.0 / (1.25f64 + 1e-5).sqrt(), 1.0 / (125.0f64 + 1e-5).sqrt()];
    assert_close("save_invstd", &si, &inv, 1e-7, 1e-6);
    let want_y: Vec<f64> = [
        (1.0, 0),
        (2.0, 0),
        (10.0, 1),
        (20.0, 1),
        (3.0, 0),
        (4.0, 0),
        (30.0, 1),
        (40.0, 1),
    ]
    .iter()
    .map(|&(v, c): &(f64, usize)| g[c] as f64 * (v - [2.5, 25.0][c]) * inv[c] + b[c] as f64)
    .collect();
    assert_close("y", &y, &want_y, 1e-6, 1e-6);

    let (_, rm2, rv2, _, _) = bn_train_fast(&cpu, &s, &x, &g, &b, (&rm, &rv), 0.2, 1e-5);
    assert_close("step 2 running_mean", &rm2, &[1.22, 8.36], 1e-6, 1e-6);
    assert_close("step 2 running_var", &rv2, &[1.88, 60.32], 1e-6, 1e-6);
}

#[test]
fn batch_norm_train_bwd_matches_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(8);
    for s in TRAIN_SHAPES {
        let x = rng.vec(s.numel(), -2.0, 3.0);
        let dy = rng.vec(s.numel(), -1.0, 1.0);
        let [g, b, rm, rv] = bn_params(&mut rng, s.c);
        let (_, _, _, sm, si) = bn_train_fast(&cpu, &s, &x, &g, &b, (&rm, &rv), 0.1, 1e-5);
        let (mut dx, mut dg, mut db) = (
            cpu.alloc(s.numel()).unwrap(),
            cpu.alloc(s.c).unwrap(),
            cpu.alloc(s.c).unwrap(),
        );
        cpu.batch_norm_train_bwd(
            &s,
            &up(&cpu, &x),
            &up(&cpu, &dy),
            &up(&cpu, &g),
            &up(&cpu, &sm),
            &up(&cpu, &si),
            &mut dx,
            &mut dg,
            &mut db,
        )
        .unwrap();
        let (want_dx, want_dg, want_db) =
            r::batch_norm_train_bwd(&s, &f64s(&x), &f64s(&dy), &f64s(&g), &f64s(&sm), &f64s(&si));
        assert_close(
            &format!("bn train bwd {s:?}: dx"),
            &down(&cpu, &dx),
            &want_dx,
            2e-5,
            1e-4,
        );
        assert_close(
            &format!("bn train bwd {s:?}: dgamma"),
            &down(&cpu, &dg),
            &want_dg,
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("bn train bwd {s:?}: dbeta"),
            &down(&cpu, &db),
            &want_db,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn batch_norm_train_bwd_matches_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(9);
    let s = nchw(2, 3, 2, 3);
    let eps = 1e-5;
    let x = rng.vec(s.numel(), -2.0, 2.0);
    let rr = rng.vec(s.numel(), -1.0, 1.0);
    let [g, b, rm, rv] = bn_params(&mut rng, s.c);
    let (x64, r64, g64, b64, rm64, rv64) = (f64s(&x), f64s(&rr), f64s(&g), f64s(&b), f64s(&rm), f64s(&rv));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        weighted(&r::batch_norm_train(&s, x, g, b, &rm64, &rv64, 0.1, eps as f64).y, &r64)
    };

    let (_, _, _, sm, si) = bn_train_fast(&cpu, &s, &x, &g, &b, (&rm, &rv), 0.1, eps);
    let (mut dx, mut dg, mut db) = (
        cpu.alloc(s.numel()).unwrap(),
        cpu.alloc(s.c).unwrap(),
        cpu.alloc(s.c).unwrap(),
    );
    cpu.batch_norm_train_bwd(
        &s,
        &up(&cpu, &x),
        &up(&cpu, &rr),
        &up(&cpu, &g),
        &up(&cpu, &sm),
        &up(&cpu, &si),
        &mut dx,
        &mut dg,
        &mut db,
    )
    .unwrap();
    let fd_x = fd_grad(&x64, |x| loss(x, &g64, &b64));
    let fd_g = fd_grad(&g64, |g| loss(&x64, g, &b64));
    let fd_b = fd_grad(&b64, |b| loss(&x64, &g64, b));
    assert_close("bn train dx vs fd", &down(&cpu, &dx), &fd_x, 1e-4, 1e-3);
    assert_close("bn train dgamma vs fd", &down(&cpu, &dg), &fd_g, 1e-4, 1e-3);
    assert_close("bn train dbeta vs fd", &down(&cpu, &db), &fd_b, 1e-4, 1e-3);

    // The reference backward is the same formula; check it against the same differences.
    let (rdx, rdg, rdb) = r::batch_norm_train_bwd(&s, &x64, &r64, &g64, &f64s(&sm), &f64s(&si));
    assert_close("reference bn train dx vs fd", &rdx, &fd_x, 1e-5, 1e-4);
    assert_close("reference bn train dgamma vs fd", &rdg, &fd_g, 1e-5, 1e-4);
    assert_close("reference bn train dbeta vs fd", &rdb, &fd_b, 1e-5, 1e-4);
}

// ---- pooling and resampling ----------------------------------------------------------

fn pool(input: Nchw, k: usize, stride: usize, pad: usize) -> Pool2dGeom {
    Pool2dGeom { input, k, stride, pad }
}

const POOLS: [(Nchw, usize, usize, usize); 8] = [
    (nchw(2, 3, 8, 8), 2, 2, 0),
    (nchw(2, 3, 9, 7), 3, 2, 1),
    (nchw(1, 2, 5, 6), 3, 1, 1),
    (nchw(1, 2, 5, 6), 2, 1, 1),
    (nchw(3, 1, 4, 4), 1, 1, 0),
    (nchw(8, 16, 32, 32), 3, 2, 1),
    (nchw(2, 2, 97, 95), 3, 3, 1),
    // Stride 1 with rows of many full groups of the CPU's side-by-side scan.
    (nchw(1, 2, 20, 37), 3, 1, 1),
];

fn max_pool_fast(cpu: &CpuBackend, g: &Pool2dGeom, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let xb = up(cpu, x);
    let mut y = cpu.alloc(g.output().numel()).unwrap();
    cpu.max_pool2d(g, &xb, &mut y).unwrap();
    let mut dx = cpu.alloc(x.len()).unwrap();
    cpu.max_pool2d_bwd(g, &xb, &up(cpu, dy), &mut dx).unwrap();
    (down(cpu, &y), down(cpu, &dx))
}

#[test]
fn max_pool2d_and_backward_match_reference_with_and_without_ties() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(10);
    for (s, k, stride, pad) in POOLS {
        let g = pool(s, k, stride, pad);
        for ties in [false, true] {
            // Values from {-1, 0, 1} make most windows tie, exercising the first-maximum rule.
            let x: Vec<f32> = if ties {
                (0..s.numel()).map(|_| rng.below(3) as f32 - 1.0).collect()
            } else {
                rng.vec(s.numel(), -3.0, 3.0)
            };
            let dy = rng.vec(g.output().numel(), -1.0, 1.0);
            let (y, dx) = max_pool_fast(&cpu, &g, &x, &dy);
            let what = format!("max pool {g:?} ties {ties}");
            assert_close(&format!("{what}: y"), &y, &r::max_pool2d(&g, &f64s(&x)), 0.0, 0.0);
            let want = r::max_pool2d_bwd(&g, &f64s(&x), &f64s(&dy));
            assert_close(&format!("{what}: dx"), &dx, &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn max_pool2d_ties_route_gradient_to_first_maximum() {
    let cpu = CpuBackend::new();
    // All equal, overlapping 2x2 windows at stride 1: each window's first element wins.
    let g = pool(nchw(1, 1, 3, 3), 2, 1, 0);
    let (y, dx) = max_pool_fast(&cpu, &g, &[1.0; 9], &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(y, vec![1.0; 4]);
    assert_eq!(dx, vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);

    // Two maxima in one window: the first in row-major order (top right) wins.
    let g = pool(nchw(1, 1, 2, 2), 2, 2, 0);
    let (y, dx) = max_pool_fast(&cpu, &g, &[1.0, 5.0, 5.0, 2.0], &[7.0]);
    assert_eq!(y, vec![5.0]);
    assert_eq!(dx, vec![0.0, 7.0, 0.0, 0.0]);

    // Negative ties with padding: padding is −∞, never the maximum, so every 3x3 window
    // (which covers the whole 2x2 input) routes to element (0, 0).
    let g = pool(nchw(1, 1, 2, 2), 3, 1, 1);
    let (y, dx) = max_pool_fast(&cpu, &g, &[-3.0; 4], &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(y, vec![-3.0; 4]);
    assert_eq!(dx, vec![10.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_pool2d_bwd_matches_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(11);
    for (s, k, stride, pad) in [(nchw(1, 2, 5, 6), 3, 2, 1), (nchw(2, 1, 4, 4), 2, 2, 0)] {
        let g = pool(s, k, stride, pad);
        // Distinct values, well separated compared with the difference step.
        let mut x: Vec<f32> = (0..s.numel()).map(|i| i as f32 * 0.01).collect();
        for i in (1..x.len()).rev() {
            x.swap(i, rng.below(i + 1));
        }
        let rr = rng.vec(g.output().numel(), -1.0, 1.0);
        let (_, dx) = max_pool_fast(&cpu, &g, &x, &rr);
        let r64 = f64s(&rr);
        let fd = fd_grad(&f64s(&x), |x| weighted(&r::max_pool2d(&g, x), &r64));
        assert_close(&format!("max pool {g:?} dx vs fd"), &dx, &fd, 1e-6, 1e-5);
    }
}

#[test]
fn global_avg_pool_and_backward_match_reference_and_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(12);
    for s in SHAPES {
        let x = rng.vec(s.numel(), -2.0, 2.0);
        let dy = rng.vec(s.n * s.c, -1.0, 1.0);
        let mut y = cpu.alloc(s.n * s.c).unwrap();
        cpu.global_avg_pool(&s, &up(&cpu, &x), &mut y).unwrap();
        assert_close(
            &format!("gap {s:?}"),
            &down(&cpu, &y),
            &r::global_avg_pool(&s, &f64s(&x)),
            1e-7,
            1e-6,
        );
        let mut dx = cpu.alloc(s.numel()).unwrap();
        cpu.global_avg_pool_bwd(&s, &up(&cpu, &dy), &mut dx).unwrap();
        let want = r::global_avg_pool_bwd(&s, &f64s(&dy));
        assert_close(&format!("gap bwd {s:?}"), &down(&cpu, &dx), &want, 1e-8, 1e-6);
    }
    let s = nchw(2, 3, 2, 3);
    let x = rng.vec(s.numel(), -2.0, 2.0);
    let rr = rng.vec(s.n * s.c, -1.0, 1.0);
    let mut dx = cpu.alloc(s.numel()).unwrap();
    cpu.global_avg_pool_bwd(&s, &up(&cpu, &rr), &mut dx).unwrap();
    let r64 = f64s(&rr);
    let fd = fd_grad(&f64s(&x), |x| weighted(&r::global_avg_pool(&s, x), &r64));
    assert_close("gap dx vs fd", &down(&cpu, &dx), &fd, 1e-6, 1e-5);
}

#[test]
fn upsample_nearest2x_and_backward_match_reference_and_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(13);
    for s in SHAPES {
        let x = rng.vec(s.numel(), -2.0, 2.0);
        let dy = rng.vec(4 * s.numel(), -1.0, 1.0);
        let mut y = cpu.alloc(4 * s.numel()).unwrap();
        cpu.upsample_nearest2x(&s, &up(&cpu, &x), &mut y).unwrap();
        let want = r::upsample_nearest2x(&s, &f64s(&x));
        assert_close(&format!("upsample {s:?}"), &down(&cpu, &y), &want, 0.0, 0.0);
        let mut dx = cpu.alloc(s.numel()).unwrap();
        cpu.upsample_nearest2x_bwd(&s, &up(&cpu, &dy), &mut dx).unwrap();
        let want = r::upsample_nearest2x_bwd(&s, &f64s(&dy));
        assert_close(&format!("upsample bwd {s:?}"), &down(&cpu, &dx), &want, 1e-6, 1e-6);
    }
    let s = nchw(2, 2, 3, 2);
    let x = rng.vec(s.numel(), -2.0, 2.0);
    let rr = rng.vec(4 * s.numel(), -1.0, 1.0);
    let mut dx = cpu.alloc(s.numel()).unwrap();
    cpu.upsample_nearest2x_bwd(&s, &up(&cpu, &rr), &mut dx).unwrap();
    let r64 = f64s(&rr);
    let fd = fd_grad(&f64s(&x), |x| weighted(&r::upsample_nearest2x(&s, x), &r64));
    assert_close("upsample dx vs fd", &down(&cpu, &dx), &fd, 1e-6, 1e-5);
}

#[test]
fn shortcut_pad_and_backward_match_reference_and_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(14);
    for s in SHAPES.into_iter().chain([nchw(4, 16, 32, 32)]) {
        for subsample in [false, true] {
            for pad in [0, 1, 4] {
                let o = s.shortcut_pad(subsample, pad);
                // x[:, :, ::2, ::2] keeps ceil(h/2) rows (PyTorch's slicing).
                let keep = |d: usize| if subsample { d.div_ceil(2) } else { d };
                assert_eq!((o.n, o.c, o.h, o.w), (s.n, s.c + 2 * pad, keep(s.h), keep(s.w)));
                let x = rng.vec(s.numel(), -2.0, 2.0);
                let dy = rng.vec(o.numel(), -1.0, 1.0);
                let what = format!("shortcut {s:?} subsample {subsample} pad {pad}");
                // Garbage in the outputs checks that every element, padding included, is written.
                let mut y = up(&cpu, &vec![f32::NAN; o.numel()]);
                cpu.shortcut_pad(&s, subsample, pad, &up(&cpu, &x), &mut y).unwrap();
                let want = r::shortcut_pad(&s, subsample, pad, &f64s(&x));
                assert_close(&what, &down(&cpu, &y), &want, 0.0, 0.0);
                let mut dx = up(&cpu, &vec![f32::NAN; s.numel()]);
                cpu.shortcut_pad_bwd(&s, subsample, pad, &up(&cpu, &dy), &mut dx)
                    .unwrap();
                let want = r::shortcut_pad_bwd(&s, subsample, pad, &f64s(&dy));
                assert_close(&format!("{what} bwd"), &down(&cpu, &dx), &want, 0.0, 0.0);
            }
        }
    }
    let s = nchw(2, 2, 3, 5);
    for subsample in [false, true] {
        let o = s.shortcut_pad(subsample, 1);
        let x = rng.vec(s.numel(), -2.0, 2.0);
        let rr = rng.vec(o.numel(), -1.0, 1.0);
        let mut dx = cpu.alloc(s.numel()).unwrap();
        cpu.shortcut_pad_bwd(&s, subsample, 1, &up(&cpu, &rr), &mut dx).unwrap();
        let r64 = f64s(&rr);
        let fd = fd_grad(&f64s(&x), |x| weighted(&r::shortcut_pad(&s, subsample, 1, x), &r64));
        assert_close(
            &format!("shortcut subsample {subsample} dx vs fd"),
            &down(&cpu, &dx),
            &fd,
            1e-6,
            1e-5,
        );
    }
}

// ---- the loss ------------------------------------------------------------------------

fn softmax_ce_fast(cpu: &CpuBackend, n: usize, c: usize, logits: &[f32], targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let mut probs = cpu.alloc(n * c).unwrap();
    let mut losses = cpu.alloc(n).unwrap();
    cpu.softmax_cross_entropy(n, c, &up(cpu, logits), targets, &mut probs, &mut losses)
        .unwrap();
    (down(cpu, &probs), down(cpu, &losses))
}

#[test]
fn softmax_cross_entropy_and_backward_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(15);
    for (n, c) in [(1, 1), (3, 10), (64, 10), (7, 1000), (512, 100)] {
        let logits = rng.vec(n * c, -5.0, 5.0);
        let targets: Vec<usize> = (0..n).map(|_| rng.below(c)).collect();
        let (probs, losses) = softmax_ce_fast(&cpu, n, c, &logits, &targets);
        let (want_p, want_l) = r::softmax_cross_entropy(n, c, &f64s(&logits), &targets);
        assert_close(&format!("softmax {n}x{c}: probs"), &probs, &want_p, 1e-7, 1e-5);
        assert_close(&format!("softmax {n}x{c}: losses"), &losses, &want_l, 1e-6, 1e-5);
        for scale in [1.0, 1.0 / n as f32] {
            let mut d = cpu.alloc(n * c).unwrap();
            cpu.softmax_cross_entropy_bwd(n, c, &up(&cpu, &probs), &targets, scale, &mut d)
                .unwrap();
            let want = r::softmax_cross_entropy_bwd(n, c, &f64s(&probs), &targets, scale as f64);
            assert_close(
                &format!("softmax bwd {n}x{c} scale {scale}"),
                &down(&cpu, &d),
                &want,
                1e-7,
                1e-6,
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_bwd_matches_finite_differences() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(16);
    let (n, c) = (3, 5);
    let logits = rng.vec(n * c, -3.0, 3.0);
    let targets = [4, 0, 2];
    let (probs, _) = softmax_ce_fast(&cpu, n, c, &logits, &targets);
    for scale in [1.0f32, 1.0 / 3.0] {
        let mut d = cpu.alloc(n * c).unwrap();
        cpu.softmax_cross_entropy_bwd(n, c, &up(&cpu, &probs), &targets, scale, &mut d)
            .unwrap();
        let fd = fd_grad(&f64s(&logits), |l| {
            scale as f64 * r::softmax_cross_entropy(n, c, l, &targets).1.iter().sum::<f64>()
        });
        assert_close(
            &format!("softmax dlogits scale {scale} vs fd"),
            &down(&cpu, &d),
            &fd,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn softmax_cross_entropy_stays_finite_for_huge_logits() {
    let cpu = CpuBackend::new();
    let logits = [1000.0, -1000.0, 0.0, -1000.0, -1000.0, -1000.0, 1000.0, 1000.0, -1000.0];
    let targets = [1, 2, 0];
    let (probs, losses) = softmax_ce_fast(&cpu, 3, 3, &logits, &targets);
    // Row 0: logsumexp = 1000 (the other terms vanish), loss = 1000 − (−1000) = 2000.
    // Row 1: all equal, loss = ln 3. Row 2: two equal maxima, loss = ln 2.
    assert_close("losses", &losses, &[2000.0, 3f64.ln(), 2f64.ln()], 1e-6, 1e-6);
    let third = 1.0 / 3.0;
    assert_close(
        "probs",
        &probs,
        &[1.0, 0.0, 0.0, third, third, third, 0.5, 0.5, 0.0],
        1e-7,
        1e-6,
    );
    let mut d = cpu.alloc(9).unwrap();
    cpu.softmax_cross_entropy_bwd(3, 3, &up(&cpu, &probs), &targets, 1.0, &mut d)
        .unwrap();
    assert!(down(&cpu, &d).iter().all(|v| v.is_finite()));
}

// ---- optimisers ----------------------------------------------------------------------

#[test]
fn adam_matches_reference_over_several_steps() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(17);
    let base = AdamParams::default();
    let configs = [
        base,
        AdamParams {
            weight_decay: 0.1,
            ..base
        },
        AdamParams {
            weight_decay: 0.1,
            decoupled: true,
            ..base
        },
        AdamParams {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.05,
            decoupled: true,
            step: 1,
        },
    ];
    for h0 in configs {
        for len in [37, 50_000] {
            let p = rng.vec(len, -1.0, 1.0);
            let (mut pb, mut mb, mut vb) = (up(&cpu, &p), cpu.zeros(len).unwrap(), cpu.zeros(len).unwrap());
            let (mut p64, mut m64, mut v64) = (f64s(&p), vec![0.0; len], vec![0.0; len]);
            for step in 1..=6 {
                let h = AdamParams { step, ..h0 };
                let g = rng.vec(len, -1.0, 1.0);
                cpu.adam_step(&h, &mut pb, &up(&cpu, &g), &mut mb, &mut vb).unwrap();
                (p64, m64, v64) = r::adam_step(&h, &p64, &f64s(&g), &m64, &v64);
                let what = format!("adam {h:?} len {len}");
                assert_close(&format!("{what}: param"), &down(&cpu, &pb), &p64, 1e-6, 1e-5);
                assert_close(&format!("{what}: m"), &down(&cpu, &mb), &m64, 1e-6, 1e-5);
                assert_close(&format!("{what}: v"), &down(&cpu, &vb), &v64, 1e-7, 1e-5);
            }
        }
    }
}

#[test]
fn adam_first_step_moves_each_param_by_lr_against_the_gradient_sign() {
    // Step 1 from zero moments: m̂ = g, v̂ = g², so the update is lr · g/(|g| + eps) ≈ lr · sign(g).
    let cpu = CpuBackend::new();
    let h = AdamParams {
        lr: 0.5,
        ..AdamParams::default()
    };
    let mut p = up(&cpu, &[1.0, 1.0, 1.0]);
    let (mut m, mut v) = (cpu.zeros(3).unwrap(), cpu.zeros(3).unwrap());
    cpu.adam_step(&h, &mut p, &up(&cpu, &[2.0, -0.25, 1e-3]), &mut m, &mut v)
        .unwrap();
    assert_close("adam step 1", &down(&cpu, &p), &[0.5, 1.5, 0.5], 1e-5, 1e-5);
}

#[test]
fn sgd_matches_reference_over_several_steps() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(18);
    let base = SgdParams {
        lr: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
        nesterov: false,
        step: 1,
    };
    let configs = [
        base,
        SgdParams {
            weight_decay: 0.01,
            ..base
        },
        SgdParams { momentum: 0.9, ..base },
        SgdParams {
            momentum: 0.9,
            weight_decay: 5e-4,
            ..base
        },
        SgdParams {
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
            ..base
        },
    ];
    for h0 in configs {
        for len in [37, 50_000] {
            let p = rng.vec(len, -1.0, 1.0);
            // Garbage in the momentum buffer: step 1 must overwrite it, not read it.
            let b = rng.vec(len, -9.0, 9.0);
            let (mut pb, mut bb) = (up(&cpu, &p), up(&cpu, &b));
            let (mut p64, mut b64) = (f64s(&p), f64s(&b));
            for step in 1..=5 {
                let h = SgdParams { step, ..h0 };
                let g = rng.vec(len, -1.0, 1.0);
                cpu.sgd_step(&h, &mut pb, &up(&cpu, &g), &mut bb).unwrap();
                (p64, b64) = r::sgd_step(&h, &p64, &f64s(&g), &b64);
                let what = format!("sgd {h:?} len {len}");
                assert_close(&format!("{what}: param"), &down(&cpu, &pb), &p64, 1e-6, 1e-5);
                assert_close(&format!("{what}: buf"), &down(&cpu, &bb), &b64, 1e-6, 1e-5);
            }
        }
    }
}

// ---- argument checks -----------------------------------------------------------------

#[test]
fn invalid_arguments_return_errors_without_panicking() {
    let cpu = CpuBackend::new();
    let b = |n: usize| cpu.zeros(n).unwrap();
    let is_len = |e: Result<()>| matches!(e, Err(TensorError::Len { .. }));
    let is_invalid = |e: Result<()>| matches!(e, Err(TensorError::Invalid { .. }));

    // Wrong lengths.
    assert!(is_len(cpu.activation(Act::Relu, &b(4), &mut b(5))));
    assert!(is_len(cpu.activation_bwd(Act::Relu, &b(4), &b(3), &mut b(4))));
    assert!(is_len(cpu.add(&b(4), &b(4), &mut b(3))));
    assert!(is_len(cpu.axpy(1.0, &b(4), &mut b(3))));
    assert!(matches!(cpu.dot(&b(4), &b(3)), Err(TensorError::Len { .. })));
    let s = nchw(2, 3, 4, 4);
    let n = s.numel();
    assert!(is_len(cpu.batch_norm_infer(
        &s,
        &b(n),
        &b(3),
        &b(2),
        &b(3),
        &b(3),
        1e-5,
        Act::Relu,
        &mut b(n)
    )));
    assert!(is_len(cpu.batch_norm_infer_bwd(
        &s,
        &b(n),
        &b(n),
        &b(3),
        &b(3),
        &b(3),
        1e-5,
        &mut b(n),
        Some(&mut b(4)),
        None
    )));
    assert!(is_len(cpu.batch_norm_train(
        &s,
        &b(n),
        &b(3),
        &b(3),
        &mut b(3),
        &mut b(3),
        0.1,
        1e-5,
        Act::Identity,
        &mut b(n - 1),
        &mut b(3),
        &mut b(3)
    )));
    assert!(is_len(cpu.batch_norm_train_bwd(
        &s,
        &b(n),
        &b(n),
        &b(3),
        &b(3),
        &b(3),
        &mut b(n),
        &mut b(2),
        &mut b(3)
    )));
    let g = pool(s, 2, 2, 0);
    assert!(is_len(cpu.max_pool2d(&g, &b(n), &mut b(n))));
    assert!(is_len(cpu.max_pool2d_bwd(&g, &b(n), &b(n / 4), &mut b(n / 4))));
    assert!(is_len(cpu.global_avg_pool(&s, &b(n), &mut b(5))));
    assert!(is_len(cpu.global_avg_pool_bwd(&s, &b(6), &mut b(n + 1))));
    assert!(is_len(cpu.upsample_nearest2x(&s, &b(n), &mut b(n))));
    assert!(is_len(cpu.upsample_nearest2x_bwd(&s, &b(n), &mut b(n))));
    assert!(is_len(cpu.shortcut_pad(&s, true, 1, &b(n), &mut b(n))));
    assert!(is_len(cpu.shortcut_pad_bwd(&s, true, 1, &b(n), &mut b(n))));
    assert!(is_len(cpu.softmax_cross_entropy(
        2,
        3,
        &b(6),
        &[0, 1],
        &mut b(6),
        &mut b(3)
    )));
    assert!(is_len(cpu.softmax_cross_entropy(
        2,
        3,
        &b(6),
        &[0],
        &mut b(6),
        &mut b(2)
    )));
    assert!(is_len(cpu.softmax_cross_entropy_bwd(
        2,
        3,
        &b(5),
        &[0, 1],
        1.0,
        &mut b(6)
    )));
    let adam = AdamParams::default();
    assert!(is_len(cpu.adam_step(&adam, &mut b(4), &b(4), &mut b(4), &mut b(3))));
    let sgd = SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
        step: 1,
    };
    assert!(is_len(cpu.sgd_step(&sgd, &mut b(4), &b(5), &mut b(4))));

    // Bad geometry, and training-mode batch norm with one value per channel.
    assert!(is_invalid(cpu.max_pool2d(
        &pool(nchw(1, 1, 2, 2), 5, 1, 0),
        &b(4),
        &mut b(1)
    )));
    let one = nchw(1, 3, 1, 1);
    assert!(is_invalid(cpu.batch_norm_train(
        &one,
        &b(3),
        &b(3),
        &b(3),
        &mut b(3),
        &mut b(3),
        0.1,
        1e-5,
        Act::Identity,
        &mut b(3),
        &mut b(3),
        &mut b(3)
    )));

    // Out-of-range targets name the sample, the target and the class count.
    let e = cpu.softmax_cross_entropy(2, 3, &b(6), &[0, 3], &mut b(6), &mut b(2));
    assert!(
        matches!(
            e,
            Err(TensorError::Target {
                sample: 1,
                target: 3,
                classes: 3,
                ..
            })
        ),
        "{e:?}"
    );
    let e = cpu.softmax_cross_entropy_bwd(2, 3, &b(6), &[7, 0], 1.0, &mut b(6));
    assert!(
        matches!(
            e,
            Err(TensorError::Target {
                sample: 0,
                target: 7,
                classes: 3,
                ..
            })
        ),
        "{e:?}"
    );

    // LeakyReLU needs a positive slope for its backward to read the output.
    for slope in [0.0, -0.1, f32::NAN] {
        let act = Act::LeakyRelu(slope);
        assert!(is_invalid(cpu.activation(act, &b(4), &mut b(4))), "slope {slope}");
        assert!(
            is_invalid(cpu.activation_bwd(act, &b(4), &b(4), &mut b(4))),
            "slope {slope}"
        );
        assert!(is_invalid(cpu.batch_norm_infer(
            &s,
            &b(n),
            &b(3),
            &b(3),
            &b(3),
            &b(3),
            1e-5,
            act,
            &mut b(n)
        )));
    }

    // Optimiser steps count from 1.
    assert!(is_invalid(cpu.adam_step(
        &AdamParams { step: 0, ..adam },
        &mut b(4),
        &b(4),
        &mut b(4),
        &mut b(4)
    )));
    assert!(is_invalid(cpu.sgd_step(
        &SgdParams { step: 0, ..sgd },
        &mut b(4),
        &b(4),
        &mut b(4)
    )));
}

#[test]
fn batch_norm_train_with_fused_relu_equals_batch_norm_then_relu() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(77);
    let s = nchw(3, 4, 5, 6);
    let x = up(&cpu, &rng.vec(s.numel(), -2.0, 3.0));
    let (g, bt) = (up(&cpu, &rng.vec(4, 0.5, 1.5)), up(&cpu, &rng.vec(4, -0.5, 0.5)));
    let run = |act: Act| {
        let (mut rm, mut rv) = (up(&cpu, &[0.0; 4]), up(&cpu, &[1.0; 4]));
        let mut y = cpu.alloc(s.numel()).unwrap();
        let (mut sm, mut si) = (cpu.alloc(4).unwrap(), cpu.alloc(4).unwrap());
        cpu.batch_norm_train(
            &s, &x, &g, &bt, &mut rm, &mut rv, 0.1, 1e-5, act, &mut y, &mut sm, &mut si,
        )
        .unwrap();
        (down(&cpu, &y), down(&cpu, &rm), down(&cpu, &rv))
    };
    let (plain, rm0, rv0) = run(Act::Identity);
    let (fused, rm1, rv1) = run(Act::Relu);
    let relu: Vec<f32> = plain.iter().map(|&v| v.max(0.0)).collect();
    assert_eq!(fused, relu);
    // The statistics do not depend on the activation.
    assert_eq!((rm0, rv0), (rm1, rv1));
    assert!(fused.contains(&0.0) && fused.iter().any(|&v| v > 0.0));
}
