//! `cargo xtask gpu-check`: everything that needs a GPU, as one prepared script for a
//! machine that has one (lent for minutes, no network).
//!
//! Steps, each in its own process group with a time limit, all within one overall budget
//! (default 420 s, after the build of xtask itself); a failed step is reported and the next
//! one still runs:
//! 1. `nvidia-smi`: the GPU, its driver and CUDA version;
//! 2. `nvrtc`: find libnvrtc.so.13 (see `nvrtc.rs`), put on `LD_LIBRARY_PATH` of every step;
//! 3. `build`: the release binaries with the CUDA feature (mep-cuda, mep-benches, mep) and
//!    mep-cuda's test binaries;
//! 4. `conformance`: `MEP_REQUIRE_GPU=1 cargo test --release -p mep-cuda --features cuda`,
//!    the backend suite against the CPU backend on the GPU;
//! 5. `kernels-check`: every kernel family through NVRTC for sm_80 and sm_90 (registers,
//!    shared memory, spills);
//! 6. `speed`: `gpu_speed` (mep) and `tools/torch_speed.py` (PyTorch eager) on the same
//!    cases, joined into one table;
//! - `kernel-rates` (only when asked for, `--only ...,kernel-rates`): GFLOP/s and GB/s per
//!   kernel against the device's peak (`benches/benches/kernels.rs` without criterion);
//! 7. `smoke`: `mep connect --device cuda` on a tiny synthetic study beside the same run on
//!    the CPU (when `mep` has `--device`);
//! 8. `memcheck`: compute-sanitizer's memcheck over mep-cuda's test binaries, with whatever
//!    time is left (it is the slowest and least likely to be needed).
//!
//! It writes `OUT/summary.md` (default `target/gpu-check`) with the date, the GPU, each step's
//! status and time and the speed table, ready for BENCHMARKS.md, plus one log per step, and
//! prints the summary. The exit status is non-zero when any step failed or there is no GPU.

use crate::nvrtc;
use crate::proc::{run_limited, tail, Finished, Status};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const USAGE: &str = "cargo xtask gpu-check [--out DIR] [--budget SECS] [--iters N] [--only STEP,...] \
                         [--skip STEP,...] [--force] [--verbose] [--prebuilt BUNDLE]";

/// The steps that can be chosen with --only / --skip, in the order they run (nvidia-smi,
/// nvrtc and build always run first).
pub const STEPS: &[&str] = &[
    "conformance",
    "kernels-check",
    "speed",
    "kernel-rates",
    "smoke",
    "memcheck",
];
/// The steps run by default: all but `kernel-rates` (the per-kernel GFLOP/s and GB/s table of
/// `benches/benches/kernels.rs`; its build costs half a minute of the budget).
pub const DEFAULT_STEPS: &[&str] = &["conformance", "kernels-check", "speed", "smoke", "memcheck"];

/// The options of `cargo xtask gpu-check`.
#[derive(Debug, PartialEq)]
pub struct Options {
    /// Where summary.md and the logs go.
    pub out: PathBuf,
    /// The whole run's time limit.
    pub budget: Duration,
    /// Timed iterations per speed case.
    pub iters: usize,
    /// The optional steps to run.
    pub steps: Vec<&'static str>,
    /// Run the steps even when no GPU is found (the GPU steps then fail with their own errors).
    pub force: bool,
    /// Show every step's output as it comes (always in the logs).
    pub verbose: bool,
    /// A folder made by `cargo xtask gpu-bundle`: use its binaries instead of building (for a
    /// GPU machine without a Rust toolchain); it is also the root the steps run in.
    pub prebuilt: Option<PathBuf>,
}

impl Options {
    /// Parses the arguments after `gpu-check`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            out: PathBuf::from("target/gpu-check"),
            budget: Duration::from_secs(420),
            iters: 20,
            steps: DEFAULT_STEPS.to_vec(),
            force: false,
            verbose: false,
            prebuilt: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))
            };
            let positive = |flag: &str, v: String| match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{flag} {v}: expected a positive integer")),
            };
            match a.as_str() {
                "--out" => o.out = PathBuf::from(value("--out")?),
                "--budget" => o.budget = Duration::from_secs(positive("--budget", value("--budget")?)?),
                "--iters" => o.iters = positive("--iters", value("--iters")?)? as usize,
                "--only" => o.steps = step_list(&value("--only")?)?,
                "--skip" => {
                    let skip = step_list(&value("--skip")?)?;
                    o.steps.retain(|s| !skip.contains(s));
                }
                "--force" => o.force = true,
                "--verbose" => o.verbose = true,
                "--prebuilt" => o.prebuilt = Some(PathBuf::from(value("--prebuilt")?)),
                "-h" | "--help" => return Err(format!("usage: {USAGE}\n{}", help())),
                other => return Err(format!("unknown argument `{other}`; usage: {USAGE}")),
            }
        }
        Ok(o)
    }
}

