//! Each layer's backward against central finite differences of its own forward, on tiny
//! shapes. The kernels themselves are checked in f64 against the reference in
//! mep-tensor's tests; this checks that the layers wire them correctly (which buffer is
//! the input, which gradient lands in which parameter). The layers are f32, so the
//! differences use a step of 1e-2 on functions that are smooth at that scale, accumulate
//! the loss in f64, and allow 1e-2 relative error.

use mep_nn::init::Rng;
use mep_nn::{Adam, BatchNorm2d, Conv2d, Grads, Linear, Optimizer, Param, Sgd};
use mep_tensor::{Act, AdamParams, CpuBackend, SgdParams, Tensor};

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Compares `analytic` with central differences of `loss` with respect to `v`.
fn check_fd(what: &str, v: &mut [f32], analytic: &[f32], mut loss: impl FnMut(&[f32]) -> f64) {
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    let scale = analytic.iter().map(|a| a.abs() as f64).fold(1e-3, f64::max);
    for i in 0..v.len() {
        let keep = v[i];
        v[i] = keep + h;
        let up = loss(v);
        v[i] = keep - h;
        let down = loss(v);
        v[i] = keep;
        let fd = (up - down) / (2.0 * h as f64);
        worst = worst.max((fd - analytic[i] as f64).abs() / scale);
    }
    assert!(worst < 1e-2, "{what}: worst relative difference {worst:.2e}");
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let b = CpuBackend::new();
    let mut rng = Rng::new(1);
    let (n, ci, co, h, k) = (2, 3, 4, 5, 3);
    let w0 = randn(&mut rng, co * ci * k * k);
    let b0 = randn(&mut rng, co);
    let x0 = randn(&mut rng, n * ci * h * h);
    let mut conv = Conv2d::from_host(&b, co, ci, k, 2, 1, w0.clone(), Some(b0.clone())).unwrap();
    let x = Tensor::from_slice(&b, [n, ci, h, h], &x0).unwrap();
    let y = conv.forward(&b, &x, None, Act::Identity).unwrap();
    let r = randn(&mut rng, y.numel());
    let dy = Tensor::from_slice(&b, y.shape.clone(), &r).unwrap();
    let dx = conv
        .backward(&b, &x, &dy, Grads::ALL)
        .unwrap()
        .unwrap()
        .to_vec(&b)
        .unwrap();
    let dw = conv.weight.grad.as_ref().unwrap().to_vec(&b).unwrap();
    let db = conv.bias.as_ref().unwrap().grad.as_ref().unwrap().to_vec(&b).unwrap();
    let f = |w: &[f32], bias: &[f32], x: &[f32]| {
        let c = Conv2d::from_host(&b, co, ci, k, 2, 1, w.to_vec(), Some(bias.to_vec())).unwrap();
        let x = Tensor::from_slice(&b, [n, ci, h, h], x).unwrap();
        dot(&c.forward(&b, &x, None, Act::Identity).unwrap().to_vec(&b).unwrap(), &r)
    };
    check_fd("conv dx", &mut x0.clone(), &dx, |v| f(&w0, &b0, v));
    check_fd("conv dw", &mut w0.clone(), &dw, |v| f(v, &b0, &x0));
    check_fd("conv db", &mut b0.clone(), &db, |v| f(&w0, v, &x0));
}

