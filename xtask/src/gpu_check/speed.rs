//! The `speed` and `kernel-rates` steps: mep against PyTorch eager on the same cases, and
//! the per-kernel rates.

use super::*;
use crate::proc::Status;
use std::path::Path;
use std::process::Command;

/// One parsed line of `gpu_speed` or `torch_speed.py`.
#[derive(Debug, PartialEq)]
pub(crate) struct SpeedLine {
    pub(crate) case: String,
    pub(crate) median_ms: Option<f64>,
    pub(crate) error: Option<String>,
}

pub(crate) fn speed_lines(stdout: &str) -> Vec<SpeedLine> {
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
pub(crate) fn cases_note(lines: &[SpeedLine]) -> String {
    match lines.iter().filter(|l| l.median_ms.is_some()).count() {
        0 => String::new(),
        n => format!("{n} cases timed"),
    }
}

/// The markdown table of the two sides, in mep's case order, then PyTorch-only cases.
pub(crate) fn speed_markdown(mep: &[SpeedLine], torch: &[SpeedLine]) -> String {
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

/// The precisions the speed table compares, fp32 first: each is one run of gpu_speed and one
/// of torch_speed.py with `--precision` (issue 14's rows after fp32's).
const PRECISIONS: [&str; 3] = ["fp32", "tf32", "bf16"];

pub(crate) fn speed(c: &mut Check, built: &Built, iters: usize) -> Option<String> {
    let (mut mep, mut torch) = (Vec::new(), Vec::new());
    for precision in PRECISIONS {
        // fp32's step names stay as they were; the others say their precision.
        let step = |side: &str| match precision {
            "fp32" => format!("speed ({side})"),
            p => format!("speed {p} ({side})"),
        };
        let limit = if precision == "fp32" { 150 } else { 100 };
        match built.bin("gpu_speed").map(Path::to_path_buf) {
            None => {
                let why = Status::Skipped("gpu_speed was not built".into());
                c.record(&step("mep"), why, 0.0, String::new());
            }
            Some(bin) => {
                let mut cmd = Command::new(bin);
                cmd.args(["--iters", &iters.to_string(), "--precision", precision]);
                match c.run(&step("mep"), &mut cmd, limit) {
                    Some(f) => {
                        let lines = speed_lines(&f.stdout);
                        c.record(&step("mep"), f.status, f.seconds, cases_note(&lines));
                        mep.extend(lines);
                    }
                    None => c.out_of_time(&step("mep")),
                }
            }
        }
        let mut cmd = Command::new("python3");
        cmd.args([
            "tools/torch_speed.py",
            "--device",
            "cuda",
            "--iters",
            &iters.to_string(),
            "--precision",
            precision,
        ]);
        match c.run(&step("torch"), &mut cmd, limit) {
            Some(f) => {
                let lines = speed_lines(&f.stdout);
                c.record(&step("torch"), f.status, f.seconds, cases_note(&lines));
                torch.extend(lines);
            }
            None => c.out_of_time(&step("torch")),
        }
    }
    (!mep.is_empty() || !torch.is_empty()).then(|| speed_markdown(&mep, &torch))
}

pub(crate) fn kernel_rates(c: &mut Check, built: &Built) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