fn step_list(v: &str) -> Result<Vec<&'static str>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            STEPS
                .iter()
                .find(|k| **k == s.trim())
                .copied()
                .ok_or_else(|| format!("unknown step `{s}`; steps are {}", STEPS.join(", ")))
        })
        .collect()
}

fn help() -> String {
    format!(
        "On a machine with an NVIDIA GPU, in under 8 minutes: nvidia-smi, libnvrtc, a release build with \
         --features cuda, then the steps {} (kernel-rates only when named in --only). Writes OUT/summary.md \
         (default target/gpu-check) and one log per step; exits 1 at once when there is no GPU, unless --force.",
        STEPS.join(", ")
    )
}

/// One line of the summary's step table.
struct StepRecord {
    name: String,
    status: Status,
    seconds: f64,
    note: String,
}

/// The GPU as nvidia-smi describes it.
#[derive(Debug, Default, PartialEq)]
struct Gpu {
    name: String,
    driver: String,
    memory: String,
    compute_cap: String,
    cuda: Option<String>,
}

struct Check<'a> {
    root: &'a Path,
    out: PathBuf,
    deadline: Instant,
    verbose: bool,
    env: Vec<(&'static str, OsString)>,
    records: Vec<StepRecord>,
}

impl Check<'_> {
    /// The limit for a step that wants `own` seconds: at most what is left of the budget;
    /// `None` when under 5 s are left.
    fn limit(&self, own: u64) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (left >= Duration::from_secs(5)).then(|| left.min(Duration::from_secs(own)))
    }

    /// The log of step `step`: `speed (mep)` logs to `speed-mep.log`.
    fn log(&self, step: &str) -> PathBuf {
        let file: String = step
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        self.out.join(format!("{file}.log"))
    }

    /// Runs `cmd` for step `name`, its output appended to the step's log; `None` (nothing run)
    /// when the budget is spent.
    fn run(&mut self, name: &str, cmd: &mut Command, own_limit: u64) -> Option<Finished> {
        let limit = self.limit(own_limit)?;
        cmd.current_dir(self.root);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let program = Path::new(cmd.get_program())
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let args: Vec<String> = cmd
            .get_args()
            .take(3)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!(
            "gpu-check: {name}: {program} {} ... (limit {} s)",
            args.join(" "),
            limit.as_secs()
        );
        let f = run_limited(cmd, limit, &self.log(name), self.verbose);
        Some(f)
    }

    /// Records step `name` as not run for want of time.
    fn out_of_time(&mut self, name: &str) {
        self.record(
            name,
            Status::Skipped("the time budget is spent".into()),
            0.0,
            String::new(),
        );
    }

    fn record(&mut self, name: &str, status: Status, seconds: f64, mut note: String) {
        let failed = !status.ok() && !matches!(status, Status::Skipped(_));
        if failed {
            let hint = failure_hint(&std::fs::read_to_string(self.log(name)).unwrap_or_default());
            if note.is_empty() {
                note = hint;
            } else if !hint.is_empty() {
                note = format!("{note}: {hint}");
            }
        }
        eprintln!(
            "gpu-check: {name}: {status} ({seconds:.1} s){}",
            if note.is_empty() {
                String::new()
            } else {
                format!("; {note}")
            }
        );
        if failed && !self.verbose {
            if let Ok(text) = std::fs::read_to_string(self.log(name)) {
                eprintln!(
                    "---- last lines of {} ----\n{}\n----",
                    self.log(name).display(),
                    tail(&text, 30)
                );
            }
        }
        self.records.push(StepRecord {
            name: name.into(),
            status,
            seconds,
            note,
        });
    }
}

