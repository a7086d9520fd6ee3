//! Compiles every kernel family for sm_80 and sm_90 with ptxas' resource report and prints
//! registers, shared memory, stack and spills per kernel. Needs NVRTC, not a GPU.
//!
//! Exits 1 on a compile error, on a spill in a hot kernel (the version the fast kernel set
//! runs: the highest version of each name, see `ptxas::is_hot`), or when ptxas reported nothing for a hot kernel (so a change in the report's
//! format cannot make the check pass vacuously); 2 when NVRTC cannot be loaded.

use mep_cuda::{nvrtc, ptxas};
use std::process::ExitCode;

const ARCHS: &[&str] = &["sm_80", "sm_90"];

fn main() -> ExitCode {
    if !nvrtc::available() {
        eprintln!(
            "mep-kernels-check: NVRTC (libnvrtc.so) could not be loaded: {}",
            nvrtc::INSTALL_HINT
        );
        return ExitCode::from(2);
    }
    if let Ok((major, minor)) = nvrtc::version() {
        println!("NVRTC {major}.{minor}");
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for arch in ARCHS {
        for family in nvrtc::families() {
            match nvrtc::compile(family, arch, &["-Xptxas=-v"]) {
                Ok(c) => {
                    let parsed = ptxas::parse_log(&c.log);
                    let source = mep_kernels::sources::nvrtc_source(family).unwrap_or_default();
                    let names: Vec<String> = mep_kernels::signature::kernels(&source)
                        .into_iter()
                        .map(|k| k.name)
                        .collect();
                    for k in &names {
                        if ptxas::is_hot(k, &names) && !parsed.iter().any(|r| &r.kernel == k) {
                            problems.push(format!("{arch} {k}: no ptxas report (log format changed?)"));
                        }
                    }
                    rows.extend(parsed);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    print!("{}", ptxas::format_table(&rows));
    let names: Vec<&str> = rows.iter().map(|r| r.kernel.as_str()).collect();
    for r in rows.iter().filter(|r| r.spills() && ptxas::is_hot(&r.kernel, &names)) {
        problems.push(format!(
            "{} {}: hot kernel spills ({} bytes stored, {} loaded)",
            r.arch, r.kernel, r.spill_store_bytes, r.spill_load_bytes
        ));
    }
    if problems.is_empty() {
        println!("ok: {} kernels, no spills in hot kernels", rows.len());
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        ExitCode::FAILURE
    }
}
