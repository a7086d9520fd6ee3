//! neb.cu through the CPU emulation, each kernel version on launch shapes the backend never
//! picks, against `mep_tensor::CpuBackend`. The reference numbers are the CPU backend's
//! outputs (Henkelman & Jónsson 2000, eqs. 8–12) on the same paths.

use crate::common;

use common::{assert_close, data, i64_arg, launches, Dev, Launch, Version};
use mep_kernels::{Arg, Dims, Launcher};
use mep_kernels_emu::EmuLauncher;
use mep_tensor::prelude::*;
use mep_tensor::{CpuBackend, Lerp, NebForceParams};

#[test]
fn lerp_rows_and_copy_rows_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    for dim in [1usize, 37, 300] {
        let src = data(5 * dim, 41, -2.0, 2.0);
        let plan = [
            (0, 4, 0.0f32),
            (0, 4, 1.0),
            (1, 2, 0.25),
            (3, 3, 0.5),
            (4, 0, -0.3),
            (2, 1, 1.7),
        ];
        let lp: Vec<Lerp> = plan.iter().map(|&(a, b, t)| Lerp { a, b, t }).collect();
        let mut db = cpu.alloc(plan.len() * dim).unwrap();
        cpu.lerp_rows(dim, &cpu.upload(&src).unwrap(), &lp, &mut db).unwrap();
        let want = cpu.download(&db).unwrap();
        let srcm = d.upload(&src);
        let ab: Vec<i32> = plan.iter().flat_map(|&(a, b, _)| [a as i32, b as i32]).collect();
        let t: Vec<f32> = plan.iter().map(|p| p.2).collect();
        let (abm, tm) = (d.upload(&ab), d.upload(&t));
        for l in launches(Version::V1, plan.len() * dim) {
            let dstm = d.upload(&vec![f32::NAN; plan.len() * dim]);
            let args = [
                i64_arg(plan.len()),
                i64_arg(dim),
                d.ptr(&srcm),
                d.ptr(&abm),
                d.ptr(&tm),
                d.ptr(&dstm),
            ];
            d.run("lerp_rows_f32_v1", l, &args).unwrap();
            let dst: Vec<f32> = d.download(&dstm, plan.len() * dim);
            // Same f64 expression rounded once: bitwise equal; t = 0, 1 copy exactly.
            assert_close(&format!("lerp_rows {l:?} dim={dim}"), &dst, &want, 0.0, 0.0);
        }
        let dst0 = data(6 * dim, 42, -1.0, 1.0);
        let mut db = cpu.upload(&dst0).unwrap();
        cpu.copy_rows(dim, &cpu.upload(&src).unwrap(), 1, &mut db, 2, 3)
            .unwrap();
        let want = cpu.download(&db).unwrap();
        for l in launches(Version::V1, 3 * dim) {
            let dstm = d.upload(&dst0);
            // Rows 1..4 of src into rows 2..5 of dst.
            let args = [
                i64_arg(3 * dim),
                d.ptr_at::<f32>(&srcm, dim),
                d.ptr_at::<f32>(&dstm, 2 * dim),
            ];
            d.run("copy_rows_f32_v1", l, &args).unwrap();
            let dst: Vec<f32> = d.download(&dstm, 6 * dim);
            assert_close(&format!("copy_rows {l:?} dim={dim}"), &dst, &want, 0.0, 0.0);
        }
        // Checked by the backend, before the kernel could copy past the end.
        let b = EmuLauncher::backend();
        let mut dst = b.upload(&dst0).unwrap();
        assert!(
            b.copy_rows(dim, &b.upload(&src).unwrap(), 3, &mut dst, 0, 3).is_err(),
            "rows past src's end"
        );
    }
}

