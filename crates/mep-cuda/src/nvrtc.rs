//! NVRTC: compiles a kernel family (`kernels/<family>.cu`, as
//! [`mep_kernels::sources::nvrtc_source`] gives it) to a CUBIN for one GPU architecture.
//!
//! CUBIN rather than PTX: the driver loads it without a JIT step, and a build that ptxas
//! rejects fails here, with the log, instead of at the first launch. The options are the
//! [`BASE_OPTIONS`] plus `--gpu-architecture=<arch>`; `--use_fast_math` is deliberately absent,
//! since every kernel must match the CPU backend within the conformance tolerances.
//!
//! libnvrtc is loaded at run time; [`available`] says whether it can be, and every function
//! here returns [`KernelError::Unavailable`] (never panics) when it cannot.

use mep_kernels::{KernelError, Result};

use crate::cache::{entry_name, KernelCache};

pub mod search;
pub use search::LIB_DIR_ENV;

/// Options every compilation gets, before the arch and any extra options.
pub const BASE_OPTIONS: &[&str] = &["-std=c++17"];

/// How to get libnvrtc, for messages.
pub const INSTALL_HINT: &str = "install it (`pip install nvidia-cuda-nvrtc`, or the CUDA toolkit) and put the \
     directory holding libnvrtc.so on LD_LIBRARY_PATH or in MEP_NVRTC_LIB_DIR";

/// A compiled family.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The CUBIN, ready for `cuModuleLoadData`.
    pub cubin: Vec<u8>,
    /// NVRTC's log (warnings; with `-Xptxas=-v`, ptxas' resource report).
    pub log: String,
}

/// Checks that `arch` is `sm_<digits>[a|f]` (what NVRTC needs to emit a CUBIN), so a typo is
/// an error naming it rather than an NVRTC option error.
pub fn check_arch(arch: &str) -> Result<()> {
    let ok = arch.strip_prefix("sm_").is_some_and(|v| {
        let digits = v.trim_end_matches(['a', 'f']);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(KernelError::Compile {
            family: "-".into(),
            arch: arch.into(),
            log: format!("`{arch}` is not a GPU architecture of the form sm_90"),
        })
    }
}

/// The full option list for `arch` and `extra_opts`.
pub fn options(arch: &str, extra_opts: &[&str]) -> Vec<String> {
    BASE_OPTIONS
        .iter()
        .map(|o| o.to_string())
        .chain(std::iter::once(format!("--gpu-architecture={arch}")))
        .chain(extra_opts.iter().map(|o| o.to_string()))
        .collect()
}

fn unknown_family(family: &str, arch: &str) -> KernelError {
    KernelError::Compile {
        family: family.into(),
        arch: arch.into(),
        log: format!("no kernel family `{family}` (known: {})", families().join(", ")),
    }
}

/// The names of all kernel families.
pub fn families() -> Vec<&'static str> {
    mep_kernels::sources::FAMILIES.iter().map(|(f, _)| *f).collect()
}

/// Compiles `family` for `arch` (e.g. `"sm_90"`) with [`BASE_OPTIONS`] and `extra_opts`.
///
/// Errors: [`KernelError::Unavailable`] when libnvrtc cannot be loaded (or the crate was
/// built without the `cuda` feature); [`KernelError::Compile`] with NVRTC's log otherwise.
pub fn compile(family: &str, arch: &str, extra_opts: &[&str]) -> Result<Compiled> {
    check_arch(arch)?;
    let source = mep_kernels::sources::nvrtc_source(family).ok_or_else(|| unknown_family(family, arch))?;
    imp::compile(family, &source, arch, &options(arch, extra_opts))
}

/// Compiles `source` (self-contained: NVRTC is given no include path) as `<name>.cu` for
/// `arch`, with [`BASE_OPTIONS`] and `extra_opts`; errors as [`compile`], with `name` as the
/// family.
pub fn compile_source(name: &str, source: &str, arch: &str, extra_opts: &[&str]) -> Result<Compiled> {
    check_arch(arch)?;
    imp::compile(name, source, arch, &options(arch, extra_opts))
}

/// Like [`compile`], through `cache`: returns the CUBIN stored for exactly this source, arch,
/// option list and NVRTC version if there is one (the log is then empty), else compiles and
/// stores it. `load` receives the CUBIN and may refuse it (a damaged or incompatible entry):
/// then the family is recompiled and the entry overwritten.
pub fn load_cached<T>(
    cache: &KernelCache,
    family: &str,
    arch: &str,
    extra_opts: &[&str],
    load: impl FnMut(&[u8]) -> Result<T>,
) -> Result<T> {
    check_arch(arch)?;
    let source = mep_kernels::sources::nvrtc_source(family).ok_or_else(|| unknown_family(family, arch))?;
    let opts = options(arch, extra_opts);
    let opt_refs: Vec<&str> = opts.iter().map(String::as_str).collect();
    let name = entry_name(family, &source, arch, &opt_refs, version()?);
    cache.load_or_compile(
        &name,
        || imp::compile(family, &source, arch, &opts).map(|c| c.cubin),
        load,
    )
}

/// Whether libnvrtc can be loaded (always `false` without the `cuda` feature).
pub fn available() -> bool {
    imp::available()
}

