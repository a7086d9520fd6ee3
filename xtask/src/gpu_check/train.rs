//! The `train` step: `mep train --device cuda` on ResNet-50 at 224×224, batch 32, for one
//! epoch of the synthetic set, end to end (data loading included), and its images/s: the
//! figure issue 13's target (≥ 820 images/s, PyTorch's fp32 training step) is about.

use super::*;
use crate::proc::Status;
use std::path::Path;
use std::process::Command;

/// PyTorch's fp32 training step on an H200 (ResNet-50 224 b32, 39.0 ms), in images/s.
pub(crate) const TORCH_FP32_IMAGES_PER_S: f64 = 820.0;

/// images/s of each epoch in a `mep train` report.json.
pub(crate) fn epoch_rates(report: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    v["epochs"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["images_per_s"].as_f64()).collect())
        .unwrap_or_default()
}

/// The summary's note: the epochs' images/s against PyTorch's.
pub(crate) fn rates_note(rates: &[f64]) -> String {
    let cells: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    match rates.last() {
        None => "the run reported no epoch".into(),
        Some(last) => format!(
            "{} images/s per epoch (PyTorch's fp32 step: {TORCH_FP32_IMAGES_PER_S:.0}; mep/PyTorch {:.2})",
            cells.join(", "),
            last / TORCH_FP32_IMAGES_PER_S
        ),
    }
}

pub(crate) fn train(c: &mut Check, built: &Built) {
    let Some(mep) = built.bin("mep").map(Path::to_path_buf) else {
        return c.record("train", Status::Skipped("mep was not built".into()), 0.0, String::new());
    };
    let dir = c.out.join("train");
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(&mep);
    cmd.args(["train", "--device", "cuda", "--arch", "resnet50", "--data", "synthetic"])
        .args([
            "--size",
            "224",
            "--batch-size",
            "32",
            "--epochs",
            "1",
            "--quiet",
            "--out",
        ])
        .arg(&dir);
    let Some(f) = c.run("train", &mut cmd, 120) else {
        return c.out_of_time("train");
    };
    let rates = epoch_rates(&std::fs::read_to_string(dir.join("report.json")).unwrap_or_default());
    let note = if f.status.ok() {
        rates_note(&rates)
    } else {
        String::new()
    };
    c.record("train", f.status, f.seconds, note);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_gives_each_epoch_and_the_ratio_of_the_last() {
        let report =
            r#"{"arch":"resnet50","epochs":[{"epoch":1,"images_per_s":372.4},{"epoch":2,"images_per_s":410.0}]}"#;
        let rates = epoch_rates(report);
        assert_eq!(rates, vec![372.4, 410.0]);
        let note = rates_note(&rates);
        assert!(note.starts_with("372, 410 images/s per epoch"), "{note}");
        assert!(note.ends_with("mep/PyTorch 0.50)"), "{note}");
        assert_eq!(rates_note(&epoch_rates("not json")), "the run reported no epoch");
    }
}
