//! `cargo xtask gpu-bundle`: everything `gpu-check` runs, built here, in one folder to carry to
//! a GPU machine that has no Rust toolchain (and no network to fetch crates).
//!
//! The folder holds `xtask` (this very binary), `bin/` (mep, gpu_speed, mep-kernels-check,
//! …, built with `--features cuda`), `tests/` (mep-cuda's test binaries), `bench/kernels`,
//! `tools/torch_speed.py`, `commit.json` (the commit it was built from and whether the tree
//! had uncommitted changes, which gpu-check's summary names) and a README. There: `./xtask gpu-check --prebuilt . --out DIR`.
//! Binaries have their debug info stripped (`strip --strip-debug`, when present) to stay
//! small; the CUDA libraries are loaded at run time, so nothing CUDA is linked in.

use crate::gpu_check::{artifacts, SourceCommit};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const USAGE: &str = "cargo xtask gpu-bundle [--out DIR]";

/// Builds and fills the bundle folder `out` (relative to `root` unless absolute); returns it.
pub fn gpu_bundle(root: &Path, args: &[String]) -> Result<PathBuf, String> {
    let mut out = PathBuf::from("target/gpu-bundle");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or(format!("--out needs a value; usage: {USAGE}"))?),
            other => return Err(format!("unknown argument `{other}`; usage: {USAGE}")),
        }
    }
    let out = if out.is_absolute() { out } else { root.join(out) };
    // The summary on the GPU machine names this commit: the folder gpu-check runs in there
    // may be any checkout, or none.
    let source = SourceCommit::of_checkout(root).ok_or_else(|| {
        format!(
            "{} is not a git checkout: the bundle could not name its commit",
            root.display()
        )
    })?;
    let _ = std::fs::remove_dir_all(&out);
    for sub in ["bin", "tests", "bench", "tools"] {
        std::fs::create_dir_all(out.join(sub)).map_err(|e| format!("{}: {e}", out.join(sub).display()))?;
    }
    let cargo = |args: &[&str]| -> Result<Vec<(String, PathBuf, bool)>, String> {
        eprintln!("xtask: cargo {}", args.join(" "));
        let o = Command::new("cargo")
            .args(args)
            .arg("--message-format=json-render-diagnostics")
            .current_dir(root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cargo could not be started: {e}"))?;
        if !o.status.success() {
            return Err(format!("cargo {} failed ({})", args.join(" "), o.status));
        }
        Ok(artifacts(&String::from_utf8_lossy(&o.stdout)))
    };
    let features = ["--features", "mep-cuda/cuda,mep-benches/cuda,mep/cuda"];
    let pkgs = ["-p", "mep-cuda", "-p", "mep-benches", "-p", "mep"];
    let mut copied = Vec::new();
    let bins = cargo(&[&["build", "--release", "--bins"][..], &pkgs, &features].concat())?;
    for (name, path, _) in bins {
        copied.push(copy(&path, &out.join("bin").join(name))?);
    }
    let tests = cargo(&["test", "--release", "--no-run", "-p", "mep-cuda", "--features", "cuda"])?;
    for (name, path, _) in tests.into_iter().filter(|t| t.2) {
        copied.push(copy(&path, &out.join("tests").join(name))?);
    }
    let bench = cargo(&["bench", "--no-run", "-p", "mep-benches", "--bench", "kernels"])?;
    if let Some((_, path, _)) = bench.into_iter().find(|b| b.0 == "kernels") {
        copied.push(copy(&path, &out.join("bench").join("kernels"))?);
    }
    let me = std::env::current_exe().map_err(|e| format!("where is xtask itself? {e}"))?;
    copied.push(copy(&me, &out.join("xtask"))?);
    source.write_to_bundle(&out)?;
    let script = root.join("tools/torch_speed.py");
    std::fs::copy(&script, out.join("tools/torch_speed.py")).map_err(|e| format!("{}: {e}", script.display()))?;
    std::fs::write(
        out.join("README.txt"),
        "Made by `cargo xtask gpu-bundle` for a GPU machine without Rust. Run, from this folder:\n\n  \
         ./xtask gpu-check --prebuilt . --out <DIR>\n\nIt needs the NVIDIA driver, libnvrtc.so.13 (python3's \
         nvidia/cu13/lib, the CUDA toolkit, or MEP_NVRTC_LIB_DIR) and, for the speed table, PyTorch.\n",
    )
    .map_err(|e| e.to_string())?;
    let bytes: u64 = copied.iter().sum();
    println!(
        "{} ({} files, {:.1} MiB)",
        out.display(),
        copied.len(),
        bytes as f64 / (1 << 20) as f64
    );
    Ok(out)
}

/// Copies `from` to `to`, strips its debug info when `strip` is installed, and returns its
/// size in bytes.
fn copy(from: &Path, to: &Path) -> Result<u64, String> {
    std::fs::copy(from, to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
    // Without `strip` the bundle is only larger, so its absence is not an error.
    let _ = Command::new("strip").arg("--strip-debug").arg(to).status();
    std::fs::metadata(to)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", to.display()))
}
