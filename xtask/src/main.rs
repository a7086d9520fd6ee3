//! `cargo xtask`: project chores that are more than one cargo command.
//!
//! - `cargo xtask bench [ARGS]`: builds the release timing binary and runs
//!   `benches/compare.py` (mep vs PyTorch side by side; needs python3 with torch).
//! - `cargo xtask fixtures`: regenerates the golden fixtures with `tools/make_fixtures.py`.
//! - `cargo xtask fetch [NAME ...]`: downloads entries of `weights/manifest.json` (all when
//!   none is named) into the cache (`$MEP_CACHE`, else `~/.cache/mep`), checksummed and
//!   resumable; prints each file's path.
//! - `cargo xtask reproduce [--preset demo|cifar|paper]`: the whole study end to end
//!   (train, path search, report) into `runs/reproduce/PRESET`; see `reproduce.rs`. The demo
//!   uses the model shipped in `weights/demo` unless `--retrain` is given.
//! - `cargo xtask demo-weights`: retrains that model with the demo's recipe and rewrites the
//!   shipped files; see `shipped.rs`.
//! - `cargo xtask kernels-check [--nvrtc-version 13.MINOR|newest]`: compiles every kernel family
//!   with NVRTC for sm_80 and sm_90 and prints registers, shared memory and spills
//!   (`mep-kernels-check`; no GPU needed). Finds libnvrtc.so.13, installing NVIDIA's wheel into
//!   `target/nvrtc` with pip when there is none; with `--nvrtc-version`, uses that release's
//!   wheel (pip-installed into `target/nvrtc-VERSION`) and checks that it is the one loaded;
//!   see `nvrtc.rs`.
//! - `cargo xtask gpu-check [--out DIR] [--budget SECS] [--only STEP,...]`: on a machine with
//!   an NVIDIA GPU, the whole GPU side in one run of under 8 minutes: build, conformance
//!   suite, kernels-check, the speed table against PyTorch, a `mep connect --device cuda`
//!   smoke run and compute-sanitizer; writes `target/gpu-check/summary.md`; see `gpu_check/mod.rs`.

mod clock;
mod gpu_bundle;
mod gpu_check;
mod nvrtc;
mod proc;
mod reproduce;
mod shipped;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `out` (relative to the workspace `root` unless absolute), created: the output folder of
/// `reproduce` and `gpu-check`.
fn out_dir(root: &std::path::Path, out: &std::path::Path) -> Result<PathBuf, String> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        root.join(out)
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// Command-line words for the option parsers' tests.
#[cfg(test)]
fn words(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    match cmd.current_dir(root()).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{shown} exited with {s}")),
        Err(e) => Err(format!("could not start {shown}: {e}")),
    }
}

fn fetch(names: &[String]) -> Result<(), String> {
    let manifest = mep_fetch::Manifest::builtin();
    let cache = mep_fetch::cache_dir();
    let entries: Vec<&mep_fetch::Entry> = if names.is_empty() {
        manifest.entries().iter().collect()
    } else {
        names
            .iter()
            .map(|n| manifest.get(n).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    for entry in entries {
        let path = mep_fetch::fetch(entry, &cache, &mep_fetch::FetchOptions::default()).map_err(|e| e.to_string())?;
        println!("{}: {}", entry.name, path.display());
    }
    Ok(())
}

/// `kernels-check`'s own option, `--nvrtc-version 13.MINOR|newest`, split from the arguments
/// passed on to `mep-kernels-check`.
fn kernels_check_options(args: &[String]) -> Result<(Option<nvrtc::Wanted>, Vec<String>), String> {
    let mut wanted = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--nvrtc-version" {
            let v = it
                .next()
                .ok_or("--nvrtc-version needs a value: 13.MINOR (e.g. 13.0) or newest")?;
            wanted = Some(nvrtc::Wanted::parse(v)?);
        } else {
            rest.push(a.clone());
        }
    }
    Ok((wanted, rest))
}