/// The last error lines a failed step wrote to stderr (at most 3), for the summary's notes.
fn failure_hint(log: &str) -> String {
    let errs: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("! "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let marked: Vec<&str> = errs
        .iter()
        .copied()
        .filter(|l| l.to_ascii_lowercase().contains("error") && !l.contains("to rerun pass"))
        .collect();
    let pick = if marked.is_empty() { &errs } else { &marked };
    pick[pick.len().saturating_sub(3)..].join(" / ")
}

/// What the build step produced.
#[derive(Default)]
struct Built {
    /// Binary name → path.
    bins: Vec<(String, PathBuf)>,
    /// mep-cuda's test binaries.
    tests: Vec<PathBuf>,
    /// The criterion bench of single kernels, when `kernel-rates` runs.
    kernel_bench: Option<PathBuf>,
    /// Binaries of a `gpu-bundle`: the tests run as binaries, not through cargo.
    prebuilt: bool,
}

impl Built {
    fn bin(&self, name: &str) -> Option<&Path> {
        self.bins.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_path())
    }
}

/// Runs the whole check; returns the summary's path, or an error when a step failed or no
/// GPU was found (the summary is written either way).
pub fn gpu_check(root: &Path, opts: &Options) -> Result<PathBuf, String> {
    let started = Instant::now();
    let out = if opts.out.is_absolute() {
        opts.out.clone()
    } else {
        root.join(&opts.out)
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for entry in std::fs::read_dir(&out).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut c = Check {
        root,
        out: out.clone(),
        deadline: started + opts.budget,
        verbose: opts.verbose,
        env: Vec::new(),
        records: Vec::new(),
    };

    // 1. The GPU.
    let t = Instant::now();
    let gpu = detect_gpu();
    let gpu_line = match &gpu {
        Ok(g) => format!(
            "{} (driver {}, CUDA {}, {}, compute capability {})",
            g.name,
            g.driver,
            g.cuda.as_deref().unwrap_or("?"),
            g.memory,
            g.compute_cap
        ),
        Err(e) => format!("none: {e}"),
    };
    let gpu_status = match &gpu {
        Ok(_) => Status::Passed,
        Err(e) => Status::Failed(format!("no GPU: {e}")),
    };
    let note = if gpu.is_ok() { gpu_line.clone() } else { String::new() };
    c.record("nvidia-smi", gpu_status, t.elapsed().as_secs_f64(), note);
    let no_gpu = gpu.is_err() && !opts.force;

    let mut speed_table = None;
    let mut kernels_table = None;
    let mut rates_table = None;
    if no_gpu {
        for step in ["nvrtc", "build"].iter().chain(opts.steps.iter()) {
            c.record(
                step,
                Status::Skipped("no GPU (rerun with --force to run it anyway)".into()),
                0.0,
                String::new(),
            );
        }
    } else {
        // 2. libnvrtc.
        let t = Instant::now();
        match nvrtc::locate(root, true) {
            Ok(found) => {
                c.env.push(("LD_LIBRARY_PATH", nvrtc::library_path(&found.dir)));
                let note = format!("{} ({})", found.dir.display(), found.how);
                c.record("nvrtc", Status::Passed, t.elapsed().as_secs_f64(), note);
            }
            Err(e) => c.record("nvrtc", Status::Failed(e), t.elapsed().as_secs_f64(), String::new()),
        }
        // 3. The build (or the bundle's binaries).
        let built = match &opts.prebuilt {
            Some(dir) => prebuilt(&mut c, dir),
            None => build(&mut c, opts.steps.contains(&"kernel-rates")),
        };
        // 4–8.
        for step in STEPS.iter().filter(|s| opts.steps.contains(s)) {
            match *step {
                "conformance" => conformance(&mut c, &built),
                "kernels-check" => kernels_table = kernels_check(&mut c, &built),
                "speed" => speed_table = speed(&mut c, &built, opts.iters),
                "kernel-rates" => rates_table = kernel_rates(&mut c, &built),
                "smoke" => smoke(&mut c, &built),
                "memcheck" => memcheck(&mut c, &built),
                _ => {}
            }
        }
    }

    let tables = Tables {
        speed: speed_table,
        rates: rates_table,
        kernels: kernels_table,
    };
    let summary = render_summary(
        &gpu_line,
        &c.records,
        &tables,
        started.elapsed(),
        opts.budget,
        &commit(root),
    );
    let path = out.join("summary.md");
    std::fs::write(&path, &summary).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{summary}");
    eprintln!("gpu-check: summary in {}, logs beside it", path.display());
    let failed: Vec<&str> = c
        .records
        .iter()
        .filter(|r| !r.status.ok() && !is_benign_skip(&r.status))
        .map(|r| r.name.as_str())
        .collect();
    if no_gpu {
        Err(format!(
            "no GPU on this machine ({}); nothing was run",
            gpu.err().unwrap_or_default()
        ))
    } else if failed.is_empty() {
        Ok(path)
    } else {
        Err(format!("steps that did not pass: {}", failed.join(", ")))
    }
}

/// Skips that are not failures: a tool that is not installed, a flag `mep` does not have yet.
fn is_benign_skip(s: &Status) -> bool {
    matches!(s, Status::Skipped(why) if why.starts_with("not available"))
}

fn detect_gpu() -> Result<Gpu, String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total,compute_cap",
            "--format=csv,noheader",
        ])
        .output();
    let o = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dev = Path::new("/dev/nvidia0").exists();
            return Err(format!(
                "nvidia-smi is not on PATH{}",
                if dev {
                    " (but /dev/nvidia0 exists)"
                } else {
                    " and there is no /dev/nvidia0"
                }
            ));
        }
        Err(e) => return Err(format!("nvidia-smi could not be started: {e}")),
        Ok(o) => o,
    };
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(format!("nvidia-smi failed: {} {}", text.trim(), err.trim()));
    }
    let mut g = parse_gpu_line(text.lines().next().unwrap_or(""))
        .ok_or_else(|| format!("nvidia-smi listed no GPU: `{}`", text.trim()))?;
    // The driver's CUDA version is only in the plain header ("CUDA Version: 13.0").
    if let Ok(o) = Command::new("nvidia-smi").output() {
        g.cuda = cuda_version(&String::from_utf8_lossy(&o.stdout));
    }
    Ok(g)
}

