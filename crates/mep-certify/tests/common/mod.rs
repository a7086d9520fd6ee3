//! Small networks and points for the tests.
#![allow(dead_code)]

use mep_certify::Certifier;
use mep_nn::init::Rng;
use mep_nn::BatchNorm2d;
use mep_resnet::{Arch, FoldedResNet, ResNet, Shortcut};
use mep_tensor::{CpuBackend, Tensor};

/// Sets a batch norm's γ, β and running statistics to random values, so that the folded
/// convolutions get non-zero biases (a freshly initialised network folds to zero biases and
/// is positively homogeneous, a special case).
fn perturb(cpu: &CpuBackend, bn: &mut BatchNorm2d<CpuBackend>, rng: &mut Rng) {
    let c = bn.c;
    let mut u = |lo: f64, hi: f64| -> Tensor<CpuBackend> {
        let v = (0..c).map(|_| (lo + (hi - lo) * rng.uniform()) as f32).collect();
        Tensor::from_vec(cpu, [c], v).unwrap()
    };
    bn.weight.value = u(0.5, 1.5);
    bn.bias.value = u(-0.3, 0.3);
    bn.running_mean = u(-0.3, 0.3);
    bn.running_var = u(0.5, 2.0);
}

/// `ResNet::init` with every batch norm perturbed (see [`perturb`]), deterministic in `seed`.
pub fn model(cpu: &CpuBackend, arch: Arch, width: usize, seed: u64) -> ResNet<CpuBackend> {
    let mut m = ResNet::init(cpu, arch, width, 10, seed).unwrap();
    let mut rng = Rng::new(seed ^ 0x5eed);
    perturb(cpu, &mut m.stem.bn, &mut rng);
    for block in m.stages.iter_mut().flatten() {
        for u in &mut block.units {
            perturb(cpu, &mut u.bn, &mut rng);
        }
        if let Shortcut::Projection(u) = &mut block.shortcut {
            perturb(cpu, &mut u.bn, &mut rng);
        }
    }
    m
}

/// The folded network and its f64 certifier.
pub fn network(arch: Arch, width: usize, seed: u64) -> (CpuBackend, FoldedResNet<CpuBackend>, Certifier) {
    let cpu = CpuBackend::new();
    let net = FoldedResNet::fold(&cpu, &model(&cpu, arch, width, seed)).unwrap();
    let c = Certifier::new(&cpu, &net).unwrap();
    (cpu, net, c)
}

/// A standard-normal image `[3, h, w]`.
pub fn image(seed: u64, h: usize, w: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..3 * h * w).map(|_| rng.normal() as f32).collect()
}

/// `z_a + t (z_b − z_a)` in f64, for each `t`, concatenated.
pub fn lerp(z_a: &[f64], z_b: &[f64], ts: &[f64]) -> Vec<f64> {
    ts.iter()
        .flat_map(|&t| z_a.iter().zip(z_b).map(move |(a, b)| a + t * (b - a)))
        .collect()
}

pub fn to_f64(z: &[f32]) -> Vec<f64> {
    z.iter().map(|&v| v as f64).collect()
}

/// The arg-max of a row.
pub fn argmax(l: &[f64]) -> usize {
    (0..l.len()).max_by(|&i, &j| l[i].total_cmp(&l[j])).unwrap()
}

/// `logit_target − max_{j≠target} logit_j`.
pub fn margin(l: &[f64], target: usize) -> f64 {
    let other = (0..l.len())
        .filter(|&j| j != target)
        .map(|j| l[j])
        .fold(f64::NEG_INFINITY, f64::max);
    l[target] - other
}

/// Brute-force samples along the segment: `MEP_CERTIFY_SAMPLES` or `default`.
pub fn samples(default: usize) -> usize {
    std::env::var("MEP_CERTIFY_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
