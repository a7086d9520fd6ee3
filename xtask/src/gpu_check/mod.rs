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
//! - `train`: `mep train --device cuda` on ResNet-50 224×224 b32 for one synthetic epoch, end
//!   to end, and its images/s against PyTorch's fp32 training step (820 images/s);
//! - `ncu`: one Nsight Compute pass over gpu_speed's forward+backward-to-input case, the
//!   kernels' times summed per kernel (skipped without ncu);
//! 7. `smoke`: `mep connect --device cuda` on a tiny synthetic study beside the same run on
//!    the CPU (when `mep` has `--device`), and again with `--cuda-graph`, whose results must
//!    be the eager GPU run's to the bit;
//! - `certify`: `mep certify --method bounds` on the CPU and with `--device cuda` on the same
//!   saved paths of the shipped demo ResNet-20 (layer1, layer2, 3 pairs), timed; the
//!   certificates must be the same;
//! 8. `memcheck`: compute-sanitizer's memcheck over mep-cuda's test binaries, with whatever
//!    time is left (it is the slowest and least likely to be needed).
//!
//! It writes `OUT/summary.md` (default `target/gpu-check`) with the date, the GPU, each step's
//! status and time and the speed table, ready for BENCHMARKS.md, plus one log per step, and
//! prints the summary. The exit status is non-zero when any step failed or there is no GPU.

mod binaries;
mod certify;
mod device;
mod ncu;
mod options;
mod smoke;
mod speed;
mod steps;
mod summary;
mod train;

use crate::nvrtc;
use crate::proc::{run_limited, tail, Finished, Status};
pub(crate) use binaries::*;
use certify::*;
use device::*;
use ncu::*;
pub use options::*;
use smoke::*;
use speed::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use steps::*;
use summary::*;
pub(crate) use summary::{commit, SourceCommit};
use train::*;

pub const USAGE: &str = "cargo xtask gpu-check [--out DIR] [--budget SECS] [--iters N] [--only STEP,...] \
                         [--skip STEP,...] [--force] [--verbose] [--prebuilt BUNDLE]";

/// The steps that can be chosen with --only / --skip, in the order they run (nvidia-smi,
/// nvrtc and build always run first).
pub const STEPS: &[&str] = &[
    "conformance",
    "kernels-check",
    "speed",
    "kernel-rates",
    "train",
    "ncu",
    "smoke",
    "certify",
    "memcheck",
];

/// The steps run by default: all but `kernel-rates` (the per-kernel GFLOP/s and GB/s table of
/// `benches/benches/kernels.rs`; its build costs half a minute of the budget).
pub const DEFAULT_STEPS: &[&str] = &[
    "conformance",
    "kernels-check",
    "speed",
    "train",
    "ncu",
    "smoke",
    "certify",
    "memcheck",
];

/// One line of the summary's step table.
pub(crate) struct StepRecord {
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) seconds: f64,
    pub(crate) note: String,
}

pub(crate) struct Check<'a> {
    pub(crate) root: &'a Path,
    pub(crate) out: PathBuf,
    pub(crate) deadline: Instant,
    pub(crate) verbose: bool,
    pub(crate) env: Vec<(&'static str, OsString)>,
    pub(crate) records: Vec<StepRecord>,
}

impl Check<'_> {
    /// The limit for a step that wants `own` seconds: at most what is left of the budget;
    /// `None` when under 5 s are left.
    pub(crate) fn limit(&self, own: u64) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (left >= Duration::from_secs(5)).then(|| left.min(Duration::from_secs(own)))
    }

    /// The log of step `step`: `speed (mep)` logs to `speed-mep.log`.
    pub(crate) fn log(&self, step: &str) -> PathBuf {
        let file: String = step
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        self.out.join(format!("{file}.log"))
    }

    /// Runs `cmd` for step `name`, its output appended to the step's log; `None` (nothing run)
    /// when the budget is spent.
    pub(crate) fn run(&mut self, name: &str, cmd: &mut Command, own_limit: u64) -> Option<Finished> {
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
    /// [`Check::run`] for a command step `name` cannot go on without: `Some` only when it
    /// finished and succeeded; otherwise the step is recorded, out of time or failed (its
    /// seconds counted from `since`, `failed` as its note), and `None` says to stop.
    pub(crate) fn run_or_stop(
        &mut self,
        name: &str,
        cmd: &mut Command,
        own_limit: u64,
        since: Instant,
        failed: &str,
    ) -> Option<Finished> {
        let Some(f) = self.run(name, cmd, own_limit) else {
            self.out_of_time(name);
            return None;
        };
        if !f.status.ok() {
            self.record(name, f.status, since.elapsed().as_secs_f64(), failed.to_string());
            return None;
        }
        Some(f)
    }

    pub(crate) fn out_of_time(&mut self, name: &str) {
        self.record(
            name,
            Status::Skipped("the time budget is spent".into()),
            0.0,
            String::new(),
        );
    }

    pub(crate) fn record(&mut self, name: &str, status: Status, seconds: f64, mut note: String) {
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
pub(crate) fn failure_hint(log: &str) -> String {
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

/// Runs the whole check; returns the summary's path, or an error when a step failed or no
/// GPU was found (the summary is written either way).
pub fn gpu_check(root: &Path, opts: &Options) -> Result<PathBuf, String> {
    let started = Instant::now();
    let out = crate::out_dir(root, &opts.out)?;
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
    let mut ncu_table = None;
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
                "ncu" => ncu_table = ncu(&mut c, &built),
                "train" => train(&mut c, &built),
                "smoke" => smoke(&mut c, &built),
                "certify" => certify(&mut c, &built),
                "memcheck" => memcheck(&mut c, &built),
                _ => {}
            }
        }
    }

    let tables = Tables {
        speed: speed_table,
        rates: rates_table,
        kernels: kernels_table,
        ncu: ncu_table,
    };
    let summary = render_summary(
        &gpu_line,
        &c.records,
        &tables,
        started.elapsed(),
        opts.budget,
        &summary::summary_commit(root, opts.prebuilt.is_some()),
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
pub(crate) fn is_benign_skip(s: &Status) -> bool {
    matches!(s, Status::Skipped(why) if why.starts_with("not available"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
