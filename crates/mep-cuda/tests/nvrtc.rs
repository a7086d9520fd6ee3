//! NVRTC compiles every kernel family (no GPU needed). Skips, with a note, when libnvrtc
//! cannot be loaded or the crate was built without the `cuda` feature.

use mep_cuda::cache::KernelCache;
use mep_cuda::{nvrtc, KernelError};

fn nvrtc_or_skip() -> bool {
    if nvrtc::available() {
        return true;
    }
    eprintln!(
        "skipped: NVRTC cannot be loaded{} ({})",
        if cfg!(feature = "cuda") {
            ""
        } else {
            " (built without the `cuda` feature)"
        },
        nvrtc::INSTALL_HINT
    );
    false
}

#[test]
fn every_family_compiles_to_a_cubin_for_sm80_and_sm90() {
    if !nvrtc_or_skip() {
        return;
    }
    for arch in ["sm_80", "sm_90"] {
        for family in nvrtc::families() {
            let c = nvrtc::compile(family, arch, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(c.cubin.starts_with(b"\x7fELF"), "{family} {arch}: not an ELF CUBIN");
        }
    }
}

#[test]
fn a_compile_error_carries_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let e = nvrtc::compile_source(
        "broken",
        "extern \"C\" __global__ void k(int n) { undeclared = n; }",
        "sm_90",
        &[],
    )
    .unwrap_err();
    match &e {
        KernelError::Compile { family, arch, log } => {
            assert_eq!((family.as_str(), arch.as_str()), ("broken", "sm_90"));
            assert!(log.contains("undeclared"), "log without the culprit: {log}");
        }
        other => panic!("expected a Compile error, got {other:?}"),
    }
    assert!(e.to_string().contains("broken.cu"), "{e}");
}

#[test]
fn ptxas_report_parses_for_a_real_compile() {
    if !nvrtc_or_skip() {
        return;
    }
    let c = nvrtc::compile("reduce", "sm_90", &["-Xptxas=-v"]).unwrap();
    let rows = mep_cuda::ptxas::parse_log(&c.log);
    let dot = rows
        .iter()
        .find(|r| r.kernel == "dot_f32_v2")
        .expect("dot_f32_v2 in the report");
    assert_eq!(dot.arch, "sm_90");
    assert!(dot.registers > 0 && dot.smem_bytes > 0, "{dot:?}");
}

#[test]
fn the_cache_stores_and_replaces_refused_entries() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mep-cuda-nvrtc-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = KernelCache::at(&dir);
    let elf = |b: &[u8]| -> Result<usize, KernelError> {
        if b.starts_with(b"\x7fELF") {
            Ok(b.len())
        } else {
            Err(KernelError::Memory("not a CUBIN".into()))
        }
    };
    let first = nvrtc::load_cached(&cache, "elementwise", "sm_90", &[], elf).unwrap();
    let entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = &entries[0];
    assert!(
        name.starts_with("elementwise-sm_90-") && name.ends_with(".cubin"),
        "{name}"
    );

    // A hit returns the stored CUBIN.
    assert_eq!(
        nvrtc::load_cached(&cache, "elementwise", "sm_90", &[], elf).unwrap(),
        first
    );
    // An entry the loader refuses is recompiled and overwritten.
    cache.write(name, b"not a cubin");
    assert_eq!(
        nvrtc::load_cached(&cache, "elementwise", "sm_90", &[], elf).unwrap(),
        first
    );
    assert!(cache.read(name).unwrap().starts_with(b"\x7fELF"));
    // Another arch is another entry.
    nvrtc::load_cached(&cache, "elementwise", "sm_80", &[], elf).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