#[test]
fn row_distances_match_cpu() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    for (rows, dim) in [(1usize, 5usize), (2, 1), (7, 37), (4, 3000)] {
        let mut x = data(rows * dim, 43, -1.0, 1.0);
        if rows > 3 {
            let (a, b) = x.split_at_mut(2 * dim);
            b[..dim].copy_from_slice(&a[dim..]); // a zero-length segment
        }
        let want = cpu.row_distances(dim, rows, &cpu.upload(&x).unwrap()).unwrap();
        let xm = d.upload(&x);
        for v in Version::ALL {
            let pairs = rows - 1;
            let ls = match v {
                Version::V1 => vec![Launch::cover(rows, 32), Launch::cover(rows, 2)],
                // A block per pair.
                Version::V2 => vec![Launch::new(pairs as u32, 32), Launch::new(pairs as u32, 256)],
            };
            for l in ls {
                let got: Vec<f64> = if pairs == 0 {
                    Vec::new() // nothing to launch: the grid would be empty
                } else {
                    let out = d.upload(&vec![f64::NAN; pairs]);
                    let args = [i64_arg(rows), i64_arg(dim), d.ptr(&xm), d.ptr(&out)];
                    d.run(&v.of("row_distances_f32"), l, &args).unwrap();
                    d.download(&out, pairs)
                };
                assert_close(
                    &format!("row_distances {v:?} {l:?} rows={rows} dim={dim}"),
                    &got,
                    &want,
                    1e-12,
                    1e-12,
                );
            }
        }
    }
}

/// A wavy path of `p` pivots in `dim` dimensions with gradients; the energies are chosen per case.
fn path(p: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; p * dim];
    let noise = data(p * dim, seed, -0.3, 0.3);
    for i in 0..p {
        for j in 0..dim {
            x[i * dim + j] = i as f32 * (1.0 + 0.1 * j as f32) + noise[i * dim + j];
        }
    }
    (x, data(p * dim, seed + 1, -2.0, 2.0))
}

/// Energies over 7 pivots: up then down (maximum at 3, eqs. 9–11 on both sides), monotone
/// up (eq. 8), monotone down, flat (ties: the bisector), and a minimum with equal neighbours.
const ENERGIES: [[f64; 7]; 5] = [
    [0.0, 1.0, 2.0, 3.0, 2.5, 1.0, 0.5],
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
    [1.0; 7],
    [2.0, 1.0, 2.0, 0.5, 2.0, 0.0, 3.0],
];

/// Zero-length segments in a 7-pivot path: pivot 2 on pivot 1, pivot 5 on both its neighbours.
fn fold_segments(x: &mut [f32], dim: usize) {
    let r1 = x[dim..2 * dim].to_vec();
    x[2 * dim..3 * dim].copy_from_slice(&r1);
    let r4 = x[4 * dim..5 * dim].to_vec();
    x[5 * dim..6 * dim].copy_from_slice(&r4);
    x[6 * dim..7 * dim].copy_from_slice(&r4);
}

#[test]
fn neb_forces_match_cpu_on_every_tangent_case() {
    let (cpu, d) = (CpuBackend::new(), Dev::new());
    // One warp for the short rows, two (a multi-warp block reduction) for the long ones.
    for (dim, block) in [(1usize, 32u32), (45, 32), (700, 64)] {
        for (ci, e) in ENERGIES.iter().enumerate() {
            for fold in [false, true] {
                let (mut x, g) = path(7, dim, 50 + ci as u64);
                if fold {
                    fold_segments(&mut x, dim);
                }
                for (spring, climbing) in [(Some(2.0f32), None), (None, None), (Some(0.5), Some(3usize))] {
                    let p = NebForceParams {
                        pivots: 7,
                        dim,
                        spring,
                        climbing,
                    };
                    let mut fb = cpu.alloc(7 * dim).unwrap();
                    let want_norms = cpu
                        .neb_forces(&p, &cpu.upload(&x).unwrap(), &cpu.upload(&g).unwrap(), e, &mut fb)
                        .unwrap();
                    let want = cpu.download(&fb).unwrap();
                    {
                        let (xm, gm, em) = (d.upload(&x), d.upload(&g), d.upload(&with_climbing(e, climbing)));
                        let (fm, nm) = (d.upload(&vec![f32::NAN; 7 * dim]), d.upload(&[f64::NAN; 7]));
                        let args = [
                            i64_arg(7),
                            i64_arg(dim),
                            d.ptr(&xm),
                            d.ptr(&gm),
                            d.ptr(&em),
                            Arg::I32(spring.is_some() as i32),
                            Arg::F32(spring.unwrap_or(0.0)),
                            d.ptr(&fm),
                            d.ptr(&nm),
                        ];
                        // One block of `block` threads per pivot.
                        d.run("neb_forces_f32_v1", Launch::new(7, block), &args).unwrap();
                        let (f, norms): (Vec<f32>, Vec<f64>) = (d.download(&fm, 7 * dim), d.download(&nm, 7));
                        let tag = format!("energies #{ci} fold={fold} spring={spring:?} climbing={climbing:?} dim={dim} block={block}");
                        assert_close(&format!("forces {tag}"), &f, &want, 1e-6, 1e-5);
                        assert_close(&format!("norms {tag}"), &norms, &want_norms, 1e-9, 1e-9);
                    }
                }
            }
        }
    }
}

