//! Where libnvrtc is looked for when the dynamic loader's search path lacks it: the one list
//! of places for the CUDA backend (which loads the library from there) and for xtask's
//! `kernels-check` and `gpu-check` (which put the folder on `LD_LIBRARY_PATH`).
//!
//! Standard library only, because xtask includes this file (`#[path]`) rather than depend on
//! mep-cuda, whose mep-kernels would make every xtask command build the tensor, network and
//! conformance crates first.

use std::path::{Path, PathBuf};

/// The library the CUDA backend's cudarc (`cuda-13000`) loads by name.
pub const LIB: &str = "libnvrtc.so.13";

/// A directory to load libnvrtc from when the dynamic loader's search path lacks it.
pub const LIB_DIR_ENV: &str = "MEP_NVRTC_LIB_DIR";

/// Where NVIDIA's CUDA 13 wheels (`nvidia-cuda-nvrtc`, which PyTorch installs) put their
/// libraries, below a site-packages folder.
pub const WHEEL_LIB: &str = "nvidia/cu13/lib";

/// Directories where libnvrtc usually is but the loader may not look, in order, each with
/// where it comes from (for messages): `$MEP_NVRTC_LIB_DIR`; the CUDA toolkit's
/// (`$CUDA_PATH`, `$CUDA_HOME`, /usr/local/cuda); NVIDIA's wheel in the Python environments
/// on PATH and in `$VIRTUAL_ENV` (`<prefix>/lib/python3.*/site-packages/nvidia/cu13/lib`).
pub fn candidate_dirs() -> Vec<(PathBuf, &'static str)> {
    let mut dirs: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(d) = std::env::var_os(LIB_DIR_ENV) {
        dirs.push((d.into(), "$MEP_NVRTC_LIB_DIR"));
    }
    const TOOLKIT: &str = "the CUDA toolkit";
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(d) = std::env::var_os(var) {
            dirs.push((PathBuf::from(d).join("lib64"), TOOLKIT));
        }
    }
    dirs.push(("/usr/local/cuda/lib64".into(), TOOLKIT));
    dirs.push(("/usr/local/cuda/targets/x86_64-linux/lib".into(), TOOLKIT));
    let mut prefixes: Vec<PathBuf> = std::env::var_os("VIRTUAL_ENV").map(Into::into).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        for bin in std::env::split_paths(&path).filter(|d| d.join("python3").exists()) {
            prefixes.extend(bin.parent().map(Path::to_path_buf));
        }
    }
    for lib in prefixes.iter().map(|p| p.join("lib")) {
        for entry in std::fs::read_dir(&lib).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("python3") {
                dirs.push((
                    entry.path().join("site-packages").join(WHEEL_LIB),
                    "a Python environment's site-packages",
                ));
            }
        }
    }
    dirs
}

/// The libnvrtc shared objects in `dir` (not its builtins), the versioned names first
/// (libnvrtc.so.13 before libnvrtc.so), as cudarc asks for the versioned one; empty when
/// `dir` cannot be read.
pub fn libs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc.so") && !n.contains("builtins"))
        })
        .collect();
    libs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    libs
}
