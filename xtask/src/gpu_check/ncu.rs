//! The `ncu` step: one Nsight Compute pass over gpu_speed's forward+backward-to-input case,
//! summed per kernel, so that the next kernel to make faster is read off the summary instead
//! of a separate profiling session (issue 13 asks for one such pass beside each gpu-check).

use super::*;
use crate::proc::Status;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The gpu_speed case the pass profiles.
pub(crate) const NCU_CASE: &str = "forward+backward to input";

/// Fields of one CSV line (ncu quotes every field; a quote inside one is doubled).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Per kernel: (total ns, launches, the first launch's grid), from `ncu --csv --metrics
/// gpu__time_duration.sum --print-units base` output; lines before the CSV header are ncu's
/// own messages and the program's output.
pub(crate) fn kernel_times(csv: &str) -> BTreeMap<String, (f64, usize, String)> {
    let mut lines = csv.lines().skip_while(|l| !l.starts_with("\"ID\""));
    let Some(header) = lines.next().map(csv_fields) else {
        return BTreeMap::new();
    };
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(k), Some(g), Some(m), Some(v)) = (
        col("Kernel Name"),
        col("Grid Size"),
        col("Metric Name"),
        col("Metric Value"),
    ) else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, (f64, usize, String)> = BTreeMap::new();
    for f in lines.map(csv_fields) {
        if f.get(m).map(String::as_str) != Some("gpu__time_duration.sum") {
            continue;
        }
        let Some(ns) = f.get(v).and_then(|s| s.replace(',', "").parse::<f64>().ok()) else {
            continue;
        };
        let e = out.entry(f[k].clone()).or_insert((0.0, 0, f[g].clone()));
        e.0 += ns;
        e.1 += 1;
    }
    out
}

/// The `top` kernels by total time as a markdown table, with the total of all.
pub(crate) fn ncu_markdown(times: &BTreeMap<String, (f64, usize, String)>, top: usize) -> String {
    let total: f64 = times.values().map(|t| t.0).sum();
    let mut rows: Vec<_> = times.iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    let mut s = format!(
        "{} kernels, {} launches, {:.2} ms in all (kernel time only)\n\n| ms | share | launches | kernel | first grid |\n|---:|---:|---:|---|---|\n",
        times.len(),
        times.values().map(|t| t.1).sum::<usize>(),
        total / 1e6
    );
    for (name, (ns, n, grid)) in rows.into_iter().take(top) {
        s.push_str(&format!(
            "| {:.2} | {:.1} % | {n} | {name} | {grid} |\n",
            ns / 1e6,
            100.0 * ns / total.max(1.0)
        ));
    }
    s
}

pub(crate) fn ncu(c: &mut Check, built: &Built) -> Option<String> {
    let Some(tool) = find_cuda_tool("ncu") else {
        let why = Status::Skipped("not available: ncu is not on PATH nor in /usr/local/cuda/bin".into());
        c.record("ncu", why, 0.0, String::new());
        return None;
    };
    let Some(bin) = built.bin("gpu_speed").map(Path::to_path_buf) else {
        c.record(
            "ncu",
            Status::Skipped("gpu_speed was not built".into()),
            0.0,
            String::new(),
        );
        return None;
    };
    let mut cmd = Command::new(tool);
    cmd.args(["--csv", "--print-units", "base", "--metrics", "gpu__time_duration.sum"])
        .arg(bin)
        .args(["--case", NCU_CASE, "--warmup", "0", "--iters", "1"]);
    let f = c.run("ncu", &mut cmd, 180)?;
    let times = kernel_times(&f.stdout);
    let note = if times.is_empty() {
        "no kernel times in ncu's output".to_string()
    } else {
        format!("{} kernels", times.len())
    };
    let status = match f.status {
        s if s.ok() && times.is_empty() => Status::Failed("ncu reported no kernel".into()),
        s => s,
    };
    c.record("ncu", status, f.seconds, note);
    (!times.is_empty()).then(|| ncu_markdown(&times, 15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_times_are_summed_per_kernel_from_ncu_csv() {
        let csv = "==PROF== Connected to process 1\n{\"impl\":\"mep\"}\n\
            \"ID\",\"Process ID\",\"Kernel Name\",\"Grid Size\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n\
            \"0\",\"1\",\"conv2d_bwd_input_f32_v2\",\"(25088, 1, 1)\",\"gpu__time_duration.sum\",\"ns\",\"40,350,000\"\n\
            \"1\",\"1\",\"axpy_f32_v2\",\"(10, 1, 1)\",\"gpu__time_duration.sum\",\"ns\",\"1000\"\n\
            \"2\",\"1\",\"conv2d_bwd_input_f32_v2\",\"(98, 8, 1)\",\"gpu__time_duration.sum\",\"ns\",\"2370000\"\n";
        let t = kernel_times(csv);
        assert_eq!(t["conv2d_bwd_input_f32_v2"], (42_720_000.0, 2, "(25088, 1, 1)".into()));
        assert_eq!(t["axpy_f32_v2"].1, 1);
        let md = ncu_markdown(&t, 1);
        assert!(md.starts_with("2 kernels, 3 launches, 42.72 ms"), "{md}");
        assert!(
            md.contains("| 42.72 | 100.0 % | 2 | conv2d_bwd_input_f32_v2 | (25088, 1, 1) |"),
            "{md}"
        );
        assert!(!md.contains("axpy"), "{md}");
        assert!(kernel_times("no csv here").is_empty());
        assert_eq!(csv_fields(r#""a ""b"", c","d""#), vec![r#"a "b", c"#, "d"]);
    }
}