#[test]
fn neb_forces_reject_bad_arguments() {
    // Checked by the backend, before the kernel runs.
    let b = EmuLauncher::backend();
    let (x, g) = path(3, 4, 60);
    let (x, g) = (b.upload(&x).unwrap(), b.upload(&g).unwrap());
    let mut f = b.alloc(12).unwrap();
    let e = [0.0, 1.0, 0.0];
    let p = |spring, climbing| NebForceParams {
        pivots: 3,
        dim: 4,
        spring,
        climbing,
    };
    assert!(
        b.neb_forces(&p(Some(1.0), Some(0)), &x, &g, &e, &mut f).is_err(),
        "climbing endpoint"
    );
    assert!(
        b.neb_forces(&p(None, None), &x, &g, &[0.0, f64::NAN, 0.0], &mut f)
            .is_err(),
        "NaN energy"
    );
    assert!(
        b.neb_forces(&p(Some(-1.0), None), &x, &g, &e, &mut f).is_err(),
        "negative spring"
    );
}

/// The four launches of the v2 forces with rows cut into `chunk`-element chunks and blocks of
/// `block` threads (the backend fixes them at NEB_CHUNK and 256); returns forces and norms.
/// The energies as the force kernels read them: the P values, then the climbing image's
/// index (−1 for none).
fn with_climbing(e: &[f64], climbing: Option<usize>) -> Vec<f64> {
    let mut v = e.to_vec();
    v.push(climbing.map_or(-1.0, |c| c as f64));
    v
}

#[allow(clippy::too_many_arguments)]
fn forces_v2(
    d: &Dev,
    x: &[f32],
    g: &[f32],
    e: &[f64],
    dim: usize,
    spring: Option<f32>,
    climbing: Option<usize>,
    chunk: usize,
    block: u32,
) -> (Vec<f32>, Vec<f64>) {
    let p = e.len();
    let chunks = dim.div_ceil(chunk);
    let (xm, gm, em) = (d.upload(x), d.upload(g), d.upload(&with_climbing(e, climbing)));
    let (fm, nm) = (d.upload(&vec![f32::NAN; p * dim]), d.upload(&vec![f64::NAN; p]));
    let parts: Vec<_> = [2, 6, 1]
        .iter()
        .map(|k| d.upload(&vec![f64::NAN; p * chunks * k]))
        .collect();
    let grid = Dims::xyz(chunks as u32, p as u32, 1);
    let (np, dd, c) = (i64_arg(p), i64_arg(dim), i64_arg(chunk));
    let (m1, m2, m3) = (d.ptr(&parts[0]), d.ptr(&parts[1]), d.ptr(&parts[2]));
    let launch = |k: &str, grid: Dims, args: &[Arg]| d.0.launch(k, grid, Dims::x(block), args).unwrap();
    launch("neb_partials_f32_v2", grid, &[np, dd, c, d.ptr(&xm), m1]);
    launch(
        "neb_measure_f32_v2",
        grid,
        &[np, dd, c, d.ptr(&xm), d.ptr(&gm), d.ptr(&em), m1, m2],
    );
    let args = [
        np,
        dd,
        c,
        d.ptr(&xm),
        d.ptr(&gm),
        d.ptr(&em),
        m1,
        m2,
        Arg::I32(spring.is_some() as i32),
        Arg::F32(spring.unwrap_or(0.0)),
        d.ptr(&fm),
        m3,
    ];
    launch("neb_forces_f32_v2", grid, &args);
    let norms_grid = Dims::x(p.div_ceil(block as usize) as u32);
    launch(
        "neb_norms_f32_v2",
        norms_grid,
        &[np, Arg::I32(chunks as i32), m3, d.ptr(&nm)],
    );
    (d.download(&fm, p * dim), d.download(&nm, p))
}

fn cpu_forces(
    x: &[f32],
    g: &[f32],
    e: &[f64],
    dim: usize,
    spring: Option<f32>,
    climbing: Option<usize>,
) -> (Vec<f32>, Vec<f64>) {
    let cpu = CpuBackend::new();
    let p = NebForceParams {
        pivots: e.len(),
        dim,
        spring,
        climbing,
    };
    let mut fb = cpu.alloc(e.len() * dim).unwrap();
    let norms = cpu
        .neb_forces(&p, &cpu.upload(x).unwrap(), &cpu.upload(g).unwrap(), e, &mut fb)
        .unwrap();
    (cpu.download(&fb).unwrap(), norms)
}