#[test]
fn batch_norm_training_backward_matches_finite_differences() {
    let b = CpuBackend::new();
    let mut rng = Rng::new(2);
    let (n, c, h) = (3, 2, 3);
    let g0: Vec<f32> = (0..c).map(|i| 0.5 + i as f32).collect();
    let be0 = randn(&mut rng, c);
    let x0 = randn(&mut rng, n * c * h * h);
    let r = randn(&mut rng, x0.len());
    let f = |g: &[f32], be: &[f32], x: &[f32]| {
        let mut bn = BatchNorm2d::from_host(&b, g.to_vec(), be.to_vec(), vec![0.0; c], vec![1.0; c]).unwrap();
        let x = Tensor::from_slice(&b, [n, c, h, h], x).unwrap();
        dot(
            &bn.forward_train(&b, &x, Act::Identity).unwrap().0.to_vec(&b).unwrap(),
            &r,
        )
    };
    let mut bn = BatchNorm2d::from_host(&b, g0.clone(), be0.clone(), vec![0.0; c], vec![1.0; c]).unwrap();
    let x = Tensor::from_slice(&b, [n, c, h, h], &x0).unwrap();
    let (_, cache) = bn.forward_train(&b, &x, Act::Identity).unwrap();
    let dy = Tensor::from_slice(&b, [n, c, h, h], &r).unwrap();
    let dx = bn
        .backward_train(&b, &x, &dy, &cache, Grads::ALL)
        .unwrap()
        .to_vec(&b)
        .unwrap();
    let dg = bn.weight.grad.as_ref().unwrap().to_vec(&b).unwrap();
    let dbe = bn.bias.grad.as_ref().unwrap().to_vec(&b).unwrap();
    check_fd("bn dx", &mut x0.clone(), &dx, |v| f(&g0, &be0, v));
    check_fd("bn dgamma", &mut g0.clone(), &dg, |v| f(v, &be0, &x0));
    check_fd("bn dbeta", &mut be0.clone(), &dbe, |v| f(&g0, v, &x0));
    // Inference mode is an affine map per channel.
    let mean = randn(&mut rng, c);
    let var: Vec<f32> = (0..c).map(|i| 0.5 + i as f32).collect();
    let fe = |x: &[f32]| {
        let bn = BatchNorm2d::from_host(&b, g0.clone(), be0.clone(), mean.clone(), var.clone()).unwrap();
        let x = Tensor::from_slice(&b, [n, c, h, h], x).unwrap();
        dot(&bn.forward_eval(&b, &x, Act::Identity).unwrap().to_vec(&b).unwrap(), &r)
    };
    let mut bn = BatchNorm2d::from_host(&b, g0.clone(), be0.clone(), mean.clone(), var.clone()).unwrap();
    let dx = bn.backward_eval(&b, &x, &dy, Grads::INPUT).unwrap().to_vec(&b).unwrap();
    check_fd("bn eval dx", &mut x0.clone(), &dx, fe);
    assert!(
        bn.weight.grad.is_none(),
        "Grads::INPUT leaves parameter gradients alone"
    );
}

#[test]
fn linear_backward_matches_finite_differences() {
    let b = CpuBackend::new();
    let mut rng = Rng::new(3);
    let (n, k, m) = (3, 5, 4);
    let w0 = randn(&mut rng, m * k);
    let b0 = randn(&mut rng, m);
    let x0 = randn(&mut rng, n * k);
    let r = randn(&mut rng, n * m);
    let f = |w: &[f32], bias: &[f32], x: &[f32]| {
        let l = Linear::from_host(&b, m, k, w.to_vec(), Some(bias.to_vec())).unwrap();
        let x = Tensor::from_slice(&b, [n, k], x).unwrap();
        dot(&l.forward(&b, &x).unwrap().to_vec(&b).unwrap(), &r)
    };
    let mut l = Linear::from_host(&b, m, k, w0.clone(), Some(b0.clone())).unwrap();
    let x = Tensor::from_slice(&b, [n, k], &x0).unwrap();
    let dy = Tensor::from_slice(&b, [n, m], &r).unwrap();
    let dx = l
        .backward(&b, &x, &dy, Grads::ALL)
        .unwrap()
        .unwrap()
        .to_vec(&b)
        .unwrap();
    let dw = l.weight.grad.as_ref().unwrap().to_vec(&b).unwrap();
    let db = l.bias.as_ref().unwrap().grad.as_ref().unwrap().to_vec(&b).unwrap();
    check_fd("linear dx", &mut x0.clone(), &dx, |v| f(&w0, &b0, v));
    check_fd("linear dw", &mut w0.clone(), &dw, |v| f(v, &b0, &x0));
    check_fd("linear db", &mut b0.clone(), &db, |v| f(&w0, v, &x0));
}

