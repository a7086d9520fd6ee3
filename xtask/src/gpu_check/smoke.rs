//! The `smoke` step: a tiny synthetic study on the GPU beside the same study on the CPU, and
//! again on the GPU with `--cuda-graph`, whose results must be the eager GPU run's to the bit.

use super::*;
use crate::proc::Status;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One line of a study's results.jsonl, as the smoke test compares them.
#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    /// "i j space".
    pub(crate) key: String,
    pub(crate) category: String,
    pub(crate) line_max_loss: Option<f64>,
    pub(crate) path_max_loss: Option<f64>,
}

pub(crate) fn outcomes(dir: &Path) -> Vec<Outcome> {
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
pub(crate) fn compare_studies(gpu: &[Outcome], cpu: &[Outcome]) -> (String, Option<String>) {
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

pub(crate) fn smoke(c: &mut Check, built: &Built) {
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
    if c.run_or_stop("smoke", &mut train, 60, t, "training the model failed")
        .is_none()
    {
        return;
    }
    let connect = |device: &str, graph: bool| {
        let mut cmd = Command::new(&mep);
        cmd.args(["connect", "--device", device, "--arch", "resnet20", "--weights"])
            .arg(model.join("model.safetensors"))
            .args(["--data", "synthetic", "--space", "input,layer1,pool", "--pairs", "3"])
            .args(["--allow-misclassified", "--max-steps", "20", "--quiet", "--out"])
            .arg(dir.join(if graph { "cuda-graph" } else { device }));
        if graph {
            cmd.arg("--cuda-graph");
        }
        cmd
    };
    let Some(f) = c.run_or_stop(
        "smoke",
        &mut connect("cuda", false),
        60,
        t,
        "mep connect --device cuda failed",
    ) else {
        return;
    };
    let eager_s = f.seconds;
    // `--cuda-graph` records each search's step and replays it: the same results to the bit.
    let failed = "mep connect --device cuda --cuda-graph failed";
    let Some(g) = c.run_or_stop("smoke", &mut connect("cuda", true), 60, t, failed) else {
        return;
    };
    if outcomes(&dir.join("cuda-graph")) != outcomes(&dir.join("cuda")) {
        let why = "--cuda-graph gave other results than the eager steps on the GPU".to_string();
        return c.record("smoke", Status::Failed(why), t.elapsed().as_secs_f64(), String::new());
    }
    let graph_note = format!("; --cuda-graph: the same results, {:.1} s vs {eager_s:.1} s", g.seconds);
    let Some(f) = c.run("smoke", &mut connect("cpu", false), 60) else {
        return c.out_of_time("smoke");
    };
    let (mut note, error) = compare_studies(&outcomes(&dir.join("cuda")), &outcomes(&dir.join("cpu")));
    note.push_str(&graph_note);
    let status = match error {
        Some(e) if f.status.ok() => Status::Failed(e),
        _ => f.status,
    };
    c.record("smoke", status, t.elapsed().as_secs_f64(), note);
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
