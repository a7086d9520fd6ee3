//! The path operations of the nudged elastic band (`lerp_rows`, `copy_rows`, `row_distances`,
//! `neb_forces`): the CPU kernels against the f64 reference on random paths, the tangent
//! cases of Henkelman & Jónsson (2000, eqs. 8–11) against hand-computed values, and the
//! argument checks.

use mep_tensor::cpu::reference::neb as r;
use mep_tensor::*;

mod common;
use common::{assert_close, f64s, Rng};

// ---- lerp_rows, copy_rows, row_distances ------------------------------------------------

#[test]
fn lerp_rows_matches_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(1);
    for &(rows, dim, n) in &[(2, 1, 5), (5, 3, 17), (9, 1000, 40), (3, 70_000, 3)] {
        let src = rng.vec(rows * dim, -2.0, 2.0);
        let plan: Vec<Lerp> = (0..n)
            .map(|k| Lerp {
                a: rng.below(rows),
                b: rng.below(rows),
                // Some exact copies (t = 0 and t = 1), some extrapolation.
                t: match k % 4 {
                    0 => 0.0,
                    1 => 1.0,
                    2 => rng.uniform(-0.5, 1.5),
                    _ => rng.uniform(0.0, 1.0),
                },
            })
            .collect();
        let s = cpu.upload(&src).unwrap();
        let mut d = cpu.alloc(n * dim).unwrap();
        cpu.lerp_rows(dim, &s, &plan, &mut d).unwrap();
        let got = cpu.download(&d).unwrap();
        let rplan: Vec<(usize, usize, f64)> = plan.iter().map(|l| (l.a, l.b, l.t as f64)).collect();
        let want = r::lerp_rows(dim, &f64s(&src), &rplan);
        assert_close("lerp_rows", &got, &want, 1e-6, 1e-6);
        // t = 0 and t = 1 are exact copies.
        for (k, l) in plan.iter().enumerate().filter(|(k, _)| k % 4 < 2) {
            let row = if l.t == 0.0 { l.a } else { l.b };
            assert_eq!(
                &got[k * dim..(k + 1) * dim],
                &src[row * dim..(row + 1) * dim],
                "row {k}"
            );
        }
    }
}

#[test]
fn lerp_rows_rejects_bad_plans() {
    let cpu = CpuBackend::new();
    let s = cpu.upload(&[0.0; 6]).unwrap();
    let mut d = cpu.alloc(3).unwrap();
    let ok = Lerp { a: 0, b: 1, t: 0.5 };
    // Row 2 of a 2-row source (dim 3).
    let e = cpu.lerp_rows(3, &s, &[Lerp { b: 2, ..ok }], &mut d).unwrap_err();
    assert!(e.to_string().contains("plan[0]"), "{e}");
    let e = cpu.lerp_rows(3, &s, &[Lerp { t: f32::NAN, ..ok }], &mut d).unwrap_err();
    assert!(e.to_string().contains("t = NaN"), "{e}");
    // dst must hold plan.len() rows.
    assert!(matches!(
        cpu.lerp_rows(3, &s, &[ok, ok], &mut d),
        Err(TensorError::Len { .. })
    ));
    // src must be whole rows; dim 0 is meaningless.
    assert!(cpu.lerp_rows(4, &s, &[], &mut cpu.alloc(0).unwrap()).is_err());
    assert!(cpu.lerp_rows(0, &s, &[], &mut cpu.alloc(0).unwrap()).is_err());
}

