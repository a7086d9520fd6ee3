//! Finding libnvrtc for `kernels-check` and `gpu-check` where the CUDA backend looks for it,
//! installing it from PyPI when absent.
//!
//! The CUDA backend loads libnvrtc with dlopen, which reads `LD_LIBRARY_PATH` when the
//! process starts: so xtask finds the folder and runs the binaries as child processes with it
//! prepended.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// The places the CUDA backend itself looks in, shared with mep-cuda by source: depending on
// mep-cuda would make every xtask command build mep-kernels' tensor and network crates first.
#[path = "../../crates/mep-cuda/src/nvrtc/search.rs"]
#[allow(dead_code)] // libs_in: the backend loads the library, xtask only finds its folder
mod search;
use search::WHEEL_LIB;
pub use search::{LIB, LIB_DIR_ENV as ENV};

/// The PyPI requirement that provides it (NVIDIA's wheel, about 140 MB unpacked).
pub const REQUIREMENT: &str = "nvidia-cuda-nvrtc==13.*";

/// Where a libnvrtc was found, and how.
#[derive(Debug, PartialEq)]
pub struct Found {
    pub dir: PathBuf,
    pub how: String,
}

/// Finds the folder holding libnvrtc.so.13: `$MEP_NVRTC_LIB_DIR` if set (an error if it
/// lacks the library); else the first of the places the CUDA backend looks in
/// (`mep_cuda::nvrtc::search::candidate_dirs`: the CUDA toolkit, the Python environments on
/// PATH), python3's `sys.path` (its user site and PYTHONPATH too) and an earlier install
/// into `<repo>/target/nvrtc`, below each of the last two in `nvidia/cu13/lib`. With
/// `install`, when none has it, installs the wheel into `<repo>/target/nvrtc` with
/// `python3 -m pip`.
pub fn locate(root: &Path, install: bool) -> Result<Found, String> {
    if let Some(dir) = std::env::var_os(ENV) {
        let dir = PathBuf::from(dir);
        return if dir.join(LIB).exists() {
            Ok(Found {
                how: format!("${ENV}"),
                dir,
            })
        } else {
            Err(format!("${ENV} is {}, which holds no {LIB}", dir.display()))
        };
    }
    let ours = install_dir(root).join(WHEEL_LIB);
    let candidates = search::candidate_dirs()
        .into_iter()
        .map(|(dir, how)| (dir, how.to_string()))
        .chain(
            python_site_dirs()
                .into_iter()
                .map(|d| (d.join(WHEEL_LIB), "python3's site-packages".to_string())),
        )
        .chain([(ours.clone(), "installed earlier by xtask".to_string())]);
    if let Some((dir, how)) = candidates.into_iter().find(|(d, _)| d.join(LIB).exists()) {
        return Ok(Found { dir, how });
    }
    if !install {
        return Err(format!(
            "no {LIB} found (looked in ${ENV}, the CUDA toolkit, the Python environments on PATH, python3's \
             site-packages/{WHEEL_LIB}, {})",
            ours.display()
        ));
    }
    pip_install(root).map(|dir| Found {
        dir,
        how: format!("installed now: pip install {REQUIREMENT}"),
    })
}

/// `<repo>/target/nvrtc`, the `pip install --target` folder.
pub fn install_dir(root: &Path) -> PathBuf {
    root.join("target").join("nvrtc")
}

/// Every folder on python3's `sys.path` (site-packages, user site, PYTHONPATH); empty when
/// python3 is missing.
fn python_site_dirs() -> Vec<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys\nfor p in sys.path: print(p)"])
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Installs the wheel into a fresh folder beside `target/nvrtc` and renames it into place, so
/// an interrupted install never looks like a finished one.
fn pip_install(root: &Path) -> Result<PathBuf, String> {
    pip_install_into(&install_dir(root), REQUIREMENT)
}