/// NVRTC's version `(major, minor)`.
pub fn version() -> Result<(i32, i32)> {
    imp::version()
}

#[cfg(feature = "cuda")]
mod imp {
    use super::{Compiled, INSTALL_HINT};
    use cudarc::nvrtc::{result, sys};
    use mep_kernels::{KernelError, Result};
    use std::ffi::CString;
    use std::sync::OnceLock;

    pub(super) fn available() -> bool {
        static PRESENT: OnceLock<bool> = OnceLock::new();
        *PRESENT.get_or_init(|| {
            // SAFETY: only tries to dlopen the candidate library names.
            let by_name = unsafe { sys::is_culib_present() };
            // SAFETY: as above, once libnvrtc is loaded by full path.
            by_name || (preload() && unsafe { sys::is_culib_present() })
        })
    }

    /// Loads libnvrtc by full path from [`super::search::candidate_dirs`] and keeps it loaded:
    /// cudarc then finds it by name, since the dynamic loader matches an already loaded
    /// library's soname.
    fn preload() -> bool {
        for (dir, _) in super::search::candidate_dirs() {
            for lib in super::search::libs_in(&dir) {
                // SAFETY: loading NVRTC runs only its initialisers; it stays loaded for the life
                // of the process, as cudarc's own handle does.
                if let Ok(l) = unsafe { libloading::Library::new(&lib) } {
                    std::mem::forget(l);
                    return true;
                }
            }
        }
        false
    }

    fn require() -> Result<()> {
        if available() {
            Ok(())
        } else {
            Err(KernelError::Unavailable(format!(
                "NVRTC (libnvrtc.so) could not be loaded, so kernels cannot be compiled: {INSTALL_HINT}"
            )))
        }
    }

    pub(super) fn version() -> Result<(i32, i32)> {
        require()?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library is present (checked above); both pointers are valid.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| KernelError::Unavailable(format!("nvrtcVersion failed: {e}")))?;
        Ok((major, minor))
    }

    fn log_text(raw: Vec<std::ffi::c_char>) -> String {
        // `c_char` is i8 on x86-64 and u8 on aarch64: its one byte either way.
        let bytes: Vec<u8> = raw
            .into_iter()
            .map(|c| c.to_ne_bytes()[0])
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(super) fn compile(family: &str, source: &str, arch: &str, opts: &[String]) -> Result<Compiled> {
        require()?;
        let fail = |log: String| KernelError::Compile {
            family: family.into(),
            arch: arch.into(),
            log,
        };
        let src = CString::new(source).map_err(|_| fail("the source contains a NUL byte".into()))?;
        let name = CString::new(format!("{family}.cu")).map_err(|_| fail("bad family name".into()))?;
        if let Some(bad) = opts.iter().find(|o| o.contains('\0')) {
            return Err(fail(format!("option {bad:?} contains a NUL byte")));
        }
        let prog = result::create_program(&src, Some(name.as_c_str()))
            .map_err(|e| fail(format!("nvrtcCreateProgram: {e}")))?;
        // SAFETY: `prog` was just created and is destroyed once, below; `src` and `name`
        // outlive it.
        let out = unsafe {
            let compiled = result::compile_program(prog, opts);
            let log = result::get_program_log(prog).map(log_text).unwrap_or_default();
            let out = match compiled {
                Ok(()) => get_cubin(prog)
                    .map(|cubin| Compiled { cubin, log })
                    .map_err(|e| fail(e.to_string())),
                Err(e) if log.trim().is_empty() => Err(fail(format!("nvrtcCompileProgram: {e}"))),
                Err(_) => Err(fail(log)),
            };
            let _ = result::destroy_program(prog);
            out
        };
        out
    }

    /// # Safety
    /// `prog` must be a live, successfully compiled program.
    unsafe fn get_cubin(prog: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, result::NvrtcError> {
        let mut size = 0usize;
        sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
        let mut cubin = vec![0u8; size];
        sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()).result()?;
        Ok(cubin)
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::Compiled;
    use mep_kernels::{KernelError, Result};

    pub(super) fn available() -> bool {
        false
    }
    pub(super) fn version() -> Result<(i32, i32)> {
        Err(crate::not_built())
    }
    pub(super) fn compile(_: &str, _: &str, _: &str, _: &[String]) -> Result<Compiled> {
        Err::<Compiled, KernelError>(crate::not_built())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_must_name_a_real_target() {
        for ok in ["sm_80", "sm_90", "sm_90a", "sm_100f", "sm_120"] {
            assert!(check_arch(ok).is_ok(), "{ok}");
        }
        for bad in ["90", "sm_", "compute_90", "sm_9x", "sm_90 --foo", ""] {
            let e = check_arch(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn options_put_arch_after_base() {
        assert_eq!(
            options("sm_90", &["-Xptxas=-v"]),
            ["-std=c++17", "--gpu-architecture=sm_90", "-Xptxas=-v"]
        );
        assert!(!options("sm_90", &[]).iter().any(|o| o.contains("fast_math")));
    }

    #[test]
    fn unknown_family_is_a_compile_error_listing_the_known_ones() {
        let e = compile("nope", "sm_90", &[]).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("elementwise"), "{e}");
    }
}