#[test]
fn copy_rows_copies_and_checks_ranges() {
    let cpu = CpuBackend::new();
    let src: Vec<f32> = (0..12).map(|x| x as f32).collect();
    let s = cpu.upload(&src).unwrap();
    let mut d = cpu.zeros(9).unwrap();
    // Rows 1..3 of a [4, 3] source into rows 1..3 of a [3, 3] destination.
    cpu.copy_rows(3, &s, 1, &mut d, 1, 2).unwrap();
    assert_eq!(
        cpu.download(&d).unwrap(),
        vec![0.0, 0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    );
    assert!(cpu.copy_rows(3, &s, 3, &mut d, 0, 2).is_err(), "source rows 3..5 of 4");
    assert!(
        cpu.copy_rows(3, &s, 0, &mut d, 2, 2).is_err(),
        "destination rows 2..4 of 3"
    );
    assert!(
        cpu.copy_rows(3, &s, usize::MAX, &mut d, 0, 2).is_err(),
        "overflowing row index"
    );
}

#[test]
fn row_distances_match_reference() {
    let cpu = CpuBackend::new();
    let mut rng = Rng::new(2);
    for &(rows, dim) in &[(1, 4), (2, 1), (7, 3), (33, 5000)] {
        let x = rng.vec(rows * dim, -1.0, 1.0);
        let got = cpu.row_distances(dim, rows, &cpu.upload(&x).unwrap()).unwrap();
        assert_close("row_distances", &got, &r::row_distances(dim, &f64s(&x)), 1e-12, 1e-12);
    }
    // |(3, 4)| = 5.
    let x = cpu.upload(&[0.0, 0.0, 3.0, 4.0]).unwrap();
    assert_eq!(cpu.row_distances(2, 2, &x).unwrap(), vec![5.0]);
    assert!(cpu.row_distances(2, 3, &x).is_err());
    assert!(cpu.row_distances(2, 0, &cpu.alloc(0).unwrap()).is_err());
}

// ---- neb_forces against the reference ---------------------------------------------------

fn forces(p: &NebForceParams, x: &[f32], g: &[f32], e: &[f64]) -> (Vec<f32>, Vec<f64>) {
    let cpu = CpuBackend::new();
    let mut f = cpu.upload(&vec![7.0; x.len()]).unwrap(); // garbage the op must overwrite
    let norms = cpu
        .neb_forces(p, &cpu.upload(x).unwrap(), &cpu.upload(g).unwrap(), e, &mut f)
        .unwrap();
    (cpu.download(&f).unwrap(), norms)
}

#[test]
fn neb_forces_match_reference() {
    let mut rng = Rng::new(3);
    for &(pivots, dim) in &[(2, 3), (3, 1), (7, 2), (9, 17), (6, 20_000)] {
        for case in 0..6 {
            let x = rng.vec(pivots * dim, -1.0, 1.0);
            let g = rng.vec(pivots * dim, -5.0, 5.0);
            let mut e: Vec<f64> = (0..pivots).map(|_| rng.uniform(-3.0, 3.0) as f64).collect();
            if case == 1 {
                // Ties: every other energy equal, and a flat stretch.
                for i in (0..pivots).step_by(2) {
                    e[i] = 1.0;
                }
            }
            if case == 2 {
                e.fill(0.5);
            }
            let spring = (case % 3 != 0).then_some(rng.uniform(0.0, 10.0));
            let climbing = (case >= 3 && pivots >= 3).then(|| 1 + rng.below(pivots - 2));
            let p = NebForceParams {
                pivots,
                dim,
                spring,
                climbing,
            };
            let (f, n) = forces(&p, &x, &g, &e);
            let (wf, wn) = r::neb_forces(
                pivots,
                dim,
                spring.map(|k| k as f64),
                climbing,
                &f64s(&x),
                &f64s(&g),
                &e,
            );
            let what = format!("P {pivots} D {dim} case {case}");
            assert_close(&format!("{what} forces"), &f, &wf, 1e-5, 1e-5);
            assert_close(&format!("{what} norms"), &n, &wn, 1e-9, 1e-9);
            assert!(
                f[..dim].iter().chain(&f[(pivots - 1) * dim..]).all(|&v| v == 0.0),
                "{what}: endpoint rows"
            );
            assert_eq!((n[0], n[pivots - 1]), (0.0, 0.0), "{what}: endpoint norms");
        }
    }
}

#[test]
fn neb_forces_ignore_endpoint_gradients() {
    // NaN gradients at the endpoints are never read.
    let x = [0.0, 0.0, 1.0, 0.0, 2.0, 1.0];
    let g = [f32::NAN, f32::NAN, 1.0, 2.0, f32::INFINITY, f32::NAN];
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(1.0),
        climbing: None,
    };
    let (f, n) = forces(&p, &x, &g, &[0.0, 1.0, 2.0]);
    assert!(
        f.iter().all(|v| v.is_finite()) && n.iter().all(|v| v.is_finite()),
        "{f:?} {n:?}"
    );
}

// ---- tangent cases, by hand -------------------------------------------------------------

// Pivots R0 = (0, 0), R1 = (1, 0), R2 = (1, 2): τ+ = (0, 2), τ- = (1, 0), |τ+| - |τ-| = 1.
const BENT: [f32; 6] = [0.0, 0.0, 1.0, 0.0, 1.0, 2.0];