/// Installs `requirement` with `python3 -m pip install --target` into `dest.partial`, checks
/// that it holds the library, and renames it to `dest`; returns `dest/nvidia/cu13/lib`.
fn pip_install_into(dest: &Path, requirement: &str) -> Result<PathBuf, String> {
    let pip_ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match pip_ok {
        Err(e) => {
            return Err(format!(
                "no {LIB} found and python3 could not be started to install it ({e}); \
                 install python3 with pip, or set {ENV} to a folder holding {LIB}"
            ))
        }
        Ok(s) if !s.success() => {
            return Err(format!(
                "no {LIB} found and python3 has no pip to install it (`python3 -m pip --version` failed); \
                 install pip (`python3 -m ensurepip`, or the python3-pip package), or set {ENV} to a folder \
                 holding {LIB}"
            ))
        }
        Ok(_) => {}
    }
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("xtask: installing {requirement} into {}", dest.display());
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
        ])
        .arg(&tmp)
        .arg(requirement)
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .map_err(|e| format!("could not run python3 -m pip: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "`python3 -m pip install --target {} {requirement}` failed ({status}); without network access, \
             install the wheel elsewhere and set {ENV} to its {WHEEL_LIB} folder",
            tmp.display()
        ));
    }
    if !tmp.join(WHEEL_LIB).join(LIB).exists() {
        return Err(format!(
            "pip installed {requirement}, but {} does not exist: the wheel's layout changed; set {ENV}",
            tmp.join(WHEEL_LIB).join(LIB).display()
        ));
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), dest.display()))?;
    Ok(dest.join(WHEEL_LIB))
}

/// An NVRTC release asked for by `kernels-check --nvrtc-version`: `13.0` (the newest 13.0.x,
/// what the H200's CUDA 13.0 has) or `newest` (the newest 13.x on PyPI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// `MAJOR.MINOR`, major 13 (the one the CUDA backend loads).
    Minor(u32, u32),
    /// The newest 13.x.
    Newest,
}

impl Wanted {
    /// Parses `13.0`, `13.5` or `newest`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "newest" {
            return Ok(Wanted::Newest);
        }
        let bad = || format!("--nvrtc-version takes 13.MINOR (e.g. 13.0) or `newest`, not `{s}`");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let (major, minor): (u32, u32) = (major.parse().map_err(|_| bad())?, minor.parse().map_err(|_| bad())?);
        if major != 13 {
            return Err(format!(
                "--nvrtc-version {s}: the CUDA backend loads {LIB}, so only NVRTC 13.x can be checked"
            ));
        }
        Ok(Wanted::Minor(major, minor))
    }

    /// The pip requirement: `nvidia-cuda-nvrtc==13.0.*` or `nvidia-cuda-nvrtc==13.*`.
    pub fn requirement(&self) -> String {
        match self {
            Wanted::Minor(a, b) => format!("nvidia-cuda-nvrtc=={a}.{b}.*"),
            Wanted::Newest => REQUIREMENT.to_string(),
        }
    }

    /// `<repo>/target/nvrtc-13.0` or `<repo>/target/nvrtc-newest`: one folder per request, so
    /// the two CI runs do not replace each other's wheel.
    pub fn dir(&self, root: &Path) -> PathBuf {
        let tag = match self {
            Wanted::Minor(a, b) => format!("{a}.{b}"),
            Wanted::Newest => "newest".into(),
        };
        root.join("target").join(format!("nvrtc-{tag}"))
    }
}

/// A wheel installed for [`Wanted`]: its library folder and its full version (`13.0.88`).
#[derive(Debug, PartialEq)]
pub struct Installed {
    pub lib_dir: PathBuf,
    pub version: String,
}

impl Installed {
    /// `MAJOR.MINOR` of the wheel, which is what `nvrtcVersion` reports.
    pub fn major_minor(&self) -> String {
        self.version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
    }
}

/// The version of the `nvidia-cuda-nvrtc` wheel installed in `dir`, read from its
/// `nvidia_cuda_nvrtc-<version>.dist-info` folder.
pub fn wheel_version(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let v = name.strip_prefix("nvidia_cuda_nvrtc-")?.strip_suffix(".dist-info")?;
        Some(v.to_string())
    })
}

