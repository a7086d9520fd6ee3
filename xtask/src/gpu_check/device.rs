//! What the machine has: the GPU and CUDA version (nvidia-smi), compute-sanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The GPU as nvidia-smi describes it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Gpu {
    pub(crate) name: String,
    pub(crate) driver: String,
    pub(crate) memory: String,
    pub(crate) compute_cap: String,
    pub(crate) cuda: Option<String>,
}

pub(crate) fn detect_gpu() -> Result<Gpu, String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total,compute_cap",
            "--format=csv,noheader",
        ])
        .output();
    let o = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dev = Path::new("/dev/nvidia0").exists();
            return Err(format!(
                "nvidia-smi is not on PATH{}",
                if dev {
                    " (but /dev/nvidia0 exists)"
                } else {
                    " and there is no /dev/nvidia0"
                }
            ));
        }
        Err(e) => return Err(format!("nvidia-smi could not be started: {e}")),
        Ok(o) => o,
    };
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(format!("nvidia-smi failed: {} {}", text.trim(), err.trim()));
    }
    let mut g = parse_gpu_line(text.lines().next().unwrap_or(""))
        .ok_or_else(|| format!("nvidia-smi listed no GPU: `{}`", text.trim()))?;
    // The driver's CUDA version is only in the plain header ("CUDA Version: 13.0").
    if let Ok(o) = Command::new("nvidia-smi").output() {
        g.cuda = cuda_version(&String::from_utf8_lossy(&o.stdout));
    }
    Ok(g)
}

pub(crate) fn parse_gpu_line(line: &str) -> Option<Gpu> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    (f.len() >= 4 && !f[0].is_empty()).then(|| Gpu {
        name: f[0].into(),
        driver: f[1].into(),
        memory: f[2].into(),
        compute_cap: f[3].into(),
        cuda: None,
    })
}

pub(crate) fn cuda_version(header: &str) -> Option<String> {
    let rest = &header[header.find("CUDA Version:")? + "CUDA Version:".len()..];
    rest.split_whitespace().next().map(str::to_string)
}

/// compute-sanitizer on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin.
pub(crate) fn find_sanitizer() -> Option<PathBuf> {
    find_cuda_tool("compute-sanitizer")
}

/// A CUDA tool (`compute-sanitizer`, `ncu`) on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin.
pub(crate) fn find_cuda_tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let cuda_home = std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("bin").join(name));
    on_path
        .into_iter()
        .chain(cuda_home)
        .chain([PathBuf::from("/usr/local/cuda/bin").join(name)])
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_output_is_read() {
        let g = parse_gpu_line("NVIDIA H200, 570.124.06, 143771 MiB, 9.0").unwrap();
        assert_eq!(
            (g.name.as_str(), g.driver.as_str(), g.compute_cap.as_str()),
            ("NVIDIA H200", "570.124.06", "9.0")
        );
        assert_eq!(parse_gpu_line(""), None);
        let header = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |";
        assert_eq!(cuda_version(header).as_deref(), Some("13.0"));
    }
}
