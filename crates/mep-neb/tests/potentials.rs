//! The Müller–Brown potential: gradients against finite differences, its published stationary
//! points (Müller & Brown 1979), the batched `Energy` implementation, and the straight line
//! A → B evaluated densely.

use mep_neb::potentials::MullerBrown;
use mep_neb::{Energy, Neb, NebConfig, NebError, Path};
use mep_tensor::prelude::*;
use mep_tensor::CpuBackend;

#[test]
fn gradient_matches_finite_differences() {
    let h = 1e-6;
    for &(x, y) in &[
        (-0.5, 1.4),
        (0.6, 0.03),
        (-0.8, 0.6),
        (0.2, 0.3),
        (-1.3, 1.9),
        (1.0, -0.3),
    ] {
        let (_, g) = MullerBrown::energy_grad(x, y);
        let gx = (MullerBrown::energy(x + h, y) - MullerBrown::energy(x - h, y)) / (2.0 * h);
        let gy = (MullerBrown::energy(x, y + h) - MullerBrown::energy(x, y - h)) / (2.0 * h);
        for (got, want) in [(g[0], gx), (g[1], gy)] {
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "({x}, {y}): {got} vs {want}"
            );
        }
    }
}

#[test]
fn published_stationary_points() {
    // Müller & Brown 1979, to the 6 decimals usually quoted: minima A, B, C and the saddle
    // between A and C at E = -40.664844. At 6 decimals the gradient is below ~1e-2.
    let points = [
        (MullerBrown::MINIMUM_A, [-0.558224, 1.441726], -146.699517),
        (MullerBrown::MINIMUM_B, [0.623499, 0.028038], -108.166724),
        (MullerBrown::MINIMUM_C, [-0.050011, 0.466694], -80.767818),
        (MullerBrown::SADDLE_AC, [-0.822002, 0.624313], -40.664844),
    ];
    for (constant, p, e) in points {
        assert_eq!(constant, p);
        let (got, g) = MullerBrown::energy_grad(p[0], p[1]);
        assert!((got - e).abs() < 1e-5, "{p:?}: E = {got}, published {e}");
        assert!(g[0].hypot(g[1]) < 1e-2, "{p:?}: |∇E| = {}", g[0].hypot(g[1]));
    }
}

#[test]
fn batched_energy_matches_the_formula_and_checks_sizes() {
    let cpu = CpuBackend::new();
    let pts = [-0.5f32, 1.4, 0.6, 0.03, -0.8, 0.6];
    let buf = cpu.upload(&pts).unwrap();
    let mut grads = cpu.zeros(6).unwrap();
    let ev = MullerBrown.evaluate(&cpu, &buf, 3, Some(&mut grads)).unwrap();
    let g = cpu.download(&grads).unwrap();
    for k in 0..3 {
        let (e, d) = MullerBrown::energy_grad(pts[2 * k] as f64, pts[2 * k + 1] as f64);
        assert_eq!(ev.energies[k], e);
        assert_eq!((g[2 * k], g[2 * k + 1]), (d[0] as f32, d[1] as f32));
    }
    assert_eq!(ev.aux.len(), 3);
    assert!(matches!(
        MullerBrown.evaluate(&cpu, &buf, 2, None),
        Err(NebError::Size {
            expected: 4,
            found: 6,
            ..
        })
    ));
    let mut short = cpu.zeros(4).unwrap();
    assert!(matches!(
        MullerBrown.evaluate(&cpu, &buf, 3, Some(&mut short)),
        Err(NebError::Size {
            expected: 6,
            found: 4,
            ..
        })
    ));
}

#[test]
fn straight_line_a_to_b_peaks_at_12_676() {
    // The straight line from minimum A to minimum B of Müller & Brown (1979) crosses a ridge:
    // its highest point is E = 12.676228 at t = 0.3066 (the reference; a golden-section
    // search on the f64 formula between these 6-decimal endpoints gives 12.676214 at 0.30662).
    let cpu = CpuBackend::new();
    let a = cpu.upload(&[-0.558224, 1.441726]).unwrap();
    let b = cpu.upload(&[0.623499, 0.028038]).unwrap();
    let path = Path::straight(&cpu, &a, &b, 2, 5).unwrap();
    let config = NebConfig {
        sub_points: 1000,
        ..NebConfig::default()
    };
    let neb = Neb::new(&cpu, config, path).unwrap();
    let dense = neb.dense(&cpu, &mut MullerBrown).unwrap();
    assert_eq!(dense.energies.len(), 4 * 1000 + 1);
    let (k, e) = dense.max_energy();
    assert!((e - 12.676228).abs() < 1e-3, "peak E = {e}");
    assert!((dense.t[k] - 0.3066).abs() < 1e-3, "peak at t = {}", dense.t[k]);
    // The pivots' energies are those of the minima, to f32 rounding of the points.
    let pe = dense.pivot_energies();
    assert_eq!(pe.len(), 5);
    assert!(
        (pe[0] + 146.699517).abs() < 1e-3 && (pe[4] + 108.166724).abs() < 1e-3,
        "{pe:?}"
    );
}
