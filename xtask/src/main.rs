//! `cargo xtask`: project chores that are more than one cargo command.
//!
//! - `cargo xtask bench [ARGS]`: builds the release timing binary and runs
//!   `benches/compare.py` (mep vs PyTorch side by side; needs python3 with torch).
//! - `cargo xtask fixtures`: regenerates the golden fixtures with `tools/make_fixtures.py`.
//! - `cargo xtask fetch [NAME ...]`: downloads entries of `weights/manifest.json` (all when
//!   none is named) into the cache (`$MEP_CACHE`, else `~/.cache/mep`), checksummed and
//!   resumable; prints each file's path.
//! - `cargo xtask reproduce [--preset demo|cifar|paper]`: the whole study end to end
//!   (train, path search, report) into `runs/reproduce/PRESET`; see `reproduce.rs`.

mod reproduce;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => run(Command::new("cargo").args(["build", "--release", "-p", "mep-benches"]))
            .and_then(|_| run(Command::new("python3").arg("benches/compare.py").args(&args[1..]))),
        Some("fixtures") => run(Command::new("python3").arg("tools/make_fixtures.py").args(&args[1..])),
        Some("fetch") => fetch(&args[1..]),
        Some("reproduce") => reproduce::Options::parse(&args[1..])
            .and_then(|opts| reproduce::reproduce(&root(), &opts, run))
            .map(|dir| println!("{}", dir.display())),
        _ => Err("usage: cargo xtask <reproduce [--preset demo|cifar|paper] | bench [--threads N --iters N --rounds N] | fixtures | fetch [NAME ...]>".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