/// The force on pivot 1 with zero gradient and k = 1: the spring force (|τ+| - |τ-|) τ̂ = τ̂ on
/// the bent path, so it shows the unit tangent.
fn tangent_by_spring(x: &[f32; 6], e: [f64; 3]) -> Vec<f32> {
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(1.0),
        climbing: None,
    };
    let (f, n) = forces(&p, x, &[0.0; 6], &e);
    assert_eq!(n[1], 0.0, "no gradient, no perpendicular force");
    f[2..4].to_vec()
}

/// Checks the CPU kernel (through the spring force) and the reference tangent.
#[track_caller]
fn check_tangent(e: [f64; 3], want: [f64; 2]) {
    let got = tangent_by_spring(&BENT, e);
    assert_close(&format!("tangent at energies {e:?}"), &got, &want, 1e-6, 0.0);
    let x = f64s(&BENT);
    let t = r::tangent(&x[0..2], &x[2..4], &x[4..6], e[0], e[1], e[2]);
    assert_close(&format!("reference tangent at energies {e:?}"), &t, &want, 1e-12, 0.0);
}

#[test]
fn tangent_monotone_up_is_tau_plus() {
    // E0 < E1 < E2: τ = τ+ = (0, 2), eq. 8.
    check_tangent([0.0, 1.0, 2.0], [0.0, 1.0]);
}

#[test]
fn tangent_monotone_down_is_tau_minus() {
    // E0 > E1 > E2: τ = τ- = (1, 0), eq. 8.
    check_tangent([2.0, 1.0, 0.0], [1.0, 0.0]);
}

#[test]
fn tangent_at_a_maximum_weights_by_energy_differences() {
    // E = (0, 3, 1): ΔE_max = 3, ΔE_min = 2, E2 > E0, so τ = 3 τ+ + 2 τ- = (2, 6) (eqs. 9–10),
    // τ̂ = (1, 3)/√10.
    let s = 10f64.sqrt();
    check_tangent([0.0, 3.0, 1.0], [1.0 / s, 3.0 / s]);
}

#[test]
fn tangent_at_a_minimum_weights_by_energy_differences() {
    // E = (2, 0, 1): ΔE_max = 2, ΔE_min = 1, E2 < E0, so τ = 1 τ+ + 2 τ- = (2, 2) (eq. 11),
    // τ̂ = (1, 1)/√2.
    let s = 2f64.sqrt();
    check_tangent([2.0, 0.0, 1.0], [1.0 / s, 1.0 / s]);
}

#[test]
fn tangent_with_equal_energies_is_the_bisector() {
    // Flat energy: τ̂+ + τ̂- = (0, 1) + (1, 0), τ̂ = (1, 1)/√2 (eqs. 9–11 would give 0/0).
    let s = 2f64.sqrt();
    check_tangent([1.0, 1.0, 1.0], [1.0 / s, 1.0 / s]);
    // A maximum with E0 = E2: the bisector too, not τ+ + τ- = (1, 2).
    check_tangent([0.0, 1.0, 0.0], [1.0 / s, 1.0 / s]);
}

#[test]
fn tangent_at_a_zero_length_segment_is_finite() {
    // R2 = R1: τ+ = 0. Monotone up would pick τ+; the bisector falls back to τ̂- = (1, 0), and
    // the spring force is (|τ+| - |τ-|) τ̂ = -(1, 0).
    let x = [0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    for e in [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 3.0, 1.0]] {
        assert_eq!(tangent_by_spring(&x, e), vec![-1.0, 0.0], "energies {e:?}");
    }
    // All three pivots equal: no tangent; the force is the whole -∇E, never NaN.
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(1.0),
        climbing: None,
    };
    let (f, n) = forces(&p, &[1.0; 6], &[0.0, 0.0, 3.0, 4.0, 0.0, 0.0], &[1.0, 1.0, 1.0]);
    assert_eq!(&f[2..4], &[-3.0, -4.0]);
    assert_eq!(n[1], 5.0);
    let x = [1.0f64; 2];
    assert_eq!(r::tangent(&x, &x, &x, 0.0, 1.0, 2.0), vec![0.0, 0.0]);
}