/// The wheel for `wanted` in [`Wanted::dir`], installed with pip when that folder lacks it.
/// `newest` is resolved once: delete `target/nvrtc-newest` to look for a newer release.
pub fn install_version(root: &Path, wanted: &Wanted) -> Result<Installed, String> {
    let dest = wanted.dir(root);
    let ready = |dest: &Path| {
        let version = wheel_version(dest).filter(|_| dest.join(WHEEL_LIB).join(LIB).exists())?;
        Some(Installed {
            lib_dir: dest.join(WHEEL_LIB),
            version,
        })
    };
    if let Some(found) = ready(&dest) {
        return Ok(found);
    }
    pip_install_into(&dest, &wanted.requirement())?;
    ready(&dest).ok_or_else(|| {
        format!(
            "pip installed {} into {}, but no nvidia_cuda_nvrtc-*.dist-info names its version",
            wanted.requirement(),
            dest.display()
        )
    })
}

/// `dir` prepended to the current `LD_LIBRARY_PATH`.
pub fn library_path(dir: &Path) -> std::ffi::OsString {
    let mut v = dir.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_override_is_named() {
        // Only this test sets the variable; `locate` reads it first.
        std::env::set_var(ENV, "/nonexistent/nvrtc");
        let e = locate(Path::new("/nonexistent/repo"), false).unwrap_err();
        std::env::remove_var(ENV);
        assert!(
            e.contains(ENV) && e.contains("/nonexistent/nvrtc") && e.contains(LIB),
            "{e}"
        );
    }

    #[test]
    fn a_wanted_version_names_its_requirement_and_folder() {
        let root = Path::new("/repo");
        let w = Wanted::parse("13.0").unwrap();
        assert_eq!(w, Wanted::Minor(13, 0));
        assert_eq!(w.requirement(), "nvidia-cuda-nvrtc==13.0.*");
        assert_eq!(w.dir(root), Path::new("/repo/target/nvrtc-13.0"));
        let n = Wanted::parse("newest").unwrap();
        assert_eq!(n.requirement(), "nvidia-cuda-nvrtc==13.*");
        assert_eq!(n.dir(root), Path::new("/repo/target/nvrtc-newest"));
        for bad in ["13", "13.x", "latest", ""] {
            assert!(Wanted::parse(bad).unwrap_err().contains(&format!("`{bad}`")), "{bad}");
        }
        assert!(Wanted::parse("12.9").unwrap_err().contains(LIB));
    }

    #[test]
    fn the_wheel_version_comes_from_its_dist_info() {
        let dir = std::env::temp_dir().join(format!("xtask-nvrtc-wheel-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("nvidia_cuda_nvrtc-13.0.88.dist-info")).unwrap();
        std::fs::create_dir_all(dir.join("nvidia")).unwrap();
        assert_eq!(wheel_version(&dir).as_deref(), Some("13.0.88"));
        let i = Installed {
            lib_dir: dir.join(WHEEL_LIB),
            version: "13.0.88".into(),
        };
        assert_eq!(i.major_minor(), "13.0");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(wheel_version(&dir), None);
    }

    #[test]
    fn the_library_path_is_prepended() {
        let p = library_path(Path::new("/opt/nvrtc"));
        assert!(p.to_string_lossy().starts_with("/opt/nvrtc"), "{p:?}");
    }

    /// Downloads the wheel (about 60 MB) from PyPI: `cargo test -p xtask -- --ignored`.
    #[test]
    #[ignore]
    fn the_wheel_installs_where_locate_looks() {
        let root = std::env::temp_dir().join(format!("xtask-nvrtc-{}", std::process::id()));
        let dir = pip_install(&root).unwrap();
        assert_eq!(dir, install_dir(&root).join(WHEEL_LIB));
        assert!(dir.join(LIB).exists());
        assert!(!install_dir(&root).with_extension("partial").exists());
        std::fs::remove_dir_all(&root).ok();
    }
}
