//! Deterministic initialisation (Kaiming normal as torchvision, uniform as PyTorch's
//! `Linear`), from a seed, so that a training run is reproducible.

use mep_rng::SplitMix64;

/// The workspace's SplitMix64 with the draws initialisation needs: reproducible across
/// platforms.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.unit_f64()
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Kaiming-normal weights with fan-out, ReLU gain (torchvision's ResNet convolutions):
/// std = sqrt(2 / (c_out · k · k)).
pub fn kaiming_normal_fan_out(rng: &mut Rng, c_out: usize, c_in: usize, k: usize) -> Vec<f32> {
    let std = (2.0 / (c_out * k * k) as f64).sqrt();
    (0..c_out * c_in * k * k).map(|_| (rng.normal() * std) as f32).collect()
}

/// Uniform in ±1/sqrt(fan_in) (PyTorch's default for `Linear` weights and biases).
pub fn uniform_fan_in(rng: &mut Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    (0..len).map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_unit_variance() {
        let mut rng = Rng::new(7);
        let xs: Vec<f64> = (0..20000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }
}
