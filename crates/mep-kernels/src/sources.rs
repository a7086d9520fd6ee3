//! The kernel sources, embedded at build time, as NVRTC compiles them: each family's `.cu`
//! with `common.cuh` pasted in place of its `#include` (NVRTC is given no include path, so a
//! compiled kernel depends on nothing outside this binary).

// FAMILIES and HEADERS: one entry per kernels/*.cu and kernels/*.cuh (see build.rs), so a
// new family is a new .cu file.
include!(concat!(env!("OUT_DIR"), "/sources.rs"));

/// kernels/common.cuh.
pub const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// The source of `family` ready for NVRTC (the [`HEADERS`] it includes pasted in), or `None`
/// for an unknown family.
///
/// ```
/// let src = mep_kernels::sources::nvrtc_source("linear").unwrap();
/// assert!(src.contains("block_sum") && src.contains("tile_mma") && !src.contains("#include"));
/// ```
pub fn nvrtc_source(family: &str) -> Option<String> {
    let (_, src) = FAMILIES.iter().find(|(f, _)| *f == family)?;
    let mut out = src.to_string();
    for (name, text) in HEADERS {
        out = out.replace(&format!("#include \"{name}\""), &text.replace("#pragma once", ""));
    }
    Some(out)
}

/// The names of the `extern "C" __global__` kernels of a source, in order of appearance
/// (see [`crate::signature::kernels`], which also reads their parameters).
///
/// ```
/// let src = "extern \"C\" __global__ void a_v1(int n) {}\n\
///            extern \"C\" __global__ void __launch_bounds__(256) b_v2(int n) {}";
/// let names = mep_kernels::sources::kernel_names(src);
/// assert_eq!(names, vec!["a_v1".to_string(), "b_v2".to_string()]);
/// ```
pub fn kernel_names(src: &str) -> Vec<String> {
    crate::signature::kernels(src).into_iter().map(|k| k.name).collect()
}
