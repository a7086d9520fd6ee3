//! The demo's trained ResNet-20, shipped in the repository so that `cargo xtask reproduce`
//! does not spend most of its time training (8 epochs took 10+ minutes on a 2-core AVX2
//! machine).
//!
//! `weights/demo/resnet20-synthetic.safetensors` is what `mep train` wrote with the demo
//! preset's recipe; `resnet20-synthetic.json` beside it records that recipe, the commit and
//! machine it was made on, the file's SHA-256 and the run's report (whose
//! `first_step_losses` CI retrains and compares bit for bit: training gives the same bits on
//! every CPU, so a change to the code that alters training shows there).
//! `cargo xtask demo-weights` remakes both.

use mep_fetch::{Algorithm, Checksum};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shipped files, without extension, relative to the workspace root.
pub const STEM: &str = "weights/demo/resnet20-synthetic";
/// Written beside an installed model, so that `--retrain` knows the model was not trained there.
pub const MARKER: &str = "shipped.json";

/// `resnet20-synthetic.json`: how the shipped weights were made.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    /// The `mep train` arguments (after `mep`), with `--out DIR` left out.
    pub recipe: Vec<String>,
    /// `git rev-parse --short HEAD` where it was made (and whether the tree had changes).
    pub commit: String,
    pub made: String,
    /// The CPU's model name and whether it had AVX-512 (the bits are the same on AVX2).
    pub cpu: String,
    pub sha256: Checksum,
    /// `report.json` of the run, its paths reduced to file names.
    pub report: serde_json::Value,
}

/// Paths of the two shipped files under `root`.
pub fn files(root: &Path) -> (PathBuf, PathBuf) {
    let stem = root.join(STEM);
    (stem.with_extension("safetensors"), stem.with_extension("json"))
}

/// Reads the record, naming the file in every error.
pub fn read_record(path: &Path) -> Result<Record, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a shipped-weights record: {e}", path.display()))
}

/// Puts the shipped model into `model_dir` as a finished run (`model.safetensors`,
/// `report.json`, and the [`MARKER`]) after checking its SHA-256; returns the record, or
/// `None` when the files are not there (a checkout without them trains as before).
pub fn install(root: &Path, model_dir: &Path) -> Result<Option<Record>, String> {
    let (model, json) = files(root);
    if !model.exists() || !json.exists() {
        return Ok(None);
    }
    let record = read_record(&json)?;
    let found = Checksum::of_file(&model, Algorithm::Sha256).map_err(|e| e.to_string())?;
    if found != record.sha256 {
        return Err(format!(
            "{}: SHA-256 {} but {} records {}; restore the file (git checkout) or pass --retrain",
            model.display(),
            found.hex(),
            json.display(),
            record.sha256.hex()
        ));
    }
    std::fs::create_dir_all(model_dir).map_err(|e| format!("{}: {e}", model_dir.display()))?;
    let write = |to: PathBuf, bytes: Vec<u8>| std::fs::write(&to, bytes).map_err(|e| format!("{}: {e}", to.display()));
    // The marker first and report.json (what makes the run count as finished) last: an
    // interrupted install is then redone by the next run, or removed by --retrain.
    write(
        model_dir.join(MARKER),
        serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?,
    )?;
    let to = model_dir.join("model.safetensors");
    std::fs::copy(&model, &to).map_err(|e| format!("{} -> {}: {e}", model.display(), to.display()))?;
    write(
        model_dir.join("report.json"),
        serde_json::to_vec_pretty(&record.report).map_err(|e| e.to_string())?,
    )?;
    Ok(Some(record))
}

/// The record of the shipped model installed in `model_dir`, if that is where its model came from.
pub fn installed(model_dir: &Path) -> Result<Option<Record>, String> {
    let marker = model_dir.join(MARKER);
    if marker.exists() {
        read_record(&marker).map(Some)
    } else {
        Ok(None)
    }
}

/// Removes a model that [`install`] put into `model_dir` (for `--retrain`); a model trained
/// there is left alone (its checkpoint lets `mep train --resume` go on).
pub fn uninstall(model_dir: &Path) -> Result<(), String> {
    if !model_dir.join(MARKER).exists() {
        return Ok(());
    }
    for f in ["model.safetensors", "report.json", MARKER] {
        let p = model_dir.join(f);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", p.display())),
            _ => {}
        }
    }
    Ok(())
}

fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let isa = if std::arch::is_x86_feature_detected!("avx512f") {
        ", AVX-512"
    } else {
        ", no AVX-512"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let isa = "";
    format!("{model}{isa}")
}

/// `cargo xtask demo-weights`: trains the demo preset's recipe afresh with the release `mep`
/// and writes the two shipped files.
pub fn make(
    root: &Path,
    recipe: Vec<String>,
    mep: &Path,
    run: impl Fn(&mut Command) -> Result<(), String>,
) -> Result<PathBuf, String> {
    // Before training: the files this writes would make the tree look dirty afterwards.
    let made_at = crate::gpu_check::commit(root);
    let dir = root.join("target").join("demo-weights");
    let mut cmd = Command::new(mep);
    cmd.args(&recipe)
        .arg("--out")
        .arg(&dir)
        .args(["--overwrite", "--quiet"]);
    run(&mut cmd)?;
    let (model, json) = files(root);
    if let Some(parent) = model.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let trained = dir.join("model.safetensors");
    std::fs::copy(&trained, &model).map_err(|e| format!("{} -> {}: {e}", trained.display(), model.display()))?;
    let report_path = dir.join("report.json");
    let text = std::fs::read_to_string(&report_path).map_err(|e| format!("{}: {e}", report_path.display()))?;
    let mut report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", report_path.display()))?;
    // Paths of this machine mean nothing in the repository.
    for key in ["checkpoint", "model"] {
        if let Some(v) = report.get_mut(key) {
            let name = v
                .as_str()
                .and_then(|s| Path::new(s).file_name())
                .map(|n| n.to_string_lossy().into_owned());
            *v = serde_json::Value::from(name.unwrap_or_default());
        }
    }
    let record = Record {
        recipe,
        commit: made_at,
        made: crate::clock::utc_now(),
        cpu: cpu_name(),
        sha256: Checksum::of_file(&model, Algorithm::Sha256).map_err(|e| e.to_string())?,
        report,
    };
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn the_shipped_weights_match_their_record_and_the_demo_recipe() {
        let (model, json) = files(&root());
        let record = read_record(&json).unwrap();
        let found = Checksum::of_file(&model, Algorithm::Sha256).unwrap();
        assert_eq!(found, record.sha256, "{} differs from its record", model.display());
        let demo = &crate::reproduce::PRESETS[0];
        assert_eq!(demo.name, "demo");
        assert_eq!(
            record.recipe,
            crate::reproduce::train_command(demo),
            "the demo preset's recipe changed: run `cargo xtask demo-weights` and commit the files"
        );
        let losses = record.report["first_step_losses"].as_array().map(Vec::len);
        assert_eq!(losses, Some(16), "the record must carry the first steps' losses");
    }

    #[test]
    fn install_checks_the_hash_and_uninstall_leaves_trained_models() {
        let tmp = std::env::temp_dir().join(format!("xtask-shipped-{}", std::process::id()));
        let fake_root = tmp.join("root");
        let (model, json) = files(&fake_root);
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        let dir = tmp.join("model");
        assert_eq!(install(&fake_root, &dir).unwrap(), None, "no files: nothing installed");
        std::fs::write(&model, b"weights").unwrap();
        let mut record = Record {
            recipe: vec!["train".into()],
            commit: "abc".into(),
            made: "today".into(),
            cpu: "cpu".into(),
            sha256: Checksum::of_file(&model, Algorithm::Sha256).unwrap(),
            report: serde_json::json!({"epochs": []}),
        };
        std::fs::write(&json, serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(install(&fake_root, &dir).unwrap(), Some(record.clone()));
        assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), b"weights");
        assert_eq!(installed(&dir).unwrap(), Some(record.clone()));
        uninstall(&dir).unwrap();
        assert_eq!(installed(&dir).unwrap(), None);
        assert!(!dir.join("model.safetensors").exists() && !dir.join(MARKER).exists());

        // A model trained in the folder (no marker) survives --retrain.
        std::fs::write(dir.join("model.safetensors"), b"trained").unwrap();
        uninstall(&dir).unwrap();
        assert!(dir.join("model.safetensors").exists());

        record.sha256 = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap();
        std::fs::write(&json, serde_json::to_string(&record).unwrap()).unwrap();
        let e = install(&fake_root, &tmp.join("other")).unwrap_err();
        assert!(
            e.contains("resnet20-synthetic.safetensors") && e.contains("--retrain"),
            "{e}"
        );
        std::fs::remove_dir_all(&tmp).ok();
    }
}