fn parse_gpu_line(line: &str) -> Option<Gpu> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    (f.len() >= 4 && !f[0].is_empty()).then(|| Gpu {
        name: f[0].into(),
        driver: f[1].into(),
        memory: f[2].into(),
        compute_cap: f[3].into(),
        cuda: None,
    })
}

fn cuda_version(header: &str) -> Option<String> {
    let rest = &header[header.find("CUDA Version:")? + "CUDA Version:".len()..];
    rest.split_whitespace().next().map(str::to_string)
}

/// The crate features of each workspace package, from `cargo metadata`.
fn package_features(root: &Path) -> Vec<(String, Vec<String>)> {
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
fn prebuilt(c: &mut Check, dir: &Path) -> Built {
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

fn build(c: &mut Check, kernel_bench: bool) -> Built {
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
    let Some(f) = c.run("build", &mut cmd, 300) else {
        c.out_of_time("build");
        return built;
    };
    if !f.status.ok() {
        c.record("build", f.status, t.elapsed().as_secs_f64(), String::new());
        return built;
    }
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
fn test_counts(stdout: &str) -> String {
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

fn conformance(c: &mut Check, built: &Built) {
    if built.tests.is_empty() {
        let why = Status::Skipped("the build did not finish".into());
        return c.record("conformance", why, 0.0, String::new());
    }
    if built.prebuilt {
        // Each test binary on its own (no cargo on the machine), under one budget.
        let (mut stdout, mut seconds, mut status) = (String::new(), 0.0, Status::Passed);
        for test in &built.tests {
            let mut cmd = Command::new(test);
            cmd.env("MEP_REQUIRE_GPU", "1");
            let Some(f) = c.run("conformance", &mut cmd, 150) else {
                return c.out_of_time("conformance");
            };
            stdout.push_str(&f.stdout);
            seconds += f.seconds;
            if !f.status.ok() && status.ok() {
                status = f.status;
            }
        }
        let note = test_counts(&stdout);
        return c.record("conformance", status, seconds, note);
    }
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--release", "-p", "mep-cuda", "--features", "cuda"])
        .env("MEP_REQUIRE_GPU", "1");
    match c.run("conformance", &mut cmd, 150) {
        Some(f) => {
            let note = test_counts(&f.stdout);
            c.record("conformance", f.status, f.seconds, note);
        }
        None => c.out_of_time("conformance"),
    }
}

fn kernels_check(c: &mut Check, built: &Built) -> Option<String> {
    let Some(bin) = built.bin("mep-kernels-check").map(Path::to_path_buf) else {
        let why = Status::Skipped("mep-kernels-check was not built".into());
        c.record("kernels-check", why, 0.0, String::new());
        return None;
    };
    let Some(f) = c.run("kernels-check", &mut Command::new(bin), 120) else {
        c.out_of_time("kernels-check");
        return None;
    };
    let out = f.stdout.trim().to_string();
    c.record("kernels-check", f.status, f.seconds, String::new());
    (!out.is_empty()).then_some(out)
}

/// One parsed line of `gpu_speed` or `torch_speed.py`.
#[derive(Debug, PartialEq)]
struct SpeedLine {
    case: String,
    median_ms: Option<f64>,
    error: Option<String>,
}

fn speed_lines(stdout: &str) -> Vec<SpeedLine> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter_map(|v| {
            Some(SpeedLine {
                case: v["case"].as_str()?.to_string(),
                median_ms: v["median_ms"].as_f64(),
                error: v["error"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// "5 cases" (empty when none ran, so that a failure's own message shows instead).
fn cases_note(lines: &[SpeedLine]) -> String {
    match lines.iter().filter(|l| l.median_ms.is_some()).count() {
        0 => String::new(),
        n => format!("{n} cases timed"),
    }
}

/// The markdown table of the two sides, in mep's case order, then PyTorch-only cases.
fn speed_markdown(mep: &[SpeedLine], torch: &[SpeedLine]) -> String {
    let mut cases: Vec<&str> = mep.iter().map(|l| l.case.as_str()).collect();
    for l in torch {
        if !cases.contains(&l.case.as_str()) {
            cases.push(&l.case);
        }
    }
    let cell = |side: &[SpeedLine], case: &str| -> (String, Option<f64>) {
        match side.iter().find(|l| l.case == case) {
            None => ("–".into(), None),
            Some(SpeedLine {
                median_ms: Some(ms), ..
            }) => (format!("{ms:.2}"), Some(*ms)),
            Some(SpeedLine { error: Some(e), .. }) => (format!("n/a ({})", e.replace('|', "/")), None),
            Some(_) => ("n/a".into(), None),
        }
    };
    let mut s = String::from("| case | mep ms | PyTorch ms | mep/PyTorch |\n|---|---:|---:|---:|\n");
    for case in cases {
        let (m, mv) = cell(mep, case);
        let (t, tv) = cell(torch, case);
        let ratio = match (mv, tv) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        s.push_str(&format!("| {case} | {m} | {t} | {ratio} |\n"));
    }
    s
}

fn speed(c: &mut Check, built: &Built, iters: usize) -> Option<String> {
    let mep = match built.bin("gpu_speed").map(Path::to_path_buf) {
        None => {
            let why = Status::Skipped("gpu_speed was not built".into());
            c.record("speed (mep)", why, 0.0, String::new());
            Vec::new()
        }
        Some(bin) => {
            let mut cmd = Command::new(bin);
            cmd.args(["--iters", &iters.to_string()]);
            match c.run("speed (mep)", &mut cmd, 150) {
                Some(f) => {
                    let lines = speed_lines(&f.stdout);
                    c.record("speed (mep)", f.status, f.seconds, cases_note(&lines));
                    lines
                }
                None => {
                    c.out_of_time("speed (mep)");
                    Vec::new()
                }
            }
        }
    };
    let mut cmd = Command::new("python3");
    cmd.args([
        "tools/torch_speed.py",
        "--device",
        "cuda",
        "--iters",
        &iters.to_string(),
    ]);
    let torch = match c.run("speed (torch)", &mut cmd, 150) {
        Some(f) => {
            let lines = speed_lines(&f.stdout);
            c.record("speed (torch)", f.status, f.seconds, cases_note(&lines));
            lines
        }
        None => {
            c.out_of_time("speed (torch)");
            Vec::new()
        }
    };
    (!mep.is_empty() || !torch.is_empty()).then(|| speed_markdown(&mep, &torch))
}

fn kernel_rates(c: &mut Check, built: &Built) -> Option<String> {
    let Some(bench) = built.kernel_bench.clone() else {
        let why = Status::Skipped("the kernels bench was not built".into());
        c.record("kernel-rates", why, 0.0, String::new());
        return None;
    };
    let mut cmd = Command::new(bench);
    cmd.arg("--bench").env("MEP_BENCH_RATES_ONLY", "1");
    let Some(f) = c.run("kernel-rates", &mut cmd, 120) else {
        c.out_of_time("kernel-rates");
        return None;
    };
    // The table starts at the bench's "<group> on <device>: rates per case" line.
    let table = f.stdout.find(" rates per case").map(|i| {
        let start = f.stdout[..i].rfind('\n').map_or(0, |j| j + 1);
        f.stdout[start..].trim().to_string()
    });
    c.record("kernel-rates", f.status, f.seconds, String::new());
    table
}

/// One line of a study's results.jsonl, as the smoke test compares them.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// "i j space".
    key: String,
    category: String,
    line_max_loss: Option<f64>,
    path_max_loss: Option<f64>,
}

fn outcomes(dir: &Path) -> Vec<Outcome> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Outcome {
            key: format!("{} {} {}", v["i"], v["j"], v["space"].as_str().unwrap_or("?")),
            category: v["category"].as_str().unwrap_or("?").to_string(),
            line_max_loss: v["line_max_loss"].as_f64(),
            path_max_loss: v["path_max_loss"].as_f64(),
        })
        .collect()
}

/// The GPU study against the CPU one: a note, and an error when the straight lines' losses
/// (forward passes only, so they must agree to rounding) differ by more than 1 %.
fn compare_studies(gpu: &[Outcome], cpu: &[Outcome]) -> (String, Option<String>) {
    let rel = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() / (1e-6 + a.abs().max(b.abs())),
        _ => 0.0,
    };
    let (mut same, mut line_diff, mut path_diff, mut differ) = (0, 0.0f64, 0.0f64, Vec::new());
    for g in gpu {
        let Some(c) = cpu.iter().find(|c| c.key == g.key) else {
            continue;
        };
        if c.category == g.category {
            same += 1;
        } else {
            differ.push(format!(
                "{}: {} on the GPU, {} on the CPU",
                g.key, g.category, c.category
            ));
        }
        line_diff = line_diff.max(rel(g.line_max_loss, c.line_max_loss));
        path_diff = path_diff.max(rel(g.path_max_loss, c.path_max_loss));
    }
    let mut note = format!(
        "{} results on the GPU; categories as on the CPU for {same} of {}; largest relative difference of \
         the line's max loss {line_diff:.1e}, of the path's {path_diff:.1e}",
        gpu.len(),
        cpu.len()
    );
    if !differ.is_empty() {
        note.push_str(&format!(" (differ: {})", differ.join("; ")));
    }
    let error = if gpu.is_empty() {
        Some("mep connect --device cuda wrote no results".to_string())
    } else if line_diff > 1e-2 {
        Some(format!(
            "the straight lines' losses differ from the CPU's by {line_diff:.1e} (relative)"
        ))
    } else {
        None
    };
    (note, error)
}

fn smoke(c: &mut Check, built: &Built) {
    let Some(mep) = built.bin("mep").map(Path::to_path_buf) else {
        return c.record("smoke", Status::Skipped("mep was not built".into()), 0.0, String::new());
    };
    let help = Command::new(&mep).args(["connect", "--help"]).output();
    if !help.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--device")) {
        let why = Status::Skipped("not available: `mep connect` has no --device flag yet".into());
        return c.record("smoke", why, 0.0, String::new());
    }
    let t = Instant::now();
    let dir = c.out.join("smoke");
    let _ = std::fs::remove_dir_all(&dir);
    // A one-epoch ResNet-20 on the synthetic set (on the CPU: the smoke test is of connect).
    let model = dir.join("model");
    let mut train = Command::new(&mep);
    train.args([
        "train",
        "--arch",
        "resnet20",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--quiet",
        "--out",
    ]);
    train.arg(&model);
    let Some(f) = c.run("smoke", &mut train, 60) else {
        return c.out_of_time("smoke");
    };
    if !f.status.ok() {
        return c.record(
            "smoke",
            f.status,
            t.elapsed().as_secs_f64(),
            "training the model failed".into(),
        );
    }
    let connect = |device: &str| {
        let mut cmd = Command::new(&mep);
        cmd.args(["connect", "--device", device, "--arch", "resnet20", "--weights"])
            .arg(model.join("model.safetensors"))
            .args(["--data", "synthetic", "--space", "input,layer1,pool", "--pairs", "3"])
            .args(["--allow-misclassified", "--max-steps", "20", "--quiet", "--out"])
            .arg(dir.join(device));
        cmd
    };
    let Some(f) = c.run("smoke", &mut connect("cuda"), 60) else {
        return c.out_of_time("smoke");
    };
    if !f.status.ok() {
        return c.record(
            "smoke",
            f.status,
            t.elapsed().as_secs_f64(),
            "mep connect --device cuda failed".into(),
        );
    }
    let Some(f) = c.run("smoke", &mut connect("cpu"), 60) else {
        return c.out_of_time("smoke");
    };
    let (note, error) = compare_studies(&outcomes(&dir.join("cuda")), &outcomes(&dir.join("cpu")));
    let status = match error {
        Some(e) if f.status.ok() => Status::Failed(e),
        _ => f.status,
    };
    c.record("smoke", status, t.elapsed().as_secs_f64(), note);
}

/// compute-sanitizer on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin.
fn find_sanitizer() -> Option<PathBuf> {
    let name = "compute-sanitizer";
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let cuda_home = std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin").join(name));
    on_path
        .into_iter()
        .chain(cuda_home)
        .chain([PathBuf::from("/usr/local/cuda/bin").join(name)])
        .find(|p| p.is_file())
}

fn memcheck(c: &mut Check, built: &Built) {
    let Some(sanitizer) = find_sanitizer() else {
        let why = Status::Skipped("not available: compute-sanitizer is not on PATH nor in /usr/local/cuda/bin".into());
        return c.record("memcheck", why, 0.0, String::new());
    };
    if built.tests.is_empty() {
        let why = Status::Skipped("the build did not finish".into());
        return c.record("memcheck", why, 0.0, String::new());
    }
    let t = Instant::now();
    let mut status = Status::Passed;
    let mut notes = Vec::new();
    // The GPU suite first: the other test binaries barely touch the device.
    let mut tests = built.tests.clone();
    tests.sort_by_key(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("gpu")));
    for test in &tests {
        let mut cmd = Command::new(&sanitizer);
        cmd.args(["--tool", "memcheck", "--error-exitcode", "1", "--print-limit", "20"])
            .arg(test)
            .env("MEP_REQUIRE_GPU", "1");
        let Some(f) = c.run("memcheck", &mut cmd, 300) else {
            status = Status::Skipped("the time budget is spent".into());
            break;
        };
        let name = test
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The sanitizer's last "ERROR SUMMARY: N errors" (stdout and stderr are both in the log).
        let log = std::fs::read_to_string(c.log("memcheck")).unwrap_or_default();
        let errors = log
            .lines()
            .filter_map(|l| l.split("ERROR SUMMARY:").nth(1))
            .next_back()
            .map(|s| s.trim().to_string());
        notes.push(format!("{name}: {}", errors.unwrap_or_else(|| f.status.to_string())));
        if !f.status.ok() {
            status = f.status;
            break;
        }
    }
    c.record("memcheck", status, t.elapsed().as_secs_f64(), notes.join("; "));
}

/// `abc1234` (plus " with uncommitted changes"), or "unknown" outside a git checkout.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown (no git checkout)".into(),
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{rev} with uncommitted changes"),
            _ => rev,
        },
    }
}

