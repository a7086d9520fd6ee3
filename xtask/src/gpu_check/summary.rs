//! `summary.md`: the date, GPU, commit, each step's status and time, and the tables.

use super::*;
use crate::clock::utc_now;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `abc1234` (plus " with uncommitted changes"), or "unknown" outside a git checkout.
pub(crate) fn commit(root: &Path) -> String {
    match SourceCommit::of_checkout(root) {
        None => "unknown (no git checkout)".into(),
        Some(c) => c.short(),
    }
}

/// The file of a gpu-bundle that records the commit it was built from.
pub(crate) const BUNDLE_COMMIT_FILE: &str = "commit.json";

/// The commit a build came from: `git rev-parse HEAD`, and whether tracked files differed
/// from it (`git status --porcelain --untracked-files=no` not empty).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SourceCommit {
    pub(crate) rev: String,
    pub(crate) dirty: bool,
}

impl SourceCommit {
    /// The checkout at `root`'s; `None` outside a git checkout (or without git).
    pub(crate) fn of_checkout(root: &Path) -> Option<Self> {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let rev = git(&["rev-parse", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(SourceCommit { rev, dirty })
    }

    /// `abc1234`, plus " with uncommitted changes" when dirty.
    pub(crate) fn short(&self) -> String {
        let rev = &self.rev[..self.rev.len().min(7)];
        if self.dirty {
            format!("{rev} with uncommitted changes")
        } else {
            rev.to_string()
        }
    }

    /// Writes `bundle/commit.json`.
    pub(crate) fn write_to_bundle(&self, bundle: &Path) -> Result<(), String> {
        let path = bundle.join(BUNDLE_COMMIT_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads `bundle/commit.json`; the error names the file and what was wrong.
    pub(crate) fn read_from_bundle(bundle: &Path) -> Result<Self, String> {
        let path = bundle.join(BUNDLE_COMMIT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The summary's commit line: for a prebuilt bundle, the commit `gpu-bundle` recorded (the
/// folder gpu-check runs in may be any checkout, or none); else the checkout's.
pub(crate) fn summary_commit(root: &Path, prebuilt: bool) -> String {
    if !prebuilt {
        return commit(root);
    }
    match SourceCommit::read_from_bundle(root) {
        Ok(c) => format!(
            "{} (the bundle's, built by `cargo xtask gpu-bundle` at {})",
            c.short(),
            c.rev
        ),
        Err(e) => format!("unknown: the bundle records no commit ({e})"),
    }
}

/// The summary's sections besides the step table, each when its step produced it.
pub(crate) struct Tables {
    pub(crate) speed: Option<String>,
    pub(crate) rates: Option<String>,
    pub(crate) kernels: Option<String>,
    /// The ncu pass's per-kernel table.
    pub(crate) ncu: Option<String>,
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
            "\n## Speed: mep vs PyTorch eager\n\nRows ending in (tf32) or (bf16) run in that precision \
             on both sides (mep: `--precision`, the tensor-core kernels; PyTorch: TF32 and \
             channels_last, or bf16 autocast and channels_last); the others fp32, TF32 off. Median \
             ms per call, each ended by a \
             device synchronisation; ResNet-50 (10 classes, random weights) at 224×224, batch 32. \
             A NEB step moves 32 pivots (a path of 34, endpoints fixed) as `Neb::step` with k = ∞ \
             and Adam: energy + gradient at the 32 pivots in one batch, forces, update, \
             redistribution. PyTorch: torchvision resnet50 in eval mode (BN unfolded), cuDNN \
             autotuner on. Target: mep/PyTorch ≤ 1.0. PyTorch has no row for mep's whole NEB \
             step in a CUDA graph (`Neb::step_on_device`, replayed): compare it with PyTorch's \
             eager NEB step in input.\n\n",
        );
        s.push_str(t);
    }
    if let Some(t) = &tables.ncu {
        s.push_str(&format!("\n## ncu: gpu_speed's {NCU_CASE} case, one call\n\n"));
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

    #[test]
    fn a_bundle_names_the_commit_it_was_built_from() {
        let dir = std::env::temp_dir().join(format!("xtask-bundle-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = summary_commit(&dir, true);
        assert!(
            missing.starts_with("unknown") && missing.contains(BUNDLE_COMMIT_FILE),
            "{missing}"
        );
        let c = SourceCommit {
            rev: "0123456789abcdef0123456789abcdef01234567".into(),
            dirty: true,
        };
        c.write_to_bundle(&dir).unwrap();
        assert_eq!(SourceCommit::read_from_bundle(&dir).unwrap(), c);
        let line = summary_commit(&dir, true);
        assert!(
            line.starts_with("0123456 with uncommitted changes") && line.contains(&c.rev),
            "{line}"
        );
        let clean = SourceCommit { dirty: false, ..c };
        assert_eq!(clean.short(), "0123456");
        std::fs::write(dir.join(BUNDLE_COMMIT_FILE), "{").unwrap();
        let bad = summary_commit(&dir, true);
        assert!(bad.contains(BUNDLE_COMMIT_FILE) && bad.starts_with("unknown"), "{bad}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_checkout_commit_is_a_full_revision() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        // A source tarball has no .git; a checkout (CI's clone) has one.
        if let Some(c) = SourceCommit::of_checkout(root) {
            assert!(
                c.rev.len() == 40 && c.rev.bytes().all(|b| b.is_ascii_hexdigit()),
                "{c:?}"
            );
            assert!(commit(root).starts_with(&c.rev[..7]));
        }
    }

    #[test]
    fn the_summary_shows_the_commit() {
        let tables = Tables {
            speed: None,
            rates: None,
            kernels: None,
            ncu: None,
        };
        let s = render_summary(
            "H200",
            &[],
            &tables,
            Duration::from_secs(1),
            Duration::from_secs(480),
            "0123456 (the bundle's)",
        );
        assert!(s.contains("- commit: 0123456 (the bundle's)"), "{s}");
    }
}