#[test]
fn tangent_of_a_path_folding_back_is_finite() {
    // R2 = R0: τ+ = -τ-, so a maximum's 1·τ+ + 1·τ- and the bisector vanish; τ+ is used.
    let x = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    let got = tangent_by_spring(&x, [0.0, 1.0, 0.0]);
    // |τ+| - |τ-| = 0: no spring force, but finite.
    assert_eq!(got, vec![0.0, 0.0]);
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: None,
        climbing: None,
    };
    // τ̂ = ±(1, 0): the perpendicular force of ∇E = (3, 4) is (0, -4).
    let (f, n) = forces(&p, &x, &[0.0, 0.0, 3.0, 4.0, 0.0, 0.0], &[0.0, 1.0, 0.0]);
    assert_close("folded perpendicular force", &f[2..4], &[0.0, -4.0], 1e-6, 0.0);
    assert!((n[1] - 4.0).abs() < 1e-12);
}

// ---- the force terms, by hand -----------------------------------------------------------

#[test]
fn perpendicular_force_removes_the_tangential_gradient() {
    // Monotone up on the bent path: τ̂ = (0, 1). ∇E = (3, 4), no spring:
    // F⊥ = -∇E + (∇E·τ̂)τ̂ = (-3, -4) + 4 (0, 1) = (-3, 0), |F⊥| = 3.
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: None,
        climbing: None,
    };
    let (f, n) = forces(&p, &BENT, &[0.0, 0.0, 3.0, 4.0, 0.0, 0.0], &[0.0, 1.0, 2.0]);
    assert_eq!(&f[2..4], &[-3.0, 0.0]);
    assert_eq!(n, vec![0.0, 3.0, 0.0]);
}

#[test]
fn spring_force_is_eq_12() {
    // Eq. 12: k (|R2 - R1| - |R1 - R0|) τ̂ = 2.5 (2 - 1) (0, 1) = (0, 2.5), added to F⊥ = (-3, 0);
    // the returned norm is the perpendicular true force's alone.
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(2.5),
        climbing: None,
    };
    let (f, n) = forces(&p, &BENT, &[0.0, 0.0, 3.0, 4.0, 0.0, 0.0], &[0.0, 1.0, 2.0]);
    assert_eq!(&f[2..4], &[-3.0, 2.5]);
    assert_eq!(n[1], 3.0);
}

#[test]
fn climbing_image_inverts_the_tangential_force() {
    // Climbing image: F = -∇E + 2(∇E·τ̂)τ̂ = (-3, -4) + 8 (0, 1) = (-3, 4), no spring; its
    // norm is |∇E| = 5 (Henkelman, Uberuaga & Jónsson 2000).
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(100.0),
        climbing: Some(1),
    };
    let (f, n) = forces(&p, &BENT, &[0.0, 0.0, 3.0, 4.0, 0.0, 0.0], &[0.0, 1.0, 2.0]);
    assert_eq!(&f[2..4], &[-3.0, 4.0]);
    assert_eq!(n[1], 5.0);
}

#[test]
fn neb_forces_reject_bad_arguments() {
    let cpu = CpuBackend::new();
    let x = cpu.upload(&BENT).unwrap();
    let g = cpu.zeros(6).unwrap();
    let mut f = cpu.zeros(6).unwrap();
    let p = NebForceParams {
        pivots: 3,
        dim: 2,
        spring: Some(1.0),
        climbing: None,
    };
    let e = [0.0, 1.0, 2.0];
    let msg = |p: NebForceParams, e: &[f64], f: &mut CpuBuf| cpu.neb_forces(&p, &x, &g, e, f).unwrap_err().to_string();
    assert!(msg(NebForceParams { climbing: Some(0), ..p }, &e, &mut f).contains("climbing image 0"));
    assert!(msg(NebForceParams { climbing: Some(2), ..p }, &e, &mut f).contains("climbing image 2"));
    assert!(msg(
        NebForceParams {
            spring: Some(-1.0),
            ..p
        },
        &e,
        &mut f
    )
    .contains("spring constant -1"));
    assert!(msg(p, &[0.0, f64::NAN, 2.0], &mut f).contains("energy of pivot 1 is NaN"));
    assert!(msg(p, &[0.0, 1.0], &mut f).contains("energies"));
    assert!(msg(NebForceParams { pivots: 1, ..p }, &e, &mut f).contains("at least 2"));
    assert!(msg(p, &e, &mut cpu.zeros(4).unwrap()).contains("forces"));
}
