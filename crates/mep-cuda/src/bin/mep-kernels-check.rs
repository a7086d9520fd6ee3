//! Compiles every kernel family for sm_80 and sm_90 with ptxas' resource report and prints
//! registers, shared memory, stack and spills per kernel. Needs NVRTC, not a GPU.
//!
//! `--expect-nvrtc MAJOR.MINOR` makes it refuse to run with any other NVRTC (so a check meant
//! for one version cannot silently run another that the loader found first).
//!
//! Exits 1 on a compile error, on a spill in a hot kernel (the version the fast kernel set
//! runs: the highest version of each name, see `ptxas::is_hot`), or when ptxas reported nothing
//! for a hot kernel (so a change in the report's format cannot make the check pass vacuously;
//! the driver's compute cache, the one known cause of a missing report, is bypassed by
//! `ptxas::REPORT_OPTIONS`); 2 when NVRTC cannot be loaded, is not the expected version, or the
//! arguments are wrong.

use mep_cuda::{nvrtc, ptxas};
use rayon::prelude::*;
use std::process::ExitCode;

const ARCHS: &[&str] = &["sm_80", "sm_90"];

/// `(major, minor)` of `--expect-nvrtc MAJOR.MINOR`, if given.
fn parse_args(args: &[String]) -> Result<Option<(i32, i32)>, String> {
    match args {
        [] => Ok(None),
        [flag, v] if flag == "--expect-nvrtc" => v
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .map(Some)
            .ok_or_else(|| format!("--expect-nvrtc takes MAJOR.MINOR (e.g. 13.0), not `{v}`")),
        _ => Err(format!(
            "unexpected arguments {args:?}; usage: mep-kernels-check [--expect-nvrtc MAJOR.MINOR]"
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let expected = match parse_args(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mep-kernels-check: {e}");
            return ExitCode::from(2);
        }
    };
    if !nvrtc::available() {
        eprintln!(
            "mep-kernels-check: NVRTC (libnvrtc.so) could not be loaded: {}",
            nvrtc::INSTALL_HINT
        );
        return ExitCode::from(2);
    }
    match (nvrtc::version(), expected) {
        (Ok(got), Some(want)) if got != want => {
            eprintln!(
                "mep-kernels-check: NVRTC {}.{} was loaded, but {}.{} was asked for (--expect-nvrtc); \
                 check LD_LIBRARY_PATH and {}",
                got.0,
                got.1,
                want.0,
                want.1,
                nvrtc::LIB_DIR_ENV
            );
            return ExitCode::from(2);
        }
        (Ok((major, minor)), _) => println!("NVRTC {major}.{minor}"),
        (Err(e), _) => {
            eprintln!("mep-kernels-check: {e}");
            return ExitCode::from(2);
        }
    }
    // Each (arch, family) is its own NVRTC program; NVRTC allows concurrent compiles of
    // different programs, and ptxas on the tensor-core families is most of this check's
    // time, so the jobs go to rayon's threads (one per core). `collect` keeps job order, so
    // the table reads the same on any machine.
    let jobs: Vec<(&str, &str)> = ARCHS
        .iter()
        .flat_map(|&arch| nvrtc::families().into_iter().map(move |family| (arch, family)))
        .collect();
    let done: Vec<Checked> = jobs
        .par_iter()
        .map(|&(arch, family)| check_family(arch, family))
        .collect();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for checked in done {
        rows.extend(checked.rows);
        problems.extend(checked.problems);
    }
    print!("{}", ptxas::format_table(&rows));
    print_traffic();
    print_conv_work();
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

/// What compiling one family for one arch found: its ptxas rows and its problems.
struct Checked {
    rows: Vec<ptxas::KernelResources>,
    problems: Vec<String>,
}

fn check_family(arch: &str, family: &str) -> Checked {
    match nvrtc::compile(family, arch, ptxas::REPORT_OPTIONS) {
        Ok(c) => {
            let mut problems = Vec::new();
            let parsed = ptxas::parse_log(&c.log);
            let source = mep_kernels::sources::nvrtc_source(family).unwrap_or_default();
            let names: Vec<String> = mep_kernels::signature::kernels(&source)
                .into_iter()
                .map(|k| k.name)
                .collect();
            for k in &names {
                if ptxas::is_hot(k, &names) && !parsed.iter().any(|r| &r.kernel == k) {
                    problems.push(format!(
                        "{arch} {k}: no ptxas report (log format changed, or a cache NVRTC does \
                         not let --no-cache bypass?)"
                    ));
                }
            }
            Checked { rows: parsed, problems }
        }
        Err(e) => Checked {
            rows: Vec::new(),
            problems: vec![e.to_string()],
        },
    }
}

/// The NEB force kernels' traffic model at the study's shapes (it reports; it fails nothing).
fn print_traffic() {
    for (what, pivots, dim) in [
        ("input 3x224x224", 34, 3 * 224 * 224),
        ("layer1 256x56x56", 34, 256 * 56 * 56),
    ] {
        for (version, fast) in [("v1", false), ("v2", true)] {
            let t = mep_kernels::neb_forces_traffic(pivots, dim, fast);
            println!(
                "traffic: neb_forces {version} P={pivots} D={dim} ({what}): {:.1} MB per call, minimum {:.1} MB ({:.2}x)",
                t.bytes / 1e6,
                t.min_bytes / 1e6,
                t.bytes / t.min_bytes
            );
        }
    }
}

/// The conv kernels' work model at ResNet-50's 224 shapes: multiply-adds issued over the
/// ones needed, per kernel the fast set dispatches (v1 issues exactly those). It reports; it
/// fails nothing.
fn print_conv_work() {
    println!("work (multiply-adds issued / needed; v1 kernels 1.00x), ResNet-50 224x224 b32:");
    for (name, g) in mep_kernels::resnet50_224_convs() {
        let cells: Vec<String> = mep_kernels::conv_work(&g)
            .iter()
            .filter(|w| !w.kernel.ends_with("_v1"))
            .map(|w| format!("{} {:.2}x", w.kernel, w.issued / w.needed))
            .collect();
        println!("work: {name:<22} {}", cells.join("  "));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_expected_version_is_major_dot_minor() {
        assert_eq!(parse_args(&[]), Ok(None));
        assert_eq!(parse_args(&words(&["--expect-nvrtc", "13.0"])), Ok(Some((13, 0))));
        assert_eq!(parse_args(&words(&["--expect-nvrtc", "13.12"])), Ok(Some((13, 12))));
        for bad in ["13", "13.x", "newest", ""] {
            let e = parse_args(&words(&["--expect-nvrtc", bad])).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        assert!(parse_args(&words(&["--bogus"])).unwrap_err().contains("--bogus"));
    }
}
