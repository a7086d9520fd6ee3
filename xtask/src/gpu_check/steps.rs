//! The `conformance`, `kernels-check` and `memcheck` steps.

use super::*;
use crate::proc::Status;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn conformance(c: &mut Check, built: &Built) {
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

pub(crate) fn kernels_check(c: &mut Check, built: &Built) -> Option<String> {
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

pub(crate) fn memcheck(c: &mut Check, built: &Built) {
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
