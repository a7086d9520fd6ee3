//! The `certify` step: `mep certify --method bounds` on the CPU and with `--device cuda` on
//! the same saved paths of the shipped demo ResNet-20, timed side by side; the certificates
//! must be the same (the device computes the CPU's values).

use super::*;
use crate::proc::Status;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What the two runs must agree on, per certificate line: pair, space, verdict, intervals
/// and the margin bound as printed.
pub(crate) fn certificate_keys(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("certificates.jsonl")).unwrap_or_default();
    let mut keys: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            format!(
                "pair {} {}: {} {} intervals, margin bound {}",
                v["pair"],
                v["space"].as_str().unwrap_or("?"),
                v["exact"].as_str().unwrap_or("?"),
                v["intervals"],
                v["margin_bound"]
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Copies the study files (not the certificates) of `from` into a fresh `to`.
fn copy_study(from: &Path, to: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to.join("paths"))?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let p = entry.path();
        if p.is_file() && p.file_name().is_some_and(|n| n != "certificates.jsonl") {
            std::fs::copy(&p, to.join(entry.file_name()))?;
        }
    }
    for entry in std::fs::read_dir(from.join("paths"))?.flatten() {
        std::fs::copy(entry.path(), to.join("paths").join(entry.file_name()))?;
    }
    Ok(())
}

pub(crate) fn certify(c: &mut Check, built: &Built) {
    let Some(mep) = built.bin("mep").map(Path::to_path_buf) else {
        return c.record(
            "certify",
            Status::Skipped("mep was not built".into()),
            0.0,
            String::new(),
        );
    };
    let help = Command::new(&mep).arg("--help").output();
    if !help.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("certify runs its bounds")) {
        let why = Status::Skipped("not available: this `mep certify` has no device path yet".into());
        return c.record("certify", why, 0.0, String::new());
    }
    let t = Instant::now();
    let dir = c.out.join("certify");
    let study = dir.join("study");
    let _ = std::fs::remove_dir_all(&dir);
    let mut connect = Command::new(&mep);
    connect
        .args(["connect", "--arch", "resnet20", "--weights"])
        .arg(c.root.join("weights/demo/resnet20-synthetic.safetensors"))
        .args([
            "--data",
            "synthetic",
            "--space",
            "layer1,layer2",
            "--pairs",
            "3",
            "--quiet",
            "--out",
        ])
        .arg(&study);
    if c.run_or_stop("certify", &mut connect, 60, t, "mep connect failed")
        .is_none()
    {
        return;
    }
    let mut seconds = Vec::new();
    for device in ["cpu", "cuda"] {
        let copy = dir.join(device);
        if let Err(e) = copy_study(&study, &copy) {
            let why = Status::Failed(format!("copying the study: {e}"));
            return c.record("certify", why, t.elapsed().as_secs_f64(), String::new());
        }
        let mut cmd = Command::new(&mep);
        cmd.args(["--device", device, "certify"])
            .arg(&copy)
            .args(["--method", "bounds", "--quiet"]);
        let failed = format!("mep --device {device} certify failed");
        let Some(f) = c.run_or_stop("certify", &mut cmd, 150, t, &failed) else {
            return;
        };
        seconds.push(f.seconds);
    }
    let (cpu, cuda) = (certificate_keys(&dir.join("cpu")), certificate_keys(&dir.join("cuda")));
    let note = format!(
        "{} certificates of the demo ResNet-20's layer1/layer2 paths (3 pairs), --method bounds: \
         cpu {:.1} s, cuda {:.1} s",
        cpu.len(),
        seconds[0],
        seconds[1]
    );
    let status = if cpu.is_empty() {
        Status::Failed("the CPU run wrote no certificates".into())
    } else if cpu != cuda {
        let first = cpu.iter().zip(&cuda).find(|(a, b)| a != b);
        Status::Failed(format!("the certificates differ: {first:?}"))
    } else {
        Status::Passed
    };
    c.record("certify", status, t.elapsed().as_secs_f64(), note);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_is_copied_without_its_certificates_and_certificates_compare_by_content() {
        let root = std::env::temp_dir().join(format!("mep-gpu-check-certify-{}", std::process::id()));
        let (from, to) = (root.join("from"), root.join("to"));
        std::fs::create_dir_all(from.join("paths")).unwrap();
        std::fs::write(from.join("manifest.json"), "{}").unwrap();
        std::fs::write(from.join("paths").join("p0.safetensors"), "x").unwrap();
        let line = |pair: u32, bound: f64| {
            format!(
                "{{\"pair\":{pair},\"space\":\"layer1\",\"exact\":\"certified\",\"intervals\":7,\"margin_bound\":{bound},\"seconds\":1.5}}\n"
            )
        };
        std::fs::write(from.join("certificates.jsonl"), line(0, 0.25) + &line(1, 0.5)).unwrap();
        copy_study(&from, &to).unwrap();
        assert!(to.join("manifest.json").is_file() && to.join("paths/p0.safetensors").is_file());
        assert!(!to.join("certificates.jsonl").exists());
        // The same certificates in another order and with other seconds compare equal.
        std::fs::write(to.join("certificates.jsonl"), line(1, 0.5) + &line(0, 0.25)).unwrap();
        assert_eq!(certificate_keys(&from), certificate_keys(&to));
        assert_eq!(certificate_keys(&from).len(), 2);
        std::fs::write(to.join("certificates.jsonl"), line(1, 0.5) + &line(0, 0.3)).unwrap();
        assert_ne!(certificate_keys(&from), certificate_keys(&to));
        let _ = std::fs::remove_dir_all(&root);
    }
}