#[test]
fn layers_reject_inputs_of_the_wrong_shape() {
    let b = CpuBackend::new();
    let conv = Conv2d::from_host(&b, 2, 3, 1, 1, 0, vec![0.0; 6], None).unwrap();
    let x = Tensor::zeros(&b, [1, 4, 2, 2]).unwrap();
    let err = conv.forward(&b, &x, None, Act::Relu).err().unwrap().to_string();
    assert!(err.contains("[1, 4, 2, 2]") && err.contains("[N, 3, H, W]"), "{err}");
    let l = Linear::from_host(&b, 2, 3, vec![0.0; 6], None).unwrap();
    let err = l
        .forward(&b, &Tensor::zeros(&b, [1, 4]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[N, 3]"), "{err}");
}

#[test]
fn optimisers_take_pytorchs_first_steps() {
    let b = CpuBackend::new();
    let mk = || {
        let mut p = Param::new(Tensor::from_vec(&b, [2], vec![1.0, -1.0]).unwrap());
        p.grad = Some(Tensor::from_vec(&b, [2], vec![0.5, -2.0]).unwrap());
        p
    };
    // Adam's first step moves each weight by lr·sign(g) (bias-corrected m/√v = g/|g|).
    let mut p = mk();
    let mut adam = Adam::new(AdamParams {
        lr: 0.1,
        ..AdamParams::default()
    });
    adam.step(&b, &mut [&mut p]).unwrap();
    let v = p.value.to_vec(&b).unwrap();
    assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 0.9).abs() < 1e-6, "{v:?}");
    // SGD: p − lr·g on the first step, then momentum accumulates: buf = 0.9·g + g.
    let mut p = mk();
    let mut sgd = Sgd::new(SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
        step: 0,
    });
    sgd.step(&b, &mut [&mut p]).unwrap();
    sgd.step(&b, &mut [&mut p]).unwrap();
    let v = p.value.to_vec(&b).unwrap();
    assert!((v[0] - (1.0 - 0.05 - 0.095)).abs() < 1e-6, "{v:?}");
    // A different parameter list is refused, not silently mixed up.
    let mut q = mk();
    let mut r = mk();
    assert!(sgd.step(&b, &mut [&mut q, &mut r]).is_err());
}

#[test]
fn optimiser_state_round_trips_so_a_resumed_run_takes_the_same_step() {
    let b = CpuBackend::new();
    let mk = || {
        let mut p = Param::new(Tensor::from_vec(&b, [3], vec![1.0, -1.0, 0.5]).unwrap());
        p.grad = Some(Tensor::from_vec(&b, [3], vec![0.5, -2.0, 0.1]).unwrap());
        p
    };
    let h = AdamParams {
        lr: 0.01,
        ..AdamParams::default()
    };
    // Three steps straight through ...
    let mut p = mk();
    let mut adam = Adam::new(h);
    for _ in 0..3 {
        adam.step(&b, &mut [&mut p]).unwrap();
    }
    // ... equal two steps, a checkpoint, a fresh optimiser restored from it, and one step.
    let mut q = mk();
    let mut first = Adam::new(h);
    first.step(&b, &mut [&mut q]).unwrap();
    first.step(&b, &mut [&mut q]).unwrap();
    let saved = first.export_state(&b).unwrap();
    assert_eq!(saved.step, 2);
    let mut resumed = Adam::new(h);
    resumed.import_state(&b, &saved).unwrap();
    resumed.step(&b, &mut [&mut q]).unwrap();
    assert_eq!(p.value.to_vec(&b).unwrap(), q.value.to_vec(&b).unwrap());
    // A state for another optimiser is refused.
    let mut sgd = Sgd::new(SgdParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
        step: 0,
    });
    assert!(sgd.import_state(&b, &saved).is_err());
}
