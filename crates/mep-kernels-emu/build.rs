//! Compiles kernels/emu/*.cpp — each includes kernels/emu/cuda_emu.h and one kernels/<family>.cu —
//! with the system C++ compiler, so that the crate runs the very source NVRTC compiles.

use std::path::PathBuf;
use std::process::Command;

/// The kernel families, one kernels/<family>.cu and one kernels/emu/<family>.cpp each.
const FAMILIES: &[&str] = &[
    "elementwise",
    "reduce",
    "optim",
    "softmax",
    "neb",
    "conv",
    "gemm",
    "bn",
    "pool",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kernels = manifest.join("../../kernels");
    let emu = kernels.join("emu");
    println!("cargo:rerun-if-changed={}", kernels.display());
    for entry in std::fs::read_dir(&kernels)
        .into_iter()
        .chain(std::fs::read_dir(&emu))
        .flatten()
        .flatten()
    {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .opt_level(2)
        .flag("-pthread")
        .flag("-fno-strict-aliasing");
    let compiler = build.get_compiler();
    let probe = Command::new(compiler.path()).arg("--version").output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        panic!(
            "mep-kernels-emu needs a C++20 compiler to run kernels/*.cu on the CPU, and `{}` could not be run \
             ({}). Install g++ 11 or later (Debian/Ubuntu: `apt-get install g++`) or point CXX at one.",
            compiler.path().display(),
            match &probe {
                Ok(o) => format!("exit status {}", o.status),
                Err(e) => e.to_string(),
            }
        );
    }
    for family in FAMILIES {
        build.file(emu.join(format!("{family}.cpp")));
    }
    build.compile("mep_kernels_emu");
}
