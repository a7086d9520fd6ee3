//! The climbing-image NEB from minimum A to minimum C of the Müller–Brown potential, with each
//! optimiser and both spring kinds; prints where each run put the saddle point
//! (published: (-0.822002, 0.624313), E = -40.664844, Müller & Brown 1979).
//!
//! `cargo run -p mep-neb --example muller_brown`

use mep_neb::potentials::MullerBrown;
use mep_neb::{FireParams, Neb, NebConfig, Path, PathOptimizerConfig, Spring};
use mep_tensor::prelude::*;
use mep_tensor::CpuBackend;

fn main() -> mep_neb::Result<()> {
    let cpu = CpuBackend::new();
    let a = cpu.upload(&[-0.558224, 1.441726])?;
    let c = cpu.upload(&[-0.050011, 0.466694])?;
    let optimizers = [
        ("Adam lr 2e-3", PathOptimizerConfig::adam(2e-3)),
        (
            "SGD lr 1e-4 m 0.9",
            PathOptimizerConfig::Sgd {
                lr: 1e-4,
                momentum: 0.9,
            },
        ),
        ("FIRE (ASE defaults)", PathOptimizerConfig::Fire(FireParams::default())),
    ];
    println!("| spring | optimiser | stop | steps | saddle (x, y) | E | max force |");
    println!("|---|---|---|---:|---|---:|---:|");
    for spring in [Spring::Constant(10.0), Spring::Redistribute] {
        for (name, optimizer) in optimizers {
            let config = NebConfig {
                spring,
                optimizer,
                climbing_after: Some(0.15),
                max_steps: 4000,
                fmax: Some(0.05),
                ..NebConfig::default()
            };
            let mut neb = Neb::new(&cpu, config, Path::straight(&cpu, &a, &c, 2, 9)?)?;
            let out = neb.run(&cpu, &mut MullerBrown, |_| false, |_| {})?;
            let last = out.last.expect("at least one step");
            let top = last.climbing.expect("the climbing image is on");
            let p = neb.path().to_vec(&cpu)?;
            let (x, y) = (p[2 * top] as f64, p[2 * top + 1] as f64);
            println!(
                "| {spring:?} | {name} | {:?} | {} | ({x:.6}, {y:.6}) | {:.6} | {:.3} |",
                out.reason,
                out.steps,
                MullerBrown::energy(x, y),
                last.max_force
            );
        }
    }
    Ok(())
}
