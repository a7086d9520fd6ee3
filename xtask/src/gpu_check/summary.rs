//! `summary.md`: the date, GPU, commit, each step's status and time, and the tables.

use super::*;
use crate::clock::utc_now;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `abc1234` (plus " with uncommitted changes"), or "unknown" outside a git checkout.
pub(crate) fn commit(root: &Path) -> String {
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

/// The summary's sections besides the step table, each when its step produced it.
pub(crate) struct Tables {
    pub(crate) speed: Option<String>,
    pub(crate) rates: Option<String>,
    pub(crate) kernels: Option<String>,
}

pub(crate) fn render_summary(
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