#[test]
fn neb_forces_v2_match_cpu_on_every_tangent_case() {
    let d = Dev::new();
    // (dim, chunk, block): one chunk; three chunks, the last partial; three chunks of two
    // warps (on two energy profiles only: the emulation's blocks are slow).
    for (dim, chunk, block) in [(1usize, 64usize, 32u32), (45, 16, 32), (700, 256, 64)] {
        for (ci, e) in ENERGIES.iter().enumerate().filter(|(ci, _)| dim < 700 || ci % 3 == 0) {
            for fold in [false, true] {
                let (mut x, g) = path(7, dim, 50 + ci as u64);
                if fold {
                    fold_segments(&mut x, dim);
                }
                for (spring, climbing) in [(Some(2.0f32), None), (None, None), (Some(0.5), Some(3usize))] {
                    let (want, want_norms) = cpu_forces(&x, &g, e, dim, spring, climbing);
                    let (f, norms) = forces_v2(&d, &x, &g, e, dim, spring, climbing, chunk, block);
                    let tag = format!(
                        "energies #{ci} fold={fold} spring={spring:?} climbing={climbing:?} dim={dim} chunk={chunk}"
                    );
                    assert_close(&format!("forces v2 {tag}"), &f, &want, 1e-6, 1e-5);
                    assert_close(&format!("norms v2 {tag}"), &norms, &want_norms, 1e-9, 1e-9);
                }
            }
        }
    }
}

#[test]
fn neb_forces_v2_match_cpu_for_2_to_40_pivots() {
    let d = Dev::new();
    for (p, dim) in [(2usize, 37usize), (3, 37), (17, 50), (40, 37)] {
        let (x, g) = path(p, dim, 70 + p as u64);
        let e: Vec<f64> = data(p, 80 + p as u64, 0.0, 3.0).into_iter().map(f64::from).collect();
        for (spring, climbing) in [
            (Some(1.0f32), None),
            (None, None),
            (Some(0.5), (p > 2).then_some(p / 2)),
        ] {
            let (want, want_norms) = cpu_forces(&x, &g, &e, dim, spring, climbing);
            let (f, norms) = forces_v2(&d, &x, &g, &e, dim, spring, climbing, 16, 32);
            let tag = format!("P={p} dim={dim} spring={spring:?} climbing={climbing:?}");
            assert_close(&format!("forces v2 {tag}"), &f, &want, 1e-6, 1e-5);
            assert_close(&format!("norms v2 {tag}"), &norms, &want_norms, 1e-9, 1e-9);
        }
    }
}

#[test]
fn neb_forces_v2_are_the_same_bits_every_run() {
    let d = Dev::new();
    let (p, dim) = (9, 300);
    let (x, g) = path(p, dim, 90);
    let e: Vec<f64> = data(p, 91, 0.0, 3.0).into_iter().map(f64::from).collect();
    let first = forces_v2(&d, &x, &g, &e, dim, Some(1.0), Some(4), 64, 64);
    for _ in 0..3 {
        let again = forces_v2(&d, &x, &g, &e, dim, Some(1.0), Some(4), 64, 64);
        let bits = |r: &(Vec<f32>, Vec<f64>)| -> (Vec<u32>, Vec<u64>) {
            (
                r.0.iter().map(|v| v.to_bits()).collect(),
                r.1.iter().map(|v| v.to_bits()).collect(),
            )
        };
        assert_eq!(bits(&again), bits(&first));
    }
    // Through the backend, twice: the host fixes chunk and block, so the bits repeat.
    let b = EmuLauncher::backend();
    let params = NebForceParams {
        pivots: p,
        dim,
        spring: Some(1.0),
        climbing: Some(4),
    };
    let run = || {
        let mut f = b.alloc(p * dim).unwrap();
        let n = b
            .neb_forces(&params, &b.upload(&x).unwrap(), &b.upload(&g).unwrap(), &e, &mut f)
            .unwrap();
        (b.download(&f).unwrap(), n)
    };
    let (f1, n1) = run();
    let (f2, n2) = run();
    assert!(f1.iter().zip(&f2).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(n1.iter().zip(&n2).all(|(a, b)| a.to_bits() == b.to_bits()));
}
