//! The seeded smoke run of every fuzz target, for CI: each target gets its seed corpus
//! (`fuzz/seeds/<target>/`), the inputs that once broke it (`fuzz/regressions/<target>/`),
//! then a fixed number of mutants drawn from a fixed seed. Same inputs on every machine;
//! no time limit is part of the verdict. A panic names the target and the input's
//! number and is reproduced by rerunning the test; `MEP_FUZZ_SMOKE_ITERS` raises the count.
//!
//! Longer, coverage-guided runs use `cargo fuzz` in `fuzz/` (see its README).

use mep_fuzz::mutate::{mutate, SplitMix};
use mep_fuzz::{Target, TARGETS};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// Mutants per target. Measured on a loaded 2-core machine: all eight targets together
/// take about 2.5 s for this many, `cifar_tar` (it gzips 45 kB per input) about 1.3 s.
const ITERATIONS: usize = 2000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted by name so the run is the same everywhere.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("readable seed folder").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("readable seed"))
        })
        .collect();
    out.sort();
    out
}

/// Runs `target` on `input`, turning a panic into a message that says how to replay it.
fn run_one(name: &str, target: Target, what: &str, input: &[u8]) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(non-string panic)");
        let keep = std::env::temp_dir().join(format!("mep-fuzz-{name}-crash"));
        let _ = std::fs::write(&keep, input);
        panic!(
            "fuzz target `{name}` panicked on {what} ({} bytes, saved to {}): {msg}",
            input.len(),
            keep.display()
        );
    }
}

fn smoke(name: &str) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).expect("a known target").1;
    let seeds = files(&fuzz_dir().join("seeds").join(name));
    assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/{name}");
    for (file, bytes) in &seeds {
        run_one(name, target, &format!("seed {file}"), bytes);
    }
    for (file, bytes) in files(&fuzz_dir().join("regressions").join(name)) {
        run_one(name, target, &format!("regression {file}"), &bytes);
    }
    let pool: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let iterations = std::env::var("MEP_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ITERATIONS);
    // One stream per target, so adding a target changes no other target's inputs.
    let mut rng = SplitMix::new(
        name.bytes()
            .fold(0x6d65_7066_757a_7a00, |h, b| h.rotate_left(8) ^ b as u64),
    );
    for k in 0..iterations {
        let seed = &pool[k % pool.len()];
        let input = mutate(seed, &mut rng, &pool);
        run_one(name, target, &format!("mutant {k}"), &input);
    }
}

#[test]
fn smoke_checkpoint() {
    smoke("checkpoint");
}

#[test]
fn smoke_cifar_tar() {
    smoke("cifar_tar");
}

#[test]
fn smoke_cifar_archive() {
    smoke("cifar_archive");
}

#[test]
fn smoke_image() {
    smoke("image");
}

#[test]
fn smoke_pairs_file() {
    smoke("pairs_file");
}

#[test]
fn smoke_results() {
    smoke("results");
}

#[test]
fn smoke_certificates() {
    smoke("certificates");
}

#[test]
fn smoke_manifest() {
    smoke("manifest");
}

#[test]
fn every_target_has_a_smoke_test_and_seeds() {
    let src = include_str!("smoke.rs");
    for (name, _) in TARGETS {
        assert!(src.contains(&format!("smoke(\"{name}\")")), "no smoke test for {name}");
        assert!(
            fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")).is_file(),
            "no fuzz/fuzz_targets/{name}.rs"
        );
    }
}
