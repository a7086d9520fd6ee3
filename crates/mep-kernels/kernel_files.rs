//! The files of kernels/, for the build scripts of mep-kernels and mep-kernels-emu (both
//! include this file with `#[path]`), so that both find the same families.

use std::path::{Path, PathBuf};

/// kernels/ (canonical where it can be), from a crate directory two levels below the root;
/// tells cargo to rerun the build script when a file is added or removed there.
pub fn kernels_dir(manifest_dir: &Path) -> PathBuf {
    let dir = manifest_dir.join("../../kernels");
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    dir
}

/// `(stem, path)` of every `*.<ext>` file of `dir`, sorted by stem; each also reruns the build
/// script when changed. For `ext` "cu": the kernel families.
pub fn files(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut out: Vec<(String, PathBuf)> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            println!("cargo:rerun-if-changed={}", p.display());
            let stem = p.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
            (stem.unwrap_or_else(|| panic!("{} is not a UTF-8 name", p.display())), p)
        })
        .collect();
    out.sort();
    out
}
