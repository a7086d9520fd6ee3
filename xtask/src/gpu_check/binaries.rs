//! The binaries the steps run: built here with the CUDA feature, or taken from a
//! `cargo xtask gpu-bundle` (`--prebuilt`), and the test counts cargo prints.

use super::*;
use crate::proc::Status;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What the build step produced.
#[derive(Default)]
pub(crate) struct Built {
    /// Binary name → path.
    pub(crate) bins: Vec<(String, PathBuf)>,
    /// mep-cuda's test binaries.
    pub(crate) tests: Vec<PathBuf>,
    /// The criterion bench of single kernels, when `kernel-rates` runs.
    pub(crate) kernel_bench: Option<PathBuf>,
    /// Binaries of a `gpu-bundle`: the tests run as binaries, not through cargo.
    pub(crate) prebuilt: bool,
}

impl Built {
    pub(crate) fn bin(&self, name: &str) -> Option<&Path> {
        self.bins.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_path())
    }
}

/// The crate features of each workspace package, from `cargo metadata`.
pub(crate) fn package_features(root: &Path) -> Vec<(String, Vec<String>)> {
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .output();
    let Ok(o) = out else { return Vec::new() };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
        return Vec::new();
    };
    v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let features = p["features"]
                .as_object()
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default();
            (name, features)
        })
        .collect()
}

/// The executables cargo reports in `--message-format=json` output: (name, path, is a test).
pub(crate) fn artifacts(json_lines: &str) -> Vec<(String, PathBuf, bool)> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter_map(|v| {
            let exe = v["executable"].as_str()?;
            let name = v["target"]["name"].as_str()?.to_string();
            Some((name, PathBuf::from(exe), v["profile"]["test"].as_bool() == Some(true)))
        })
        .collect()
}

/// The binaries of a `gpu-bundle` folder (see [`crate::gpu_bundle`]).
pub(crate) fn prebuilt(c: &mut Check, dir: &Path) -> Built {
    let t = Instant::now();
    let list = |sub: &str| -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        v.sort();
        v
    };
    let built = Built {
        bins: list("bin"),
        tests: list("tests").into_iter().map(|(_, p)| p).collect(),
        kernel_bench: list("bench").into_iter().find(|(n, _)| n == "kernels").map(|(_, p)| p),
        prebuilt: true,
    };
    let status = if built.bins.is_empty() || built.tests.is_empty() {
        Status::Failed(format!(
            "{}: no bin/ or tests/ (make it with `cargo xtask gpu-bundle`)",
            dir.display()
        ))
    } else {
        Status::Passed
    };
    let note = format!(
        "prebuilt in {}: {} binaries, {} test binaries",
        dir.display(),
        built.bins.len(),
        built.tests.len()
    );
    c.record("build", status, t.elapsed().as_secs_f64(), note);
    built
}

pub(crate) fn build(c: &mut Check, kernel_bench: bool) -> Built {
    let mut built = Built::default();
    let features = package_features(c.root);
    let has = |pkg: &str, feat: &str| features.iter().any(|(p, f)| p == pkg && f.iter().any(|x| x == feat));
    let mut pkgs = vec!["mep-cuda", "mep-benches", "mep"];
    pkgs.retain(|p| features.iter().any(|(n, _)| n == p));
    let feats: Vec<String> = pkgs
        .iter()
        .filter(|p| has(p, "cuda"))
        .map(|p| format!("{p}/cuda"))
        .collect();
    let t = Instant::now();
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--release",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    for p in &pkgs {
        cmd.args(["-p", p]);
    }
    if !feats.is_empty() {
        cmd.arg("--features").arg(feats.join(","));
    }
    let Some(f) = c.run_or_stop("build", &mut cmd, 300, t, "") else {
        return built;
    };
    built.bins = artifacts(&f.stdout)
        .into_iter()
        .filter(|a| !a.2)
        .map(|(n, p, _)| (n, p))
        .collect();
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "--no-run",
        "--message-format=json-render-diagnostics",
        "-p",
        "mep-cuda",
        "--features",
        "cuda",
    ]);
    let Some(f) = c.run("build", &mut cmd, 300) else {
        c.out_of_time("build");
        return built;
    };
    built.tests = artifacts(&f.stdout)
        .into_iter()
        .filter(|a| a.2)
        .map(|(_, p, _)| p)
        .collect();
    let mut f = f;
    if kernel_bench && f.status.ok() {
        let mut cmd = Command::new("cargo");
        cmd.args([
            "bench",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "-p",
            "mep-benches",
        ])
        .args(["--bench", "kernels"]);
        let Some(g) = c.run("build", &mut cmd, 300) else {
            c.out_of_time("build");
            return built;
        };
        built.kernel_bench = artifacts(&g.stdout).into_iter().find(|a| a.0 == "kernels").map(|a| a.1);
        f = g;
    }
    let note = format!(
        "{} with --features {}; {} binaries, {} test binaries",
        pkgs.join(", "),
        if feats.is_empty() {
            "(none)".into()
        } else {
            feats.join(",")
        },
        built.bins.len(),
        built.tests.len()
    );
    c.record("build", f.status, t.elapsed().as_secs_f64(), note);
    built
}

/// "12 passed, 0 failed, 1 ignored" summed over cargo test's "test result:" lines.
pub(crate) fn test_counts(stdout: &str) -> String {
    let mut n = [0usize; 3];
    for line in stdout.lines().filter(|l| l.starts_with("test result:")) {
        for (i, key) in ["passed", "failed", "ignored"].iter().enumerate() {
            let words: Vec<&str> = line.split([';', '.']).collect();
            for w in words {
                let w = w.trim();
                if let Some(num) = w.strip_suffix(key).map(str::trim) {
                    n[i] += num.parse::<usize>().unwrap_or(0);
                }
            }
        }
    }
    let failed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .collect();
    let mut s = format!("{} passed, {} failed, {} ignored", n[0], n[1], n[2]);
    if !failed.is_empty() {
        s.push_str(&format!(" (failed: {})", failed.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_artifacts_and_test_counts_are_read() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"gpu_speed","kind":["bin"]},"profile":{"test":false},"executable":"/t/release/gpu_speed"}
{"reason":"compiler-artifact","target":{"name":"mep_cuda","kind":["lib"]},"profile":{"test":true},"executable":"/t/release/deps/mep_cuda-1234"}
{"reason":"compiler-artifact","target":{"name":"mep_tensor","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}"#;
        let a = artifacts(json);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], ("gpu_speed".into(), PathBuf::from("/t/release/gpu_speed"), false));
        assert!(a[1].2);
        let out = "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.2s\n\
                   test conv_matches_cpu ... FAILED\ntest axpy ... ok\n\
                   test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(
            test_counts(out),
            "15 passed, 2 failed, 1 ignored (failed: conv_matches_cpu)"
        );
    }
}