/// The UTC date and time, `2025-11-29 17:40 UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The summary's sections besides the step table, each when its step produced it.
struct Tables {
    speed: Option<String>,
    rates: Option<String>,
    kernels: Option<String>,
}

fn render_summary(
    gpu: &str,
    records: &[StepRecord],
    tables: &Tables,
    elapsed: Duration,
    budget: Duration,
    commit: &str,
) -> String {
    let mut s = format!("# gpu-check, {}\n\n", utc_now());
    s.push_str(&format!("- GPU: {gpu}\n- commit: {commit}\n"));
    s.push_str(&format!(
        "- total: {:.0} s of a {} s budget\n\n",
        elapsed.as_secs_f64(),
        budget.as_secs()
    ));
    s.push_str("| step | status | time | notes |\n|---|---|---:|---|\n");
    for r in records {
        s.push_str(&format!(
            "| {} | {} | {:.1} s | {} |\n",
            r.name,
            r.status.to_string().replace('|', "/"),
            r.seconds,
            r.note.replace('|', "/")
        ));
    }
    if let Some(t) = &tables.speed {
        s.push_str(
            "\n## Speed: mep vs PyTorch eager\n\nfp32, TF32 off, median ms per call, each ended by a \
             device synchronisation; ResNet-50 (10 classes, random weights) at 224×224, batch 32. \
             A NEB step moves 32 pivots (a path of 34, endpoints fixed) as `Neb::step` with k = ∞ \
             and Adam: energy + gradient at the 32 pivots in one batch, forces, update, \
             redistribution. PyTorch: torchvision resnet50 in eval mode (BN unfolded), cuDNN \
             autotuner on. Target: mep/PyTorch ≤ 1.0.\n\n",
        );
        s.push_str(t);
    }
    if let Some(r) = &tables.rates {
        s.push_str("\n## Kernel rates\n\n```\n");
        s.push_str(r);
        s.push_str("\n```\n");
    }
    if let Some(k) = &tables.kernels {
        s.push_str("\n## kernels-check\n\n<details><summary>mep-kernels-check output</summary>\n\n```\n");
        s.push_str(k);
        s.push_str("\n```\n\n</details>\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.budget.as_secs(), o.iters), (420, 20));
        assert_eq!(o.steps, DEFAULT_STEPS);
        let o = Options::parse(&args(&["--only", "memcheck,kernel-rates"])).unwrap();
        assert_eq!(o.steps, vec!["memcheck", "kernel-rates"]);
        let o = Options::parse(&args(&["--only", "speed,smoke", "--budget", "60", "--force"])).unwrap();
        assert_eq!(
            (o.steps, o.budget.as_secs(), o.force),
            (vec!["speed", "smoke"], 60, true)
        );
        let o = Options::parse(&args(&["--skip", "memcheck"])).unwrap();
        assert!(!o.steps.contains(&"memcheck") && o.steps.contains(&"speed"));
        let e = Options::parse(&args(&["--only", "speed,fast"])).unwrap_err();
        assert!(e.contains("`fast`") && e.contains("memcheck"), "{e}");
        let e = Options::parse(&args(&["--budget", "0"])).unwrap_err();
        assert!(e.contains("--budget 0"), "{e}");
        let e = Options::parse(&args(&["--iters"])).unwrap_err();
        assert!(e.contains("--iters needs a value"), "{e}");
    }

    #[test]
    fn nvidia_smi_output_is_read() {
        let g = parse_gpu_line("NVIDIA H200, 570.124.06, 143771 MiB, 9.0").unwrap();
        assert_eq!(
            (g.name.as_str(), g.driver.as_str(), g.compute_cap.as_str()),
            ("NVIDIA H200", "570.124.06", "9.0")
        );
        assert_eq!(parse_gpu_line(""), None);
        let header = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |";
        assert_eq!(cuda_version(header).as_deref(), Some("13.0"));
    }

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

    #[test]
    fn the_speed_table_joins_both_sides_by_case() {
        let mep = speed_lines(
            "{\"impl\":\"mep\",\"case\":\"fwd\",\"median_ms\":30.0}\nnoise\n\
             {\"impl\":\"mep\",\"case\":\"graph\",\"error\":\"capture refused | alloc\"}\n",
        );
        let torch = speed_lines("{\"impl\":\"torch\",\"case\":\"fwd\",\"median_ms\":20.0}\n{\"impl\":\"torch\",\"case\":\"extra\",\"median_ms\":1.0}\n");
        let t = speed_markdown(&mep, &torch);
        assert!(t.contains("| fwd | 30.00 | 20.00 | 1.50 |"), "{t}");
        assert!(t.contains("| graph | n/a (capture refused / alloc) | – | – |"), "{t}");
        assert!(t.contains("| extra | – | 1.00 | – |"), "{t}");
    }

    #[test]
    fn a_failed_step_is_explained_by_its_last_error_lines() {
        let log = "$ cargo test\nstdout line\n! warning: x\n! error: sm_80 k: hot kernel spills\n\
                   ! error: test failed, to rerun pass `-p mep-cuda --test gpu`\n# FAILED\n";
        assert_eq!(failure_hint(log), "error: sm_80 k: hot kernel spills");
        assert_eq!(
            failure_hint("! gpu_speed: no usable GPU\n! (hint)\n"),
            "gpu_speed: no usable GPU / (hint)"
        );
        assert_eq!(failure_hint("only stdout\n"), "");
    }

    #[test]
    fn the_smoke_study_is_compared_with_the_cpu_one() {
        let o = |key: &str, cat: &str, line: f64| Outcome {
            key: key.into(),
            category: cat.into(),
            line_max_loss: Some(line),
            path_max_loss: Some(1.0),
        };
        let cpu = [o("1 2 input", "linear", 2.0), o("1 2 pool", "none", 3.0)];
        let (note, err) = compare_studies(
            &[o("1 2 input", "linear", 2.00001), o("1 2 pool", "nonlinear", 3.0)],
            &cpu,
        );
        assert!(
            note.contains("for 1 of 2") && note.contains("1 2 pool: nonlinear on the GPU"),
            "{note}"
        );
        assert_eq!(err, None);
        let (_, err) = compare_studies(&[o("1 2 input", "linear", 2.5)], &cpu);
        assert!(err.is_some_and(|e| e.contains("straight lines")));
        let (_, err) = compare_studies(&[], &cpu);
        assert!(err.is_some_and(|e| e.contains("no results")));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