/// `mep-kernels-check` (built with `--features cuda`) with libnvrtc on `LD_LIBRARY_PATH`; its
/// output and exit status are passed through. With `--nvrtc-version`, that release's wheel
/// (installed into `target/nvrtc-VERSION` when missing) and nothing else: the binary is told
/// the version to expect and refuses any other.
fn kernels_check(args: &[String]) -> Result<ExitCode, String> {
    let (wanted, mut rest) = kernels_check_options(args)?;
    let dir = match &wanted {
        Some(w) => {
            let inst = nvrtc::install_version(&root(), w)?;
            eprintln!(
                "xtask: {} {} from {} (--nvrtc-version {}; delete that folder to reinstall)",
                nvrtc::LIB,
                inst.version,
                inst.lib_dir.display(),
                match w {
                    nvrtc::Wanted::Newest => "newest".to_string(),
                    nvrtc::Wanted::Minor(a, b) => format!("{a}.{b}"),
                }
            );
            rest.extend(["--expect-nvrtc".to_string(), inst.major_minor()]);
            inst.lib_dir
        }
        None => {
            let found = nvrtc::locate(&root(), true)?;
            eprintln!("xtask: {} from {} ({})", nvrtc::LIB, found.dir.display(), found.how);
            found.dir
        }
    };
    let mut cmd = Command::new("cargo");
    cmd.args([
        "run",
        "--release",
        "-p",
        "mep-cuda",
        "--features",
        "cuda",
        "--bin",
        "mep-kernels-check",
        "--",
    ])
    .args(&rest)
    .env("LD_LIBRARY_PATH", nvrtc::library_path(&dir))
    .env(nvrtc::ENV, &dir)
    .current_dir(root());
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().map_err(|e| format!("could not start cargo: {e}"))?;
    if !status.success() {
        eprintln!("xtask: mep-kernels-check: {}", proc::exit_text(status));
    }
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

const USAGE: &str = "usage: cargo xtask <command>
  reproduce [--preset demo|cifar|paper] [--out DIR] [--pairs N] [--threads N] [--device cpu|cuda|auto] [--retrain] [--quiet]
                                                the demo uses the shipped weights/demo model unless --retrain
  demo-weights                                  retrain the demo's shipped model with its recipe and
                                                rewrite weights/demo/resnet20-synthetic.{safetensors,json}
  bench [--threads N --iters N --rounds N]      mep vs PyTorch on the CPU (benches/compare.py)
  fixtures                                      regenerate the golden fixtures
  fetch [NAME ...]                              download weights/data of weights/manifest.json
  kernels-check [--nvrtc-version 13.MINOR|newest]
                                                NVRTC-compile every kernel for sm_80/sm_90: registers,
                                                shared memory, spills (no GPU needed; finds or
                                                pip-installs libnvrtc; MEP_NVRTC_LIB_DIR overrides;
                                                --nvrtc-version: that release from PyPI into
                                                target/nvrtc-VERSION, and only it)
  gpu-check [--out DIR] [--budget SECS] [--iters N] [--only|--skip STEP,...] [--force] [--verbose]
                                                the whole GPU check on a GPU machine (< 8 min): build,
                                                conformance, kernels-check, speed vs PyTorch, smoke,
                                                memcheck; writes target/gpu-check/summary.md;
                                                --prebuilt BUNDLE uses gpu-bundle's binaries
  gpu-bundle [--out DIR]                        build here everything gpu-check runs, into one folder
                                                (default target/gpu-bundle) for a GPU machine
                                                without Rust: ./xtask gpu-check --prebuilt .";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = |r: Result<(), String>| r.map(|()| ExitCode::SUCCESS);
    let result = match args.first().map(String::as_str) {
        Some("bench") => done(
            run(Command::new("cargo").args(["build", "--release", "-p", "mep-benches"]))
                .and_then(|_| run(Command::new("python3").arg("benches/compare.py").args(&args[1..]))),
        ),
        Some("fixtures") => done(run(Command::new("python3")
            .arg("tools/make_fixtures.py")
            .args(&args[1..]))),
        Some("fetch") => done(fetch(&args[1..])),
        Some("reproduce") => done(
            reproduce::Options::parse(&args[1..])
                .and_then(|opts| reproduce::reproduce(&root(), &opts, run))
                .map(|dir| println!("{}", dir.display())),
        ),
        Some("demo-weights") => done(
            run(Command::new("cargo").args(["build", "--release", "-p", "mep"]))
                .and_then(|_| {
                    let recipe = reproduce::train_command(&reproduce::PRESETS[0]);
                    shipped::make(&root(), recipe, &reproduce::mep_binary(&root()), run)
                })
                .map(|p| println!("{}", p.display())),
        ),
        Some("kernels-check") => kernels_check(&args[1..]),
        Some("gpu-check") => done(gpu_check::Options::parse(&args[1..]).and_then(|opts| {
            // A bundle is its own root: it holds tools/ and the binaries.
            let root = opts.prebuilt.clone().unwrap_or_else(root);
            gpu_check::gpu_check(&root, &opts).map(|_| ())
        })),
        Some("gpu-bundle") => done(gpu_bundle::gpu_bundle(&root(), &args[1..]).map(|_| ())),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_check_takes_its_nvrtc_version_and_passes_the_rest_on() {
        let (w, rest) = kernels_check_options(&words(&["--nvrtc-version", "13.0", "--x"])).unwrap();
        assert_eq!((w, rest), (Some(nvrtc::Wanted::Minor(13, 0)), words(&["--x"])));
        let (w, rest) = kernels_check_options(&words(&["--nvrtc-version", "newest"])).unwrap();
        assert_eq!((w, rest.len()), (Some(nvrtc::Wanted::Newest), 0));
        assert_eq!(kernels_check_options(&[]).unwrap(), (None, Vec::new()));
        assert!(kernels_check_options(&words(&["--nvrtc-version"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(kernels_check_options(&words(&["--nvrtc-version", "12.8"])).is_err());
    }
}
